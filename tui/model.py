"""The telemetry as typed values: one snapshot (schema :data:`SCHEMA`) and the per-minute
history entries (schema :data:`HISTORY_SCHEMA`), read from what the daemon publishes and records.

A message of another schema, or with a field of the wrong type, is refused with a
:class:`TelemetryError` naming the field, never guessed at. Nothing here knows about the screen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    held: int = 0
    """Ready jobs held by their batch's ``max_running``: they start as its running jobs end, so
    they are not in ``ready`` (nor in the oldest wait or the estimate to clear)."""

    @property
    def queued(self) -> int:
        """Every ready job, held ones too: what clearing the queue removes and what Queue
        detail's Ready tab lists."""
        return (self.ready or 0) + self.held

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
        held=_count(row, "held", where) or 0,  # a snapshot written before it was added has none
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
