"""Where each thing lives in Redis: every key and channel name comes from this module.

Keys of one queue share the hash tag ``{q:NAME}`` so that every Lua script that
touches a queue stays within one Cluster slot.  Job records live under their
queue's tag for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PREFIX = "eh"
DEFAULT_LANE = "_"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue (all in one hash slot).  The keys every job passes through are
    attributes, built once per queue: a job reads them without a call."""

    prefix: str
    queue: str
    # the key base every name below starts with (the queue's hash tag)
    base: str = field(init=False, repr=False, compare=False)
    # LIST of lane names that hold ready jobs, rotated for round-robin pops.
    lanes: str = field(init=False, repr=False, compare=False)
    # ZSET job id -> time (ms) it became ready: backlog size and oldest wait.
    ready: str = field(init=False, repr=False, compare=False)
    # ZSET job id -> time (ms) it becomes due.
    delayed: str = field(init=False, repr=False, compare=False)
    # ZSET job id -> lease deadline (ms).
    reserved: str = field(init=False, repr=False, compare=False)
    # ZSET job id -> time (ms) it failed for good.
    failed: str = field(init=False, repr=False, compare=False)
    # LIST of wake-up tokens that idle workers block on.
    wake: str = field(init=False, repr=False, compare=False)
    # HASH of counters (dispatched, completed, failed, released, retried, lost).
    stats: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = f"{self.prefix}:{{q:{self.queue}}}:"
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "lanes", base + "lanes")
        object.__setattr__(self, "ready", base + "ready")
        object.__setattr__(self, "delayed", base + "delayed")
        object.__setattr__(self, "reserved", base + "reserved")
        object.__setattr__(self, "failed", base + "failed")
        object.__setattr__(self, "wake", base + "wake")
        object.__setattr__(self, "stats", base + "stats")

    def lane(self, lane: str) -> str:
        """LIST of ready job ids of one lane (a batch, a tenant, or the default lane)."""
        return self.base + "lane:" + lane

    def failed_index(self, facet: str, value: str) -> str:
        """ZSET job id -> time (ms) it failed, of the failed jobs whose ``facet`` (``batch``,
        ``name`` or ``exc``: the exception class, or the failure kind when there is none) is
        ``value``; kept by the fail, retry, forget and cancel scripts (names built in _prelude.lua
        too), trimmed to the store's retention."""
        return f"{self.base}failed:{facet}:{value}"

    def failed_values(self, facet: str) -> str:
        """ZSET value -> time (ms) of its latest failure, of every value of ``facet`` with an index
        (for the grouped view: the exception classes seen within the retention)."""
        return f"{self.base}failed_values:{facet}"

    @property
    def failed_indexed(self) -> str:
        """STRING set once the failed-job indexes cover every job in ``failed`` (after the one-time
        rebuild of jobs that failed before the indexes existed)."""
        return self.base + "failed_indexed"

    @property
    def paused(self) -> str:
        """STRING (JSON: when, by whom) present while the queue is paused (``evalharness pause
        --queue``): dispatches still land, the pop script hands out no job.  The pop script
        derives it from the key base (``<base>paused``), so it holds on every host at once."""
        return self.base + "paused"

    def wake_worker(self, owner: str) -> str:
        """LIST one worker waits on beside ``wake``: its own pause or stop ends its wait at once."""
        return self.base + "wake:" + owner

    def hold(self, owner: str) -> str:
        """STRING set (for a minute at most) while worker ``owner`` pauses or stops: the pop it sent
        behind its wait hands out no job then.  The pop script derives it (``<base>hold:<owner>``)."""
        return self.base + "hold:" + owner

    @property
    def workers(self) -> str:
        """ZSET worker id -> heartbeat expiry (ms) of workers serving this queue."""
        return self.base + "workers"

    @property
    def batches(self) -> str:
        """ZSET batch id -> creation time (ms) of the batches on this queue."""
        return self.base + "batches"

    @property
    def batches_active(self) -> str:
        """ZSET batch id -> creation time (ms) of the batches not finished yet, kept by the scripts
        (the batch helpers of ``_prelude.lua``), so the active list never reads finished batches."""
        return self.base + "batches:active"

    @property
    def batches_active_indexed(self) -> str:
        """STRING set once ``batches_active`` covers the batches created before it existed."""
        return self.batches_active + "_indexed"

    @property
    def batches_with_failures(self) -> str:
        """ZSET batch id -> finish time (ms) of the batches that finished with failures, kept by the
        scripts (the batch helpers of ``_prelude.lua``), so a count of them reads no batch record."""
        return self.base + "batches:with_failures"

    @property
    def batches_with_failures_indexed(self) -> str:
        """STRING set once ``batches_with_failures`` covers the batches finished before it existed."""
        return self.batches_with_failures + "_indexed"

    def batch(self, batch_id: str) -> str:
        """HASH: one batch record (name built in ``_prelude.lua`` too)."""
        return self.base + "batch:" + batch_id

    def batch_failed(self, batch_id: str) -> str:
        """SET of the ids of the batch's jobs that failed for good."""
        return self.batch(batch_id) + ":failed"

    def batch_cancelled(self, batch_id: str) -> str:
        """SET of the ids of the batch's jobs a cancel took out of the queue (``batch retry``
        queues them again)."""
        return self.batch(batch_id) + ":cancelled"

    def batch_running(self, batch_id: str) -> str:
        """SET of the ids of the batch's jobs reserved now."""
        return self.batch(batch_id) + ":running"

    def minute(self, minute: int) -> str:
        """HASH: the telemetry counters of one minute (epoch seconds // 60), written by the ack,
        release and fail scripts through the prelude's ``tm_count``."""
        return f"{self.base}m:{minute}"

    def unique(self, merge_key: str) -> str:
        """STRING: the id of the job that holds a merge key (dispatch.lua builds it too)."""
        return self.base + "unique:" + merge_key

    def job(self, job_id: str) -> str:
        """HASH holding one job record."""
        return self.base + "job:" + job_id

    def results(self, sink: str) -> str:
        """HASH field -> JSON outcome of the jobs dispatched with this result sink (an eval run);
        written by the ack and fail scripts, the first write of a field wins."""
        return self.base + "results:" + sink

    def results_done(self, sink: str) -> str:
        """LIST of result fields in the order they were written, for the producer to block on."""
        return self.base + "results:" + sink + ":done"


