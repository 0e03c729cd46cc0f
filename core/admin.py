"""Operator actions and the pages the console and the CLI read: batches, failed jobs and running jobs.

Every action returns an :class:`ActionResult` with the engine's own numbers, so a console toast
and a CLI line print the same counts. Pages are bounded reads (indexes, never a queue scan).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from .batches import (
    TERMINAL,
    Batches,
    active_batches_key,
    batch_index_key,
    batch_key,
    batches_key,
    with_failures_key,
)
from .evaljobs import SAMPLE_JOB
from .jobs import JobStatus
from .keys import GlobalKeys, QueueKeys
from .lookup import Found, lookup
from .queue import FAILED_RETENTION_MS, Queue
from .telemetry import (
    EVENTS_MAXLEN,
    HISTORY_CAP,
    MASTER_STALE,
    events_key,
    masters_key,
    read_events,
    read_events_after,
    read_history,
)

PAGE_SIZE = 50
TEXT_SCAN_LIMIT = 1_000  # failed jobs a free-text filter reads at most (after the facet indexes)
SCAN_CHUNK = 500
ACTIVE_STATES = frozenset({"pending", "running"})


@dataclass(frozen=True)
class ActionResult:
    """What an action did. ``message`` is the one sentence both the console and the CLI show."""

    action: str  # "cancel_batch", "retry_batch", "retry_failed", "forget_failed", "retry_matching",
    # "forget_matching", "cancel_job"
    target: str  # batch id, job id, or the filter text
    ok: bool
    message: str
    removed: int = 0  # queued jobs taken out
    told_to_stop: int = 0  # running jobs flagged to stop
    retried: int = 0
    forgotten: int = 0
    skipped: int = 0  # already finished / already retried / gone
    new_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "ok": self.ok,
            "message": self.message,
            "removed": self.removed,
            "told_to_stop": self.told_to_stop,
            "retried": self.retried,
            "forgotten": self.forgotten,
            "skipped": self.skipped,
            "new_ids": list(self.new_ids),
        }


@dataclass(frozen=True)
class FailedFilter:
    """A filter over the failed-job store. Facets are exact; ``text`` matches id, name or message."""

    queue: str | None = None
    batch: str | None = None
    exception: str | None = None  # exception class name, e.g. "TimeoutError"
    name: str | None = None  # job name
    text: str | None = None

    @classmethod
    def parse(cls, expr: str) -> FailedFilter:
        """``"queue:judge batch:run-42 exc:Timeout name:x free text"`` -> FailedFilter."""
        facets: dict[str, str] = {}
        words: list[str] = []
        aliases = {"queue": "queue", "batch": "batch", "exc": "exception", "exception": "exception", "name": "name"}
        for word in expr.split():
            key, sep, value = word.partition(":")
            if sep and key in aliases and value:
                facets[aliases[key]] = value
            else:
                words.append(word)
        return cls(text=" ".join(words) or None, **facets)

    def describe(self) -> str:
        parts = [
            f"{k}:{v}"
            for k, v in (("queue", self.queue), ("batch", self.batch), ("exc", self.exception), ("name", self.name))
            if v
        ]
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


@dataclass(frozen=True)
class FailedRow:
    id: str
    queue: str
    name: str
    batch: str | None
    exception: str  # class name ("TimeoutError"), or the failure kind when there is no class
    message: str
    kind: str  # "exception", "timeout", "rate_limited", "cancelled", ...
    attempts: int
    tries: int | None
    failed_at: float | None  # epoch seconds
    retried_by: str | None = None
    retry_state: str | None = None  # state of the job that retried this one, if any
    runtime: float | None = None
    worker: str | None = None  # host:pid
    tags: tuple[str, ...] = ()
    sample: int | None = None  # eval-run sample index, when the job is a sample


@dataclass(frozen=True)
class FailedPage:
    total: int  # how many match the filter
    offset: int
    rows: tuple[FailedRow, ...]


@dataclass(frozen=True)
class FailedGroup:
    exception: str
    count: int


@dataclass(frozen=True)
class FailedDetail:
    row: FailedRow
    traceback: str
    payload: Any  # redacted keys masked
    checkpoint: Any  # partial state saved by the job, or None
    summary: dict[str, Any]  # id, queue, batch, tries, retries, times, runtime, worker, lease renewals...
    retries: tuple[tuple[str, str, float | None], ...] = ()  # (status, job id, time)


@dataclass(frozen=True)
class RunningRow:
    id: str
    name: str
    queue: str
    batch: str | None
    worker: str  # host:pid
    started_at: float | None  # epoch seconds (server clock)
    attempt: int
    tries: int | None
    timeout: float | None  # seconds
    lease_deadline: float | None  # epoch seconds
    renewed_at: float | None  # epoch seconds of the last renewal
    lease_seconds: float | None  # the lease length, to tell an overdue renewal
    progress: float | None = None  # 0..1, job-reported
    progress_note: str | None = None
    sample: int | None = None
    releases: int = 0
    cancel_requested: bool = False
    renewals: int = 0  # lease renewals of this job so far (all attempts)
    cancel_grace: float | None = None  # seconds its worker gives a cancelled sync job before replacing itself


@dataclass(frozen=True)
class BatchRow:
    id: str
    name: str
    queue: str
    tenant: str | None
    state: str
    total: int
    pending: int  # not finished yet (queued + running)
    running: int
    succeeded: int
    failed: int
    removed: int  # taken out by a cancel
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    cancelled_at: float | None
    rate_per_min: float | None = None  # completions in the last minute
    callbacks: dict[str, str] = field(default_factory=dict)  # stage -> "ran" | "queued" | "pending" | "—"
    metrics: dict[str, float] = field(default_factory=dict)  # eval runs: running mean per metric
    run_id: str | None = None

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def progress(self) -> float:
        return 1.0 if self.total == 0 else min(1.0, self.done / self.total)


@dataclass(frozen=True)
class BatchSummary:
    """How many batches run, wait and finished with failures (over every queue), and the first
    ``count`` active ones (running first, then newest first): the Overview's tile and list."""

    running: int
    pending: int
    finished_with_failures: int
    rows: tuple[BatchRow, ...]


@dataclass(frozen=True)
class BatchDetail:
    row: BatchRow
    failed_jobs: tuple[FailedRow, ...]


QUEUE_TABS = ("ready", "delayed", "running", "failed")
"""The job lists of one queue (Queue detail's tabs), each an index ordered by time."""

COMMAND_TTL = 300
"""Seconds a command waits in a master's control list (for a master that is restarting)."""


