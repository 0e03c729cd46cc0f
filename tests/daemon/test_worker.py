"""Worker processes on a real Redis: leases kept alive for long jobs, re-delivery after
SIGKILL, graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from support.dispatch import dispatch as support_dispatch
from support.inproc import burst, running
from support.procs import Processes, live_workers, until, wait_for_output, wait_until

from evalharness.core.keys import QueueKeys

K = QueueKeys("eh", "t")


def dispatch(r: Any, procs: Processes, name: str, payload: Any, *, job_id: str, sink: str = "s", **opts: Any) -> None:
    """Dispatch through the real queue code, with the job's options given in full."""
    support_dispatch(
        procs.env["EVALHARNESS_REDIS_URL"], {"name": name, "payload": payload, "id": job_id, "options": opts}, sink=sink
    )


def result(r: Any, job_id: str, sink: str = "s") -> Any:
    raw = r.hget(K.results(sink), job_id)
    return None if raw is None else json.loads(raw)


async def test_a_job_longer_than_its_lease_is_never_redelivered(r: Any, procs: Processes, redis_url: str) -> None:
    async with running(redis_url, lease=1) as first:
        dispatch(r, procs, "t.sleep", {"seconds": 3.5}, job_id="long", timeout=30)
        await until(lambda: r.zscore(K.reserved, "long"), what="the long job to start")
        assert r.hget(K.job("long"), "owner") == first.id
        # a second, idle worker that would take the job if its lease lapsed
        async with running(redis_url, lease=1):
            outcome = await until(lambda: result(r, "long"), deadline=20, what="the long job's result")
    assert outcome["result"]["attempts"] == 1
    assert int(r.hget(K.stats, "completed") or 0) == 1
    assert int(r.hget(K.stats, "lost") or 0) == 0


def test_a_job_whose_worker_is_killed_is_redelivered_and_finishes(r: Any, procs: Processes, redis_url: str) -> None:
    victim = procs.worker("t", lease=1)
    wait_until(lambda: live_workers(redis_url, "t") == 1, what="the first worker")
    dispatch(r, procs, "t.sleep", {"seconds": 1.0}, job_id="j", timeout=30)
    wait_until(lambda: r.zscore(K.reserved, "j"), what="the job to be reserved")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert result(r, "j") is None
    procs.worker("t", lease=1)
    outcome = wait_until(lambda: result(r, "j"), deadline=20, what="the re-delivered job's result")
    assert outcome["result"]["attempts"] == 2
    assert outcome["result"]["pid"] != victim.pid
    assert r.zcard(K.reserved) == 0 and r.zcard(K.ready) == 0


def test_sigterm_lets_running_jobs_finish_then_exits_cleanly(r: Any, procs: Processes, redis_url: str) -> None:
    # queued before the worker starts, so it takes all three at once however slow dispatching is
    for i in range(3):
        dispatch(r, procs, "t.sleep", {"seconds": 1.5, "n": i}, job_id=f"j{i}", timeout=30)
    worker = procs.worker("t", concurrency=5, grace=20)
    wait_until(lambda: r.zcard(K.reserved) == 3, what="three running jobs")
    worker.send_signal(signal.SIGTERM)
    wait_for_output(worker, "SIGTERM received")
    dispatch(r, procs, "t.sleep", {"seconds": 0.1}, job_id="late", timeout=30)
    assert worker.wait(timeout=20) == 0
    assert all(result(r, f"j{i}")["result"]["attempts"] == 1 for i in range(3))
    # the stopping worker took no new job: it is still queued for the next worker
    assert result(r, "late") is None and r.zscore(K.ready, "late") is not None
    assert r.zcard(K.reserved) == 0
    assert live_workers(redis_url, "t") == 0


def test_jobs_still_running_after_the_grace_period_go_back_to_the_queue(
    r: Any, procs: Processes, redis_url: str
) -> None:
    worker = procs.worker("t", grace=0.5)
    wait_until(lambda: live_workers(redis_url, "t") == 1, what="the worker")
    dispatch(r, procs, "t.sleep", {"seconds": 30}, job_id="slow", timeout=60)
    wait_until(lambda: r.zscore(K.reserved, "slow"), what="the job to run")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert r.zscore(K.reserved, "slow") is None
    assert r.zscore(K.ready, "slow") is not None or r.zscore(K.delayed, "slow") is not None


