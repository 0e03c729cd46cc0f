"""The reliable queue: dispatch, pop with a lease, renew, ack, release and fail.

Every state change is one Lua script (see ``lua/``), loaded after the pieces of the prelude it
calls (``script_source``); the Python side only batches calls so that a worker pays well under
one round trip per job.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript

from .config import validate_name
from .jobs import DEFAULT_OPTIONS, REGISTRY, Job, JobOptions, job_keys, new_job_id
from .keys import DEFAULT_LANE, GlobalKeys, QueueKeys
from .prelude import prelude_source

SCRIPT_NAMES = (
    "dispatch",
    "pop_with_lease",
    "ack",
    "release",
    "fail",
    "renew",
    "checkpoint",
    "retry_failed",
    "limit",
    "batch_cancel",
    "batch_retry",
    "batch_seal",
    "cancel_job",
    "forget_failed",
    "failed_index",
    "batch_summary",
    "ready_state",
)


_TOP_DEF = re.compile(r"^local (?:function )?([A-Za-z_]\w*)", re.M)
_WORD = re.compile(r"\w+")


@cache
def _pieces(library: str) -> list[tuple[frozenset[str], str, frozenset[str]]]:
    """The top-level definitions of the prelude and helpers, one paragraph each (with the comment
    above it), as (names defined, text, the words it mentions); paragraphs of comments alone are
    left out."""
    out = []
    for para in re.split(r"\n\s*\n", library):
        names = frozenset(_TOP_DEF.findall(para))
        code = [line for line in para.splitlines() if line.strip() and not line.lstrip().startswith("--")]
        if not names:
            if code:
                raise ValueError(f"the Lua library has top-level code outside a definition: {code[0]!r}")
            continue
        # a function ends in its own paragraph, so a blank line never splits one
        if len(re.findall(r"^local function ", para, re.M)) != len(re.findall(r"^end$", para, re.M)):
            raise ValueError(f"a blank line splits a function of the Lua library: {sorted(names)}")
        out.append((names, para.strip("\n"), frozenset(_WORD.findall(para))))
    return out


def link(library: str, body: str) -> str:
    """``body`` after the pieces of ``library`` it uses, directly or through another piece, in
    the library's order (a piece comes after what it calls).  What a script does not call is
    not loaded with it, so the prelude costs a small script nothing."""
    pieces = _pieces(library)
    used: set[int] = set()
    # a name is used where it stands as a whole word (what \bname\b finds), in the body or in
    # a piece already taken
    words = set(_WORD.findall(body))
    grown = True
    while grown:
        grown = False
        for i, (names, _, mentions) in enumerate(pieces):
            if i not in used and not names.isdisjoint(words):
                used.add(i)
                words |= mentions
                grown = True
    return "\n\n".join([*(pieces[i][1] for i in sorted(used)), body])


@cache
def script_source(name: str) -> str:
    """The source of script ``name`` as it is loaded: the pieces of the prelude
    (``core/prelude.py``, ``lua/_prelude.lua``) that it calls, each once, then its body."""
    body = resources.files("evalharness.core").joinpath("lua", f"{name}.lua").read_text()
    return link(prelude_source(), body)


class Scripts:
    """The registered scripts of one client (EVALSHA with a reload on NOSCRIPT, e.g. after a restart)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }
        # each script's EVALSHA and digest, as they go on the wire
        self._heads = {
            name: b"$7\r\nEVALSHA\r\n$40\r\n" + s.sha.encode() + b"\r\n" for name, s in self._scripts.items()
        }
        self._encoding = client.connection_pool.connection_kwargs.get("encoding", "utf-8")

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]

    def _pack(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
        """One EVALSHA in the protocol's own encoding, as redis-py's ``pack_command`` writes it
        (text in the client's encoding, numbers in decimal, other types refused), made directly:
        this runs for every dispatch, pop and ack."""
        encoding = self._encoding
        out = [
            b"*%d\r\n" % (3 + len(keys) + len(args)),
            self._heads[name],
            b"$%d\r\n%d\r\n" % (len(str(len(keys))), len(keys)),
        ]
        for part in (*keys, *args):
            kind = type(part)
            if kind is str:
                data = part.encode(encoding)
            elif kind is int:
                data = b"%d" % part
            elif kind is bytes:
                data = part
            elif kind is float:
                data = repr(part).encode()
            else:
                raise redis.exceptions.DataError(
                    f"Invalid input of type: {kind.__name__!r}. Convert to a bytes, string, int or float first."
                )
            out.append(b"$%d\r\n" % len(data))
            out.append(data)
            out.append(b"\r\n")
        return b"".join(out)

    async def run(
        self, calls: Sequence[tuple[str, Sequence[Any], Sequence[Any]]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run script calls ``(name, keys, args)`` in order, in one round trip: EVALSHA alone or
        pipelined, without the SCRIPT EXISTS check a redis-py pipeline makes first.  A script the
        server does not know (it restarted, or was flushed) is loaded and only the calls it
        refused are run again: a refused call did nothing.  The first error raised by a script
        is raised after all calls ran, as a pipeline does, or with ``raise_on_error=False`` left
        in its place among the replies (connection errors are always raised).

        The calls are packed here and written on a pooled connection, with the connection's own
        retry on a dropped connection, as redis-py's pipeline does, without its per-command
        bookkeeping."""
        packed = [self._pack(name, keys, args) for name, keys, args in calls]
        pool: Any = self._client.connection_pool
        conn = await pool.get_connection()
        try:
            replies: list[Any] = await conn.retry.call_with_retry(
                lambda: self._exchange(conn, packed), lambda error: conn.disconnect(error=error)
            )
        finally:
            await pool.release(conn)
        for i, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                name, keys, args = calls[i]
                try:
                    replies[i] = await self._scripts[name](keys=keys, args=args)
                except redis.exceptions.ResponseError as exc:
                    replies[i] = exc
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    @staticmethod
    async def _exchange(conn: Any, packed: list[bytes]) -> list[Any]:
        """Write ``packed`` and read a reply per call.  A connection that is open is written
        directly, waiting (within the socket timeout) only when the socket did not take it all:
        redis-py would start a task for the timeout of every write."""
        writer = getattr(conn, "_writer", None)
        if writer is None or writer.transport.is_closing():
            await conn.send_packed_command(packed)  # connects first
        else:
            try:
                writer.writelines(packed)
                if writer.transport.get_write_buffer_size():
                    async with asyncio.timeout(conn.socket_timeout):
                        await writer.drain()
            except BaseException as exc:
                # a write that did not finish leaves the connection unusable, as redis-py has it
                await conn.disconnect(nowait=True)
                if isinstance(exc, TimeoutError):
                    raise redis.exceptions.TimeoutError("Timeout writing to socket") from None
                if isinstance(exc, OSError):
                    raise redis.exceptions.ConnectionError(f"Error while writing to socket: {exc}") from exc
                raise
        replies: list[Any] = []
        for _ in packed:
            try:
                replies.append(await conn.read_response())
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
        return replies


DISPATCH_CHUNK = 500
# A bulk dispatch's first script call per queue holds only this many jobs.  The server runs one
# call at a time and reads a long pipeline in pieces, serving other clients between them, so the
# idle workers a small first call wakes pop and start its jobs while the rest is still arriving
# (2,000 jobs to idle workers: the first started 24 ms after the call began instead of 30-42 ms).
FIRST_CHUNK = 50
# The event a job's failure writes (with ``fail_call(event=True)``), by the failure's kind.
FAILURE_EVENTS = {"timeout": "job_timed_out", "cancelled": "job_cancelled"}
EVENT_MESSAGE_CHARS = 500
FAILED_RETENTION_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A job to dispatch: a registered name, a JSON-able payload and options."""

    name: str
    payload: Any = None
    queue: str | None = None
    options: JobOptions | None = None
    delay: float = 0.0
    id: str | None = None
    lane: str | None = None
    batch: str | None = None
    tenant: str | None = None
    tags: tuple[str, ...] = ()
    # Where the job's outcome goes: (sink, field, ttl seconds).  The ack script stores the
    # job's return value there and the fail script its failure, atomically with the state change.
    result_to: tuple[str, str, int] | None = None
    # Idempotency key: a second dispatch with the same key while the first job is pending or
    # running (or completed less than unique_for ago) yields that job.  Without one, a job has its
    # own key (its id) and is never merged, unless its options ask for it (unique, unique_for).
    key: str | None = None
    # Per-dispatch option overrides (tries, timeout, backoff, ...), applied over the job's own.
    overrides: dict[str, Any] = field(default_factory=dict)


OPTION_NAMES = frozenset(JobOptions().to_json())


@dataclass(slots=True)
class PopResult:
    jobs: list[Job] = field(default_factory=list)
    next_due: float | None = None  # seconds until the next delayed job is due
    cancelled: set[str] = field(default_factory=set)  # ids an operator asked to cancel (re-delivered)


@dataclass(frozen=True, slots=True)
class LeaseUpdate:
    """One held job in a renewal: its id and what its worker reports with the renewal."""

    id: str
    progress: float | None = None  # 0..1 when the job reported progress since the last renewal
    note: str = ""
    timeout: float | None = None  # the attempt's effective timeout (seconds), sent once


@dataclass(frozen=True, slots=True)
class RenewReply:
    lost: list[str]  # leases the caller no longer holds
    cancel: list[str]  # jobs an operator asked to cancel


@dataclass(frozen=True, slots=True)
class CancelReply:
    """What ``cancel_job`` found: ``what`` is told, already, removed, finished or missing."""

    what: str
    state: str
    queue: str


def failure_facets(failure: dict[str, Any]) -> tuple[str, str]:
    """The job name and exception class a failure is indexed under (the failure kind stands in
    for the class when there is none, e.g. a lease that lapsed on its last try)."""
    name = str(failure.get("job") or "")
    exc = str(failure.get("exception_type") or failure.get("kind") or "exception")
    return name, exc


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queue: str
    ready: int
    delayed: int
    reserved: int
    failed: int
    oldest_ready_age: float | None
    workers: int
    counters: dict[str, int]
    # ready jobs held by their batch's max_running: they start as its running jobs end (not in ready)
    held: int = 0


class Queue:
    """Access to every queue under one key prefix, over one asyncio Redis client."""

    def __init__(self, client: aioredis.Redis, prefix: str = "eh") -> None:
        self.client = client
        self.prefix = prefix
        self.scripts = Scripts(client)
        self.globals = GlobalKeys(prefix)
        self._keys: dict[str, QueueKeys] = {}
        self._known_queues = self.globals.queues  # every dispatch adds its queue to this set

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys(self.prefix, validate_name("queue", queue))
        return keys

    # -- producing ---------------------------------------------------------------------

    def _prepare(self, req: JobRequest) -> tuple[str, Job, list[Any]]:
        """The queue, the job and its argument group of ``dispatch.lua``: a plain job (no id,
        delay, result sink, idempotency key or batch) is ``"p", lane, 1, id, envelope`` (groups of
        one lane merge); any other is ``"x"`` and ten fields."""
        spec = REGISTRY.get(req.name)
        queue = req.queue or (spec.queue if spec else "default")
        options_given = req.options is not None or spec is not None
        if req.options is not None:
            options = req.options.validate()
        else:
            # a registration's options were validated when it registered
            options = spec.options if spec else DEFAULT_OPTIONS
        if req.overrides:
            options = options.override(**req.overrides)  # validates them here, at the producer
        job_id = req.id or new_job_id()
        key, merge_key = job_keys(
            job_id, req.name, req.payload, options, key=req.key, batch=req.batch, tenant=req.tenant
        )
        job = Job(
            id=job_id,
            name=req.name,
            payload=req.payload,
            queue=queue,
            options=options,
            enqueued_at=time.time(),
            # Lanes are served round-robin: a batch, or else a tenant, gets its own lane so that
            # one cannot starve another; plain jobs share the default lane in FIFO order.
            lane=req.lane or req.batch or (f"tenant:{req.tenant}" if req.tenant else DEFAULT_LANE),
            batch=req.batch,
            tenant=req.tenant,
            tags=tuple(req.tags),
            key=key,
            options_given=options_given,
            overrides=dict(req.overrides),
        )
        try:
            envelope = job.envelope()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"payload of job {req.name!r} is not JSON-serialisable: {exc}") from None
        delay = max(0.0, req.delay)
        if req.id is None and not delay and req.result_to is None and merge_key is None and job.batch is None:
            return queue, job, ["p", job.lane, 1, job.id, envelope]
        sink, sink_field, ttl = req.result_to or ("", "", 0)
        if sink:
            validate_name("result sink", sink)
        unique_ms = int(job.options.unique_for * 1000)
        group = ["x", job.id, envelope, job.lane, int(delay * 1000), sink, sink_field, ttl, merge_key or "", unique_ms]
        return queue, job, [*group, job.batch or ""]

    async def dispatch(self, name: str, payload: Any = None, **kwargs: Any) -> str:
        """Dispatch one job; returns its id (or the id of the pending job it duplicates).
        Job options (``tries=``, ``timeout=``, ``backoff=``...) override the job's own."""
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTION_NAMES}
        queue, _, group = self._prepare(JobRequest(name, payload, overrides=overrides, **kwargs))
        keys = self.keys(queue)
        (reply,) = await self.scripts.run(
            [("dispatch", self._dispatch_keys(keys), [keys.base, int(time.time() * 1000), *group])]
        )
        return str(reply[0])

    def _dispatch_keys(self, keys: QueueKeys) -> list[str]:
        """The keys of ``dispatch.lua`` for one queue."""
        return [keys.lanes, keys.ready, keys.delayed, keys.wake, keys.stats, self._known_queues]

    async def dispatch_many(self, requests: Iterable[JobRequest]) -> list[str]:
        """Dispatch many jobs in pipelined chunks (one script call per chunk and queue, the first
        one small, see ``FIRST_CHUNK``; one round trip in all).  Nothing is sent before every
        request is encoded, so a bad payload queues nothing.  Returns, in order, the id that represents each
        request (see :attr:`JobRequest.key`)."""
        # Per queue, the script's argument groups in the order of the jobs: consecutive plain jobs
        # of one lane share one group ("p", lane, n, then id and envelope per job), every other
        # job is a group of its own ("x", then ten fields); see dispatch.lua.
        by_queue: dict[str, list[list[Any]]] = {}
        counts: dict[str, int] = {}
        order: list[tuple[str, int]] = []
        ids: list[str] = []
        for req in requests:
            queue, job, group = self._prepare(req)
            groups = by_queue.get(queue)
            if groups is None:
                groups = by_queue[queue] = []
                counts[queue] = 0
            order.append((queue, counts[queue]))
            counts[queue] += 1
            last = groups[-1] if groups and group[0] == "p" else None
            cap = DISPATCH_CHUNK if len(groups) > 1 else FIRST_CHUNK
            if last is not None and last[0] == "p" and last[1] == group[1] and last[2] < cap:
                last[2] += 1
                last += group[3:]
            else:
                groups.append(group)
            ids.append(job.id)
        if not ids:
            return ids
        now_ms = int(time.time() * 1000)
        calls: list[tuple[str, list[str], list[Any]]] = []
        which: list[str] = []
        for queue, groups in by_queue.items():
            keys = self.keys(queue)
            script_keys = self._dispatch_keys(keys)
            args: list[Any] = []
            jobs = 0
            limit = FIRST_CHUNK
            for group in groups:
                size = group[2] if group[0] == "p" else 1
                if jobs and jobs + size > limit:
                    limit = DISPATCH_CHUNK
                    calls.append(("dispatch", script_keys, [keys.base, now_ms, *args]))
                    which.append(queue)
                    args, jobs = [], 0
                args += group
                jobs += size
            calls.append(("dispatch", script_keys, [keys.base, now_ms, *args]))
            which.append(queue)
        replies = await self.scripts.run(calls)
        represented: dict[str, list[str]] = {}
        for queue, reply in zip(which, replies, strict=True):
            represented.setdefault(queue, []).extend(reply)
        return [represented[queue][pos] for queue, pos in order]

    # -- consuming ---------------------------------------------------------------------

    async def pop(
        self, queue: str, count: int, lease: float, owner: str, *, paused: bool = False, maintenance: int = 100
    ) -> PopResult:
        """Claim up to ``count`` ready jobs for ``lease`` seconds (also promotes due delayed jobs
        and re-delivers jobs whose lease lapsed)."""
        (raw,) = await self.scripts.run(
            [self.pop_call(queue, count, lease, owner, paused=paused, maintenance=maintenance)]
        )
        return self.parse_pop(raw)

    def pop_call(
        self,
        queue: str,
        count: int,
        lease: float,
        owner: str,
        *,
        paused: bool = False,
        maintenance: int = 100,
        waiting: bool = False,
    ) -> tuple[str, list[str], list[Any]]:
        """One ``pop_with_lease`` call for :meth:`Scripts.run` (a worker sends it with its acks).
        ``waiting``: it runs when the owner's wait on the wake list ends, so it hands out nothing
        while the owner's hold key (:meth:`QueueKeys.hold`) says it pauses or stops."""
        keys = self.keys(queue)
        return (
            "pop_with_lease",
            [keys.lanes, keys.ready, keys.delayed, keys.reserved, keys.wake, keys.stats],
            [keys.base, count, int(lease * 1000), owner, maintenance, "1" if paused else "w" if waiting else "0"],
        )

    @staticmethod
    def parse_pop(raw: Sequence[Any]) -> PopResult:
        result = PopResult(next_due=None if int(raw[0]) < 0 else int(raw[0]) / 1000.0)
        for i in range(1, len(raw), 8):
            if raw[i + 7]:
                result.cancelled.add(str(raw[i]))
            result.jobs.append(
                Job.from_envelope(
                    raw[i + 1],
                    lane=raw[i + 2],
                    attempts=int(raw[i + 3]),
                    releases=int(raw[i + 4]),
                    exceptions=int(raw[i + 5]),
                    checkpoint=json.loads(raw[i + 6]) if raw[i + 6] else None,
                )
            )
        return result

    def ack_call(
        self,
        queue: str,
        owner: str,
        done: Sequence[tuple[str, str] | tuple[str, str, int]],
        telemetry: bool = True,
        pop_follows: bool = False,
    ) -> tuple[str, list[str], list[Any]]:
        """One ``ack`` call for :meth:`Scripts.run` of ``done`` = [(job id, result JSON or "",
        runtime ms)].  ``pop_follows``: the caller pops this queue right after, in the same round
        trip, so a batch slot the ack frees needs no worker woken for it."""
        keys = self.keys(queue)
        args: list[Any] = [keys.base, owner, ("t" if telemetry else "") + ("p" if pop_follows else "")]
        # one argument per job (see ack.lua): encoding three per job cost the worker more; the
        # script reads the id by its length in bytes
        args += [
            f"{item[2] if len(item) > 2 else 0}:{len(i) if i.isascii() else len(i.encode())}:{i}{item[1]}"
            for item in done
            for i in (item[0],)
        ]
        return "ack", [keys.reserved, keys.stats, keys.lanes, keys.ready, keys.wake], args

    async def ack(self, queue: str, owner: str, done: Sequence[tuple[str, str] | tuple[str, str, int]]) -> list[str]:
        """Acknowledge finished jobs with their JSON results; returns the ids whose lease was
        no longer ours."""
        (stale,) = await self.scripts.run([self.ack_call(queue, owner, done)])
        return list(stale)

    async def results(self, queue: str, sink: str, fields: Sequence[str]) -> list[dict[str, Any] | None]:
        """The stored outcomes (``{"result": ...}`` or ``{"error": ...}``) of some sink fields."""
        if not fields:
            return []
        raw = await self.client.hmget(self.keys(queue).results(sink), list(fields))
        return [None if r is None else json.loads(r) for r in raw]

    def release_call(
        self,
        queue: str,
        owner: str,
        job_id: str,
        delay: float,
        why: str,
        error: dict[str, Any] | None = None,
        checkpoint: str = "",
        telemetry: bool = True,
    ) -> dict[str, list[Any]]:
        """The keys and args of the ``release`` script (shared by the async and sync callers)."""
        keys = self.keys(queue)
        kind = (error or {}).get("kind", "")
        return {
            "keys": [keys.lanes, keys.ready, keys.delayed, keys.reserved, keys.wake, keys.stats],
            "args": [
                keys.base,
                owner,
                job_id,
                int(delay * 1000),
                why,
                json.dumps(error) if error else "",
                checkpoint,
                "1" if telemetry else "0",
                kind,
            ],
        }

    async def release(self, *args: Any, **kwargs: Any) -> bool:
        """Put a reserved job back (``why``: rate_limited, retry or interrupted); arguments as
        :meth:`release_call`.  False when the caller no longer held the lease."""
        call = self.release_call(*args, **kwargs)
        return bool(await self.scripts["release"](keys=call["keys"], args=call["args"]))

    def fail_call(
        self,
        queue: str,
        owner: str,
        job_id: str,
        failure: dict[str, Any],
        *,
        raised: bool = True,
        checkpoint: str = "",
        telemetry: bool = True,
        event: bool = False,
    ) -> dict[str, list[Any]]:
        """The keys and args of the ``fail`` script (shared by the async and sync callers).
        ``event``: the script also appends the job's event to the stream the console reads
        (``job_timed_out``, ``job_cancelled`` or ``job_failed``, by the failure's kind)."""
        keys = self.keys(queue)
        kind = str(failure.get("kind", "exception"))
        name, exc = failure_facets(failure)
        event_kind = FAILURE_EVENTS.get(kind, "job_failed") if event else ""
        return {
            "keys": [keys.reserved, keys.failed, keys.stats, keys.lanes, keys.ready, keys.wake],
            "args": [
                keys.base,
                owner,
                job_id,
                json.dumps(failure),
                FAILED_RETENTION_MS,
                "1" if raised else "0",
                checkpoint,
                kind if telemetry else "",
                name,
                exc,
                kind,
                event_kind,
                queue,
                str(failure.get("message", ""))[:EVENT_MESSAGE_CHARS] if event else "",
            ],
        }

    async def fail(self, *args: Any, **kwargs: Any) -> bool:
        """Fail a reserved job for good: it moves to the failed store (kept 7 days); arguments as
        :meth:`fail_call`.  False when the caller no longer held the lease."""
        call = self.fail_call(*args, **kwargs)
        return bool(await self.scripts["fail"](keys=call["keys"], args=call["args"]))

    async def checkpoint(self, queue: str, owner: str, job_id: str, state_json: str) -> bool:
        keys = self.keys(queue)
        ok = await self.scripts["checkpoint"](keys=[keys.reserved], args=[keys.base, owner, job_id, state_json])
        return bool(ok)

    # -- the failed-job store ----------------------------------------------------------------

    async def failed_ids(self, queue: str, start: int = 0, count: int = -1) -> list[str]:
        """Failed job ids of a queue, newest first."""
        end = -1 if count < 0 else start + count - 1
        return [str(i) for i in await self.client.zrevrange(self.keys(queue).failed, start, end)]

    async def retry_failed(self, queue: str, job_id: str) -> str | None:
        """Dispatch a failed job again under a new id; returns the new id, or None when the job
        is not in the failed store."""
        keys = self.keys(queue)
        data = await self.client.hget(keys.job(job_id), "data")
        if data is None:
            return None
        env = json.loads(data)
        new_id = new_job_id()
        env["id"] = new_id
        env["retry_of"] = job_id
        env["enqueued_at"] = time.time()
        ok = await self.scripts["retry_failed"](
            keys=[keys.lanes, keys.ready, keys.failed, keys.wake, keys.stats],
            args=[keys.base, job_id, new_id, json.dumps(env, separators=(",", ":"))],
        )
        return new_id if ok else None

    async def retry_failed_many(self, queue: str, job_ids: Sequence[str]) -> list[tuple[str, str | None]]:
        """:meth:`retry_failed` for many jobs of one queue, pipelined in chunks; returns
        (old id, new id or None when it was not in the failed store) per job."""
        keys = self.keys(queue)
        out: list[tuple[str, str | None]] = []
        for start in range(0, len(job_ids), 200):
            chunk = list(job_ids[start : start + 200])
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id in chunk:
                    pipe.hget(keys.job(job_id), "data")
                datas = await pipe.execute()
            calls: list[tuple[str, str]] = []
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id, data in zip(chunk, datas, strict=True):
                    if data is None:
                        continue
                    env = json.loads(data)
                    new_id = new_job_id()
                    env["id"] = new_id
                    env["retry_of"] = job_id
                    env["enqueued_at"] = time.time()
                    await self.scripts["retry_failed"](
                        keys=[keys.lanes, keys.ready, keys.failed, keys.wake, keys.stats],
                        args=[keys.base, job_id, new_id, json.dumps(env, separators=(",", ":"))],
                        client=pipe,
                    )
                    calls.append((job_id, new_id))
                replies = await pipe.execute() if calls else []
            done = {old: new for (old, new), ok in zip(calls, replies, strict=True) if ok}
            out += [(job_id, done.get(job_id)) for job_id in chunk]
        return out

    async def forget_failed(self, queue: str, job_id: str) -> bool:
        """Delete a failed job from the store (and its indexes); False when it was not there."""
        return bool(await self.forget_failed_many(queue, [job_id]))

    async def forget_failed_many(self, queue: str, job_ids: Sequence[str]) -> list[str]:
        """Delete failed jobs of one queue from the store; returns the ids that were there."""
        keys = self.keys(queue)
        out: list[str] = []
        for start in range(0, len(job_ids), DISPATCH_CHUNK):
            chunk = list(job_ids[start : start + DISPATCH_CHUNK])
            out += [str(i) for i in await self.scripts["forget_failed"](keys=[keys.failed], args=[keys.base, *chunk])]
        return out

    async def ensure_failed_indexes(self, queue: str) -> int:
        """Index the failed jobs that failed before the failed-job indexes existed, once per
        queue (a marker key records that it ran); bounded by the store's size.  Returns how
        many jobs it indexed (0 when the marker was already there)."""
        keys = self.keys(queue)
        if await self.client.exists(keys.failed_indexed):
            return 0
        ids = [str(i) for i in await self.client.zrange(keys.failed, 0, -1)]
        n = 0
        for start in range(0, len(ids), DISPATCH_CHUNK):
            chunk = ids[start : start + DISPATCH_CHUNK]
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id in chunk:
                    pipe.hget(keys.job(job_id), "failure")
                failures = await pipe.execute()
            args: list[Any] = [keys.base, FAILED_RETENTION_MS]
            for job_id, raw in zip(chunk, failures, strict=True):
                if raw is None:
                    continue
                try:
                    failure = json.loads(raw)
                except ValueError:
                    failure = {}
                args += [job_id, *failure_facets(failure if isinstance(failure, dict) else {})]
            if len(args) > 2:
                n += int(await self.scripts["failed_index"](keys=[keys.failed], args=args))
        await self.client.set(keys.failed_indexed, "1")
        return n

    async def cancel_job(self, queue: str, job_id: str) -> CancelReply:
        """Cancel one job: a running one is flagged (its worker stops it at its next renewal), a
        queued or delayed one is recorded cancelled at once.  See ``lua/cancel_job.lua``."""
        keys = self.keys(queue)
        data = await self.client.hget(keys.job(job_id), "data")
        name = ""
        env: dict[str, Any] = {}
        if data is not None:
            env = json.loads(data)
            name = str(env.get("name") or "")
        failure = {
            "kind": "cancelled",
            "message": "cancelled by an operator before it started",
            "exception_type": "JobCancelled",
            "job": name,
            "queue": queue,
            "attempts": 0,
            "tries_used": 0,
            "releases": 0,
            "tags": env.get("tags") or [],
            "batch": env.get("batch"),
            "tenant": env.get("tenant"),
            "enqueued_at": env.get("enqueued_at"),
            "at": time.time(),
            "reason": "cancelled",
            "payload": env.get("payload"),
        }
        what, state = await self.scripts["cancel_job"](
            keys=[keys.lanes, keys.ready, keys.delayed, keys.reserved, keys.failed, keys.stats, keys.wake],
            args=[keys.base, job_id, json.dumps(failure), FAILED_RETENTION_MS, name, "JobCancelled"],
        )
        return CancelReply(str(what), str(state), queue)

    async def renew(self, queue: str, owner: str, ids: Sequence[str], lease: float) -> list[str]:
        """Extend the leases of ``ids``; returns those no longer held."""
        return (await self.renew_leases(queue, owner, [LeaseUpdate(i) for i in ids], lease)).lost

    def renew_call(self, queue: str, owner: str, jobs: Sequence[LeaseUpdate], lease: float) -> dict[str, list[Any]]:
        """The keys and args of one ``renew`` script call for every job ``owner`` holds on ``queue``."""
        keys = self.keys(queue)
        args: list[Any] = [keys.base, owner, int(lease * 1000)]
        for j in jobs:
            args += [
                j.id,
                "" if j.progress is None else f"{j.progress:.4f}",
                j.note,
                "" if j.timeout is None else f"{j.timeout:g}",
            ]
        return {"keys": [keys.reserved], "args": args}

    async def renew_leases(self, queue: str, owner: str, jobs: Sequence[LeaseUpdate], lease: float) -> RenewReply:
        """Extend the leases of ``jobs`` and carry their progress; returns the leases lost and the
        jobs an operator asked to cancel."""
        if not jobs:
            return RenewReply([], [])
        call = self.renew_call(queue, owner, jobs, lease)
        raw = await self.scripts["renew"](keys=call["keys"], args=call["args"])
        return parse_renew(raw)

    # -- looking -----------------------------------------------------------------------

    async def job_record(self, queue: str, job_id: str) -> dict[str, str]:
        record = await self.client.hgetall(self.keys(queue).job(job_id))
        return {str(k): str(v) for k, v in record.items()}

    async def known_queues(self) -> list[str]:
        return await known_queues(self.client, self.prefix)

    async def live_workers(self, queue: str) -> int:
        """Workers whose heartbeat for ``queue`` has not expired."""
        now_ms = int(time.time() * 1000)
        count: int = await self.client.zcount(self.keys(queue).workers, now_ms, "+inf")
        return count

    async def stats(self, queue: str) -> QueueCounts:
        keys = self.keys(queue)
        now_ms = int(time.time() * 1000)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe_queue_state(pipe, keys, now_ms)
            (ready, oldest, held), delayed, reserved, failed, workers, counters = await pipe.execute()
        age = max(0.0, (now_ms - int(oldest)) / 1000.0) if int(oldest) >= 0 else None
        return QueueCounts(
            queue=queue,
            ready=int(ready),
            held=int(held),
            delayed=delayed,
            reserved=reserved,
            failed=failed,
            oldest_ready_age=age,
            workers=len(workers),
            counters={k: int(v) for k, v in counters.items()},
        )


def parse_renew(raw: Sequence[Any]) -> RenewReply:
    """The reply of the ``renew`` script."""
    return RenewReply([str(i) for i in raw[0]], [str(i) for i in raw[1]])


QUEUE_STATE_READS = 6  # the replies pipe_queue_state adds to a pipeline


def pipe_ready_state(pipe: Any, keys: QueueKeys) -> None:
    """Queue ``ready_state.lua`` on ``pipe``: [ready jobs that could start now, ms the oldest of
    them became ready or -1, ready jobs held by their batch's max_running].  As EVAL (its source,
    about 2 KB), so the pipeline needs no script loaded first."""
    pipe.eval(script_source("ready_state"), 2, keys.lanes, keys.ready, keys.base)


def pipe_queue_state(pipe: Any, keys: QueueKeys, now_ms: int) -> None:
    """Queue the six reads that describe a queue now, in this order: the ready state ([ready jobs
    that could start now, ms the oldest of them became ready or -1, ready jobs held by their
    batch's max_running], ``ready_state.lua``), the delayed, reserved and failed counts, the live
    worker ids, the counters (see :func:`pipe_ready_state`)."""
    pipe_ready_state(pipe, keys)
    pipe.zcard(keys.delayed)
    pipe.zcard(keys.reserved)
    pipe.zcard(keys.failed)
    pipe.zrangebyscore(keys.workers, now_ms, "+inf")
    pipe.hgetall(keys.stats)


async def known_queues(client: aioredis.Redis, prefix: str) -> list[str]:
    """Every queue ever dispatched to or served under ``prefix``, sorted."""
    return sorted(str(q) for q in await client.smembers(GlobalKeys(prefix).queues))
