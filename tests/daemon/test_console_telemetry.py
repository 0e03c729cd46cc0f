"""What the console's Supervisors and Workload screens read from the daemon: masters listed as
lost until they are forgotten, their supervisors' memory and jobs done from the workers'
heartbeats, and what a real evalharnessd and its worker publish for them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from support.procs import Processes, live_workers, wait_until

from evalharness.core.admin import Admin
from evalharness.core.queue import Queue
from evalharness.core.telemetry import MASTER_FORGET, MASTER_STALE, collect_snapshot, masters_key
from evalharness.daemon.publisher import Publisher


def beat(name: str, host: str, pid: int, at: float, pids: list[int]) -> str:
    return json.dumps(
        {
            "name": name,
            "host": host,
            "pid": pid,
            "status": "running",
            "heartbeat_at": at,
            "started_at": at - 100,
            "grace": 90.0,
            "environment": "staging",
            "supervisors": [
                {
                    "name": "s",
                    "queues": ["q"],
                    "processes": len(pids),
                    "per_queue": {"q": len(pids)},
                    "targets": {"q": len(pids)},
                    "overrides": {"q": 3},
                    "balance": "auto",
                    "pids": pids,
                    "min_processes": 1,
                    "max_processes": 4,
                    "last_balance": {"pool": "q", "from": 1, "to": 2, "at": at - 5},
                }
            ],
        }
    )


async def test_masters_read_lost_ones_and_join_their_workers(aclient: Any) -> None:
    now = time.time()
    await aclient.hset(
        masters_key("eh"),
        mapping={
            "a": beat("a", "h1", 10, now - 1, [11, 12]),
            "b": beat("b", "h2", 20, now - MASTER_STALE - 25, [21]),
        },
    )
    workers = {
        "w11": {"host": "h1", "pid": 11, "rss_mb": 100.5, "processed": 40, "running": 1},
        "w12": {"host": "h1", "pid": 12, "rss_mb": 50.0, "processed": 2, "running": 0},
        "w99": {"host": "h2", "pid": 11, "rss_mb": 999.0, "processed": 999, "running": 1},  # another host's pid 11
    }
    await aclient.hset("eh:workers", mapping={k: json.dumps(v) for k, v in workers.items()})
    a, b = await Admin(aclient, "eh").masters(now)
    assert (a.name, a.status, a.environment, a.grace) == ("a", "running", "staging", 90.0)
    (sup,) = a.supervisors
    assert (sup.memory_mb, sup.jobs_done, sup.busy, sup.overrides) == (150.5, 42, 1, {"q": 3})
    assert sup.last_balance == {"pool": "q", "from": 1, "to": 2, "at": pytest.approx(now - 6, abs=0.01)}
    assert b.lost and b.status == "lost" and b.supervisors[0].jobs_done is None


async def test_the_leader_keeps_a_silent_master_listed_until_it_is_forgotten(aclient: Any) -> None:
    now = time.time()
    await aclient.hset(
        masters_key("eh"),
        mapping={
            "me": beat("me", "h", 1, now, []),
            "lost": beat("lost", "h", 2, now - 60, []),
            "gone": beat("gone", "h", 3, now - MASTER_FORGET - 1, []),
        },
    )
    publisher = Publisher(aclient, "eh", "me", lambda: {})
    await publisher._forget_dead_masters({"at": now, "masters": [{"name": "me"}]})
    assert sorted(await aclient.hkeys(masters_key("eh"))) == ["lost", "me"]


async def test_a_queues_busy_processes_and_past_hour_counts(aclient: Any) -> None:
    await Queue(aclient, "eh").dispatch("noop", {}, queue="q")
    now_ms = int(time.time() * 1000)
    for wid, running in (("w1", 1), ("w2", 0)):
        await aclient.zadd("eh:{q:q}:workers", {wid: now_ms + 60_000})
        await aclient.hset("eh:workers", wid, json.dumps({"concurrency": 1, "running": running}))
    minute = int(time.time() // 60)
    await aclient.hset(f"eh:{{q:q}}:m:{minute}", mapping={"timeouts": 2, "retries": 3, "rate_limited": 4})
    snap = await collect_snapshot(aclient, "eh")
    (q,) = snap["queues"]
    assert (q["processes"], q["busy"], snap["overview"]["busy"]) == (2, 1, 1)
    assert q["past_hour"]["timeouts"] == 2 and q["past_hour"]["retries"] == 3 and q["past_hour"]["rate_limited"] == 4
    assert snap["overview"]["timeouts_past_hour"] == 2


@pytest.mark.slow
def test_a_real_daemon_publishes_what_the_supervisors_screen_shows(procs: Processes, redis_url: str) -> None:
    procs.start(
        "-m",
        "evalharness.daemon.master",
        "--queue",
        "t=1",
        "--import",
        "support.testjobs",
        "--grace",
        "42",
        "--long-wait",
        "t=7",
        "--log-level",
        "warning",
    )
    wait_until(lambda: live_workers(redis_url, "t") == 1, deadline=30, what="the worker")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:

        def described() -> Any:
            masters = [json.loads(v) for v in r.hvals("eh:masters")]
            return masters if masters and masters[0]["supervisors"][0]["pids"] else None

        (master,) = wait_until(described, deadline=20, what="a heartbeat with the worker's pid")  # type: ignore[misc]
        assert master["grace"] == 42 and master["environment"] == "production"
        (pid,) = master["supervisors"][0]["pids"]
        workers = [json.loads(v) for v in r.hvals("eh:workers")]
        (worker,) = [w for w in workers if w["pid"] == pid]
        assert worker["rss_mb"] > 0 and worker["running"] == 0
        # the published snapshot carries the queue's long-wait threshold
        sub = r.pubsub()
        sub.subscribe("eh:telemetry")
        deadline = time.monotonic() + 10
        snapshot = None
        while snapshot is None and time.monotonic() < deadline:
            message = sub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message:
                snapshot = json.loads(message["data"])
        sub.close()
        assert snapshot is not None
        (queue,) = [q for q in snapshot["queues"] if q["name"] == "t"]
        assert queue["long_wait"] == 7
    finally:
        r.close()
