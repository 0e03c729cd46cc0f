"""A stand-in for :class:`evalharness.core.admin.Admin` over fixed, recorded-looking data: the
console's pictures and flows are tested without Redis, with times fixed around ``NOW``.

It implements the same methods with the same results (``ActionResult`` with the counts), and
changes its data as the engine would, so a flow can check what the next page shows.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

from evalharness.core.admin import (
    ActionResult,
    Admin,
    BatchDetail,
    BatchRow,
    BatchSummary,
    FailedDetail,
    FailedFilter,
    FailedGroup,
    FailedPage,
    FailedRow,
    JobDetail,
    MasterRow,
    QueueJobPage,
    QueueJobRow,
    RunningRow,
    SupervisorRow,
)

NOW = 1_700_000_000.0
ALL = FailedFilter()

TRACEBACK = """Traceback (most recent call last):
  File "/srv/evalharness/core/queue.py", line 412, in run_job
    result = await asyncio.wait_for(call(ctx, **payload), timeout=limit)
  File "/usr/lib/python3.11/asyncio/tasks.py", line 479, in wait_for
    return fut.result()
  File "/srv/evals/judge.py", line 88, in judge_sample
    verdict = await client.chat(messages, model=model, max_tokens=512)
  File "/srv/evals/clients.py", line 41, in chat
    response = await self._http.post("/v1/chat/completions", json=body)
  File "/srv/venv/lib/python3.11/site-packages/httpx/_client.py", line 1905, in post
    return await self.request("POST", url, json=json)
  File "/srv/venv/lib/python3.11/site-packages/httpx/_client.py", line 1585, in request
    return await self.send(request)
  File "/srv/venv/lib/python3.11/site-packages/httpx/_transports/default.py", line 394, in handle_async_request
    raise mapped_exc(message) from exc
