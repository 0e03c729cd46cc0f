"""Where each thing lives in Redis: every key and channel name comes from this module.

Keys of one queue share the hash tag ``{q:NAME}`` so that every Lua script that
touches a queue stays within one Cluster slot.  Job records live under their
queue's tag for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "eh"
DEFAULT_LANE = "_"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue (all in one hash slot)."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{q:{self.queue}}}:"

    @property
    def lanes(self) -> str:
        """LIST of lane names that hold ready jobs, rotated for round-robin pops."""
        return self.base + "lanes"

    def lane(self, lane: str) -> str:
        """LIST of ready job ids of one lane (a batch, a tenant, or the default lane)."""
        return self.base + "lane:" + lane

    @property
    def ready(self) -> str:
        """ZSET job id -> time (ms) it became ready: backlog size and oldest wait."""
        return self.base + "ready"

    @property
    def delayed(self) -> str:
        """ZSET job id -> time (ms) it becomes due."""
        return self.base + "delayed"

    @property
    def reserved(self) -> str:
        """ZSET job id -> lease deadline (ms)."""
        return self.base + "reserved"

    @property
    def failed(self) -> str:
        """ZSET job id -> time (ms) it failed for good."""
        return self.base + "failed"

    def failed_index(self, facet: str, value: str) -> str:
        """ZSET job id -> time (ms) it failed, of the failed jobs whose ``facet`` (``batch``,
        ``name`` or ``exc``: the exception class, or the failure kind when there is none) is
        ``value``; kept by the fail, retry, forget and cancel scripts (names built in _failed.lua
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
    def wake(self) -> str:
        """LIST of wake-up tokens that idle workers block on."""
        return self.base + "wake"

    @property
    def stats(self) -> str:
        """HASH of counters (dispatched, completed, failed, released, retried, lost)."""
        return self.base + "stats"

    @property
    def paused(self) -> str:
        """STRING (JSON: when, by whom) present while the queue is paused (``evalharness pause
        --queue``): dispatches still land, the pop script hands out no job.  The pop script
        derives it from the key base (``<base>paused``), so it holds on every host at once."""
        return self.base + "paused"

    @property
    def workers(self) -> str:
        """ZSET worker id -> heartbeat expiry (ms) of workers serving this queue."""
        return self.base + "workers"

    @property
    def batches(self) -> str:
        """ZSET batch id -> creation time (ms) of the batches on this queue."""
        return self.base + "batches"

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
