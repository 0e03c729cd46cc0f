"""The reliable queue on a real Redis server: dispatch, pop with a lease, ack, delays,
release, renewal and re-delivery of lapsed leases."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from evalharness.core.jobs import JobOptions
from evalharness.core.queue import JobRequest, Queue


async def wait_for(predicate: Any, deadline: float = 5.0, step: float = 0.01) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if await predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition not reached before the deadline")


@pytest.fixture
def queue(aclient: Any) -> Queue:
    return Queue(aclient, prefix="t")


async def test_dispatch_pop_ack_round_trip(queue: Queue) -> None:
    ids = await queue.dispatch_many(JobRequest("noop", {"n": i}, queue="q") for i in range(5))
    assert len(set(ids)) == 5
    popped = await queue.pop("q", count=3, lease=30, owner="w1")
    assert [j.payload for j in popped.jobs] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(j.attempts == 1 for j in popped.jobs)
    stats = await queue.stats("q")
    assert (stats.ready, stats.reserved) == (2, 3)
    stale = await queue.ack("q", "w1", [(j.id, "") for j in popped.jobs])
    assert stale == []
    stats = await queue.stats("q")
    assert (stats.ready, stats.reserved) == (2, 0)
    assert stats.counters.get("completed") == 3
    # acked jobs are gone for good
    assert await queue.job_record("q", ids[0]) == {}


async def test_ack_by_a_worker_that_lost_the_lease_is_refused(queue: Queue) -> None:
    await queue.dispatch("noop", {}, queue="q")
    (job,) = (await queue.pop("q", 1, 30, "w1")).jobs
    assert await queue.ack("q", "w2", [(job.id, "")]) == [job.id]
    assert (await queue.stats("q")).reserved == 1


async def test_delayed_job_is_not_popped_before_it_is_due(queue: Queue) -> None:
    await queue.dispatch("noop", {}, queue="q", delay=0.4)
    first = await queue.pop("q", 1, 30, "w1")
    assert first.jobs == []
    assert first.next_due is not None and 0 < first.next_due <= 0.4
    await asyncio.sleep(first.next_due)

    async def popped() -> bool:
        return bool((await queue.pop("q", 1, 30, "w1")).jobs)

    await wait_for(popped)


async def test_release_with_delay_requeues_without_losing_the_job(queue: Queue) -> None:
    await queue.dispatch("noop", {"x": 1}, queue="q")
    (job,) = (await queue.pop("q", 1, 30, "w1")).jobs
    assert await queue.release("q", "w1", job.id, 0.3, "rate_limited")
    stats = await queue.stats("q")
    assert (stats.ready, stats.delayed, stats.reserved) == (0, 1, 0)
    assert (await queue.pop("q", 1, 30, "w1")).jobs == []
    await asyncio.sleep(0.3)
    got: list[Any] = []

    async def popped() -> bool:
        got.extend((await queue.pop("q", 1, 30, "w1")).jobs)
        return bool(got)

    await wait_for(popped)
    assert got[0].id == job.id and got[0].payload == {"x": 1}
    assert got[0].releases == 1


async def test_lapsed_lease_is_redelivered_and_renewed_lease_is_not(queue: Queue) -> None:
    await queue.dispatch_many([JobRequest("noop", i, queue="q") for i in range(2)])
    a, b = (await queue.pop("q", 2, 0.3, "dead-or-alive")).jobs
    # keep b's lease alive well past its original deadline; let a's lapse
    for _ in range(6):
        await asyncio.sleep(0.1)
        assert await queue.renew("q", "dead-or-alive", [b.id], 0.3) == []
    again = (await queue.pop("q", 5, 30, "w2")).jobs
    assert [j.id for j in again] == [a.id]
    assert again[0].attempts == 2
    # the original owner has lost a, so renewing it reports it lost
    assert await queue.renew("q", "dead-or-alive", [a.id], 0.3) == [a.id]


async def test_fail_records_the_failure_and_writes_the_error_to_the_sink(queue: Queue) -> None:
    await queue.dispatch("noop", {}, queue="q", id="j1", result_to=("run-1", "7", 60))
    (job,) = (await queue.pop("q", 1, 30, "w1")).jobs
    assert await queue.fail("q", "w1", job.id, {"kind": "exception", "message": "boom"})
    stats = await queue.stats("q")
    assert (stats.reserved, stats.failed) == (0, 1)
    (stored,) = await queue.results("q", "run-1", ["7"])
    assert stored is not None and stored["error"]["kind"] == "exception"
    record = await queue.job_record("q", "j1")
    assert record["state"] == "failed"
    assert json.loads(record["failure"])["message"] == "boom"


async def test_result_sink_first_write_wins(queue: Queue) -> None:
    await queue.dispatch("noop", {"v": 1}, queue="q", id="a", result_to=("run-1", "0", 60))
    await queue.dispatch("noop", {"v": 2}, queue="q", id="b", result_to=("run-1", "0", 60))
    a, b = (await queue.pop("q", 2, 30, "w1")).jobs
    await queue.ack("q", "w1", [(a.id, json.dumps("first")), (b.id, json.dumps("second"))])
    assert await queue.results("q", "run-1", ["0"]) == [{"result": "first"}]


async def test_dispatching_an_existing_id_does_not_duplicate(queue: Queue) -> None:
    await queue.dispatch("noop", {}, queue="q", id="same")
    await queue.dispatch("noop", {}, queue="q", id="same")
    assert (await queue.stats("q")).ready == 1


async def test_options_round_trip_through_the_envelope(queue: Queue) -> None:
    opts = JobOptions(tries=5, backoff=(2, 4), timeout=9)
    await queue.dispatch("noop", {}, queue="q", options=opts, tags=("a",), tenant="acme")
    (job,) = (await queue.pop("q", 1, 30, "w1")).jobs
    assert job.options.tries == 5 and tuple(job.options.backoff) == (2, 4) and job.options.timeout == 9
    assert job.tags == ("a",) and job.tenant == "acme"


async def test_identical_dispatches_are_two_jobs_each_with_its_own_key(queue: Queue) -> None:
    first = await queue.dispatch("noop", None, queue="q")
    second = await queue.dispatch("noop", None, queue="q")
    assert first != second
    stats = await queue.stats("q")
    assert stats.ready == 2 and "deduplicated" not in stats.counters
    a, b = (await queue.pop("q", 2, 30, "w1")).jobs
    # each keeps a key for providers, its own and the same for every attempt
    assert a.key and b.key and a.key != b.key
    await queue.release("q", "w1", a.id, 0, "retry")
    (again,) = (await queue.pop("q", 1, 30, "w1")).jobs
    assert again.id == a.id and again.key == a.key


@pytest.mark.parametrize(
    "how",
    [{"unique": True}, {"unique_for": 60}, {"key": "report-2026-11"}],
    ids=["unique", "unique_for", "explicit-key"],
)
async def test_identical_dispatches_merge_only_when_asked(queue: Queue, how: dict[str, Any]) -> None:
    first = await queue.dispatch("noop", {"month": 11}, queue="q", **how)
    second = await queue.dispatch("noop", {"month": 11}, queue="q", **how)
    assert first == second
    stats = await queue.stats("q")
    assert stats.ready == 1 and stats.counters["deduplicated"] == 1


async def test_a_unique_registered_job_merges_identical_dispatches(queue: Queue) -> None:
    from evalharness.core.jobs import REGISTRY, job

    @job("t.unique_probe", queue="q", unique=True)
    async def probe(payload: Any) -> None:
        return None

    try:
        ids = await queue.dispatch_many(
            [
                JobRequest("t.unique_probe", {"a": 1}),
                JobRequest("t.unique_probe", {"a": 1}),
                JobRequest("t.unique_probe", {"a": 2}),
            ]
        )
    finally:
        REGISTRY.pop("t.unique_probe", None)
    assert ids[0] == ids[1] != ids[2]
    assert (await queue.stats("q")).ready == 2


async def test_a_unique_dispatch_while_the_first_runs_yields_the_running_job(queue: Queue) -> None:
    first = await queue.dispatch("noop", {"a": 1}, queue="q", unique=True)
    (running,) = (await queue.pop("q", 1, 30, "w1")).jobs
    assert running.id == first
    assert await queue.dispatch("noop", {"a": 1}, queue="q", unique=True) == first
    assert (await queue.stats("q")).ready == 0
    # once it completed the work may be queued again (no unique_for window)
    await queue.ack("q", "w1", [(first, "")])
    assert await queue.dispatch("noop", {"a": 1}, queue="q", unique=True) != first
