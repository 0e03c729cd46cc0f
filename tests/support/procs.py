"""Helpers for tests that run real processes: polling with a deadline, starting workers and
CLI commands with the test's Redis, and cleaning up every child."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

PYTHON = sys.executable


def wait_until(predicate: Callable[[], object], deadline: float = 10.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy, or fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {deadline:g}s")
        time.sleep(0.02)


async def until(predicate: Any, deadline: float = 30.0, what: str = "condition") -> Any:
    """The async form of :func:`wait_until`: call ``predicate`` (a coroutine function, or a quick
    sync read such as a Redis call) until it returns something truthy, or fail after ``deadline``
    seconds; the loop stays free for an in-process worker in between."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {deadline:g}s")
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_output(proc: subprocess.Popen[str], text: str, deadline: float = 10.0) -> str:
    """Read ``proc``'s stderr until a line containing ``text`` appears (returned), or fail after
    ``deadline`` seconds.  Lines read are consumed."""
    assert proc.stderr is not None
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        line = proc.stderr.readline()
        if not line:
            break
        if text in line:
            return line
    raise AssertionError(f"{text!r} not written within {deadline:g}s")


class Processes:
    """Starts child processes for a test and makes sure none outlives it."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
        # Each child leads its own process group, so cleaning up also reaches its children
        # (a daemon's workers) and a signal meant for a group never reaches the test runner.
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(
            [PYTHON, *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )
        self.started.append(proc)
        return proc

    def worker(
        self,
        *queues: str,
        concurrency: int = 10,
        lease: float = 30,
        grace: float = 30,
        imports: tuple[str, ...] = ("support.testjobs",),
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        args = [
            "-m",
            "evalharness.cli",
            "--log-level",
            "info",
            "work",
            "--concurrency",
            str(concurrency),
            "--lease",
            str(lease),
            "--grace",
            str(grace),
        ]
        for q in queues:
            args += ["--queue", q]
        for m in imports:
            args += ["--import", m]
        return self.start(*args, env=env)

    def cli(
        self, *args: str, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # The timeout only ends a command that would never finish: with the suite's processes
        # sharing two cores, a `run` that takes 5 s alone can take a minute.
        return subprocess.run(
            [PYTHON, "-m", "evalharness.cli", *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli_here(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """:meth:`cli` without the process: ``main()`` run in this one (support.clihere)."""
        from .clihere import cli_here

        return cli_here({**self.env, **(env or {})}, self.cwd, *args)

    async def acli_here(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """:meth:`cli_here` from an async test, its event loop running on meanwhile."""
        from .clihere import acli_here

        return await acli_here({**self.env, **(env or {})}, self.cwd, *args)

    def stop_all(self) -> None:
        """SIGTERM every child's process group, then SIGKILL what is left after a few seconds."""
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.started:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)


def live_workers(url: str, queue: str, prefix: str = "eh") -> int:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return int(client.zcount(f"{prefix}:{{q:{queue}}}:workers", int(time.time() * 1000), "+inf"))
    finally:
        client.close()
