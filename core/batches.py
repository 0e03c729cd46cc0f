"""Batches: a named set of jobs on one queue with counters, an explicit state and callbacks.

Beyond Laravel's batches: cancel removes the queued jobs at once; a batch with allowed failures
finishes (``finished_with_failures``); ``finally`` runs after cancel and after failures; retry
re-queues failed (and cancelled) jobs and reopens the batch; batches sharing a queue are served
round-robin (each batch is a lane), so a large batch never starves a small one dispatched later.

    from evalharness.core.batches import Batches, batch_callback

    @batch_callback("report")
    async def report(batch):             # batch: BatchInfo
        print(batch.name, batch.state, batch.failed)

    batches = Batches(client)
    bid = await batches.create("nightly", [JobRequest("summarise", doc) for doc in docs],
                               queue="llm", allow_failures=True, finally_=["report"])
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis.asyncio as aioredis

from .config import validate_name
from .errors import EvalHarnessError
from .jobs import JobContext, PermanentError, job, new_job_id
from .keys import GlobalKeys, QueueKeys
from .prelude import EVENTS_MAXLEN
from .queue import JobRequest, Queue

STAGES = ("before", "progress", "then", "catch", "finally")
STATES = ("pending", "running", "succeeded", "finished_with_failures", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "finished_with_failures", "failed", "cancelled"})
CALLBACK_JOB = "evalharness.batch_callback"

BatchCallback = Callable[["BatchInfo"], Awaitable[None] | None]
CALLBACKS: dict[str, BatchCallback] = {}


def batch_callback(name: str) -> Callable[[BatchCallback], BatchCallback]:
    """Register a batch callback by name (callbacks are never pickled: workers import them)."""

    def decorate(func: BatchCallback) -> BatchCallback:
        CALLBACKS[name] = func
        return func

    return decorate


# The names live in core/keys.py (GlobalKeys.batch_queues, QueueKeys.batch...); these short
# forms are what the readers use.
def batch_index_key(prefix: str) -> str:
    """HASH batch id -> queue, for finding a batch from its id alone."""
    return GlobalKeys(prefix).batch_queues


def batch_key(keys: QueueKeys, batch_id: str) -> str:
    return keys.batch(batch_id)


def batches_key(keys: QueueKeys) -> str:
    return keys.batches


def active_batches_key(keys: QueueKeys) -> str:
    """ZSET batch id -> created ms of the batches not finished yet (kept by the scripts, see
    the batch helpers of _prelude.lua), so the active list never reads finished batches."""
    return keys.batches_active


def with_failures_key(keys: QueueKeys) -> str:
    """ZSET batch id -> finish time (ms) of the batches that finished with failures (kept by the
    scripts, see the batch helpers of _prelude.lua), so a count of them reads no batch record."""
    return keys.batches_with_failures


@dataclass(frozen=True)
class BatchInfo:
    id: str
    name: str
    queue: str
    state: str
    total: int
    pending: int
    processed: int
    failed: int
    failed_job_ids: tuple[str, ...]
    allow_failures: bool
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    cancelled_at: float | None
    tags: tuple[str, ...] = ()
    tenant: str | None = None
    callbacks: dict[str, list[str]] = field(default_factory=dict)
    # A batch created with a declared total (an eval run: the dataset's size) counts that total
    # from the start; ``dispatched`` says how many of its jobs exist so far.
    declared: int | None = None
    dispatched: int = 0
    # Declared jobs not dispatched yet that may still come (0 once sealed, cancelled or failed);
    # they count in ``pending`` and keep the batch from finishing.
    undispatched: int = 0
    # At most this many of its jobs run at once (an eval run's concurrency); None: no limit.
    max_running: int | None = None
    running: int = 0  # its jobs a worker holds now (the size of its running set)

    @property
    def progress(self) -> float:
        """processed / total (1.0 for an empty batch); a declared total counts from the start."""
        return 1.0 if self.total == 0 else self.processed / self.total

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL and self.pending == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "state": self.state,
            "total": self.total,
            "declared": self.declared,
            "dispatched": self.dispatched,
            "undispatched": self.undispatched,
            "pending": self.pending,
            "processed": self.processed,
            "failed": self.failed,
            "failed_job_ids": list(self.failed_job_ids),
            "progress": self.progress,
            "allow_failures": self.allow_failures,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "cancelled_at": self.cancelled_at,
            "tags": list(self.tags),
            "tenant": self.tenant,
            "callbacks": self.callbacks,
            "max_running": self.max_running,
            "running": self.running,
        }


@dataclass(frozen=True)
class CancelOutcome:
    """What a batch cancel did: queued jobs removed, running jobs told to stop, the state the
    batch had, and whether it changed anything (False for a batch already cancelled or finished)."""

    batch_id: str
    queue: str
    removed: int
    told_to_stop: int
    previous_state: str
    changed: bool


def _ms(value: str | None) -> float | None:
    return None if value is None or value == "" else int(value) / 1000.0


def undispatched(rec: dict[str, str]) -> int:
    """Declared jobs of a batch record not dispatched yet that may still come (as the Lua
    helper ``b_undispatched`` counts them)."""
    if not rec.get("declared") or rec.get("sealed") == "1" or rec.get("state") in ("cancelled", "failed"):
        return 0
    return max(0, int(rec["declared"]) - int(rec.get("dispatched") or 0))


def _check_max_running(max_running: int | None) -> None:
    if max_running is not None and max_running < 1:
        raise EvalHarnessError(f"a batch's max_running must be >= 1, got {max_running}")


def _info(batch_id: str, queue: str, rec: dict[str, str], failed_ids: Sequence[str], running: int) -> BatchInfo:
    declared = int(rec["declared"]) if rec.get("declared") else None
    left = undispatched(rec)
    return BatchInfo(
        id=batch_id,
        name=rec.get("name", ""),
        queue=queue,
        state=rec.get("state", "pending"),
        total=int(rec.get("total", 0)),
        pending=int(rec.get("pending", 0)) + left,
        processed=int(rec.get("processed", 0)),
        failed=int(rec.get("failed", 0)),
        failed_job_ids=tuple(sorted(failed_ids)),
        allow_failures=rec.get("allow_failures") == "1",
        created_at=_ms(rec.get("created_at")),
        started_at=_ms(rec.get("started_at")),
        finished_at=_ms(rec.get("finished_at")),
        cancelled_at=_ms(rec.get("cancelled_at")),
        tags=tuple(json.loads(rec.get("tags") or "[]")),
        tenant=rec.get("tenant") or None,
        callbacks={s: json.loads(rec[f"cb:{s}"]) for s in STAGES if rec.get(f"cb:{s}")},
        declared=declared,
        dispatched=int(rec.get("dispatched") or rec.get("total") or 0)
        if declared is not None
        else int(rec.get("total", 0)),
        undispatched=left,
        max_running=int(rec["max_running"]) if rec.get("max_running") else None,
        running=running,
    )


class Batches:
    """Create, inspect, cancel, retry and prune batches under one key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str = "eh", queue: Queue | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.queue = queue or Queue(client, prefix)

    async def create(
        self,
        name: str,
        jobs: Sequence[JobRequest] = (),
        *,
        queue: str = "default",
        allow_failures: bool = False,
        tags: Sequence[str] = (),
        tenant: str | None = None,
        before: Sequence[str] = (),
        progress: Sequence[str] = (),
        then: Sequence[str] = (),
        catch: Sequence[str] = (),
        finally_: Sequence[str] = (),
        batch_id: str | None = None,
        total: int | None = None,
        max_running: int | None = None,
    ) -> str:
        """Create a batch and dispatch its first jobs (more can be added with :meth:`add`).

        Without ``total`` the batch's total grows with every job added (Laravel's batches).
        With ``total=N`` the batch declares its size up front, for a producer that dispatches its
        jobs over time (an eval run keeps a few in flight): the total is N from the start, progress
        is done / N, and the batch does not finish while fewer than N jobs were dispatched, unless
        it is sealed (:meth:`seal`: no more will come) or cancelled.  Jobs beyond N still count.

        With ``max_running=N`` workers start at most N of the batch's jobs at once, however many
        are queued and however many workers are free: a producer can queue jobs ahead of its
        concurrency, so a worker that finishes one starts the next without waiting for it."""
        validate_name("queue", queue)
        if total is not None and total < 0:
            raise EvalHarnessError(f"a batch's declared total must be >= 0, got {total}")
        _check_max_running(max_running)
        bid = batch_id or f"b{new_job_id()}"
        validate_name("batch id", bid)
        keys = self.queue.keys(queue)
        now_ms = int(time.time() * 1000)
        fields: dict[str, str | int] = {
            "name": name,
            "queue": queue,
            "state": "pending",
            "total": total or 0,
            "pending": 0,
            "processed": 0,
            "failed": 0,
            "allow_failures": "1" if allow_failures else "0",
            "created_at": now_ms,
            "tags": json.dumps(list(tags)),
            "tenant": tenant or "",
        }
        if total is not None:
            fields["declared"] = total
            fields["dispatched"] = 0
        if max_running is not None:
            fields["max_running"] = max_running
        for stage, names in (
            ("before", before),
            ("progress", progress),
            ("then", then),
            ("catch", catch),
            ("finally", finally_),
        ):
            if names:
                fields[f"cb:{stage}"] = json.dumps(list(names))
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(batch_key(keys, bid), "id", bid)
            pipe.hset(batch_key(keys, bid), mapping=fields)  # type: ignore[arg-type]
            pipe.zadd(batches_key(keys), {bid: now_ms})
            pipe.zadd(active_batches_key(keys), {bid: now_ms})
            pipe.hset(batch_index_key(self.prefix), bid, queue)
            pipe.sadd(self.queue.globals.queues, queue)
            await pipe.execute()
        if before:
            await self.queue.dispatch(
                CALLBACK_JOB, {"batch": bid, "stage": "before", "queue": queue}, queue=queue, lane="_cb"
            )
        await self.add(bid, jobs, queue=queue)
        await self.client.xadd(
            GlobalKeys(self.prefix).events,
            {
                "kind": "batch_created",
                "batch": bid,
                "name": name,
                "queue": queue,
                "total": str(total if total is not None else len(jobs)),
                "at": f"{time.time():.3f}",
            },
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        return bid

    async def set_max_running(self, batch_id: str, max_running: int | None) -> None:
        """Change how many of the batch's jobs may run at once (None: no limit).  Jobs running
        beyond a lowered limit finish; no new one starts until the batch is below it."""
        _check_max_running(max_running)
        keys = self.queue.keys(await self.queue_of(batch_id))
        async with self.client.pipeline(transaction=False) as pipe:
            if max_running is None:
                pipe.hdel(batch_key(keys, batch_id), "max_running")
            else:
                pipe.hset(batch_key(keys, batch_id), "max_running", max_running)
            pipe.rpush(keys.wake, "1")  # a raised or removed limit may let a waiting job start now
            await pipe.execute()

    async def add(self, batch_id: str, jobs: Sequence[JobRequest], *, queue: str | None = None) -> list[str]:
        """Add jobs to a batch (also a running or finished one, which then runs again)."""
        if not jobs:
            return []
        queue = queue or await self.queue_of(batch_id)
        return await self.queue.dispatch_many(replace(j, queue=queue, batch=batch_id) for j in jobs)

    async def queue_of(self, batch_id: str) -> str:
        queue = await self.client.hget(batch_index_key(self.prefix), batch_id)
        if queue is None:
            raise EvalHarnessError(f"no batch {batch_id!r}")
        return str(queue)

    async def info(self, batch_id: str) -> BatchInfo | None:
        queue = await self.client.hget(batch_index_key(self.prefix), batch_id)
        if queue is None:
            return None
        keys = self.queue.keys(str(queue))
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(batch_key(keys, batch_id))
            pipe.smembers(keys.batch_failed(batch_id))
            pipe.scard(keys.batch_running(batch_id))
            rec, failed, running = await pipe.execute()
        return _info(batch_id, str(queue), rec, failed, running) if rec else None

    async def list(self, queue: str | None = None, limit: int = 100) -> list[BatchInfo]:
        """Newest first."""
        queues = [queue] if queue else await self.queue.known_queues()
        out: list[BatchInfo] = []
        for q in queues:
            keys = self.queue.keys(q)
            ids = [str(i) for i in await self.client.zrevrange(batches_key(keys), 0, limit - 1)]
            if not ids:
                continue
            async with self.client.pipeline(transaction=False) as pipe:
                for bid in ids:
                    pipe.hgetall(batch_key(keys, bid))
                    pipe.smembers(keys.batch_failed(bid))
                    pipe.scard(keys.batch_running(bid))
                replies = await pipe.execute()
            for i, bid in enumerate(ids):
                rec, failed, running = replies[3 * i : 3 * i + 3]
                if rec:
                    out.append(_info(bid, q, rec, failed, running))
        out.sort(key=lambda b: -(b.created_at or 0))
        return out[:limit]

    async def cancel(self, batch_id: str) -> int:
        """Cancel: queued jobs leave the queue now; returns how many were removed."""
        return (await self.cancel_ex(batch_id)).removed

    async def cancel_ex(self, batch_id: str) -> CancelOutcome:
        """Cancel: queued jobs leave the queue now and running ones are told to stop (their
        workers stop them at their next lease renewal).  A batch already cancelled or finished
        is left as it is (``changed`` is False)."""
        queue = await self.queue_of(batch_id)
        keys = self.queue.keys(queue)
        removed, told, state, changed = await self.queue.scripts["batch_cancel"](
            keys=[keys.lanes, keys.ready, keys.wake], args=[keys.base, batch_id]
        )
        if int(removed) < 0:
            raise EvalHarnessError(f"no batch {batch_id!r}")
        return CancelOutcome(batch_id, queue, int(removed), int(told), str(state), int(changed) == 1)

    async def seal(self, batch_id: str) -> int:
        """Say no more jobs will be added to a batch with a declared total, so that it finishes
        once the dispatched ones are done; returns how many declared jobs were never dispatched."""
        queue = await self.queue_of(batch_id)
        keys = self.queue.keys(queue)
        left = int(
            await self.queue.scripts["batch_seal"](keys=[keys.lanes, keys.ready, keys.wake], args=[keys.base, batch_id])
        )
        if left < 0:
            raise EvalHarnessError(f"no batch {batch_id!r}")
        return left

    async def retry(self, batch_id: str) -> int:
        """Queue the failed (and cancelled) jobs again; returns how many."""
        queue = await self.queue_of(batch_id)
        keys = self.queue.keys(queue)
        n = int(
            await self.queue.scripts["batch_retry"](
                keys=[keys.lanes, keys.ready, keys.wake, keys.failed], args=[keys.base, batch_id]
            )
        )
        if n < 0:
            raise EvalHarnessError(f"no batch {batch_id!r}")
        return n

    async def prune(self, older_than: float, queue: str | None = None) -> int:
        """Delete finished batches whose finish is older than ``older_than`` seconds (of one
        queue, or of every queue)."""
        cutoff = time.time() - older_than
        n = 0
        for b in await self.list(queue=queue, limit=100_000):
            done_at = b.finished_at or b.cancelled_at
            if b.finished and done_at is not None and done_at < cutoff:
                keys = self.queue.keys(b.queue)
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.delete(
                        batch_key(keys, b.id),
                        keys.batch_failed(b.id),
                        keys.batch_cancelled(b.id),
                        keys.batch_running(b.id),
                    )
                    pipe.zrem(batches_key(keys), b.id)
                    pipe.zrem(active_batches_key(keys), b.id)
                    pipe.zrem(with_failures_key(keys), b.id)
                    pipe.hdel(batch_index_key(self.prefix), b.id)
                    await pipe.execute()
                n += 1
        return n


@job(CALLBACK_JOB, tries=3, backoff=(1, 5, 30), timeout=300)
async def run_batch_callback(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Runs the callbacks registered for one stage of a batch (enqueued by the queue scripts)."""
    client: aioredis.Redis = ctx.client
    batches = Batches(client, ctx.prefix)
    bid, stage = payload["batch"], payload["stage"]
    if stage == "progress":
        # let the next completion queue another progress callback
        await client.hdel(batch_key(batches.queue.keys(payload["queue"]), bid), "progress_queued")
    info = await batches.info(bid)
    if info is None:
        return
    for name in info.callbacks.get(stage, []):
        func = CALLBACKS.get(name)
        if func is None:
            raise PermanentError(
                f"batch {bid}: {stage} callback {name!r} is not registered in this worker "
                "(import its module with --import)",
                kind="unknown_callback",
            )
        result = func(info)
        if inspect.isawaitable(result):
            await result
