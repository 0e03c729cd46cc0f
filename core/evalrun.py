"""Eval runs: call the SUT once per sample, serially in this process or as queued jobs
(lazy-parallel), and collect every output in dataset order.  Scoring happens afterwards in
:mod:`report`, so both modes score identically."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import redis.asyncio as aioredis

from .batches import Batches
from .connection import REDIS_ERRORS
from .cost import Budget
from .datasets import Dataset, Sample
from .errors import EvalHarnessError, InfrastructureError, SutError
from .evaljobs import DEFAULT_EVAL_QUEUE, SAMPLE_JOB, SUT_MISMATCH
from .jobs import (
    Job,
    JobOptions,
    Outcome,
    PermanentError,
    Verdict,
    decide,
    describe_failure,
    new_job_id,
    rate_limit_signal,
)
from .providers.usage import collecting_usage
from .queue import JobRequest, Queue
from .report import SampleOutcome, _score_one
from .runs import RunRecord, RunStore, dataset_fingerprint
from .scorers import ScoreError
from .sut import call_sut, load_sut_code

log = logging.getLogger("evalharness.run")

MODES = ("serial", "lazy-parallel")
Progress = Callable[[int, int], None]
T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    mode: str = "lazy-parallel"
    concurrency: int = 10  # samples in flight at once (lazy-parallel) — the chunk size
    queue: str = DEFAULT_EVAL_QUEUE
    timeout: float = 60.0  # seconds per sample attempt
    tries: int = 3  # attempts per sample (rate-limit releases do not count)
    backoff: tuple[float, ...] = (1.0, 5.0, 30.0)
    result_ttl: int = 86_400  # seconds the result store keeps a run's outputs
    batch_timeout: float | None = None  # bounds dispatch and collection of the whole run
    rate_limit: float | None = None  # most samples dispatched per second
    worker_wait: float = 60.0  # give up when no worker has served the queue this long
    repetitions: int = 1  # each sample runs this many times, as distinct jobs (core/repetitions.py)

    def validate(self) -> RunOptions:
        problems = []
        if self.mode not in MODES:
            problems.append(f"--batch must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.concurrency < 1:
            problems.append(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.timeout <= 0:
            problems.append(f"--timeout must be > 0 seconds, got {self.timeout:g}")
        if self.tries < 1:
            problems.append(f"--tries must be >= 1, got {self.tries}")
        if self.result_ttl < 1:
            problems.append(f"--result-ttl must be >= 1 second, got {self.result_ttl}")
        if self.batch_timeout is not None and self.batch_timeout <= 0:
            problems.append(f"--batch-timeout must be > 0 seconds, got {self.batch_timeout:g}")
        if self.rate_limit is not None and self.rate_limit <= 0:
            problems.append(f"--rate-limit must be > 0 per second, got {self.rate_limit:g}")
        if self.repetitions < 1:
            problems.append(f"--repetitions must be >= 1, got {self.repetitions}")
        if problems:
            raise EvalHarnessError("; ".join(problems))
        return self

    @property
    def job_options(self) -> JobOptions:
        return JobOptions(tries=self.tries, timeout=self.timeout, backoff=self.backoff).validate()

    def job_options_for(self, started: float) -> JobOptions:
        """With a batch timeout, no retry or rate-limit release starts after the run's deadline."""
        opts = self.job_options
        if self.batch_timeout is not None:
            opts = replace(opts, retry_until=started + self.batch_timeout)
        return opts

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "queue": self.queue,
            "timeout": self.timeout,
            "tries": self.tries,
            "backoff": list(self.backoff),
            "result_ttl": self.result_ttl,
            "batch_timeout": self.batch_timeout,
            "rate_limit": self.rate_limit,
            # only when repeated: the options of a plain run keep their shape
            **({"repetitions": self.repetitions} if self.repetitions != 1 else {}),
        }


@dataclass
class RunResult:
    run_id: str
    outcomes: list[SampleOutcome]
    started_at: float
    finished_at: float
    diagnostics: list[str] = field(default_factory=list)
    batch_id: str | None = None  # lazy-parallel runs dispatch their samples as one batch
    interrupted: str | None = None  # the signal that stopped the run ("SIGINT", "SIGTERM")
    sut_fingerprint: str | None = None  # the SUT code the run was started with (see core/sut.py)


def _error(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "message": message, **extra}


