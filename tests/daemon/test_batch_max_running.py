"""A batch's max_running on a real Redis with in-process workers: however many jobs are queued
and however many worker slots are free, at most that many of the batch's jobs run at once; a
slot that frees starts the next at once (no poll), other batches on the queue are not held up,
and a worker that died holding slots gives them back when its leases lapse."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
from support.inproc import Workers
from support.overlap import max_overlap
from support.procs import until

from evalharness.core.batches import Batches
from evalharness.core.errors import EvalHarnessError
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import JobRequest, Queue

K = QueueKeys("eh", "t")
# longer than any test's deadline: a job that starts only because a worker polled fails the test
NO_POLL = 60.0


def span(field: str, seconds: float = 0.05, lane: str | None = None) -> JobRequest:
    return JobRequest("t.span", {"seconds": seconds}, result_to=("s", field, 600), lane=lane)


async def spans(aclient: Any, fields: list[str]) -> list[tuple[float, float]]:
    raw = await aclient.hmget(K.results("s"), fields)
    if any(v is None for v in raw):
        return []
    return [tuple(json.loads(v)["result"]) for v in raw]  # type: ignore[misc]


async def test_at_most_max_running_of_a_batch_run_at_once_across_workers(pool: Workers, aclient: Any) -> None:
    batches = Batches(aclient)
    # a third of the jobs in a lane of their own: the limit is the batch's, whatever the lane
    jobs = [span(f"a{i}", lane="side" if i % 3 == 0 else None) for i in range(30)]
    a = await batches.create("A", jobs, queue="t", max_running=3)
    b = await batches.create("B", [span(f"b{i}", 0.2) for i in range(8)], queue="t")
    pool.start("t", n=2, concurrency=10, poll=NO_POLL)
    a_spans = await until(lambda: spans(aclient, [f"a{i}" for i in range(30)]), deadline=30, what="batch A")
    b_spans = await until(lambda: spans(aclient, [f"b{i}" for i in range(8)]), deadline=30, what="batch B")
    # the limit held, and was used: three ran together
    assert max_overlap(a_spans) == 3
    # B has no limit: its 8 jobs ran together beside A's 3, in the slots A could not use
    assert max_overlap(b_spans) == 8
    info_a, info_b = await batches.info(a), await batches.info(b)
    assert info_a is not None and info_b is not None
    assert (info_a.state, info_a.processed, info_a.max_running) == ("succeeded", 30, 3)
    assert (info_b.state, info_b.max_running) == ("succeeded", None)
    assert await aclient.scard(K.batch_running(a)) == 0


async def test_a_worker_that_died_holding_a_batchs_slots_gives_them_back_when_its_leases_lapse(
    pool: Workers, aclient: Any
) -> None:
    q = Queue(aclient)
    batches = Batches(aclient, queue=q)
    bid = await batches.create("A", [span(f"a{i}") for i in range(6)], queue="t", max_running=2)
    # a worker takes both slots and dies: nothing acknowledges its two jobs
    held = await q.pop("t", 5, 2.0, "dead-worker")
    assert len(held.jobs) == 2  # the limit, though five were asked for
    assert await aclient.scard(K.batch_running(bid)) == 2
    assert len((await q.pop("t", 5, 2.0, "dead-worker")).jobs) == 0
    pool.start("t", concurrency=10, poll=0.2)
    got = await until(lambda: spans(aclient, [f"a{i}" for i in range(6)]), deadline=30, what="every job")
    # the two lost jobs ran again, and never more than two of the batch at once
    assert len(got) == 6 and max_overlap(got) <= 2
    assert int(await aclient.hget(K.stats, "lost") or 0) == 2


async def test_a_raised_limit_lets_waiting_jobs_start_and_a_bad_limit_is_refused(pool: Workers, aclient: Any) -> None:
    batches = Batches(aclient)
    with pytest.raises(EvalHarnessError, match="max_running must be >= 1, got 0"):
        await batches.create("A", [span("x")], queue="t", max_running=0)
    bid = await batches.create("A", [span(f"a{i}", 0.3) for i in range(8)], queue="t", max_running=1)
    pool.start("t", concurrency=10, poll=NO_POLL)
    await until(lambda: aclient.scard(K.batch_running(bid)), what="the first job running")
    await batches.set_max_running(bid, 4)
    got = await until(lambda: spans(aclient, [f"a{i}" for i in range(8)]), deadline=30, what="every job")
    assert max_overlap(got) == 4
    with pytest.raises(EvalHarnessError, match="max_running must be >= 1, got -1"):
        await batches.set_max_running(bid, -1)


async def test_jobs_held_by_max_running_are_no_backlog_for_telemetry_status_or_the_balancer(aclient: Any) -> None:
    from evalharness.core.telemetry import collect_snapshot
    from evalharness.daemon.balance_demand import read_demand

    q = Queue(aclient)
    batches = Batches(aclient, queue=q)
    bid = await batches.create("A", [span(f"a{i}") for i in range(5)], queue="t", max_running=2)
    # one job anyone may start, in the default lane (its queue named: run alone, no worker has
    # registered t.span with its queue)
    await q.dispatch_many([replace(span("plain"), queue="t")])
    assert len((await q.pop("t", 1, 60, "w1")).jobs) == 1  # lanes take turns: A's first job
    counts = await q.stats("t")
    # A: one running, one more may start, three held; the plain job may start
    assert (counts.ready, counts.held) == (2, 3)
    snap = await collect_snapshot(aclient, "eh")
    (row,) = [r for r in snap["queues"] if r["name"] == "t"]
    assert (row["ready"], row["held"]) == (2, 3)
    # the balancer reads the same: two jobs to start, waiting about as long as they have
    later = time.time() + 5.0
    demand = (await read_demand(aclient, "eh", ["t"], None, later))["t"]
    assert (demand.ready, demand.running) == (2, 1) and 4.5 < demand.oldest_wait < 6.0
    assert len((await q.pop("t", 5, 60, "w1")).jobs) == 2  # A's second and the plain job
    counts = await q.stats("t")
    # nothing may start now: the three left wait for A's running jobs, not for a worker
    assert (counts.ready, counts.held, counts.oldest_ready_age) == (0, 3, None)
    # so they are no demand for more processes, however long they have waited
    demand = (await read_demand(aclient, "eh", ["t"], None, later))["t"]
    assert (demand.ready, demand.running, demand.oldest_wait) == (0, 3, 0.0)
    await batches.set_max_running(bid, None)
    counts = await q.stats("t")
    assert (counts.ready, counts.held) == (3, 0) and counts.oldest_ready_age is not None
