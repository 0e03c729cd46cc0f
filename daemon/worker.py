"""A worker process: runs many jobs at once on one asyncio loop (sync jobs in a thread pool),
keeps their leases alive, and batches its Redis traffic so each job costs well under one
round trip.  SIGTERM/SIGINT stop it taking work; in-flight jobs get a grace period."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions

from evalharness.core.connection import async_client
from evalharness.core.jobs import (
    REGISTRY,
    FailureKind,
    Job,
    PermanentError,
    RateLimited,
    Verdict,
    decide,
)
from evalharness.core.queue import Queue

log = logging.getLogger("evalharness.worker")

HEARTBEAT_EVERY = 2.0
HEARTBEAT_TTL = 10.0
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def import_job_modules(modules: Sequence[str]) -> None:
    """Import the modules that register jobs.  The current directory is importable, as it is
    for ``python -m``, so a producer and a worker started in the same place see the same code."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.import_module("evalharness.core.evaljobs")
    for mod in modules:
        importlib.import_module(mod)


@dataclass
class RunningJob:
    """The context a job function receives."""

    job: Job
    worker_id: str
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class WorkerOptions:
    queues: tuple[str, ...]
    concurrency: int = 10
    lease: float = 30.0  # seconds; renewed every lease/3 while a job runs
    grace: float = 30.0  # seconds in-flight jobs get after SIGTERM
    poll: float = 1.0  # longest idle block before maintenance (delayed jobs, lapsed leases)
    max_jobs: int = 0  # exit after this many jobs (0 = no limit)


