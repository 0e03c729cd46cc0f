"""``evalharness report``: rebuild the report of a lazy-parallel run from its outputs in Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click

from evalharness.core.config import load_config
from evalharness.core.connection import async_client
from evalharness.core.evalrun import (
    RunResult,
    rebuild_run,
)
from evalharness.core.providers.hub import metric_context
from evalharness.core.repetitions import samples_of
from evalharness.core.report_formats import check_output_paths
from evalharness.core.resume import run_id_of_batch
from evalharness.core.scorers import resolve_metrics

from .common import handle_errors, settings_from
from .extras import (
    check_run_extras,
    format_options,
    gate_options,
    prepare,
)
from .judge import prepare_scores
from .run import present

# -- report -------------------------------------------------------------------------------


@click.command("report")
@click.argument("run_id")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write the JSON report (schema evalharness.report.v1) here.",
)
@format_options
@gate_options
@click.pass_context
@handle_errors
def report_cmd(
    ctx: click.Context,
    run_id: str,
    json_path: str | None,
    md_path: str | None,
    html_path: str | None,
    csv_path: str | None,
    junit_path: str | None,
    **extra: Any,
) -> None:
    """Rebuild the report of a lazy-parallel run from its outputs in Redis.

    RUN_ID is the run's id (or its batch id, run-RUN_ID or run-RUN_ID.rN).  The report holds
    every output that is in Redis now, so after `evalharness batch retry
    run-RUN_ID` (or `failed retry`) has run the failed samples again, it
    scores their new outputs.  A run's record and outputs are kept
    --result-ttl seconds (a day by default).  --compare NAME, --max-regressions,
    --fail-under: the gates of `evalharness run`, on the rebuilt report.

    \b
    Exit status:
      0    every sample scored
      1    some samples failed or have no output (yet), or a gate failed
      2    no such run in Redis (unknown id, or expired)
      3    Redis unavailable
    """
    check_output_paths(
        [("--json", json_path), ("--md", md_path), ("--html", html_path), ("--csv", csv_path), ("--junit", junit_path)]
    )
    settings = settings_from(ctx)
    rid = run_id_of_batch(run_id)  # a run id, or its batch id (run-ID, run-ID.rN)

    async def load() -> tuple[Any, RunResult]:
        client = async_client(settings.redis_url)
        try:
            return await rebuild_run(client, settings.prefix, rid)
        finally:
            await client.aclose()

    record, result = asyncio.run(load())
    config = load_config(ctx.find_root().obj.get("config"))
    scorers = resolve_metrics(record.metrics, config=config.metrics, context=metric_context(config.providers))
    extras = check_run_extras(extra, config, [s.name for s in scorers], record.sut, rebuilt=True)
    prepare(extras, settings.redis_url, settings.prefix, record.dataset, None)
    rebuilt: dict[str, Any] = {
        "rebuilt_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run_state": record.state,
    }
    judged = prepare_scores(scorers, result, redis_url=settings.redis_url, prefix=settings.prefix)
    if judged is not None:
        rebuilt["judges"] = judged
    if record.extra.get("subset"):
        rebuilt["subset"] = json.loads(record.extra["subset"])
    if record.extra.get("resumed"):
        rebuilt["resumed"] = json.loads(record.extra["resumed"])  # as the resumed run's own report has it
    formats = {"md": md_path, "html": html_path, "csv": csv_path, "junit": junit_path}
    reps = int(record.extra.get("repetitions") or 1)
    data = samples_of(record.dataset, reps)  # the record holds every execution; the report a row per sample
    raise SystemExit(
        present(
            result,
            data,
            record.sut,
            record.mode,
            record.options,
            scorers,
            json_path,
            rebuilt,
            formats=formats,
            extras=extras,
        )
    )
