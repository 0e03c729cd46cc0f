"""Auto-balancing with real processes: a backlog on one queue draws processes to it at once and
gives them back when it drains, while min and max hold throughout, and every change is on the
event stream with its reason."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from support.dispatch import dispatch
from support.procs import Processes, wait_until

CONFIG = """
[supervisors.llm]
queues = ["a", "b"]
balance = "auto"
auto_scaling_strategy = "time"
min_processes = 1
max_processes = 4
balance_cooldown = 1
balance_max_shift = 1
concurrency = 2
"""


def per_queue(r: Any) -> dict[str, int]:
    now = time.time() * 1000
    return {q: int(r.zcount(f"eh:{{q:{q}}}:workers", now, "+inf")) for q in ("a", "b")}


@pytest.mark.slow
def test_a_backlog_draws_processes_and_gives_them_back(procs: Processes, redis_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "evalharness.toml"
    cfg.write_text(CONFIG)
    d = procs.start(
        "-m", "evalharness.daemon.master", "--config", str(cfg), "--import", "support.testjobs", "--log-level", "info"
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: per_queue(r) == {"a": 1, "b": 1}, deadline=20, what="one process per queue at the start")
    samples: list[dict[str, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(per_queue(r))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        dispatch(
            redis_url,
            *({"name": "t.sleep", "payload": {"seconds": 1, "n": i}} for i in range(40)),
            queue="a",
            sink=None,
        )
        # max 4 minus b's minimum of 1: queue a grows to 3 in one step (its 40 s backlog is late)
        wait_until(lambda: per_queue(r)["a"] == 3, deadline=60, what="three processes on the busy queue")
        # drained: back to the minimum
        wait_until(
            lambda: r.zcard("eh:{q:a}:ready") == 0 and r.zcard("eh:{q:a}:reserved") == 0,
            deadline=40,
            what="the backlog to drain",
        )
        wait_until(lambda: per_queue(r) == {"a": 1, "b": 1}, deadline=30, what="back to one process per queue")
    finally:
        stop.set()
        sampler.join()
    assert samples, "no samples"
    assert all(s["b"] >= 1 for s in samples[5:]), "queue b fell below its minimum"
    assert max(s["a"] + s["b"] for s in samples) <= 4, "the supervisor went over max_processes"
    heartbeat = json.loads(next(iter(r.hvals("eh:masters"))))
    assert heartbeat["supervisors"][0]["balance"] == "auto"
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    r.close()


def test_a_supervisors_own_worker_limits_apply(procs: Processes, redis_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "evalharness.toml"
    cfg.write_text('[supervisors.llm]\nqueues = ["a"]\nprocesses = 1\nmax_jobs = 2\nconcurrency = 1\n')
    d = procs.start("-m", "evalharness.daemon.master", "--config", str(cfg), "--import", "support.testjobs")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: per_queue(r)["a"] == 1, deadline=20, what="the worker")
    dispatch(
        redis_url,
        *({"name": "t.sleep", "payload": {"seconds": 0, "n": i}, "field": str(i)} for i in range(6)),
        queue="a",
    )
    wait_until(lambda: r.hlen("eh:{q:a}:results:s") == 6, deadline=30, what="six jobs")
    # max_jobs = 2 from the supervisor's table: three workers in turn served the six jobs
    pids = {json.loads(v)["result"]["pid"] for v in r.hvals("eh:{q:a}:results:s")}
    assert len(pids) == 3
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    r.close()


def scale_events(r: Any) -> list[dict[str, str]]:
    return [dict(f) for _, f in r.xrange("eh:events") if f.get("kind") == "supervisor_scaled"]


@pytest.mark.slow
def test_every_scale_decision_is_an_event_saying_why(procs: Processes, redis_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "evalharness.toml"
    cfg.write_text(CONFIG)
    d = procs.start(
        "-m", "evalharness.daemon.master", "--config", str(cfg), "--import", "support.testjobs", "--log-level", "info"
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: per_queue(r) == {"a": 1, "b": 1}, deadline=60, what="one process per queue at the start")
    assert scale_events(r) == []  # starting at the minimum is no decision
    dispatch(
        redis_url,
        *({"name": "t.sleep", "payload": {"seconds": 1, "n": i}} for i in range(40)),
        queue="a",
        sink=None,
    )
    up = wait_until(
        lambda: [e for e in scale_events(r) if e["reason"] == "backlog"], deadline=30, what="a backlog event"
    )[0]  # type: ignore[index]
    # 40 jobs of 1 s on one process of two slots: about 20 s to clear, far past the 1 s horizon
    assert up["supervisor"] == "llm" and up["queue"] == "a"
    assert (up["from"], up["to"]) == ("1", "3")
    assert int(up["ready"]) + int(up["running"]) >= 30
    assert float(up["est_clear"]) > 1.0
    assert float(up["est_clear_after"]) < float(up["est_clear"])
    assert "a 1 → 3 processes: backlog late" in up["message"]
    # drained: the surplus goes, back to the minimum, each step an event
    wait_until(
        lambda: r.zcard("eh:{q:a}:ready") == 0 and r.zcard("eh:{q:a}:reserved") == 0,
        deadline=60,
        what="the backlog to drain",
    )
    wait_until(lambda: per_queue(r) == {"a": 1, "b": 1}, deadline=30, what="back to one process per queue")
    downs = [e for e in scale_events(r) if int(e["to"]) < int(e["from"])]
    assert downs and downs[-1]["to"] == "1"
    assert {e["reason"] for e in downs} <= {"idle", "surplus"}
    assert all(e["queue"] == "a" for e in downs)
    # every change the master made is there: the pool went 1 -> 3 -> ... -> 1 without gaps
    steps = [(int(e["from"]), int(e["to"])) for e in scale_events(r) if e["queue"] == "a"]
    assert steps[0] == (1, 3)
    assert all(a[1] == b[0] for a, b in zip(steps, steps[1:], strict=False))
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=60) == 0
    r.close()