class Interrupt:
    """What the program's signal handler tells a running eval.  The first signal asks the run to
    stop: cancel its batch, collect what already arrived and return the partial result.  A
    second one cuts that clean-up short, so a user pressing Ctrl-C twice is never kept waiting.

    :meth:`trip` may be called from a signal handler at any moment, also before the run's event
    loop exists; the run calls :meth:`bind` once it runs in its loop."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None

    @property
    def requested(self) -> bool:
        return self.count >= 1

    @property
    def hurried(self) -> bool:
        return self.count >= 2

    def trip(self, name: str) -> None:
        self.count += 1
        if self.signal is None:
            self.signal = name
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # a signal handler runs between two bytecodes of the loop's own thread: hand the
            # event over through the loop's wake-up pipe, as asyncio's signal handling does
            loop.call_soon_threadsafe(self._sync)

    def bind(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop, self._hurry = asyncio.Event(), asyncio.Event()
        self._sync()

    def unbind(self) -> None:
        self._loop = self._stop = self._hurry = None

    def _sync(self) -> None:
        if self._stop is not None and self.requested:
            self._stop.set()
        if self._hurry is not None and self.hurried:
            self._hurry.set()

    async def until_stopped(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None when a stop is requested first (``work`` is cancelled)."""
        return await self._race(work, self._stop)

    async def unless_hurried(self, work: Awaitable[T], limit: float) -> T | None:
        """``work``'s result, or None when a second signal comes or ``limit`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                return await self._race(work, self._hurry)
        return None

    @staticmethod
    async def _race(work: Awaitable[T], event: asyncio.Event | None) -> T | None:
        task = asyncio.ensure_future(work)
        if event is None:
            return await task
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return task.result() if task.done() and not task.cancelled() else None


# -- serial ------------------------------------------------------------------------------


async def run_serial(
    dataset: Dataset,
    sut: str,
    options: RunOptions,
    progress: Progress | None = None,
    interrupt: Interrupt | None = None,
    prefilled: Mapping[int, dict[str, Any]] | None = None,
    budget: Budget | None = None,
) -> RunResult:
    """Run every sample in this process, one at a time, with the same timeout, tries, backoff
    and rate-limit semantics a worker applies.  ``prefilled`` outcomes (cached outputs, as the
    result store holds them) are taken as they are; with a ``budget`` the run stops calling the
    SUT once the spend reaches it."""
    code = load_sut_code(sut)
    func = code.func
    started = time.time()
    run_id = new_job_id()
    outcomes: list[SampleOutcome] = []
    deadline = None if options.batch_timeout is None else time.monotonic() + options.batch_timeout
    diagnostics: list[str] = []
    stopped_by: str | None = None
    if interrupt is not None:
        interrupt.bind()
    for index, sample in enumerate(dataset.samples):
        if prefilled and index in prefilled:
            outcomes.append(outcome_of(index, sample, prefilled[index], True))
            if progress:
                progress(index + 1, len(dataset.samples))
            continue
        if budget is not None and budget.exhausted:
            budget.halted = True
            outcomes += _budget_never_ran(dataset, index, budget, diagnostics, prefilled or {})
            break
        if interrupt is not None and interrupt.requested:
            outcomes += _serial_interrupted(dataset, index, interrupt, diagnostics, running=None)
            stopped_by = interrupt.signal
            break
        if deadline is not None and time.monotonic() >= deadline:
            left = len(dataset.samples) - index
            diagnostics.append(f"batch timeout of {options.batch_timeout:g}s reached with {left} sample(s) not run")
            outcomes += [
                SampleOutcome(i, s, None, _error("not_dispatched", "the batch timeout passed before it ran"), 0)
                for i, s in enumerate(dataset.samples[index:], start=index)
            ]
            break
        call = _serial_sample(func, sample.input, options, f"{run_id}-{index}")
        with collecting_usage() as usage:  # the tokens the SUT's provider replies report
            done = await (call if interrupt is None else interrupt.until_stopped(call))
        if done is None:
            outcomes += _serial_interrupted(dataset, index, interrupt, diagnostics, running=index)
            stopped_by = interrupt.signal if interrupt is not None else None
            break
        output, error, attempts = done
        outcomes.append(SampleOutcome(index, sample, output, error, attempts, usage.as_dict() if usage.calls else None))
        if budget is not None and output is not None:
            budget.observe({"result": {"usage": usage.as_dict() if usage.calls else None}})
        if progress:
            progress(index + 1, len(dataset.samples))
    if interrupt is not None:
        interrupt.unbind()
    return RunResult(
        run_id, outcomes, started, time.time(), diagnostics, interrupted=stopped_by, sut_fingerprint=code.fingerprint
    )


def _budget_never_ran(
    dataset: Dataset, index: int, budget: Budget, diagnostics: list[str], prefilled: Mapping[int, dict[str, Any]]
) -> list[SampleOutcome]:
    """The samples a serial run did not call the SUT for because the budget was spent at ``index``
    (cached ones still come from the cache: they cost nothing)."""
    out = []
    never = 0
    for i in range(index, len(dataset.samples)):
        if i in prefilled:
            out.append(outcome_of(i, dataset.samples[i], prefilled[i], True))
        else:
            out.append(
                SampleOutcome(
                    i,
                    dataset.samples[i],
                    None,
                    _error("not_dispatched", f"never ran: halted on budget ({budget.reason(index)})"),
                    0,
                )
            )
            never += 1
    diagnostics.append(f"halted on budget: {budget.reason(index)}; {never} sample(s) never ran")
    return out


def _serial_interrupted(
    dataset: Dataset, index: int, interrupt: Interrupt | None, diagnostics: list[str], running: int | None
) -> list[SampleOutcome]:
    """The samples a serial run did not finish because a signal stopped it at sample ``index``."""
    name = interrupt.signal if interrupt is not None else None
    out = []
    if running is not None:
        sample = dataset.samples[running]
        error = _error("interrupted", f"{name} stopped the run while the SUT was called for this sample")
        out.append(SampleOutcome(running, sample, None, error, None))
    first = index if running is None else index + 1
    never = _error("not_dispatched", f"never ran: {name} stopped the run first")
    out += [SampleOutcome(i, dataset.samples[i], None, dict(never), 0) for i in range(first, len(dataset.samples))]
    diagnostics.append(
        f"interrupted by {name}: {len(dataset.samples) - first} sample(s) never ran"
        + (f", and sample {dataset.samples[running].id} was stopped while it ran" if running is not None else "")
    )
    return out


async def _serial_sample(
    func: Any, sample_input: Any, options: RunOptions, key: str
) -> tuple[str | None, dict[str, Any] | None, int]:
    job = Job(
        id="serial", name=SAMPLE_JOB, payload=None, queue="", options=options.job_options, enqueued_at=time.time()
    )
    attempts = releases = 0
    while True:
        attempts += 1
        job = replace(job, attempts=attempts, releases=releases)
        outcome, retry_after, permanent = Outcome.OK, None, False
        exc: BaseException | None = None
        try:
            async with asyncio.timeout(options.timeout):
                output = await call_sut(func, sample_input, key)
            return output, None, attempts
        except TimeoutError:
            outcome = Outcome.TIMEOUT
            exc = TimeoutError(f"the SUT call exceeded the timeout of {options.timeout:g}s")
        except PermanentError as e:
            outcome, permanent, exc = Outcome.EXCEPTION, True, e
        except Exception as e:
            limited, after = rate_limit_signal(e)
            outcome, retry_after, exc = (Outcome.RATE_LIMITED, after, e) if limited else (Outcome.EXCEPTION, None, e)
        decision = decide(job, outcome=outcome, now=time.time(), retry_after=retry_after, permanent=permanent)
        if decision.rate_limited:
            releases += 1
        if decision.verdict is Verdict.FAIL:
            error = describe_failure(exc, decision.kind, job, trace=not isinstance(exc, PermanentError | TimeoutError))
            error["reason"] = decision.reason
            return None, error, attempts
        await asyncio.sleep(decision.delay)


# -- lazy-parallel -----------------------------------------------------------------------


@dataclass(frozen=True)
class Continuation:
    """A run picked up again by ``run --resume`` (core/resume.py): its id, the batch its new jobs
    join (its own, or a fresh one when its own was cancelled), when it first started, and the
    outcomes already in its result sink, by unit index."""

    run_id: str
    batch_id: str
    new_batch: bool
    started_at: float
    results: Mapping[int, dict[str, Any]]
    # units whose earlier job is gone (never dispatched, removed by a cancel, stopped): dispatched
    # under a fresh job id and idempotency key (this suffix), so no leftover of the old job merges them
    fresh: Mapping[int, str] = field(default_factory=dict)


def sample_job_id(run_id: str, index: int, suffix: str = "") -> str:
    """The job id (and idempotency key) of a run's sample ``index``: "<run>-<index>", or
    "<run>-<index>.rN" when resume N dispatched it afresh (``suffix``)."""
    return f"{run_id}-{index}{suffix}"


async def removed_samples(queue: Queue, queue_name: str, batch_id: str, run_id: str) -> set[int]:
    """The samples of run ``run_id`` whose queued job a cancel or clear of its batch removed:
    they never ran."""
    out = set()
    for job_id in await queue.client.smembers(queue.keys(queue_name).batch_cancelled(batch_id)):
        index = str(job_id).removeprefix(f"{run_id}-").split(".", 1)[0]
        if index.isdigit():
            out.add(int(index))
    return out


class _Collector:
    """Dispatches samples as jobs with at most ``concurrency`` running and gathers their outcomes
    from the run's result sink as workers acknowledge them.

    The run's batch starts at most ``concurrency`` of its jobs at once (its max_running, held by
    the pop script), so the collector keeps up to ``ahead`` more queued behind them: a worker
    that finishes a sample starts the next in the same round trip, without waiting for this
    producer to hear of it and dispatch another."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        dataset: Dataset,
        sut: str,
        options: RunOptions,
        sut_fingerprint: str | None = None,
        resume: Continuation | None = None,
    ) -> None:
        self.client = client
        self.queue = Queue(client, prefix)
        self.dataset = dataset
        self.sut = sut
        self.options = options
        self.run_id = new_job_id() if resume is None else resume.run_id
        self.sink = f"run-{self.run_id}"
        self.batch_id = f"run-{self.run_id}" if resume is None else resume.batch_id
        keys = self.queue.keys(options.queue)
        self.done_key = keys.results_done(self.sink)
        self.pending: deque[int] = deque(range(len(dataset.samples)))
        self.in_flight: set[int] = set()
        self.removed: set[int] = set()  # dispatched, then taken out of the queue before they ran
        self.results: dict[int, dict[str, Any]] = {}
        self.stop_dispatching: str | None = None
        self.stop_kind = ""  # the failure kind that stopped dispatching: sut_import or sut_mismatch
        # sent with every sample, so a worker runs exactly the code this producer loaded
        self.sut_fingerprint = sut_fingerprint
        self.diagnostics: list[str] = []
        self.job_options = options.job_options_for(time.time())
        self.fresh: Mapping[int, str] = {} if resume is None else resume.fresh
        if resume is not None:
            # what finished before is collected as it is; only the rest is dispatched (again:
            # a job still queued or running has the same id, so the dispatch merges into it)
            self.results.update(resume.results)
            self.pending = deque(i for i in range(len(dataset.samples)) if i not in self.results)
        self.budget: Budget | None = None  # counts the spend of each outcome as it arrives
        # metrics computed here (no provider call), scored as outcomes arrive: their sums and
        # counts go to the run's batch with the next round trip, for the console's running means
        self.live: Sequence[Any] = ()
        self.mean_deltas: dict[str, list[float]] = {}
        self.means_named = False
        self.ahead = 0  # samples queued beyond concurrency; set once the batch holds the limit

    def job_id(self, index: int) -> str:
        return sample_job_id(self.run_id, index, self.fresh.get(index, ""))

    async def unqueue_removed(self) -> None:
        """After a cancel or clear of the run's batch: the samples whose queued jobs it removed
        never ran, so they count as not dispatched again (a resume dispatches them)."""
        removed = await removed_samples(self.queue, self.options.queue, self.batch_id, self.run_id)
        back = sorted(self.in_flight & removed)
        self.in_flight.difference_update(back)
        self.removed.update(back)
        self.pending.extendleft(reversed(back))

    def request(self, index: int) -> JobRequest:
        sample = self.dataset.samples[index]
        return JobRequest(
            SAMPLE_JOB,
            {
                "sut": self.sut,
                "sut_fingerprint": self.sut_fingerprint,
                "input": sample.input,
                "sample_id": sample.id,
                "index": index,
            },
            queue=self.options.queue,
            options=self.job_options,
            id=self.job_id(index),
            key=self.job_id(index),
            batch=self.batch_id,
            tags=(f"run:{self.run_id}",),
            result_to=(self.sink, str(index), self.options.result_ttl),
        )

    async def dispatch(self, room: int) -> None:
        take = [self.pending.popleft() for _ in range(min(room, len(self.pending)))]
        if not take:
            return
        try:
            await self.queue.dispatch_many([self.request(i) for i in take])
        except BaseException:
            self.pending.extendleft(reversed(take))
            raise
        self.in_flight.update(take)

    async def collect(self, wait: float) -> int:
        """Take the outcomes workers pushed (``field<TAB>outcome JSON``): one blocking pop, then
        whatever else is already there, in one round trip (one connection runs the two in order,
        so the LPOP sees what the BLPOP waited for, and more)."""
        async with self.client.pipeline(transaction=False) as pipe:
            sending = self._queue_means(pipe)
            pipe.blpop([self.done_key], timeout=max(wait, 0.01))
            pipe.lpop(self.done_key, 1000)
            *_, item, more = await pipe.execute()
        if sending:
            self._means_sent()
        if item is None:
            return 0
        entries = [str(item[1])]
        if isinstance(more, list):
            entries += [str(e) for e in more]
        got = 0
        for entry in entries:
            fld, _, raw = entry.partition("\t")
            index = int(fld)
            if index in self.results or not 0 <= index < len(self.dataset.samples):
                continue
            value = json.loads(raw) if raw else (await self.queue.results(self.options.queue, self.sink, [fld]))[0]
            if value is None:
                continue
            self.results[index] = value
            self.in_flight.discard(index)
            if index in self.removed:
                # counted as taken out of the queue, yet it ran (a cancel told it to stop): it
                # is no longer one to dispatch
                with contextlib.suppress(ValueError):
                    self.pending.remove(index)
            got += 1
            self._score_live(index, value)
            if self.budget is not None:
                self.budget.observe(value)
            error = value.get("error")
            if error and error.get("kind") in ("sut_import", SUT_MISMATCH) and self.stop_dispatching is None:
                self.stop_dispatching = error.get("message") or "the workers could not import the SUT"
                self.stop_kind = str(error["kind"])
        return got

    async def collect_for(self, seconds: float) -> None:
        """Collect what the samples in flight still deliver, for at most ``seconds``."""
        end = time.monotonic() + seconds
        while self.in_flight and time.monotonic() < end:
            await self.collect(min(0.25, max(0.01, end - time.monotonic())))

    def _score_live(self, index: int, value: dict[str, Any]) -> None:
        if not self.live or "error" in value:
            return
        output = (value.get("result") or {}).get("output")
        if not isinstance(output, str):
            return
        sample = self.dataset.samples[index]
        for scorer in self.live:
            try:
                score = _score_one(scorer, output, sample)
            except ScoreError:
                continue  # the report says why; a running mean leaves it out
            delta = self.mean_deltas.setdefault(scorer.name, [0.0, 0])
            delta[0] += score
            delta[1] += 1

    def _queue_means(self, pipe: Any) -> bool:
        """Queue the scores gathered since the last round trip onto ``pipe`` (the batch's
        ``mean_sum:NAME``, ``mean_n:NAME`` and, once, ``mean_names``); False when there are none."""
        if not self.mean_deltas:
            return False
        bk = self.queue.keys(self.options.queue).batch(self.batch_id)
        if not self.means_named:
            pipe.hsetnx(bk, "mean_names", json.dumps([scorer.name for scorer in self.live]))
        for name, (total, n) in self.mean_deltas.items():
            pipe.hincrbyfloat(bk, f"mean_sum:{name}", total)
            pipe.hincrby(bk, f"mean_n:{name}", int(n))
        return True

    def _means_sent(self) -> None:
        self.mean_deltas = {}
        self.means_named = True

    async def flush_means(self) -> None:
        if not self.mean_deltas:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_means(pipe)
            await pipe.execute()
        self._means_sent()

    async def resync(self) -> None:
        """After a reconnect: read whatever landed in the sink while we were away."""
        if not self.in_flight:
            return
        ordered = sorted(self.in_flight)
        stored = await self.queue.results(self.options.queue, self.sink, [str(i) for i in ordered])
        for index, value in zip(ordered, stored, strict=True):
            if value is not None and index not in self.results:
                self.results[index] = value
                self.in_flight.discard(index)

    def outcomes(self, stopped_by: str | None = None) -> list[SampleOutcome]:
        why = f"{stopped_by} interrupted the run" if stopped_by else "the run stopped"
        return [
            outcome_of(index, sample, self.results.get(index), index in self.in_flight, why, index in self.removed)
            for index, sample in enumerate(self.dataset.samples)
        ]


