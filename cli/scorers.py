"""``evalharness scorers list``: every metric this installation knows — built-in and plug-ins —
with its kind, arguments and whether it needs a model provider."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from evalharness.core.metrics.base import Argument, MetricDefinition
from evalharness.core.scorers import metric_definitions, plugin_errors


@click.group()
def scorers() -> None:
    """The metrics (scorers) a run can use: built-in and from plug-ins."""


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _argument_json(arg: Argument) -> dict[str, Any]:
    return {
        "name": arg.name,
        "type": arg.type,
        "default": _json_value(arg.default),
        "accepts": arg.describe(),
        "help": arg.help,
    }


def _definition_json(definition: MetricDefinition) -> dict[str, Any]:
    return {
        "name": definition.name,
        "kind": definition.kind,
        "summary": definition.summary,
        "arguments": [_argument_json(arg) for arg in definition.arguments],
        "provider": definition.provider,
        "source": definition.source,
    }


def _default_text(arg: Argument) -> str:
    if arg.default is None:
        return f"{arg.name}=…"
    if isinstance(arg.default, bool):
        return f"{arg.name}={'true' if arg.default else 'false'}"
    if isinstance(arg.default, tuple):
        return f"{arg.name}={'|'.join(arg.default)}"
    if arg.default == "":
        return f'{arg.name}=""'
    return f"{arg.name}={arg.default}"


@scorers.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: {metrics: [...], plugin_errors: [...]}.")
def scorers_list(as_json: bool) -> None:
    """List every metric: name, kind, arguments (with defaults) and the provider it needs.

    A metric plug-in that fails to load is reported on stderr (and under
    plugin_errors with --json); the command still exits 0.
    """
    definitions = metric_definitions()
    errors = plugin_errors()
    if as_json:
        click.echo(
            json.dumps(
                {"metrics": [_definition_json(d) for d in definitions], "plugin_errors": list(errors)},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table(title="Metrics", title_justify="left")
    for header in ("name", "kind", "arguments", "provider", "source"):
        table.add_column(header, no_wrap=header != "arguments")
    for d in definitions:
        table.add_row(
            Text(d.name),
            Text(d.kind),
            Text(", ".join(_default_text(arg) for arg in d.arguments) or "—"),
            Text(d.provider or "—", style="yellow" if d.provider else ""),
            Text(d.source, style="dim" if d.source == "built-in" else ""),
        )
    Console().print(table)
    click.echo("Arguments: --metric NAME:ARG=VALUE,ARG=VALUE (lists as a|b|c); details in docs/metrics.md.")
    for error in errors:
        click.echo(f"warning: {error}", err=True)
