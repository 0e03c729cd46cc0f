"""`evalharness run --resume RUN_ID` and `evalharness runs list|show`: eval runs as the records
they are in Redis, continued after their producer died (core/resume.py)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.table import Table
from rich.text import Text

from evalharness.core.cache import CacheSettings
from evalharness.core.config import load_config
from evalharness.core.connection import async_client
from evalharness.core.cost import usd
from evalharness.core.datasets import Dataset, Subset, load_dataset, select_samples
from evalharness.core.errors import EvalHarnessError
from evalharness.core.evalrun import RunOptions, RunResult, outcome_of
from evalharness.core.keys import GlobalKeys
from evalharness.core.queue import Queue
from evalharness.core.repetitions import expand, samples_of
from evalharness.core.resume import (
    ResumePlan,
    ResumeRefused,
    claim_dead_here,
    effective_state,
    plan_resume,
    run_id_of_batch,
)
from evalharness.core.runs import RunRecord, RunStore, dataset_fingerprint
from evalharness.core.scorers import resolve_metrics
from evalharness.core.sut import load_sut_code

from .common import exit_with_error, settings_from, table_console

# flags that choose what a run is: a resumed run keeps the ones it started with
_FIXED = {
    "metrics": "--metric",
    "mode": "--batch",
    "profile": "--profile",
    "repetitions": "--repetitions",
    "queue": "--queue",
    "timeout": "--timeout",
    "tries": "--tries",
    "result_ttl": "--result-ttl",
    "limit": "--limit",
    "sample_ids": "--sample",
    "shuffle": "--shuffle",
    "seed": "--seed",
    "input_col": "--input-col",
    "expected_col": "--expected-col",
    "outputs_path": "--outputs",
    "cache": "--cache/--no-cache",
    "cache_ttl": "--cache-ttl",
}
# flags a resume may change: how fast the rest runs, where the reports go
_OVERRIDABLE = {"concurrency": "concurrency", "rate_limit": "rate_limit", "batch_timeout": "batch_timeout"}


def resume_fields(
    dataset_arg: str,
    data: Dataset,
    sut: str,
    subset: Subset | None,
    metrics: tuple[str, ...],
    repetitions: int,
    profile: str | None,
    json_path: str | None,
    formats: Mapping[str, str | None],
    input_col: str | None,
    expected_col: str | None,
    cache: CacheSettings | None = None,
    budget_usd: float | None = None,
) -> dict[str, str]:
    """Fields of a new run's record that a later `run --resume` needs to check and redo it (the
    cache and the budget included: a resumed run caches and spends as the run began to)."""

    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else None

    args = {
        "dataset": absolute(dataset_arg),
        "input_col": input_col,
        "expected_col": expected_col,
        "subset": subset.to_json() if subset else None,
        "metrics": list(metrics),
        "repetitions": repetitions,
        "profile": profile,
        "json": absolute(json_path),
        "formats": {k: absolute(v) for k, v in formats.items()},
        "cache": {"enabled": cache.enabled, "ttl": cache.ttl} if cache is not None else None,
        "budget_usd": budget_usd,
    }
    return {
        "sut_fingerprint": load_sut_code(sut).fingerprint or "",
        "repetitions": str(repetitions),
        "run_args": json.dumps(args),
    }


async def _load(url: str, prefix: str, run_id: str) -> RunRecord:
    client = async_client(url)
    try:
        record = await RunStore(client, prefix).load(run_id)
    finally:
        await client.aclose()
    if record is None:
        raise ResumeRefused(
            f"no run {run_id!r} in Redis: the id is unknown, or its record expired (kept --result-ttl seconds after "
            "its producer's last sign of life; `evalharness runs list` shows the runs there are)"
        )
    return record


async def _mark_finished(url: str, prefix: str, record: RunRecord, at: float, extra: Mapping[str, str]) -> None:
    client = async_client(url)
    try:
        await RunStore(client, prefix).update(
            record.id,
            record.result_ttl,
            state="finished",
            finished_at=at,
            interrupted=None,
            dispatched=len(record.dataset.samples),
            **dict(extra),
        )
    finally:
        await client.aclose()


def _current_data(
    record: RunRecord, args: Mapping[str, Any], dataset: str | None, reps: int, allow: bool, notes: list[str]
) -> Dataset:
    """The run's samples (before repetition) as the dataset file gives them now; the record's
    own when the file cannot be read and ``allow`` says to go on."""
    path = dataset or args.get("dataset") or str(record.dataset.path)
    subset = args.get("subset") or {}
    try:
        full = load_dataset(path, input_col=args.get("input_col"), expected_col=args.get("expected_col"))
        data, _ = select_samples(
            full,
            limit=subset.get("limit"),
            sample_ids=subset.get("sample_ids") or (),
            shuffle=bool(subset.get("shuffle")),
            seed=subset.get("seed"),
        )
        return data
    except EvalHarnessError as exc:
        if not allow:
            raise ResumeRefused(
                f"cannot check the dataset run {record.id!r} started with: {exc}. Give its file as DATASET, or pass "
                "--allow-changes to resume with the samples the run's record keeps"
            ) from None
        notes.append(f"the dataset could not be read ({exc}); the run's own samples were used")
        return samples_of(record.dataset, reps)


def resume_run(
    ctx: click.Context,
    run_id: str,
    *,
    dataset: str | None,
    sut: str | None,
    allow_changes: bool,
    json_path: str | None,
    formats: dict[str, str | None],
) -> None:
    from evalharness.core.providers.hub import metric_context

    from .extras import check_run_extras, prepare
    from .run import SIGNAL_EXIT, catching_signals, execute, finish  # the run command's own machinery

    fixed = [flag for param, flag in _FIXED.items() if ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE]
    if fixed:
        raise EvalHarnessError(
            f"{', '.join(fixed)}: {'does' if len(fixed) == 1 else 'do'} not apply with --resume: a resumed run keeps "
            "the options it started with "
            "(only --concurrency, --rate-limit, --batch-timeout, --workers and the report files may change)"
        )
    rid = run_id_of_batch(run_id)  # a run id, or its batch id (run-ID, run-ID.rN)
    settings = settings_from(ctx)
    config = load_config(ctx.find_root().obj.get("config"))
    record = asyncio.run(_load(settings.redis_url, settings.prefix, rid))
    if sut is not None and sut != record.sut:
        raise ResumeRefused(f"--sut {sut}: run {rid!r} ran {record.sut}; a resumed run calls the SUT it started with")
    args: dict[str, Any] = json.loads(record.extra.get("run_args") or "{}")
    reps = int(record.extra.get("repetitions") or 1)
    notes: list[str] = []
    data = _current_data(record, args, dataset, reps, allow_changes, notes)
    units = expand(data, reps)
    fingerprint = load_sut_code(record.sut).fingerprint

    async def plan() -> ResumePlan:
        client = async_client(settings.redis_url)
        try:
            return await plan_resume(client, settings.prefix, record, units, fingerprint, allow_changes)
        finally:
            await client.aclose()

    p = asyncio.run(plan())
    notes += p.notes
    if dataset_fingerprint(units) != record.fingerprint:
        # changes allowed: the run goes on with the samples it started with
        units = record.dataset
        data = samples_of(units, reps)
    saved = dict(record.options)
    overrides = {
        name: ctx.params[param]
        for param, name in _OVERRIDABLE.items()
        if ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE
    }
    overrides = {k: (None if isinstance(v, str) and v.lower() == "none" else v) for k, v in overrides.items()}
    options = RunOptions(
        mode="lazy-parallel",
        concurrency=int(overrides.get("concurrency") or saved.get("concurrency", 10)),
        queue=record.queue,
        timeout=float(saved.get("timeout", 60.0)),
        tries=int(saved.get("tries", 3)),
        backoff=tuple(float(b) for b in saved.get("backoff") or (1.0, 5.0, 30.0)),
        result_ttl=record.result_ttl,
        batch_timeout=overrides["batch_timeout"] if "batch_timeout" in overrides else saved.get("batch_timeout"),
        rate_limit=overrides["rate_limit"] if "rate_limit" in overrides else saved.get("rate_limit"),
        repetitions=reps,
    ).validate()
    scorers = resolve_metrics(
        tuple(args.get("metrics") or record.metrics), config=config.metrics, context=metric_context(config.providers)
    )
    # the gates (--compare, --max-regressions, --fail-under, --comparison-out) judge the resumed
    # run's report as they would the whole run's; the cache is the first run's, and so is the
    # budget unless --budget-usd gives the whole run a new one (the spend so far counts in it)
    extras = check_run_extras(ctx.params, config, [s.name for s in scorers], record.sut)
    stored_cache = args.get("cache") or {}
    extras.cache = CacheSettings(bool(stored_cache.get("enabled")), int(stored_cache.get("ttl") or extras.cache.ttl))
    budget_given = ctx.get_parameter_source("budget_usd") == ParameterSource.COMMANDLINE
    if not budget_given:
        extras.budget_limit = args.get("budget_usd")
    extras.repetitions = reps
    prepare(extras, settings.redis_url, settings.prefix, units, fingerprint)
    for i, value in p.continuation.results.items():
        if (value.get("result") or {}).get("cached"):
            extras.prefilled[i] = value  # a cache hit of the run before: it counts as one, and cost nothing
        else:
            extras.prefilled.pop(i, None)  # collected, not taken from the cache now
            if extras.budget is not None:
                extras.budget.observe(value)
    json_path = json_path or args.get("json")
    stored = args.get("formats") or {}
    formats = {k: v or stored.get(k) for k, v in formats.items()} if not any(formats.values()) else formats
    earlier = json.loads(record.extra.get("resumed") or "[]")
    this = p.to_json()
    additions: dict[str, Any] = {"resumed": [*earlier, this]}
    if record.extra.get("subset"):
        additions["subset"] = json.loads(record.extra["subset"])
    if args.get("profile"):
        additions["profile"] = {"name": args["profile"]}
    click.echo(
        f"resuming run {rid}: {p.collected} outcome(s) already in Redis, {p.live} still queued or running "
        f"(collected when they finish), {p.to_dispatch} to dispatch",
        err=True,
    )
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    workers = ctx.params.get("workers")
    workers = 0 if workers in (None, "none") else int(workers)
    extra = {"resumes": str(p.rounds), "resumed": json.dumps([*earlier, this])}
    if budget_given:
        extra["run_args"] = json.dumps({**args, "budget_usd": extras.budget_limit})  # for the next resume too
    if fingerprint and allow_changes:
        extra["sut_fingerprint"] = fingerprint
    if p.collected == len(units.samples):
        # nothing left to run: the report is the run's outputs, scored
        outcomes = [outcome_of(i, s, dict(p.continuation.results[i]), True) for i, s in enumerate(units.samples)]
        result = RunResult(
            rid,
            outcomes,
            record.started_at,
            record.finished_at or time.time(),
            [],
            record.batch,
            sut_fingerprint=fingerprint,
        )
        if record.state != "finished":
            # the workers finished what its dead producer had dispatched: the run is complete now
            asyncio.run(_mark_finished(settings.redis_url, settings.prefix, record, result.finished_at, extra))
        raise SystemExit(
            finish(
                result,
                data,
                record.sut,
                options,
                scorers,
                json_path,
                formats=formats,
                additions=additions,
                extras=extras,
            )
        )
    from evalharness.core.evalrun import Interrupt

    interrupt = Interrupt()
    with catching_signals(interrupt):
        result = execute(
            ctx,
            units,
            record.sut,
            options,
            workers=workers,
            quiet=bool(ctx.params.get("quiet")),
            interrupt=interrupt,
            metrics=[s.name for s in scorers],
            progress_interval=float(ctx.params.get("progress_interval") or 2.0),
            record_extra=extra,
            resume=p.continuation,
            extras=extras,
            scorers=scorers,
            additions=additions,
        )
        code = finish(
            result, data, record.sut, options, scorers, json_path, formats=formats, additions=additions, extras=extras
        )
    if result.interrupted:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(SIGNAL_EXIT.get(result.interrupted, code))
    raise SystemExit(code)


# -- runs list | show ---------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    return (
        None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


async def _summaries(url: str, prefix: str, ids: list[str] | None, limit: int) -> list[dict[str, Any]]:
    client = async_client(url)
    keys = GlobalKeys(prefix)
    try:
        if ids is None:
            ids = [str(i) for i in await client.zrevrange(keys.runs, 0, limit - 1)]
        store = RunStore(client, prefix)
        queue = Queue(client, prefix)
        out = []
        for rid in ids:
            record = await store.load(rid)
            if record is None:
                continue
            claim = await client.get(keys.run_producer(rid))
            if claim is not None and claim_dead_here(str(claim)):
                claim = None  # its producer was on this host and is gone
            done = await client.hlen(queue.keys(record.queue).results(record.sink)) if record.sink else 0
            reps = int(record.extra.get("repetitions") or 1)
            args = json.loads(record.extra.get("run_args") or "{}")
            out.append(
                {
                    "id": rid,
                    "state": effective_state(record.state, bool(claim)),
                    "recorded_state": record.state,
                    "dataset": {
                        "name": record.dataset.name,
                        "path": str(record.dataset.path),
                        "fingerprint": record.fingerprint,
                    },
                    "samples": len(record.dataset.samples) // max(1, reps),
                    "repetitions": reps,
                    "units": len(record.dataset.samples),
                    "outcomes": done,
                    "sut": record.sut,
                    "sut_fingerprint": record.extra.get("sut_fingerprint") or None,
                    "metrics": list(args.get("metrics") or record.metrics),
                    "mode": record.mode,
                    "queue": record.queue,
                    "batch": record.batch,
                    "options": record.options,
                    "cache": args.get("cache"),
                    "budget_usd": args.get("budget_usd"),
                    "started_at": _iso(record.started_at),
                    "finished_at": _iso(record.finished_at),
                    "interrupted": record.interrupted,
                    "diagnostics": list(record.diagnostics),
                    "producer": json.loads(claim) if claim else None,
                    "resumes": int(record.extra.get("resumes") or 0),
                    "expires_in": await client.ttl(keys.run(rid)),
                }
            )
        return out
    finally:
        await client.aclose()


@click.group("runs", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def runs() -> None:
    """Eval runs recorded in Redis: list them, show one (see `run --resume`)."""


@runs.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Newest runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def runs_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The newest eval runs whose record is still in Redis, newest first.

    \b
    States: running (its producer is alive), abandoned (its record says running but its
    producer is gone: killed, or its SSH session dropped; `run --resume RUN_ID` continues
    it), finished, stopped (batch timeout, no workers, cancelled), interrupted (a signal).
    """
    settings = settings_from(ctx)
    rows = asyncio.run(_summaries(settings.redis_url, settings.prefix, None, limit))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no run records in Redis")
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    for col in ("run", "state", "started (UTC)", "dataset", "done", "sut"):
        # the id is what a user copies: never wrapped; names fold instead
        table.add_column(col, no_wrap=col in ("run", "state", "started (UTC)", "done"), overflow="fold")
    for r in rows:
        style = {"finished": "green", "abandoned": "yellow", "interrupted": "yellow", "stopped": "red"}.get(
            r["state"], ""
        )
        started = (r["started_at"] or "")[5:16].replace("T", " ")
        table.add_row(
            r["id"],
            Text(r["state"], style=style),
            started,
            Text(r["dataset"]["name"]),
            f"{r['outcomes']}/{r['units']}",
            Text(r["sut"]),
        )
    table_console(highlight=False).print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs_show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Everything the record of RUN_ID holds: state, dataset and SUT fingerprints, options,
    outcomes so far, its live producer (if any) and how often it was resumed.

    \b
    Exit status: 0 shown; 2 no such run (unknown, or its record expired).
    """
    settings = settings_from(ctx)
    rid = run_id_of_batch(run_id)  # a run id, or its batch id (run-ID, run-ID.rN)
    rows = asyncio.run(_summaries(settings.redis_url, settings.prefix, [rid], 1))
    if not rows:
        exit_with_error(EvalHarnessError(f"no run {rid!r} in Redis: the id is unknown, or its record expired"))
    row = rows[0]
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    console = table_console(highlight=False)
    for key in (
        "id",
        "state",
        "started_at",
        "finished_at",
        "sut",
        "sut_fingerprint",
        "mode",
        "queue",
        "batch",
        "samples",
        "repetitions",
        "outcomes",
        "resumes",
        "interrupted",
        "expires_in",
    ):
        console.print(Text.assemble((f"{key:<16}", "bold"), str(row[key])))
    console.print(
        Text.assemble(
            (f"{'dataset':<16}", "bold"),
            f"{row['dataset']['name']} ({row['dataset']['path']}) {row['dataset']['fingerprint']}",
        )
    )
    console.print(Text.assemble((f"{'metrics':<16}", "bold"), ", ".join(row["metrics"])))
    console.print(Text.assemble((f"{'options':<16}", "bold"), json.dumps(row["options"])))
    cache = row["cache"]
    if cache and cache.get("enabled"):
        console.print(Text.assemble((f"{'cache':<16}", "bold"), f"on (entries kept {cache['ttl']} s)"))
    if row["budget_usd"] is not None:
        console.print(Text.assemble((f"{'budget':<16}", "bold"), usd(row["budget_usd"])))
    producer = row["producer"]
    console.print(
        Text.assemble(
            (f"{'producer':<16}", "bold"), f"pid {producer['pid']} on {producer['host']}" if producer else "none alive"
        )
    )
    for line in row["diagnostics"]:
        console.print(Text(f"  {line}", style="dim"))
    if row["state"] in ("abandoned", "interrupted", "stopped"):
        console.print(Text(f"resume with: evalharness run --resume {row['id']}", style="yellow"))