def outcome_of(
    index: int,
    sample: Sample,
    value: dict[str, Any] | None,
    dispatched: bool,
    why: str = "the run stopped",
    removed: bool = False,
) -> SampleOutcome:
    """One sample's outcome from what its job stored in the run's result sink (None: nothing).
    ``removed``: it was queued, then taken out of the queue (a cancel) before it started."""
    if value is None:
        if dispatched:
            error = _error("not_collected", f"dispatched, but no result arrived before {why}")
        elif removed:
            error = _error("not_dispatched", f"never ran: queued, then taken out of the queue when {why}")
        else:
            error = _error("not_dispatched", f"never dispatched: {why} first")
        return SampleOutcome(index, sample, None, error, None)
    if "error" in value:
        err = dict(value["error"])
        return SampleOutcome(index, sample, None, err, err.get("attempts"))
    result = value.get("result") or {}
    return SampleOutcome(index, sample, result.get("output"), None, result.get("attempts"), result.get("usage"))


WORKERS_COMING_WAIT = 15.0  # seconds a run waits for a live evalharnessd's workers to come back


async def _workers_or_coming(queue: Queue, client: aioredis.Redis, prefix: str, name: str) -> bool:
    """A live worker serves ``name`` now, or comes within a moment because a live evalharnessd
    supervises the queue (its workers are being replaced: a restart, or ``--reload`` after an
    edit of the SUT)."""
    if await queue.live_workers(name):
        return True
    if not await _master_supervises(client, prefix, name):
        return False
    log.info(
        "no worker is serving queue %r yet; evalharnessd supervises it, waiting up to %gs", name, WORKERS_COMING_WAIT
    )
    end = time.monotonic() + WORKERS_COMING_WAIT
    while time.monotonic() < end:
        await asyncio.sleep(0.2)
        if await queue.live_workers(name):
            return True
    return False


