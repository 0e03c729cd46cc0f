"""What the console shows, as plain values: the connection's state, the latest telemetry
snapshot, and the text drawn from them.

Handlers update a :class:`ConsoleState`; widgets only render what its methods return, so
everything here is testable without a terminal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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

SCHEMA = "evalharness.telemetry.v1"
"""The telemetry schema this console reads; a snapshot of any other is refused, not guessed at."""

HISTORY_SCHEMA = "evalharness.telemetry.history.v1"
"""The schema of the per-minute history entries; entries of any other are left out."""

HISTORY_FIELDS = (
    "ready",
    "reserved",
    "oldest_wait",
    "processes",
    "completed",
    "failed",
    "timeouts",
    "rate_limited",
    "runtime_p50",
    "runtime_p95",
)
"""The per-queue numbers of a history entry the console draws."""

HISTORY_MINUTES = 60
"""How many minutes of history the console reads and draws at most."""

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"

STALE_AFTER = 10.0
"""A snapshot older than this (seconds) while Redis answers means nothing is producing them."""


class Level(StrEnum):
    """How something looks: drives the colour of the status dot and of a value."""

    PENDING = "pending"
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


class TelemetryError(ValueError):
    """A telemetry message the console cannot read: not JSON, another schema, or a bad field."""


# --- the snapshot, as typed values ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's row of a snapshot. Counts and times are None where the snapshot has null."""

    name: str
    ready: int | None = None
    delayed: int | None = None
    reserved: int | None = None
    oldest_wait: float | None = None
    est_clear: float | None = None
    processes: int | None = None
    jobs_per_minute: float | None = None
    failed_per_minute: float | None = None
    runtime_p50: float | None = None
    runtime_p95: float | None = None
    runtime_max: float | None = None
    paused: bool = False
    busy: int | None = None
    long_wait: float | None = None
    """The queue's long-wait threshold (seconds): Oldest is red past it."""
    timeouts_past_hour: int | None = None
    retries_past_hour: int | None = None
    releases_past_hour: int | None = None
    """Jobs released by a 429 (rate limited) in the past hour."""
    failed_past_hour: int | None = None

    @property
    def long_waiting(self) -> bool:
        return self.oldest_wait is not None and self.long_wait is not None and self.oldest_wait > self.long_wait


@dataclass(frozen=True, slots=True)
class Limiter:
    """One rate or concurrency limiter of the snapshot (``limiters``), as the Workload pane shows it."""

    name: str
    key: str
    kind: str
    limit: float | None
    floor: float | None
    ceiling: float | None
    in_flight: int | None


