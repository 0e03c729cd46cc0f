"""Worker processes on a real Redis: leases kept alive for long jobs, re-delivery after
SIGKILL, graceful SIGTERM."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from support.procs import Processes, live_workers, wait_until

from evalharness.core.keys import QueueKeys

K = QueueKeys("eh", "t")


def dispatch(r: Any, procs: Processes, name: str, payload: Any, *, job_id: str, sink: str = "s", **opts: Any) -> None:
    """Dispatch through the real queue code, from a short-lived process like a producer."""
    code = (
        "import asyncio, json, sys\n"
        "from evalharness.core.connection import async_client\n"
        "from evalharness.core.jobs import JobOptions\n"
        "from evalharness.core.queue import Queue\n"
        "async def main():\n"
        "    c = async_client(sys.argv[1])\n"
        "    await Queue(c, 'eh').dispatch(sys.argv[2], json.loads(sys.argv[3]), queue='t', id=sys.argv[4],\n"
        "        options=JobOptions(**json.loads(sys.argv[5])), result_to=(sys.argv[6], sys.argv[4], 600))\n"
        "    await c.aclose()\n"
        "asyncio.run(main())\n"
    )
    done = procs.start("-c", code, procs.env["EVALHARNESS_REDIS_URL"], name, json.dumps(payload), job_id, json.dumps(opts), sink)
    out, err = done.communicate(timeout=30)
    assert done.returncode == 0, err


def result(r: Any, job_id: str, sink: str = "s") -> Any:
    raw = r.hget(K.results(sink), job_id)
    return None if raw is None else json.loads(raw)


def test_a_job_longer_than_its_lease_is_never_redelivered(r: Any, procs: Processes, redis_url: str) -> None:
    procs.worker("t", lease=1)
    procs.worker("t", lease=1)  # a second, idle worker that would take the job if its lease lapsed
    wait_until(lambda: live_workers(redis_url, "t") == 2, what="two workers")
    dispatch(r, procs, "t.sleep", {"seconds": 3.5}, job_id="long", timeout=30)
    outcome = wait_until(lambda: result(r, "long"), deadline=20, what="the long job's result")
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
    dispatch(r, procs, "t.sleep", {"seconds": 0.1}, job_id="late", timeout=30)
    assert worker.wait(timeout=20) == 0
    assert all(result(r, f"j{i}")["result"]["attempts"] == 1 for i in range(3))
    # the stopping worker took no new job: it is still queued for the next worker
    assert result(r, "late") is None and r.zscore(K.ready, "late") is not None
    assert r.zcard(K.reserved) == 0
    assert live_workers(redis_url, "t") == 0


def test_jobs_still_running_after_the_grace_period_go_back_to_the_queue(r: Any, procs: Processes, redis_url: str) -> None:
    worker = procs.worker("t", grace=0.5)
    wait_until(lambda: live_workers(redis_url, "t") == 1, what="the worker")
    dispatch(r, procs, "t.sleep", {"seconds": 30}, job_id="slow", timeout=60)
    wait_until(lambda: r.zscore(K.reserved, "slow"), what="the job to run")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert r.zscore(K.reserved, "slow") is None
    assert r.zscore(K.ready, "slow") is not None or r.zscore(K.delayed, "slow") is not None


def test_sync_jobs_run_in_threads_without_blocking_each_other(r: Any, procs: Processes, redis_url: str) -> None:
    procs.worker("t", concurrency=4)
    wait_until(lambda: live_workers(redis_url, "t") == 1, what="the worker")
    for i in range(4):
        dispatch(r, procs, "t.blocking", {"seconds": 1.0, "n": i}, job_id=f"b{i}", timeout=30)
    wait_until(lambda: all(result(r, f"b{i}") for i in range(4)), deadline=15, what="four blocking jobs")
    # all four ran in one process at the same time: they overlapped
    assert len({result(r, f"b{i}")["result"]["pid"] for i in range(4)}) == 1


def test_an_unregistered_job_fails_with_a_clear_reason(r: Any, procs: Processes, redis_url: str) -> None:
    procs.worker("t")
    wait_until(lambda: live_workers(redis_url, "t") == 1, what="the worker")
    dispatch(r, procs, "t.nope", {}, job_id="u", timeout=30)
    outcome = wait_until(lambda: result(r, "u"), what="the failure")
    assert outcome["error"]["kind"] == "unknown_job"
    assert "t.nope" in outcome["error"]["message"]


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