@dataclass(frozen=True, slots=True)
class GlobalKeys:
    prefix: str

    @property
    def queues(self) -> str:
        """SET of every queue name ever dispatched to or served."""
        return f"{self.prefix}:queues"

    @property
    def queues_idle(self) -> str:
        """HASH queue -> "<ms>:<dispatched>": when the queue was first seen unused (no jobs, no
        batches, no workers) and its dispatched counter then; it is forgotten after a retention."""
        return f"{self.prefix}:queues:idle"

    @property
    def masters(self) -> str:
        """HASH master name -> JSON heartbeat of one ``evalharnessd``."""
        return f"{self.prefix}:masters"

    @property
    def events(self) -> str:
        """STREAM of events (failed jobs, long waits, batch transitions...); the scripts derive it
        from a queue's key base with the prelude's ``events_key``."""
        return f"{self.prefix}:events"

    @property
    def telemetry(self) -> str:
        """Pub/sub channel: the telemetry snapshot, about once a second while someone listens."""
        return f"{self.prefix}:telemetry"

    @property
    def telemetry_history(self) -> str:
        """LIST of per-minute history entries, oldest first, appended by the telemetry leader."""
        return f"{self.prefix}:telemetry:history"

    @property
    def telemetry_history_last(self) -> str:
        """STRING: the last minute written to the history, so no minute is written twice."""
        return self.telemetry_history + ":last"

    @property
    def telemetry_leader(self) -> str:
        """STRING (short TTL): the name of the master that writes the history and long-wait events."""
        return f"{self.prefix}:telemetry:leader"

    @property
    def telemetry_long_wait(self) -> str:
        """HASH queue -> "1" while its oldest job is over its long-wait threshold."""
        return f"{self.prefix}:telemetry:long_wait"

    @property
    def batch_queues(self) -> str:
        """HASH batch id -> queue, for finding a batch from its id alone."""
        return f"{self.prefix}:batch_queues"

    def control(self, master: str) -> str:
        """LIST of JSON commands for one master (pause, continue, terminate, restart, scale)."""
        return f"{self.prefix}:control:{master}"

    @property
    def workers(self) -> str:
        """HASH worker id -> JSON description (host, pid, queues, concurrency, heartbeat)."""
        return f"{self.prefix}:workers"

    def run(self, run_id: str) -> str:
        """HASH: the record of one eval run (dataset, SUT, metrics, options, state; see
        ``core/runs.py``), kept as long as the run's outputs."""
        return f"{self.prefix}:run:{run_id}"

    def run_producer(self, run_id: str) -> str:
        """STRING (with a TTL of a few seconds, renewed while it runs): the host and pid of the
        producer running an eval run now; gone when that producer ended or died (see core/resume.py)."""
        return f"{self.prefix}:run:{run_id}:producer"

    @property
    def runs(self) -> str:
        """ZSET run id -> time (ms) the run started: the index of the run records."""
        return f"{self.prefix}:runs"

    @property
    def cancels(self) -> str:
        """Pub/sub channel: "a cancel was requested" (job or batch id).  Workers holding jobs renew
        their leases at once, and the renewal tells them which jobs to stop; the flag on the job
        record stays the source of truth, so a lost message only delays the stop to the next
        regular renewal."""
        return f"{self.prefix}:cancels"

    def cache_entry(self, digest: str) -> str:
        """STRING (JSON: output, usage, stored_at) of one cached SUT output, by the digest of the
        SUT's fingerprint and the sample's input (see ``core/cache.py``); expires after the
        cache's TTL."""
        return f"{self.prefix}:cache:{digest}"

    @property
    def cache_pattern(self) -> str:
        """SCAN pattern of every cache entry (``cache clear``, ``cache stats``)."""
        return f"{self.prefix}:cache:*"

    def baseline(self, name: str) -> str:
        """STRING (JSON, ``evalharness.baseline.v1``): a promoted baseline, without expiry."""
        return f"{self.prefix}:baseline:{name}"

    @property
    def baselines(self) -> str:
        """ZSET baseline name -> time (ms) it was promoted."""
        return f"{self.prefix}:baselines"


