"""What one dispatch costs the server: a single dispatch is one round trip of at most five
commands, and a dispatch still works, once per job, after the server forgot its scripts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
import redis
import redis.exceptions

from evalharness.core.jobs import Job, JobOptions, new_job_id
from evalharness.core.queue import JobRequest, Queue


@pytest.fixture
def queue(aclient: Any) -> Queue:
    return Queue(aclient, prefix="t")


async def commands(client: Any) -> int:
    stats = await client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Requests the asyncio clients send (a pipeline is one): the round trips.  Every request is
    one write to the connection's stream, whoever packed it."""
    sent: list[int] = []
    original = asyncio.StreamWriter.writelines

    def counting(self: Any, data: Any) -> Any:
        sent.append(1)
        return original(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "writelines", counting)
    return sent


async def test_a_single_dispatch_is_one_round_trip_of_at_most_five_commands(
    queue: Queue, aclient: Any, sends: list[int]
) -> None:
    await queue.dispatch("noop", 0, queue="q")  # the queue is listed, its lane waits, the script is loaded
    before = await commands(aclient)
    sends.clear()
    await queue.dispatch("noop", 1, queue="q")
    assert len(sends) == 1
    assert await commands(aclient) - before <= 5
    stats = await queue.stats("q")
    assert (stats.ready, stats.counters["dispatched"]) == (2, 2)
    assert "q" in await queue.known_queues()


async def test_a_dispatch_to_an_empty_lane_leaves_one_wake_token(queue: Queue, aclient: Any) -> None:
    keys = queue.keys("q")
    await queue.dispatch("noop", 0, queue="q")
    await queue.dispatch("noop", 1, queue="q")  # the lane waits already: no second token
    assert await aclient.llen(keys.wake) == 1
    popped = await queue.pop("q", 10, 30, "w")
    assert len(popped.jobs) == 2
    assert await aclient.llen(keys.wake) == 0  # the pop that emptied the queue took the tokens


async def test_dispatch_after_the_server_forgot_its_scripts_adds_each_job_once(queue: Queue, aclient: Any) -> None:
    await queue.dispatch("noop", 0, queue="q")
    await aclient.script_flush()
    ids = await queue.dispatch_many(JobRequest("noop", i, queue="q") for i in range(1200))  # three chunks, pipelined
    assert len(set(ids)) == 1200
    await aclient.script_flush()
    await queue.dispatch("noop", 1, queue="q", id="chosen")
    assert await queue.dispatch("noop", 1, queue="q", id="chosen") == "chosen"  # a chosen id is checked
    stats = await queue.stats("q")
    assert (stats.ready, stats.counters["dispatched"], stats.counters["deduplicated"]) == (1202, 1202, 1)


async def test_popping_and_acking_many_jobs_keeps_every_index_exact(queue: Queue, aclient: Any) -> None:
    # one LPOP for the lane, one ZREM and one ZADD for the indexes, one ZREM and one DEL on ack
    await queue.dispatch_many(JobRequest("noop", i, queue="q") for i in range(30))
    popped = (await queue.pop("q", 25, 30, "w")).jobs
    assert [j.payload for j in popped] == list(range(25))
    assert all(j.attempts == 1 for j in popped)
    stats = await queue.stats("q")
    assert (stats.ready, stats.reserved) == (5, 25)
    done = [(j.id, "", 1) for j in popped]
    assert await queue.ack("q", "w", [*done, done[0]]) == [popped[0].id]  # a repeat in one call is stale
    stats = await queue.stats("q")
    assert (stats.ready, stats.reserved, stats.counters["completed"]) == (5, 0, 25)
    assert await aclient.exists(*(queue.keys("q").job(j.id) for j in popped)) == 0
    rest = (await queue.pop("q", 25, 30, "w")).jobs
    assert [j.payload for j in rest] == list(range(25, 30))
    assert await aclient.llen(queue.keys("q").lanes) == 0


async def test_a_bulk_dispatch_costs_one_command_per_plain_job_and_keeps_every_job_in_order(
    queue: Queue, aclient: Any
) -> None:
    await queue.dispatch("noop", -1, queue="q")
    requests = [JobRequest("noop", i, queue="q") for i in range(1000)]
    before = await commands(aclient)
    ids = await queue.dispatch_many(requests)
    # an HSET per job; per call (one of 50, then of up to 500) one RPUSH, ZADD, HINCRBY and the EVALSHA
    assert await commands(aclient) - before <= 1000 + 3 * 4
    assert await aclient.lrange(queue.keys("q").lane("_"), 1, -1) == ids
    # plain and extended jobs, several lanes, interleaved: each id in its place, each job in its lane
    mixed = [
        JobRequest("noop", 0, queue="q"),
        JobRequest("noop", 1, queue="q", id="chosen"),
        JobRequest("noop", 2, queue="q", tenant="t1"),
        JobRequest("noop", 3, queue="q", tenant="t1"),
        JobRequest("noop", 4, queue="q", delay=60),
        JobRequest("noop", 5, queue="q"),
        JobRequest("noop", 6, queue="q", id="chosen"),
    ]
    got = await queue.dispatch_many(mixed)
    assert got[1] == got[6] == "chosen"
    assert len(set(got)) == 6
    assert await aclient.lrange(queue.keys("q").lane("tenant:t1"), 0, -1) == got[2:4]
    assert (await aclient.lrange(queue.keys("q").lane("_"), -3, -1)) == [got[0], "chosen", got[5]]
    stats = await queue.stats("q")
    assert (stats.ready, stats.delayed, stats.counters["deduplicated"]) == (1006, 1, 1)
    popped = await queue.pop("q", 2000, 30, "w")
    assert [j.payload for j in popped.jobs if j.lane == "_"][-3:] == [0, 1, 5]


