"""Steering evalharnessd: pause and continue (signals and remote commands), scale, terminate,
restart with fresh config, graceful SIGTERM under load, several masters on one Redis."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
from support.dispatch import dispatch as dispatch_jobs
from support.procs import Processes, live_workers, wait_until

from evalharness.core.keys import QueueKeys

K = QueueKeys("eh", "t")


def dispatch(procs: Processes, jobs: list[dict[str, Any]]) -> None:
    dispatch_jobs(procs.env["EVALHARNESS_REDIS_URL"], *jobs)


def daemon(procs: Processes, redis_url: str, *args: str, workers: int = 1) -> Any:
    d = procs.start("-m", "evalharness.daemon.master", "--import", "support.testjobs", *args)
    wait_until(lambda: live_workers(redis_url, "t") >= workers, deadline=20, what="the daemon's workers")
    return d


def workers_paused(r: Any) -> bool:
    """Every worker's own heartbeat says it is paused (it got the signal, not only its master)."""
    infos = [json.loads(v) for v in r.hvals("eh:workers")]
    return bool(infos) and all(i["paused"] for i in infos)


def status(procs: Processes) -> int:
    return procs.cli_here("status").returncode


def masters(r: Any) -> list[dict[str, Any]]:
    return [json.loads(v) for v in r.hvals("eh:masters")]


def test_pause_stops_new_jobs_and_continue_resumes_them(procs: Processes, redis_url: str, r: Any) -> None:
    daemon(procs, redis_url, "--queue", "t=1")
    wait_until(lambda: status(procs) == 0, what="status running")
    paused = procs.cli_here("pause")
    assert paused.returncode == 0, paused.stderr
    wait_until(lambda: status(procs) == 1, what="status paused")
    wait_until(lambda: workers_paused(r), what="the worker paused")
    dispatch(procs, [{"name": "t.sleep", "payload": {"seconds": 0}, "id": "p1"}])
    # the worker stays alive and heartbeating but takes nothing
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert r.zscore(K.ready, "p1") is not None
        time.sleep(0.1)
    assert live_workers(redis_url, "t") == 1
    assert procs.cli_here("continue").returncode == 0
    wait_until(lambda: r.hget(K.results("s"), "p1"), what="the job after continue")
    wait_until(lambda: status(procs) == 0, what="status running again")
    # each command left the event the console's own action leaves, naming the master and the sender
    (name,) = [m["name"] for m in masters(r)]
    sent = [f for _, f in r.xrange("eh:events") if f["kind"].startswith("master_")]
    assert [f["kind"] for f in sent] == ["master_pause", "master_continue"]
    assert all(f["master"] == name and f["message"].startswith(f"{f['kind'][7:]} sent to {name} by ") for f in sent)


def test_sigusr2_pauses_and_sigcont_continues(procs: Processes, redis_url: str, r: Any) -> None:
    d = daemon(procs, redis_url, "--queue", "t=1")
    d.send_signal(signal.SIGUSR2)
    wait_until(lambda: masters(r) and masters(r)[0]["status"] == "paused", what="a paused master")
    wait_until(lambda: workers_paused(r), what="the worker paused")
    dispatch(procs, [{"name": "t.sleep", "payload": {"seconds": 0}, "id": "u1"}])
    time.sleep(1.0)  # long enough for an unpaused worker to have taken it
    assert r.hget(K.results("s"), "u1") is None
    d.send_signal(signal.SIGCONT)
    wait_until(lambda: r.hget(K.results("s"), "u1"), what="the job after SIGCONT")


