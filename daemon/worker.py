"""A worker process: runs many jobs at once on one asyncio loop (sync jobs in a thread pool),
keeps their leases alive, and batches its Redis traffic so each job costs well under one
round trip.  SIGTERM/SIGINT stop it taking work; in-flight jobs get a grace period.

Timeouts are never silent: an async job past its timeout is cancelled; a sync job that cannot be
cancelled (or a job that blocks the whole event loop) gets its worker process replaced.  Either
way the job is recorded as timed out, with its checkpoint, and the worker's other jobs go back to
the queue without using a try."""

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
import threading
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.exceptions

from evalharness.core.adaptive import bind as bind_adaptive
from evalharness.core.connection import REDIS_ERRORS, async_client, sync_client
from evalharness.core.errors import ConfigError
from evalharness.core.evaljobs import SAMPLE_JOB
from evalharness.core.jobs import (
    REGISTRY,
    Decision,
    FailureKind,
    Job,
    JobCancelled,
    JobSpec,
    Outcome,
    PermanentError,
    Verdict,
    decide,
    describe_failure,
    rate_limit_signal,
    redact_payload,
)
from evalharness.core.limits import Limiter, LimiterClient
from evalharness.core.queue import LeaseUpdate, PopResult, Queue, parse_renew, script_source
from evalharness.core.sut import CountingThreadPool, sync_calls_unfinished

from .reload import ModuleFiles, report_modules_wanted

log = logging.getLogger("evalharness.worker")

HEARTBEAT_EVERY = 2.0
HEARTBEAT_TTL = 10.0
EXIT_REPLACE = 70  # the worker ended itself to stop a job it could not cancel; restart it
WATCHDOG_MARGIN = 5.0  # seconds past a job's deadline before the watchdog acts on a stuck loop
BURST_RECHECK = 0.05  # seconds a burst worker waits between pops while its own jobs run (their end wakes no one)