@dataclass(frozen=True)
class QueueJobRow:
    """One job of a queue's list, without its payload (that is read only for its detail)."""

    id: str
    name: str
    batch: str | None
    at: float | None  # ready since / due at / lease deadline / failed at (epoch seconds)
    attempts: int
    worker: str | None = None


@dataclass(frozen=True)
class QueueJobPage:
    queue: str
    tab: str
    offset: int
    total: int  # jobs in the whole list, not only this page
    rows: tuple[QueueJobRow, ...]


@dataclass(frozen=True)
class JobDetail:
    """A job's record as the detail shows it: its fields and its payload as JSON text."""

    id: str
    queue: str
    name: str
    fields: tuple[tuple[str, str], ...]
    payload: str


@dataclass(frozen=True)
class SupervisorRow:
    name: str
    status: str  # running | paused | inactive (configured, no master runs it)
    queues: tuple[str, ...]
    processes: int
    busy: int | None
    per_queue: dict[str, int]
    targets: dict[str, int]
    overrides: dict[str, int]
    balance: str
    min_processes: int | None
    max_processes: int | None
    memory_mb: float | None = None  # summed over its workers' heartbeats
    jobs_done: int | None = None
    last_balance: dict[str, Any] | None = None  # {"pool", "from", "to", "at"}


@dataclass(frozen=True)
class MasterRow:
    name: str
    host: str
    pid: int
    status: str  # running | paused | stopping | lost (silent past its TTL)
    heartbeat_at: float | None
    ttl: float
    environment: str
    started_at: float | None
    grace: float | None
    supervisors: tuple[SupervisorRow, ...]

    @property
    def lost(self) -> bool:
        return self.status == "lost"


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None


def master_row(
    raw: dict[str, Any], workers: Sequence[dict[str, Any]], now: float, ttl: float = MASTER_STALE
) -> MasterRow:
    """A master's heartbeat as a row, its supervisors' memory and jobs done summed from the
    heartbeats of the workers whose pids it reports (on its host); silent past ``ttl``: lost."""
    host = str(raw.get("host") or "")
    beat = raw.get("heartbeat_at")
    heartbeat_at = float(beat) if isinstance(beat, int | float) else None
    by_pid = {int(w["pid"]): w for w in workers if str(w.get("host") or "") == host and isinstance(w.get("pid"), int)}
    sups = []
    for sup in raw.get("supervisors") or []:
        if not isinstance(sup, dict):
            continue
        pids = [p for p in sup.get("pids") or [] if isinstance(p, int)]
        mine = [by_pid[p] for p in pids if p in by_pid]
        memory = sum(float(w.get("rss_mb") or 0.0) for w in mine) if any("rss_mb" in w for w in mine) else None
        done = sum(int(w.get("processed") or 0) for w in mine) if mine else None
        busy = sum(1 for w in mine if int(w.get("running") or 0) > 0) if mine else None
        sups.append(
            SupervisorRow(
                name=str(sup.get("name") or ""),
                status=str(sup.get("status") or "running"),
                queues=tuple(str(q) for q in sup.get("queues") or ()),
                processes=int(sup.get("processes") or 0),
                busy=busy,
                per_queue={str(k): int(v) for k, v in (sup.get("per_queue") or {}).items()},
                targets={str(k): int(v) for k, v in (sup.get("targets") or {}).items()},
                overrides={str(k): int(v) for k, v in (sup.get("overrides") or {}).items()},
                balance=str(sup.get("balance") or "off"),
                min_processes=_opt_int(sup.get("min_processes")),
                max_processes=_opt_int(sup.get("max_processes")),
                memory_mb=memory,
                jobs_done=done,
                last_balance=sup.get("last_balance") if isinstance(sup.get("last_balance"), dict) else None,
            )
        )
    lost = heartbeat_at is None or now - heartbeat_at > ttl
    started = raw.get("started_at")
    grace = raw.get("grace")
    return MasterRow(
        name=str(raw.get("name") or ""),
        host=host,
        pid=int(raw.get("pid") or 0),
        status="lost" if lost else str(raw.get("status") or "running"),
        heartbeat_at=heartbeat_at,
        ttl=ttl,
        environment=str(raw.get("environment") or ""),
        started_at=float(started) if isinstance(started, int | float) else None,
        grace=float(grace) if isinstance(grace, int | float) else None,
        supervisors=tuple(sups),
    )


def _ms(value: Any) -> float | None:
    try:
        return None if value in (None, "") else int(value) / 1000.0
    except (TypeError, ValueError):
        return None


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _loads(raw: Any) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def worker_of(owner: str | None) -> str:
    """``host:pid`` of a worker id (``host:pid:random``)."""
    if not owner:
        return ""
    host_pid, sep, _ = owner.rpartition(":")
    return host_pid if sep else owner


def _tries(env: dict[str, Any]) -> int | None:
    overrides = env.get("overrides") or {}
    if "tries" in overrides:
        return _int(overrides["tries"], 0) or None
    options = env.get("options")
    if isinstance(options, dict) and "tries" in options:
        return _int(options["tries"], 0) or None
    return None


def _timeout(env: dict[str, Any]) -> float | None:
    overrides = env.get("overrides") or {}
    options = env.get("options")
    raw = overrides.get("timeout", options.get("timeout") if isinstance(options, dict) else None)
    try:
        return float(raw) or None if raw is not None else None
    except (TypeError, ValueError):
        return None


def _sample(env: dict[str, Any]) -> int | None:
    payload = env.get("payload")
    if env.get("name") == SAMPLE_JOB and isinstance(payload, dict) and isinstance(payload.get("index"), int):
        return int(payload["index"])
    return None


FAILED_FIELDS = (
    "data",
    "failure",
    "attempts",
    "releases",
    "failed_at",
    "started_at",
    "retried_by",
    "batch",
    "f_name",
    "f_exc",
    "state",
)


def _failed_row(queue: str, job_id: str, rec: Sequence[Any]) -> FailedRow:
    env = _loads(rec[0]) or {}
    failure = _loads(rec[1]) or {}
    failed_at = _ms(rec[4])
    started_at = _ms(rec[5])
    runtime = None if failed_at is None or started_at is None else max(0.0, failed_at - started_at)
    kind = str(failure.get("kind") or "exception")
    return FailedRow(
        id=job_id,
        queue=queue,
        name=str(rec[8] or env.get("name") or failure.get("job") or ""),
        batch=rec[7] or env.get("batch"),
        exception=str(rec[9] or failure.get("exception_type") or kind),
        message=str(failure.get("message") or "")[:500],
        kind=kind,
        attempts=_int(rec[2]) - _int(rec[3]),
        tries=_tries(env),
        failed_at=failed_at,
        retried_by=rec[6] or None,
        runtime=runtime,
        worker=failure.get("worker") or None,
        tags=tuple(str(t) for t in (env.get("tags") or ())),
        sample=_sample(env),
    )


