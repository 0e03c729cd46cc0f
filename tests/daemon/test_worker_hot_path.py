"""The worker's hot path on a real Redis: an idle worker is woken by a dispatch (not by its
poll), and its acks travel with its next pop in one round trip, with no script check."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
import redis
from support.inproc import make_worker
from support.procs import Processes, live_workers, wait_until

from evalharness.core.connection import async_client
from evalharness.core.keys import GlobalKeys, QueueKeys
from evalharness.core.queue import JobRequest, Queue

K = QueueKeys("eh", "t")


@pytest.fixture
def r(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def dispatch(url: str, n: int, *, one_by_one: bool = False) -> None:
    async def main() -> None:
        client = async_client(url)
        q = Queue(client, "eh")
        if one_by_one:
            for i in range(n):
                await q.dispatch("t.noop", i, queue="t")
        else:
            await q.dispatch_many(JobRequest("t.noop", i, queue="t") for i in range(n))
        await client.aclose()

    asyncio.run(main())


def completed(r: Any) -> int:
    return int(r.hget(K.stats, "completed") or 0)


def script_checks(r: Any) -> int:
    return int(r.info("commandstats").get("cmdstat_script|exists", {}).get("calls", 0))


def test_an_idle_worker_starts_each_dispatched_job_without_waiting_for_its_poll(
    r: Any, procs: Processes, redis_url: str
) -> None:
    # a 60 s poll: only the wake token a dispatch leaves can start these jobs within the deadlines
    procs.start(
        "-m",
        "evalharness.cli",
        "work",
        "--queue",
        "t",
        "--concurrency",
        "1",
        "--sleep",
        "60",
        "--import",
        "support.testjobs",
    )
    wait_until(lambda: live_workers(redis_url, "t") == 1, what="the worker")
    for n in range(1, 4):
        dispatch(redis_url, 1)
        wait_until(lambda n=n: completed(r) == n, deadline=5, what=f"job {n} done")
    dispatch(redis_url, 5, one_by_one=True)  # into a lane that waits already: one token, passed on
    wait_until(lambda: completed(r) == 8, deadline=5, what="all eight jobs done")


@pytest.mark.slow
def test_a_busy_worker_acknowledges_with_its_pops_and_never_checks_its_scripts(
    r: Any, procs: Processes, redis_url: str
) -> None:
    procs.worker("t", concurrency=10)
    wait_until(lambda: live_workers(redis_url, "t") == 1, what="the worker")
    before = script_checks(r)
    dispatch(redis_url, 2000)
    wait_until(lambda: completed(r) == 2000, deadline=60, what="2,000 jobs done")
    assert r.zcard(K.reserved) == 0
    assert int(r.hget(K.stats, "lost") or 0) == 0
    # redis-py pipelines that hold a script check it exists first: one more round trip per ack
    assert script_checks(r) == before


def idle_worker(procs: Processes, redis_url: str) -> Any:
    # a 60 s poll: the worker waits for a wake token, its pop queued behind the wait
    proc = procs.start(
        "-m",
        "evalharness.cli",
        "work",
        "--queue",
        "t",
        "--concurrency",
        "2",
        "--sleep",
        "60",
        "--import",
        "support.testjobs",
    )
    wait_until(lambda: live_workers(redis_url, "t") == 1, what="the worker")
    return proc


def test_an_idle_worker_starts_jobs_after_the_server_forgot_the_pop_it_waits_with(
    r: Any, procs: Processes, redis_url: str
) -> None:
    idle_worker(procs, redis_url)
    r.script_flush()  # the pop waiting behind the wake list now names an unknown script
    dispatch(redis_url, 1)
    wait_until(lambda: completed(r) == 1, deadline=5, what="the job done")
    dispatch(redis_url, 3, one_by_one=True)
    wait_until(lambda: completed(r) == 4, deadline=5, what="all four jobs done")
    assert (r.zcard(K.reserved), int(r.hget(K.stats, "lost") or 0)) == (0, 0)


def test_a_worker_paused_while_it_waits_takes_no_job_until_it_continues(
    r: Any, procs: Processes, redis_url: str
) -> None:
    proc = idle_worker(procs, redis_url)
    (worker_id,) = r.hkeys(GlobalKeys("eh").workers)
    proc.send_signal(signal.SIGUSR2)
    # the pause puts up the hold and ends the worker's wait: the pop queued behind it took nothing
    wait_until(
        lambda: r.exists(K.hold(worker_id)) and r.llen(K.wake_worker(worker_id)) == 0,
        what="the worker's wait to end under its hold",
    )
    dispatch(redis_url, 1)
    assert (r.zcard(K.ready), r.llen(K.wake)) == (1, 1)  # waiting, its wake token untaken
    proc.send_signal(signal.SIGCONT)
    wait_until(lambda: completed(r) == 1, deadline=10, what="the job done after continuing")
    assert not r.exists(K.hold(worker_id))
    assert (int(r.hget(K.stats, "lost") or 0), int(r.hget(K.stats, "interrupted") or 0)) == (0, 0)


async def test_jobs_a_pop_brings_back_after_a_pause_landed_are_given_back_without_using_a_try(
    redis_url: str,
) -> None:
    client = async_client(redis_url)
    q = Queue(client, "eh")
    # two queues: the worker asks each in turn (the ack-and-pop path, not the wait on one queue)
    worker = make_worker(redis_url, "t", "t2", concurrency=4)
    run_scripts, give_back = worker.queue.scripts.run, worker._give_back
    given_back: list[str] = []
    both_back = asyncio.Event()

    async def pause_during_the_pop(calls: Any, **kwargs: Any) -> Any:
        replies = await run_scripts(calls, **kwargs)
        if any(name == "pop_with_lease" for name, *_ in calls) and any(replies[-1][1:]):
            worker.pause()  # the operator's pause lands while the reply is on its way
        return replies

    async def counted_give_back(job: Any, ctx: Any = None) -> None:
        await give_back(job, ctx)
        given_back.append(job.id)
        if len(given_back) == 2:
            both_back.set()

    worker.queue.scripts.run = pause_during_the_pop  # type: ignore[method-assign]
    worker._give_back = counted_give_back  # type: ignore[method-assign]
    await q.dispatch_many(JobRequest("t.noop", i, queue="t") for i in range(2))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(both_back.wait(), 10)
        assert await client.zcard(K.ready) == 2
        assert await client.zcard(K.reserved) == 0 and worker.processed == 0
        ids = await client.zrange(K.ready, 0, -1)
        assert [await client.hget(K.job(i), "attempts") for i in ids] == ["0", "0"]
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
        await client.aclose()


async def test_a_stop_that_lands_while_a_pop_is_on_its_way_runs_what_it_took(redis_url: str) -> None:
    client = async_client(redis_url)
    q = Queue(client, "eh")
    worker = make_worker(redis_url, "t", concurrency=4, grace=20)
    run_scripts, stop_fetch = worker.queue.scripts.run, worker._stop_fetch
    stopping = asyncio.Event()

    async def stop_during_the_pop(calls: Any, **kwargs: Any) -> Any:
        replies = await run_scripts(calls, **kwargs)
        if any(name == "pop_with_lease" for name, *_ in calls) and any(replies[-1][1:]):
            worker.request_stop()  # SIGTERM lands while the reply is still on its way
            await stopping.wait()  # the reply arrives once the stop began (run() below is bounded)
        return replies

    async def noted_stop_fetch(fetch: Any) -> None:
        stopping.set()
        await stop_fetch(fetch)

    worker.queue.scripts.run = stop_during_the_pop  # type: ignore[method-assign]
    worker._stop_fetch = noted_stop_fetch  # type: ignore[method-assign]
    await q.dispatch_many(JobRequest("t.sleep", {"seconds": 0.05, "n": i}, queue="t") for i in range(2))
    try:
        assert await asyncio.wait_for(worker.run(), 30) == 0
        # the jobs the pop reserved ran and were acknowledged: none waits for its lease to lapse
        assert (await client.zcard(K.reserved), await client.hget(K.stats, "completed")) == (0, "2")
    finally:
        await client.aclose()