def import_job_modules(modules: Sequence[str]) -> None:
    """Import the modules that register jobs.  The current directory is importable, as it is
    for ``python -m``, so a producer and a worker started in the same place see the same code."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.import_module("evalharness.core.evaljobs")
    importlib.import_module("evalharness.core.batches")
    importlib.import_module("evalharness.core.judges")
    importlib.import_module("evalharness.core.online")
    for mod in modules:
        importlib.import_module(mod)


class RunningJob:
    """The context a job function receives (see :class:`evalharness.core.jobs.JobContext`)."""

    def __init__(self, job: Job, worker: Worker) -> None:
        self.job = job
        self.worker_id = worker.id
        self.client = worker.client
        self.prefix = worker.prefix
        self.started = time.monotonic()
        self.deadline: float | None = None  # monotonic
        self.held: list[tuple[Limiter, str]] = []
        # Its outcome (ack, release, fail, give-back) is decided and on its way: a renewal that
        # then finds the lease gone saw that outcome land, not a lapse.
        self.settled = False
        self._worker = worker
        self._loop = asyncio.get_running_loop()
        self._state_json = "" if job.checkpoint is None else json.dumps(job.checkpoint)
        self.partial: Any = job.checkpoint
        self._cancel_requested = False
        self.cancel_event = asyncio.Event()  # set when an operator cancels the job
        self.stopping_for_cancel = False  # its task was cancelled because of that
        self.in_thread = False  # a sync job's function is running in the pool now
        self.settling = False  # the attempt ended; its outcome is being recorded
        self._progress: tuple[float, str] | None = None  # reported, not sent yet
        self.timeout_sent = False

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def request_cancel(self) -> None:
        self._cancel_requested = True
        self.cancel_event.set()

    def progress(self, fraction: float, note: str = "") -> None:
        # kept in memory only: the next lease renewal carries the latest value
        value = min(1.0, max(0.0, float(fraction)))
        self._progress = (value, str(note)[:200])

    def take_progress(self) -> tuple[float, str] | None:
        """The progress reported since the last renewal (and forget it), or None."""
        value, self._progress = self._progress, None
        return value

    def untake(self, update: LeaseUpdate) -> None:
        """A renewal carrying ``update`` failed: send its progress and timeout with the next one."""
        if update.progress is not None and self._progress is None:
            self._progress = (update.progress, update.note)
        if update.timeout is not None:
            self.timeout_sent = False

    @property
    def idempotency_key(self) -> str | None:
        return self.job.key

    @property
    def state_json(self) -> str:
        return self._state_json

    def checkpoint(self, state: Any) -> None:
        encoded = json.dumps(state)  # a TypeError here tells the job at once
        self._state_json = encoded
        self.partial = state
        save = functools.partial(self._worker.save_checkpoint, self.job, encoded)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            save()
        else:
            self._loop.call_soon_threadsafe(save)


@dataclass(frozen=True)
class WorkerOptions:
    queues: tuple[str, ...]
    concurrency: int = 10
    lease: float = 30.0  # seconds; renewed every lease/3 while a job runs
    grace: float = 30.0  # seconds in-flight jobs get after SIGTERM
    poll: float = 1.0  # longest idle block before maintenance (delayed jobs, lapsed leases)
    max_jobs: int = 0  # exit after this many jobs (0 = no limit)
    max_time: float = 0.0  # exit after this many seconds (0 = no limit)
    memory: float = 0.0  # exit when resident memory passes this many MB (0 = no limit)
    hard_timeout: float = 0.0  # no job may run longer, whatever its own timeout (0 = off)
    cancel_grace: float = 10.0  # seconds a cancelled sync job gets to return before the process is replaced
    telemetry: bool = True  # per-minute counters and runtime histograms (O(1) per job)
    # Return once none of its queues has a ready or delayed job and none of its jobs runs (a
    # test, a CI step that drains a queue).  Jobs other workers hold are not waited for.
    burst: bool = False

    def validate(self) -> WorkerOptions:
        if self.hard_timeout:
            for spec in REGISTRY.values():
                # the eval sample job gets its timeout from each run (--timeout), and batch
                # callbacks are the engine's own: neither is the operator's to size
                if spec.queue not in self.queues or spec.name in (SAMPLE_JOB, "evalharness.batch_callback"):
                    continue
                if spec.options.timeout == 0 or spec.options.timeout >= self.hard_timeout:
                    shown = "no timeout" if spec.options.timeout == 0 else f"timeout {spec.options.timeout:g}s"
                    raise ConfigError(
                        f"job {spec.name!r} has {shown}, not below the worker's --hard-timeout of "
                        f"{self.hard_timeout:g}s: raise --hard-timeout or give the job a shorter timeout"
                    )
        return self


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Worker:
    def __init__(self, redis_url: str, prefix: str, options: WorkerOptions) -> None:
        if not options.queues:
            raise ValueError("a worker needs at least one queue")
        self.options = options
        self.redis_url = redis_url
        self.prefix = prefix
        self.host_pid = f"{socket.gethostname()}:{os.getpid()}"
        self.id = f"{self.host_pid}:{os.urandom(3).hex()}"
        self.client = async_client(redis_url, max_connections=None)
        # Blocking pops get their own connection so they never hold up acks or renewals.
        self.blocking = async_client(redis_url, max_connections=2)
        self.queue = Queue(self.client, prefix)
        self.limiters = LimiterClient(self.client, prefix, self.queue.scripts)
        self.stop_event = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._ack_wanted = asyncio.Event()
        self._renew_now = asyncio.Event()  # an operator cancelled something: renew (and learn which) now
        self._running: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, RunningJob] = {}
        self._held: dict[str, dict[str, Job]] = {q: {} for q in options.queues}
        self._acks: dict[str, list[tuple[str, str, int]]] = {}
        # The fetch loop waits for a free slot and sends the acks of the jobs that free one with
        # its next pop; otherwise the flush loop sends them.
        self._carry_acks = False
        self._pool = CountingThreadPool(max_workers=options.concurrency, thread_name_prefix="job")
        self._interrupting = False
        self._closing = asyncio.Event()
        self._fetch_task: asyncio.Task[None] | None = None
        self._pop_in_doubt = False
        # A pop waits behind a wait on the wake list (see _wait_and_pop); to pause or stop while
        # it does, the worker sets its hold key and ends the wait (_hold), and clears it after.
        self._waiting = False
        # A pop is on its way, or the jobs it took are being started (or given back, when a pause
        # landed): they are reserved for this worker already, so a stop lets that finish rather
        # than cancel it (see _stop_fetch).
        self._popping = False
        self._hold_task: asyncio.Task[None] | None = None
        self.paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._started = time.monotonic()
        self._tick = time.monotonic()
        self._replacing = threading.Lock()
        self.exit_code = 0
        self.stop_reason = ""
        self.processed = 0

    # -- lifecycle ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGUSR2, self.pause)
        loop.add_signal_handler(signal.SIGCONT, self.resume)
        # meant for the master (restart workers / reload); a worker signalled with its group
        # must not die of them mid-job
        for sig in (signal.SIGUSR1, signal.SIGHUP):
            loop.add_signal_handler(sig, log.info, "worker %s: %s ignored (it is for evalharnessd)", self.id, sig.name)

    def pause(self) -> None:
        """Stop taking jobs (running ones go on); SIGUSR2."""
        if not self.paused:
            log.info("worker %s: paused", self.id)
        self.paused = True
        self._resumed.clear()
        self._hold_soon()

    def resume(self) -> None:
        """Take jobs again; SIGCONT."""
        if self.paused:
            log.info("worker %s: continuing", self.id)
        self.paused = False
        self._resumed.set()

    def request_stop(self, sig: int | None = None, reason: str = "") -> None:
        hold = self._hold_soon()
        if sig is not None:
            said = ("worker %s: %s received, finishing in-flight jobs", self.id, signal.Signals(sig).name)
            if hold is not None and not hold.done():
                # said once the hold is up: a job dispatched after this line is left for other workers
                hold.add_done_callback(lambda _: log.info(*said))
            else:
                log.info(*said)
        elif reason and not self.stop_event.is_set():
            log.info("worker %s: %s; finishing in-flight jobs, then exiting to be replaced", self.id, reason)
            self.stop_reason = reason
        self.stop_event.set()

    async def run(self) -> int:
        # provider calls of this process's jobs share the adaptive limits kept in this Redis
        bind_adaptive(self.client, self.prefix)
        loops = {
            "flush": asyncio.create_task(self._flush_loop(), name="flush"),
            "renew": asyncio.create_task(self._renew_loop(), name="renew"),
            "cancels": asyncio.create_task(self._cancels_loop(), name="cancels"),
            "heartbeat": asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            "tick": asyncio.create_task(self._tick_loop(), name="tick"),
        }
        watchdog = threading.Thread(target=self._watchdog, name="watchdog", daemon=True)
        watchdog.start()
        fetch = asyncio.create_task(self._fetch_loop(), name="fetch")
        self._fetch_task = fetch
        try:
            stop = asyncio.create_task(self.stop_event.wait())
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            await self._stop_fetch(fetch)
            await self._drain()
        finally:
            # The loops end on _closing rather than by cancellation: a cancellation that lands
            # inside a Redis call can be absorbed by the client, and the loop would then wait forever.
            self._closing.set()
            self._ack_wanted.set()
            self._renew_now.set()
            _, stuck = await asyncio.wait(loops.values(), timeout=5.0)
            for task in stuck:
                task.cancel()
            await self._final_flush()
            await self._unregister()
            self._pool.shutdown(wait=False, cancel_futures=True)
            await self.client.aclose()
            await self.blocking.aclose()
        return self.exit_code

    async def _stop_fetch(self, fetch: asyncio.Task[None]) -> None:
        """End the fetch loop.  A pop queued behind a wait would hand out jobs the moment a
        dispatch ended the wait, so the hold goes up first; a pop on its way has reserved its jobs
        already, so its reply is let come.  Either way the loop ends by itself, starting whatever
        the pop took (the drain then lets those jobs finish); it is cancelled only when that cannot
        be: cancelled, the reply would be lost and its jobs left reserved until their lease lapsed."""
        if self._waiting and not fetch.done():
            with contextlib.suppress(*REDIS_ERRORS, TimeoutError):
                async with asyncio.timeout(2.0):
                    await (self._hold_task or self._hold())
            await asyncio.wait({fetch}, timeout=2.0)
        elif self._popping and not fetch.done():
            await asyncio.wait({fetch}, timeout=2.0)
        if not fetch.done():
            fetch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetch

    def _hold_soon(self) -> asyncio.Task[None] | None:
        """Put the hold up now when a pop waits behind this worker's wait (a pause or a stop), so
        it takes nothing from here on; the hold's task, if there is one."""
        if self._waiting and self._hold_task is None:
            self._hold_task = asyncio.get_running_loop().create_task(self._hold())
        return self._hold_task

    async def _hold(self) -> None:
        """Make the pop waiting behind this worker's wait take nothing, and end the wait."""
        q = self.options.queues[0]
        keys = self.queue.keys(q)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(keys.hold(self.id), "1", px=60_000)
                pipe.rpush(keys.wake_worker(self.id), "1")
                await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("worker %s: could not end its wait for jobs (%s)", self.id, exc)

    async def _unhold(self) -> None:
        """Take the hold down before the next wait (the worker continues after a pause)."""
        if self._hold_task is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._hold_task
            self._hold_task = None
            keys = self.queue.keys(self.options.queues[0])
            await self.client.delete(keys.hold(self.id), keys.wake_worker(self.id))

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period; give the rest back to the queue."""
        if self._running:
            log.info(
                "worker %s: waiting up to %.0fs for %d running job(s)", self.id, self.options.grace, len(self._running)
            )
            _, pending = await asyncio.wait(set(self._running.values()), timeout=self.options.grace)
            if pending:
                await self._interrupt(pending)

    async def _interrupt(self, tasks: set[asyncio.Task[None]] | list[asyncio.Task[None]]) -> None:
        self._interrupting = True
        log.warning("worker %s: returning %d running job(s) to the queue", self.id, len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def sync_calls_unfinished(self) -> int:
        """Sync job, hook and SUT calls of this process that have not returned yet."""
        return self._pool.unfinished + sync_calls_unfinished()

    def _recycle_reason(self) -> str:
        opts = self.options
        if opts.max_jobs and self.processed >= opts.max_jobs:
            return f"--max-jobs {opts.max_jobs} reached"
        if opts.max_time and time.monotonic() - self._started >= opts.max_time:
            return f"--max-time {opts.max_time:g}s reached"
        if opts.memory:
            rss = _rss_mb()
            if rss >= opts.memory:
                return f"memory {rss:.0f} MB over --memory {opts.memory:g} MB"
        return ""

    # -- fetching ----------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        try:
            await self._fetch()
        finally:
            self._carry_acks = False
            if self._acks:
                self._ack_wanted.set()

    async def _fetch(self) -> None:
        opts = self.options
        wake_keys = [self.queue.keys(q).wake for q in opts.queues]
        # one queue: the wait also ends on this worker's own list, when it pauses or stops
        wait_keys = [*wake_keys, self.queue.keys(opts.queues[0]).wake_worker(self.id)]
        backoff = 0.1
        # The last wait-and-pop came back short: the queue has nothing ready, so the next turn
        # waits again rather than asking first (its next due time is kept here).
        drained: tuple[float | None] | None = None
        while not self.stop_event.is_set():
            self._carry_acks = False
            if self._acks:
                self._ack_wanted.set()  # the acks of jobs that ended while this loop waited
            reason = self._recycle_reason()
            if reason:
                self.request_stop(reason=reason)
                return
            if self.paused:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._resumed.wait(), 1.0)
                continue
            free = opts.concurrency - len(self._running)
            if opts.max_jobs:
                free = min(free, opts.max_jobs - self.processed - len(self._running))
            if free <= 0:
                self._slot_free.clear()
                # The job that frees a slot leaves its ack to the pop this wakes: one round trip
                # acknowledges it and claims the next job.
                self._carry_acks = not opts.max_jobs
                # a timeout scope, not wait_for: no task per wait, and a full worker waits often
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._slot_free.wait()
                continue
            try:
                if self._pop_in_doubt:
                    await self._reclaim_unknown()
                got = 0
                next_due: float | None = None
                if drained is not None:
                    (next_due,), drained = drained, None
                else:
                    for q in opts.queues:
                        if self.stop_event.is_set():
                            break  # stopping: no more pops, not even of the other queues
                        result = await self._pop_and_start(self._ack_and_pop(q, free - got))
                        got += len(result.jobs)
                        if result.next_due is not None:
                            next_due = result.next_due if next_due is None else min(next_due, result.next_due)
                        if got >= free:
                            break
                if got < free:
                    if got == 0 and opts.burst and not self._running and next_due is None:
                        log.info("worker %s: burst done, no job ready, delayed or running", self.id)
                        return
                    # Every queue gave less than asked, so none has a job ready: wait for a wake
                    # token (a dispatch pushes one) rather than asking again at once.
                    wait = opts.poll if next_due is None else min(opts.poll, max(next_due, 0.005))
                    if opts.burst and self._running:
                        wait = min(wait, BURST_RECHECK)
                    if len(opts.queues) == 1 and not opts.burst:
                        await self._unhold()
                        if self.paused or self.stop_event.is_set():
                            continue
                        result = await self._pop_and_start(
                            self._wait_and_pop(wait_keys, wait, opts.queues[0], free - got)
                        )
                        if len(result.jobs) < free - got:
                            drained = (result.next_due,)
                    else:
                        await self.blocking.blpop(wake_keys, timeout=wait)
                backoff = 0.1
            except REDIS_ERRORS as exc:
                # A pop whose reply was lost may have reserved jobs for us that we never saw.
                self._pop_in_doubt = True
                log.warning("worker %s: redis unavailable (%s); retrying in %.1fs", self.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _pop_and_start(self, pop: Awaitable[PopResult]) -> PopResult:
        """Await ``pop`` and start (or give back) what it took, marked as under way meanwhile: the
        jobs are reserved for this worker from the moment the script ran, so a stop lets this
        finish rather than cancel it (see _stop_fetch)."""
        self._popping = True
        try:
            result = await pop
            await self._start(result)
            return result
        finally:
            self._popping = False

    async def _ack_and_pop(self, queue: str, count: int) -> PopResult:
        """Pop up to ``count`` jobs of ``queue``, sending the acks waiting to go in the same round
        trip (one pipeline: the acks first, then the pop)."""
        batch = self._take_acks()
        call = self.queue.pop_call(queue, count, self.options.lease, self.id)
        if not batch:
            (raw,) = await self.queue.scripts.run([call])
            return self.queue.parse_pop(raw)
        try:
            replies = await self.queue.scripts.run([*self._ack_calls(batch, queue), call], raise_on_error=False)
        except REDIS_ERRORS:
            self._untake_acks(batch)
            raise
        *acked, raw = replies
        self._acks_sent(batch, acked)
        if isinstance(raw, Exception):
            raise raw
        return self.queue.parse_pop(raw)

    async def _wait_and_pop(self, wait_keys: list[str], wait: float, queue: str, count: int) -> PopResult:
        """Block on the wake list and pop as soon as a token comes, in one pipeline on the blocking
        connection: the server runs the pop the moment the wait ends, so an idle worker starts a
        job one round trip after the dispatch rather than two."""
        call = self.queue.pop_call(queue, count, self.options.lease, self.id, waiting=True)
        _, keys, args = call
        self._waiting = True
        try:
            async with self.blocking.pipeline(transaction=False) as pipe:
                pipe.blpop(wait_keys, timeout=wait)
                pipe.evalsha(self.queue.scripts["pop_with_lease"].sha, len(keys), *keys, *args)
                _, raw = await pipe.execute(raise_on_error=False)
        finally:
            self._waiting = False
        if isinstance(raw, redis.exceptions.NoScriptError):
            (raw,) = await self.queue.scripts.run([call])  # the server forgot it: the pop did nothing
        elif isinstance(raw, Exception):
            raise raw
        return self.queue.parse_pop(raw)

    async def _reclaim_unknown(self) -> None:
        """Give back, without using a try, jobs reserved in our name that we do not hold: the
        reply of a pop was lost when the connection dropped.  Runs only after a Redis error."""
        for q in self.options.queues:
            keys = self.queue.keys(q)
            ids = [str(i) for i in await self.client.zrange(keys.reserved, 0, -1)]
            unknown = [i for i in ids if i not in self._held[q]]
            if not unknown:
                continue
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id in unknown:
                    pipe.hget(keys.job(job_id), "owner")
                owners = await pipe.execute()
            for job_id, owner in zip(unknown, owners, strict=True):
                if owner == self.id and job_id not in self._held[q]:
                    log.warning(
                        "worker %s: job %s was reserved by a pop whose reply was lost; giving it back", self.id, job_id
                    )
                    await self.queue.release(q, self.id, job_id, 0, "interrupted", None)
        self._pop_in_doubt = False

    async def _start(self, result: PopResult) -> None:
        """Start a task per popped job; when the worker paused while the pop was on its way, give
        the jobs back instead, without using a try, for other workers."""
        if result.jobs and self.paused:
            log.info("worker %s: paused while popping; giving back %d job(s)", self.id, len(result.jobs))
            for job in result.jobs:
                self._held[job.queue][job.id] = job
                await self._give_back(job)
            return
        for job in result.jobs:
            self._held[job.queue][job.id] = job
            ctx = RunningJob(job, self)
            if job.id in result.cancelled:
                # an operator cancelled it while an earlier attempt ran on a worker that stopped
                ctx.request_cancel()
            self._contexts[job.id] = ctx
            task = asyncio.create_task(self._run(job, ctx), name=f"job:{job.id}")
            self._running[job.id] = task
            task.add_done_callback(lambda t, jid=job.id: self._finished(jid, t))

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        # only this attempt's entries: a re-delivered attempt of the same job may have replaced them
        if self._running.get(job_id) is task:
            self._running.pop(job_id, None)
            self._contexts.pop(job_id, None)
        self._slot_free.set()

    def _timeout_for(self, job: Job) -> float | None:
        limits = [t for t in (job.options.timeout, self.options.hard_timeout) if t]
        return min(limits) if limits else None

    # -- running -----------------------------------------------------------------------

    async def _run(self, job: Job, ctx: RunningJob) -> None:
        spec = REGISTRY.get(job.name)
        outcome, retry_after, permanent = Outcome.OK, None, False
        exc: BaseException | None = None
        result: Any = None
        encoded = ""
        try:
            if ctx.cancel_requested:
                raise JobCancelled("cancelled by an operator before this attempt started")
            if spec is None:
                raise _Permanent(FailureKind.UNKNOWN_JOB, f"no job named {job.name!r} is registered in this worker")
            # decide() says whether a delivery may run; it can refuse only past the last try
            tries = job.options.tries
            if tries and job.tries_used > tries:
                delivered = decide(job, outcome=Outcome.DELIVERED, now=time.time())
                if delivered.verdict is Verdict.FAIL:
                    raise _Permanent(delivered.kind, delivered.reason)
            limiters = job.options.limiters
            if limiters:
                try:
                    wait, ctx.held = await self.limiters.acquire(job, limiters)
                except ConfigError as e:
                    raise _Permanent("unknown_limiter", str(e)) from None
                if wait:
                    if job.options.retry_until is not None and time.time() + wait > job.options.retry_until:
                        raise _Permanent(
                            FailureKind.RATE_LIMITED,
                            f"limiter {', '.join(limiters)} would start it only after its retry_until deadline",
                        )
                    ctx.settled = True
                    await self._settle_limited(job, wait)
                    return
            args = (ctx, job.payload) if spec.takes_context else (job.payload,)
            timeout = self._timeout_for(job)
            ctx.deadline = None if timeout is None else time.monotonic() + timeout
            if spec.is_async:
                cm = asyncio.timeout(timeout)
                try:
                    async with cm:
                        result = await spec.func(*args)
                except TimeoutError:
                    if cm.expired():
                        raise _Timeout() from None
                    raise
            else:
                fut = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(spec.func, *args))
                ctx.in_thread = True
                cancelled = asyncio.ensure_future(ctx.cancel_event.wait())
                try:
                    await asyncio.wait({fut, cancelled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    cancelled.cancel()
                if not fut.done() and ctx.cancel_requested:
                    # A thread cannot be stopped: give it the grace to return, else replace the process.
                    await asyncio.wait({fut}, timeout=self.options.cancel_grace)
                    if not fut.done():
                        error = JobCancelled(
                            f"cancelled by an operator; it did not return within {self.options.cancel_grace:g}s, "
                            "so its worker process was replaced"
                        )
                        await self._settle(job, spec, ctx, Outcome.CANCELLED, error, None, True)
                        await self._replace_process(
                            f"sync job {job.name} {job.id} was cancelled and did not return in time"
                        )
                        return
                ctx.in_thread = False
                if fut.done():
                    result = fut.result()
                else:
                    # The thread cannot be stopped: record the timeout, then replace this process.
                    await self._settle(job, spec, ctx, Outcome.TIMEOUT, _timeout_error(job, timeout), None, False)
                    await self._replace_process(
                        f"sync job {job.name} {job.id} ran past its timeout and cannot be cancelled"
                    )
                    return
            encoded = json.dumps(result) if result is not None else ""
        except asyncio.CancelledError:
            if not ctx.stopping_for_cancel:
                if self._interrupting:
                    ctx.settled = True
                    await self._give_back(job, ctx)
                raise
            # our own cancellation, for an operator's cancel: record it, do not propagate it
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome, exc = Outcome.CANCELLED, JobCancelled()
        except _Timeout:
            outcome, exc = Outcome.TIMEOUT, _timeout_error(job, self._timeout_for(job))
        except _Permanent as e:
            outcome, exc, permanent = (Outcome.LOST if e.kind == FailureKind.LOST else Outcome.EXCEPTION), e, True
        except JobCancelled as e:
            outcome, exc, permanent = Outcome.CANCELLED, e, True
        except PermanentError as e:
            outcome, exc, permanent = Outcome.EXCEPTION, e, True
        except Exception as e:
            limited, after = rate_limit_signal(e)
            if limited:
                outcome, exc, retry_after = Outcome.RATE_LIMITED, e, after
            else:
                outcome, exc = Outcome.EXCEPTION, e
        finally:
            ctx.settling = True  # from here on an operator's cancel must not interrupt the bookkeeping
            if ctx.held:
                with contextlib.suppress(*REDIS_ERRORS):
                    # the outcome teaches adaptive limiters: a success, or a 429 (rate_limited)
                    await self.limiters.release(job, ctx.held, outcome)
                ctx.held = []
        if ctx.cancel_requested and outcome != Outcome.CANCELLED:
            # cancel wins over whatever the attempt did after it was asked to stop
            outcome, exc, permanent = Outcome.CANCELLED, JobCancelled(), True
        ctx.settled = True
        if outcome == Outcome.OK:
            self.processed += 1
            runtime_ms = int((time.monotonic() - ctx.started) * 1000)
            self._acks.setdefault(job.queue, []).append((job.id, encoded, runtime_ms))
            if not self._carry_acks:
                self._ack_wanted.set()
            return
        await self._settle(job, spec, ctx, outcome, exc, retry_after, permanent)

    async def _settle_limited(self, job: Job, wait: float) -> None:
        try:
            await self.queue.release(job.queue, self.id, job.id, wait, "rate_limited", None)
        except REDIS_ERRORS as e:
            log.warning("job %s: could not release it (%s); it will be re-delivered", job.id, e)
        finally:
            self._held[job.queue].pop(job.id, None)

    async def _settle(
        self,
        job: Job,
        spec: JobSpec | None,
        ctx: RunningJob,
        outcome: Outcome,
        exc: BaseException | None,
        retry_after: float | None,
        permanent: bool,
    ) -> None:
        ctx.settled = True
        decision = decide(job, outcome=outcome, now=time.time(), retry_after=retry_after, permanent=permanent)
        error = self._failure(exc, decision, job, ctx)
        try:
            if decision.verdict is Verdict.RELEASE:
                why = "rate_limited" if decision.rate_limited else "retry"
                await self.queue.release(
                    job.queue, self.id, job.id, decision.delay, why, error, ctx.state_json, self.options.telemetry
                )
                self.processed += 0 if decision.rate_limited else 1
                log.info("job %s %s released for %.2fs (%s)", job.name, job.id, decision.delay, error["message"])
            else:
                owned = await self.queue.fail(
                    job.queue,
                    self.id,
                    job.id,
                    error,
                    raised=outcome not in (Outcome.LOST, Outcome.CANCELLED),
                    checkpoint=ctx.state_json,
                    telemetry=self.options.telemetry,
                    event=True,
                )
                self.processed += 1
                log.warning("job %s %s failed: %s (%s)", job.name, job.id, error["message"], decision.reason)
                if owned and spec is not None and spec.on_failure is not None:
                    await self._call_hook(spec, ctx, exc or RuntimeError(error["message"]), error)
        except REDIS_ERRORS as e:
            # The lease lapses and the job is re-delivered: nothing is lost.
            log.warning("job %s: could not record its outcome (%s); it will be re-delivered", job.id, e)
        finally:
            self._held[job.queue].pop(job.id, None)

    def _failure(self, exc: BaseException | None, decision: Decision, job: Job, ctx: RunningJob) -> dict[str, Any]:
        """What is recorded of a failed attempt: ``describe_failure`` (no traceback for the engine's
        own permanent failures and timeouts) and this worker; for a job that fails for good also
        the reason, the payload (redacted as its registration asks) and its last checkpoint."""
        error = describe_failure(exc, decision.kind, job, trace=not isinstance(exc, _Permanent | TimeoutError))
        error["worker"] = self.host_pid
        if decision.verdict is not Verdict.RELEASE:
            spec = REGISTRY.get(job.name)
            error["reason"] = decision.reason
            error["payload"] = redact_payload(job.payload, spec.redact if spec else ())
            error["checkpoint"] = ctx.partial
        return error

    async def _call_hook(self, spec: JobSpec, ctx: RunningJob, exc: BaseException, error: dict[str, Any]) -> None:
        hook = spec.on_failure
        if hook is None:
            return
        try:
            if asyncio.iscoroutinefunction(hook):
                await hook(ctx, exc, error)
            else:
                await asyncio.get_running_loop().run_in_executor(self._pool, hook, ctx, exc, error)
        except Exception:
            log.exception("failed hook of job %s raised", ctx.job.id)

    async def _give_back(self, job: Job, ctx: RunningJob | None = None) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self.queue.release(job.queue, self.id, job.id, 0, "interrupted", None, ctx.state_json if ctx else "")
        self._held[job.queue].pop(job.id, None)

    def save_checkpoint(self, job: Job, encoded: str) -> None:
        async def write() -> None:
            try:
                await self.queue.checkpoint(job.queue, self.id, job.id, encoded)
            except REDIS_ERRORS as e:
                log.warning("job %s: checkpoint not saved yet (%s); it is kept for the outcome", job.id, e)

        asyncio.get_running_loop().create_task(write())

    async def _replace_process(self, reason: str) -> None:
        """Stop everything now: give the other running jobs back, flush acks, exit for a restart."""
        log.error("worker %s: %s; giving back its other jobs and exiting to be replaced", self.id, reason)
        self.exit_code = EXIT_REPLACE
        self.stop_reason = reason
        # no more pops first, so the jobs given back below are not claimed again by this worker
        self.stop_event.set()
        if self._fetch_task is not None and not self._fetch_task.done():
            await self._stop_fetch(self._fetch_task)
        me = asyncio.current_task()
        others = [t for t in self._running.values() if t is not me and not t.done()]
        if others:
            await self._interrupt(others)
        self.stop_event.set()

    # -- the watchdog: a job that blocks the event loop itself ------------------------------

    async def _tick_loop(self) -> None:
        while not self._closing.is_set():
            self._tick = time.monotonic()
            await self._pause(0.25)

    def _watchdog(self) -> None:
        """Runs in a thread.  When the event loop has been stuck past a running job's deadline,
        nothing in the loop can act: record the overdue jobs as timed out, give the others back,
        and end the process so it is replaced."""
        while not self._closing.is_set():
            time.sleep(0.25)
            now = time.monotonic()
            if now - self._tick < WATCHDOG_MARGIN:
                continue
            overdue = [
                c
                for c in list(self._contexts.values())
                if c.deadline is not None and now > c.deadline + WATCHDOG_MARGIN
            ]
            if not overdue:
                continue
            with self._replacing:
                self._hard_stop(overdue)

    def _hard_stop(self, overdue: list[RunningJob]) -> None:
        try:
            client = sync_client(self.redis_url, socket_timeout=5)
            scripts = {n: client.register_script(script_source(n)) for n in ("fail", "release")}
            overdue_ids = {c.job.id for c in overdue}
            telemetry = self.options.telemetry
            for ctx in overdue:
                job = ctx.job
                decision = decide(job, outcome=Outcome.TIMEOUT, now=time.time())
                error = self._failure(_timeout_error(job, self._timeout_for(job)), decision, job, ctx)
                error["detail"] = "the job blocked the worker's event loop; the worker process was replaced"
                if decision.verdict is Verdict.RELEASE:
                    call = self.queue.release_call(
                        job.queue, self.id, job.id, decision.delay, "retry", error, ctx.state_json, telemetry
                    )
                    scripts["release"](**call)
                else:
                    scripts["fail"](
                        **self.queue.fail_call(
                            job.queue,
                            self.id,
                            job.id,
                            error,
                            checkpoint=ctx.state_json,
                            telemetry=telemetry,
                            event=True,
                        )
                    )
            for ctx in list(self._contexts.values()):
                if ctx.job.id not in overdue_ids:
                    scripts["release"](
                        **self.queue.release_call(
                            ctx.job.queue, self.id, ctx.job.id, 0, "interrupted", None, ctx.state_json
                        )
                    )
            for q in self.options.queues:
                client.zrem(self.queue.keys(q).workers, self.id)
            client.hdel(self.queue.globals.workers, self.id)
        except redis.exceptions.RedisError as exc:
            log.error("worker %s: could not record the timeout (%s); leases will lapse instead", self.id, exc)
        finally:
            log.error("worker %s: the event loop was blocked past a job's timeout; exiting to be replaced", self.id)
            logging.shutdown()
            os._exit(EXIT_REPLACE)

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

    def _take_acks(self) -> dict[str, list[tuple[str, str, int]]]:
        batch, self._acks = self._acks, {}
        return batch

    def _untake_acks(self, batch: dict[str, list[tuple[str, str, int]]]) -> None:
        """Acks that could not be sent go first in the next batch."""
        for q, done in batch.items():
            self._acks.setdefault(q, [])[:0] = done

    def _ack_calls(
        self, batch: dict[str, list[tuple[str, str, int]]], popped: str | None = None
    ) -> list[tuple[str, list[str], list[Any]]]:
        """The ack calls of ``batch``; the one of queue ``popped`` goes just before a pop of it."""
        return [
            self.queue.ack_call(q, self.id, done, self.options.telemetry, pop_follows=q == popped)
            for q, done in batch.items()
        ]

    def _acks_sent(self, batch: dict[str, list[tuple[str, str, int]]], replies: Sequence[Any]) -> None:
        for (q, done), stale in zip(batch.items(), replies, strict=True):
            if isinstance(stale, Exception):
                # not a connection error: the script refused them; the leases lapse and the jobs
                # are re-delivered, as for a worker that died
                log.error("worker %s: acknowledging %d job(s) on %s failed: %s", self.id, len(done), q, stale)
            elif stale:
                log.warning("worker %s: %d job(s) on %s finished after losing their lease", self.id, len(stale), q)
            held = self._held[q]
            for job_id, *_ in done:
                held.pop(job_id, None)

    async def _flush(self) -> None:
        batch = self._take_acks()
        if not batch:
            return
        try:
            replies = await self.queue.scripts.run(self._ack_calls(batch), raise_on_error=False)
        except REDIS_ERRORS as exc:
            log.warning(
                "worker %s: could not acknowledge %d job(s) (%s); retrying", self.id, sum(map(len, batch.values())), exc
            )
            self._untake_acks(batch)
            if not self._closing.is_set():
                await self._pause(0.2)
                self._ack_wanted.set()
            return
        self._acks_sent(batch, replies)

    async def _final_flush(self) -> None:
        deadline = time.monotonic() + 5.0
        while self._acks and time.monotonic() < deadline:
            await self._flush()
            if self._acks:
                await asyncio.sleep(0.2)

    def _lease_updates(self, held: dict[str, Job]) -> list[LeaseUpdate]:
        """What a renewal carries for each held job: progress reported since the last one, and
        the attempt's timeout the first time (for `jobs running` and the console)."""
        out = []
        for job_id, job in held.items():
            ctx = self._contexts.get(job_id)
            if ctx is None:
                out.append(LeaseUpdate(job_id))
                continue
            progress = ctx.take_progress()
            timeout = None
            if not ctx.timeout_sent:
                ctx.timeout_sent = True
                timeout = self._timeout_for(job) or 0.0
            out.append(
                LeaseUpdate(
                    job_id, None if progress is None else progress[0], "" if progress is None else progress[1], timeout
                )
            )
        return out

    def _cancel(self, job_id: str) -> None:
        """An operator asked to cancel a job this worker runs: an async job (or one not yet in
        its function) is cancelled now; a sync one in a thread is given the cancel grace."""
        ctx = self._contexts.get(job_id)
        task = self._running.get(job_id)
        if ctx is None or task is None or ctx.cancel_requested or ctx.settling:
            return
        log.info("worker %s: job %s %s cancelled by an operator", self.id, ctx.job.name, job_id)
        ctx.request_cancel()
        if not ctx.in_thread:
            ctx.stopping_for_cancel = True
            task.cancel()

    async def _renew_once(self) -> None:
        """One renewal of every lease this worker holds: one pipeline, one script call per queue."""
        queues = [(q, self._lease_updates(held)) for q, held in self._held.items() if held]
        if not queues:
            return
        calls = []
        for q, updates in queues:
            call = self.queue.renew_call(q, self.id, updates, self.options.lease)
            calls.append(("renew", call["keys"], call["args"]))
        try:
            replies = await self.queue.scripts.run(calls)
        except REDIS_ERRORS as exc:
            log.warning("worker %s: lease renewal failed (%s)", self.id, exc)
            # what this renewal carried goes with the next one, unless the job reported again
            for _q, updates in queues:
                for u in updates:
                    ctx = self._contexts.get(u.id)
                    if ctx is not None:
                        ctx.untake(u)
            return
        for raw in replies:
            reply = parse_renew(raw)
            for job_id in self.lapsed(reply.lost):
                log.warning("worker %s: lost the lease of job %s", self.id, job_id)
            for job_id in reply.cancel:
                self._cancel(job_id)

    async def _renew_loop(self) -> None:
        every = self.options.lease / 3.0
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renew_now.wait(), every)
            self._renew_now.clear()
            if self._closing.is_set():
                return
            await self._renew_once()
            try:
                await self.limiters.renew([(c.job, c.held) for c in self._contexts.values()])
            except REDIS_ERRORS as exc:
                log.warning("worker %s: limiter slot renewal failed (%s)", self.id, exc)

    def lapsed(self, gone: Sequence[str]) -> list[str]:
        """Of the jobs a renewal no longer found ours, those whose lease lapsed while they ran.
        The others finished here as the renewal was on its way: acknowledged (also at a graceful
        stop), released, failed or given back."""
        return [job_id for job_id in gone if (ctx := self._contexts.get(job_id)) is not None and not ctx.settled]

    async def _cancels_loop(self) -> None:
        """Listen for "a cancel was requested" and renew at once when holding jobs, so a
        cancelled job stops within a round trip rather than at the next lease/3 renewal.  The
        renewal reply is what names the jobs to stop; a missed message costs only that wait."""
        channel = self.queue.globals.cancels
        while not self._closing.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            closing = asyncio.ensure_future(self._closing.wait())
            try:
                await pubsub.subscribe(channel)
                while not self._closing.is_set():
                    # also wakes at close, so a stopping worker (a burst run's end) waits for no read
                    read = asyncio.ensure_future(pubsub.get_message(timeout=1.0))
                    await asyncio.wait({read, closing}, return_when=asyncio.FIRST_COMPLETED)
                    if not read.done():
                        read.cancel()
                        await asyncio.wait({read}, timeout=1.0)
                        break
                    message = read.result()
                    if message is not None and any(self._held.values()):
                        self._renew_now.set()
            except REDIS_ERRORS as exc:
                log.debug("worker %s: cancel channel unavailable (%s)", self.id, exc)
                await self._pause(1.0)
            finally:
                closing.cancel()
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()

    async def _heartbeat_loop(self) -> None:
        info: dict[str, Any] = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(self.options.queues),
            "concurrency": self.options.concurrency,
            "lease": self.options.lease,
            "cancel_grace": self.options.cancel_grace,  # what a console's cancel confirmation states
            "started_at": time.time(),
        }
        # under `evalharnessd --reload`: which of our modules' files its watcher compares
        modules = ModuleFiles() if report_modules_wanted() else None
        while not self._closing.is_set():
            try:
                if modules is not None:
                    info["modules"] = modules.report()
                expiry = int((time.time() + HEARTBEAT_TTL) * 1000)
                info["heartbeat_at"] = time.time()
                info["running"] = len(self._running)
                info["paused"] = self.paused
                info["processed"] = self.processed
                info["rss_mb"] = round(_rss_mb(), 1)  # memory, as the console shows it per supervisor
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
                    keys = self.queue.keys(q)
                    pipe.zrem(keys.workers, self.id)
                    pipe.delete(keys.hold(self.id), keys.wake_worker(self.id))
                pipe.hdel(self.queue.globals.workers, self.id)
                await pipe.execute()


