"""Progress of `evalharness run`: one live line on a terminal, plain periodic lines otherwise.

The counts come from two places: the run itself (samples collected) and, for a lazy-parallel run,
its batch and queue in Redis (failed, in flight, retries and rate-limit releases), read by
:func:`watch_batch` about twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from evalharness.core.batches import Batches
from evalharness.core.cost import usd
from evalharness.core.queue import Queue

DEFAULT_PLAIN_INTERVAL = 10.0


@dataclass(frozen=True)
class Counts:
    total: int
    done: int = 0  # samples with an outcome (scored or failed)
    failed: int | None = None  # of those, failed (None: not known in this mode)
    in_flight: int | None = None  # running now (held by a worker; queued ones wait behind)
    retrying: int | None = None  # retries on the run's queue since the run started
    rate_limited: int | None = None  # rate-limit (429) releases on the run's queue since then
    spent_usd: float | None = None  # the run's priced spend so far (None: nothing priced yet)
    budget_usd: float | None = None  # --budget-usd, shown next to the spend
    # outcomes there before the clock started (a resumed run's, cached ones): the rate and the
    # ETA count only what came after
    since: int = 0


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def rate_and_eta(done: int, total: int, elapsed: float, since: int = 0) -> tuple[float | None, float | None]:
    """Samples per second since the clock started (``since`` of the ``done`` were there then) and
    the seconds left at that rate (None before the first new one)."""
    if done <= since or elapsed <= 0:
        return None, None
    rate = (done - since) / elapsed
    return rate, max(0, total - done) / rate


def progress_line(label: str, counts: Counts, elapsed: float) -> str:
    """A run's one status line, for example ``capitals: 40/200 done · 2 failed · 1 retrying ·
    3 rate-limited · 10 in flight · $0.0420 spent · 12.3/s · elapsed 4s · ETA 13s``; a count that
    is not known (None) is left out."""
    parts = [f"{label}: {counts.done}/{counts.total} done"]
    for value, word in (
        (counts.failed, "failed"),
        (counts.retrying, "retrying"),
        (counts.rate_limited, "rate-limited"),
        (counts.in_flight, "in flight"),
    ):
        if value is not None:
            parts.append(f"{value} {word}")
    if counts.spent_usd is not None or counts.budget_usd is not None:
        spent = usd(counts.spent_usd or 0.0)
        parts.append(f"{spent} of {usd(counts.budget_usd)}" if counts.budget_usd is not None else f"{spent} spent")
    rate, eta = rate_and_eta(counts.done, counts.total, elapsed, counts.since)
    parts.append("–/s" if rate is None else f"{rate:.1f}/s")
    parts.append(f"elapsed {_duration(elapsed)}")
    if counts.done < counts.total:
        parts.append("ETA –" if eta is None else f"ETA {_duration(eta)}")
    return " · ".join(parts)


class RunProgress:
    """Shows a run's progress on ``console`` (stderr): a rich live line when it is a terminal,
    a plain line every ``interval`` seconds (and one at the end) when it is not, nothing when
    ``enabled`` is false."""

    def __init__(
        self,
        console: Console,
        label: str,
        total: int,
        *,
        enabled: bool = True,
        interval: float = DEFAULT_PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.label = label
        self.counts = Counts(total=total)
        self.enabled = enabled
        self.live_mode = enabled and console.is_terminal
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._last_plain = self.started
        self._live: Live | None = None
        self._printed: str | None = None
        self._log_streams: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> RunProgress:
        if self.live_mode:
            self._live = Live(self._text(), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
            # Log lines written while the live line shows go through it (above the line), not
            # onto its end: Live redirects sys.stderr, but a handler keeps the stream it was given.
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.__stderr__, sys.__stdout__):
                    proxy = sys.stderr if handler.stream is sys.__stderr__ else sys.stdout
                    self._log_streams.append((handler, handler.setStream(proxy)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            for handler, stream in self._log_streams:
                handler.setStream(stream)
            self._log_streams = []
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
        # a run that failed to start (no worker, no Redis) has its error to show, not a count
        if self.enabled and not self.live_mode and exc_type is None and self.line() != self._printed:
            self._print()

    def _print(self) -> None:
        self._printed = self.line()
        self.console.print(self._printed, markup=False, highlight=False, soft_wrap=True)

    def line(self) -> str:
        return progress_line(self.label, self.counts, self.clock() - self.started)

    def _text(self) -> Text:
        return Text(self.line(), style="bold")

    def done(self, done: int, total: int) -> None:
        """The run's own callback: ``done`` of ``total`` samples have an outcome."""
        self.update(done=done, total=total)

    def update(self, **values: Any) -> None:
        self.counts = replace(self.counts, **values)
        if not self.enabled:
            return
        if self._live is not None:
            self._live.update(self._text())
        elif self.clock() - self._last_plain >= self.interval:
            self._last_plain = self.clock()
            self._print()


class BatchWatch:
    """Copies a lazy-parallel run's batch counts (failed, in flight) and its queue's retries and
    rate-limit releases since the watch began into ``progress``.  A failed read is skipped:
    progress must never stop a run."""

    def __init__(self, progress: RunProgress, queue: Queue, batches: Batches, queue_name: str) -> None:
        self.progress = progress
        self.queue = queue
        self.batches = batches
        self.queue_name = queue_name
        self.batch_id: str | None = None  # set once the run has created its batch
        self._baseline: dict[str, int] | None = None
        self.stopped = False
        progress.update(failed=0, in_flight=0, retrying=0, rate_limited=0)

    async def refresh(self) -> None:
        with contextlib.suppress(Exception):
            stats = await self.queue.stats(self.queue_name)
            if self._baseline is None:
                self._baseline = dict(stats.counters)
            info = await self.batches.info(self.batch_id) if self.batch_id else None
            values: dict[str, Any] = {
                "retrying": stats.counters.get("retried", 0) - self._baseline.get("retried", 0),
                "rate_limited": stats.counters.get("released", 0) - self._baseline.get("released", 0),
            }
            if info is not None:
                values["failed"] = info.failed
                # running now: the samples queued behind them, up to the concurrency again, wait
                values["in_flight"] = info.running
            self.progress.update(**values)

    async def run(self, every: float = 0.5) -> None:
        """Refresh every ``every`` seconds until :meth:`stop`."""
        while not self.stopped:
            await self.refresh()
            if not self.stopped:
                await asyncio.sleep(every)

    async def stop(self, task: asyncio.Future[None]) -> None:
        """End ``task`` (this watch's :meth:`run`).  A flag as well as a cancel: a Redis command
        cancelled half way may surface as a connection error, which :meth:`refresh` swallows."""
        self.stopped = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(3.0):
                await task