@dataclass(frozen=True, slots=True)
class LimiterKeys:
    """The keys of one named limiter for one scope (a tenant, a provider key...), under their own
    hash tag so that its scripts touch one Cluster slot."""

    prefix: str
    name: str
    scope: str

    @property
    def slots(self) -> str:
        """ZSET: the limiter's grants (rate) or held slots (concurrency, adaptive: member -> lease
        deadline ms).  The same name ``core/limits.py`` has always used."""
        return f"{self.prefix}:limit:{{{self.name}:{self.scope}}}"

    @property
    def adaptive(self) -> str:
        """HASH: an adaptive limiter's state (limit in thousandths of a slot, successes since the
        last change, last decrease, the level last throttled) and its per-minute counters."""
        return self.slots + ":adaptive"


def adaptive_index(prefix: str) -> str:
    """HASH "<name>:<scope>" -> JSON (name, key, bounds) of every adaptive limiter in use, for
    telemetry to find them; entries whose state expired are dropped by the reader."""
    return f"{prefix}:limiters"


@dataclass(frozen=True, slots=True)
class OnlineKeys:
    """The keys of one online monitor (``evalharness.core.online``), all under the hash tag
    ``{online:NAME}`` so the script that records a score stays in one slot (it also appends to
    the prefix-wide ``<prefix>:events`` stream, as the queue scripts do)."""

    prefix: str
    name: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{online:{self.name}}}:"

    @property
    def scores(self) -> str:
        """LIST of score entries (JSON: at, score, passed, reason, metric, model, metadata),
        newest first, capped at the monitor's ``keep``."""
        return self.base + "scores"

    @property
    def window(self) -> str:
        """LIST of the newest ``window`` scores (numbers, newest first): the rolling mean."""
        return self.base + "window"

    @property
    def state(self) -> str:
        """HASH: ``alerting`` (1 while the rolling mean is below the threshold), ``scored``,
        ``passed``, ``failed`` (judge calls that gave no score), ``dropped`` (captures the
        application could not hand over), ``captured``, ``last_at``, ``mean``."""
        return self.base + "state"

    @property
    def trend(self) -> str:
        """HASH ``<YYYY-MM-DD>:n`` / ``:sum`` / ``:passed`` per UTC day, for ``online trend``."""
        return self.base + "trend"

    @property
    def events(self) -> str:
        """The prefix-wide event stream (drift alerts go there)."""
        return GlobalKeys(self.prefix).events


def online_monitors(prefix: str) -> str:
    """SET of the names of the online monitors that recorded a score."""
    return f"{prefix}:online"