class Worker:
    def __init__(self, redis_url: str, prefix: str, options: WorkerOptions) -> None:
        if not options.queues:
            raise ValueError("a worker needs at least one queue")
        self.options = options
        self.redis_url = redis_url
        self.prefix = prefix
        self.id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.client = async_client(redis_url, max_connections=None)
        # Blocking pops get their own connection so they never hold up acks or renewals.
        self.blocking = async_client(redis_url, max_connections=2)
        self.queue = Queue(self.client, prefix)
        self.stop_event = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._ack_wanted = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, dict[str, Job]] = {q: {} for q in options.queues}
        self._acks: dict[str, list[tuple[str, str]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="job")
        self._interrupting = False
        self._closing = asyncio.Event()
        self.processed = 0

    # -- lifecycle ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)


    def request_stop(self, sig: int | None = None) -> None:
        if sig is not None:
            log.info("worker %s: %s received, finishing in-flight jobs", self.id, signal.Signals(sig).name)
        self.stop_event.set()

    async def run(self) -> int:
        loops = {
            "flush": asyncio.create_task(self._flush_loop(), name="flush"),
            "renew": asyncio.create_task(self._renew_loop(), name="renew"),
            "heartbeat": asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        }
        fetch = asyncio.create_task(self._fetch_loop(), name="fetch")
        try:
            stop = asyncio.create_task(self.stop_event.wait())
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
            await self._drain()
        finally:
            # The loops end on _closing rather than by cancellation: a cancellation that lands
            # inside a Redis call can be absorbed by the client, and the loop would then wait forever.
            self._closing.set()
            self._ack_wanted.set()
            _, stuck = await asyncio.wait(loops.values(), timeout=5.0)
            for task in stuck:
                task.cancel()
            await self._final_flush()
            await self._unregister()
            self._pool.shutdown(wait=False, cancel_futures=True)
            await self.client.aclose()
            await self.blocking.aclose()
        return 0

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period; give the rest back to the queue."""
        if self._running:
            log.info("worker %s: waiting up to %.0fs for %d running job(s)", self.id, self.options.grace, len(self._running))
            _, pending = await asyncio.wait(set(self._running.values()), timeout=self.options.grace)
            if pending:
                self._interrupting = True
                log.warning("worker %s: grace period over, returning %d job(s) to the queue", self.id, len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    # -- fetching ----------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        opts = self.options
        wake_keys = [self.queue.keys(q).wake for q in opts.queues]
        backoff = 0.1
        while not self.stop_event.is_set():
            free = opts.concurrency - len(self._running)
            if opts.max_jobs:
                free = min(free, opts.max_jobs - self.processed - len(self._running))
                if free <= 0 and not self._running:
                    self.request_stop()
                    return
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                got = 0
                next_due: float | None = None
                for q in opts.queues:
                    result = await self.queue.pop(q, free - got, opts.lease, self.id)
                    for job in result.jobs:
                        self._start(job)
                    got += len(result.jobs)
                    if result.next_due is not None:
                        next_due = result.next_due if next_due is None else min(next_due, result.next_due)
                    if got >= free:
                        break
                if got == 0:
                    wait = opts.poll if next_due is None else min(opts.poll, max(next_due, 0.005))
                    await self.blocking.blpop(wake_keys, timeout=wait)
                backoff = 0.1
            except REDIS_ERRORS as exc:
                log.warning("worker %s: redis unavailable (%s); retrying in %.1fs", self.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _start(self, job: Job) -> None:
        self._held[job.queue][job.id] = job
        task = asyncio.create_task(self._run(job), name=f"job:{job.id}")
        self._running[job.id] = task
        task.add_done_callback(lambda _t, jid=job.id: self._finished(jid))

    def _finished(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._slot_free.set()

    # -- running -----------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        ctx = RunningJob(job=job, worker_id=self.id)
        spec = REGISTRY.get(job.name)
        outcome, retry_after, permanent = "ok", None, False
        exc: BaseException | None = None
        result: Any = None
        try:
            if spec is None:
                raise _Permanent(FailureKind.UNKNOWN_JOB, f"no job named {job.name!r} is registered in this worker")
            if job.options.tries and job.tries_used > job.options.tries:
                raise _Permanent(
                    FailureKind.LOST,
                    f"its worker stopped (lease lapsed) on the last allowed attempt ({job.options.tries} tries)",
                )
            args = (ctx, job.payload) if spec.takes_context else (job.payload,)
            timeout = job.options.timeout or None
            if spec.is_async:
                async with asyncio.timeout(timeout) as cm:
                    try:
                        result = await spec.func(*args)
                    except TimeoutError:
                        if cm.expired():
                            raise _Timeout() from None
                        raise
            else:
                fut = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(spec.func, *args))
                try:
                    result = await asyncio.wait_for(fut, timeout)
                except TimeoutError:
                    if fut.done() and fut.exception() is not None:
                        raise
                    raise _Timeout() from None
            encoded = json.dumps(result) if result is not None else ""
        except asyncio.CancelledError:
            if self._interrupting:
                await self._give_back(job)
            raise
        except _Timeout:
            outcome, exc = "timeout", TimeoutError(f"job exceeded its timeout of {job.options.timeout:g}s")
        except _Permanent as e:
            outcome, exc, permanent = ("lost" if e.kind == FailureKind.LOST else "exception"), e, True
        except RateLimited as e:
            outcome, exc, retry_after = "rate_limited", e, e.retry_after
        except PermanentError as e:
            outcome, exc, permanent = "exception", e, True
        except (TypeError, ValueError) as e:
            # Includes a result that is not JSON-serialisable.
            outcome, exc = "exception", e
        except Exception as e:
            outcome, exc = "exception", e
        if outcome == "ok":
            self.processed += 1
            self._acks.setdefault(job.queue, []).append((job.id, encoded))
            self._ack_wanted.set()
            return
        await self._settle(job, spec, ctx, outcome, exc, retry_after, permanent)

    async def _settle(
        self,
        job: Job,
        spec: Any,
        ctx: RunningJob,
        outcome: str,
        exc: BaseException | None,
        retry_after: float | None,
        permanent: bool,
    ) -> None:
        decision = decide(job, outcome=outcome, now=time.time(), retry_after=retry_after, permanent=permanent)
        error = _describe(exc, decision.kind, job)
        try:
            if decision.verdict is Verdict.RELEASE:
                why = "rate_limited" if decision.rate_limited else "retry"
                await self.queue.release(job.queue, self.id, job.id, decision.delay, why, error)
                self.processed += 0 if decision.rate_limited else 1
                log.info("job %s %s released for %.2fs (%s)", job.name, job.id, decision.delay, error["message"])
            else:
                error["reason"] = decision.reason
                owned = await self.queue.fail(job.queue, self.id, job.id, error, raised=outcome != "lost")
                self.processed += 1
                log.warning("job %s %s failed: %s (%s)", job.name, job.id, error["message"], decision.reason)
                if owned and spec is not None and spec.on_failure is not None and exc is not None:
                    await self._call_hook(spec, ctx, exc, error)
        except REDIS_ERRORS as e:
            # The lease lapses and the job is re-delivered: nothing is lost.
            log.warning("job %s: could not record its outcome (%s); it will be re-delivered", job.id, e)
        finally:
            self._held[job.queue].pop(job.id, None)

    async def _call_hook(self, spec: Any, ctx: RunningJob, exc: BaseException, error: dict[str, Any]) -> None:
        try:
            hook = spec.on_failure
            if asyncio.iscoroutinefunction(hook):
                await hook(ctx, exc, error)
            else:
                await asyncio.get_running_loop().run_in_executor(self._pool, hook, ctx, exc, error)
        except Exception:
            log.exception("failed hook of job %s raised", ctx.job.id)

    async def _give_back(self, job: Job) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self.queue.release(job.queue, self.id, job.id, 0, "interrupted", None)
        self._held[job.queue].pop(job.id, None)

    # -- acknowledging, renewing, heartbeats ---------------------------------------------

    async def _flush_loop(self) -> None:
        while not self._closing.is_set():
            await self._ack_wanted.wait()
            self._ack_wanted.clear()
            await self._flush()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the worker closes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _flush(self) -> None:
        batch, self._acks = self._acks, {}
        if not batch:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                order = []
                for q, done in batch.items():
                    await self.queue.ack_into(pipe, q, self.id, done)
                    order.append(q)
                replies = await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("worker %s: could not acknowledge %d job(s) (%s); retrying", self.id, sum(map(len, batch.values())), exc)
            for q, done in batch.items():
                self._acks.setdefault(q, [])[:0] = done
            if not self._closing.is_set():
                await self._pause(0.2)
                self._ack_wanted.set()
            return
        for q, stale in zip(order, replies, strict=True):
            if stale:
                log.warning("worker %s: %d job(s) on %s finished after losing their lease", self.id, len(stale), q)
        for q, done in batch.items():
            held = self._held[q]
            for job_id, _ in done:
                held.pop(job_id, None)

    async def _final_flush(self) -> None:
        deadline = time.monotonic() + 5.0
        while self._acks and time.monotonic() < deadline:
            await self._flush()

    async def _renew_loop(self) -> None:
        every = self.options.lease / 3.0
        while not self._closing.is_set():
            await self._pause(every)
            for q, held in self._held.items():
                if not held:
                    continue
                try:
                    lost = await self.queue.renew(q, self.id, list(held), self.options.lease)
                except REDIS_ERRORS as exc:
                    log.warning("worker %s: lease renewal failed (%s)", self.id, exc)
                    continue
                for job_id in lost:
                    log.warning("worker %s: lost the lease of job %s", self.id, job_id)

    async def _heartbeat_loop(self) -> None:
        info = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(self.options.queues),
            "concurrency": self.options.concurrency,
            "started_at": time.time(),
        }
        while not self._closing.is_set():
            try:
                expiry = int((time.time() + HEARTBEAT_TTL) * 1000)
                info["heartbeat_at"] = time.time()
                info["running"] = len(self._running)
                info["processed"] = self.processed
                async with self.client.pipeline(transaction=False) as pipe:
                    for q in self.options.queues:
                        keys = self.queue.keys(q)
                        pipe.zadd(keys.workers, {self.id: expiry})
                        pipe.zremrangebyscore(keys.workers, "-inf", int(time.time() * 1000))
                        pipe.sadd(self.queue.globals.queues, q)
                    pipe.hset(self.queue.globals.workers, self.id, json.dumps(info))
                    await pipe.execute()
            except REDIS_ERRORS as exc:
                log.warning("worker %s: heartbeat failed (%s)", self.id, exc)
            await self._pause(HEARTBEAT_EVERY)

    async def _unregister(self) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            async with self.client.pipeline(transaction=False) as pipe:
                for q in self.options.queues:
                    pipe.zrem(self.queue.keys(q).workers, self.id)
                pipe.hdel(self.queue.globals.workers, self.id)
                await pipe.execute()


class _Timeout(Exception):
    pass


class _Permanent(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _describe(exc: BaseException | None, kind: str, job: Job) -> dict[str, Any]:
    if isinstance(exc, _Permanent):
        kind = exc.kind
    elif isinstance(exc, PermanentError):
        kind = exc.kind
    info: dict[str, Any] = {
        "kind": str(kind) or "exception",
        "message": str(exc) if exc is not None else "",
        "exception_type": type(exc).__name__ if exc is not None else None,
        "attempts": job.attempts,
        "tries_used": job.tries_used,
        "releases": job.releases,
        "at": time.time(),
    }
    if exc is not None and not isinstance(exc, _Permanent | _Timeout):
        info["traceback"] = "".join(traceback.format_exception(exc))[-8000:]
    return info


async def run_worker(redis_url: str, prefix: str, options: WorkerOptions, imports: Sequence[str] = ()) -> int:
    import_job_modules(imports)
    worker = Worker(redis_url, prefix, options)
    worker.install_signal_handlers()
    log.info("worker %s serving %s with concurrency %d", worker.id, ",".join(options.queues), options.concurrency)
    return await worker.run()