@dataclass(frozen=True, slots=True)
class Totals:
    """The snapshot's overview: totals over every queue and the masters' status."""

    status: str = "inactive"
    jobs_per_minute: float | None = None
    jobs_past_hour: int | None = None
    failed_past_hour: int | None = None
    failed_past_7_days: int | None = None
    processes: int | None = None
    masters: int | None = None
    max_wait_queue: str | None = None
    max_wait: float | None = None
    timeouts_past_hour: int | None = None
    busy: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One telemetry snapshot (schema :data:`SCHEMA`), reduced to what the console draws."""

    at: float | None
    totals: Totals
    queues: tuple[QueueStats, ...]
    limiters: tuple[Limiter, ...] = ()
    """The engine's limiters, where the snapshot has them (older daemons do not)."""

    def queue(self, name: str | None) -> QueueStats | None:
        return next((q for q in self.queues if q.name == name), None)

    @property
    def in_flight(self) -> int | None:
        known = [q.reserved for q in self.queues if q.reserved is not None]
        return sum(known) if known else None

    @property
    def backlog(self) -> int | None:
        known = [q.ready for q in self.queues if q.ready is not None]
        return sum(known) if known else None

    @classmethod
    def from_json(cls, raw: str | bytes) -> Snapshot:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise TelemetryError(f"telemetry is not JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> Snapshot:
        """Read a snapshot dict as published; fields this console does not draw are ignored."""
        if not isinstance(data, Mapping):
            raise TelemetryError(f"telemetry is a {type(data).__name__}, not an object")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise TelemetryError(f"telemetry schema {schema!r} is not {SCHEMA!r}")
        overview = _mapping(data, "overview")
        max_wait = _mapping(overview, "max_wait", "overview.")
        status = overview.get("status")
        totals = Totals(
            status=status if isinstance(status, str) and status else "inactive",
            jobs_per_minute=_number(overview, "jobs_per_minute", "overview."),
            jobs_past_hour=_count(overview, "jobs_past_hour", "overview."),
            failed_past_hour=_count(overview, "failed_past_hour", "overview."),
            failed_past_7_days=_count(overview, "failed_past_7_days", "overview."),
            processes=_count(overview, "processes", "overview."),
            masters=_count(overview, "masters", "overview."),
            max_wait_queue=_text(max_wait, "queue", "overview.max_wait."),
            max_wait=_number(max_wait, "seconds", "overview.max_wait."),
            timeouts_past_hour=_count(overview, "timeouts_past_hour", "overview."),
            busy=_count(overview, "busy", "overview."),
        )
        raw_queues = data.get("queues") or []
        if not isinstance(raw_queues, list):
            raise TelemetryError("telemetry field 'queues' is not a list")
        queues = tuple(_queue(row, i) for i, row in enumerate(raw_queues))
        return cls(at=_number(data, "at"), totals=totals, queues=queues, limiters=_limiters(data.get("limiters")))


def _limiters(raw: object) -> tuple[Limiter, ...]:
    """The snapshot's limiters; a snapshot without them (or with a row the console cannot read)
    loses only that part, never the snapshot."""
    if not isinstance(raw, list):
        return ()
    out = []
    for row in raw:
        if not isinstance(row, Mapping):
            continue
        try:
            out.append(
                Limiter(
                    name=_text(row, "name") or "",
                    key=_text(row, "key") or "",
                    kind=_text(row, "kind") or "",
                    limit=_number(row, "limit"),
                    floor=_number(row, "floor"),
                    ceiling=_number(row, "ceiling"),
                    in_flight=_count(row, "in_flight"),
                )
            )
        except TelemetryError:
            continue
    return tuple(out)


def _queue(row: object, index: int) -> QueueStats:
    where = f"queues[{index}]."
    if not isinstance(row, Mapping):
        raise TelemetryError(f"telemetry field '{where[:-1]}' is not an object")
    name = _text(row, "name", where)
    if name is None:
        raise TelemetryError(f"telemetry field '{where}name' is missing")
    runtime = _mapping(row, "runtime", where)
    hour = _mapping(row, "past_hour", where)
    paused = row.get("paused")
    return QueueStats(
        name=name,
        ready=_count(row, "ready", where),
        delayed=_count(row, "delayed", where),
        reserved=_count(row, "reserved", where),
        oldest_wait=_number(row, "oldest_wait", where),
        est_clear=_number(row, "est_clear", where),
        processes=_count(row, "processes", where),
        jobs_per_minute=_number(row, "jobs_per_minute", where),
        failed_per_minute=_number(row, "failed_per_minute", where),
        runtime_p50=_number(runtime, "p50", where + "runtime."),
        runtime_p95=_number(runtime, "p95", where + "runtime."),
        runtime_max=_number(runtime, "max", where + "runtime."),
        paused=paused is True,
        busy=_count(row, "busy", where),
        long_wait=_number(row, "long_wait", where),
        timeouts_past_hour=_count(hour, "timeouts", where + "past_hour."),
        retries_past_hour=_count(hour, "retries", where + "past_hour."),
        releases_past_hour=_count(hour, "rate_limited", where + "past_hour."),
        failed_past_hour=_count(hour, "failed", where + "past_hour."),
    )


def _mapping(data: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TelemetryError(f"telemetry field '{where}{key}' is not an object")
    return value


def _number(data: Mapping[str, Any], key: str, where: str = "") -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TelemetryError(f"telemetry field '{where}{key}' is not a number: {value!r}")
    return float(value)


def _count(data: Mapping[str, Any], key: str, where: str = "") -> int | None:
    value = _number(data, key, where)
    return None if value is None else int(value)


def _text(data: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TelemetryError(f"telemetry field '{where}{key}' is not a string: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One minute of the recorded history (schema :data:`HISTORY_SCHEMA`): the jobs finished in
    that minute and each queue's backlog (``ready``) at its end."""

    minute: int
    jobs_per_minute: float | None
    ready: Mapping[str, int | None]
    queues: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    """Every number recorded per queue (ready, reserved, oldest_wait, processes, completed, failed,
    timeouts, rate_limited, runtime_p50, runtime_p95), by queue."""

    def total(self, key: str) -> float | None:
        """``key`` summed over the queues; None when no queue recorded it."""
        known = [v for q in self.queues.values() if (v := q.get(key)) is not None]
        return sum(known) if known else None

    def largest(self, key: str) -> float | None:
        known = [v for q in self.queues.values() if (v := q.get(key)) is not None]
        return max(known) if known else None

    def of(self, queue: str, key: str) -> float | None:
        return self.queues.get(queue, {}).get(key)

    @classmethod
    def from_dict(cls, data: object) -> HistoryEntry:
        if not isinstance(data, Mapping):
            raise TelemetryError(f"history entry is a {type(data).__name__}, not an object")
        schema = data.get("schema")
        if schema != HISTORY_SCHEMA:
            raise TelemetryError(f"history schema {schema!r} is not {HISTORY_SCHEMA!r}")
        minute = _count(data, "minute")
        if minute is None:
            raise TelemetryError("history field 'minute' is missing")
        queues = _mapping(data, "queues")
        ready: dict[str, int | None] = {}
        numbers: dict[str, dict[str, float | None]] = {}
        for name, row in queues.items():
            if not isinstance(row, Mapping):
                raise TelemetryError(f"history field 'queues.{name}' is not an object")
            ready[str(name)] = _count(row, "ready", f"queues.{name}.")
            numbers[str(name)] = {k: _number(row, k, f"queues.{name}.") for k in HISTORY_FIELDS if k in row}
        return cls(minute=minute, jobs_per_minute=_number(data, "jobs_per_minute"), ready=ready, queues=numbers)


def read_history_entries(entries: object) -> tuple[HistoryEntry, ...]:
    """History entries as read from Redis, by minute; an entry the console cannot read is left out
    rather than hiding the others."""
    if not isinstance(entries, list | tuple):
        raise TelemetryError(f"history is a {type(entries).__name__}, not a list")
    by_minute: dict[int, HistoryEntry] = {}
    for raw in entries:
        try:
            entry = HistoryEntry.from_dict(raw)
        except TelemetryError:
            continue
        by_minute[entry.minute] = entry
    return tuple(by_minute[m] for m in sorted(by_minute))


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


def sparkline(values: list[float | None]) -> str:
    """One block per value, from ▁ (the smallest) to █ (the largest); a missing value is a space."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    top = len(SPARK_BLOCKS) - 1
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif high == low:
            out.append(SPARK_BLOCKS[top // 2] if high else SPARK_BLOCKS[0])
        else:
            out.append(SPARK_BLOCKS[round((v - low) / (high - low) * top)])
    return "".join(out)


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

    def status_text(self, now: float | None = None) -> str:
        """The top bar's status part: a dot (or cross), the masters' status, the snapshot's age."""
        if self.connected is None:
            return "◌ redis: connecting…"
        if self.connected:
            if self.snapshot is None:
                return "● redis ok"
            age = self.snapshot_age(now) or 0.0
            age_text = f"{age:.1f}s" if age < 60 else format_seconds(age)
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
