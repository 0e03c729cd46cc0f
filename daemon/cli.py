"""The ``evalharness`` command: run evaluations, run workers, manage the embedded server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evalharness.core.config import ENV_CONFIG, ENV_PREFIX, ENV_REDIS_URL, load_config, resolve_state_dir
from evalharness.core.connection import async_client, redact_url
from evalharness.core.datasets import load_dataset
from evalharness.core.embedded import EmbeddedServer, find_server_binary
from evalharness.core.errors import EvalHarnessError
from evalharness.core.evaljobs import DEFAULT_EVAL_QUEUE
from evalharness.core.evalrun import RunOptions, RunResult, run_lazy_parallel, run_serial
from evalharness.core.examples import EXAMPLE_DATASET, EXAMPLE_HTTP_SUT
from evalharness.core.examples.http_sut import ENV_PROVIDER_URL
from evalharness.core.examples.provider import SimulatedProvider
from evalharness.core.report import build_report, render_report, report_ok, write_report
from evalharness.core.scorers import resolve_metrics
from evalharness.core.sut import load_sut

from .common import (
    child_env,
    fail,
    reports_dir,
    settings_from,
    setup_logging,
    stop_processes,
    wait_for_workers,
    worker_command,
)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn a known error into ``error: message`` on stderr and its exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EvalHarnessError as exc:
            fail(exc)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--redis-url", envvar=ENV_REDIS_URL, help=f"Redis URL (redis://, rediss://, unix://). Env {ENV_REDIS_URL}; default: the embedded server.")
@click.option("--prefix", envvar=ENV_PREFIX, help=f"Key prefix shared by producers, workers and consoles (default eh). Env {ENV_PREFIX}.")
@click.option("--config", "config", envvar=ENV_CONFIG, type=click.Path(dir_okay=False), help=f"Config file (TOML). Env {ENV_CONFIG}; default ./evalharness.toml when present.")
@click.option("--log-level", envvar="EVALHARNESS_LOG_LEVEL", default="warning", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]), help="Env EVALHARNESS_LOG_LEVEL.")
@click.version_option(package_name="evalharness")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, prefix: str | None, config: str | None, log_level: str) -> None:
    """Run LLM/RAG evaluations as queued work on Redis.

    \b
    Quick start:
      evalharness demo                        # everything, with the bundled example
      evalharnessd --queue evals=2 &          # workers, supervised
      evalharness run data.jsonl --sut mybot:answer --metric exact-match
    """
    setup_logging(log_level)
    ctx.obj = {"redis_url": redis_url, "prefix": prefix, "config": config}


# -- run ----------------------------------------------------------------------------------


@cli.command()
@click.argument("dataset", type=click.Path(dir_okay=False))
@click.option("--sut", required=True, metavar="MODULE:CALLABLE", help="The system under test: takes a sample's input, returns the output text (sync or async).")
@click.option("--metric", "metrics", multiple=True, required=True, metavar="NAME", help="A scorer, e.g. exact-match or contains. Repeat for several.")
@click.option("--batch", "mode", type=click.Choice(["serial", "lazy-parallel"]), default="lazy-parallel", show_default=True, help="serial: in this process, one sample at a time. lazy-parallel: one job per sample on the queue.")
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True, help="Samples in flight at once (lazy-parallel).")
@click.option("--queue", default=DEFAULT_EVAL_QUEUE, show_default=True, help="Queue the sample jobs go to.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True, help="Seconds one attempt of one sample may take.")
@click.option("--tries", type=click.IntRange(min=1), default=3, show_default=True, help="Attempts per sample; 429 releases do not count.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the JSON report (schema evalharness.report.v1) here.")
@click.option("--workers", type=click.IntRange(min=0), default=0, help="Start N local worker processes for this run (no daemon needed).")
@click.option("--batch-timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds for the whole run (dispatch and collection); missing samples are reported.")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), help="Most samples dispatched per second.")
@click.option("--result-ttl", type=click.IntRange(min=1), default=86_400, show_default=True, help="Seconds Redis keeps the run's outputs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, dataset: str, sut: str, metrics: tuple[str, ...], mode: str, concurrency: int, queue: str, timeout: float, tries: int, json_path: str | None, workers: int, batch_timeout: float | None, rate_limit: float | None, result_ttl: int, quiet: bool) -> None:
    """Evaluate DATASET (.jsonl, .yaml) against a SUT and print the report.

    Exit status: 0 every sample scored, 1 some samples failed, 2 bad input
    (dataset, SUT, metric, option), 3 Redis or workers unavailable.
    """
    options = RunOptions(mode=mode, concurrency=concurrency, queue=queue, timeout=timeout, tries=tries, batch_timeout=batch_timeout, rate_limit=rate_limit, result_ttl=result_ttl).validate()
    data = load_dataset(dataset)
    scorers = resolve_metrics(metrics)
    load_sut(sut)
    if mode == "serial" and workers:
        raise EvalHarnessError("--workers only applies to --batch lazy-parallel")
    result = execute(ctx, data, sut, options, workers=workers, quiet=quiet)
    code = finish(result, data, sut, options, scorers, json_path)
    raise SystemExit(code)


def execute(ctx: click.Context, data: Any, sut: str, options: RunOptions, *, workers: int = 0, quiet: bool = False) -> RunResult:
    console = Console(stderr=True)
    show = not quiet and console.is_terminal
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=not show, transient=True) as bar:
        task = bar.add_task(f"{data.name} ({options.mode})", total=len(data.samples))

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done)

        if options.mode == "serial":
            return asyncio.run(run_serial(data, sut, options, progress))
        settings = settings_from(ctx)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            if workers:
                cmd = worker_command([options.queue], max(1, -(-options.concurrency // workers)))
                procs = [subprocess.Popen(cmd, env=child_env(settings)) for _ in range(workers)]
                asyncio.run(wait_for_workers(settings, options.queue, workers, procs))
            return asyncio.run(_parallel(settings.redis_url, settings.prefix, data, sut, options, progress))
        finally:
            stop_processes(procs, grace=options.timeout + 5)


async def _parallel(url: str, prefix: str, data: Any, sut: str, options: RunOptions, progress: Any) -> RunResult:
    client = async_client(url)
    try:
        return await run_lazy_parallel(client, prefix, data, sut, options, progress)
    finally:
        await client.aclose()


def finish(result: RunResult, data: Any, sut: str, options: RunOptions, scorers: Any, json_path: str | None) -> int:
    report = build_report(
        run_id=result.run_id,
        dataset=data,
        sut=sut,
        mode=options.mode,
        options=options.to_json(),
        started_at=result.started_at,
        finished_at=result.finished_at,
        outcomes=result.outcomes,
        scorers=scorers,
    )
    if result.diagnostics:
        report["diagnostics"] = list(result.diagnostics)
    if result.batch_id:
        report["batch"] = result.batch_id
    render_report(report, Console())
    for line in result.diagnostics:
        click.echo(f"warning: {line}", err=True)
    if json_path:
        write_report(report, Path(json_path))
        click.echo(f"report written to {json_path}", err=True)
    return 0 if report_ok(report) else 1


# -- work ---------------------------------------------------------------------------------


@cli.command()
@click.option("--queue", "queues", multiple=True, required=True, help="Queue to serve; repeat for several, highest priority first.")
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True, help="Jobs run at once in this process.")
@click.option("--import", "imports", multiple=True, metavar="MODULE", help="Module that registers jobs; repeat for several.")
@click.option("--lease", type=click.FloatRange(min=1), default=30.0, show_default=True, help="Seconds a job's reservation lasts without renewal (renewed every lease/3).")
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True, help="Seconds in-flight jobs get to finish after SIGTERM.")
@click.option("--max-jobs", type=click.IntRange(min=0), default=0, help="Exit cleanly after this many jobs (0: no limit).")
@click.option("--max-time", type=click.FloatRange(min=0), default=0, help="Exit cleanly after this many seconds (0: no limit).")
@click.option("--memory", type=click.FloatRange(min=0), default=0, help="Exit cleanly once resident memory passes this many MB (0: no limit).")
@click.option("--hard-timeout", type=click.FloatRange(min=0), default=0, help="No job may run longer than this, whatever its own timeout; must be above every job timeout (0: off).")
@click.option("--telemetry/--no-telemetry", default=True, show_default=True, help="Record per-minute counters and runtime histograms (O(1) per job).")
@click.option("--paused", is_flag=True, help="Start paused: take no job until SIGCONT.")
@click.option("--sleep", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Longest idle wait before housekeeping (due delayed jobs, lapsed leases); a dispatch wakes the worker at once.")
@click.option("--cancel-grace", type=click.FloatRange(min=0), default=10.0, show_default=True, help="Seconds a cancelled sync job gets to return before the process is replaced (exit 70).")
@click.pass_context
@handle_errors
def work(ctx: click.Context, queues: tuple[str, ...], concurrency: int, imports: tuple[str, ...], lease: float, grace: float, max_jobs: int, max_time: float, memory: float, hard_timeout: float, telemetry: bool, paused: bool, sleep: float, cancel_grace: float) -> None:
    """Run a worker process serving QUEUEs until SIGTERM/SIGINT.

    On SIGTERM the worker stops taking jobs, lets running ones finish within
    --grace seconds, and gives the rest back to the queue.  SIGUSR2 pauses it
    (running jobs go on, no new ones start); SIGCONT continues.  --max-jobs,
    --max-time and --memory make it exit cleanly (code 0) after its in-flight
    jobs, for a supervisor to replace it.  A sync job past its timeout cannot be
    cancelled: it is recorded as timed out and the process exits with code 70
    after giving its other jobs back, to be replaced.  A job cancelled by an
    operator (evalharness job cancel, batch cancel) is stopped at the next lease
    renewal: an async one at once, a sync one when it returns or, after
    --cancel-grace seconds, by the same replacement.
    """
    from evalharness.core.config import validate_name

    from .worker import WorkerOptions, run_worker

    for q in queues:
        validate_name("queue", q)
    settings = settings_from(ctx, imports)
    options = WorkerOptions(
        queues=queues, concurrency=concurrency, lease=lease, grace=grace, max_jobs=max_jobs,
        max_time=max_time, memory=memory, hard_timeout=hard_timeout, telemetry=telemetry, poll=sleep,
        cancel_grace=cancel_grace,
    )
    raise SystemExit(asyncio.run(run_worker(settings.redis_url, settings.prefix, options, settings.imports, paused=paused)))


# -- demo ---------------------------------------------------------------------------------


@cli.command()
@click.option("--processes", type=click.IntRange(min=1), default=2, show_default=True, help="Worker processes the daemon starts.")
@click.option("--concurrency", type=click.IntRange(min=1), default=40, show_default=True, help="Samples in flight.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, processes: int, concurrency: int) -> None:
    """Evaluate the bundled 200-question dataset against a simulated LLM provider.

    Starts the embedded Redis (unless one is configured), a simulated provider
    on 127.0.0.1 (50-500 ms latency, some 429s with Retry-After and some 503s),
    and evalharnessd with worker processes; runs a lazy-parallel evaluation,
    prints the report, writes the JSON report under ./reports/, and stops what
    it started.
    """
    obj = ctx.find_root().obj
    config = load_config(obj.get("config"))
    state_dir = resolve_state_dir(config)
    server = EmbeddedServer(state_dir)
    started_server = not (obj.get("redis_url") or config.redis_url or os.environ.get(ENV_REDIS_URL)) and not server.is_running()
    settings = settings_from(ctx)
    err = Console(stderr=True)
    where = "embedded server in " + str(state_dir) if settings.embedded else redact_url(settings.redis_url)
    err.print(f"[bold]evalharness demo[/] – Redis: {where}")
    queue = DEFAULT_EVAL_QUEUE
    provider = SimulatedProvider().start()
    os.environ[ENV_PROVIDER_URL] = provider.url
    err.print(f"simulated provider: {provider.url} (latency 50-500 ms, ~3% 429, ~2% 503)")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "evalharness.daemon.master", "--log-level", "warning", "--queue", f"{queue}={processes}", "--concurrency", str(-(-concurrency // processes))],
        env=child_env(settings),
    )
    try:
        asyncio.run(wait_for_workers(settings, queue, processes, [daemon]))
        err.print(f"evalharnessd (pid {daemon.pid}) is running {processes} worker processes on queue {queue!r}")
        data = load_dataset(EXAMPLE_DATASET)
        scorers = resolve_metrics(["exact-match", "contains"])
        options = RunOptions(concurrency=concurrency, queue=queue, timeout=30, tries=3, backoff=(0.5, 1.0, 2.0)).validate()
        result = execute(ctx, data, EXAMPLE_HTTP_SUT, options)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = reports_dir() / f"demo-{stamp}.json"
        code = finish(result, data, EXAMPLE_HTTP_SUT, options, scorers, str(path))
        stats = provider.stats()
        err.print(
            f"provider answered {stats['requests']} requests: "
            + ", ".join(f"{n}x HTTP {s}" for s, n in stats["by_status"].items())
            + " (429s were released without using a try; 503s were retried)"
        )
    finally:
        provider.stop()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        if started_server:
            server.stop()
    raise SystemExit(code)


# -- server -------------------------------------------------------------------------------


@cli.group()
def server() -> None:
    """The embedded Redis server (a private Valkey/Redis on a unix socket)."""


def _embedded(ctx: click.Context) -> EmbeddedServer:
    config = load_config(ctx.find_root().obj.get("config"))
    return EmbeddedServer(resolve_state_dir(config))


@server.command("start")
@click.pass_context
@handle_errors
def server_start(ctx: click.Context) -> None:
    """Start the embedded server (or reuse the running one) and print its URL."""
    srv = _embedded(ctx)
    url = srv.ensure()
    click.echo(url)


@server.command("stop")
@click.pass_context
@handle_errors
def server_stop(ctx: click.Context) -> None:
    """Stop the embedded server; its data stays on disk (append-only file)."""
    srv = _embedded(ctx)
    if not srv.is_running():
        click.echo("the embedded server is not running")
        return
    srv.stop()
    click.echo("stopped")


@server.command("status")
@click.pass_context
@handle_errors
def server_status(ctx: click.Context) -> None:
    """Say whether the embedded server runs; exit 0 when it does, 1 when not."""
    srv = _embedded(ctx)
    running = srv.is_running()
    try:
        binary = find_server_binary()
    except EvalHarnessError as exc:
        binary = f"not found ({exc})"
    click.echo(f"state directory: {srv.state_dir}\nbinary: {binary}")
    click.echo(f"running: pid {srv.pid()}, {srv.url}" if running else "not running")
    raise SystemExit(0 if running else 1)


def _register_groups() -> None:
    from .cli_batch import batch
    from .cli_config import config
    from .cli_control import continue_, pause, restart, scale, supervisors, terminate
    from .cli_failed import failed
    from .cli_jobs import job, jobs
    from .cli_status import metrics, status

    cli.add_command(batch)
    cli.add_command(config)
    for command in (pause, continue_, terminate, restart, scale, supervisors):
        cli.add_command(command)
    cli.add_command(failed)
    cli.add_command(job)
    cli.add_command(jobs)
    cli.add_command(status)
    cli.add_command(metrics)


_register_groups()


def main() -> None:
    import redis.exceptions

    try:
        cli(prog_name="evalharness")
    except EvalHarnessError as exc:
        fail(exc)
    except redis.exceptions.ConnectionError as exc:
        click.echo(f"error: cannot reach Redis: {exc}", err=True)
        raise SystemExit(3) from None
    except redis.exceptions.RedisError as exc:
        click.echo(f"error: Redis refused the command: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(3) from None


if __name__ == "__main__":
    main()