async def _master_supervises(client: aioredis.Redis, prefix: str, name: str) -> bool:
    """Whether a master with a fresh heartbeat has a supervisor for queue ``name``."""
    from .telemetry import MASTER_STALE, masters_key

    now = time.time()
    for raw in (await client.hgetall(masters_key(prefix))).values():
        try:
            master = json.loads(raw)
            fresh = now - float(master.get("heartbeat_at") or 0) < MASTER_STALE
            if fresh and any(name in (sup.get("queues") or []) for sup in master.get("supervisors") or []):
                return True
        except (ValueError, TypeError, AttributeError):
            continue
    return False


def no_worker_message(queue: str) -> str:
    return (
        f"no worker is serving queue {queue!r}. Start one with `evalharness work --queue {queue}` "
        f"or `evalharnessd --queue {queue}=2`, or pass --workers N to start local workers for this run"
    )


async def run_lazy_parallel(
    client: aioredis.Redis,
    prefix: str,
    dataset: Dataset,
    sut: str,
    options: RunOptions,
    progress: Progress | None = None,
    interrupt: Interrupt | None = None,
    metrics: Sequence[str] = (),
    watch: Callable[[str], None] | None = None,
    record_extra: Mapping[str, str] | None = None,
    resume: Continuation | None = None,
    prefilled: Mapping[int, dict[str, Any]] | None = None,
    budget: Budget | None = None,
    live_scorers: Sequence[Any] = (),
) -> RunResult:
    """Dispatch sample *i* as a job, keep at most ``concurrency`` in flight, collect output[i]
    from the result store, and return the outcomes in dataset order.

    When ``interrupt`` is tripped (a signal) the run cancels its batch, collects for a moment
    what the running samples still deliver, and returns the partial result.

    ``watch`` is called with the run's batch id once the batch exists (a live progress display
    reads the batch's counts); ``record_extra`` adds fields to the run's record.  ``resume``
    continues a run whose record exists (core/resume.py) instead of starting one.

    ``prefilled`` outcomes (cached outputs) are stored in the run's result sink and never
    dispatched; with a ``budget`` the run stops dispatching once the spend reaches it, removes
    its queued samples and lets the running ones finish (see :func:`_budget_halt`).

    ``live_scorers`` (metrics computed here, no provider call) score each outcome as it arrives;
    their running means go to the run's batch, which the console shows while the run goes on."""
    code = load_sut_code(sut)  # fail fast, here, on a SUT the producer cannot import either
    if interrupt is not None:
        interrupt.bind()
    try:
        return await _lazy_parallel(
            client,
            prefix,
            dataset,
            sut,
            options,
            progress,
            interrupt,
            metrics,
            code.fingerprint,
            watch,
            record_extra,
            resume,
            prefilled or {},
            budget,
            live_scorers,
        )
    finally:
        if interrupt is not None:
            interrupt.unbind()


