"""History maths: the recorded per-minute entries as one value a minute, the busiest queue, and a
history line (title, sparkline, min and max) fitted to a width."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from evalharness.core.format import format_count, format_rate

from .fmt import sparkline
from .model import HistoryEntry

HISTORY_MINUTES = 60
"""How many minutes of history the console reads and draws at most."""


def minute_series(
    history: tuple[HistoryEntry, ...], value: Callable[[HistoryEntry], float | None]
) -> list[float | None]:
    """One value per minute from the first recorded minute to the last (at most
    :data:`HISTORY_MINUTES`); a minute with no entry is None."""
    if not history:
        return []
    last = history[-1].minute
    first = max(history[0].minute, last - HISTORY_MINUTES + 1)
    values: list[float | None] = [None] * (last - first + 1)
    for entry in history:
        if entry.minute >= first:
            values[entry.minute - first] = value(entry)
    return values


def busiest_queue(history: tuple[HistoryEntry, ...]) -> str | None:
    """The queue with the largest backlog in the latest minute (then the largest peak, then by name)."""
    if not history:
        return None
    latest = history[-1].ready
    names = {name for entry in history for name in entry.ready}
    if not names:
        return None

    def weight(name: str) -> tuple[int, int, str]:
        peak = max((entry.ready.get(name) or 0) for entry in history)
        return (latest.get(name) or 0, peak, name)

    return max(sorted(names), key=weight)


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One history line, fitted to a width: the title, the sparkline, and the range of what it shows."""

    title: str
    spark: str
    range: str
    points: int

    @property
    def text(self) -> str:
        return "  ".join(part for part in (self.title, self.spark, self.range) if part)


def history_line(name: str, values: list[float | None], width: int, fmt: Callable[[float | None], str]) -> HistoryLine:
    """``name``'s line for ``values`` (one a minute, oldest first) in ``width`` columns: the newest
    minutes that fit, their min and max."""
    if not values:
        return HistoryLine(name, "", "no history yet", 0)

    def fitted(n: int) -> HistoryLine:
        shown = values[-n:]
        known = [v for v in shown if v is not None]
        span = f"min {fmt(min(known))} · max {fmt(max(known))}" if known else "no data"
        return HistoryLine(f"{name}, last {n} min", sparkline(shown), span, n)

    n = len(values)
    line = fitted(n)
    while n > 1 and len(line.text) > width:
        n = max(1, min(n - 1, n - (len(line.text) - width)))
        line = fitted(n)
    return line


def jobs_history_line(history: tuple[HistoryEntry, ...] | None, width: int) -> HistoryLine:
    series = minute_series(history or (), lambda e: e.jobs_per_minute)
    return history_line("Jobs/min", series, width, format_rate)


def backlog_history_line(history: tuple[HistoryEntry, ...] | None, width: int) -> HistoryLine:
    queue = busiest_queue(history or ())
    if queue is None:
        return history_line("Backlog", [], width, format_rate)
    series = minute_series(history or (), lambda e: e.ready.get(queue))
    return history_line(f"Backlog of {queue}", series, width, lambda v: format_count(None if v is None else int(v)))
