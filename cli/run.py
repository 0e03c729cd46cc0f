"""The ``evalharness run`` command: evaluate a dataset against a SUT, and the machinery that
runs, collects and presents a run (also used by ``report``, ``demo`` and ``run --resume``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from evalharness.core.batches import Batches
from evalharness.core.config import ENV_CONFIG, load_config
from evalharness.core.connection import async_client
from evalharness.core.datasets import (
    DEFAULT_EXPECTED_COLUMN,
    DEFAULT_INPUT_COLUMN,
    Dataset,
    Subset,
    load_dataset,
    load_outputs,
    select_samples,
)
from evalharness.core.errors import EvalHarnessError, MetricError
from evalharness.core.evaljobs import DEFAULT_EVAL_QUEUE
from evalharness.core.evalrun import (
    Continuation,
    Interrupt,
    RunOptions,
    RunResult,
    run_lazy_parallel,
    run_serial,
)
from evalharness.core.jobs import new_job_id
from evalharness.core.judges import judge_scorers
from evalharness.core.profiles import SAMPLE_EXECUTION, profile_metrics_error
from evalharness.core.providers.hub import metric_context
from evalharness.core.queue import Queue
from evalharness.core.repetitions import build_run_report, expand
from evalharness.core.report import SampleOutcome, render_report, report_ok, write_report
from evalharness.core.report_formats import check_output_paths, write_formats
from evalharness.core.resume import hold_claim, run_id_of_batch
from evalharness.core.scorers import METRIC_NAMES, computed_here, resolve_metrics
from evalharness.core.sut import load_sut, load_sut_code
from evalharness.daemon.common import (
    child_env,
    stop_processes,
    wait_for_workers,
    worker_command,
)

from .common import handle_errors, settings_from
from .extras import (
    RunExtras,
    check_run_extras,
    decorate,
    exit_code,
    format_options,
    prepare,
    render,
    run_extra_options,
    store_outputs,
)
from .judge import prepare_scores, warn_self_judging
from .progress import DEFAULT_PLAIN_INTERVAL, BatchWatch, RunProgress
from .runopts import OrNone, resolve_run_flags
from .runs import resume_fields

# -- run ----------------------------------------------------------------------------------


@click.command()
@click.argument("dataset", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--sut",
    metavar="MODULE:CALLABLE|openai:MODEL|http:URL",
    help=(
        "The system under test. MODULE:CALLABLE takes a sample's input and returns the output text (sync or async). "
        "openai:MODEL asks MODEL of an OpenAI-compatible provider (OPENAI_BASE_URL, OPENAI_API_KEY, [providers.NAME] "
        "and [sut.openai] in the config file); http:URL POSTs {\"input\": ...} to URL and takes the reply's 'output' "
        "field or its text. See docs/providers.md. Required unless --outputs is given."
    ),
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME[:ARG=VALUE,...]",
    help=(
        "A metric, with arguments after ':' (retrieval-ndcg-at-k:k=10); repeat or comma-separate for several. Built "
        f"in: {', '.join(METRIC_NAMES)}. Arguments, plug-ins and what needs a provider: `evalharness scorers list`; "
        "defaults per metric in the config file's [metrics.NAME] tables."
    ),
)
@click.option(
    "--batch",
    "mode",
    type=click.Choice(["serial", "lazy-parallel", "none"]),
    default="lazy-parallel",
    show_default=True,
    help="serial: in this process, one sample at a time. lazy-parallel: one job per sample on the queue.",
)
@click.option(
    "--profile",
    metavar="NAME",
    help=(
        "Take the run options of profile NAME: built in ci, smoke, nightly, or a [profiles.NAME] table of the config "
        "file. Flags given here win; the value none clears what the profile sets. See docs/runs.md#profiles."
    ),
)
@click.option(
    "--repetitions",
    type=OrNone(click.IntRange(min=1), "N"),
    default=1,
    show_default=True,
    help=(
        "Run each sample N times, as N distinct jobs; the report has each sample's mean and spread, Wilson intervals "
        "over all executions, the unstable samples and the precision the run resolves."
    ),
)
@click.option(
    "--resume",
    "resume_id",
    metavar="RUN_ID",
    help=(
        "Continue lazy-parallel run RUN_ID whose producer died or was stopped: collect what finished, leave what is "
        "queued or running to finish, dispatch only what is missing, and write the report the whole run would have. "
        "DATASET may be omitted. Refused when the dataset or the SUT changed. It keeps the run's options, its cache "
        "and its budget; --budget-usd gives the whole run a new one."
    ),
)
@click.option(
    "--allow-changes",
    is_flag=True,
    help=(
        "With --resume: resume although the dataset or the SUT's code changed since the run started (the run's own "
        "samples are used; the report notes the change)."
    ),
)
@click.option(
    "--concurrency",
    type=OrNone(click.IntRange(min=1), "N"),
    default=10,
    show_default=True,
    help="Samples in flight at once (lazy-parallel).",
)
@click.option("--queue", default=DEFAULT_EVAL_QUEUE, show_default=True, help="Queue the sample jobs go to.")
@click.option(
    "--timeout",
    type=OrNone(click.FloatRange(min=0, min_open=True), "SECONDS"),
    default=60.0,
    show_default=True,
    help="Seconds one attempt of one sample may take.",
)
@click.option(
    "--tries",
    type=OrNone(click.IntRange(min=1), "N"),
    default=3,
    show_default=True,
    help="Attempts per sample; 429 releases do not count.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write the JSON report (schema evalharness.report.v1) here.",
)
@click.option(
    "--workers",
    type=OrNone(click.IntRange(min=0), "N"),
    default=0,
    help="Start N local worker processes for this run (no daemon needed).",
)
@click.option(
    "--batch-timeout",
    type=OrNone(click.FloatRange(min=0, min_open=True), "SECONDS"),
    help="Seconds for the whole run (dispatch and collection); missing samples are reported. none: no limit.",
)
@click.option(
    "--rate-limit",
    type=OrNone(click.FloatRange(min=0, min_open=True), "PER_SECOND"),
    help="Most samples dispatched per second. none: no limit.",
)
@click.option(
    "--result-ttl",
    type=OrNone(click.IntRange(min=1), "SECONDS"),
    default=86_400,
    show_default=True,
    help=(
        "Seconds Redis keeps the run's record and outputs after its producer's last sign of life (what `report` and "
        "`run --resume` read)."
    ),
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_PLAIN_INTERVAL,
    show_default=True,
    help="Seconds between plain progress lines when stderr is not a terminal.",
)
@click.option(
    "--limit",
    type=OrNone(click.IntRange(min=1), "N"),
    help="Run only the first N samples (after --sample and --shuffle). none: all.",
)
@click.option(
    "--sample", "sample_ids", multiple=True, metavar="ID", help="Run only the sample with this id; repeat for several."
)
@click.option(
    "--shuffle", is_flag=True, help="Run the samples in a shuffled order (the seed is recorded in the report)."
)
@click.option("--seed", type=int, help="Seed of --shuffle: the same seed gives the same order (only with --shuffle).")
@click.option("--input-col", metavar="COLUMN", help=f"CSV datasets: the input column (default {DEFAULT_INPUT_COLUMN}).")
@click.option(
    "--expected-col",
    metavar="COLUMN",
    help=f"CSV datasets: the expected-output column (default {DEFAULT_EXPECTED_COLUMN}).",
)
@click.option(
    "--outputs",
    "outputs_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help=(
        'Score saved outputs instead of calling a SUT: JSONL lines {"id" or "index", "output"}. No SUT or workers '
        "needed."
    ),
)
@format_options
@run_extra_options
@click.pass_context
@handle_errors
def run(
    ctx: click.Context,
    dataset: str | None,
    sut: str | None,
    metrics: tuple[str, ...],
    mode: str,
    profile: str | None,
    repetitions: Any,
    resume_id: str | None,
    allow_changes: bool,
    concurrency: Any,
    queue: str,
    timeout: Any,
    tries: Any,
    json_path: str | None,
    workers: Any,
    batch_timeout: Any,
    rate_limit: Any,
    result_ttl: Any,
    quiet: bool,
    progress_interval: float,
    limit: Any,
    sample_ids: tuple[str, ...],
    shuffle: bool,
    seed: int | None,
    input_col: str | None,
    expected_col: str | None,
    outputs_path: str | None,
    md_path: str | None,
    html_path: str | None,
    csv_path: str | None,
    junit_path: str | None,
    **extra: Any,
) -> None:
    """Evaluate DATASET (.jsonl, .yaml, .csv) against a SUT and print the report.

    \b
    Subsets: --sample ID (repeatable) keeps those samples, --shuffle --seed S
    orders them, --limit N keeps the first N; the report's `subset` says which.
    CSV datasets: a header row; --input-col/--expected-col name the columns
    (default input, expected_output), an `id` column is used when present,
    every other column goes to the sample's metadata.
    --outputs FILE scores saved outputs with the metrics: no SUT, no workers.
    Reports: --json, --md, --html, --csv, --junit (any together).
    --cache reuses the outputs kept for the same SUT and input (7 days);
    --budget-usd X stops dispatching once the priced spend reaches X;
    --compare NAME --max-regressions N and --fail-under METRIC=VALUE are
    gates: the run exits 1 when it fails one (docs/runs.md).
    Progress: a live line on a terminal (done, failed, retrying,
    rate-limited, in flight, rate, ETA); plain lines every
    --progress-interval seconds otherwise; none with --quiet.
    Profiles: --profile ci|smoke|nightly|NAME sets run options at once
    (a [profiles.NAME] table of the config file changes or adds one);
    flags given win; the value none clears what the profile sets.
    Repetitions: --repetitions N runs each sample N times; the report
    adds each sample's mean and spread, Wilson intervals over all
    executions, the unstable samples and the precision the run resolves.
    Resume: `run --resume RUN_ID` continues a lazy-parallel run whose
    producer died; `evalharness runs list` shows the runs there are.
    See docs/runs.md.

    Ctrl-C (SIGINT) or SIGTERM stops the run: its batch is cancelled (queued
    samples leave the queue, running ones are told to stop), and the partial
    report says so and lists the samples that never ran or were not
    collected.  A second Ctrl-C skips waiting for the clean-up.

    \b
    Exit status:
      0    every sample scored
      1    some samples failed (the report lists them), the run halted
           on its budget, or it failed a gate (--max-regressions,
           --fail-under)
      2    bad input (dataset, SUT, metric, option, profile, configuration
           file), or a --resume refused (unknown run, the dataset or SUT
           changed, its producer is alive)
      3    Redis or workers unavailable, or a worker has other SUT code
           than this command (sut_mismatch)
      130  interrupted by SIGINT (Ctrl-C); the partial report was written
      143  interrupted by SIGTERM; the partial report was written

    Workers import the SUT again when its source changes, so each run scores
    the code on disk; the report records its fingerprint (sut_fingerprint).

    \b
    SUT forms (docs/providers.md):
      mybot:answer               a Python callable of yours
      openai:gpt-4o-mini         a chat model of an OpenAI-compatible provider
                                 (OpenAI, vLLM, Ollama, LiteLLM, gateways); a
                                 text input is the user message, an input with
                                 "messages" is sent as the messages
      http:http://host:8080/ask  a service: POST {"input": ...}; the output is
                                 the reply's "output" field, or its text body
    A 429 or Retry-After from a provider releases the sample without using a
    try; the report records the tokens and cost the replies carried (usage).

    Judge metrics (llm-as-judge, refusal-quality) ask their judge once the
    outputs are in, as jobs on the queue `judge` (metric argument queue=):
    --workers N serves it too; with a daemon give it workers (--queue
    judge=1), else the calls run in this process.  Embedding metrics fetch
    their vectors from this process.  See docs/metrics.md.
    """
    # Every mode reads and validates the configuration file the same way, before anything runs,
    # although a serial run needs nothing from it.
    config = load_config(ctx.find_root().obj.get("config"))
    if config.path is not None and ctx.find_root().obj.get("config"):
        # local workers read the same file (an adapter SUT's settings are in it)
        os.environ[ENV_CONFIG] = str(config.path.resolve())
    formats = {"md": md_path, "html": html_path, "csv": csv_path, "junit": junit_path}
    check_output_paths(
        [("--json", json_path), ("--md", md_path), ("--html", html_path), ("--csv", csv_path), ("--junit", junit_path)]
    )
    if resume_id is not None:
        from .runs import resume_run

        resume_run(
            ctx, resume_id, dataset=dataset, sut=sut, allow_changes=allow_changes, json_path=json_path, formats=formats
        )
        return
    if allow_changes:
        raise EvalHarnessError("--allow-changes only applies with --resume RUN_ID")
    if dataset is None:
        raise EvalHarnessError("missing argument DATASET (or --resume RUN_ID to continue a run)")
    resolved = resolve_run_flags(ctx, config, profile)
    v = resolved.values
    mode, workers, limit, repetitions = v["mode"], v["workers"], v["limit"], v["repetitions"]
    metrics = v["metrics"]
    if not metrics:
        raise EvalHarnessError("missing option --metric NAME (or a --profile whose metrics key names them)")
    options = RunOptions(
        mode=mode,
        concurrency=v["concurrency"],
        queue=v["queue"],
        timeout=v["timeout"],
        tries=v["tries"],
        batch_timeout=v["batch_timeout"],
        rate_limit=v["rate_limit"],
        result_ttl=v["result_ttl"],
        repetitions=repetitions,
    ).validate()
    if sut and outputs_path:
        raise EvalHarnessError(
            "--sut and --outputs exclude each other: --outputs scores saved outputs without calling a SUT"
        )
    if not sut and not outputs_path:
        raise EvalHarnessError("missing option --sut MODULE:CALLABLE (or --outputs FILE to score saved outputs)")
    if outputs_path:
        # what a profile says about executing samples does not apply to saved outputs; the flags do not either
        workers = 0 if resolved.sources["workers"] == "profile" else workers
        repetitions = 1 if resolved.sources["repetitions"] == "profile" else repetitions
        if repetitions > 1:
            raise EvalHarnessError(
                "--repetitions does not apply with --outputs: a file of saved outputs has one output per sample"
            )
    if outputs_path and workers:
        raise EvalHarnessError("--workers does not apply with --outputs: saved outputs need no workers")
    full = load_dataset(dataset, input_col=input_col, expected_col=expected_col)
    data, subset = select_samples(full, limit=limit, sample_ids=sample_ids, shuffle=shuffle, seed=seed)
    try:
        scorers = resolve_metrics(metrics, config=config.metrics, context=metric_context(config.providers))
    except MetricError as exc:
        if resolved.sources["metrics"] != "profile":
            raise
        raise profile_metrics_error(str(config.path), str(profile), exc) from None
    self_judging = warn_self_judging(scorers, sut)
    additions: dict[str, Any] = {"subset": subset.to_json()} if subset else {}
    if profile is not None:
        # saved outputs are scored, not executed: what a profile says of executing them was not applied
        additions["profile"] = resolved.to_json(unused=SAMPLE_EXECUTION if outputs_path else ())
    extras = check_run_extras(extra, config, [s.name for s in scorers], sut)
    if outputs_path:
        result, outputs_info = score_saved_outputs(full, data, subset, outputs_path)
        additions["outputs"] = outputs_info
        if extras.needs_redis:
            prepare(extras, settings_from(ctx).redis_url, settings_from(ctx).prefix, data, None)
        judged = prepare_scores(scorers, result)  # saved outputs have no queue: judged here
        if judged is not None:
            additions["judges"] = judged
        code = present(
            result,
            data,
            f"outputs:{outputs_path}",
            "outputs",
            {"mode": "outputs", "outputs": outputs_path},
            scorers,
            json_path,
            formats=formats,
            additions=additions,
            extras=extras,
        )
        raise SystemExit(code)
    assert sut is not None
    load_sut(sut)
    if mode == "serial" and workers:
        raise EvalHarnessError("--workers only applies to --batch lazy-parallel")
    record_extra = {"subset": json.dumps(additions["subset"])} if subset else {}
    record_extra.update(
        resume_fields(
            dataset,
            data,
            sut,
            subset,
            metrics,
            repetitions,
            profile,
            json_path,
            formats,
            input_col,
            expected_col,
            cache=extras.cache,
            budget_usd=extras.budget_limit,
        )
    )
    units = expand(data, repetitions)
    extras.repetitions = repetitions
    fingerprint = load_sut_code(sut).fingerprint
    settings = settings_from(ctx) if extras.needs_redis else None
    # the baseline and the cached outputs are read before anything is dispatched
    prepare(extras, settings.redis_url if settings else "", settings.prefix if settings else "", units, fingerprint)
    interrupt = Interrupt()
    with catching_signals(interrupt):
        result = execute(
            ctx,
            units,
            sut,
            options,
            workers=workers,
            quiet=quiet,
            interrupt=interrupt,
            metrics=[s.name for s in scorers],
            progress_interval=progress_interval,
            record_extra=record_extra,
            extras=extras,
            scorers=scorers,
            additions=additions,
        )
        result.diagnostics.extend(self_judging)
        code = finish(
            result, data, sut, options, scorers, json_path, formats=formats, additions=additions, extras=extras
        )
    if result.interrupted:
        # The report is written; a SUT thread a signal could not stop must not hold the exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


SIGNAL_EXIT = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


@contextlib.contextmanager
def catching_signals(interrupt: Interrupt) -> Iterator[None]:
    """SIGINT and SIGTERM trip ``interrupt`` (instead of raising KeyboardInterrupt or ending the
    process) while a run executes and writes its report."""

    def handle(signum: int, _frame: Any) -> None:
        interrupt.trip(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def score_saved_outputs(
    full: Dataset, data: Dataset, subset: Subset | None, path: str
) -> tuple[RunResult, dict[str, Any]]:
    """The outcomes of ``data`` (``full`` or a subset of it) from a file of saved outputs."""
    started = time.time()
    saved = load_outputs(path, full)
    positions = subset.positions if subset is not None else tuple(range(len(full.samples)))
    outcomes = []
    for index, (position, sample) in enumerate(zip(positions, data.samples, strict=True)):
        output = saved.get(position)
        error = (
            None if output is not None else {"kind": "no_output", "message": f"{path} has no output for this sample"}
        )
        outcomes.append(SampleOutcome(index, sample, output, error, None))
    matched = sum(1 for o in outcomes if o.output is not None)
    info = {"path": path, "lines": len(saved), "matched": matched, "missing": len(outcomes) - matched}
    return RunResult(new_job_id(), outcomes, started, time.time()), info


def execute(
    ctx: click.Context,
    data: Any,
    sut: str,
    options: RunOptions,
    *,
    workers: int = 0,
    quiet: bool = False,
    interrupt: Interrupt | None = None,
    metrics: Sequence[str] = (),
    progress_interval: float = DEFAULT_PLAIN_INTERVAL,
    record_extra: dict[str, str] | None = None,
    resume: Continuation | None = None,
    extras: RunExtras | None = None,
    scorers: Sequence[Any] = (),
    additions: dict[str, Any] | None = None,
) -> RunResult:
    console = Console(stderr=True)
    label = f"{data.name} ({options.mode})"
    if options.repetitions > 1:
        # the line counts executions; the report counts samples
        samples = len(data.samples) // options.repetitions
        label = f"{data.name} ({options.mode}, {samples} samples × {options.repetitions} repetitions)"
    with RunProgress(console, label, len(data.samples), enabled=not quiet, interval=progress_interval) as shown:
        progress = shown.done
        budget = extras.budget if extras is not None else None
        prefilled = extras.prefilled if extras is not None else None
        # what a resumed run collected before and what the cache answers are no part of the rate
        # (a serial run counts its cached samples as its loop passes them, so there they count)
        if options.mode != "serial":
            already = set(resume.results if resume is not None else ()) | set(prefilled or ())
            shown.update(since=len(already))
        if budget is not None:
            budget.on_change = lambda spent: shown.update(spent_usd=spent)
            if budget.limit_usd != float("inf"):
                shown.update(budget_usd=budget.limit_usd)
        if options.mode == "serial":
            result = asyncio.run(run_serial(data, sut, options, progress, interrupt, prefilled, budget))
            _judged(additions, prepare_scores(scorers, result))
            return result
        settings = settings_from(ctx)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            if workers and len(prefilled or {}) < len(data.samples):  # a run served whole by the cache needs none
                # local workers serve the judge queues too, so judge calls run as jobs on them
                queues = list(dict.fromkeys([options.queue, *(j.queue for j in judge_scorers(scorers))]))
                cmd = worker_command(queues, max(1, -(-options.concurrency // workers)))
                procs = [subprocess.Popen(cmd, env=child_env(settings)) for _ in range(workers)]
                asyncio.run(_until_stopped(wait_for_workers(settings, options.queue, workers, procs), interrupt))
            result = asyncio.run(
                _parallel(
                    settings.redis_url,
                    settings.prefix,
                    data,
                    sut,
                    options,
                    progress,
                    interrupt,
                    metrics,
                    shown if shown.enabled else None,
                    record_extra,
                    resume,
                    prefilled,
                    budget,
                    computed_here(scorers),
                )
            )
            _judged(
                additions,
                prepare_scores(
                    scorers,
                    result,
                    redis_url=settings.redis_url,
                    prefix=settings.prefix,
                    result_ttl=options.result_ttl,
                    budget=options.batch_timeout,
                ),
            )
            return result
        finally:
            _stop_local_workers(procs, options.timeout + 5, interrupt)


def _judged(additions: dict[str, Any] | None, judged: dict[str, Any] | None) -> None:
    if additions is not None and judged is not None:
        additions["judges"] = judged


async def _until_stopped(work: Any, interrupt: Interrupt | None) -> None:
    if interrupt is None:
        await work
        return
    interrupt.bind()
    try:
        await interrupt.until_stopped(work)
    finally:
        interrupt.unbind()


def _stop_local_workers(procs: list[subprocess.Popen[bytes]], grace: float, interrupt: Interrupt | None) -> None:
    """Stop the workers ``--workers`` started: they finish their running samples within ``grace``,
    unless the run was interrupted twice, which kills them at once."""
    if interrupt is None:
        stop_processes(procs, grace=grace)
        return
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline and not interrupt.hurried:
        time.sleep(0.05)  # polling the children and the second signal, both with a deadline
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


async def _parallel(
    url: str,
    prefix: str,
    data: Any,
    sut: str,
    options: RunOptions,
    progress: Any,
    interrupt: Interrupt | None = None,
    metrics: Sequence[str] = (),
    shown: RunProgress | None = None,
    record_extra: dict[str, str] | None = None,
    resume: Continuation | None = None,
    prefilled: Any = None,
    budget: Any = None,
    live: Sequence[Any] = (),
) -> RunResult:
    client = async_client(url)
    watch = watcher = None
    if shown is not None:
        queue_ = Queue(client, prefix)
        watch = BatchWatch(shown, queue_, Batches(client, prefix, queue_), options.queue)
        watcher = asyncio.ensure_future(watch.run())
    release = asyncio.Event()
    claims: list[asyncio.Future[None]] = []

    def batch_created(batch_id: str) -> None:
        if watch is not None:
            watch.batch_id = batch_id
        # while this producer lives, `run --resume` of its run is refused (core/resume.py)
        claims.append(
            asyncio.ensure_future(hold_claim(client, prefix, run_id_of_batch(batch_id), options.result_ttl, release))
        )

    try:
        return await run_lazy_parallel(
            client,
            prefix,
            data,
            sut,
            options,
            progress,
            interrupt,
            metrics,
            watch=batch_created,
            record_extra=record_extra,
            resume=resume,
            prefilled=prefilled,
            budget=budget,
            live_scorers=live,
        )
    finally:
        release.set()
        for claim in claims:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await claim
        if watch is not None and watcher is not None:
            await watch.stop(watcher)
            if not (interrupt is not None and interrupt.hurried):
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await watch.refresh()  # the last line shows the final counts
        await client.aclose()


def finish(
    result: RunResult,
    data: Any,
    sut: str,
    options: RunOptions,
    scorers: Any,
    json_path: str | None,
    *,
    formats: dict[str, str | None] | None = None,
    additions: dict[str, Any] | None = None,
    extras: RunExtras | None = None,
) -> int:
    """Keep the run's fresh outputs in the cache (with --cache), then report it: what a run and
    a resumed run both end with."""
    if extras is not None:
        store_outputs(extras, result.outcomes)
    return present(
        result,
        data,
        sut,
        options.mode,
        options.to_json(),
        scorers,
        json_path,
        formats=formats,
        additions=additions,
        extras=extras,
    )


def present(
    result: RunResult,
    data: Any,
    sut: str,
    mode: str,
    options: dict[str, Any],
    scorers: Any,
    json_path: str | None,
    extra: dict[str, Any] | None = None,
    *,
    formats: dict[str, str | None] | None = None,
    additions: dict[str, Any] | None = None,
    extras: RunExtras | None = None,
) -> int:
    """Score, print and write the report of a run (JSON and the ``formats``: md, html, csv,
    junit -> file); returns the run's exit code.  ``extra`` marks a rebuilt report, ``additions``
    are more keys of the run's own report (its subset)."""
    if extras is not None:
        scorers = extras.metered(scorers)
    fields = {
        "run_id": result.run_id,
        "dataset": data,
        "sut": sut,
        "mode": mode,
        "options": options,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "outcomes": result.outcomes,
        "scorers": scorers,
    }
    report = build_run_report(**fields, repetitions=int(options.get("repetitions") or 1))
    if result.diagnostics:
        report["diagnostics"] = list(result.diagnostics)
    if result.batch_id:
        report["batch"] = result.batch_id
    if result.interrupted:
        report["interrupted"] = {"signal": result.interrupted, "exit_code": SIGNAL_EXIT.get(result.interrupted, 130)}
    report.update(additions or {})
    report.update(extra or {})
    if result.sut_fingerprint:
        report["sut_fingerprint"] = result.sut_fingerprint
    if extras is not None:
        decorate(extras, report, data)  # cost, cache, budget, comparison and gates (extras.py)
    render_report(report, Console())
    if extras is not None:
        render(extras, report, Console())
    for line in result.diagnostics:
        click.echo(f"warning: {line}", err=True)
    unwritten = 0
    for fmt, path in [("json", json_path), *(formats or {}).items()]:
        if not path:
            continue
        try:
            if fmt == "json":
                write_report(report, Path(path))
            else:
                write_formats(report, {fmt: path})
        except OSError as exc:  # checked before the run; the disk filled or the directory went since
            unwritten += 1
            click.echo(f"error: --{fmt} {path}: the report could not be written ({exc.strerror or exc})", err=True)
            if result.batch_id:
                click.echo(f"  `evalharness report {result.run_id} --{fmt} FILE` writes it from Redis", err=True)
        else:
            click.echo(f"report written to {path}", err=True)
    if result.interrupted and extra is None:
        # the run itself was stopped by this signal (a rebuilt report just scores what is there)
        return SIGNAL_EXIT.get(result.interrupted, 130)
    code = 0 if report_ok(report) and not unwritten else 1
    return code if extras is None else exit_code(extras, code)
