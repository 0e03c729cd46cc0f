"""The console's messages, each a small dataclass: what the feed worker, the page fetches and the
actions post, and the handlers in ``app.py`` and ``tui/views`` render.

Textual's Message sets itself up in ``__post_init__``, so a dataclass needs no ``__init__`` of its
own. A message that only the newest of its kind matters for says so in ``can_replace``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from textual.message import Message

from evalharness.core.admin import ActionResult

from .model import HistoryEntry, Snapshot, read_history_entries

PING_INTERVAL = 2.0
"""Seconds between two health checks while nothing else is heard, and the retry delay after a failure."""


@dataclass
class DataMessage(Message):
    """A message that is a small dataclass (Textual's Message sets itself up in ``__post_init__``)."""


# --- the feed: Redis and the telemetry -----------------------------------------------------------


@dataclass
class ConnectionChecked(DataMessage):
    """The result of one check of Redis, posted by the feed worker and rendered by the app's handler."""

    ok: bool
    at: float
    _: KW_ONLY
    error: str | None = None
    retry_in: float | None = None

    @classmethod
    def connected(cls, at: float) -> ConnectionChecked:
        return cls(True, at)

    @classmethod
    def failed(cls, error: str, at: float, retry_in: float | None = PING_INTERVAL) -> ConnectionChecked:
        return cls(False, at, error=error, retry_in=retry_in)


@dataclass
class TelemetryReceived(DataMessage):
    """A telemetry snapshot, read by the feed or recorded; only the newest one waiting is handled."""

    snapshot: Snapshot

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TelemetryReceived:
        """Raises :class:`TelemetryError` for a snapshot the console cannot read."""
        return cls(Snapshot.from_dict(data))

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TelemetryReceived)


@dataclass
class HistoryReceived(DataMessage):
    """The recorded per-minute history, oldest first, read by the feed or recorded; it replaces the
    history shown, and only the newest one waiting is handled."""

    history: tuple[HistoryEntry, ...]

    @classmethod
    def from_entries(cls, entries: object) -> HistoryReceived:
        """History entries as stored in Redis; entries the console cannot read are left out.
        Raises :class:`TelemetryError` when ``entries`` is not a list."""
        return cls(read_history_entries(entries))

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HistoryReceived)


@dataclass
class TelemetryUnreadable(DataMessage):
    """A telemetry message (or a snapshot read by the console) that could not be used."""

    problem: str


# --- pages and actions ---------------------------------------------------------------------------


@dataclass
class PageFetched(DataMessage):
    """A page the engine returned for a list; ``view`` names the list, ``data`` is the page."""

    view: str
    data: Any
    at: float

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PageFetched) and message.view == self.view


@dataclass
class PageFailed(DataMessage):
    """Reading a page failed (Redis lost, a timeout): the list keeps its rows and says so."""

    view: str
    error: str


@dataclass
class ActionDone(DataMessage):
    """An action finished (or failed): the lists it may have changed fetch their page again."""

    result: ActionResult | None
    error: str | None = None
