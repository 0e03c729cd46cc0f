"""``evalharness config check``: validate a configuration file and show what it resolves to,
every supervisor setting with its default filled in."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from evalharness.core.config import (
    DEFAULT_CONFIG_NAME,
    ENV_CONFIG,
    ENV_ENVIRONMENT,
    Config,
    SupervisorConfig,
    load_config,
)
from evalharness.core.connection import redact_url
from evalharness.core.errors import ConfigError, EvalHarnessError
from evalharness.core.keys import DEFAULT_PREFIX
from evalharness.core.profiles import BUILTIN, all_profiles, check_profile_metrics
from evalharness.daemon.balancer import initial_sizes

# how a person reads a value that means "nothing set"
_ZERO_MEANS = {
    "timeout": "none",
    "hard_timeout": "off",
    "tries": "unlimited",
    "memory": "no limit",
    "max_jobs": "no limit",
    "max_time": "no limit",
}
_UNITS = {
    "balance_cooldown": "s",
    "timeout": "s",
    "hard_timeout": "s",
    "memory": " MB",
    "max_time": "s",
    "sleep": "s",
}


def _find_file(file: str | None, ctx: click.Context) -> Path:
    root = ctx.find_root().obj
    named = file or (root.get("config") if isinstance(root, dict) else None) or os.environ.get(ENV_CONFIG)
    if named:
        return Path(named)
    here = Path.cwd() / DEFAULT_CONFIG_NAME
    if not here.exists():
        raise ConfigError(f"no configuration file: give FILE, set {ENV_CONFIG}, or create ./{DEFAULT_CONFIG_NAME}")
    return here


def supervisor_json(sup: SupervisorConfig) -> dict[str, Any]:
    """Every setting of one supervisor, and the pools it starts with."""
    out: dict[str, Any] = {}
    for f in fields(sup):
        value = getattr(sup, f.name)
        out[f.name] = (
            list(value)
            if isinstance(value, tuple)
            else str(value)
            if f.name in ("balance", "auto_scaling_strategy")
            else value
        )
    out["pools_at_start"] = initial_sizes(sup)
    return out


def config_json(config: Config) -> dict[str, Any]:
    return {
        "file": str(config.path) if config.path else None,
        "environment": config.environment,
        "environments": list(config.environments),
        "redis_url": redact_url(config.redis_url) if config.redis_url else None,
        "prefix": config.prefix or DEFAULT_PREFIX,
        "state_dir": str(config.state_dir) if config.state_dir else None,
        "imports": list(config.imports),
        "supervisors": [supervisor_json(s) for s in config.supervisors],
        "profiles": profiles_json(config),
    }


def profiles_json(config: Config) -> dict[str, Any]:
    """Every profile `run --profile` can name, as the run resolves it: built-in values with the
    file's laid over them (``"none"``: cleared back to the command's default)."""
    out: dict[str, Any] = {}
    for name, values in sorted(all_profiles(config.profiles).items()):
        origin = (
            "built in" + (", changed in the file" if name in config.profiles else "") if name in BUILTIN else "the file"
        )
        out[name] = {"from": origin, "values": {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}
    return out


def _show(key: str, value: Any) -> str:
    if isinstance(value, list):
        unit = "s" if key == "backoff" else ""
        return ", ".join(_show("", v) + unit for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    if value == 0 and key in _ZERO_MEANS:
        return _ZERO_MEANS[key]
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text + _UNITS.get(key, "")


def render(data: dict[str, Any], console: Console) -> None:
    def line(label: str, value: str) -> None:
        console.print(Text.assemble((f"{label:<12}", "bold"), value))

    envs = ", ".join(data["environments"]) or "none defined: the [supervisors] tables apply everywhere"
    line("file", data["file"] or "-")
    line("environment", f"{data['environment']}   (in the file: {envs})")
    line("redis_url", data["redis_url"] or "the embedded server")
    line("prefix", data["prefix"])
    line("state_dir", data["state_dir"] or "the default")
    line("imports", ", ".join(data["imports"]) or "-")
    profiles = data.get("profiles") or {}
    if profiles:
        shown = Table(header_style="bold", title="profiles (run --profile NAME)", title_justify="left")
        for col in ("profile", "from", "run options"):
            shown.add_column(col, overflow="fold")
        for name, body in profiles.items():
            shown.add_row(
                Text(name), body["from"], Text(" ".join(f"{k}={_show(k, v)}" for k, v in body["values"].items()))
            )
        console.print(shown)
    sups = data["supervisors"]
    if not sups:
        console.print(Text("no supervisors: evalharnessd has nothing to run from this file", style="yellow"))
        return
    table = Table(header_style="bold", title=f"supervisors ({data['environment']})", title_justify="left")
    table.add_column("setting", no_wrap=True)
    for sup in sups:
        table.add_column(Text(sup["name"]), overflow="fold")
    for key in sups[0]:
        if key == "name":
            continue
        table.add_row(key, *(Text(_show(key, sup[key])) for sup in sups))
    console.print(table)


@click.group("config", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def config() -> None:
    """Check configuration files."""


@config.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--environment",
    metavar="NAME",
    help=(
        f"Environment whose supervisors to show. Default: ${ENV_ENVIRONMENT}, the file's 'environment' key, then "
        "production."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def config_check(ctx: click.Context, file: str | None, environment: str | None, as_json: bool) -> None:
    """Validate a configuration file and print what it resolves to.

    \b
    evalharness config check evalharness.toml
    evalharness config check /etc/evalharness.toml --environment staging --json

    Every environment in the file is validated; the supervisors of the chosen one are shown
    with every setting, defaults filled in, and the pool sizes they start with. FILE defaults
    to --config, $EVALHARNESS_CONFIG, then ./evalharness.toml.

    \b
    Exit codes: 0 the file is valid; 2 it is not (the message names the file, the
    table and the key) or it cannot be found.
    """
    try:
        path = _find_file(file, ctx)
        loaded = load_config(path, environment)
        check_profile_metrics(loaded)
    except EvalHarnessError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    data = config_json(loaded)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        render(data, Console(highlight=False))