def test_an_envelope_is_the_compact_json_of_the_job() -> None:
    jobs = [
        Job(
            id=new_job_id(), name="a.b", payload={"x": [1, 2.5, "é"]}, queue="q", options=JobOptions(), enqueued_at=1.5
        ),
        Job(
            id='we"ird',
            name="n\n",
            payload=None,
            queue="q",
            options=JobOptions(tries=1, backoff=(2.0,)),
            enqueued_at=1234567890.123456,
            batch="b",
            tenant="t",
            tags=("x", "y"),
            key="k",
            retry_of="r",
            options_given=False,
            overrides={"tries": 2},
        ),
    ]
    scalars = [0, -7, 2**70, 1.5, float("nan"), float("inf"), "s", "", True, None, [1, "x"], {"k": 1.25}]
    jobs += [replace(jobs[0], payload=p, enqueued_at=p if isinstance(p, float) else 1.0) for p in scalars]
    for job in jobs:
        expected = {
            "id": job.id,
            "name": job.name,
            "payload": job.payload,
            "queue": job.queue,
            "options": job.options.to_json() if job.options_given else None,
            "overrides": job.overrides or None,
            "enqueued_at": job.enqueued_at,
            "batch": job.batch,
            "tenant": job.tenant,
            "tags": list(job.tags),
            "key": job.key,
            "retry_of": job.retry_of,
        }
        assert job.envelope() == json.dumps(expected, separators=(",", ":"))
        assert Job.from_envelope(job.envelope()).id == job.id


async def test_an_ack_stores_each_result_under_ids_of_any_text(queue: Queue, aclient: Any) -> None:
    ids = ["plain", "with:colons:1:2", "naïve-ünïcode", "tab\there"]
    for i, job_id in enumerate(ids):
        await queue.dispatch("noop", i, queue="q", id=job_id, result_to=("s", str(i), 60))
    popped = (await queue.pop("q", 10, 30, "w")).jobs
    assert sorted(j.id for j in popped) == sorted(ids)
    results = ['{"a":"x:y"}', "", "[1,\t2]", "3"]
    assert await queue.ack("q", "w", [(j, results[i], 7) for i, j in enumerate(ids)]) == []
    assert await queue.results("q", "s", ["0", "1", "2", "3"]) == [
        {"result": {"a": "x:y"}},
        {"result": None},
        {"result": [1, 2]},
        {"result": 3},
    ]
    assert (await queue.stats("q")).counters["completed"] == 4


async def test_a_pop_sent_behind_a_wait_takes_nothing_while_its_worker_holds(queue: Queue, aclient: Any) -> None:
    await queue.dispatch_many(JobRequest("noop", i, queue="q") for i in range(3))
    keys = queue.keys("q")
    await aclient.set(keys.hold("w"), "1")
    held = await queue.scripts.run([queue.pop_call("q", 10, 30, "w", waiting=True)])
    assert queue.parse_pop(held[0]).jobs == []
    other = await queue.scripts.run([queue.pop_call("q", 1, 30, "other", waiting=True)])  # its own hold only
    assert len(queue.parse_pop(other[0]).jobs) == 1
    await aclient.delete(keys.hold("w"))
    again = await queue.scripts.run([queue.pop_call("q", 10, 30, "w", waiting=True)])
    assert len(queue.parse_pop(again[0]).jobs) == 2


def test_script_calls_go_on_the_wire_as_redis_py_would_write_them(aclient: Any) -> None:
    """Script calls are packed by the engine (every dispatch, pop and ack): byte for byte what
    redis-py's ``pack_command`` writes, and a value redis-py refuses is refused the same way."""
    scripts = Queue(aclient, prefix="t").scripts
    conn = aclient.connection_pool.make_connection()
    keys, args = ["t:q:lanes", "ключ"], ["x", 7, -3, 2.5, 1e-07, b"\x00raw", "é" * 3000, ""]
    sha = scripts["dispatch"].sha
    assert scripts._pack("dispatch", keys, args) == b"".join(conn.pack_command("EVALSHA", sha, 2, *keys, *args))
    for bad in (True, None, [1]):
        with pytest.raises(redis.exceptions.DataError):
            scripts._pack("dispatch", keys, [bad])


async def test_an_error_a_script_raises_stays_in_its_place_among_the_replies(queue: Queue, aclient: Any) -> None:
    await queue.dispatch("noop", 0, queue="q")
    good = ("dispatch", queue._dispatch_keys(queue.keys("q")), [queue.keys("q").base, 0])
    bad = ("dispatch", good[1], [queue.keys("q").base, 0, "?", "not a group"])
    replies = await queue.scripts.run([good, bad, good], raise_on_error=False)
    assert replies[0] == replies[2] == []
    assert isinstance(replies[1], redis.exceptions.ResponseError)
    with pytest.raises(redis.exceptions.ResponseError):
        await queue.scripts.run([bad])
    await queue.dispatch("noop", 1, queue="q")  # the connection is still in step
    assert (await queue.stats("q")).ready == 2
