"""Pausing, continuing and clearing one queue: a paused queue keeps taking dispatches while no
worker anywhere takes its jobs; a clear removes exactly the ready jobs asked for, in one step,
with batch counters that stay right; each writes an event and shows in status, telemetry and
Prometheus."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from support.procs import Processes, live_workers, wait_until

from evalharness.cli.status import render
from evalharness.core.batches import Batches
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import JobRequest, Queue
from evalharness.core.queue_ops import QueueOps
from evalharness.core.telemetry import collect_snapshot, read_events

K = QueueKeys("eh", "pq")


def events_of(r: Any, kind: str) -> list[dict[str, str]]:
    return [fields for _, fields in r.xrange("eh:events") if fields.get("kind") == kind]


# -- the engine ----------------------------------------------------------------------------------


async def test_a_paused_queue_takes_dispatches_and_hands_out_no_job(aclient: Any) -> None:
    q, ops = Queue(aclient, "eh"), QueueOps(aclient, "eh")
    for i in range(3):
        await q.dispatch("t.noop", i, queue="pq")
    await q.dispatch("t.noop", "running", queue="pq")
    (running,) = (await q.pop("pq", 1, 30, "w1")).jobs
    result = await ops.pause("pq", by="host:1")
    assert result.ok and result.action == "pause_queue" and result.skipped == 0
    assert result.message == "paused queue pq: 3 ready jobs stay queued; 1 running finishes"
    assert (await ops.state("pq")).paused and (await ops.state("pq")).by == "host:1"
    # idle workers have nothing to wake for
    assert await aclient.llen(K.wake) == 0

    for i in range(2):
        await q.dispatch("t.noop", f"late-{i}", queue="pq")
    await q.dispatch("t.noop", "due", queue="pq", delay=0.01)
    assert await aclient.zcard(K.ready) == 5
    end = time.monotonic() + 5
    while await aclient.zcard(K.delayed):
        assert time.monotonic() < end, "a paused queue's due delayed jobs were not made ready"
        popped = await q.pop("pq", 10, 30, "w2")
        assert popped.jobs == []
    # maintenance goes on (the due job became ready), no job left the queue
    assert await aclient.zcard(K.ready) == 6
    assert await aclient.zcard(K.reserved) == 1
    # the running job finishes as usual
    assert await q.ack("pq", "w1", [(running.id, "", 1)]) == []

    again = await ops.pause("pq")
    assert again.skipped == 1 and "already paused" in again.message
    resumed = await ops.resume("pq", by="host:2")
    assert resumed.message == "continued queue pq: 6 ready jobs can start"
    # idle workers are woken at once
    assert await aclient.llen(K.wake) == 6
    assert len((await q.pop("pq", 10, 30, "w2")).jobs) == 6
    assert (await ops.resume("pq")).skipped == 1

    events = [e for e in reversed(await read_events(aclient, "eh")) if e["kind"].startswith("queue_")]
    assert [e["kind"] for e in events] == ["queue_paused", "queue_continued"]
    assert events[0]["queue"] == "pq" and events[0]["ready"] == "3" and events[0]["running"] == "1"
    assert events[0]["by"] == "host:1" and events[1]["by"] == "host:2"


async def test_pausing_one_queue_leaves_the_others_served(aclient: Any) -> None:
    q, ops = Queue(aclient, "eh"), QueueOps(aclient, "eh")
    await q.dispatch("t.noop", 1, queue="pq")
    await q.dispatch("t.noop", 2, queue="other")
    await ops.pause("pq")
    assert (await q.pop("pq", 5, 30, "w")).jobs == []
    assert len((await q.pop("other", 5, 30, "w")).jobs) == 1


async def test_a_flag_set_by_hand_pauses_too(aclient: Any) -> None:
    q, ops = Queue(aclient, "eh"), QueueOps(aclient, "eh")
    await q.dispatch("t.noop", 1, queue="pq")
    await aclient.set(K.paused, "1")
    assert (await q.pop("pq", 5, 30, "w")).jobs == []
    assert (await ops.state("pq")).paused


async def batch_queue(aclient: Any) -> tuple[Queue, Batches, str, str, str]:
    """Queue pq with 2 plain jobs, batch b1 (5 jobs, 1 of them running), batch b2 (3 jobs) and
    a delayed job of each kind."""
    q = Queue(aclient, "eh")
    b = Batches(aclient, "eh", q)
    for i in range(2):
        await q.dispatch("t.noop", i, queue="pq")
    b1 = await b.create("one", [JobRequest("t.noop", i) for i in range(5)], queue="pq", batch_id="b1")
    b2 = await b.create("two", [JobRequest("t.noop", i) for i in range(3)], queue="pq", batch_id="b2")
    # one job of b1 runs (pop serves lanes round-robin: take jobs until one of b1 is held)
    held = []
    while not any(j.lane == b1 for j in held):
        held += (await q.pop("pq", 1, 30, "w")).jobs
    for j in held:
        if j.lane != b1:
            await q.release("pq", "w", j.id, 0, "test", None)
    (running,) = [j for j in held if j.lane == b1]
    await q.dispatch("t.noop", "later", queue="pq", delay=3600)
    await b.add(b1, [JobRequest("t.noop", "later", delay=3600)])
    return q, b, b1, b2, running.id


async def test_clearing_one_batch_removes_exactly_its_ready_jobs_and_cancels_it(aclient: Any) -> None:
    q, b, b1, b2, running = await batch_queue(aclient)
    assert await aclient.zcard(K.ready) == 2 + 4 + 3
    result = await QueueOps(aclient, "eh").clear("pq", b1)
    assert result.ok and result.removed == 4 and result.target == "pq/b1"
    assert result.message == "cleared queue pq (batch b1): removed 4 ready jobs; 1 batch cancelled"
    ready = [str(i) for i in await aclient.zrange(K.ready, 0, -1)]
    assert len(ready) == 5
    lanes = {await aclient.hget(K.job(i), "lane") for i in ready}
    assert b1 not in lanes
    # the running job is untouched and b1 counts its removed jobs as cancelled
    assert await aclient.zscore(K.reserved, running) is not None
    info1 = await b.info(b1)
    assert info1 is not None and info1.state == "cancelled"
    assert await aclient.scard(f"{K.base}batch:{b1}:cancelled") == 4
    # pending: the running job and the delayed one (it is dropped when it comes due)
    assert await aclient.hget(f"{K.base}batch:{b1}", "pending") == "2"
    info2 = await b.info(b2)
    assert info2 is not None and info2.state == "pending"
    assert await aclient.hget(f"{K.base}batch:{b2}", "pending") == "3"
    # the running job finishes; the batch finishes only when its delayed job is gone too
    assert await q.ack("pq", "w", [(running, "", 1)]) == []
    assert await aclient.hget(f"{K.base}batch:{b1}", "pending") == "1"


async def test_clearing_a_queue_removes_every_ready_job_and_only_those(aclient: Any) -> None:
    q, b, b1, b2, running = await batch_queue(aclient)
    ops = QueueOps(aclient, "eh")
    result = await ops.clear("pq")
    assert result.removed == 9
    assert result.message == "cleared queue pq: removed 9 ready jobs; 2 batches cancelled"
    assert await aclient.zcard(K.ready) == 0 and await aclient.llen(K.lanes) == 0
    assert await aclient.zcard(K.delayed) == 2  # not asked for
    assert await aclient.zcard(K.reserved) == 1
    assert await aclient.hget(K.stats, "cleared") == "9"
    # b2 had nothing else: it is finished, as a cancelled batch, with its finally callback
    info2 = await b.info(b2)
    assert info2 is not None and info2.state == "cancelled" and info2.finished
    assert await aclient.hget(f"{K.base}batch:{b2}", "pending") == "0"
    # nothing is left for a worker but the running job; later dispatches land as usual
    assert (await q.pop("pq", 10, 30, "w2")).jobs == []
    await q.dispatch("t.noop", "new", queue="pq")
    assert len((await q.pop("pq", 10, 30, "w2")).jobs) == 1

    with_delayed = await ops.clear("pq", delayed=True)
    assert with_delayed.removed == 2
    assert with_delayed.message == "cleared queue pq: removed 0 ready jobs and 2 delayed jobs; 1 batch cancelled"
    assert await aclient.zcard(K.delayed) == 0
    assert await aclient.hget(f"{K.base}batch:{b1}", "pending") == "1"  # the running job
    assert await q.ack("pq", "w", [(running, "", 1)]) == []
    info1 = await b.info(b1)
    assert info1 is not None and info1.state == "cancelled" and info1.finished

    cleared = [e for e in reversed(await read_events(aclient, "eh")) if e["kind"] == "queue_cleared"]
    assert [(e["ready"], e["delayed"], e["batch"]) for e in cleared] == [("9", "0", ""), ("0", "2", "")]
    assert any(e["kind"] == "batch_cancelled" and e["batch"] == b2 for e in await read_events(aclient, "eh"))


async def test_a_cleared_unique_job_does_not_swallow_the_next_dispatch(aclient: Any) -> None:
    q = Queue(aclient, "eh")
    first = await q.dispatch("t.noop", 1, queue="pq", key="report-42")
    later = await q.dispatch("t.noop", 2, queue="pq", key="later-7", delay=3600)
    assert await q.dispatch("t.noop", 1, queue="pq", key="report-42") == first  # merged while queued
    await QueueOps(aclient, "eh").clear("pq", delayed=True)
    again = await q.dispatch("t.noop", 1, queue="pq", key="report-42")
    assert again != first and await aclient.zscore(K.ready, again) is not None
    assert await q.dispatch("t.noop", 2, queue="pq", key="later-7") != later


async def test_clearing_keeps_batch_callbacks_and_an_unknown_batch_is_an_error(aclient: Any) -> None:
    from evalharness.core.errors import EvalHarnessError

    q = Queue(aclient, "eh")
    await q.dispatch(
        "evalharness.batch_callback", {"batch": "x", "stage": "then", "queue": "pq"}, queue="pq", lane="_cb"
    )
    await q.dispatch("t.noop", 1, queue="pq")
    ops = QueueOps(aclient, "eh")
    with pytest.raises(EvalHarnessError, match="no batch 'nope' on queue 'pq'"):
        await ops.clear("pq", "nope")
    assert await aclient.zcard(K.ready) == 2
    assert (await ops.clear("pq")).removed == 1
    (left,) = [str(i) for i in await aclient.zrange(K.ready, 0, -1)]
    assert await aclient.hget(K.job(left), "lane") == "_cb"


async def test_telemetry_and_status_show_a_paused_queue(aclient: Any) -> None:
    q, ops = Queue(aclient, "eh"), QueueOps(aclient, "eh")
    name = "evals-production-nightly-2026-a"
    await q.dispatch("t.noop", 1, queue=name)
    await q.dispatch("t.noop", 1, queue="other")
    await ops.pause(name)
    snap = await collect_snapshot(aclient, "eh")
    assert {r["name"]: r["paused"] for r in snap["queues"]} == {name: True, "other": False}
    # a paused queue clears nothing: no estimate (null), and the console's Est.clear says paused
    row = next(r for r in snap["queues"] if r["name"] == name)
    assert row["ready"] == 1 and row["est_clear"] is None
    from evalharness.tui.model import Snapshot
    from evalharness.tui.views.workload import clear_text

    shown = {stats.name: clear_text(stats) for stats in Snapshot.from_dict(snap).queues}
    assert shown[name] == "paused" and shown["other"] != "paused"
    console = Console(width=80, file=io.StringIO(), color_system=None)
    console.print(render(snap, 80))
    out = console.file
    assert isinstance(out, io.StringIO)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert any(line.startswith(f"{name} (paused) ") for line in lines), lines
    assert any(line.startswith("other ") and "paused" not in line for line in lines), lines


# -- real workers --------------------------------------------------------------------------------


def worker(procs: Processes, *queues: str, sleep: float = 4.0) -> Any:
    """A worker whose idle wait is long (4 s): anything it does sooner, it was woken for."""
    args = [
        "-m",
        "evalharness.cli",
        "--log-level",
        "info",
        "work",
        "--concurrency",
        "4",
        "--sleep",
        str(sleep),
        "--import",
        "support.testjobs",
    ]
    for q in queues:
        args += ["--queue", q]
    return procs.start(*args)


def dispatch(url: str, queue: str, n: int, file: Path, delay: float | None = None) -> None:
    from evalharness.core.connection import async_client

    async def main() -> None:
        client = async_client(url)
        try:
            reqs = [
                JobRequest("t.counted", {"file": str(file), "n": i, "at": time.time()}, queue=queue, delay=delay or 0.0)
                for i in range(n)
            ]
            await Queue(client, "eh").dispatch_many(reqs)
        finally:
            await client.aclose()

    asyncio.run(main())


async def resume(url: str, queue: str) -> None:
    from evalharness.core.connection import async_client

    client = async_client(url)
    try:
        await QueueOps(client, "eh").resume(queue)
    finally:
        await client.aclose()


def ran(file: Path) -> int:
    return len(file.read_text().splitlines()) if file.exists() else 0


def pop_cycles_pass(r: Any, url: str, queue: str, file: Path, cycles: int) -> None:
    """Wait until the queue's workers ran ``cycles`` pop cycles: each is seen by a delayed job
    becoming ready (the pop script does that also for a paused queue, and nothing else does)."""
    k = QueueKeys("eh", queue)
    for _ in range(cycles):
        ready = int(r.zcard(k.ready))
        dispatch(url, queue, 1, file, delay=0.05)
        wait_until(
            lambda ready=ready: int(r.zcard(k.delayed)) == 0 and int(r.zcard(k.ready)) == ready + 1,
            20,
            "a pop cycle on the paused queue",
        )


def script_calls(r: Any) -> int:
    return int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.slow
def test_workers_take_no_job_of_a_paused_queue_and_start_promptly_on_continue(
    procs: Processes, r: Any, redis_url: str, tmp_path: Path
) -> None:
    done_pq, done_other = tmp_path / "pq", tmp_path / "other"
    dispatch(redis_url, "pq", 1, done_pq)
    out = procs.cli_here("pause", "--queue", "pq")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "paused queue pq: 1 ready job stays queued; 0 running finish\n"
    # one worker serves both queues: the paused one's jobs accumulate, the other's run
    worker(procs, "pq", "other")
    dispatch(redis_url, "pq", 3, done_pq)
    dispatch(redis_url, "other", 3, done_other)
    wait_until(lambda: ran(done_other) == 3, 30, "the unpaused queue's jobs to run")
    pop_cycles_pass(r, redis_url, "pq", done_pq, 3)
    # a worker started later is held by the same flag
    later = worker(procs, "pq")
    wait_until(lambda: live_workers(redis_url, "pq") == 2, 30, "the second worker")
    pop_cycles_pass(r, redis_url, "pq", done_pq, 3)
    assert ran(done_pq) == 0 and int(r.zcard(K.reserved)) == 0
    assert int(r.zcard(K.ready)) == 1 + 3 + 6
    assert int(r.hget(K.stats, "completed") or 0) == 0
    # idle workers block on the wake list rather than spin on the queue they may not take from
    assert int(r.llen(K.wake)) == 0
    calls, window_end = script_calls(r), time.monotonic() + 1.0
    wait_until(lambda: time.monotonic() >= window_end, 5, "the measuring window")
    assert script_calls(r) - calls < 20
    assert ran(done_pq) == 0
    # continue right after the one worker left ran a pop cycle: it starts at once, not at the
    # end of its idle wait (4 s from that cycle)
    os.killpg(later.pid, signal.SIGTERM)
    later.wait(timeout=30)
    pop_cycles_pass(r, redis_url, "pq", done_pq, 1)
    asyncio.run(resume(redis_url, "pq"))
    wait_until(lambda: ran(done_pq) == 11, 30, "the paused queue's jobs to run after continue")
    (continued,) = events_of(r, "queue_continued")
    assert continued["ready"] == "11"
    assert done_pq.stat().st_mtime - float(continued["at"]) < 1.5
    assert len(events_of(r, "queue_paused")) == 1 and len(events_of(r, "queue_continued")) == 1


@pytest.mark.slow
def test_a_clear_leaves_running_jobs_to_finish(procs: Processes, r: Any, redis_url: str, tmp_path: Path) -> None:
    from evalharness.core.connection import async_client

    async def create() -> None:
        client = async_client(redis_url)
        try:
            jobs = [JobRequest("t.counted", {"file": str(tmp_path / "b"), "n": i, "seconds": 6}) for i in range(6)]
            await Batches(client, "eh").create("slow", jobs, queue="pq", batch_id="b1")
        finally:
            await client.aclose()

    asyncio.run(create())
    worker(procs, "pq")  # 4 at once, each for 6 s: long enough for the clear to find 2 ready
    wait_until(lambda: int(r.zcard(K.reserved)) == 4, 30, "four jobs running")
    out = procs.cli_here("queue", "clear", "pq", "--yes")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "cleared queue pq: removed 2 ready jobs; 1 batch cancelled\n"
    wait_until(lambda: r.hget(f"{K.base}batch:b1", "finished_at"), 30, "the batch to finish")
    rec = r.hgetall(f"{K.base}batch:b1")
    assert rec["state"] == "cancelled" and rec["processed"] == "4" and rec["pending"] == "0"
    assert ran(tmp_path / "b") == 4


# -- the command line ----------------------------------------------------------------------------


def test_pause_and_continue_queue_on_the_command_line(procs: Processes, r: Any, redis_url: str, tmp_path: Path) -> None:
    out = procs.cli_here("pause", "--queue", "pq")
    assert out.returncode == 2 and "--queue: no queue named 'pq'" in out.stderr and "nothing was paused" in out.stderr
    assert not r.exists(K.paused)
    dispatch(redis_url, "pq", 2, tmp_path / "x")
    dispatch(redis_url, "qq", 1, tmp_path / "x")
    out = procs.cli_here("pause", "--queue", "pq", "--queue", "qq")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "paused queue pq: 2 ready jobs stay queued; 0 running finish",
        "paused queue qq: 1 ready job stays queued; 0 running finish",
    ]
    assert procs.cli_here("pause", "--queue", "pq").stdout.startswith("queue pq was already paused")
    out = procs.cli_here("pause", "--queue", "pq", "--master", "m1")
    assert out.returncode == 2 and "does not combine with --master" in out.stderr
    out = procs.cli_here("pause", "--queue", "bad name")
    assert out.returncode == 2 and "--queue" in out.stderr
    status = procs.cli_here("status")
    assert "pq (paused)" in status.stdout and "qq (paused)" in status.stdout, status.stdout
    snap = json.loads(procs.cli_here("status", "--json").stdout)
    assert [q["paused"] for q in snap["queues"]] == [True, True]
    out = procs.cli_here("continue", "--queue", "qq")
    assert out.returncode == 0 and out.stdout == "continued queue qq: 1 ready job can start\n"
    assert r.exists(K.paused) and not r.exists(QueueKeys("eh", "qq").paused)
    # without --queue, pause still means the masters
    out = procs.cli_here("pause")
    assert out.returncode == 2 and "no running master" in out.stderr
    for command in ("pause", "continue"):
        assert "--queue QUEUE" in procs.cli_here(command, "--help").stdout


def test_prometheus_shows_the_paused_queues(procs: Processes, r: Any, redis_url: str, tmp_path: Path) -> None:
    dispatch(redis_url, "pq", 1, tmp_path / "x")
    dispatch(redis_url, "qq", 1, tmp_path / "x")
    assert procs.cli_here("pause", "--queue", "pq").returncode == 0
    server = procs.start("-m", "evalharness.cli", "metrics", "--serve", "0")
    line = server.stderr.readline() if server.stderr else ""
    url = re.search(r"http://\S+/metrics", line)
    assert url, line
    body = urllib.request.urlopen(url.group(0), timeout=10).read().decode()
    assert 'evalharness_queue_paused{queue="pq"} 1.0' in body
    assert 'evalharness_queue_paused{queue="qq"} 0.0' in body


def test_queue_clear_on_the_command_line(procs: Processes, r: Any, redis_url: str, tmp_path: Path) -> None:
    dispatch(redis_url, "pq", 3, tmp_path / "x")
    dispatch(redis_url, "pq", 1, tmp_path / "x", delay=3600)
    # not on a terminal and no --yes: refused, nothing removed
    out = procs.cli_here("queue", "clear", "pq")
    assert out.returncode == 1 and "give --yes" in out.stderr and "Nothing was removed" in out.stderr
    assert int(r.zcard(K.ready)) == 3
    out = procs.cli_here("queue", "clear", "nope", "--yes")
    assert out.returncode == 2 and "no queue named 'nope'" in out.stderr
    out = procs.cli_here("queue", "clear", "pq", "--batch", "b9", "--yes")
    assert out.returncode == 2 and "no batch 'b9'" in out.stderr
    assert int(r.zcard(K.ready)) == 3
    out = procs.cli_here("queue", "clear", "pq", "--yes")
    assert out.returncode == 0 and out.stdout == "cleared queue pq: removed 3 ready jobs\n", out
    assert int(r.zcard(K.ready)) == 0 and int(r.zcard(K.delayed)) == 1
    out = procs.cli_here("queue", "clear", "pq", "--yes", "--delayed")
    assert out.stdout == "cleared queue pq: removed 0 ready jobs and 1 delayed job\n"
    assert int(r.zcard(K.delayed)) == 0
    assert [e["message"] for e in events_of(r, "queue_cleared")] == [
        "cleared 3 queued job(s)",
        "cleared 1 queued job(s)",
    ]
    assert "--batch" in procs.cli_here("queue", "clear", "--help").stdout


def answer_on_a_terminal(procs: Processes, answer: str, *args: str) -> tuple[int, str]:
    """Run ``evalharness ARGS`` on a real pseudo-terminal, type ``answer`` at its prompt."""
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalharness.cli", *args],
        env=procs.env,
        cwd=procs.cwd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    try:
        end = time.monotonic() + 30
        while b"[y/N]" not in seen:
            assert time.monotonic() < end, f"no prompt: {seen!r}"
            seen += os.read(master, 4096)
        os.write(master, answer.encode() + b"\n")
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            seen += chunk
        return proc.wait(timeout=30), seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(master)


def test_queue_clear_names_the_jobs_a_batch_cap_holds_back(procs: Processes, r: Any, redis_url: str) -> None:
    from evalharness.core.connection import async_client

    async def capped() -> None:
        client = async_client(redis_url)
        try:
            q = Queue(client, "eh")
            await Batches(client, "eh", q).create(
                "capped", [JobRequest("t.noop", i) for i in range(3)], queue="pq", max_running=1
            )
        finally:
            await client.aclose()

    asyncio.run(capped())
    code, out = answer_on_a_terminal(procs, "y", "queue", "clear", "pq")
    # all three go, and the question said so: one could start, two waited for the batch
    assert "Remove 3 ready job(s) (2 of them held by their batch's max_running) from queue pq?" in out, out
    assert code == 0 and int(r.zcard(K.ready)) == 0


def test_queue_clear_asks_on_a_terminal(procs: Processes, r: Any, redis_url: str, tmp_path: Path) -> None:
    dispatch(redis_url, "pq", 3, tmp_path / "x")
    code, out = answer_on_a_terminal(procs, "n", "queue", "clear", "pq")
    assert code == 1 and "Remove 3 ready job(s) from queue pq?" in out and "nothing was removed" in out, out
    assert int(r.zcard(K.ready)) == 3
    code, out = answer_on_a_terminal(procs, "y", "queue", "clear", "pq")
    assert code == 0 and "cleared queue pq: removed 3 ready jobs" in out, out
    assert int(r.zcard(K.ready)) == 0
