"""What the programs share: logging, the environment of a child program, errors turned into
messages and exit codes, and starting and stopping local worker processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalharness.core.config import ENV_PREFIX, ENV_REDIS_URL, Settings
from evalharness.core.connection import async_client
from evalharness.core.errors import EvalHarnessError, InfrastructureError
from evalharness.core.queue import Queue

from .logs import ENV_LOG_LEVEL, LOG_FORMAT, setup_logging  # noqa: F401  (the programs' names for them)


def child_env(settings: Settings) -> dict[str, str]:
    """Environment for a child program: the resolved URL travels in the environment, never in
    argv, so a password does not show in the process list."""
    env = dict(os.environ)
    env[ENV_REDIS_URL] = settings.redis_url
    env[ENV_PREFIX] = settings.prefix
    cwd = os.getcwd()
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if cwd not in paths:
        env["PYTHONPATH"] = os.pathsep.join([cwd, *paths])
    return env


def worker_command(
    queues: Sequence[str], concurrency: int, imports: Sequence[str] = (), extra: Sequence[str] = ()
) -> list[str]:
    # the thin entry: a worker process imports no CLI, report or scorer code (faster to start, smaller)
    cmd = [sys.executable, "-m", "evalharness.daemon.worker", "--concurrency", str(concurrency)]
    for q in queues:
        cmd += ["--queue", q]
    for mod in imports:
        cmd += ["--import", mod]
    return cmd + list(extra)


async def wait_for_workers(
    settings: Settings, queue: str, count: int, procs: Sequence[subprocess.Popen[Any]] = (), within: float = 30.0
) -> None:
    """Wait until ``count`` workers heartbeat for ``queue``; fail early if a child exits."""
    client = async_client(settings.redis_url)
    try:
        q = Queue(client, settings.prefix)
        deadline = time.monotonic() + within
        while await q.live_workers(queue) < count:
            for p in procs:
                if p.poll() is not None:
                    raise InfrastructureError(f"a worker process exited at start with code {p.returncode}")
            if time.monotonic() > deadline:
                raise InfrastructureError(f"workers for queue {queue!r} did not start within {within:g}s")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def stop_processes(procs: Sequence[subprocess.Popen[Any]], grace: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def exit_with_error(exc: EvalHarnessError) -> None:
    """``error: message`` on stderr, then exit with the error's code (the programs' way out)."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(exc.exit_code)


def reports_dir() -> Path:
    return Path.cwd() / "reports"
