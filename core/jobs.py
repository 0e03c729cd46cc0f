"""Jobs: a registered name plus a JSON payload, the options that govern their retries, and
the pure decisions taken when one finishes (ack, release, or fail)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import json
import math
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from .errors import ConfigError


class JobStatus(StrEnum):
    """The ``state`` field of a job record (``P:{q:Q}:job:ID``), as the scripts in ``lua/`` write
    it.  A completed job has no state: ``ack`` deletes its record."""

    READY = "ready"  # in a lane, waiting for a worker
    DELAYED = "delayed"  # waiting for its due time (a delay, a backoff, a 429 release)
    RESERVED = "reserved"  # a worker holds its lease and runs it
    FAILED = "failed"  # failed for good (an operator's cancel of a running job too), in the failed store
    RETRIED = "retried"  # a failed job an operator dispatched again, as a new job
    CANCELLED = "cancelled"  # its batch was cancelled (or its queue cleared) before it ran

    @property
    def terminal(self) -> bool:
        """Whether nothing more happens to the job unless an operator acts on it."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobStatus.FAILED, JobStatus.RETRIED, JobStatus.CANCELLED})


class FailureKind(StrEnum):
    EXCEPTION = "exception"
    TIMEOUT = "timeout"
    LOST = "lost"  # its worker died (lease lapsed) more often than tries allow
    UNKNOWN_JOB = "unknown_job"
    RATE_LIMITED = "rate_limited"  # still rate-limited when retry_until passed
    INVALID_PAYLOAD = "invalid_payload"
    CANCELLED = "cancelled"  # an operator cancelled it (``evalharness job cancel``, a batch cancel)


class RateLimited(Exception):
    """Raised by a job (or a SUT it calls) when a provider said 429: the job is released,
    not failed, and no try is used."""

    def __init__(self, retry_after: float | None = None, message: str = "rate limited") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """An error that retrying cannot fix (a missing module, an invalid payload): fail at once.
    ``kind`` names it in the failure record and in eval reports."""

    def __init__(self, message: str, kind: str = "exception") -> None:
        super().__init__(message)
        self.kind = kind


class JobCancelled(PermanentError):
    """Recorded for a job an operator cancelled while it ran: it fails at once, never retried."""

    def __init__(self, message: str = "cancelled by an operator") -> None:
        super().__init__(message, FailureKind.CANCELLED)


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-job settings; a job's registration gives defaults that a dispatch may override."""

    tries: int = 3  # attempts in all; 0 = unlimited
    max_exceptions: int = 0  # 0 = only `tries` bounds exceptions
    backoff: tuple[float, ...] = (1.0, 5.0, 30.0)  # seconds before retry n; the last repeats
    jitter: float = 0.0  # +/- fraction applied to each backoff delay
    timeout: float = 60.0  # seconds for one attempt; 0 = none
    retry_until: float | None = None  # epoch seconds after which no retry starts
    # Whether another dispatch of the same work (same name, payload, batch and tenant) while this
    # job is pending or running yields this job instead of queueing a second one.
    unique: bool = False
    unique_for: float = 0.0  # seconds the idempotency key still dedupes after the job completed
    limiters: tuple[str, ...] = ()  # named limiters (see limits.py) a start must pass

    def validate(self) -> JobOptions:
        if self.tries < 0:
            raise ConfigError(f"tries must be >= 0, got {self.tries}")
        if self.max_exceptions < 0:
            raise ConfigError(f"max_exceptions must be >= 0, got {self.max_exceptions}")
        if any(b < 0 for b in self.backoff):
            raise ConfigError(f"backoff delays must be >= 0, got {list(self.backoff)}")
        if self.timeout < 0:
            raise ConfigError(f"timeout must be >= 0, got {self.timeout}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be between 0 and 1, got {self.jitter}")
        if not isinstance(self.unique, bool):
            raise ConfigError(f"unique must be true or false, got {self.unique!r}")
        if self.unique_for < 0:
            raise ConfigError(f"unique_for must be >= 0, got {self.unique_for}")
        if not self.backoff:
            raise ConfigError("backoff needs at least one delay")
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "tries": self.tries,
            "max_exceptions": self.max_exceptions,
            "backoff": list(self.backoff),
            "jitter": self.jitter,
            "timeout": self.timeout,
            "retry_until": self.retry_until,
            "unique": self.unique,
            "unique_for": self.unique_for,
            "limiters": list(self.limiters),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobOptions:
        return cls(
            tries=int(data.get("tries", 3)),
            max_exceptions=int(data.get("max_exceptions", 0)),
            backoff=tuple(float(b) for b in data.get("backoff", (1.0,))) or (0.0,),
            jitter=float(data.get("jitter", 0.0)),
            timeout=float(data.get("timeout", 60.0)),
            retry_until=None if data.get("retry_until") is None else float(data["retry_until"]),
            unique=bool(data.get("unique", False)),
            unique_for=float(data.get("unique_for", 0.0)),
            limiters=tuple(data.get("limiters") or ()),
        )

    def override(self, **changes: Any) -> JobOptions:
        """These options with some replaced (``None`` values are ignored); ``backoff`` may be a
        number or a list."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "backoff" in given:
            given["backoff"] = normalise_backoff(given["backoff"])
        if "limiters" in given:
            given["limiters"] = tuple(given["limiters"])
        unknown = set(given) - set(self.to_json())
        if unknown:
            raise ConfigError(f"unknown job option(s): {', '.join(sorted(unknown))}")
        return replace(self, **given).validate()


def derive_key(name: str, payload: Any, batch: str | None = None, tenant: str | None = None) -> str:
    """The key of a unique job without an explicit one: the job name plus its canonical JSON
    payload, and its batch and tenant (the same work in two batches, or for two tenants, is two
    jobs), hashed."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{name}\n{batch or ''}\n{tenant or ''}\n{canonical}".encode()).hexdigest()[:32]


