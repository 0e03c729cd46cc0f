"""What the console shows, as plain values: the connection's state, the latest telemetry
snapshot, and the text drawn from them (the top bar's status, the Overview's tiles and queue
columns).

Handlers update a :class:`ConsoleState`; widgets only render what its methods return, so
everything here is testable without a terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# The formatters are shared with ``evalharness status``, so a value reads the same in both.
from evalharness.core.format import (
    NULL,
    format_count,
    format_duration,
    format_est_clear,
    format_rate,
    format_seconds,
)

from .history import HISTORY_MINUTES
from .model import HistoryEntry, QueueStats, Snapshot

STALE_AFTER = 10.0
"""A snapshot older than this (seconds) while Redis answers means nothing is producing them."""


class Level(StrEnum):
    """How something looks: drives the colour of the status dot and of a value."""

    PENDING = "pending"
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


# --- what the overview draws from a snapshot --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tile:
    """One figure of the overview strip: a label over a value, coloured by its level."""

    key: str
    label: str
    value: str
    level: Level | None = None


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the workload table: its header, its width, and the text of its cells."""

    key: str
    label: str
    width: int
    cell: Callable[[QueueStats], str]
    wide_only: bool = False


WORKLOAD_COLUMNS: tuple[Column, ...] = (
    Column("ready", "Backlog", 7, lambda q: format_count(q.ready)),
    Column("running", "Run", 5, lambda q: format_count(q.reserved)),
    Column("delayed", "Delay", 5, lambda q: format_count(q.delayed)),
    Column("oldest", "Oldest", 7, lambda q: format_duration(q.oldest_wait)),
    Column("clear", "Est.clear", 9, lambda q: format_est_clear(q.ready, q.est_clear)),
    Column("procs", "Procs", 5, lambda q: format_count(q.processes)),
    Column("jpm", "Jobs/min", 8, lambda q: format_rate(q.jobs_per_minute)),
    Column("fpm", "Fail/min", 8, lambda q: format_rate(q.failed_per_minute), wide_only=True),
    Column("p95", "p95", 7, lambda q: format_duration(q.runtime_p95), wide_only=True),
)
"""The Overview's queue table after the Queue column. "Oldest" is measured, "Est.clear" estimated;
Workload (``tui/views/workload.py``) has every column."""


def workload_columns(wide: bool) -> tuple[Column, ...]:
    return tuple(c for c in WORKLOAD_COLUMNS if wide or not c.wide_only)


def queue_cells(queue: QueueStats, wide: bool) -> dict[str, str]:
    """The text of each cell of one queue's row, by column key (the queue name excluded)."""
    return {c.key: c.cell(queue) for c in workload_columns(wide)}


def status_level(status: str) -> Level:
    if status == "running":
        return Level.OK
    if status == "paused":
        return Level.WARNING
    return Level.ERROR


TILES: tuple[tuple[str, str], ...] = (
    ("jpm", "Jobs/min"),
    ("inflight", "In-flight"),
    ("backlog", "Backlog"),
    ("wait", "Oldest wait"),
    ("failed", "Failed 1h"),
    ("timeouts", "Timeouts 1h"),
    ("procs", "Procs busy/all"),
    ("batches", "Batches run·⚠"),
)
"""The eight tiles of the Overview, by key and label."""


def overview_tiles(
    snapshot: Snapshot | None, batches: Sequence[Any] | None = None, finished_with_failures: int | None = None
) -> list[Tile]:
    """The Overview's tiles; a value reads "—" until its snapshot (or, for Batches, its page) has
    arrived. ``batches`` are the active batches, ``finished_with_failures`` how many of the
    finished ones have failures."""
    values = dict.fromkeys((key for key, _ in TILES), NULL)
    levels: dict[str, Level | None] = {}
    if snapshot is not None:
        totals = snapshot.totals
        wait = format_duration(totals.max_wait)
        if totals.max_wait is not None and totals.max_wait_queue:
            wait = f"{wait} · {totals.max_wait_queue}"
            late = snapshot.queue(totals.max_wait_queue)
            if late is not None and late.long_waiting:
                levels["wait"] = Level.ERROR
        busy = NULL if totals.busy is None else format_count(totals.busy)
        values.update(
            jpm=format_rate(totals.jobs_per_minute),
            inflight=format_count(snapshot.in_flight),
            backlog=format_count(snapshot.backlog),
            wait=wait,
            failed=format_count(totals.failed_past_hour),
            timeouts=format_count(totals.timeouts_past_hour),
            procs=f"{busy}/{format_count(totals.processes)}"
            if totals.busy is not None
            else format_count(totals.processes),
        )
        if totals.failed_past_hour:
            levels["failed"] = Level.WARNING
        if totals.timeouts_past_hour:
            levels["timeouts"] = Level.WARNING
    if batches is not None:
        running = sum(1 for b in batches if getattr(b, "state", "") == "running")
        text = format_count(running)
        if finished_with_failures:
            text += f" · ⚠ {format_count(finished_with_failures)}"
            levels["batches"] = Level.WARNING
        values["batches"] = text
    return [Tile(key, label, values[key], levels.get(key)) for key, label in TILES]


