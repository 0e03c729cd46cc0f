"""Queues used once do not stay in ``status`` and the console for ever: the telemetry leader
forgets a queue with no jobs, batches or workers after a retention, ``evalharness queue
forget`` does it at once, and a dispatch arriving at the same moment never loses its queue."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from support.procs import Processes

from evalharness.core.forget import QueueForgetter, QueueUse
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import Queue, known_queues
from evalharness.core.telemetry import collect_snapshot
from evalharness.daemon import publisher as publisher_module
from evalharness.daemon.publisher import Publisher


async def use_once(q: Queue, queue: str) -> None:
    """Dispatch one job to ``queue`` and finish it, as a test run or a typo would."""
    await q.dispatch("noop", None, queue=queue)
    (job,) = (await q.pop(queue, 1, 30, "w")).jobs
    assert await q.ack(queue, "w", [(job.id, "", 1)]) == []


async def sweep_until_forgotten(f: QueueForgetter, queue: str, retention: float, deadline: float = 10.0) -> int:
    """Sweep as the leader does (it does so once a minute) until ``queue`` is forgotten."""
    sweeps = 0
    end = time.monotonic() + deadline
    while True:
        (outcome,) = await f.sweep([queue], retention)
        sweeps += 1
        if outcome.use is QueueUse.FORGOTTEN:
            return sweeps
        assert outcome.use is QueueUse.IDLE, outcome
        assert time.monotonic() < end, "the queue was not forgotten"
        await asyncio.sleep(0.05)


async def test_a_queue_used_once_is_forgotten_after_the_retention(aclient: Any) -> None:
    q = Queue(aclient, "eh")
    await use_once(q, "nuq")
    assert (await collect_snapshot(aclient, "eh"))["queues"][0]["name"] == "nuq"
    f = QueueForgetter(aclient, "eh")
    started = time.monotonic()
    (first,) = await f.sweep(["nuq"], 0.3)
    assert first.use is QueueUse.IDLE and first.idle_since is not None
    await sweep_until_forgotten(f, "nuq", 0.3)
    assert time.monotonic() - started >= 0.3
    assert await known_queues(aclient, "eh") == []
    assert (await collect_snapshot(aclient, "eh"))["queues"] == []
    assert not await aclient.exists(QueueKeys("eh", "nuq").stats)


async def test_a_queue_in_use_is_never_forgotten(aclient: Any) -> None:
    q = Queue(aclient, "eh")
    await q.dispatch("noop", None, queue="ready")
    await q.dispatch("noop", None, queue="later", delay=3600)
    await q.dispatch("noop", None, queue="running")
    await q.pop("running", 1, 30, "w")
    await q.dispatch("noop", None, queue="broken")
    (job,) = (await q.pop("broken", 1, 30, "w")).jobs
    await q.fail("broken", "w", job.id, {"kind": "exception", "message": "boom"})
    await aclient.sadd("eh:queues", "served", "batched")
    await aclient.zadd(QueueKeys("eh", "served").workers, {"w1": int(time.time() * 1000) + 60_000})
    # a batch still running (in the active index) keeps its queue
    await aclient.zadd(QueueKeys("eh", "batched").batches, {"b1": 1})
    await aclient.zadd(QueueKeys("eh", "batched").base + "batches:active", {"b1": 1})
    f = QueueForgetter(aclient, "eh")
    names = ["ready", "later", "running", "broken", "served", "batched"]
    for _ in range(3):
        outcomes = await f.sweep(names, 0.001)
        assert [o.use for o in outcomes] == [QueueUse.IN_USE] * len(names)
        await asyncio.sleep(0.01)
    assert sorted(await known_queues(aclient, "eh")) == sorted(names)
    by_name = {o.queue: o for o in outcomes}
    assert by_name["broken"].holding() == "1 failed job" and by_name["served"].holding() == "1 live worker"


async def test_finished_batches_do_not_keep_a_queue_and_go_with_it(aclient: Any) -> None:
    """Every eval run leaves a batch record: once all of a queue's batches finished, the queue
    is forgotten with them; one unfinished batch keeps it."""
    from evalharness.core.batches import Batches
    from evalharness.core.queue import JobRequest

    q = Queue(aclient, "eh")
    batches = Batches(aclient, "eh", q)
    done = await batches.create("once", [JobRequest("noop", None)], queue="oneoff")
    (job,) = (await q.pop("oneoff", 1, 30, "w")).jobs
    assert await q.ack("oneoff", "w", [(job.id, "", 1)]) == []
    assert (await batches.info(done)).state == "succeeded"  # type: ignore[union-attr]
    await batches.create("open", [JobRequest("noop", None)], queue="busy")
    (job,) = (await q.pop("busy", 1, 30, "w")).jobs
    assert await q.ack("busy", "w", [(job.id, "", 1)]) == []
    await batches.add((await batches.list(queue="busy"))[0].id, [JobRequest("noop", None)])
    (job,) = (await q.pop("busy", 1, 30, "w")).jobs  # the batch's second job is running
    f = QueueForgetter(aclient, "eh")
    kept = await f.forget("busy")
    assert kept.use is QueueUse.IN_USE and kept.pruned_batches == 0
    assert len(await batches.list(queue="busy")) == 1
    gone = await f.forget("oneoff")
    assert gone.use is QueueUse.FORGOTTEN and gone.pruned_batches == 1
    assert await batches.info(done) is None
    assert "oneoff" not in await known_queues(aclient, "eh")


async def test_a_queue_used_again_starts_its_retention_again(aclient: Any) -> None:
    q = Queue(aclient, "eh")
    await use_once(q, "nuq")
    f = QueueForgetter(aclient, "eh")
    (first,) = await f.sweep(["nuq"], 0.3)
    assert first.idle_since is not None
    # let the retention pass on the server's clock (the one the script reads), polled with a deadline
    end = time.monotonic() + 10

    async def server_now() -> float:
        secs, micros = await aclient.time()
        return float(secs) + micros / 1e6

    while await server_now() < first.idle_since + 0.3:
        assert time.monotonic() < end, "the server clock did not pass the retention"
        await asyncio.sleep(0.02)
    # used and emptied between two sweeps: the leader saw it unused both times, yet it was used
    await use_once(q, "nuq")
    (second,) = await f.sweep(["nuq"], 0.3)
    assert second.use is QueueUse.IDLE
    assert first.idle_since is not None and second.idle_since is not None and second.idle_since > first.idle_since


async def test_a_dispatch_after_a_forget_lists_the_queue_again_even_from_a_long_lived_producer(aclient: Any) -> None:
    q = Queue(aclient, "eh")  # the same producer before and after: nothing it remembers hides the queue
    await use_once(q, "nuq")
    assert (await QueueForgetter(aclient, "eh").forget("nuq")).use is QueueUse.FORGOTTEN
    assert await known_queues(aclient, "eh") == []
    await q.dispatch("noop", None, queue="nuq")
    assert await known_queues(aclient, "eh") == ["nuq"]


async def test_a_dispatch_racing_a_forget_never_loses_its_queue(aclient: Any, redis_url: str) -> None:
    from evalharness.core.connection import async_client

    producer_client = async_client(redis_url)
    try:
        producer = Queue(producer_client, "eh")
        f = QueueForgetter(aclient, "eh")
        ready = QueueKeys("eh", "race").ready
        for _ in range(200):
            await aclient.delete(ready)  # empty again, so each round the forget may win
            await asyncio.gather(f.forget("race"), producer.dispatch("noop", None, queue="race"))
            assert await aclient.zcard(ready) == 1
            assert await aclient.sismember("eh:queues", "race"), "a queue with a ready job is not listed"
    finally:
        await producer_client.aclose()


async def test_the_telemetry_leader_forgets_unused_queues_after_its_retention(
    aclient: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module, "FORGET_EVERY", 0.0)
    q = Queue(aclient, "eh")
    await use_once(q, "nuq")
    await q.dispatch("noop", None, queue="busy")
    pub = Publisher(
        aclient,
        "eh",
        "m1",
        lambda: {"host": "h", "pid": 1, "status": "running", "supervisors": []},
        queue_retention=0.3,
    )
    end = time.monotonic() + 10
    while "nuq" in await known_queues(aclient, "eh"):
        assert time.monotonic() < end, "the leader never forgot the unused queue"
        await pub.tick()
        await asyncio.sleep(0.05)
    assert await known_queues(aclient, "eh") == ["busy"]
    never = Publisher(
        aclient, "eh", "m1", lambda: {"host": "h", "pid": 1, "status": "running", "supervisors": []}, queue_retention=0
    )
    await use_once(q, "kept")
    for _ in range(5):
        await never.tick()
    assert "kept" in await known_queues(aclient, "eh")


def test_queue_forget_refuses_a_queue_in_use_and_forgets_an_unused_one(procs: Processes, redis_url: str) -> None:
    async def setup() -> None:
        from evalharness.core.connection import async_client

        client = async_client(redis_url)
        try:
            q = Queue(client, "eh")
            await use_once(q, "nuq")
            await q.dispatch("noop", None, queue="evals")
        finally:
            await client.aclose()

    asyncio.run(setup())
    busy = procs.cli_here("queue", "forget", "evals")
    assert busy.returncode == 1, busy.stderr
    assert "'evals' is still in use (1 ready job)" in busy.stderr and "nothing was forgotten" in busy.stderr
    unknown = procs.cli_here("queue", "forget", "nope")
    assert unknown.returncode == 2 and "no queue named 'nope'" in unknown.stderr and "evals, nuq" in unknown.stderr
    done = procs.cli_here("queue", "forget", "nuq")
    assert done.returncode == 0 and "forgot queue nuq" in done.stdout
    snap = json.loads(procs.cli_here("status", "--json").stdout)
    assert [row["name"] for row in snap["queues"]] == ["evals"]
