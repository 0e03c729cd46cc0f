"""The workers' event loop waits for its timers to the microsecond rather than rounding each wait
up to the next millisecond, and still wakes at once for a descriptor that becomes ready."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.dispatch import dispatch
from support.procs import Processes

from evalharness.core.keys import QueueKeys
from evalharness.daemon import timers


@pytest.fixture
def selector() -> Iterator[timers.PreciseEpollSelector]:
    sel = timers.PreciseEpollSelector()
    yield sel
    sel.close()


def test_a_wait_with_nothing_ready_never_ends_before_its_timeout(selector: timers.PreciseEpollSelector) -> None:
    a, b = socket.socketpair()
    try:
        selector.register(a, 1)  # EVENT_READ
        for timeout in (0.0004, 0.0015, 0.0125):
            t0 = time.monotonic()
            assert selector.select(timeout) == []
            assert time.monotonic() - t0 >= timeout
    finally:
        a.close()
        b.close()


class RecordingEpoll:
    """The selector's epoll object, recording the timeout of every ``epoll_wait``."""

    def __init__(self, epoll: Any) -> None:
        self.epoll = epoll
        self.timeouts: list[float] = []

    def poll(self, timeout: float, maxevents: int) -> Any:
        self.timeouts.append(timeout)
        return self.epoll.poll(timeout, maxevents)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.epoll, name)


def test_no_wait_is_rounded_up_past_its_whole_milliseconds(selector: timers.PreciseEpollSelector) -> None:
    # epoll_wait takes whole milliseconds and rounds up; 0.009 s is just above 9 ms as a float,
    # so asyncio's selector waits 10 ms for it, and 53 ms for 0.0514 s
    recorder = RecordingEpoll(selector._selector)  # type: ignore[attr-defined]
    selector._selector = recorder  # type: ignore[attr-defined]
    for timeout in (0.009, 0.0134, 0.0514, 0.0015, 0.0009):
        recorder.timeouts.clear()
        t0 = time.monotonic()
        assert selector.select(timeout) == []
        assert time.monotonic() - t0 >= timeout
        # what epoll_wait was asked for, in its own whole milliseconds (CPython rounds up)
        asked = [math.ceil(round(t * 1e3, 6)) for t in recorder.timeouts]
        assert asked[0] <= math.floor(timeout * 1e3 + 1e-9), (timeout, recorder.timeouts)
        assert all(a == 0 for a in asked[1:]), (timeout, recorder.timeouts)


def test_a_descriptor_ready_during_the_sub_millisecond_part_ends_the_wait_with_its_event(
    selector: timers.PreciseEpollSelector,
) -> None:
    a, b = socket.socketpair()
    try:
        selector.register(a, 1)
        b.send(b"x")  # ready before the wait: returned at once, whatever the remainder
        ready = selector.select(0.0005)
        assert [key.fileobj for key, _ in ready] == [a]
        a.recv(1)
        # ready while the wait is on (a thread writes after 2 ms of a 10.5 s wait)
        writer = threading.Timer(0.002, b.send, (b"y",))
        writer.start()
        t0 = time.monotonic()
        ready = selector.select(10.5)
        assert time.monotonic() - t0 < 5
        assert [key.fileobj for key, _ in ready] == [a]
        writer.join()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("entry", [("evalharness.daemon.worker",), ("evalharness.cli", "work")])
def test_both_worker_entries_run_jobs_on_the_precise_loop(r: Any, procs: Processes, entry: tuple[str, ...]) -> None:
    # the daemon starts the thin entry; `evalharness work` is the one an operator starts by hand
    dispatch(procs.env["EVALHARNESS_REDIS_URL"], {"name": "t.loop", "id": "j"}, sink="s")
    w = procs.start("-m", *entry, "--queue", "t", "--import", "support.testjobs", "--burst")
    assert w.wait(timeout=60) == 0, w.stderr.read() if w.stderr else ""
    assert json.loads(r.hget(QueueKeys("eh", "t").results("s"), "j"))["result"] == "PreciseEpollSelector"


def test_a_sleep_on_the_precise_loop_ends_at_or_after_its_time() -> None:
    async def sleeps() -> list[float]:
        out = []
        for delay in (0.0003, 0.0105, 0.02):
            t0 = time.monotonic()
            await asyncio.sleep(delay)
            out.append(time.monotonic() - t0 - delay)
        return out

    assert all(late >= 0 for late in timers.run(sleeps()))
