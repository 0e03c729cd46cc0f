"""How numbers and durations read, wherever they are shown: the console, ``evalharness status``
and the daemon's log lines use these functions, so one value never reads two ways."""

from __future__ import annotations

import math

NULL = "—"
"""How an unknown value (null in a snapshot) is shown."""


def format_seconds(seconds: float, *, round_up: bool = False) -> str:
    """Whole seconds, as minutes past 59 s and hours past 59 min: "14s", "3m 05s", "1h 02m".

    Ages round down; countdowns round up, so a retry 0.2 s away reads "1s", not "0s".
    """
    whole = max(0, math.ceil(seconds) if round_up else math.floor(seconds))
    if whole < 60:
        return f"{whole}s"
    return _minutes_and_more(whole)


def format_duration(seconds: float | None) -> str:
    """A measured time: "0.21s", "12.4s", "3m 05s", "1h 02m"; "—" when unknown."""
    if seconds is None or math.isnan(seconds):
        return NULL
    seconds = max(0.0, seconds)
    if seconds == 0:
        return "0s"
    if round(seconds, 2) < 1:
        return f"{seconds:.2f}s"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    # 59.96 s is shown as a minute, never as "0m 59s".
    return _minutes_and_more(max(60, math.floor(seconds)))


def format_est_clear(ready: int | None, est_clear: float | None) -> str:
    """A queue's estimated time to clear its backlog.  With nothing ready there is nothing to
    clear: "—", not a reassuring "0s" (the snapshot's value is 0 then)."""
    return format_duration(est_clear) if ready else NULL


def _minutes_and_more(whole: int) -> str:
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_count(value: int | None) -> str:
    """A count with thousands separators: "18,234"; "—" when unknown."""
    return NULL if value is None else f"{value:,}"


def format_rate(value: float | None) -> str:
    """A rate per minute: whole numbers with separators, one decimal only under 10: "412", "0.5"."""
    if value is None or math.isnan(value):
        return NULL
    if abs(value) < 10 and round(value, 1) != round(value):
        return f"{value:.1f}"
    return f"{value:,.0f}"