async def _lazy_parallel(
    client: aioredis.Redis,
    prefix: str,
    dataset: Dataset,
    sut: str,
    options: RunOptions,
    progress: Progress | None,
    interrupt: Interrupt | None,
    metrics: Sequence[str],
    fingerprint: str | None,
    watch: Callable[[str], None] | None = None,
    record_extra: Mapping[str, str] | None = None,
    resume: Continuation | None = None,
    prefilled: Mapping[int, dict[str, Any]] | None = None,
    budget: Budget | None = None,
    live_scorers: Sequence[Any] = (),
) -> RunResult:
    c = _Collector(client, prefix, dataset, sut, options, fingerprint, resume)
    c.live = tuple(live_scorers)
    prefilled = {i: v for i, v in (prefilled or {}).items() if 0 <= i < len(dataset.samples) and i not in c.results}
    c.budget = budget
    if prefilled:
        c.results.update(prefilled)
        c.pending = deque(i for i in c.pending if i not in prefilled)
    if c.pending and not await _workers_or_coming(c.queue, client, prefix, options.queue):
        raise InfrastructureError(no_worker_message(options.queue))
    batches = Batches(client, prefix, c.queue)
    total = len(dataset.samples)
    if resume is None or resume.new_batch:
        # The batch declares the whole dataset (less what is cached or already collected), so its
        # total and progress are the run's, not what was dispatched so far, and it cannot finish
        # while samples wait to be dispatched.  Workers start at most `concurrency` of its jobs.
        await batches.create(
            f"eval {dataset.name} ({sut})",
            queue=options.queue,
            tags=(f"run:{c.run_id}",),
            batch_id=c.batch_id,
            allow_failures=True,
            total=len(c.pending),
            max_running=options.concurrency,
        )
    else:
        # the run's own batch again, at the concurrency of this pick-up
        await batches.set_max_running(c.batch_id, options.concurrency)
    # Queued ahead, a sample starts the moment a running one ends, before this producer hears of
    # it; under a budget every start waits for the producer, so the spend overshoots by at most
    # the samples running when it reached the budget.
    # (without --budget-usd the tracker only counts the spend: its limit is infinite)
    c.ahead = 0 if budget is not None and math.isfinite(budget.limit_usd) else options.concurrency
    if watch is not None:
        watch(c.batch_id)
    store = RunStore(client, prefix)
    if resume is None:
        started = time.time()
        # The run's record lets `evalharness report RUN_ID` rebuild the report from the outputs later.
        await store.create(
            RunRecord(
                id=c.run_id,
                state="running",
                dataset=dataset,
                fingerprint=dataset_fingerprint(dataset),
                sut=sut,
                metrics=tuple(metrics),
                mode=options.mode,
                options=options.to_json(),
                queue=options.queue,
                started_at=started,
                batch=c.batch_id,
                sink=c.sink,
                result_ttl=options.result_ttl,
                extra=dict(record_extra or {}),
            )
        )
    else:
        started = resume.started_at
        await store.update(
            c.run_id,
            options.result_ttl,
            state="running",
            batch=c.batch_id,
            finished_at=None,
            interrupted=None,
            **dict(record_extra or {}),
        )
    if prefilled:
        # the sink holds every outcome of the run, so `evalharness report RUN_ID` has the cached ones too
        sink_key = c.queue.keys(options.queue).results(c.sink)
        await client.hset(sink_key, mapping={str(i): json.dumps(v) for i, v in prefilled.items()})
        await client.expire(sink_key, options.result_ttl)
        if progress:
            progress(len(c.results), total)
        if not c.pending:
            await batches.seal(c.batch_id)
    start_mono = time.monotonic()
    deadline = None if options.batch_timeout is None else start_mono + options.batch_timeout
    dispatch_done_at: float | None = None
    last_worker_seen = start_mono
    next_worker_check = start_mono + 2.0
    tokens = float(options.concurrency)
    token_at = start_mono
    backoff = 0.1
    cancelled = False
    while len(c.results) < total:
        if interrupt is not None and interrupt.requested:
            break
        if budget is not None and budget.exhausted and not budget.halted:
            with contextlib.suppress(*REDIS_ERRORS):
                await _budget_halt(c, budget, options)
            break
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            _timeout_diagnostics(c, options, start_mono, dispatch_done_at)
            break
        try:
            if c.stop_dispatching is None and c.pending:
                room = options.concurrency + c.ahead - len(c.in_flight)
                if options.rate_limit is not None:
                    tokens = min(float(options.concurrency), tokens + (now - token_at) * options.rate_limit)
                    token_at = now
                    room = min(room, int(tokens))
                if room > 0:
                    before = len(c.pending)
                    await c.dispatch(room)
                    tokens -= before - len(c.pending)
                    if not c.pending:
                        dispatch_done_at = time.monotonic()
            elif c.stop_dispatching is not None and not c.in_flight:
                break
            wait = 1.0
            if options.rate_limit is not None and c.pending and len(c.in_flight) < options.concurrency:
                wait = min(wait, max(0.01, (1.0 - tokens) / options.rate_limit))
            if deadline is not None:
                wait = min(wait, max(0.01, deadline - time.monotonic()))
            if interrupt is not None:
                wait = min(wait, 0.25)  # notice a signal within a quarter of a second
            got = await c.collect(wait)
            backoff = 0.1
            if got:
                if progress:
                    progress(len(c.results), total)
                last_worker_seen = time.monotonic()
            elif time.monotonic() >= next_worker_check:
                next_worker_check = time.monotonic() + 2.0
                info = await batches.info(c.batch_id)
                if info is not None and info.state == "cancelled":
                    cancelled = True
                    # what the cancel took out of the queue never ran; the running ones were told
                    # to stop and report so within a renewal: a moment to collect them
                    await c.unqueue_removed()
                    await c.collect_for(min(5.0, options.timeout))
                    c.diagnostics.append(
                        f"the run's batch {c.batch_id} was cancelled: {len(c.pending)} sample(s) never "
                        f"ran{_taken_out(c)}, {len(c.in_flight)} dispatched but not collected"
                    )
                    break
                if await c.queue.live_workers(options.queue):
                    last_worker_seen = time.monotonic()
                elif time.monotonic() - last_worker_seen > options.worker_wait:
                    c.diagnostics.append(
                        f"stopped waiting: {no_worker_message(options.queue)} "
                        f"(none for {options.worker_wait:g}s); the {len(c.in_flight) + len(c.pending)} "
                        "unfinished sample(s) stay queued until a worker takes them"
                    )
                    break
        except REDIS_ERRORS as exc:
            log.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
            if interrupt is None:
                await asyncio.sleep(backoff)
            else:
                await interrupt.until_stopped(asyncio.sleep(backoff))
            backoff = min(backoff * 2, 5.0)
            with contextlib.suppress(*REDIS_ERRORS):
                await c.resync()
    with contextlib.suppress(*REDIS_ERRORS):
        await c.flush_means()
    if interrupt is not None and interrupt.requested and len(c.results) < total:
        await _interrupted(c, batches, interrupt, options)
        result = RunResult(
            c.run_id,
            c.outcomes(interrupt.signal),
            started,
            time.time(),
            c.diagnostics,
            c.batch_id,
            interrupt.signal,
            sut_fingerprint=c.sut_fingerprint,
        )
        with contextlib.suppress(*REDIS_ERRORS):
            await interrupt.unless_hurried(_record_end(store, c, result, "interrupted"), limit=2.0)
        return result
    if c.stop_dispatching is not None:
        with contextlib.suppress(*REDIS_ERRORS):
            await batches.seal(c.batch_id)
            await _record_end(store, c, RunResult(c.run_id, [], started, time.time(), [c.stop_dispatching]), "stopped")
        if c.stop_kind == SUT_MISMATCH:
            raise InfrastructureError(
                f"the run was stopped because a worker runs other SUT code than this producer: {c.stop_dispatching}. "
                "If you edited the SUT during the run, run it again; "
                "otherwise give every worker host the same SUT files"
            )
        raise SutError(
            f"the workers could not import the SUT: {c.stop_dispatching}. Workers import it the way "
            "`evalharness run` does: from their current directory and PYTHONPATH"
        )
    with contextlib.suppress(*REDIS_ERRORS):
        if c.pending and not cancelled:
            # stopped early (batch timeout, no workers): the samples never dispatched will not
            # come, so the batch finishes when the dispatched ones do
            await batches.seal(c.batch_id)
    result = RunResult(
        c.run_id, c.outcomes(), started, time.time(), c.diagnostics, c.batch_id, sut_fingerprint=c.sut_fingerprint
    )
    with contextlib.suppress(*REDIS_ERRORS):
        await _record_end(store, c, result, "finished" if len(c.results) == total else "stopped")
    return result


