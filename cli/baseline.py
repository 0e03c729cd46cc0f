"""``evalharness baseline``: promote a run as a named baseline, list, show, clear, export and
import baselines (kept in Redis without expiry; see core/baselines.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from evalharness.core.baselines import BaselineStore, baseline_document, check_document
from evalharness.core.config import load_config
from evalharness.core.connection import async_client
from evalharness.core.errors import EvalHarnessError
from evalharness.core.evalrun import rebuild_run
from evalharness.core.repetitions import build_run_report, samples_of
from evalharness.core.report import write_report
from evalharness.core.resume import run_id_of_batch
from evalharness.core.scorers import resolve_metrics

from .common import settings_from

T = TypeVar("T")


def _with_store(ctx: click.Context, work: Callable[[Any, BaselineStore], Awaitable[T]]) -> T:
    settings = settings_from(ctx)

    async def main() -> T:
        client = async_client(settings.redis_url)
        try:
            return await work(client, BaselineStore(client, settings.prefix))
        finally:
            await client.aclose()

    return asyncio.run(main())


def _when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (TypeError, ValueError):
        return "?"


def _f1(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else "n/a"


@click.group()
def baseline() -> None:
    """Baselines: a run's per-sample scores kept under a name, for `run --compare NAME`."""


@baseline.command("promote")
@click.argument("run_id", required=False)
@click.option("--name", required=True, help="The baseline's name (letters, digits, '_', '-', '.').")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Promote this JSON report instead of a run in Redis (rows are joined by sample id).",
)
@click.pass_context
def promote(ctx: click.Context, run_id: str | None, name: str, report_path: str | None) -> None:
    """Promote run RUN_ID (its outputs in Redis, scored again) as baseline NAME.

    The baseline has no expiry: it outlives the run's --result-ttl.  Promoting
    under an existing name replaces it.

    \b
    Exit status: 0 promoted; 2 no such run (or unreadable report), bad name.
    """
    if (run_id is None) == (report_path is None):
        raise click.UsageError("give RUN_ID or --report FILE (one of them)")
    obj = ctx.find_root().obj or {}
    given: dict[str, Any] | None = None
    if report_path is not None:
        try:
            given = json.loads(Path(report_path).read_text())
        except (OSError, ValueError) as exc:
            raise EvalHarnessError(f"--report {report_path}: not a JSON report: {exc}") from None
        if not isinstance(given, dict) or "samples" not in given or "metrics" not in given:
            raise EvalHarnessError(f"--report {report_path}: not an evalharness report (no 'samples' and 'metrics')")

    async def work(client: Any, store: BaselineStore) -> dict[str, Any]:
        if given is not None:
            doc = baseline_document(name, given)
        else:
            rid = run_id_of_batch(str(run_id))  # a run id, or its batch id (run-ID, run-ID.rN)
            record, result = await rebuild_run(client, store.keys.prefix, rid)
            config = load_config(obj.get("config"))
            scorers = resolve_metrics(record.metrics, config=config.metrics)
            reps = int(record.extra.get("repetitions") or 1)
            # a row per sample with its executions under it, as `evalharness report` rebuilds it
            data = samples_of(record.dataset, reps)
            report = build_run_report(
                run_id=record.id,
                dataset=data,
                sut=record.sut,
                mode=record.mode,
                options=record.options,
                started_at=result.started_at,
                finished_at=result.finished_at,
                outcomes=result.outcomes,
                scorers=scorers,
                repetitions=reps,
            )
            report["sut_fingerprint"] = result.sut_fingerprint
            doc = baseline_document(name, report, data)
        doc["name"] = name
        replaced = await store.put(doc)
        doc["replaced"] = replaced
        return doc

    doc = _with_store(ctx, work)
    verb = "replaced" if doc.pop("replaced") else "promoted"
    click.echo(
        f"baseline {name!r} {verb}: run {doc.get('run_id')}, {len(doc['rows'])} sample(s), macro-F1 "
        f"{_f1(doc['summary'].get('macro_f1'))}"
    )


@baseline.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """The baselines, oldest promotion first."""
    rows = _with_store(ctx, lambda _c, store: store.list())
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no baselines (promote one with `evalharness baseline promote RUN_ID --name NAME`)")
    for row in rows:
        click.echo(
            f"{row['name']:<20} run {row['run_id']}  {row['dataset']}  {row['samples']} sample(s)  promoted "
            f"{_when(row['promoted_at'])}"
        )


async def _require(store: BaselineStore, name: str) -> dict[str, Any]:
    doc = await store.get(name)
    if doc is None:
        known = await store.names()
        raise EvalHarnessError(f"no baseline named {name!r} (known: {', '.join(known) or 'none'})")
    return doc


@baseline.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the whole baseline document (JSON).")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Baseline NAME: its run, metrics and summary."""
    doc = _with_store(ctx, lambda _c, store: _require(store, name))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(
        f"baseline {name}: run {doc.get('run_id')} · sut {doc.get('sut')} · dataset "
        f"{(doc.get('dataset') or {}).get('name')} · promoted {_when(doc.get('promoted_at'))}"
    )
    for metric, stats in doc["metrics"].items():
        mean, rate = stats.get("mean"), stats.get("pass_rate")
        click.echo(
            f"  {metric}: mean {'n/a' if mean is None else f'{mean:.4f}'}, pass rate "
            f"{'n/a' if rate is None else f'{rate * 100:.1f}%'} over {stats.get('count')}"
        )
    click.echo(f"  {len(doc['rows'])} sample(s), macro-F1 {_f1(doc['summary'].get('macro_f1'))}")


@baseline.command("clear")
@click.argument("name")
@click.pass_context
def clear(ctx: click.Context, name: str) -> None:
    """Forget baseline NAME.  Exit status: 0 cleared; 1 there was none."""
    dropped = _with_store(ctx, lambda _c, store: store.drop(name))
    if not dropped:
        click.echo(f"no baseline named {name!r} to clear", err=True)
        raise SystemExit(1)
    click.echo(f"baseline {name!r} cleared")


@baseline.command("export")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def export(ctx: click.Context, name: str, file: str) -> None:
    """Write baseline NAME to FILE (JSON, evalharness.baseline.v1), e.g. to keep it in git."""
    doc = _with_store(ctx, lambda _c, store: _require(store, name))
    write_report(doc, Path(file))
    click.echo(f"baseline {name!r} written to {file}")


@baseline.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--name", help="Store it under this name (default: the name in the file).")
@click.pass_context
def import_(ctx: click.Context, file: str, name: str | None) -> None:
    """Store the baseline in FILE (written by `baseline export`) in Redis."""
    try:
        raw = json.loads(Path(file).read_text())
    except (OSError, ValueError) as exc:
        raise EvalHarnessError(f"{file}: not JSON: {exc}") from None
    doc = check_document(raw, file)
    if name is not None:
        doc["name"] = name
    replaced = _with_store(ctx, lambda _c, store: store.put(doc))
    click.echo(f"baseline {doc['name']!r} {'replaced' if replaced else 'imported'} from {file}")