def job_keys(
    job_id: str,
    name: str,
    payload: Any,
    options: JobOptions,
    *,
    key: str | None = None,
    batch: str | None = None,
    tenant: str | None = None,
) -> tuple[str, str | None]:
    """A new job's idempotency key, and the key under which dispatch merges it with a pending
    job doing the same work (None: it is never merged).

    Every job has a key for providers that deduplicate requests, the same for all its attempts;
    two dispatches are merged only when asked: an explicit ``key``, ``unique``, or a ``unique_for``
    window.  Otherwise two identical dispatches are two jobs, as in every other job queue."""
    if key:
        return key, key
    if options.unique or options.unique_for > 0:
        derived = derive_key(name, payload, batch, tenant)
        return derived, derived
    return job_id, None


_ID_SEQUENCE = itertools.count()


def new_job_id() -> str:
    """Time-ordered, unique without coordination: 12 hex digits of ms time, a 4-digit sequence of
    this process and 6 random bytes.  The sequence keeps the ids one producer makes within one
    millisecond in the order it made them, so listings sorted by time then id (a queue's Ready
    tab) show them in dispatch order."""
    # random's generator is seeded from the OS and re-seeded in a forked child, so two processes
    # never share its sequence; it saves a system call per id over os.urandom
    return f"{int(time.time() * 1000):012x}{next(_ID_SEQUENCE) & 0xFFFF:04x}{random.getrandbits(48):012x}"


# what a job with neither its producer's options nor a registration runs with (valid as they are)
DEFAULT_OPTIONS = JobOptions()


