"""Telemetry with real workers and a real daemon: the snapshot's numbers agree exactly with a
known workload, the daemon publishes while someone listens, history is written once a minute by
one leader and survives a daemon restart, and events are recorded."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest
import redis
from support.dispatch import dispatch as dispatch_jobs
from support.inproc import make_worker
from support.procs import Processes, live_workers, wait_until

from evalharness.core.connection import async_client
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import JobRequest
from evalharness.core.telemetry import collect_snapshot, history_key, read_events

K = QueueKeys("eh", "t")


class FakeClock:
    """Epoch seconds that start at the real time (the server's clock stamps the jobs) and move
    only when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def catch_up(self) -> None:
        """No earlier than the real time (after something the server stamped)."""
        self.now = max(self.now, time.time())


def dispatch(procs: Processes, jobs: list[dict[str, Any]]) -> None:
    dispatch_jobs(procs.env["EVALHARNESS_REDIS_URL"], *jobs, sink=None)


def status_json(procs: Processes) -> tuple[int, dict[str, Any]]:
    done = procs.cli("status", "--json")
    return done.returncode, json.loads(done.stdout)


@pytest.mark.slow
async def test_the_snapshot_agrees_exactly_with_a_known_workload(procs: Processes, redis_url: str) -> None:
    plan = ["fail"] * 20 + ["timeout"] * 5 + ["ok"] * 275
    dispatch(procs, [{"name": "t.outcome", "payload": {"n": i, "do": do}} for i, do in enumerate(plan)])
    code, snap = status_json(procs)
    assert code == 2 and snap["overview"]["status"] == "inactive"
    (q,) = snap["queues"]
    assert (q["ready"], q["reserved"], q["completed"], q["failed"]) == (300, 0, 0, 0)
    worker = make_worker(redis_url, max_jobs=200, concurrency=10)
    started = time.time()
    assert await asyncio.wait_for(worker.run(), 60) == 0  # it ran exactly 200 jobs, then recycled
    assert worker.processed == 200
    code, snap = status_json(procs)
    read = time.time()
    (q,) = snap["queues"]
    assert q["ready"] == 100 and q["reserved"] == 0 and q["delayed"] == 0
    assert q["completed"] == 175 and q["failed"] == 25 and q["timeouts"] == 5
    assert q["past_hour"] == {"completed": 175, "failed": 25, "timeouts": 5, "retries": 0, "rate_limited": 0}
    assert snap["overview"]["timeouts_past_hour"] == 5
    assert snap["overview"]["jobs_past_hour"] == 200
    assert snap["overview"]["failed_past_7_days"] == 25
    assert snap["overview"]["max_wait"]["queue"] == "t" and snap["overview"]["max_wait"]["seconds"] > 0
    # the rate is this minute's count plus the unelapsed share of the last one: exactly 200 when the
    # jobs ran and the status was read within one minute, a share of them when a minute began between
    if int(started // 60) == int(read // 60):
        assert q["jobs_per_minute"] == pytest.approx(200, abs=0.5)
    else:
        assert 0 < q["jobs_per_minute"] <= 200
    assert q["runtime"]["p50"] is not None and 0 < q["runtime"]["p50"] <= 0.1
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    kinds = [f["kind"] for _, f in r.xrange("eh:events")]
    r.close()
    assert kinds.count("job_failed") == 20 and kinds.count("job_timed_out") == 5


def test_the_daemon_publishes_while_someone_listens_and_keeps_history(procs: Processes, redis_url: str) -> None:
    daemon = procs.start("-m", "evalharness.daemon.master", "--queue", "t=1", "--import", "support.testjobs")
    wait_until(lambda: live_workers(redis_url, "t") == 1, deadline=20, what="the worker")

    async def listen() -> list[dict[str, Any]]:
        client = async_client(redis_url)
        got: list[dict[str, Any]] = []
        async with client.pubsub() as ps:
            await ps.subscribe("eh:telemetry")
            deadline = time.monotonic() + 10
            while len(got) < 2 and time.monotonic() < deadline:
                msg = await ps.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg:
                    got.append(json.loads(msg["data"]))
        await client.aclose()
        return got

    snaps = asyncio.run(listen())
    assert len(snaps) == 2
    assert snaps[0]["schema"] == "evalharness.telemetry.v1"
    assert 0.5 <= snaps[1]["at"] - snaps[0]["at"] <= 2.0
    (master,) = snaps[1]["masters"]
    assert master["status"] == "running" and master["supervisors"][0]["processes"] == 1
    assert snaps[1]["overview"]["status"] == "running"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    # the leader writes the entry for the minute that just closed
    entry = json.loads(wait_until(lambda: r.lindex(history_key("eh"), -1), deadline=10, what="a history entry"))  # type: ignore[arg-type]
    assert entry["minute"] == int(time.time() // 60) - 1 or entry["minute"] == int(time.time() // 60) - 2
    assert entry["schema"] == "evalharness.telemetry.history.v1" and isinstance(entry["queues"], dict)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    # a restarted daemon keeps the history and does not write the same minute twice
    before = r.lrange(history_key("eh"), 0, -1)
    again = procs.start("-m", "evalharness.daemon.master", "--queue", "t=1", "--import", "support.testjobs")
    wait_until(lambda: live_workers(redis_url, "t") == 1, deadline=20, what="the worker again")
    wait_until(
        lambda: r.hget("eh:masters", r.hkeys("eh:masters")[0]) if r.hkeys("eh:masters") else None,
        what="the master heartbeat",
    )
    after = r.lrange(history_key("eh"), 0, -1)
    assert after[: len(before)] == before
    minutes = [json.loads(x)["minute"] for x in after]
    assert len(minutes) == len(set(minutes))
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=30) == 0
    r.close()


async def test_a_long_wait_fires_one_event_per_crossing(redis_url: str, aclient: Any) -> None:
    from evalharness.core.queue import Queue
    from evalharness.daemon.publisher import Publisher

    q = Queue(aclient, "eh")
    await q.dispatch("t.sleep", {"seconds": 0}, queue="t")
    clock = FakeClock()  # read after the dispatch: the job's wait starts at zero
    pub = Publisher(
        aclient,
        "eh",
        "m1",
        lambda: {"host": "h", "pid": 1, "status": "running", "supervisors": []},
        {"t": 0.2},
        clock=clock,
    )
    await pub.tick()
    clock.advance(0.25)  # the oldest job's wait passes the 0.2 s threshold
    for _ in range(3):
        await pub.tick()
    events = [e for e in await read_events(aclient, "eh") if e["kind"] == "long_wait"]
    assert len(events) == 1 and events[0]["queue"] == "t"
    # the queue drains, then waits too long again: a second crossing, a second event
    popped = await q.pop("t", 1, 30, "w")
    await q.ack("t", "w", [(popped.jobs[0].id, "")])
    await pub.tick()
    await q.dispatch("t.sleep", {"seconds": 1}, queue="t")
    clock.catch_up()
    clock.advance(0.25)
    await pub.tick()
    events = [e for e in await read_events(aclient, "eh") if e["kind"] == "long_wait"]
    assert len(events) == 2


async def test_collecting_a_snapshot_of_an_empty_system(aclient: Any) -> None:
    snap = await collect_snapshot(aclient, "eh")
    assert snap["overview"]["status"] == "inactive" and snap["queues"] == [] and snap["masters"] == []


def test_prometheus_exposition_serves_the_snapshot(procs: Processes, redis_url: str) -> None:
    import re
    import urllib.request

    dispatch(procs, [{"name": "t.sleep", "payload": {"seconds": 0, "n": i}} for i in range(3)])
    server = procs.start("-m", "evalharness.cli", "metrics", "--serve", "0")
    line = server.stderr.readline() if server.stderr else ""
    url = re.search(r"http://\S+/metrics", line)
    assert url, line
    body = urllib.request.urlopen(url.group(0), timeout=10).read().decode()
    assert 'evalharness_queue_ready{queue="t"} 3.0' in body
    assert 'evalharness_queue_held{queue="t"} 0.0' in body  # plain jobs: no batch holds any back
    assert "evalharness_queue_completed_total" in body


def test_metrics_serve_on_a_port_in_use_or_an_unknown_address_is_a_one_line_error(procs: Processes) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for args, words in (
            (("--serve", port), f"--serve {port} --host 127.0.0.1: cannot listen there (Address already in use)"),
            (
                ("--serve", "0", "--host", "no-such-host.invalid"),
                "--serve 0 --host no-such-host.invalid: cannot listen",
            ),
        ):
            done = procs.cli_here("metrics", *args)
            assert done.returncode == 2, done.stderr
            assert words in done.stderr and "Traceback" not in done.stderr


def test_a_percentile_read_from_the_buckets_stays_within_the_observed_runtimes() -> None:
    from evalharness.core.telemetry import histogram_quantile

    # 20 runtimes of 3.994 s all fall in the 2.5-5 s bucket: interpolation alone says 4.875 s
    assert histogram_quantile({10: 20}, 0.95) == pytest.approx(4.875)
    assert histogram_quantile({10: 20}, 0.95, low=3.994, high=3.994) == pytest.approx(3.994)
    assert histogram_quantile({10: 20}, 0.05, low=3.9, high=3.994) == pytest.approx(3.9)
    assert histogram_quantile({}, 0.5, low=1.0, high=2.0) is None


async def test_the_snapshot_never_shows_a_p95_above_the_max_nor_a_p50_below_the_min(aclient: Any) -> None:
    from evalharness.core.queue import Queue

    q = Queue(aclient, "eh")
    await q.dispatch_many(JobRequest("t.noop", {"n": i}, queue="t") for i in range(40))
    popped = (await q.pop("t", 40, 30, "w")).jobs
    # 20 jobs at 3.994 s (bucket 2.5-5 s) and 20 at 2.6 s: the same bucket, observed 2.6 to 3.994 s
    await q.ack("t", "w", [(j.id, "", 3994 if i % 2 else 2600) for i, j in enumerate(popped)])
    snap = await collect_snapshot(aclient, "eh")
    (row,) = snap["queues"]
    runtime = row["runtime"]
    assert runtime["max"] == pytest.approx(3.994)
    assert runtime["p95"] is not None and runtime["p95"] <= runtime["max"]
    assert runtime["p50"] is not None and 2.6 <= runtime["p50"] <= runtime["p95"]
    assert snap["overview"]["failed_past_hour"] == 0 and row["failed_total"] == 0