async def _record_end(store: RunStore, c: _Collector, result: RunResult, state: str) -> None:
    """The run's record says how it ended; the producer's list of arrived outputs goes (the
    outputs themselves stay, for `evalharness report`)."""
    await store.update(
        c.run_id,
        c.options.result_ttl,
        state=state,
        finished_at=result.finished_at,
        interrupted=result.interrupted,
        dispatched=len(c.dataset.samples) - len(c.pending),
        diagnostics=result.diagnostics,
    )
    await c.client.delete(c.done_key)


async def rebuild_run(client: aioredis.Redis, prefix: str, run_id: str) -> tuple[RunRecord, RunResult]:
    """The outcomes of a lazy-parallel run as they are in Redis now, retried samples included,
    from its record and its result sink; an error names a run that is unknown or expired."""
    store = RunStore(client, prefix)
    record = await store.load(run_id)
    if record is None:
        raise EvalHarnessError(
            f"no run {run_id!r} in Redis: the id is unknown, or its record expired (a run's record and "
            "outputs are kept --result-ttl seconds after it ended, a day by default)"
        )
    if record.sink is None:
        raise EvalHarnessError(f"run {run_id!r} kept no outputs in Redis; its report is the one it wrote when it ended")
    queue = Queue(client, prefix)
    raw = await client.hgetall(queue.keys(record.queue).results(record.sink))
    values = {int(k): json.loads(v) for k, v in raw.items() if str(k).isdigit()}
    info = await Batches(client, prefix, queue).info(record.batch) if record.batch else None
    # the batch counts what was dispatched even when the producer died before it could say so
    dispatched = max(record.dispatched, info.dispatched if info is not None else 0)
    if not values and info is not None and info.processed > 0:
        raise EvalHarnessError(
            f"the outputs of run {run_id!r} have expired (kept --result-ttl seconds after the last one arrived)"
        )
    diagnostics = []
    if info is not None and info.state in ("pending", "running"):
        diagnostics.append(
            f"the run's batch {info.id} is still {info.state} ({info.pending} sample(s) pending): "
            "this report shows the outputs that arrived so far"
        )
    elif record.state == "running":
        diagnostics.append(
            "the run's producer did not record an end (it may have been killed): samples without an output are listed "
            f"as missing; `evalharness run --resume {record.id}` continues the run"
        )
    removed = await removed_samples(queue, record.queue, info.id, record.id) if info is not None else set()
    why = f"{record.interrupted} interrupted the run" if record.interrupted else "the run stopped"
    outcomes = [
        outcome_of(i, s, values.get(i), i < dispatched and i not in removed, why, i in removed)
        for i, s in enumerate(record.dataset.samples)
    ]
    finished = record.finished_at if record.finished_at is not None else time.time()
    result = RunResult(
        record.id,
        outcomes,
        record.started_at,
        finished,
        diagnostics,
        record.batch,
        record.interrupted,
        sut_fingerprint=record.extra.get("sut_fingerprint") or None,
    )
    return record, result