@dataclass(frozen=True, slots=True)
class Job:
    """One job as a worker sees it after a pop: the immutable envelope plus counters."""

    id: str
    name: str
    payload: Any
    queue: str
    options: JobOptions
    enqueued_at: float  # epoch seconds of the first dispatch
    lane: str = "_"
    batch: str | None = None
    tenant: str | None = None
    tags: tuple[str, ...] = ()
    key: str | None = None  # idempotency key: for providers, the same for every attempt
    retry_of: str | None = None  # the failed job this one retries
    attempts: int = 0  # times started, this one included
    releases: int = 0  # times released by a rate-limit signal (no try used)
    exceptions: int = 0
    checkpoint: Any = None  # partial state saved by an earlier attempt
    # Whether ``options`` were fixed by the producer; when not (it did not know the job), the
    # worker takes the job's registered options, then applies ``overrides``.
    options_given: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def tries_used(self) -> int:
        return self.attempts - self.releases

    def envelope(self) -> str:
        """The JSON stored in Redis: everything that does not change while the job lives.

        Built from pieces, the parts a job shares with the others of its name and options cached
        (a bulk dispatch spent most of its Python time here); the text is the same as
        ``json.dumps`` of the object with compact separators, key for key."""
        dumps = _compact
        head, middle = _envelope_parts(self.name, self.queue, self.options if self.options_given else None)
        if self.batch is None and self.tenant is None and not self.tags and self.retry_of is None:
            tail = ',"batch":null,"tenant":null,"tags":[],"key":'
        else:
            tail = f',"batch":{dumps(self.batch)},"tenant":{dumps(self.tenant)},"tags":{dumps(list(self.tags))},"key":'
        return (
            f'{{"id":{dumps(self.id)}{head}{_value(self.payload)}{middle}'
            f'{dumps(self.overrides) if self.overrides else "null"},"enqueued_at":{_value(self.enqueued_at)}'
            f'{tail}{_text(self.key)},"retry_of":{_text(self.retry_of)}}}'
        )

    @classmethod
    def from_envelope(
        cls,
        data: str,
        *,
        lane: str = "_",
        attempts: int = 0,
        releases: int = 0,
        exceptions: int = 0,
        checkpoint: Any = None,
    ) -> Job:
        env = json.loads(data)
        # the options a job runs with: the producer's, else the registered job's, plus overrides
        if env.get("options") is not None:
            options = JobOptions.from_json(env["options"])
        else:
            spec = REGISTRY.get(env["name"])
            options = spec.options if spec is not None else DEFAULT_OPTIONS
        overrides = env.get("overrides")
        return cls(
            id=env["id"],
            name=env["name"],
            payload=env.get("payload"),
            queue=env["queue"],
            options=options.override(**overrides) if overrides else options,
            enqueued_at=float(env.get("enqueued_at", 0.0)),
            lane=lane,
            batch=env.get("batch"),
            tenant=env.get("tenant"),
            tags=tuple(env.get("tags") or ()),
            key=env.get("key"),
            retry_of=env.get("retry_of"),
            attempts=attempts,
            releases=releases,
            exceptions=exceptions,
            checkpoint=checkpoint,
        )


# one encoder for every envelope: json.dumps with separators builds a new one per call
_compact = json.JSONEncoder(separators=(",", ":")).encode


def _text(value: str | None) -> str:
    return "null" if value is None else _compact(value)


def _value(value: Any) -> str:
    """``_compact(value)``, the common scalars without the encoder's generic path (what it does
    for them: the same text)."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is str:
        return _compact(value)
    return "null" if value is None else _compact(value)


@functools.lru_cache(maxsize=512)
def _envelope_parts(name: str, queue: str, options: JobOptions | None) -> tuple[str, str]:
    """The envelope's text between the id and the payload, and between the payload and the
    overrides: the same for every job of one name, queue and options."""
    shown = _compact(options.to_json()) if options is not None else "null"
    return f',"name":{_compact(name)},"payload":', f',"queue":{_compact(queue)},"options":{shown},"overrides":'


class JobContext(Protocol):
    """What a running job can ask of the worker that runs it."""

    @property
    def job(self) -> Job: ...

    @property
    def worker_id(self) -> str: ...

    @property
    def client(self) -> Any:
        """The worker's asyncio Redis client (for jobs that read or write Redis themselves)."""

    @property
    def prefix(self) -> str:
        """The key prefix the worker serves."""

    @property
    def partial(self) -> Any:
        """The state the last :meth:`checkpoint` saved (in this or an earlier attempt), or None."""

    def checkpoint(self, state: Any) -> None:
        """Save JSON-able partial state: a retry receives it as :attr:`partial`, and the failed
        hook and the failed-job record carry it.  Callable from async and sync jobs alike."""

    def progress(self, fraction: float, note: str = "") -> None:
        """Report how far the job is (0..1) with a short note, e.g. ``progress(0.4, "tokens 812")``.
        Free to call often: the latest value travels with the worker's next lease renewal (no
        Redis call per update) and shows in ``evalharness jobs running`` and the console."""

    @property
    def cancel_requested(self) -> bool:
        """True once an operator asked to cancel this job; a sync job may poll it to stop early."""


JobFunc = Callable[..., Any]
FailedHook = Callable[[JobContext, BaseException, dict[str, Any]], Awaitable[None] | None]