class _Timeout(Exception):
    pass


class _Permanent(PermanentError):
    """A failure the engine itself decides (unknown job, lost, unknown limiter)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message, kind)


def _timeout_error(job: Job, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"job exceeded its timeout of {timeout or job.options.timeout:g}s")


async def run_worker(
    redis_url: str, prefix: str, options: WorkerOptions, imports: Sequence[str] = (), paused: bool = False
) -> int:
    import_job_modules(imports)
    options.validate()
    worker = Worker(redis_url, prefix, options)
    worker.install_signal_handlers()
    if paused:
        worker.pause()
    log.info("worker %s serving %s with concurrency %d", worker.id, ",".join(options.queues), options.concurrency)
    code = await worker.run()
    # Only calls that have not returned count: the pools' idle threads end at interpreter exit.
    busy = worker.sync_calls_unfinished()
    if code == EXIT_REPLACE or busy:
        # A sync job or SUT call is still stuck in blocking code: waiting for it at interpreter
        # exit would keep this process alive past its grace period.  Its job was given back or
        # recorded already.
        if busy and code != EXIT_REPLACE:
            log.warning("worker %s: %d sync call(s) still running at exit; not waiting for them", worker.id, busy)
        logging.shutdown()
        os._exit(code)
    return code


def entry_parser() -> Any:
    """The flags of the thin entry: those of ``evalharness work`` and the CLI's connection flags."""
    import argparse

    from .logs import ENV_LOG_LEVEL, LOG_LEVELS

    def at_least(kind: type[float] | type[int], low: float) -> Any:
        def parse(text: str) -> float | int:
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
            if value < low:
                raise argparse.ArgumentTypeError(f"{text} is below {low:g}")
            return value

        return parse

    p = argparse.ArgumentParser(
        prog="python -m evalharness.daemon.worker",
        description="A worker process, as `evalharness work` (see its --help).",
    )
    p.add_argument("--redis-url")
    p.add_argument("--prefix")
    p.add_argument("--config")
    p.add_argument("--log-level", choices=LOG_LEVELS, default=os.environ.get(ENV_LOG_LEVEL, "warning"))
    p.add_argument("--queue", dest="queues", action="append", required=True)
    p.add_argument("--concurrency", type=at_least(int, 1), default=10)
    p.add_argument("--import", dest="imports", action="append", default=[])
    p.add_argument("--lease", type=at_least(float, 1), default=30.0)
    p.add_argument("--grace", type=at_least(float, 0), default=30.0)
    p.add_argument("--max-jobs", type=at_least(int, 0), default=0)
    p.add_argument("--max-time", type=at_least(float, 0), default=0.0)
    p.add_argument("--memory", type=at_least(float, 0), default=0.0)
    p.add_argument("--hard-timeout", type=at_least(float, 0), default=0.0)
    p.add_argument("--telemetry", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--paused", action="store_true")
    p.add_argument("--sleep", type=at_least(float, 0.05), default=1.0)
    p.add_argument("--cancel-grace", type=at_least(float, 0), default=10.0)
    p.add_argument("--burst", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m evalharness.daemon.worker``: the entry the daemon and ``run --workers`` start.

    It takes the flags of ``evalharness work`` (``tests/daemon/test_worker_entry.py`` keeps the two
    lists equal) and imports none of the CLI, report, scorer or console code, so a worker starts
    in about half the time and memory of ``evalharness work``.  The connection comes from the
    environment (``EVALHARNESS_REDIS_URL``, ``EVALHARNESS_PREFIX``, ``EVALHARNESS_CONFIG``) as for
    every program, or from ``--redis-url``/``--prefix``/``--config``."""
    from evalharness.core.config import load_config, resolve_settings, validate_name
    from evalharness.core.errors import EvalHarnessError

    from .logs import setup_logging

    args = entry_parser().parse_args(argv)  # a bad flag: usage on stderr, exit 2 (as click's)
    setup_logging(args.log_level)
    try:
        for q in args.queues:
            validate_name("queue", q)
        settings = resolve_settings(args.redis_url, args.prefix, load_config(args.config), tuple(args.imports))
    except EvalHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    options = WorkerOptions(
        queues=tuple(args.queues),
        concurrency=args.concurrency,
        lease=args.lease,
        grace=args.grace,
        max_jobs=args.max_jobs,
        max_time=args.max_time,
        memory=args.memory,
        hard_timeout=args.hard_timeout,
        telemetry=args.telemetry,
        poll=args.sleep,
        cancel_grace=args.cancel_grace,
        burst=args.burst,
    )
    from . import timers

    raise SystemExit(
        timers.run(run_worker(settings.redis_url, settings.prefix, options, settings.imports, paused=args.paused))
    )


__all__ = [
    "EXIT_REPLACE",
    "RunningJob",
    "Worker",
    "WorkerOptions",
    "entry_parser",
    "import_job_modules",
    "main",
    "run_worker",
]


if __name__ == "__main__":
    # Run the module's own copy, not this __main__ one, so that every import of
    # evalharness.daemon.worker (job modules, the engine) shares one set of classes and state.
    from evalharness.daemon.worker import main as _main

    _main()
