"""The real `evalharness-tui` in a pseudo-terminal against a real daemon and a running eval: open
Batches, cancel the run's batch, and see the producer exit saying its batch was cancelled and the
SUT stop being called."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pexpect
import pytest
from support.procs import Processes, live_workers, wait_until

from evalharness.core.admin import Admin
from evalharness.core.connection import async_client
from evalharness.core.examples import EXAMPLE_DATASET
from evalharness.core.telemetry import read_events

HERE = Path(__file__).parent
ANSI = re.compile(
    r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|[()][0-9A-Za-z]|[=>78DEHM])"
)
LEASE = 3.0
"""The workers' lease: they renew (and so hear of a cancel) every lease/3."""


class Terminal:
    """What the console has written so far, without its escape sequences."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.raw = ""
        self.text = ""

    def read(self) -> None:
        while True:
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=0.1)
            except (pexpect.TIMEOUT, pexpect.EOF):
                break
        # Stripped as a whole: an escape sequence may be split between two reads.
        self.text = ANSI.sub("", self.raw)

    def wait_for(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + within
        start = len(self.text)
        while True:
            self.read()
            found = re.compile(pattern).search(self.text, max(0, start - 200))
            if found:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"the console never showed {pattern!r}; last output: {self.text[-2000:]!r}")

    def press(self, keys: str) -> None:
        self.child.send(keys)


def active_batch(redis_url: str) -> tuple[str, str]:
    rows = read(redis_url, lambda client, prefix: Admin(client, prefix).batches_page("active"))
    assert len(rows) == 1, rows
    return rows[0].id, rows[0].name


def read(redis_url: str, reader: Callable[[Any, str], Awaitable[list[Any]]]) -> list[Any]:
    """What ``reader(client, prefix)`` returns, read from the test's Redis."""

    async def go() -> list[Any]:
        client = async_client(redis_url)
        try:
            return list(await reader(client, "eh"))
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.slow
def test_cancel_a_running_evals_batch_from_the_console(
    procs: Processes, tmp_path: Path, redis_url: str, child_env: dict[str, str]
) -> None:
    calls = tmp_path / "calls.txt"
    calls.touch()
    env = {"EH_TEST_CALLS": str(calls), "PYTHONPATH": f"{HERE}:{child_env['PYTHONPATH']}"}
    procs.start(
        "-m",
        "evalharness.daemon.master",
        "--queue",
        "evals=2",
        "--concurrency",
        "4",
        "--lease",
        str(LEASE),
        "--log-level",
        "warning",
        env=env,
    )
    wait_until(lambda: live_workers(redis_url, "evals") == 2, deadline=30, what="two workers")
    rows = EXAMPLE_DATASET.read_text().splitlines()[:200]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(json.loads(r)) + "\n" for r in rows))
    run = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        "console_e2e_sut:answer",
        "--metric",
        "exact-match",
        "--concurrency",
        "8",
        env=env,
    )
    wait_until(lambda: len(calls.read_text().splitlines()) >= 8, deadline=60, what="the SUT being called")
    batch_id, name = active_batch(redis_url)

    console = pexpect.spawn(
        str(Path(sys.executable).parent / "evalharness-tui"),
        [],
        env={**child_env, **env, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
        dimensions=(24, 80),
        encoding="utf-8",
        codec_errors="replace",
        cwd=str(tmp_path),
    )
    try:
        screen = Terminal(console)
        screen.wait_for(r"redis ok")
        screen.press("4")
        screen.wait_for(re.escape(name[:12]))
        screen.press("c")
        screen.wait_for(r"Removes [\d,]+ queued jobs?;")
        screen.wait_for(r"running will be told")
        screen.press("y")
        cancelled_at = time.time()
        # The toast wraps over lines: between its words there may be cursor moves and padding.
        toast = screen.wait_for(r"Cancelled[\s\S]{0,200}?removed\s+([\d,]+)\s+queued\s+jobs?,\s+([\d,]+)\s+running")
        removed, told = (int(g.replace(",", "")) for g in toast.groups())
        # The engine's own record of the cancel (the event its script wrote) has the same numbers.
        (event,) = [e for e in read(redis_url, read_events) if e.get("kind") == "batch_cancelled"]
        assert event["message"] == f"{removed} queued job(s) removed, {told} running told to stop"
        assert told > 0
        (row,) = read(redis_url, lambda client, prefix: Admin(client, prefix).batches_page("cancelled"))
        assert row.id == batch_id and row.state == "cancelled"
        out, err = run.communicate(timeout=60)
        assert run.returncode == 1, (out, err)
        assert f"the run's batch {batch_id} was cancelled" in err
        # The SUT stops being called: no call starts later than a renewal interval after the cancel,
        # however long we keep watching (a lease's length after the producer has gone).
        quiet_until = time.monotonic() + LEASE
        while time.monotonic() < quiet_until:
            last = max(float(t) for t in calls.read_text().split())
            assert last < cancelled_at + LEASE / 3 + 1.0, last - cancelled_at
            time.sleep(0.2)  # sampling the calls file, not waiting for an event
        screen.press("\x11")  # ctrl+q
        console.expect(pexpect.EOF, timeout=20)
    finally:
        if console.isalive():
            console.terminate(force=True)
