"""Eval runs: call the SUT once per sample, serially in this process or as queued jobs
(lazy-parallel), and collect every output in dataset order.  Scoring happens afterwards in
:mod:`report`, so both modes score identically."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from .batches import Batches
from .datasets import Dataset
from .errors import EvalHarnessError, InfrastructureError, SutError
from .evaljobs import DEFAULT_EVAL_QUEUE, SAMPLE_JOB, SUT_MISMATCH
from .jobs import (
    Job,
    JobOptions,
    PermanentError,
    Verdict,
    decide,
    describe_failure,
    new_job_id,
    rate_limit_signal,
)
from .queue import JobRequest, Queue
from .report import SampleOutcome
from .sut import call_sut, load_sut_code

log = logging.getLogger("evalharness.run")

MODES = ("serial", "lazy-parallel")
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
Progress = Callable[[int, int], None]


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
        }


@dataclass
class RunResult:
    run_id: str
    outcomes: list[SampleOutcome]
    started_at: float
    finished_at: float
    diagnostics: list[str] = field(default_factory=list)
    batch_id: str | None = None  # lazy-parallel runs dispatch their samples as one batch
    sut_fingerprint: str | None = None  # the SUT code the run was started with (see core/sut.py)


def _error(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "message": message, **extra}


# -- serial ------------------------------------------------------------------------------


async def run_serial(
    dataset: Dataset, sut: str, options: RunOptions, progress: Progress | None = None
) -> RunResult:
    """Run every sample in this process, one at a time, with the same timeout, tries, backoff
    and rate-limit semantics a worker applies."""
    code = load_sut_code(sut)
    func = code.func
    started = time.time()
    run_id = new_job_id()
    outcomes: list[SampleOutcome] = []
    deadline = None if options.batch_timeout is None else time.monotonic() + options.batch_timeout
    diagnostics: list[str] = []
    for index, sample in enumerate(dataset.samples):
        if deadline is not None and time.monotonic() >= deadline:
            left = len(dataset.samples) - index
            diagnostics.append(f"batch timeout of {options.batch_timeout:g}s reached with {left} sample(s) not run")
            outcomes += [
                SampleOutcome(i, s, None, _error("not_dispatched", "the batch timeout passed before it ran"), 0)
                for i, s in enumerate(dataset.samples[index:], start=index)
            ]
            break
        output, error, attempts = await _serial_sample(func, sample.input, options, f"{run_id}-{index}")
        outcomes.append(SampleOutcome(index, sample, output, error, attempts))
        if progress:
            progress(index + 1, len(dataset.samples))
    return RunResult(run_id, outcomes, started, time.time(), diagnostics, sut_fingerprint=code.fingerprint)


async def _serial_sample(
    func: Any, sample_input: Any, options: RunOptions, key: str
) -> tuple[str | None, dict[str, Any] | None, int]:
    job = Job(id="serial", name=SAMPLE_JOB, payload=None, queue="", options=options.job_options, enqueued_at=time.time())
    attempts = releases = 0
    while True:
        attempts += 1
        job = replace(job, attempts=attempts, releases=releases)
        outcome, retry_after, permanent = "ok", None, False
        exc: BaseException | None = None
        try:
            async with asyncio.timeout(options.timeout):
                output = await call_sut(func, sample_input, key)
            return output, None, attempts
        except TimeoutError:
            outcome = "timeout"
            exc = TimeoutError(f"the SUT call exceeded the timeout of {options.timeout:g}s")
        except PermanentError as e:
            outcome, permanent, exc = "exception", True, e
        except Exception as e:
            limited, after = rate_limit_signal(e)
            outcome, retry_after, exc = ("rate_limited", after, e) if limited else ("exception", None, e)
        decision = decide(job, outcome=outcome, now=time.time(), retry_after=retry_after, permanent=permanent)
        if decision.rate_limited:
            releases += 1
        if decision.verdict is Verdict.FAIL:
            error = describe_failure(exc, decision.kind, job, trace=not isinstance(exc, PermanentError | TimeoutError))
            error["reason"] = decision.reason
            return None, error, attempts
        await asyncio.sleep(decision.delay)


# -- lazy-parallel -----------------------------------------------------------------------


class _Collector:
    """Dispatches samples as jobs with at most ``concurrency`` in flight and gathers their
    outcomes from the run's result sink as workers acknowledge them."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, dataset: Dataset, sut: str, options: RunOptions,
        sut_fingerprint: str | None = None,
    ) -> None:
        self.client = client
        self.queue = Queue(client, prefix)
        self.dataset = dataset
        self.sut = sut
        self.options = options
        self.run_id = new_job_id()
        self.sink = f"run-{self.run_id}"
        self.batch_id = f"run-{self.run_id}"
        keys = self.queue.keys(options.queue)
        self.done_key = keys.results_done(self.sink)
        self.pending: deque[int] = deque(range(len(dataset.samples)))
        self.in_flight: set[int] = set()
        self.results: dict[int, dict[str, Any]] = {}
        self.stop_dispatching: str | None = None
        self.stop_kind = ""  # the failure kind that stopped dispatching: sut_import or sut_mismatch
        # sent with every sample, so a worker runs exactly the code this producer loaded
        self.sut_fingerprint = sut_fingerprint
        self.diagnostics: list[str] = []
        self.job_options = options.job_options_for(time.time())

    def request(self, index: int) -> JobRequest:
        sample = self.dataset.samples[index]
        return JobRequest(
            SAMPLE_JOB,
            {"sut": self.sut, "sut_fingerprint": self.sut_fingerprint, "input": sample.input, "sample_id": sample.id, "index": index},
            queue=self.options.queue,
            options=self.job_options,
            id=f"{self.run_id}-{index}",
            key=f"{self.run_id}-{index}",
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
        whatever else is already there, in the same round trip's worth of work."""
        item = await self.client.blpop([self.done_key], timeout=max(wait, 0.01))
        if item is None:
            return 0
        entries = [str(item[1])]
        more = await self.client.lpop(self.done_key, 1000)
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
            got += 1
            error = value.get("error")
            if error and error.get("kind") in ("sut_import", SUT_MISMATCH) and self.stop_dispatching is None:
                self.stop_dispatching = error.get("message") or "the workers could not import the SUT"
                self.stop_kind = str(error["kind"])
        return got

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

    def outcomes(self) -> list[SampleOutcome]:
        out = []
        for index, sample in enumerate(self.dataset.samples):
            value = self.results.get(index)
            if value is None:
                if index in self.in_flight:
                    error = _error("not_collected", "dispatched, but no result arrived before the run stopped")
                else:
                    error = _error("not_dispatched", "never dispatched: the run stopped first")
                out.append(SampleOutcome(index, sample, None, error, None))
            elif "error" in value:
                err = dict(value["error"])
                out.append(SampleOutcome(index, sample, None, err, err.get("attempts")))
            else:
                result = value.get("result") or {}
                out.append(SampleOutcome(index, sample, result.get("output"), None, result.get("attempts")))
        return out


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
) -> RunResult:
    """Dispatch sample *i* as a job, keep at most ``concurrency`` in flight, collect output[i]
    from the result store, and return the outcomes in dataset order."""
    code = load_sut_code(sut)  # fail fast, here, on a SUT the producer cannot import either
    c = _Collector(client, prefix, dataset, sut, options, code.fingerprint)
    if not await c.queue.live_workers(options.queue):
        raise InfrastructureError(no_worker_message(options.queue))
    batches = Batches(client, prefix, c.queue)
    await batches.create(f"eval {dataset.name} ({sut})", queue=options.queue, tags=(f"run:{c.run_id}",), batch_id=c.batch_id, allow_failures=True)
    total = len(dataset.samples)
    started = time.time()
    start_mono = time.monotonic()
    deadline = None if options.batch_timeout is None else start_mono + options.batch_timeout
    dispatch_done_at: float | None = None
    last_worker_seen = start_mono
    next_worker_check = start_mono + 2.0
    tokens = float(options.concurrency)
    token_at = start_mono
    backoff = 0.1
    while len(c.results) < total:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            _timeout_diagnostics(c, options, start_mono, dispatch_done_at)
            break
        try:
            if c.stop_dispatching is None and c.pending:
                room = options.concurrency - len(c.in_flight)
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
                    c.diagnostics.append(
                        f"the run's batch {c.batch_id} was cancelled: {len(c.in_flight) + len(c.pending)} sample(s) not run"
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
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            with contextlib.suppress(*REDIS_ERRORS):
                await c.resync()
    if c.stop_kind == SUT_MISMATCH:
        raise InfrastructureError(
            f"the run was stopped because a worker runs other SUT code than this producer: {c.stop_dispatching}. "
            "If you edited the SUT during the run, run it again; otherwise give every worker host the same SUT files"
        )
    if c.stop_dispatching is not None:
        raise SutError(
            f"the workers could not import the SUT: {c.stop_dispatching}. Workers import it the way "
            "`evalharness run` does: from their current directory and PYTHONPATH"
        )
    with contextlib.suppress(*REDIS_ERRORS):
        await client.delete(c.done_key)
    return RunResult(c.run_id, c.outcomes(), started, time.time(), c.diagnostics, c.batch_id, code.fingerprint)


def _timeout_diagnostics(c: _Collector, options: RunOptions, start: float, dispatch_done_at: float | None) -> None:
    missing = sorted(set(range(len(c.dataset.samples))) - set(c.results))
    shown = ", ".join(c.dataset.samples[i].id for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
    c.diagnostics.append(
        f"batch timeout of {options.batch_timeout:g}s reached: {len(missing)} sample(s) missing ({shown})"
    )
    if c.pending:
        c.diagnostics.append(
            f"dispatch starvation: {len(c.pending)} sample(s) were never dispatched because dispatch alone used "
            f"the {options.batch_timeout:g}s budget (raise --concurrency, add workers, or raise --batch-timeout)"
        )
    elif dispatch_done_at is not None:
        c.diagnostics.append(
            f"every sample was dispatched after {dispatch_done_at - start:.1f}s; "
            f"{len(c.in_flight)} were still running or queued when the budget ran out"
        )

