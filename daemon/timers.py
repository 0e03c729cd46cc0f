"""The workers' event loop: timers fire when they are due, not up to a millisecond later.

asyncio waits for its next timer with ``epoll_wait``, whose timeout is in whole milliseconds,
and ``selectors`` rounds each wait up: a job's ``asyncio.sleep(0.05)`` that is due in 49.97 ms
wakes at 50 ms, and twenty jobs started a few microseconds apart each wake on a rounded-up
boundary.  A worker's jobs wait on timers all the time (a provider's latency, a back-off, a
rate-limit wait), and a slot that frees late starts its next job late.  So a worker waits the
whole milliseconds with ``epoll_wait`` and the rest with ``select`` on the epoll descriptor
(readable as soon as any registered descriptor is), whose timeout is in microseconds.
"""

from __future__ import annotations

import asyncio
import math
import select
import selectors
import time
from collections.abc import Coroutine
from select import select as _select
from typing import Any, TypeVar

T = TypeVar("T")


class PreciseEpollSelector(selectors.EpollSelector):
    """``EpollSelector`` that waits out a timeout's sub-millisecond remainder instead of rounding
    the whole wait up to the next millisecond.  It never returns before the timeout unless a
    descriptor is ready, as the one it replaces."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return super().select(timeout)
        deadline = time.monotonic() + timeout
        whole = math.floor(timeout * 1e3)
        if whole:
            # epoll's own rounding goes up to the next millisecond, and a float that is a whole
            # number of milliseconds (0.009 s) often lands just above it: half a millisecond
            # less rounds to exactly `whole`
            ready = self._poll((whole - 0.5) * 1e-3)
            if ready:
                return ready
        rest = deadline - time.monotonic()
        if rest > 0:
            try:
                _select([self.fileno()], [], [], rest)  # readable once epoll has an event
            except ValueError:  # a descriptor past select()'s limit (1024): wait as asyncio would
                return super().select(rest)
        return self._poll(0)

    def _poll(self, seconds: float) -> list[tuple[selectors.SelectorKey, int]]:
        """One ``epoll_wait`` of ``seconds`` (rounded up to the millisecond by epoll), its events
        mapped to keys as ``EpollSelector.select`` maps them; called directly because that method
        rounds the timeout up once more before epoll does."""
        try:
            fd_events = self._selector.poll(seconds, max(len(self._fd_to_key), 1))  # type: ignore[attr-defined]
        except InterruptedError:
            return []
        ready = []
        for fd, event in fd_events:
            events = 0
            if event & ~select.EPOLLIN:
                events |= selectors.EVENT_WRITE
            if event & ~select.EPOLLOUT:
                events |= selectors.EVENT_READ
            key = self._key_from_fd(fd)  # type: ignore[attr-defined]
            if key:
                ready.append((key, events & key.events))
        return ready


def precise_loop() -> asyncio.AbstractEventLoop:
    """A new event loop on :class:`PreciseEpollSelector` (asyncio's default where there is no epoll)."""
    if not hasattr(selectors, "EpollSelector"):
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(PreciseEpollSelector())


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a :func:`precise_loop`."""
    with asyncio.Runner(loop_factory=precise_loop) as runner:
        return runner.run(main)
