"""What the console shows, as plain values: the connection's state and the text drawn from it.

Handlers update a :class:`ConsoleState`; widgets only render what its methods return, so
everything here is testable without a terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    """How the connection looks: drives the status dot's colour."""

    PENDING = "pending"
    OK = "ok"
    ERROR = "error"


@dataclass
class ConsoleState:
    """The console's view of the Redis connection; times are seconds from the app's clock."""

    redis_url_display: str
    prefix: str
    connected: bool | None = None
    last_error: str | None = None
    checked_at: float | None = None
    last_ok_at: float | None = None
    retry_in: float | None = None
    read_only: bool = False

    def mark_connected(self, now: float) -> None:
        self.connected = True
        self.last_error = None
        self.checked_at = now
        self.last_ok_at = now
        self.retry_in = None

    def mark_failed(self, error: str, now: float, retry_in: float | None) -> None:
        self.connected = False
        self.last_error = error
        self.checked_at = now
        self.retry_in = retry_in

    @property
    def level(self) -> Level:
        if self.connected is None:
            return Level.PENDING
        return Level.OK if self.connected else Level.ERROR

    def stale_for(self) -> float | None:
        """Seconds without a reply as of the last check, or None while connected or never connected."""
        if self.connected is not False or self.last_ok_at is None or self.checked_at is None:
            return None
        return max(0.0, self.checked_at - self.last_ok_at)

    def status_text(self) -> str:
        """The top bar's status part: a dot (or cross) and a few words."""
        if self.connected is None:
            return "◌ redis: connecting…"
        if self.connected:
            return "● redis ok"
        if self.retry_in is None:
            return "✕ redis: disconnected"
        return f"✕ redis: disconnected, retrying in {format_seconds(self.retry_in, round_up=True)}"

    def connection_status(self) -> str:
        """One line for the connection details: the state, and how long replies have been missing."""
        if self.connected is None:
            return "connecting…"
        if self.connected:
            return "connected"
        stale = self.stale_for()
        if stale is None:
            return "disconnected · never reached"
        return f"disconnected · no reply for {format_seconds(stale)}"

    def details(self) -> list[tuple[str, str]]:
        """Label/value rows about where the console looks; values are data, to be shown without markup."""
        rows = [("Redis", self.redis_url_display), ("Prefix", self.prefix)]
        if self.read_only:
            rows.append(("Mode", "read-only"))
        return rows

    def status_rows(self) -> list[tuple[str, str]]:
        """Label/value rows about the connection's health: the status, and the last error while it lasts."""
        rows = [("Status", self.connection_status())]
        if self.connected is False and self.last_error:
            rows.append(("Error", self.last_error))
        return rows


def format_seconds(seconds: float, *, round_up: bool = False) -> str:
    """Whole seconds, as minutes past 99 s and hours past 59 min.

    Ages round down; countdowns round up, so a retry 0.2 s away reads "1s", not "0s".
    """
    whole = max(0, math.ceil(seconds) if round_up else math.floor(seconds))
    if whole < 100:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