@pytest.mark.slow
def test_sigterm_during_twenty_running_jobs_loses_none_and_exits_within_the_grace(
    procs: Processes, redis_url: str, r: Any
) -> None:
    d = daemon(procs, redis_url, "--queue", "t=2", "--concurrency", "10", "--grace", "20", workers=2)
    dispatch(procs, [{"name": "t.sleep", "payload": {"seconds": 2, "n": i}, "id": f"j{i}"} for i in range(20)])
    wait_until(lambda: r.zcard(K.reserved) == 20, what="20 running jobs")
    started = time.monotonic()
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    assert time.monotonic() - started < 20
    done = [json.loads(v) for v in r.hmget(K.results("s"), [f"j{i}" for i in range(20)]) if v]
    assert len(done) == 20 and all(x["result"]["attempts"] == 1 for x in done)
    assert r.zcard(K.reserved) == 0 and r.zcard(K.ready) == 0
    assert live_workers(redis_url, "t") == 0


def test_scale_overrides_a_pool_until_reset(procs: Processes, redis_url: str, r: Any) -> None:
    daemon(procs, redis_url, "--queue", "t=1")
    assert procs.cli_here("scale", "t", "t", "3").returncode == 0
    wait_until(lambda: live_workers(redis_url, "t") == 3, deadline=20, what="three workers")
    assert procs.cli_here("scale", "t", "t", "--reset").returncode == 0
    wait_until(lambda: live_workers(redis_url, "t") == 1, deadline=20, what="back to one worker")
    bad = procs.cli_here("scale", "nope", "t", "2")
    assert bad.returncode == 2 and "no running master" in bad.stderr


def test_two_masters_on_one_redis_both_appear_and_terminate_stops_one(procs: Processes, redis_url: str, r: Any) -> None:
    a = daemon(procs, redis_url, "--queue", "t=1")
    b = daemon(procs, redis_url, "--queue", "t=1", workers=2)
    wait_until(lambda: len(masters(r)) == 2, what="two master heartbeats")
    listed = procs.cli_here("supervisors", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert {m["pid"] for m in rows} == {a.pid, b.pid}
    table = procs.cli_here("supervisors")
    assert str(a.pid) in table.stdout and str(b.pid) in table.stdout
    name_a = next(m["name"] for m in rows if m["pid"] == a.pid)
    assert procs.cli_here("terminate", "--master", name_a).returncode == 0
    assert a.wait(timeout=30) == 0
    assert b.poll() is None


def test_sigusr1_replaces_every_worker(procs: Processes, redis_url: str, r: Any) -> None:
    d = daemon(procs, redis_url, "--queue", "t=2", workers=2)
    before = {json.loads(v)["pid"] for v in r.hvals("eh:workers")}
    d.send_signal(signal.SIGUSR1)

    def replaced() -> bool:
        pids = {json.loads(v)["pid"] for v in r.hvals("eh:workers")}
        return len(pids) == 2 and not pids & before and live_workers(redis_url, "t") == 2

    wait_until(replaced, deadline=30, what="two new workers")


def test_a_stop_soon_after_a_restart_waits_for_the_replaced_worker_to_finish_its_job(
    procs: Processes, redis_url: str, r: Any
) -> None:
    """A restart retires the running workers (they finish their jobs); a SIGTERM meanwhile must
    wait for them too, not exit and leave a worker running jobs with no master."""
    d = daemon(procs, redis_url, "--queue", "t=1", "--grace", "20")
    (old,) = {json.loads(v)["pid"] for v in r.hvals("eh:workers")}
    dispatch(procs, [{"name": "t.sleep", "payload": {"seconds": 3}, "id": "long"}])
    wait_until(lambda: r.zcard(K.reserved) == 1, what="the job running")
    d.send_signal(signal.SIGUSR1)
    wait_until(
        lambda: old not in {json.loads(v)["pid"] for v in r.hvals("eh:workers")} or len(r.hvals("eh:workers")) == 2,
        what="the replacement worker",
    )
    d.send_signal(signal.SIGTERM)
    wait_until(lambda: masters(r) and masters(r)[0]["status"] == "stopping", what="the master stopping")
    assert d.wait(timeout=30) == 0
    # the master exited only once the job had ended where it ran, in the retired worker
    done = json.loads(r.hget(K.results("s"), "long"))
    assert done["result"]["pid"] == old and done["result"]["attempts"] == 1
    with pytest.raises(ProcessLookupError):
        os.kill(old, 0)