async def test_sync_jobs_run_in_threads_without_blocking_each_other(r: Any, procs: Processes, redis_url: str) -> None:
    for i in range(4):
        dispatch(r, procs, "t.blocking", {"seconds": 1.0, "n": i}, job_id=f"b{i}", timeout=30)
    started = time.monotonic()
    await burst(redis_url, concurrency=4)
    took = time.monotonic() - started
    assert all(result(r, f"b{i}") for i in range(4))
    # all four ran in one process at the same time: they overlapped (one after another is 4 s)
    assert len({result(r, f"b{i}")["result"]["pid"] for i in range(4)}) == 1
    assert took < 3.5, took


async def test_an_unregistered_job_fails_with_a_clear_reason(r: Any, procs: Processes, redis_url: str) -> None:
    dispatch(r, procs, "t.nope", {}, job_id="u", timeout=30)
    await burst(redis_url)
    outcome = result(r, "u")
    assert outcome["error"]["kind"] == "unknown_job"
    assert "t.nope" in outcome["error"]["message"]


async def test_a_burst_worker_waits_for_a_retry_due_later_then_returns(
    r: Any, procs: Processes, redis_url: str
) -> None:
    # t.resumes fails its first attempt and is retried after a 0.05 s backoff: the delayed retry
    # is work the burst waits for, and it returns once nothing is ready, delayed or running
    support_dispatch(redis_url, {"name": "t.resumes", "id": "c"})
    w = await burst(redis_url)
    assert result(r, "c")["result"]["attempts"] == 2
    assert (r.zcard(K.ready), r.zcard(K.delayed), r.zcard(K.reserved)) == (0, 0, 0)
    assert w.processed == 2
    # an idle queue: it returns at once, having run nothing
    assert (await burst(redis_url)).processed == 0


def test_evalharness_work_burst_drains_the_queue_and_exits_0(r: Any, procs: Processes, redis_url: str) -> None:
    for i in range(3):
        dispatch(r, procs, "t.sleep", {"seconds": 0.1, "n": i}, job_id=f"w{i}", timeout=30)
    w = procs.start("-m", "evalharness.cli", "work", "--queue", "t", "--import", "support.testjobs", "--burst")
    assert w.wait(timeout=60) == 0
    assert all(result(r, f"w{i}") for i in range(3))
    assert r.zcard(K.ready) == 0 and r.zcard(K.reserved) == 0
    assert live_workers(redis_url, "t") == 0


async def test_the_lease_message_is_logged_only_for_a_lease_that_really_lapsed(
    redis_url: str, aclient: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from evalharness.core.queue import JobRequest
    from evalharness.daemon.worker import RunningJob, Worker, WorkerOptions

    w = Worker(redis_url, "eh", WorkerOptions(queues=("t",)))
    try:
        q = w.queue
        await q.dispatch_many(JobRequest("t.noop", None, queue="t", id=i) for i in ("scored", "retried", "stolen"))
        for job in (await q.pop("t", 3, 30, w.id)).jobs:
            w._held["t"][job.id] = job
            w._contexts[job.id] = RunningJob(job, w)
        # "scored" succeeded on its first attempt: its task ended and its ack landed while the
        # renewal was on its way (as at a graceful restart), before the flush let go of it
        w._contexts.pop("scored")
        assert await q.ack("t", w.id, [("scored", "", 5)]) == []
        # "retried" raised: its release landed first
        w._contexts["retried"].settled = True
        assert await q.release("t", w.id, "retried", 0, "retry")
        # "stolen" was still running when its lease lapsed and another worker took it
        await aclient.hset(K.job("stolen"), "owner", "another-worker")
        with caplog.at_level(logging.WARNING, "evalharness.worker"):
            await w._renew_once()
        said = [r.getMessage() for r in caplog.records if "lost the lease" in r.getMessage()]
        assert said == [f"worker {w.id}: lost the lease of job stolen"]
    finally:
        await w.client.aclose()
        await w.blocking.aclose()
        w._pool.shutdown(wait=False)