def add_action_event(target: Any, prefix: str, kind: str, subject: str, message: str, **fields: str) -> Any:
    """XADD an operator's action to the event stream on ``target``, a client (await the result)
    or a pipeline (the command is queued): ``kind``, ``subject``, ``message``, ``at``, ``fields``.
    The console's actions (Admin) and the CLI's commands to masters leave the same shape."""
    data = {"kind": kind, "subject": subject, "message": message, "at": f"{time.time():.3f}", **fields}
    return target.xadd(events_key(prefix), data, maxlen=EVENTS_MAXLEN, approximate=True)


def running_means(rec: Mapping[str, str]) -> dict[str, float]:
    """An eval run's running mean per metric, in the run's order, from what its producer adds
    to the batch as outcomes arrive (``mean_names``, ``mean_sum:NAME``, ``mean_n:NAME``)."""
    try:
        names = json.loads(rec.get("mean_names") or "[]")
    except ValueError:
        return {}
    means = {}
    for name in names if isinstance(names, list) else []:
        n = _int(rec.get(f"mean_n:{name}"))
        if n > 0:
            with contextlib.suppress(TypeError, ValueError):
                means[str(name)] = float(rec.get(f"mean_sum:{name}") or 0) / n
    return means


class Admin:
    """The operator's actions and pages over one Redis and key prefix.

    Reads are bounded: failed pages come from the failed-job indexes (a combined filter walks the
    smallest index; free text reads at most :data:`TEXT_SCAN_LIMIT` already-filtered jobs),
    running jobs from the ``reserved`` sets of the known queues, batches from the ``batches`` sets
    (one small state read per batch, no job lists).  Every action returns an :class:`ActionResult`
    and writes an event to the events stream.
    """

    def __init__(self, client: aioredis.Redis, prefix: str = "eh") -> None:
        self.client = client
        self.prefix = prefix
        self.queue = Queue(client, prefix)
        self.batches = Batches(client, prefix, self.queue)
        self._indexed: set[str] = set()
        self._batch_indexing: dict[str, asyncio.Task[None]] = {}

    # helpers -----------------------------------------------------------------
    def _keys(self, queue: str) -> QueueKeys:
        return self.queue.keys(queue)

    async def _queues(self, queue: str | None = None) -> list[str]:
        return [queue] if queue else await self.queue.known_queues()

    async def _event(self, kind: str, result: ActionResult, **fields: str) -> None:
        """Every action that changed something leaves an event, with the same sentence."""
        await add_action_event(self.client, self.prefix, kind, result.target, result.message, **fields)

    async def _wake_workers(self, subject: str) -> None:
        """Ask the workers to renew now, so a cancel does not wait for the next renewal (lease/3)."""
        await self.client.publish(self.queue.globals.cancels, subject)

    async def ensure_indexes(self, queues: Sequence[str]) -> None:
        """Index jobs that failed before the failed-job indexes existed (once per queue)."""
        for q in queues:
            if q not in self._indexed:
                await self.queue.ensure_failed_indexes(q)
                self._indexed.add(q)

    async def _find_job(self, job_id: str, queue: str | None, failed_only: bool = False) -> str | None:
        queues = await self._queues(queue)
        if not queues:
            return None
        async with self.client.pipeline(transaction=False) as pipe:
            for q in queues:
                if failed_only:
                    pipe.zscore(self._keys(q).failed, job_id)
                else:
                    pipe.exists(self._keys(q).job(job_id))
            found = await pipe.execute()
        for q, hit in zip(queues, found, strict=True):
            if hit:
                return q
        return None

    # batches -----------------------------------------------------------------
    async def _batch_rows(self, queue: str, ids: Sequence[str]) -> list[BatchRow]:
        if not ids:
            return []
        keys = self._keys(queue)
        async with self.client.pipeline(transaction=False) as pipe:
            for bid in ids:
                bk = batch_key(keys, bid)
                pipe.hgetall(bk)
                pipe.scard(keys.batch_running(bid))
                pipe.scard(keys.batch_cancelled(bid))
            replies = await pipe.execute()
        rows = []
        for i, bid in enumerate(ids):
            rec, running, removed = replies[3 * i], replies[3 * i + 1], replies[3 * i + 2]
            if rec:
                rows.append(self._batch_row(bid, queue, rec, int(running), int(removed)))
        return rows

    @staticmethod
    def _batch_row(
        bid: str, queue: str, rec: dict[str, str], running: int, removed: int, now: float | None = None
    ) -> BatchRow:
        state = rec.get("state", "pending")
        failed = _int(rec.get("failed"))
        processed = _int(rec.get("processed"))
        callbacks: dict[str, str] = {}
        for stage in ("before", "progress", "then", "catch", "finally"):
            if not rec.get(f"cb:{stage}"):
                continue
            # the scripts enqueue each callback once per transition; "queued" = its transition happened
            happened = {
                "before": True,
                "progress": processed - failed > 0,
                "then": state == "succeeded",
                "catch": rec.get("catch_done") == "1",
                "finally": bool(rec.get("finished_at")),
            }[stage]
            callbacks[stage] = "queued" if happened else "pending"
        return BatchRow(
            id=bid,
            name=rec.get("name", ""),
            queue=queue,
            tenant=rec.get("tenant") or None,
            state=state,
            total=_int(rec.get("total")),
            pending=_int(rec.get("pending")),
            running=running,
            succeeded=max(0, processed - failed),
            failed=failed,
            removed=removed,
            created_at=_ms(rec.get("created_at")),
            started_at=_ms(rec.get("started_at")),
            finished_at=_ms(rec.get("finished_at")),
            cancelled_at=_ms(rec.get("cancelled_at")),
            callbacks=callbacks,
            rate_per_min=rate_per_minute(rec, time.time() if now is None else now),
            run_id=bid[4:] if bid.startswith("run-") else None,
            metrics=running_means(rec),
        )

    async def batches_page(self, chip: str = "active", offset: int = 0, count: int = PAGE_SIZE) -> list[BatchRow]:
        """chip: "active" (pending/running), "all", "failed" (failed or finished_with_failures), "cancelled".
        Running first, then newest first."""
        if chip not in ("active", "all", "failed", "cancelled"):
            raise ValueError(f"unknown batch chip {chip!r}: use active, all, failed or cancelled")
        if chip == "active":
            return list((await self.batch_summary(offset + count, offset)).rows)
        wanted = {
            "failed": frozenset({"failed", "finished_with_failures"}),
            "cancelled": frozenset({"cancelled"}),
        }.get(chip)
        # one small read per batch (its state), no job lists; then full rows for the page only.
        # The active list (batch_summary) reads only the batches not finished, so it stays cheap
        # however many finished batches are kept; the other chips are fetched on demand.
        found: list[tuple[int, float, str, str]] = []
        for q in await self._queues():
            keys = self._keys(q)
            entries: Any = await self.client.zrevrange(batches_key(keys), 0, -1, withscores=True)
            for start in range(0, len(entries), SCAN_CHUNK):
                chunk = entries[start : start + SCAN_CHUNK]
                async with self.client.pipeline(transaction=False) as pipe:
                    for bid, _ in chunk:
                        pipe.hget(batch_key(keys, str(bid)), "state")
                    states = await pipe.execute()
                for (bid, created), state in zip(chunk, states, strict=True):
                    if state is None or (wanted is not None and state not in wanted):
                        continue
                    rank = 0 if state == "running" else 1 if state == "pending" else 2
                    found.append((rank, -float(created), q, str(bid)))
        found.sort()
        return await self._rows_of(found[offset : offset + count])

    async def _rows_of(self, page: Sequence[tuple[int, float, str, str]]) -> list[BatchRow]:
        by_queue: dict[str, list[str]] = {}
        for _, _, q, bid in page:
            by_queue.setdefault(q, []).append(bid)
        rows: dict[str, BatchRow] = {}
        for q, ids in by_queue.items():
            rows.update({r.id: r for r in await self._batch_rows(q, ids)})
        return [rows[bid] for _, _, _, bid in page if bid in rows]

    async def batch_summary(self, count: int = PAGE_SIZE, offset: int = 0) -> BatchSummary:
        """The counts of running, pending and finished-with-failures batches and the active rows
        ``offset`` to ``count``: one script call per queue over the indexes the batch scripts keep
        (batches:active, batches:with_failures), so its cost follows the active batches, never the
        finished ones kept."""
        queues = await self._queues()
        for q in queues:
            await self._ensure_batch_indexes(q)
        calls = [
            (
                "batch_summary",
                [active_batches_key(self._keys(q)), with_failures_key(self._keys(q))],
                [self._keys(q).base, count],
            )
            for q in queues
        ]
        replies = await self.queue.scripts.run(calls) if calls else []
        running = pending = with_failures = 0
        found: list[tuple[int, float, str, str]] = []
        for q, reply in zip(queues, replies, strict=True):
            running, pending, with_failures = running + reply[0], pending + reply[1], with_failures + reply[2]
            for i in range(3, len(reply), 3):
                bid = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
                found.append((int(reply[i + 2]), -float(reply[i + 1]), q, bid))
        found.sort()
        rows = await self._rows_of(found[offset:count])
        return BatchSummary(running, pending, with_failures, tuple(rows))

    async def _ensure_batch_indexes(self, queue: str) -> None:
        """Batches kept from before the indexes existed: add the unfinished ones to batches:active
        and those finished with failures to batches:with_failures, once per queue.  The one scan
        runs to its end even when the read that started it is cancelled (a console refetching
        every second), so a second read waits for it instead of starting it again."""
        task = self._batch_indexing.get(queue)
        if task is None:
            task = asyncio.ensure_future(self._index_batches(queue))
            self._batch_indexing[queue] = task
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._batch_indexing.pop(queue, None)  # a lost connection: the next read tries again
            raise

    async def _index_batches(self, queue: str) -> None:
        keys = self._keys(queue)
        indexes = {
            active_batches_key(keys): (ACTIVE_STATES, keys.batches_active_indexed),
            with_failures_key(keys): (frozenset({"finished_with_failures"}), keys.batches_with_failures_indexed),
        }
        async with self.client.pipeline(transaction=False) as pipe:
            for _, marker in indexes.values():
                pipe.exists(marker)
            done = await pipe.execute()
        todo = {index: found for (index, found), marked in zip(indexes.items(), done, strict=True) if not marked}
        if not todo:
            return
        entries: Any = await self.client.zrange(batches_key(keys), 0, -1, withscores=True)
        for start in range(0, len(entries), SCAN_CHUNK):
            chunk = entries[start : start + SCAN_CHUNK]
            async with self.client.pipeline(transaction=False) as pipe:
                for bid, _ in chunk:
                    pipe.hmget(batch_key(keys, str(bid)), "state", "finished_at")
                records = await pipe.execute()
            for index, (states, _) in todo.items():
                # the active index is scored by creation, the other by finish
                by_finish = index != active_batches_key(keys)
                found = {
                    str(bid): float(at or created) if by_finish else float(created)
                    for (bid, created), (st, at) in zip(chunk, records, strict=True)
                    if st in states
                }
                if found:
                    await self.client.zadd(index, found, nx=True)
        for _, marker in todo.values():
            await self.client.set(marker, "1")

    async def _batch(self, batch_id: str) -> BatchRow | None:
        queue = await self.client.hget(batch_index_key(self.prefix), batch_id)
        if queue is None:
            return None
        rows = await self._batch_rows(str(queue), [batch_id])
        return rows[0] if rows else None

    async def batch_detail(self, batch_id: str) -> BatchDetail | None:
        row = await self._batch(batch_id)
        if row is None:
            return None
        page = await self.failed_page(FailedFilter(queue=row.queue, batch=batch_id), 0, PAGE_SIZE)
        return BatchDetail(row=row, failed_jobs=page.rows)

    async def cancel_batch_preview(self, batch_id: str) -> tuple[int, int]:
        """(queued jobs a cancel would remove, running jobs it would tell to stop)."""
        row = await self._batch(batch_id)
        if row is None or _batch_finished(row):
            return (0, 0)
        keys = self._keys(row.queue)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.llen(keys.lane(batch_id))
            pipe.scard(keys.batch_running(batch_id))
            queued, running = await pipe.execute()
        return (int(queued), int(running))

    async def cancel_batch(self, batch_id: str) -> ActionResult:
        if await self.client.hget(batch_index_key(self.prefix), batch_id) is None:
            return ActionResult("cancel_batch", batch_id, False, f"No batch {batch_id}: nothing changed")
        out = await self.batches.cancel_ex(batch_id)
        if not out.changed:
            state = out.previous_state.replace("_", " ")
            return ActionResult(
                "cancel_batch", batch_id, False, f"{batch_id} already {state}: nothing changed", skipped=1
            )
        # the batch_cancel script wrote the batch_cancelled event with these numbers
        if out.told_to_stop:
            await self._wake_workers(batch_id)
        return ActionResult(
            "cancel_batch",
            batch_id,
            True,
            f"Cancelled {batch_id}: removed {_plural(out.removed, 'queued job')}, "
            f"{out.told_to_stop:,} running told to stop",
            removed=out.removed,
            told_to_stop=out.told_to_stop,
        )

    async def retry_batch(self, batch_id: str) -> ActionResult:
        if await self.client.hget(batch_index_key(self.prefix), batch_id) is None:
            return ActionResult("retry_batch", batch_id, False, f"No batch {batch_id}: nothing changed")
        n = await self.batches.retry(batch_id)
        if n == 0:
            return ActionResult(
                "retry_batch", batch_id, False, f"{batch_id} has no failed or cancelled jobs to retry: nothing changed"
            )
        # the batch_retry script wrote the batch_retried event
        return ActionResult(
            "retry_batch", batch_id, True, f"Retrying {batch_id}: {_plural(n, 'job')} queued again", retried=n
        )

    # failed jobs -------------------------------------------------------------
    async def _filter_queues(self, flt: FailedFilter) -> list[str]:
        if flt.batch:
            owner = await self.client.hget(batch_index_key(self.prefix), flt.batch)
            if owner is None:
                # a batch pruned since: its failed jobs may still be indexed on the filter's queue
                return [flt.queue] if flt.queue else await self._queues()
            return [] if flt.queue and flt.queue != str(owner) else [str(owner)]
        return await self._queues(flt.queue)

    async def _match_queue(
        self, queue: str, flt: FailedFilter, limit: int | None
    ) -> tuple[int, list[tuple[float, str]]]:
        """(how many failed jobs of ``queue`` match, the newest ``limit`` of them (all: None))."""
        keys = self._keys(queue)
        cutoff = int(time.time() * 1000) - FAILED_RETENTION_MS
        facets = [
            keys.failed_index(f, v) for f, v in (("batch", flt.batch), ("name", flt.name), ("exc", flt.exception)) if v
        ]
        sets = facets or [keys.failed]
        if len(sets) == 1 and not flt.text:
            total = int(await self.client.zcount(sets[0], cutoff, "+inf"))
            n = total if limit is None else min(limit, total)
            if n == 0:
                return total, []
            got: Any = await self.client.zrevrangebyscore(sets[0], "+inf", cutoff, start=0, num=n, withscores=True)
            return total, [(float(sc), str(i)) for i, sc in got]
        async with self.client.pipeline(transaction=False) as pipe:
            for key in sets:
                pipe.zcount(key, cutoff, "+inf")
            sizes = await pipe.execute()
        # walk the smallest index, newest first; check the others by score lookups
        order = sorted(range(len(sets)), key=lambda i: sizes[i])
        smallest, others = sets[order[0]], [sets[i] for i in order[1:]]
        matched: list[tuple[float, str]] = []
        scanned = 0
        text = (flt.text or "").lower()
        start = 0
        while True:
            got = await self.client.zrevrangebyscore(
                smallest, "+inf", cutoff, start=start, num=SCAN_CHUNK, withscores=True
            )
            if not got:
                break
            start += len(got)
            ids = [str(i) for i, _ in got]
            keep = [True] * len(ids)
            if others:
                async with self.client.pipeline(transaction=False) as pipe:
                    for key in others:
                        pipe.zmscore(key, ids)
                    scores = await pipe.execute()
                keep = [all(col[j] is not None for col in scores) for j in range(len(ids))]
            candidates = [(float(sc), str(i)) for (i, sc), k in zip(got, keep, strict=True) if k]
            if text:
                candidates = candidates[: max(0, TEXT_SCAN_LIMIT - scanned)]
                scanned += len(candidates)
                candidates = await self._text_match(keys, candidates, text)
            matched += candidates
            if (text and scanned >= TEXT_SCAN_LIMIT) or len(got) < SCAN_CHUNK:
                break
        return len(matched), matched if limit is None else matched[:limit]

    async def _text_match(
        self, keys: QueueKeys, candidates: list[tuple[float, str]], text: str
    ) -> list[tuple[float, str]]:
        if not candidates:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for _, job_id in candidates:
                pipe.hmget(keys.job(job_id), "f_name", "f_exc", "failure")
            recs = await pipe.execute()
        out = []
        for cand, rec in zip(candidates, recs, strict=True):
            failure = _loads(rec[2]) or {}
            hay = " ".join(
                (
                    cand[1],
                    str(rec[0] or ""),
                    str(rec[1] or ""),
                    str(failure.get("message") or ""),
                    " ".join(str(t) for t in failure.get("tags") or ()),
                )
            ).lower()
            if text in hay:
                out.append(cand)
        return out

    async def _matching(self, flt: FailedFilter, limit: int | None) -> tuple[int, list[tuple[float, str, str]]]:
        queues = await self._filter_queues(flt)
        await self.ensure_indexes(queues)
        total = 0
        merged: list[tuple[float, str, str]] = []
        for q in queues:
            n, got = await self._match_queue(q, flt, limit)
            total += n
            merged += [(sc, q, job_id) for sc, job_id in got]
        merged.sort(key=lambda t: -t[0])
        return total, merged if limit is None else merged[:limit]

    async def _rows(self, items: Sequence[tuple[float, str, str]]) -> list[FailedRow]:
        if not items:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for _, q, job_id in items:
                pipe.hmget(self._keys(q).job(job_id), *FAILED_FIELDS)
            recs = await pipe.execute()
        rows = [
            _failed_row(q, job_id, rec) for (_, q, job_id), rec in zip(items, recs, strict=True) if rec[0] is not None
        ]
        retried = [r for r in rows if r.retried_by]
        if not retried:
            return rows
        async with self.client.pipeline(transaction=False) as pipe:
            for r in retried:
                pipe.hget(self._keys(r.queue).job(str(r.retried_by)), "state")
            states = await pipe.execute()
        state_of = {r.id: (s or "completed or gone") for r, s in zip(retried, states, strict=True)}
        return [_with_retry_state(r, state_of.get(r.id)) for r in rows]

    async def failed_page(
        self, flt: FailedFilter = FailedFilter(), offset: int = 0, count: int = PAGE_SIZE
    ) -> FailedPage:
        """Newest first."""
        total, items = await self._matching(flt, offset + count)
        return FailedPage(total=total, offset=offset, rows=tuple(await self._rows(items[offset : offset + count])))

    async def failed_groups(self, flt: FailedFilter = FailedFilter()) -> list[FailedGroup]:
        """Failed jobs matching ``flt`` per exception class (the failure kind when there is no
        class), largest group first."""
        queues = await self._filter_queues(flt)
        await self.ensure_indexes(queues)
        values: set[str] = set()
        cutoff = int(time.time() * 1000) - FAILED_RETENTION_MS
        for q in queues:
            values.update(
                str(v) for v in await self.client.zrangebyscore(self._keys(q).failed_values("exc"), cutoff, "+inf")
            )
        if flt.exception:
            values &= {flt.exception}
        groups = []
        for value in values:
            n = await self.failed_count(FailedFilter(flt.queue, flt.batch, value, flt.name, flt.text))
            if n:
                groups.append(FailedGroup(value, n))
        groups.sort(key=lambda g: (-g.count, g.exception))
        return groups

    async def failed_count(self, flt: FailedFilter = FailedFilter()) -> int:
        total, _ = await self._matching(flt, 0)
        return total

    async def failed_detail(self, job_id: str, queue: str | None = None) -> FailedDetail | None:
        q = await self._find_job(job_id, queue)
        if q is None:
            return None
        keys = self._keys(q)
        rec = await self.client.hgetall(keys.job(job_id))
        if not rec or rec.get("state") not in (JobStatus.FAILED, JobStatus.RETRIED):
            return None
        row = _failed_row(q, job_id, [rec.get(f) for f in FAILED_FIELDS])
        failure = _loads(rec.get("failure")) or {}
        env = _loads(rec.get("data")) or {}
        retries: list[tuple[str, str, float | None]] = []
        link: Any = rec.get("retried_by")
        seen = {job_id}
        when = _ms(rec.get("retried_at"))
        while link and link not in seen and len(retries) < 20:
            seen.add(link)
            nxt: Any = await self.client.hmget(keys.job(link), "state", "retried_by", "retried_at")
            retries.append((str(nxt[0] or "completed or gone"), link, when))
            link, when = nxt[1], _ms(nxt[2])
        if retries:
            row = _with_retry_state(row, retries[-1][0])
        summary = {
            "id": job_id,
            "queue": q,
            "name": row.name,
            "batch": row.batch,
            "tenant": env.get("tenant"),
            "kind": row.kind,
            "exception": row.exception,
            "reason": failure.get("reason"),
            "attempts": row.attempts,
            "tries": row.tries,
            "releases": _int(rec.get("releases")),
            "exceptions": _int(rec.get("exceptions")),
            "lost": _int(rec.get("lost")),
            "retry_of": env.get("retry_of"),
            "retried_by": rec.get("retried_by"),
            "enqueued_at": env.get("enqueued_at"),
            "started_at": _ms(rec.get("started_at")),
            "failed_at": row.failed_at,
            "runtime": row.runtime,
            "worker": row.worker,
            "lease_renewed_at": _ms(rec.get("renewed_at")),
            "lease_renewals": _int(rec.get("renewals")),
            "lease_seconds": (_int(rec.get("lease_ms")) / 1000.0) or None,
            "timeout": _timeout(env) if not rec.get("timeout") else float(rec["timeout"]) or None,
            "detail": failure.get("detail"),
            "cancelled_at": _ms(rec.get("cancel_at")),
            "progress": float(rec["progress"]) if rec.get("progress") else None,
            "progress_note": rec.get("progress_note") or None,
            "message": failure.get("message"),
        }
        return FailedDetail(
            row=row,
            traceback=str(failure.get("traceback") or ""),
            payload=failure.get("payload", env.get("payload")),
            checkpoint=_loads(rec.get("checkpoint")),
            summary=summary,
            retries=tuple(retries),
        )

    async def _gone(self, action: str, job_id: str, queue: str | None) -> ActionResult:
        """Why a failed job could not be acted on."""
        q = await self._find_job(job_id, queue)
        if q is not None:
            rec: Any = await self.client.hmget(self._keys(q).job(job_id), "state", "retried_by")
            if rec[0] == JobStatus.RETRIED:
                return ActionResult(
                    action, job_id, False, f"{job_id} was already retried as {rec[1]}: nothing changed", skipped=1
                )
            return ActionResult(
                action,
                job_id,
                False,
                f"{job_id} is not in the failed store (it is {rec[0] or 'queued'}): nothing changed",
                skipped=1,
            )
        return ActionResult(
            action,
            job_id,
            False,
            f"No failed job {job_id} (forgotten, expired or never failed): nothing changed",
            skipped=1,
        )

    async def retry_failed(self, job_id: str, queue: str | None = None) -> ActionResult:
        q = await self._find_job(job_id, queue, failed_only=True)
        if q is None:
            return await self._gone("retry_failed", job_id, queue)
        new_id = await self.queue.retry_failed(q, job_id)
        if new_id is None:
            return await self._gone("retry_failed", job_id, queue)
        result = ActionResult(
            "retry_failed", job_id, True, f"Retried {job_id}: queued again as {new_id}", retried=1, new_ids=(new_id,)
        )
        await self._event("failed_retried", result, queue=q, id=job_id, count="1")
        return result

    async def forget_failed(self, job_id: str, queue: str | None = None) -> ActionResult:
        q = await self._find_job(job_id, queue, failed_only=True)
        if q is None or not await self.queue.forget_failed(q, job_id):
            return await self._gone("forget_failed", job_id, queue)
        result = ActionResult("forget_failed", job_id, True, f"Forgot {job_id}", forgotten=1)
        await self._event("failed_forgotten", result, queue=q, id=job_id, count="1")
        return result

    async def _all_matching(self, flt: FailedFilter) -> dict[str, list[str]]:
        _, items = await self._matching(flt, None)
        by_queue: dict[str, list[str]] = {}
        for _, q, job_id in items:
            by_queue.setdefault(q, []).append(job_id)
        return by_queue

    async def retry_matching(self, flt: FailedFilter) -> ActionResult:
        target = flt.describe() or "all"
        retried: list[str] = []
        skipped = 0
        for q, ids in (await self._all_matching(flt)).items():
            for _old, new in await self.queue.retry_failed_many(q, ids):
                if new is None:
                    skipped += 1
                else:
                    retried.append(new)
        if not retried:
            msg = (
                f"No failed jobs matching {target} to retry"
                if not skipped
                else f"Retried none of the jobs matching {target}: {skipped:,} already retried or forgotten"
            )
            return ActionResult("retry_matching", target, False, msg, skipped=skipped)
        msg = f"Retried {_plural(len(retried), 'failed job')} matching {target}"
        if skipped:
            msg += f" ({skipped:,} skipped: already retried or forgotten)"
        result = ActionResult(
            "retry_matching", target, True, msg, retried=len(retried), skipped=skipped, new_ids=tuple(retried)
        )
        await self._event("failed_retried", result, count=str(len(retried)))
        return result

    async def forget_matching(self, flt: FailedFilter) -> ActionResult:
        target = flt.describe() or "all"
        forgotten = 0
        skipped = 0
        for q, ids in (await self._all_matching(flt)).items():
            done = await self.queue.forget_failed_many(q, ids)
            forgotten += len(done)
            skipped += len(ids) - len(done)
        if not forgotten:
            return ActionResult(
                "forget_matching", target, False, f"No failed jobs matching {target} to forget", skipped=skipped
            )
        msg = f"Forgot {_plural(forgotten, 'failed job')} matching {target}"
        if skipped:
            msg += f" ({skipped:,} skipped: already retried or forgotten)"
        result = ActionResult("forget_matching", target, True, msg, forgotten=forgotten, skipped=skipped)
        await self._event("failed_forgotten", result, count=str(forgotten))
        return result

    # running jobs ------------------------------------------------------------
    RUNNING_FIELDS = (
        "data",
        "owner",
        "started_at",
        "attempts",
        "releases",
        "renewed_at",
        "lease_ms",
        "progress",
        "progress_note",
        "cancel",
        "batch",
        "timeout",
        "renewals",
    )

    async def running(self, queue: str | None = None) -> list[RunningRow]:
        """Every leased job, longest-running first."""
        rows: list[RunningRow] = []
        workers: Any = await self.client.hgetall(self.queue.globals.workers)
        graces: dict[str, float] = {}
        for wid, raw in workers.items():
            info = _loads(raw)
            if isinstance(info, dict) and isinstance(info.get("cancel_grace"), int | float):
                graces[str(wid)] = float(info["cancel_grace"])
        for q in await self._queues(queue):
            keys = self._keys(q)
            leased: Any = await self.client.zrange(keys.reserved, 0, -1, withscores=True)
            if not leased:
                continue
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id, _ in leased:
                    pipe.hmget(keys.job(str(job_id)), *self.RUNNING_FIELDS)
                recs = await pipe.execute()
            for (job_id, deadline), rec in zip(leased, recs, strict=True):
                if rec[0] is None:
                    continue
                env = _loads(rec[0]) or {}
                timeout = float(rec[11]) if rec[11] else _timeout(env)
                rows.append(
                    RunningRow(
                        id=str(job_id),
                        name=str(env.get("name") or ""),
                        queue=q,
                        batch=rec[10] or None,
                        worker=worker_of(rec[1]),
                        started_at=_ms(rec[2]),
                        attempt=_int(rec[3]),
                        tries=_tries(env),
                        timeout=timeout or None,
                        lease_deadline=float(deadline) / 1000.0,
                        renewed_at=_ms(rec[5]),
                        lease_seconds=(_int(rec[6]) / 1000.0) or None,
                        progress=float(rec[7]) if rec[7] else None,
                        progress_note=rec[8] or None,
                        sample=_sample(env),
                        releases=_int(rec[4]),
                        cancel_requested=bool(rec[9]),
                        renewals=_int(rec[12]),
                        cancel_grace=graces.get(str(rec[1] or "")),
                    )
                )
        rows.sort(key=lambda r: (r.started_at if r.started_at is not None else float("inf"), r.id))
        return rows

    async def cancel_job(self, job_id: str, queue: str | None = None) -> ActionResult:
        q = await self._find_job(job_id, queue)
        if q is None:
            return ActionResult(
                "cancel_job",
                job_id,
                False,
                f"No job {job_id} (it completed, was forgotten or expired): nothing changed",
                skipped=1,
            )
        reply = await self.queue.cancel_job(q, job_id)
        if reply.what == "told":
            await self._wake_workers(job_id)
            owner: Any = await self.client.hget(self._keys(q).job(job_id), "owner")
            result = ActionResult(
                "cancel_job",
                job_id,
                True,
                f"Cancelled {job_id}: its worker {worker_of(owner)} is told to stop at its next lease renewal",
                told_to_stop=1,
            )
            await self._event("job_cancel_requested", result, queue=q, id=job_id)
            return result
        if reply.what == "removed":
            result = ActionResult(
                "cancel_job", job_id, True, f"Cancelled {job_id}: removed from the queue before it started", removed=1
            )
            await self._event("job_cancelled", result, queue=q, id=job_id)
            return result
        if reply.what == "already":
            return ActionResult(
                "cancel_job", job_id, False, f"{job_id} was already told to stop: nothing changed", skipped=1
            )
        if reply.what == "missing":
            return ActionResult(
                "cancel_job",
                job_id,
                False,
                f"No job {job_id} (it completed, was forgotten or expired): nothing changed",
                skipped=1,
            )
        return ActionResult(
            "cancel_job", job_id, False, f"{job_id} already finished ({reply.state}): nothing changed", skipped=1
        )

    # one queue: its job lists, pause and clear -------------------------------
    async def queue_jobs(self, queue: str, tab: str, offset: int = 0, count: int = PAGE_SIZE) -> QueueJobPage:
        """One page of a queue's ready, delayed, running or failed jobs, oldest first; rows carry
        no payload."""
        if tab not in QUEUE_TABS:
            raise ValueError(f"unknown job list {tab!r}: use {', '.join(QUEUE_TABS)}")
        keys = self._keys(queue)
        index = {"ready": keys.ready, "delayed": keys.delayed, "running": keys.reserved, "failed": keys.failed}[tab]
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(index)
            pipe.zrange(index, offset, offset + count - 1, withscores=True)
            total, items = await pipe.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id, _ in items:
                pipe.hmget(keys.job(str(job_id)), "data", "batch", "attempts", "owner")
            recs = await pipe.execute() if items else []
        rows = []
        for (job_id, score), rec in zip(items, recs, strict=True):
            env = _loads(rec[0]) or {}
            rows.append(
                QueueJobRow(
                    id=str(job_id),
                    name=str(env.get("name") or "") if isinstance(env, dict) else "",
                    batch=rec[1] or (env.get("batch") if isinstance(env, dict) else None) or None,
                    at=float(score) / 1000.0,
                    attempts=_int(rec[2]),
                    worker=worker_of(rec[3]) if tab == "running" and rec[3] else None,
                )
            )
        return QueueJobPage(queue, tab, offset, int(total), tuple(rows))

    async def job_detail(self, queue: str, job_id: str) -> JobDetail | None:
        """A job's record with its payload (pretty JSON), or None once it is gone."""
        rec: Any = await self.client.hgetall(self._keys(queue).job(job_id))
        if not rec:
            return None
        env = _loads(rec.get("data")) or {}
        if not isinstance(env, dict):
            env = {}
        payload = json.dumps(env.get("payload"), indent=2, ensure_ascii=False, default=str)
        fields = [("id", job_id), ("queue", queue)]
        for key in ("batch", "attempts", "owner", "started_at", "timeout", "renewals", "releases"):
            if rec.get(key):
                fields.append((key, str(rec[key])))
        for key in ("tries", "timeout", "tags", "tenant", "lane"):
            if env.get(key) not in (None, "", []):
                fields.append((f"job {key}", str(env[key])))
        return JobDetail(job_id, queue, str(env.get("name") or ""), tuple(fields), payload)

    async def pause_queue(self, queue: str, by: str = "console") -> ActionResult:
        from .queue_ops import QueueOps  # queue_ops builds on ActionResult, defined here

        return await QueueOps(self.client, self.prefix).pause(queue, by)

    async def continue_queue(self, queue: str, by: str = "console") -> ActionResult:
        from .queue_ops import QueueOps

        return await QueueOps(self.client, self.prefix).resume(queue, by)

    async def clear_queue(self, queue: str) -> ActionResult:
        """Remove the queue's ready jobs (running and delayed ones stay)."""
        from .queue_ops import QueueOps

        return await QueueOps(self.client, self.prefix).clear(queue)

    async def recent_events(self, count: int = 20) -> list[dict[str, Any]]:
        """The newest ``count`` events of the events stream, newest first."""
        return await read_events(self.client, self.prefix, count)

    # masters and supervisors -------------------------------------------------
    async def masters(self, now: float | None = None) -> list[MasterRow]:
        """Every master in the heartbeat hash, a silent one as lost (the daemon forgets it after
        ``MASTER_FORGET``), with its supervisors' memory and jobs done from their workers."""
        now = time.time() if now is None else now
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(masters_key(self.prefix))
            pipe.hgetall(self.queue.globals.workers)
            masters_raw, workers_raw = await pipe.execute()
        workers = [w for w in (_loads(raw) for raw in workers_raw.values()) if isinstance(w, dict)]
        rows = []
        for raw in masters_raw.values():
            info = _loads(raw)
            if isinstance(info, dict):
                rows.append(master_row(info, workers, now))
        return sorted(rows, key=lambda m: m.name)

    async def master_command(
        self, master: str, action: str, supervisor: str | None = None, **extra: Any
    ) -> ActionResult:
        """Send one command (pause, continue, restart, terminate, scale) to a master's control list;
        the master acts on it within a second."""
        info: Any = await self.client.hget(masters_key(self.prefix), master)
        if info is None:
            return ActionResult(action, master, False, f"No master {master} on this Redis: nothing sent", skipped=1)
        cmd = json.dumps({"action": action, "supervisor": supervisor, "from": "console", "at": time.time(), **extra})
        key = GlobalKeys(self.prefix).control(master)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, cmd)
            pipe.expire(key, COMMAND_TTL)
            await pipe.execute()
        target = f"{master}/{supervisor}" if supervisor else master
        whom = "supervisor " + supervisor if supervisor else "master " + master
        what = {
            "pause": f"Paused {whom}: its workers finish their jobs and take no more",
            "continue": f"Continued {whom}: its workers take jobs again",
            "restart": f"Restarting the workers of {master}: each finishes its jobs, then a new one takes its place",
            "terminate": f"Terminating {master}: its workers finish their jobs, then it exits",
        }.get(action)
        if action == "scale":
            n = extra.get("processes")
            what = (
                f"Scaled {supervisor} {extra.get('queue')} on {master} to "
                f"{n} process{'' if n == 1 else 'es'} (override)"
                if n is not None
                else f"Dropped the override of {supervisor} {extra.get('queue')} on {master}: balancing again"
            )
        result = ActionResult(action, target, True, what or f"{action}: sent to {master}")
        await self._event(f"master_{action}", result, master=master)
        return result

    async def scale(self, master: str, supervisor: str, queue: str, processes: int | None) -> ActionResult:
        """A temporary fixed size for one pool (``None``: back to the balancer)."""
        return await self.master_command(master, "scale", supervisor, queue=queue, processes=processes)

    # the console's reads beyond pages ----------------------------------------
    async def batch(self, batch_id: str) -> BatchRow | None:
        """One batch's row by its whole id, or None."""
        return await self._batch(batch_id)

    async def events(self, after: str | None = None, count: int = 1_000) -> list[dict[str, Any]]:
        """Events oldest first: the newest ``count``, or those after the event id ``after``."""
        return await read_events_after(self.client, self.prefix, after, count)

    async def history(self, minutes: int = HISTORY_CAP) -> list[dict[str, Any]]:
        """The recorded per-minute history, oldest first (at most 24 h)."""
        return await read_history(self.client, self.prefix, minutes)

    async def lookup(self, text: str, limit: int = 20) -> list[Found]:
        """Batches, jobs, queues and masters matching ``text`` (core/lookup.py)."""
        return await lookup(self.client, self.prefix, text, limit)


def rate_per_minute(rec: dict[str, str], now: float) -> float | None:
    """Completions in the last 60 s, estimated from the per-minute counts the scripts keep on the
    batch (this minute's, plus the previous minute's weighted by the part still in the window);
    a batch that started less than a minute ago has its count so far scaled to a minute."""
    if "rate_min" not in rec:
        return None
    minute = _int(rec.get("rate_min"), -1)
    this, prev = _int(rec.get("rate_this")), _int(rec.get("rate_prev"))
    current = int(now // 60)
    if minute not in (current, current - 1):
        return 0.0
    started = _ms(rec.get("started_at"))
    if started is not None and 0 < now - started < 60:
        # the window holds only what the batch did since it started: all of it, over less time
        return (this + prev) * 60 / max(now - started, 1.0)
    into = (now % 60) / 60.0
    return this + prev * (1.0 - into) if minute == current else this * (1.0 - into)


def _with_retry_state(row: FailedRow, state: str | None) -> FailedRow:
    from dataclasses import replace

    return replace(row, retry_state=state)


def _batch_finished(row: BatchRow) -> bool:
    return row.state == "cancelled" or (row.state in TERMINAL and row.pending <= 0)