async def _budget_halt(c: _Collector, budget: Budget, options: RunOptions) -> None:
    """The spend reached the budget: dispatch no more, remove the run's queued samples (the batch
    becomes cancelled, as ``queue clear --batch`` does) and collect what the running ones deliver
    (they were paid for already), for at most one sample timeout."""
    from .queue_ops import clear_queue

    budget.halted = True
    done_before = len(c.results)
    await clear_queue(c.client, c.queue.prefix, options.queue, c.batch_id, delayed=True)
    await c.unqueue_removed()  # what the clear removed never ran
    await c.collect_for(options.timeout + 1.0)
    never = len(c.pending)
    c.diagnostics.append(
        f"halted on budget: {budget.reason(done_before)}; {never} sample(s) never ran{_taken_out(c)}"
        + (f", {len(c.in_flight)} dispatched but not collected" if c.in_flight else "")
    )


async def _interrupted(c: _Collector, batches: Batches, interrupt: Interrupt, options: RunOptions) -> None:
    """A signal stopped the run: cancel its batch (queued samples leave the queue, running ones are
    told to stop), give the running ones a moment to report, and say what is missing."""
    name = interrupt.signal
    log.warning(
        "interrupted by %s: cancelling batch %s and writing the partial report (again to stop at once)",
        name,
        c.batch_id,
    )
    removed: int | None = None
    problem = "a second signal came first"
    try:
        removed = await interrupt.unless_hurried(batches.cancel(c.batch_id), limit=10.0)
    except REDIS_ERRORS as exc:
        problem = f"Redis is unavailable: {exc}"
    if removed is None:
        c.diagnostics.append(
            f"interrupted by {name}, but the run's batch {c.batch_id} could not be cancelled ({problem}): "
            f"cancel it with `evalharness batch cancel {c.batch_id}`"
        )
    else:
        # Only the samples that were running can still report; the removed ones never will.
        with contextlib.suppress(*REDIS_ERRORS):
            await interrupt.unless_hurried(c.unqueue_removed(), limit=2.0)
        end = time.monotonic() + min(5.0, options.timeout)
        while c.in_flight and not interrupt.hurried and time.monotonic() < end:
            try:
                await interrupt.unless_hurried(c.collect(min(0.25, max(0.01, end - time.monotonic()))), limit=2.0)
            except REDIS_ERRORS:
                break
    never, missing = len(c.pending), len(c.in_flight)
    head = f"interrupted by {name}"
    if removed is not None:
        head += f": the run's batch {c.batch_id} was cancelled ({removed} queued sample(s) removed)"
    c.diagnostics.append(
        f"{head}; {never} sample(s) never ran{_taken_out(c)}, {missing} dispatched but not collected, "
        f"{len(c.results)} collected"
    )