# --- the console's state ----------------------------------------------------------------------


@dataclass
class ConsoleState:
    """The console's view of Redis and of the telemetry; times are seconds from the app's clock."""

    redis_url_display: str
    prefix: str
    connected: bool | None = None
    last_error: str | None = None
    checked_at: float | None = None
    last_ok_at: float | None = None
    retry_in: float | None = None
    read_only: bool = False
    snapshot: Snapshot | None = None
    snapshot_received_at: float | None = None
    telemetry_problem: str | None = None
    history: tuple[HistoryEntry, ...] | None = None
    """The recorded per-minute history, oldest first; None until it has been read."""

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

    def apply_snapshot(self, snapshot: Snapshot, now: float) -> None:
        self.snapshot = snapshot
        self.snapshot_received_at = now
        self.telemetry_problem = None

    def apply_history(self, history: tuple[HistoryEntry, ...]) -> None:
        """The history as read now replaces what was shown: the daemon alone appends to it."""
        self.history = history[-HISTORY_MINUTES:]

    def mark_telemetry_problem(self, problem: str) -> None:
        """A snapshot could not be read: the last good one stays on screen, with the reason."""
        self.telemetry_problem = problem

    @property
    def level(self) -> Level:
        """The connection's level alone."""
        if self.connected is None:
            return Level.PENDING
        return Level.OK if self.connected else Level.ERROR

    def status_level(self, now: float | None = None) -> Level:
        """The top bar's colour: the connection first, then the masters' status and the snapshot's age."""
        level = self.level
        if level is not Level.OK or self.snapshot is None:
            return level
        age = self.snapshot_age(now)
        if age is not None and age > STALE_AFTER:
            return Level.WARNING
        return status_level(self.snapshot.totals.status)

    def stale_for(self, now: float | None = None) -> float | None:
        """Seconds without a reply as of ``now`` (default: the last check), or None while connected
        or never connected."""
        if self.connected is not False or self.last_ok_at is None or self.checked_at is None:
            return None
        return max(0.0, (self.checked_at if now is None else now) - self.last_ok_at)

    def snapshot_age(self, now: float | None = None) -> float | None:
        """Seconds since the shown snapshot arrived (by the console's clock: the daemon's may differ)."""
        if self.snapshot_received_at is None:
            return None
        return max(0.0, (self.snapshot_received_at if now is None else now) - self.snapshot_received_at)

    def status_text(self, now: float | None = None, short: bool = False) -> str:
        """The top bar's status part: a dot (or cross), the masters' status, the snapshot's age;
        ``short`` leaves out "redis ok" (the dot says it), for a bar that also carries marks."""
        if self.connected is None:
            return "◌ redis: connecting…"
        if self.connected:
            if self.snapshot is None:
                return "● redis ok"
            age = self.snapshot_age(now) or 0.0
            age_text = f"{age:.1f}s" if age < 60 else format_seconds(age)
            if short:
                return f"● {self.snapshot.totals.status} · {age_text}"
            return f"● {self.snapshot.totals.status} · redis ok · {age_text}"
        if self.retry_in is None:
            return "✕ redis: disconnected"
        return f"✕ redis: disconnected, retrying in {format_seconds(self.retry_in, round_up=True)}"

    def workload_note(self, now: float | None = None) -> tuple[str, Level | None]:
        """The line beside the workload table's title: why its numbers may not be current."""
        if self.connected is False and self.snapshot is not None:
            stale = self.stale_for(now)
            return (f"stale {format_seconds(stale)}" if stale is not None else "stale", Level.WARNING)
        if self.telemetry_problem:
            return (self.telemetry_problem, Level.ERROR)
        if self.snapshot is None:
            if self.connected:
                return ("waiting for the first snapshot…", None)
            return ("", None)
        age = self.snapshot_age(now)
        if age is not None and age > STALE_AFTER:
            return (f"no snapshot for {format_seconds(age)}", Level.WARNING)
        return ("", None)

    def connection_status(self, now: float | None = None) -> str:
        """One line for the connection details: the state, and how long replies have been missing."""
        if self.connected is None:
            return "connecting…"
        if self.connected:
            return "connected"
        stale = self.stale_for(now)
        if stale is None:
            return "disconnected · never reached"
        return f"disconnected · no reply for {format_seconds(stale)}"

    def details(self) -> list[tuple[str, str]]:
        """Label/value rows about where the console looks; values are data, to be shown without markup."""
        rows = [("Redis", self.redis_url_display), ("Prefix", self.prefix)]
        if self.read_only:
            rows.append(("Mode", "read-only"))
        return rows

    def status_rows(self, now: float | None = None) -> list[tuple[str, str]]:
        """Label/value rows about the connection's health: the status, and the last error while it lasts."""
        rows = [("Status", self.connection_status(now))]
        if self.connected is False and self.last_error:
            rows.append(("Error", self.last_error))
        return rows