@dataclass(frozen=True)
class JobSpec:
    """A registered job: its function, default options and `failed` hook."""

    name: str
    func: JobFunc
    options: JobOptions = field(default_factory=JobOptions)
    queue: str = "default"
    on_failure: FailedHook | None = None
    takes_context: bool = True
    redact: tuple[str, ...] = ()  # payload keys (dotted for nesting) masked in failure records

    @functools.cached_property
    def is_async(self) -> bool:
        # asked once per job run: inspect's answer is worth keeping
        return inspect.iscoroutinefunction(self.func)


REGISTRY: dict[str, JobSpec] = {}


def job(
    name: str | None = None,
    *,
    queue: str = "default",
    tries: int | None = None,
    backoff: Sequence[float] | float | None = None,
    timeout: float | None = None,
    max_exceptions: int | None = None,
    retry_until: float | None = None,
    jitter: float | None = None,
    unique: bool | None = None,
    unique_for: float | None = None,
    limiters: Sequence[str] | None = None,
    redact: Sequence[str] = (),
    on_failure: FailedHook | None = None,
) -> Callable[[JobFunc], JobFunc]:
    """Register a function as a job.  It is called as ``func(ctx, payload)`` or ``func(payload)``
    (sync functions run in the worker's thread pool)."""

    def decorate(func: JobFunc) -> JobFunc:
        opts = JobOptions().override(
            tries=tries,
            backoff=backoff,
            timeout=timeout,
            max_exceptions=max_exceptions,
            retry_until=retry_until,
            jitter=jitter,
            unique=unique,
            unique_for=unique_for,
            limiters=limiters,
        )
        params = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        spec = JobSpec(
            name=name or f"{func.__module__}.{func.__qualname__}",
            func=func,
            options=opts.validate(),
            queue=queue,
            on_failure=on_failure,
            takes_context=len(params) >= 2,
            redact=tuple(redact),
        )
        REGISTRY[spec.name] = spec
        return func

    return decorate


def normalise_backoff(backoff: Sequence[float] | float) -> tuple[float, ...]:
    if isinstance(backoff, int | float):
        return (float(backoff),)
    values = tuple(float(b) for b in backoff)
    return values or (0.0,)


def backoff_delay(backoff: Sequence[float], retry_number: int, jitter: float = 0.0, rnd: float = 0.5) -> float:
    """Delay before retry ``retry_number`` (1-based); the list's last value repeats.
    ``rnd`` in [0, 1) picks the jitter, so the function stays pure."""
    if not backoff:
        return 0.0
    base = backoff[min(max(retry_number, 1), len(backoff)) - 1]
    return max(0.0, base * (1.0 + jitter * (2.0 * rnd - 1.0)))


REDACTED = "***"


def redact_payload(payload: Any, paths: Sequence[str]) -> Any:
    """A copy of ``payload`` with the values at ``paths`` (``"api_key"``, ``"auth.token"``) masked."""
    if not paths or not isinstance(payload, dict):
        return payload
    out = json.loads(json.dumps(payload))
    for path in paths:
        node: Any = out
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:
            node[parts[-1]] = REDACTED
    return out


def rate_limit_signal(exc: BaseException) -> tuple[bool, float | None]:
    """Whether ``exc`` says "rate limited" (our :class:`RateLimited`, or an HTTP error with status
    429 from urllib, requests, httpx or a similar client) and the Retry-After it carried."""
    if isinstance(exc, RateLimited):
        return True, exc.retry_after
    status = None
    headers: Any = None
    response = getattr(exc, "response", None)
    for obj in (exc, response):
        if obj is None:
            continue
        for attr in ("status_code", "status", "code"):
            value = getattr(obj, attr, None)
            if isinstance(value, int):
                status = value
                break
        if status is not None:
            headers = getattr(obj, "headers", None)
            break
    if status != 429:
        return False, None
    return True, _retry_after(headers)


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    try:
        raw = headers.get("Retry-After") or headers.get("retry-after")
    except Exception:
        return None
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except (TypeError, ValueError):
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(str(raw))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


TRACEBACK_KEPT = 8000  # characters of a failure's traceback stored: its end, where the error is