def _taken_out(c: _Collector) -> str:
    """How many of the samples that never ran were queued and taken out again (" (...)", or
    nothing when every sample ran)."""
    if not c.pending:
        return ""
    taken = len(c.removed.intersection(c.pending))
    return f" ({taken} of them queued, then taken out of the queue)" if taken else " (none of them queued)"


def _timeout_diagnostics(c: _Collector, options: RunOptions, start: float, dispatch_done_at: float | None) -> None:
    missing = sorted(set(range(len(c.dataset.samples))) - set(c.results))
    shown = ", ".join(c.dataset.samples[i].id for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
    c.diagnostics.append(
        f"batch timeout of {options.batch_timeout:g}s reached: {len(missing)} sample(s) missing ({shown})"
    )
    if c.pending:
        c.diagnostics.append(
            f"dispatch starvation: {len(c.pending)} sample(s) were never dispatched because dispatch alone used "
            f"the {options.batch_timeout:g}s batch timeout (raise --concurrency, add workers, or raise --batch-timeout)"
        )
    elif dispatch_done_at is not None:
        c.diagnostics.append(
            f"every sample was dispatched after {dispatch_done_at - start:.1f}s; "
            f"{len(c.in_flight)} were still running or queued when the {options.batch_timeout:g}s batch timeout ran out"
        )
