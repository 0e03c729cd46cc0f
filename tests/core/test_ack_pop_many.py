"""One pop and one ack of many jobs over several batches (what a worker sends as slots free
together) count each batch exactly as one call per job would: its max_running holds across the
lanes of one pop, the ack moves each batch's pending, processed and per-minute rate by its own
jobs, finishes the batch whose last job it acknowledged, queues that batch's callbacks once, and
keeps every result sink it wrote for its time to live.  Real Redis, the real scripts."""

from __future__ import annotations

from typing import Any

import pytest

from evalharness.core.batches import Batches
from evalharness.core.queue import JobRequest, Queue

P = "apm"
Q = "q"


@pytest.fixture
def queue(aclient: Any) -> Queue:
    return Queue(aclient, prefix=P)


def sample(n: int, sink: str | None = None, ttl: int = 600) -> JobRequest:
    return JobRequest("t.noop", {"n": n}, queue=Q, result_to=None if sink is None else (sink, str(n), ttl))


async def test_one_pop_and_one_ack_of_several_batches_count_each_as_jobs_one_by_one(queue: Queue, aclient: Any) -> None:
    batches = Batches(aclient, P, queue)
    await batches.create(
        "capped",
        [sample(i, "run-a") for i in range(3)],
        queue=Q,
        batch_id="a",
        max_running=2,
        progress=("t.progress",),
        then=("t.then",),
    )
    await batches.create("plain", [sample(10 + i, "run-b", ttl=900) for i in range(2)], queue=Q, batch_id="b")
    await batches.create("other", [sample(20)], queue=Q, batch_id="c", then=("t.then",))
    await queue.dispatch("t.noop", {"n": 30}, queue=Q)

    popped = (await queue.pop(Q, 10, 30, "w")).jobs
    by_batch: dict[str | None, list[str]] = {}
    for job in popped:
        by_batch.setdefault(job.batch, []).append(job.id)
    # the lanes are served in turn and the capped batch stops at 2 however many turns it gets
    assert {k: len(v) for k, v in by_batch.items()} == {"a": 2, "b": 2, "c": 1, None: 1}
    info = await batches.info("a")
    assert info is not None and info.running == 2 and info.state == "running"

    assert await queue.ack(Q, "w", [(job.id, f'"out {job.id}"') for job in popped]) == []

    a, b, c = [await batches.info(bid) for bid in "abc"]
    assert a is not None and b is not None and c is not None
    assert (a.processed, a.pending, a.running, a.state, a.finished_at) == (2, 1, 0, "running", None)
    assert (b.processed, b.pending, b.state) == (2, 0, "succeeded") and b.finished_at is not None
    assert (c.processed, c.pending, c.state) == (1, 0, "succeeded") and c.finished_at is not None
    keys = queue.keys(Q)
    rates = {bid: await aclient.hget(keys.batch(bid), "rate_this") for bid in "abc"}
    assert rates == {"a": "2", "b": "2", "c": "1"}
    # a's progress callback queued once for the two; b has no then-callback, c's comes once
    cb_ids = {str(i) for i in await aclient.lrange(keys.lane("_cb"), 0, -1)}
    assert cb_ids == {"cb-a-progress-1", "cb-c-then-1"}
    # each sink holds its jobs' results and keeps its own time to live, both keys of it
    for sink, n, ttl in (("run-a", 2, 600), ("run-b", 2, 900)):
        assert await aclient.hlen(keys.results(sink)) == n
        assert await aclient.llen(keys.results_done(sink)) == n
        for key in (keys.results(sink), keys.results_done(sink)):
            assert ttl - 5 <= await aclient.ttl(key) <= ttl
    held = {str(job.payload["n"]): f"out {job.id}" for job in popped if job.batch == "a"}
    stored = await queue.results(Q, "run-a", [str(i) for i in range(3)])
    assert {str(i): v["result"] for i, v in enumerate(stored) if v is not None} == held

    # the held job of a starts now that its batch runs none, and finishes it
    rest = [job for job in (await queue.pop(Q, 10, 30, "w")).jobs if job.batch == "a"]
    assert len(rest) == 1
    assert await queue.ack(Q, "w", [(rest[0].id, "")]) == []
    a = await batches.info("a")
    assert a is not None and (a.processed, a.pending, a.state) == (3, 0, "succeeded")
    assert await aclient.hget(keys.batch("a"), "rate_this") == "3"


async def test_one_dispatch_of_mixed_jobs_counts_each_batch_and_keeps_the_lane_order(
    queue: Queue, aclient: Any
) -> None:
    batches = Batches(aclient, P, queue)
    await batches.create("declared", queue=Q, batch_id="d", total=3, allow_failures=True)
    await batches.create("open", queue=Q, batch_id="o")
    ids = await queue.dispatch_many(
        [
            JobRequest("t.noop", 0, queue=Q, lane="first"),  # a plain group
            *(JobRequest("t.noop", n, queue=Q, batch="d", key=f"k{n}") for n in range(5)),
            JobRequest("t.noop", 9, queue=Q, batch="d", key="k1"),  # the same key: merged
            JobRequest("t.noop", 7, queue=Q, batch="o", delay=60),
            JobRequest("t.noop", 8, queue=Q, lane="after"),  # a plain group after the checked ones
            JobRequest("t.noop", 6, queue=Q, batch="o", result_to=("s", "6", 300)),
        ]
    )
    assert ids[6] == ids[2]  # the merged dispatch names the job holding its key
    d, o = await batches.info("d"), await batches.info("o")
    assert d is not None and o is not None
    # 5 of d came (3 declared, 2 beyond them count in its total); o got a delayed and a ready one
    assert (d.dispatched, d.total, d.pending, d.undispatched) == (5, 5, 5, 0)
    assert (o.dispatched, o.total, o.pending) == (2, 2, 2)
    keys = queue.keys(Q)
    # lanes are listed in the order their first ready job came, each in dispatch order
    assert [str(x) for x in await aclient.lrange(keys.lanes, 0, -1)] == ["first", "d", "after", "o"]
    assert [str(x) for x in await aclient.lrange(keys.lane("d"), 0, -1)] == ids[1:6]
    assert await aclient.zcard(keys.ready) == 8 and await aclient.zcard(keys.delayed) == 1
    fields = await aclient.hgetall(keys.job(ids[9]))
    assert (fields["batch"], fields["sink"], fields["sink_field"], fields["state"]) == ("o", "s", "6", "ready")
    merged = await aclient.hgetall(keys.job(ids[2]))
    assert (merged["unique"], merged["batch"], merged["state"]) == ("k1", "d", "ready")
    assert (await aclient.hgetall(keys.job(ids[7])))["state"] == "delayed"


async def test_a_call_of_more_ready_jobs_than_one_push_slice_lists_their_lane_once(queue: Queue, aclient: Any) -> None:
    """The script pushes a lane's ready jobs in slices of 1,000; only the first can find the lane
    empty, so the lane is listed once (a lane listed twice would be served out of turn)."""
    keys = queue.keys(Q)
    args: list[Any] = [keys.base, 1_000]
    for n in range(2_500):
        args += ["x", f"j{n}", '{"name": "t.noop"}', "big", 0, "", "", 0, "", 0, ""]
    (ids,) = await queue.scripts.run([("dispatch", queue._dispatch_keys(keys), args)])
    assert len(ids) == 2_500
    assert [str(x) for x in await aclient.lrange(keys.lanes, 0, -1)] == ["big"]
    assert await aclient.llen(keys.lane("big")) == 2_500 and await aclient.zcard(keys.ready) == 2_500