def describe_failure(exc: BaseException | None, kind: str, job: Job, *, trace: bool = True) -> dict[str, Any]:
    """What is recorded when an attempt fails: the failure's kind (a PermanentError's own), the
    exception, the job's counters, and the traceback unless ``trace`` is off."""
    if isinstance(exc, PermanentError):
        kind = exc.kind
    info: dict[str, Any] = {
        "kind": str(kind) or "exception",
        "message": str(exc) if exc is not None else "",
        "exception_type": type(exc).__name__ if exc is not None else None,
        "job": job.name,
        "queue": job.queue,
        "attempts": job.attempts,
        "tries_used": job.tries_used,
        "releases": job.releases,
        "tags": list(job.tags),
        "batch": job.batch,
        "tenant": job.tenant,
        "enqueued_at": job.enqueued_at,
        "at": time.time(),
    }
    if exc is not None and trace:
        info["traceback"] = "".join(traceback.format_exception(exc))[-TRACEBACK_KEPT:]
    return info


class Outcome(StrEnum):
    """How an attempt ended, as :func:`decide` is told; ``DELIVERED`` asks before an attempt runs."""

    DELIVERED = "delivered"  # a pop handed the job out; it has not run yet
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    EXCEPTION = "exception"
    TIMEOUT = "timeout"
    LOST = "lost"  # the engine found the attempt lost (its lease lapsed on the last allowed try)
    CANCELLED = "cancelled"


class Verdict(StrEnum):
    RUN = "run"  # only for Outcome.DELIVERED: start the attempt
    ACK = "ack"
    RELEASE = "release"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    delay: float = 0.0
    rate_limited: bool = False  # a release that uses no try
    kind: str = ""
    reason: str = ""


_FAILURE_KINDS = {Outcome.TIMEOUT: FailureKind.TIMEOUT, Outcome.LOST: FailureKind.LOST}


def decide(
    job: Job,
    *,
    outcome: Outcome,
    now: float,
    retry_after: float | None = None,
    permanent: bool = False,
    rnd: float | None = None,
) -> Decision:
    """What to do with a job whose attempt ended with ``outcome``, or (``DELIVERED``) whether a
    job a pop just handed out may run at all."""
    opts = job.options
    if outcome == Outcome.DELIVERED:
        # A pop counts the attempt before the job runs, so a delivery past the last allowed try
        # means the previous attempt never reported back: its worker died and its lease lapsed.
        if opts.tries and job.tries_used > opts.tries:
            reason = f"its worker stopped (lease lapsed) on the last allowed attempt ({opts.tries} tries)"
            return Decision(Verdict.FAIL, kind=FailureKind.LOST, reason=reason)
        return Decision(Verdict.RUN)
    if outcome == Outcome.OK:
        return Decision(Verdict.ACK)
    if outcome == Outcome.CANCELLED:
        return Decision(Verdict.FAIL, kind=FailureKind.CANCELLED, reason="cancelled by an operator")
    r = random.random() if rnd is None else rnd
    if outcome == Outcome.RATE_LIMITED:
        delay = (
            retry_after if retry_after is not None else backoff_delay(opts.backoff, job.releases + 1, opts.jitter, r)
        )
        if opts.retry_until is not None and now + delay > opts.retry_until:
            return Decision(Verdict.FAIL, kind=FailureKind.RATE_LIMITED, reason="still rate-limited at retry_until")
        return Decision(Verdict.RELEASE, delay=delay, rate_limited=True, kind=FailureKind.RATE_LIMITED)
    kind = _FAILURE_KINDS.get(outcome, FailureKind.EXCEPTION)
    if permanent:
        return Decision(Verdict.FAIL, kind=kind, reason="not retryable")
    used = job.tries_used
    if opts.tries and used >= opts.tries:
        return Decision(Verdict.FAIL, kind=kind, reason=f"tries exhausted ({used}/{opts.tries})")
    if opts.max_exceptions and job.exceptions + 1 >= opts.max_exceptions and outcome != Outcome.LOST:
        return Decision(Verdict.FAIL, kind=kind, reason=f"max_exceptions reached ({opts.max_exceptions})")
    delay = backoff_delay(opts.backoff, used, opts.jitter, r)
    if opts.retry_until is not None and now + delay > opts.retry_until:
        return Decision(Verdict.FAIL, kind=kind, reason="retry_until passed")
    return Decision(Verdict.RELEASE, delay=delay, kind=kind)
