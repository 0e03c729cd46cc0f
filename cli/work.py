"""``evalharness work``: run one worker process by hand (the daemon starts the thin entry,
``python -m evalharness.daemon.worker``, instead)."""

from __future__ import annotations

import click

from .common import handle_errors, settings_from

# -- work ---------------------------------------------------------------------------------


@click.command()
@click.option(
    "--queue",
    "queues",
    multiple=True,
    required=True,
    help="Queue to serve; repeat for several, highest priority first.",
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=10, show_default=True, help="Jobs run at once in this process."
)
@click.option(
    "--import", "imports", multiple=True, metavar="MODULE", help="Module that registers jobs; repeat for several."
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds a job's reservation lasts without renewal (renewed every lease/3).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds in-flight jobs get to finish after SIGTERM.",
)
@click.option(
    "--max-jobs", type=click.IntRange(min=0), default=0, help="Exit cleanly after this many jobs (0: no limit)."
)
@click.option(
    "--max-time", type=click.FloatRange(min=0), default=0, help="Exit cleanly after this many seconds (0: no limit)."
)
@click.option(
    "--memory",
    type=click.FloatRange(min=0),
    default=0,
    help="Exit cleanly once resident memory passes this many MB (0: no limit).",
)
@click.option(
    "--hard-timeout",
    type=click.FloatRange(min=0),
    default=0,
    help="No job may run longer than this, whatever its own timeout; must be above every job timeout (0: off).",
)
@click.option(
    "--telemetry/--no-telemetry",
    default=True,
    show_default=True,
    help="Record per-minute counters and runtime histograms (O(1) per job).",
)
@click.option("--paused", is_flag=True, help="Start paused: take no job until SIGCONT.")
@click.option(
    "--sleep",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help=(
        "Longest idle wait before housekeeping (due delayed jobs, lapsed leases); a dispatch wakes the worker at once."
    ),
)
@click.option(
    "--cancel-grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds a cancelled sync job gets to return before the process is replaced (exit 70).",
)
@click.option(
    "--burst",
    is_flag=True,
    help="Exit (code 0) once no job of its queues is ready, delayed or running here: drain the queues, then stop.",
)
@click.pass_context
@handle_errors
def work(
    ctx: click.Context,
    queues: tuple[str, ...],
    concurrency: int,
    imports: tuple[str, ...],
    lease: float,
    grace: float,
    max_jobs: int,
    max_time: float,
    memory: float,
    hard_timeout: float,
    telemetry: bool,
    paused: bool,
    sleep: float,
    cancel_grace: float,
    burst: bool,
) -> None:
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
    from evalharness.daemon import timers
    from evalharness.daemon.worker import WorkerOptions, run_worker

    for q in queues:
        validate_name("queue", q)
    settings = settings_from(ctx, imports)
    options = WorkerOptions(
        queues=queues,
        concurrency=concurrency,
        lease=lease,
        grace=grace,
        max_jobs=max_jobs,
        max_time=max_time,
        memory=memory,
        hard_timeout=hard_timeout,
        telemetry=telemetry,
        poll=sleep,
        cancel_grace=cancel_grace,
        burst=burst,
    )
    raise SystemExit(
        timers.run(run_worker(settings.redis_url, settings.prefix, options, settings.imports, paused=paused))
    )