httpx.ReadTimeout: timed out after 60.0s waiting for the judge model
"""


def _batch(
    i: int,
    name: str,
    state: str,
    total: int,
    succeeded: int,
    failed: int,
    running: int,
    *,
    queue: str = "judge",
    tenant: str | None = "acme",
    age: float = 600.0,
    rate: float | None = None,
    removed: int = 0,
    metrics: dict[str, float] | None = None,
    callbacks: dict[str, str] | None = None,
) -> BatchRow:
    finished = state not in ("pending", "running")
    pending = 0 if finished else total - succeeded - failed - removed
    return BatchRow(
        id=f"b{i:02d}{'7c3e9a1f5d2b8c4e'[:14]}",
        name=name,
        queue=queue,
        tenant=tenant,
        state=state,
        total=total,
        pending=pending,
        running=0 if finished else running,
        succeeded=succeeded,
        failed=failed,
        removed=removed,
        created_at=NOW - age,
        started_at=None if state == "pending" else NOW - age + 2,
        finished_at=NOW - age / 3 if finished and state != "cancelled" else None,
        cancelled_at=NOW - age / 3 if state == "cancelled" else None,
        rate_per_min=rate,
        callbacks=callbacks or {"then": "pending", "catch": "pending", "finally": "pending"},
        metrics=metrics or {},
        run_id=name if metrics else None,
    )


def batches() -> list[BatchRow]:
    return [
        _batch(
            1,
            "run-42",
            "running",
            2_000,
            1_250,
            12,
            38,
            age=1_840,
            rate=41,
            metrics={"accuracy": 0.712, "faithfulness": 0.834, "latency_ok": 0.97},
            callbacks={"then": "pending", "catch": "queued", "finally": "pending"},
        ),
        _batch(
            2,
            "nightly-rag-eval",
            "running",
            12_000,
            3_100,
            40,
            64,
            queue="sut-openai",
            age=5_400,
            rate=212,
            metrics={"recall@5": 0.64},
        ),
        _batch(3, "judge-sweep-b", "pending", 500, 0, 0, 0, tenant=None, age=30),
        _batch(
            4,
            "run-41",
            "finished_with_failures",
            2_000,
            1_988,
            12,
            0,
            age=9_000,
            callbacks={"then": "—", "catch": "ran", "finally": "ran"},
        ),
        _batch(
            5,
            "run-40",
            "succeeded",
            2_000,
            2_000,
            0,
            0,
            age=20_000,
            callbacks={"then": "ran", "catch": "—", "finally": "ran"},
        ),
        _batch(6, "smoke-openai", "cancelled", 300, 120, 3, 0, queue="sut-openai", age=30_000, removed=177),
        _batch(7, "embed-refresh", "failed", 40, 0, 40, 0, queue="embed", tenant="internal", age=40_000),
    ]


def _failed(
    i: int,
    exc: str,
    message: str,
    *,
    queue: str = "judge",
    batch: str | None = "run-42",
    name: str = "judge_sample",
    kind: str = "exception",
    attempts: int = 3,
    age: float = 60.0,
    retried: str | None = None,
    sample: int | None = None,
) -> FailedRow:
    return FailedRow(
        id=f"0193a2c4e8f1{zlib.crc32(bytes([i])):08x}{i * 2654435761 % 2**32:08x}",
        queue=queue,
        name=name,
        batch=batch,
        exception=exc,
        message=message,
        kind=kind,
        attempts=attempts,
        tries=3,
        failed_at=NOW - age,
        retried_by=f"r{i:02x}9a8b7c6d5e4f" if retried else None,
        retry_state=retried,
        runtime=60.02 if kind == "timeout" else 1.84,
        worker=f"gpu-01:{4100 + i}",
        tags=("tenant:acme",) if batch else (),
        sample=None if batch is None else (sample if sample is not None else 100 + i * 7),
    )


def failed_rows() -> list[FailedRow]:
    rows = [
        _failed(1, "TimeoutError", "job exceeded its 60s limit", kind="timeout", age=14),
        _failed(2, "ReadTimeout", "timed out after 60.0s waiting for the judge model", age=40),
        _failed(
            3,
            "RateLimitError",
            "429 Too Many Requests: retry after 20s",
            queue="sut-openai",
            batch="nightly-rag-eval",
            name="call_sut",
            kind="rate_limited",
            age=95,
        ),
        _failed(4, "TimeoutError", "job exceeded its 60s limit", kind="timeout", age=130, retried="succeeded"),
        _failed(5, "ValueError", "judge returned no verdict: '[[unparseable]]'", age=200),
        _failed(6, "KeyError", "'expected_answer'", name="score_sample", age=410, attempts=1),
        _failed(
            7,
            "RateLimitError",
            "429 Too Many Requests",
            queue="sut-openai",
            batch="nightly-rag-eval",
            name="call_sut",
            kind="rate_limited",
            age=600,
            retried="queued",
        ),
        _failed(
            8,
            "ConnectionError",
            "connection reset by peer",
            queue="embed",
            batch="embed-refresh",
            name="embed_doc",
            age=3_700,
        ),
        _failed(9, "TimeoutError", "job exceeded its 60s limit", kind="timeout", age=7_200),
        _failed(
            10,
            "OSError",
            "[Errno 28] No space left on device",
            queue="reports",
            batch=None,
            name="write_report",
            age=86_000,
            attempts=1,
        ),
    ]
    return rows


def running_rows() -> list[RunningRow]:
    def run(
        i: int,
        name: str,
        queue: str,
        batch: str | None,
        ran: float,
        *,
        timeout: float | None = 60.0,
        renewed: float = 2.0,
        lease: float = 30.0,
        progress: float | None = None,
        note: str | None = None,
        attempt: int = 1,
        releases: int = 0,
        cancel: bool = False,
    ) -> RunningRow:
        return RunningRow(
            id=f"{i:02x}a1b2c3d4e5f607",
            name=name,
            queue=queue,
            batch=batch,
            worker=f"gpu-0{1 + i % 2}:{4200 + i}",
            started_at=NOW - ran,
            attempt=attempt,
            tries=3,
            timeout=timeout,
            lease_deadline=NOW - renewed + lease,
            renewed_at=NOW - renewed,
            lease_seconds=lease,
            progress=progress,
            progress_note=note,
            sample=None if batch is None else 300 + i,
            releases=releases,
            cancel_requested=cancel,
        )

    return [
        run(1, "judge_sample", "judge", "run-42", 3.2, progress=0.4, note="tokens 812"),
        run(2, "judge_sample", "judge", "run-42", 12.5, progress=0.9, note="tokens 1,870"),
        run(3, "judge_sample", "judge", "run-42", 54.0, attempt=2),
        run(4, "call_sut", "sut-openai", "nightly-rag-eval", 8.1, timeout=120.0, releases=3),
        run(5, "call_sut", "sut-openai", "nightly-rag-eval", 95.0, timeout=120.0, renewed=22.0),
        run(6, "embed_doc", "embed", None, 1.1, timeout=None),
        run(7, "judge_sample", "judge", "run-42", 31.0, cancel=True),
    ]


def masters() -> list[MasterRow]:
    """Two live masters (one supervisor with two pools, one paused) and one silent for 40 s."""
    judge = SupervisorRow(
        "judge-pool",
        "running",
        ("judge", "sut-openai-gpt-4o-mini"),
        28,
        26,
        {"judge": 16, "sut-openai-gpt-4o-mini": 12},
        {"judge": 16, "sut-openai-gpt-4o-mini": 12},
        {},
        "auto",
        2,
        40,
        memory_mb=5_210.0,
        jobs_done=81_220,
        last_balance={"pool": "judge", "from": 14, "to": 16, "at": NOW - 14},
    )
    evals = SupervisorRow(
        "evals-pool",
        "paused",
        ("evals",),
        4,
        0,
        {"evals": 4},
        {"evals": 4},
        {},
        "off",
        4,
        4,
        memory_mb=610.0,
        jobs_done=22_004,
    )
    embed = SupervisorRow(
        "embed-pool",
        "running",
        ("embeddings",),
        6,
        6,
        {"embeddings": 6},
        {"embeddings": 6},
        {},
        "auto",
        1,
        8,
        memory_mb=1_480.0,
        jobs_done=9_600,
        last_balance={"pool": "embeddings", "from": 8, "to": 6, "at": NOW - 300},
    )
    sut = SupervisorRow(
        "sut-pool",
        "running",
        ("sut-anthropic",),
        10,
        0,
        {"sut-anthropic": 10},
        {"sut-anthropic": 10},
        {},
        "auto",
        1,
        12,
    )
    return [
        MasterRow(
            "gpu-01-a3f", "gpu-01", 4121, "running", NOW - 1, 15.0, "production", NOW - 90_000, 90.0, (judge, evals)
        ),
        MasterRow("gpu-02-7b1", "gpu-02", 3310, "running", NOW - 0.4, 15.0, "production", NOW - 7_260, 90.0, (embed,)),
        MasterRow("gpu-03-c09", "gpu-03", 2988, "lost", NOW - 40, 15.0, "production", NOW - 20_000, 90.0, (sut,)),
    ]


def events() -> list[dict[str, Any]]:
    """The newest events, newest first, as the events stream holds them."""
    rows = [
        ("job_failed", "judge", "judge_sample 8f2c1d… failed: TimeoutError: job exceeded its 60s limit", 14),
        ("long_wait", "sut-anthropic", "oldest job on sut-anthropic has waited 1h 03m", 40),
        (
            "queue_paused",
            "sut-anthropic",
            "paused queue sut-anthropic: 1,890 ready jobs stay queued; 38 running finish",
            95,
        ),
        ("scale", "judge", "supervisor judge-pool: pool judge 14 -> 16 process(es)", 130),
        ("job_retried", "sut-openai-gpt-4o-mini", "call_sut 3b9e0a… retried after 429 Too Many Requests", 200),
        ("batch_finished", "judge", "run-41 finished with 12 failures", 410),
        ("worker_lost", "sut-anthropic", "gpu-03-c09: no heartbeat for 40s", 600),
        ("batch_created", "judge", "run-42: 2,000 jobs", 1_840),
    ]
    out = []
    for i, (kind, queue, message, age) in enumerate(rows * 3):
        at = NOW - age - (i // len(rows)) * 2_000
        out.append(
            {
                "id": f"{int(at * 1000)}-{i}",
                "kind": kind,
                "queue": queue,
                "subject": queue,
                "message": message,
                "at": f"{at:.3f}",
            }
        )
    return out


def _busy_queues() -> list[dict[str, Any]]:
    import json
    from pathlib import Path

    data: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "telemetry-busy.json").read_text())
    queues: list[dict[str, Any]] = data["queues"]
    return queues


QUEUES = tuple(q["name"] for q in _busy_queues())


def day_history(minutes: int = 1_440, *, end: float = NOW) -> list[dict[str, Any]]:
    """A day of per-minute history entries for the busy snapshot's queues, ending the minute
    before ``end`` near the snapshot's values: slow waves over the day, a little jitter."""
    import math

    last = int(end // 60) - 1
    busy = _busy_queues()
    out = []
    for m in range(last - minutes + 1, last + 1):
        t = (m - last) / 60.0  # hours before now (negative)
        queues: dict[str, dict[str, Any]] = {}
        for n, q in enumerate(busy):
            f = 0.7 + 0.3 * math.cos(t / (2.0 + n)) + 0.04 * ((m * (n + 3)) % 7 - 3) / 3

            def scaled(v: Any, f: float = f) -> Any:
                return None if v is None else (int(v * f) if isinstance(v, int) else round(v * f, 2))

            runtime = q.get("runtime") or {}
            queues[q["name"]] = {
                "ready": scaled(q["ready"]),
                "delayed": scaled(q.get("delayed")),
                "reserved": q["reserved"],
                "oldest_wait": scaled(q["oldest_wait"]),
                "est_clear": scaled(q["est_clear"]),
                "processes": q["processes"],
                "completed": int((q.get("completed_per_minute") or 0) * f),
                "failed": int(round((q.get("failed_per_minute") or 0) * f)),
                "rate_limited": int(3 * (q.get("failed_per_minute") or 0) * f),
                "runtime_p50": scaled(runtime.get("p50")),
                "runtime_p95": scaled(runtime.get("p95")),
            }
        out.append(
            {
                "schema": "evalharness.telemetry.history.v1",
                "at": (m + 1) * 60.0,
                "minute": m,
                "jobs_per_minute": sum(q["completed"] + q["failed"] for q in queues.values()),
                "queues": queues,
            }
        )
    return out


def event_rows(count: int = 40) -> list[dict[str, str]]:
    """The stream's newest events, oldest first, one every 15 s up to ``NOW``."""
    failed = failed_rows()
    kinds: list[dict[str, str]] = []
    for i in range(count):
        at = NOW - (count - 1 - i) * 15
        job = failed[i % len(failed)]
        pick = i % 8
        if pick in (0, 3):
            e = {
                "kind": "job_failed",
                "queue": job.queue,
                "job": job.name,
                "id": job.id,
                "message": f"{job.exception}: {job.message}",
                "worker": job.worker or "",
            }
        elif pick == 1:
            e = {
                "kind": "job_timed_out",
                "queue": "judge",
                "job": "judge_sample",
                "id": failed[0].id,
                "message": "TimeoutError: job exceeded its 60s limit",
                "worker": "gpu-01:4101",
            }
        elif pick == 2:
            b = batches()[i % 3]
            e = {
                "kind": "batch_created",
                "batch": b.id,
                "name": b.name,
                "queue": b.queue,
                "message": f"{b.total:,} jobs",
            }
        elif pick == 4:
            e = {
                "kind": "long_wait",
                "queue": "sut-anthropic",
                "message": "oldest job on sut-anthropic has waited 1h 03m",
            }
        elif pick == 5:
            b = batches()[3]
            e = {
                "kind": "batch_finished",
                "batch": b.id,
                "name": b.name,
                "queue": b.queue,
                "state": b.state,
                "message": "finished with 12 failed",
            }
        elif pick == 6:
            e = {
                "kind": "worker_crash_loop",
                "supervisor": "gpu-01-judge",
                "queue": "judge",
                "message": "a worker of gpu-01-judge crashed 3 times in a row (last exit code 1)",
            }
        else:
            e = {
                "kind": "failed_retried",
                "subject": failed[4].id,
                "id": failed[4].id,
                "queue": "judge",
                "message": f"Retried {failed[4].id[:8]}: queued again",
            }
        kinds.append({"at": f"{at:.3f}", **e, "event_id": f"{int(at * 1000)}-{i}"})
    return kinds


def traceback_for(row: FailedRow) -> str:
    return (
        TRACEBACK
        if row.kind != "rate_limited"
        else TRACEBACK.replace(
            "httpx.ReadTimeout: timed out after 60.0s waiting for the judge model",
            f"evalharness.core.errors.{row.exception}: {row.message}",
        )
    )


class FakeAdmin(Admin):
    """The engine's operator interface over fixed rows; ``down`` makes every call fail as a lost
    Redis does."""

    def __init__(
        self,
        *,
        batches_: list[BatchRow] | None = None,
        failed: list[FailedRow] | None = None,
        running: list[RunningRow] | None = None,
        huge: bool = False,
    ) -> None:
        # No Redis behind it: the engine's own setup (scripts, queue) is not run.
        self.client = None  # type: ignore[assignment]
        self.prefix = "eh"
        self.batch_rows = batches() if batches_ is None else batches_
        self.failed_rows = failed_rows() if failed is None else failed
        self.running_rows = running_rows() if running is None else running
        self.huge = huge
        self.master_rows = masters()
        self.commands: list[dict[str, Any]] = []
        """Every master command sent, as the control list would hold it."""
        self.paused_queues: set[str] = set()
        self.down = False
        self.event_rows = event_rows()
        self.history_rows = day_history()
        self.calls: list[tuple[str, Any]] = []

    def _check(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if self.down:
            raise ConnectionError("Error 111 connecting to redis.internal:6379. Connection refused.")

    # batches
    async def batches_page(self, chip: str = "active", offset: int = 0, count: int = 50) -> list[BatchRow]:
        self._check("batches_page", chip)
        states = {
            "active": {"pending", "running"},
            "failed": {"failed", "finished_with_failures"},
            "cancelled": {"cancelled"},
        }.get(chip)
        rows = [b for b in self.batch_rows if states is None or b.state in states]
        rows.sort(key=lambda b: (b.state != "running", -(b.created_at or 0)))
        return rows[offset : offset + count]

    async def batch_summary(self, count: int = 50, offset: int = 0) -> BatchSummary:
        self._check("batch_summary", count)
        active = [b for b in self.batch_rows if b.state in ("pending", "running")]
        active.sort(key=lambda b: (b.state != "running", -(b.created_at or 0)))
        return BatchSummary(
            running=sum(1 for b in active if b.state == "running"),
            pending=sum(1 for b in active if b.state == "pending"),
            finished_with_failures=sum(1 for b in self.batch_rows if b.state == "finished_with_failures"),
            rows=tuple(active[offset:count]),
        )

    def _find_batch(self, batch_id: str) -> BatchRow | None:
        return next((b for b in self.batch_rows if batch_id in (b.id, b.name)), None)

    async def batch_detail(self, batch_id: str) -> BatchDetail | None:
        self._check("batch_detail", batch_id)
        row = self._find_batch(batch_id)
        if row is None:
            return None
        return BatchDetail(row, tuple(f for f in self.failed_rows if f.batch == row.name))

    async def cancel_batch_preview(self, batch_id: str) -> tuple[int, int]:
        self._check("cancel_batch_preview", batch_id)
        row = self._find_batch(batch_id)
        if row is None or row.state not in ("pending", "running"):
            return (0, 0)
        return (row.pending - row.running, row.running)

    async def cancel_batch(self, batch_id: str) -> ActionResult:
        self._check("cancel_batch", batch_id)
        row = self._find_batch(batch_id)
        if row is None:
            return ActionResult("cancel_batch", batch_id, False, f"No batch {batch_id}")
        if row.state not in ("pending", "running"):
            return ActionResult(
                "cancel_batch", batch_id, False, f"{row.name} already finished ({row.state}): nothing changed"
            )
        removed, stop = row.pending - row.running, row.running
        self.batch_rows[self.batch_rows.index(row)] = replace(
            row, state="cancelled", removed=row.removed + removed, pending=row.running, cancelled_at=NOW
        )
        return ActionResult(
            "cancel_batch",
            row.id,
            True,
            f"Cancelled {row.name}: removed {removed:,} queued jobs, {stop:,} running told to stop",
            removed=removed,
            told_to_stop=stop,
        )

    async def retry_batch(self, batch_id: str) -> ActionResult:
        self._check("retry_batch", batch_id)
        row = self._find_batch(batch_id)
        if row is None:
            return ActionResult("retry_batch", batch_id, False, f"No batch {batch_id}")
        n = row.failed
        self.failed_rows = [f for f in self.failed_rows if f.batch != row.name]
        self.batch_rows[self.batch_rows.index(row)] = replace(row, failed=0, pending=row.pending + n, state="running")
        return ActionResult("retry_batch", row.id, True, f"Retried {n:,} failed jobs of {row.name}", retried=n)

    # failed
    def _matching(self, flt: FailedFilter) -> list[FailedRow]:
        def ok(r: FailedRow) -> bool:
            if flt.queue and r.queue != flt.queue or flt.batch and r.batch != flt.batch:
                return False
            if flt.exception and r.exception != flt.exception or flt.name and r.name != flt.name:
                return False
            return not flt.text or flt.text.lower() in f"{r.id} {r.name} {r.message}".lower()

        return sorted((r for r in self.failed_rows if ok(r)), key=lambda r: -(r.failed_at or 0))

    async def failed_page(self, flt: FailedFilter = ALL, offset: int = 0, count: int = 50) -> FailedPage:
        self._check("failed_page", flt)
        rows = self._matching(flt)
        return FailedPage(len(rows), offset, tuple(rows[offset : offset + count]))

    async def failed_groups(self, flt: FailedFilter = ALL) -> list[FailedGroup]:
        self._check("failed_groups", flt)
        counts: dict[str, int] = {}
        for r in self._matching(flt):
            counts[r.exception] = counts.get(r.exception, 0) + 1
        return [FailedGroup(e, n) for e, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    async def failed_count(self, flt: FailedFilter = ALL) -> int:
        self._check("failed_count", flt)
        return len(self._matching(flt))

    async def failed_detail(self, job_id: str, queue: str | None = None) -> FailedDetail | None:
        self._check("failed_detail", job_id)
        row = next((r for r in self.failed_rows if r.id == job_id), None)
        if row is None:
            return None
        traceback = traceback_for(row)
        payload: Any = {
            "sample": row.sample,
            "model": "judge-large",
            "api_key": "***",
            "messages": [{"role": "user", "content": "Is the answer supported by the context?"}],
        }
        if self.huge:
            traceback = traceback + "".join(f"  frame {i}: {'x' * 60}\n" for i in range(16_000))
            payload["context"] = "lorem ipsum " * 90_000
        return FailedDetail(
            row=row,
            traceback=traceback,
            payload=payload,
            checkpoint={"tokens_streamed": 812, "partial_score": 0.5} if row.kind == "timeout" else None,
            summary={
                "id": row.id,
                "queue": row.queue,
                "batch": row.batch,
                "tries": f"{row.attempts}/{row.tries}",
                "retries": 1 if row.retried_by else 0,
                "pushed": "22:10:01",
                "started": "22:12:14",
                "failed": "22:13:06",
                "runtime": f"{row.runtime}s",
                "worker": row.worker,
                "lease renewals": 6,
                "timeout": "60s (SIGALRM, then killed after 5s)" if row.kind == "timeout" else "—",
            },
            retries=((row.retry_state or "queued", row.retried_by, NOW - 30),) if row.retried_by else (),
        )

    async def retry_failed(self, job_id: str, queue: str | None = None) -> ActionResult:
        self._check("retry_failed", job_id)
        row = next((r for r in self.failed_rows if r.id == job_id), None)
        if row is None:
            return ActionResult(
                "retry_failed", job_id, False, f"Job {job_id[:8]} is no longer in the failed store", skipped=1
            )
        if row.retried_by:
            return ActionResult("retry_failed", job_id, False, f"Job {job_id[:8]} was already retried", skipped=1)
        self.failed_rows[self.failed_rows.index(row)] = replace(
            row, retried_by="new" + job_id[:6], retry_state="queued"
        )
        return ActionResult(
            "retry_failed", job_id, True, f"Retried {row.name} {job_id[:8]}", retried=1, new_ids=("new" + job_id[:6],)
        )

    async def forget_failed(self, job_id: str, queue: str | None = None) -> ActionResult:
        self._check("forget_failed", job_id)
        before = len(self.failed_rows)
        self.failed_rows = [r for r in self.failed_rows if r.id != job_id]
        if len(self.failed_rows) == before:
            return ActionResult("forget_failed", job_id, False, f"Job {job_id[:8]} was already forgotten", skipped=1)
        return ActionResult("forget_failed", job_id, True, f"Forgot {job_id[:8]}", forgotten=1)

    async def retry_matching(self, flt: FailedFilter) -> ActionResult:
        self._check("retry_matching", flt)
        todo = [r for r in self._matching(flt) if not r.retried_by]
        skipped = len(self._matching(flt)) - len(todo)
        for r in todo:
            self.failed_rows[self.failed_rows.index(r)] = replace(r, retried_by="n" + r.id[:6], retry_state="queued")
        return ActionResult(
            "retry_matching",
            flt.describe(),
            True,
            f"Retried {len(todo):,} failed jobs matching {flt.describe() or 'everything'}"
            + (f" ({skipped:,} already retried)" if skipped else ""),
            retried=len(todo),
            skipped=skipped,
        )

    async def forget_matching(self, flt: FailedFilter) -> ActionResult:
        self._check("forget_matching", flt)
        gone = {r.id for r in self._matching(flt)}
        self.failed_rows = [r for r in self.failed_rows if r.id not in gone]
        return ActionResult(
            "forget_matching",
            flt.describe(),
            True,
            f"Forgot {len(gone):,} failed jobs matching {flt.describe() or 'everything'}",
            forgotten=len(gone),
        )

    # running
    async def running(self, queue: str | None = None) -> list[RunningRow]:
        self._check("running", queue)
        rows = [r for r in self.running_rows if queue is None or r.queue == queue]
        return sorted(rows, key=lambda r: r.started_at or 0)

    async def cancel_job(self, job_id: str, queue: str | None = None) -> ActionResult:
        self._check("cancel_job", job_id)
        row = next((r for r in self.running_rows if r.id == job_id), None)
        if row is None:
            return ActionResult("cancel_job", job_id, False, f"Job {job_id[:8]} is no longer running", skipped=1)
        self.running_rows[self.running_rows.index(row)] = replace(row, cancel_requested=True)
        return ActionResult("cancel_job", job_id, True, f"Told {row.name} {job_id[:8]} to stop", told_to_stop=1)

    # one queue
    async def queue_jobs(self, queue: str, tab: str, offset: int = 0, count: int = 50) -> QueueJobPage:
        self._check("queue_jobs", (queue, tab, offset))
        total = {"ready": 132, "delayed": 3, "running": 7, "failed": 10}[tab]
        rows = []
        for i in range(offset, min(total, offset + count)):
            at = {
                "ready": NOW - 185 + i,
                "delayed": NOW + 30 + i * 60,
                "running": NOW + 20 - i,
                "failed": NOW - 600 - i * 30,
            }[tab]
            rows.append(
                QueueJobRow(
                    f"9f2c1d7e5a3b{tab[0]}{i:03d}",
                    "judge_sample",
                    "run-42" if i % 3 else "nightly-rag-eval",
                    at,
                    1 + i % 3,
                    f"gpu-01:{4200 + i}" if tab == "running" else None,
                )
            )
        return QueueJobPage(queue, tab, offset, total, tuple(rows))

    async def job_detail(self, queue: str, job_id: str) -> JobDetail | None:
        self._check("job_detail", job_id)
        payload = (
            '{\n  "sample": {"question": "What is the capital of France?", "expected": "Paris"},\n'
            '  "model": "judge-large"\n}'
        )
        return JobDetail(
            job_id,
            queue,
            "judge_sample",
            (
                ("id", job_id),
                ("queue", queue),
                ("batch", "run-42"),
                ("attempts", "1"),
                ("job tries", "3"),
                ("job timeout", "60"),
            ),
            payload,
        )

    async def pause_queue(self, queue: str, by: str = "console") -> ActionResult:
        self._check("pause_queue", queue)
        self.paused_queues.add(queue)
        return ActionResult(
            "pause_queue", queue, True, f"paused queue {queue}: 12,480 ready jobs stay queued; 64 running finish"
        )

    async def continue_queue(self, queue: str, by: str = "console") -> ActionResult:
        self._check("continue_queue", queue)
        self.paused_queues.discard(queue)
        return ActionResult("continue_queue", queue, True, f"continued queue {queue}: 1,890 ready jobs can start")

    async def clear_queue(self, queue: str) -> ActionResult:
        self._check("clear_queue", queue)
        return ActionResult(
            "clear_queue", queue, True, f"cleared queue {queue}: removed 12,480 ready jobs", removed=12_480
        )

    async def recent_events(self, count: int = 20) -> list[dict[str, Any]]:
        self._check("recent_events", count)
        return events()[:count]

    # masters
    async def masters(self, now: float | None = None) -> list[MasterRow]:
        self._check("masters")
        return list(self.master_rows)

    async def master_command(
        self, master: str, action: str, supervisor: str | None = None, **extra: Any
    ) -> ActionResult:
        self._check("master_command", (master, action, supervisor))
        self.commands.append({"master": master, "action": action, "supervisor": supervisor, **extra})
        if action == "scale":
            n = extra.get("processes")
            rows = []
            for m in self.master_rows:
                sups = []
                for s in m.supervisors:
                    if m.name == master and s.name == supervisor:
                        overrides = dict(s.overrides)
                        if n is None:
                            overrides.pop(extra["queue"], None)
                        else:
                            overrides[extra["queue"]] = n
                        s = replace(s, overrides=overrides)
                    sups.append(s)
                rows.append(replace(m, supervisors=tuple(sups)))
            self.master_rows = rows
            text = (
                f"Scaled {supervisor} {extra.get('queue')} on {master} to {n} processes (override)"
                if n is not None
                else f"Dropped the override of {supervisor} {extra.get('queue')} on {master}: balancing again"
            )
            return ActionResult("scale", f"{master}/{supervisor}", True, text)
        return ActionResult(action, master, True, f"{action}: sent to {master}")

    async def scale(self, master: str, supervisor: str, queue: str, processes: int | None) -> ActionResult:
        return await self.master_command(master, "scale", supervisor, queue=queue, processes=processes)

    # the console's other reads
    async def batch(self, batch_id: str) -> BatchRow | None:
        self._check("batch", batch_id)
        return self._find_batch(batch_id)

    async def events(self, after: str | None = None, count: int = 1_000) -> list[dict[str, Any]]:
        self._check("events", after)
        rows = self.event_rows
        if after is not None:
            ids = [r["event_id"] for r in rows]
            rows = rows[ids.index(after) + 1 :] if after in ids else []
        return [dict(r) for r in rows[-count:]] if after is None else [dict(r) for r in rows[:count]]

    async def history(self, minutes: int = 1_440) -> list[dict[str, Any]]:
        self._check("history", minutes)
        return self.history_rows[-minutes:]

    async def lookup(self, text: str, limit: int = 20) -> list[Any]:
        from evalharness.core.lookup import Found

        self._check("lookup", text)
        needle = text.lower()
        found: list[Found] = [Found("queue", q, q) for q in QUEUES if needle in q]
        found += [
            Found("batch", b.id, b.name or b.id, b.queue)
            for b in self.batch_rows
            if b.id.startswith(text) or needle in (b.name or "").lower()
        ]
        found += [Found("job", r.id, r.id, r.queue, "failed") for r in self.failed_rows if r.id.startswith(text)]
        found += [Found("job", r.id, r.id, r.queue, "running") for r in self.running_rows if r.id.startswith(text)]
        return found[:limit]
