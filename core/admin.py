"""Operator actions and the pages the console and the CLI read: batches, failed jobs and running jobs.

Every action returns an :class:`ActionResult` with the engine's own numbers, so a console toast
and a CLI line print the same counts. Pages are bounded reads (indexes, never a queue scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

PAGE_SIZE = 50


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
        aliases = {"queue": "queue", "batch": "batch", "exc": "exception", "exception": "exception",
                   "name": "name"}
        for word in expr.split():
            key, sep, value = word.partition(":")
            if sep and key in aliases and value:
                facets[aliases[key]] = value
            else:
                words.append(word)
        return cls(text=" ".join(words) or None, **facets)

    def describe(self) -> str:
        parts = [f"{k}:{v}" for k, v in (("queue", self.queue), ("batch", self.batch),
                                          ("exc", self.exception), ("name", self.name)) if v]
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
class BatchDetail:
    row: BatchRow
    failed_jobs: tuple[FailedRow, ...]


class Admin:
    """The operator's actions and pages over one Redis and key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str = "eh") -> None:
        self.client = client
        self.prefix = prefix

    # batches -----------------------------------------------------------------
    async def batches_page(self, chip: str = "active", offset: int = 0, count: int = PAGE_SIZE) -> list[BatchRow]:
        """chip: "active" (pending/running), "all", "failed" (failed or finished_with_failures), "cancelled".
        Running first, then newest first."""
        raise NotImplementedError

    async def batch_detail(self, batch_id: str) -> BatchDetail | None:
        raise NotImplementedError

    async def cancel_batch_preview(self, batch_id: str) -> tuple[int, int]:
        """(queued jobs a cancel would remove, running jobs it would tell to stop)."""
        raise NotImplementedError

    async def cancel_batch(self, batch_id: str) -> ActionResult:
        raise NotImplementedError

    async def retry_batch(self, batch_id: str) -> ActionResult:
        raise NotImplementedError

    # failed jobs -------------------------------------------------------------
    async def failed_page(self, flt: FailedFilter = FailedFilter(), offset: int = 0,
                          count: int = PAGE_SIZE) -> FailedPage:
        """Newest first."""
        raise NotImplementedError

    async def failed_groups(self, flt: FailedFilter = FailedFilter()) -> list[FailedGroup]:
        raise NotImplementedError

    async def failed_count(self, flt: FailedFilter = FailedFilter()) -> int:
        raise NotImplementedError

    async def failed_detail(self, job_id: str, queue: str | None = None) -> FailedDetail | None:
        raise NotImplementedError

    async def retry_failed(self, job_id: str, queue: str | None = None) -> ActionResult:
        raise NotImplementedError

    async def forget_failed(self, job_id: str, queue: str | None = None) -> ActionResult:
        raise NotImplementedError

    async def retry_matching(self, flt: FailedFilter) -> ActionResult:
        raise NotImplementedError

    async def forget_matching(self, flt: FailedFilter) -> ActionResult:
        raise NotImplementedError

    # running jobs ------------------------------------------------------------
    async def running(self, queue: str | None = None) -> list[RunningRow]:
        """Every leased job, longest-running first."""
        raise NotImplementedError

    async def cancel_job(self, job_id: str, queue: str | None = None) -> ActionResult:
        raise NotImplementedError
