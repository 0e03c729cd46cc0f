"""``evalharness demo``: the bundled example end to end, with a simulated provider."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import click
from rich.console import Console

from evalharness.core.config import ENV_REDIS_URL, load_config, resolve_state_dir
from evalharness.core.connection import redact_url
from evalharness.core.datasets import (
    load_dataset,
)
from evalharness.core.embedded import EmbeddedServer
from evalharness.core.evalrun import (
    RunOptions,
)
from evalharness.core.scorers import resolve_metrics
from evalharness.daemon.common import (
    child_env,
    reports_dir,
    wait_for_workers,
)

from .common import handle_errors, settings_from
from .run import execute, finish

DEMO_QUEUE = "demo"  # the demo's own queue (see below)

# -- demo ---------------------------------------------------------------------------------


@click.command()
@click.option(
    "--processes", type=click.IntRange(min=1), default=2, show_default=True, help="Worker processes the daemon starts."
)
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
    from evalharness.core.examples import EXAMPLE_DATASET, EXAMPLE_HTTP_SUT
    from evalharness.core.examples.http_sut import ENV_PROVIDER_URL
    from evalharness.core.examples.provider import SimulatedProvider

    obj = ctx.find_root().obj
    config = load_config(obj.get("config"))
    state_dir = resolve_state_dir(config)
    server = EmbeddedServer(state_dir)
    started_server = (
        not (obj.get("redis_url") or config.redis_url or os.environ.get(ENV_REDIS_URL)) and not server.is_running()
    )
    settings = settings_from(ctx)
    err = Console(stderr=True)
    where = "embedded server in " + str(state_dir) if settings.embedded else redact_url(settings.redis_url)
    err.print(f"[bold]evalharness demo[/] – Redis: {where}")
    # a queue of its own: a daemon already serving `evals` (a user's, with its own SUTs) would
    # otherwise take samples whose simulated provider only this process knows
    queue = DEMO_QUEUE
    provider = SimulatedProvider().start()
    os.environ[ENV_PROVIDER_URL] = provider.url
    err.print(f"simulated provider: {provider.url} (latency 50-500 ms, ~3% 429, ~2% 503)")
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evalharness.daemon.master",
            "--log-level",
            "warning",
            "--queue",
            f"{queue}={processes}",
            "--concurrency",
            str(-(-concurrency // processes)),
        ],
        env=child_env(settings),
    )
    try:
        asyncio.run(wait_for_workers(settings, queue, processes, [daemon]))
        err.print(f"evalharnessd (pid {daemon.pid}) is running {processes} worker processes on queue {queue!r}")
        data = load_dataset(EXAMPLE_DATASET)
        scorers = resolve_metrics(["exact-match", "contains"])
        options = RunOptions(
            concurrency=concurrency, queue=queue, timeout=30, tries=3, backoff=(0.5, 1.0, 2.0)
        ).validate()
        result = execute(ctx, data, EXAMPLE_HTTP_SUT, options, metrics=[s.name for s in scorers])
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
