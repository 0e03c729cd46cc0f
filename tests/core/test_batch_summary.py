"""The Overview's batch counts (core/admin.py ``batch_summary``) over a real Redis and the real
batch scripts: running, pending and finished-with-failures batches counted over every queue from
the indexes the scripts keep (a retry and a prune take a batch out again), the first active ones
in the console's order, and batches kept from before the indexes existed, indexed once even when
the read that started it is cancelled."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.procs import until

from evalharness.core.admin import Admin
from evalharness.core.batches import Batches, active_batches_key, with_failures_key
from evalharness.core.jobs import Job
from evalharness.core.queue import JobRequest, Queue

P = "bs"


@pytest.fixture
def queue(aclient: Any) -> Queue:
    return Queue(aclient, prefix=P)


@pytest.fixture
def admin(aclient: Any) -> Admin:
    return Admin(aclient, prefix=P)


async def fail(queue: Queue, job: Job) -> None:
    failure = {"kind": "exception", "message": "ValueError: bad row", "exception_type": "ValueError"}
    assert await queue.fail(job.queue, "w", job.id, {**failure, "job": job.name, "batch": job.batch})


async def finish(queue: Queue, name: str, ok: bool) -> None:
    """Pop the one ready job of queue ``name`` and end it, ``ok`` or failed."""
    (job,) = (await queue.pop(name, 1, 30, "w")).jobs
    if ok:
        await queue.ack(name, "w", [(job.id, "")])
    else:
        await fail(queue, job)


async def test_counts_cover_every_queue_and_follow_finish_retry_and_prune(
    queue: Queue, admin: Admin, aclient: Any
) -> None:
    batches = Batches(aclient, P, queue)
    one = [JobRequest("judge", {"n": 0})]
    # two finished with failures, one succeeded, one failed outright (no failures allowed)
    for bid, name, ok, allow in (("f1", "a", False, True), ("f2", "b", False, True), ("s", "a", True, True)):
        await batches.create(bid, one, queue=name, batch_id=bid, allow_failures=allow)
        await finish(queue, name, ok)
    await batches.create("hard", one, queue="b", batch_id="hard")
    await finish(queue, "b", False)
    # 60 active on two queues (more than a page): 2 running, the rest pending
    for i in range(60):
        await batches.create(f"p{i:02}", one, queue="c" if i % 2 else "d", batch_id=f"p{i:02}")
    await queue.pop("c", 1, 30, "w")
    await queue.pop("d", 1, 30, "w")

    summary = await admin.batch_summary(12)
    assert (summary.running, summary.pending, summary.finished_with_failures) == (2, 58, 2)
    assert [r.state for r in summary.rows[:2]] == ["running", "running"]
    created = [r.created_at or 0 for r in summary.rows[2:]]
    assert len(summary.rows) == 12 and created == sorted(created, reverse=True)  # newest first
    longer = [r.id for r in (await admin.batch_summary(15)).rows]
    assert [r.id for r in await admin.batches_page("active", 10, 5)] == longer[10:15]  # the Batches page

    assert (await admin.retry_batch("f1")).retried == 1
    summary = await admin.batch_summary(0)
    assert (summary.running, summary.finished_with_failures, summary.rows) == (3, 1, ())
    await finish(queue, "a", False)  # the retried job fails again: counted once, not twice
    assert (await admin.batch_summary(0)).finished_with_failures == 2
    assert await aclient.zcard(with_failures_key(queue.keys("a"))) == 1

    assert await batches.prune(older_than=-60) == 4
    assert (await admin.batch_summary(0)).finished_with_failures == 0


async def test_batches_from_before_the_indexes_are_indexed_once_even_if_the_read_is_cancelled(
    queue: Queue, admin: Admin, aclient: Any
) -> None:
    batches = Batches(aclient, P, queue)
    one = [JobRequest("judge", {"n": 0})]
    for i in range(30):
        await batches.create(f"f{i:02}", one, queue="a", batch_id=f"f{i:02}", allow_failures=True)
        await finish(queue, "a", False)
    await batches.create("live", one, queue="a", batch_id="live")
    keys = queue.keys("a")
    # as a Redis written before the indexes existed
    await aclient.delete(with_failures_key(keys), active_batches_key(keys))

    reader = asyncio.ensure_future(admin.batch_summary())
    deadline = time.monotonic() + 10
    while "a" not in admin._batch_indexing:  # cancel the read the moment its scan has started
        assert time.monotonic() < deadline, "the index scan never started"
        await asyncio.sleep(0)
    assert not admin._batch_indexing["a"].done()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    # the scan the cancelled read started runs to its end: no later read starts it over
    await until(lambda: aclient.exists(with_failures_key(keys) + "_indexed"), what="the scan to finish")
    summary = await admin.batch_summary()
    assert (summary.pending, summary.finished_with_failures, [r.id for r in summary.rows]) == (1, 30, ["live"])
    await aclient.zrem(with_failures_key(keys), "f00")
    assert (await Admin(aclient, prefix=P).batch_summary()).finished_with_failures == 29  # marked: never rescanned
