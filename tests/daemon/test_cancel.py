"""Cancelling running jobs and batches on a real Redis, with workers run in-process (a process of
their own only where the worker's replacement is the behaviour): an async job
stops at its worker's next lease renewal and is recorded cancelled with its checkpoint; a
blocking one when it returns, or by replacing the worker after the cancel grace; a batch cancel
stops the SUT being called within a renewal interval.  Progress reported by a job shows in
`evalharness jobs running --json`."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from support.inproc import Workers
from support.procs import Processes, live_workers, until

from evalharness.core.admin import Admin, FailedFilter
from evalharness.core.batches import Batches
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import JobRequest, Queue
from evalharness.daemon.worker import Worker

K = QueueKeys("eh", "t")
LEASE = 3.0  # renewals every second


def start_worker(procs: Processes, concurrency: int = 10, cancel_grace: float = 10.0, lease: float = LEASE) -> Any:
    return procs.start(
        "-m",
        "evalharness.cli",
        "--log-level",
        "info",
        "work",
        "--queue",
        "t",
        "--import",
        "support.testjobs",
        "--concurrency",
        str(concurrency),
        "--lease",
        str(lease),
        "--cancel-grace",
        str(cancel_grace),
    )


async def ready(procs: Processes, n: int = 1) -> None:
    async def check() -> bool:
        return live_workers(procs.env["EVALHARNESS_REDIS_URL"], "t") >= n

    await until(check, what=f"{n} worker(s)")


def calls(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    return [(line.split()[0], float(line.split()[1])) for line in path.read_text().splitlines() if line.count(" ") == 1]


def in_process(pool: Workers, concurrency: int = 10, cancel_grace: float = 10.0, lease: float = LEASE) -> Worker:
    (worker,) = pool.start("t", concurrency=concurrency, lease=lease, cancel_grace=cancel_grace)
    return worker


async def running_json(procs: Processes) -> list[dict[str, Any]]:
    out = await procs.acli_here("jobs", "running", "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.slow
async def test_cancel_a_running_async_job_records_it_cancelled_with_its_checkpoint(
    procs: Processes, pool: Workers, aclient: Any, tmp_path: Path
) -> None:
    worker = in_process(pool)
    path = tmp_path / "calls.txt"
    job_id = await Queue(aclient).dispatch("t.cancellable", {"calls": str(path)}, queue="t")

    async def progress_shown() -> list[dict[str, Any]]:
        rows = [r for r in await running_json(procs) if r["id"] == job_id and r["progress"]]
        return rows

    (row,) = await until(progress_shown, what="progress in jobs running --json")
    assert row["name"] == "t.cancellable" and row["queue"] == "t" and row["attempt"] == 1
    assert row["progress_note"].startswith("step ") and row["worker"].endswith(f":{os.getpid()}")
    assert row["lease_seconds"] == LEASE and row["timeout"] == 120 and row["lease_deadline"] > row["renewed_at"]
    assert row["cancel_grace"] == 10.0 and row["renewals"] >= 1

    table = await procs.acli_here("jobs", "running", env={"COLUMNS": "200"})
    assert table.returncode == 0 and "t.cancellable" in table.stdout and "step " in table.stdout
    # at 80 columns the id and the worker stay whole and no line is wider than the terminal
    narrow = await procs.acli_here("jobs", "running", env={"COLUMNS": "80"})
    assert narrow.returncode == 0 and job_id in narrow.stdout and f":{os.getpid()}" in narrow.stdout
    assert "…" not in narrow.stdout and max(len(line) for line in narrow.stdout.splitlines()) <= 80
    out = await procs.acli_here("job", "cancel", job_id)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Cancelled {job_id}: its worker ") and "told to stop" in out.stdout
    told_at = time.time()

    admin = Admin(aclient)

    async def recorded() -> Any:
        return await admin.failed_detail(job_id)

    detail = await until(recorded, what="the cancelled job in the failed store")
    assert detail.row.kind == "cancelled" and detail.row.exception == "JobCancelled"
    assert detail.checkpoint and detail.checkpoint["step"] >= 1
    # the SUT was last called within a renewal interval of the cancel, and never again
    last = max(t for _, t in calls(path))
    assert last - told_at < LEASE / 3 + 1.5
    n = len(calls(path))
    await asyncio.sleep(0.5)
    assert len(calls(path)) == n
    assert await aclient.zcard(K.reserved) == 0 and await aclient.zcard(K.ready) == 0  # not retried
    assert not worker.stop_event.is_set()  # the worker goes on
    assert (await procs.acli_here("jobs", "running")).stdout.strip() == "no running jobs"
    # acting again: nothing changes, exit status 1
    again = await procs.acli_here("job", "cancel", job_id)
    assert again.returncode == 1 and "already finished" in again.stdout
    unknown = await procs.acli_here("job", "cancel", "no-such-job")
    assert unknown.returncode == 1 and "No job no-such-job" in unknown.stdout


@pytest.mark.slow
async def test_a_cancelled_blocking_job_that_returns_in_the_grace_is_recorded_cancelled(
    pool: Workers, aclient: Any
) -> None:
    worker = in_process(pool, cancel_grace=30)
    job_id = await Queue(aclient).dispatch("t.sync_cancellable", {"seconds": 3}, queue="t")
    await until(lambda: aclient.zscore(K.reserved, job_id), what="the job to run")
    assert (await Admin(aclient).cancel_job(job_id)).told_to_stop == 1

    async def failed() -> Any:
        return await aclient.hget(K.job(job_id), "failure")

    failure = json.loads(await until(failed, what="the job recorded"))
    assert failure["kind"] == "cancelled" and failure["exception_type"] == "JobCancelled"
    assert json.loads(await aclient.hget(K.job(job_id), "checkpoint")) == {"started": True}
    assert not worker.stop_event.is_set() and worker.exit_code == 0


@pytest.mark.slow
async def test_a_cancelled_blocking_job_past_the_grace_gets_its_worker_replaced(procs: Processes, aclient: Any) -> None:
    worker = start_worker(procs, cancel_grace=1)
    await ready(procs)
    q = Queue(aclient)
    job_id = await q.dispatch("t.sync_cancellable", {"seconds": 60}, queue="t")
    other = await q.dispatch("t.sleep", {"seconds": 60}, queue="t", timeout=120)
    await until(lambda: _both_running(aclient, job_id, other), what="both jobs to run")
    result = await Admin(aclient).cancel_job(job_id)
    assert result.ok and result.told_to_stop == 1
    code = await asyncio.get_running_loop().run_in_executor(None, lambda: worker.wait(timeout=30))
    assert code == 70
    failure = json.loads(await aclient.hget(K.job(job_id), "failure"))
    assert failure["kind"] == "cancelled" and "worker process was replaced" in failure["message"]
    # its other job went back to the queue without using a try
    assert await aclient.zscore(K.ready, other) is not None
    assert int(await aclient.hget(K.job(other), "attempts")) == 0


async def subscribed(aclient: Any, worker: Worker) -> None:
    """Wait until the worker listens on the cancel channel (a process's start-up used to cover it)."""

    async def listening() -> bool:
        counts = dict(await aclient.pubsub_numsub(worker.queue.globals.cancels))
        return int(counts.get(worker.queue.globals.cancels, 0)) >= 1

    await until(listening, what="the worker on the cancel channel")


async def _both_running(aclient: Any, *ids: str) -> bool:
    return all([await aclient.zscore(K.reserved, i) is not None for i in ids])


@pytest.mark.slow
async def test_batch_cancel_stops_the_sut_within_a_renewal_interval_and_counts_match(
    procs: Processes, pool: Workers, aclient: Any, tmp_path: Path
) -> None:
    in_process(pool, concurrency=5)
    path = tmp_path / "calls.txt"
    batches = Batches(aclient)
    bid = await batches.create(
        "run",
        [JobRequest("t.cancellable", {"calls": str(path), "n": i}) for i in range(30)],
        queue="t",
        batch_id="run-42",
        allow_failures=False,
    )

    async def five_running() -> bool:
        return await aclient.zcard(K.reserved) == 5 and len({i for i, _ in calls(path)}) == 5

    await until(five_running, what="five jobs calling the SUT")
    admin = Admin(aclient)
    assert await admin.cancel_batch_preview(bid) == (25, 5)
    out = await procs.acli_here("batch", "cancel", bid)
    told_at = time.time()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"Cancelled {bid}: removed 25 queued jobs, 5 running told to stop"

    async def finished() -> Any:
        info = await batches.info(bid)
        return info if info is not None and info.pending == 0 else None

    info = await until(finished, what="the batch's running jobs to stop")
    assert info.state == "cancelled" and info.failed == 5 and info.total == 30
    last = max(t for _, t in calls(path))
    assert last - told_at < LEASE / 3 + 1.5
    n = len(calls(path))
    await asyncio.sleep(0.5)
    assert len(calls(path)) == n
    page = await admin.failed_page(FailedFilter(batch=bid))
    assert page.total == 5 and {r.kind for r in page.rows} == {"cancelled"}
    (row,) = await admin.batches_page("cancelled")
    assert (row.running, row.removed, row.failed, row.pending) == (0, 25, 5, 0)
    kinds = [e[1]["kind"] for e in await aclient.xrange("eh:events")]
    assert "batch_cancelled" in kinds and kinds.count("job_cancelled") == 5
    again = await procs.acli_here("batch", "cancel", bid)
    assert again.returncode == 0 and "already cancelled" in again.stdout


@pytest.mark.slow
async def test_a_cancel_reaches_the_worker_sooner_than_its_next_renewal(
    pool: Workers, aclient: Any, tmp_path: Path
) -> None:
    # lease 60: the regular renewal comes every 20 s; the cancel channel makes the worker renew now
    worker = in_process(pool, lease=60)
    await subscribed(aclient, worker)
    path = tmp_path / "calls.txt"
    job_id = await Queue(aclient).dispatch("t.cancellable", {"calls": str(path)}, queue="t")

    async def calling() -> bool:
        return len(calls(path)) >= 3

    await until(calling, what="the job to call its SUT")
    told_at = time.time()
    assert (await Admin(aclient).cancel_job(job_id)).told_to_stop == 1

    async def recorded() -> Any:
        return await aclient.hget(K.job(job_id), "failure")

    failure = json.loads(await until(recorded, deadline=10, what="the cancel to be recorded"))
    assert failure["kind"] == "cancelled"
    assert max(t for _, t in calls(path)) - told_at < 3.0


@pytest.mark.slow
async def test_the_renewal_loop_keeps_a_concurrency_slot_held_past_its_hold(pool: Workers, aclient: Any) -> None:
    # regression: the renewal loop, reworked to carry progress and cancels, still renews limiter slots
    in_process(pool, concurrency=2)
    q = Queue(aclient)
    for n in ("first", "second"):
        await q.dispatch("t.exclusive_long", {"seconds": 4, "n": n}, queue="t", id=n, result_to=("s", n, 600))

    async def both() -> list[Any]:
        got = await aclient.hmget(K.results("s"), ["first", "second"])
        return [json.loads(g)["result"] for g in got] if all(got) else []

    spans = sorted(await until(both, deadline=40, what="both jobs"))
    assert spans[1][0] >= spans[0][1] - 0.05  # the second started only once the first ended
