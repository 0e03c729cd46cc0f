"""Batches on a real Redis, served by workers run in-process: fair sharing of a queue, cancel,
allowed failures and retry, callbacks exactly once under concurrent completion, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.inproc import Workers
from support.procs import Processes, until

from evalharness.core.batches import Batches
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import JobRequest, Queue

K = QueueKeys("eh", "t")


async def workers(pool: Workers, n: int, concurrency: int = 10) -> None:
    pool.start("t", n=n, concurrency=concurrency)


async def callbacks(aclient: Any) -> list[str]:
    return [str(x) for x in await aclient.lrange("t:callbacks", 0, -1)]


def sink(req: JobRequest, field: str) -> JobRequest:
    return JobRequest(req.name, req.payload, result_to=("s", field, 600))


async def results(aclient: Any, fields: list[str]) -> list[Any]:
    raw = await aclient.hmget(K.results("s"), fields)
    return [None if v is None else json.loads(v) for v in raw]


@pytest.mark.slow
async def test_a_small_batch_dispatched_after_a_large_one_starts_at_once(
    procs: Processes, pool: Workers, aclient: Any
) -> None:
    batches = Batches(aclient)
    a = await batches.create(
        "A", [sink(JobRequest("t.span", {"seconds": 0.1, "n": i}), f"a{i}") for i in range(1000)], queue="t"
    )
    await batches.create(
        "B", [sink(JobRequest("t.span", {"seconds": 0.1, "n": i}), f"b{i}") for i in range(5)], queue="t"
    )
    await workers(pool, 2, concurrency=2)
    b_results = await until(lambda: _all(aclient, [f"b{i}" for i in range(5)]), what="batch B")

    async def ten_of_a() -> list[Any]:
        got = [r for r in await results(aclient, [f"a{i}" for i in range(60)]) if r is not None]
        return got if len(got) >= 10 else []

    a_done = await until(ten_of_a, what="ten jobs of A")
    tenth_a_end = sorted(r["result"][1] for r in a_done)[9]
    first_b_start = min(r["result"][0] for r in b_results)
    assert first_b_start < tenth_a_end
    await batches.cancel(a)


async def _all(aclient: Any, fields: list[str]) -> list[Any]:
    got = await results(aclient, fields)
    return got if all(g is not None for g in got) else []


async def test_cancel_removes_every_queued_job_and_runs_finally_once(
    procs: Processes, pool: Workers, aclient: Any
) -> None:
    batches = Batches(aclient)
    q = Queue(aclient)
    await q.dispatch("t.span", {"seconds": 0, "plain": True}, queue="t")
    bid = await batches.create(
        "big", [JobRequest("t.span", {"n": i}) for i in range(1000)], queue="t", finally_=["t.finally"], then=["t.then"]
    )
    assert (await batches.info(bid)).pending == 1000  # type: ignore[union-attr]
    removed = await batches.cancel(bid)
    assert removed == 1000
    left = [await aclient.hget(K.job(i), "batch") for i in await aclient.zrange(K.ready, 0, -1)]
    assert left.count(bid) == 0 and len(left) == 2  # the plain job, and the `finally` callback job
    assert await aclient.exists(K.lane(bid)) == 0
    info = await batches.info(bid)
    assert info is not None and info.state == "cancelled" and info.pending == 0 and info.cancelled_at
    await workers(pool, 1)
    await until(lambda: callbacks(aclient), what="the finally callback")
    await until(lambda: _drained(aclient), what="the queue to drain")
    assert await callbacks(aclient) == [f"finally:{bid}:cancelled:0/1000"]
    # cancelling again changes nothing and runs nothing again
    assert await batches.cancel(bid) == 0
    assert len(await callbacks(aclient)) == 1


async def _drained(aclient: Any) -> bool:
    return await aclient.zcard(K.ready) == 0 and await aclient.zcard(K.reserved) == 0


async def test_allowed_failures_finish_with_failures_then_succeed_after_retry(
    procs: Processes, pool: Workers, aclient: Any, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    batches = Batches(aclient)
    jobs = [JobRequest("t.maybe_fail", {"n": i, "fail": i % 4 == 0, "flag": str(flag)}) for i in range(12)]
    bid = await batches.create(
        "tolerant", jobs, queue="t", allow_failures=True, then=["t.then"], catch=["t.catch"], finally_=["t.finally"]
    )
    await workers(pool, 2)

    async def state() -> str:
        info = await batches.info(bid)
        return info.state if info and info.state in ("finished_with_failures", "succeeded") else ""

    assert await until(state, what="the batch to finish") == "finished_with_failures"
    info = await batches.info(bid)
    assert info is not None and (info.total, info.processed, info.failed, info.pending) == (12, 12, 3, 0)
    assert len(info.failed_job_ids) == 3
    await until(lambda: _count(aclient, "finally"), what="finally")
    flag.write_text("")
    assert await batches.retry(bid) == 3
    assert await batches.retry(bid) == 0  # a second retry finds nothing new: no double count
    info = await batches.info(bid)
    # reopened (the workers may already have finished the three retries)
    assert info is not None and info.failed == 0 and info.state in ("running", "succeeded")

    async def succeeded() -> bool:
        i = await batches.info(bid)
        return i is not None and i.state == "succeeded"

    await until(succeeded, what="success after the retry")
    info = await batches.info(bid)
    assert info is not None and (info.total, info.processed, info.failed, info.pending) == (12, 12, 0, 0)
    await until(lambda: _count(aclient, "then"), what="then")
    await until(lambda: _count(aclient, "finally", 2), what="the second finally")
    stages = [c.split(":")[0] for c in await callbacks(aclient)]
    assert stages.count("catch") == 1 and stages.count("then") == 1 and stages.count("finally") == 2


async def _count(aclient: Any, stage: str, n: int = 1) -> bool:
    return sum(c.startswith(stage + ":") for c in await callbacks(aclient)) >= n


async def test_a_failure_without_allowed_failures_cancels_the_rest(
    procs: Processes, pool: Workers, aclient: Any, tmp_path: Path
) -> None:
    batches = Batches(aclient)
    jobs = [JobRequest("t.maybe_fail", {"n": 0, "fail": True, "flag": str(tmp_path / "never")})]
    jobs += [JobRequest("t.span", {"seconds": 0.05, "n": i}) for i in range(300)]
    bid = await batches.create("strict", jobs, queue="t", catch=["t.catch"], finally_=["t.finally"])
    await workers(pool, 1, concurrency=2)

    async def stopped() -> bool:
        i = await batches.info(bid)
        return i is not None and i.state == "failed" and i.pending == 0

    await until(stopped, what="the batch to stop")
    info = await batches.info(bid)
    assert info is not None and info.failed == 1 and info.processed < 300
    await until(lambda: _count(aclient, "finally"), what="finally")
    await until(lambda: _drained(aclient), what="nothing left to run")
    stages = [c.split(":")[0] for c in await callbacks(aclient)]
    assert stages.count("catch") == 1 and stages.count("finally") == 1 and "then" not in stages


@pytest.mark.slow
async def test_callbacks_run_exactly_once_under_concurrent_completion(
    procs: Processes, pool: Workers, aclient: Any
) -> None:
    batches = Batches(aclient)
    jobs = [JobRequest("t.span", {"n": i}) for i in range(2000)]
    bid = await batches.create(
        "stress", jobs, queue="t", then=["t.then"], finally_=["t.finally"], progress=["t.progress"], before=["t.before"]
    )
    await workers(pool, 4, concurrency=20)

    async def done() -> bool:
        i = await batches.info(bid)
        return i is not None and i.state == "succeeded"

    await until(done, deadline=60, what="2,000 jobs")
    await until(lambda: _count(aclient, "finally"), what="finally")
    await until(lambda: _drained(aclient), what="the callbacks to drain")
    stages = [c.split(":")[0] for c in await callbacks(aclient)]
    assert stages.count("then") == 1 and stages.count("finally") == 1 and stages.count("before") == 1
    assert stages.count("progress") >= 1
    info = await batches.info(bid)
    assert info is not None and (info.total, info.processed, info.pending, info.failed) == (2000, 2000, 0, 0)
    kinds = [f["kind"] for _, f in await aclient.xrange("eh:events")]
    assert kinds.count("batch_created") == 1 and kinds.count("batch_finished") == 1


async def test_jobs_added_to_a_running_batch_count(procs: Processes, pool: Workers, aclient: Any) -> None:
    batches = Batches(aclient)
    bid = await batches.create("grow", [JobRequest("t.span", {"n": i}) for i in range(3)], queue="t")
    await batches.add(bid, [JobRequest("t.span", {"n": i}) for i in range(3, 5)])
    await workers(pool, 1)

    async def done() -> bool:
        i = await batches.info(bid)
        return i is not None and i.state == "succeeded"

    await until(done, what="the batch")
    info = await batches.info(bid)
    assert info is not None and info.total == 5 and info.progress == 1.0


async def test_the_batch_cli(procs: Processes, pool: Workers, aclient: Any) -> None:
    batches = Batches(aclient)
    bid = await batches.create("cli", [JobRequest("t.span", {"n": i}) for i in range(4)], queue="t")
    listed = await procs.acli_here("batch", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["id"] == bid and row["state"] == "pending" and row["total"] == 4
    shown = await procs.acli_here("batch", "show", bid)
    assert shown.returncode == 0 and "pending" in shown.stdout
    cancelled = await procs.acli_here("batch", "cancel", bid)
    assert cancelled.returncode == 0 and "removed 4 queued jobs, 0 running told to stop" in cancelled.stdout
    retried = await procs.acli_here("batch", "retry", bid)
    assert retried.returncode == 0 and "retrying 4 job(s)" in retried.stdout
    assert (await procs.acli_here("batch", "show", "nope")).returncode == 2
    table = await procs.acli_here("batch", "list")
    assert "cli" in table.stdout and "running" in table.stdout
    await workers(pool, 1)

    async def done() -> bool:
        i = await batches.info(bid)
        return i is not None and i.state == "succeeded"

    await until(done, what="the batch")
    assert "pruned 0" in (await procs.acli_here("batch", "prune", "--finished-older-than", "1h")).stdout
    assert "pruned 1" in (await procs.acli_here("batch", "prune", "--finished-older-than", "0s")).stdout
    assert await batches.info(bid) is None
    assert (await procs.acli_here("batch", "prune", "--finished-older-than", "soon")).returncode == 2


async def test_retrying_a_batch_job_from_the_failed_store_updates_its_batch(
    procs: Processes, pool: Workers, aclient: Any, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    batches = Batches(aclient)
    jobs = [JobRequest("t.maybe_fail", {"n": i, "fail": i == 0, "flag": str(flag)}) for i in range(3)]
    bid = await batches.create("store", jobs, queue="t", allow_failures=True)
    await workers(pool, 1)

    async def state_is(want: str) -> bool:
        i = await batches.info(bid)
        return i is not None and i.state == want

    await until(lambda: state_is("finished_with_failures"), what="the failure")
    flag.write_text("")
    retried = await procs.acli_here("failed", "retry", "--all")
    assert retried.returncode == 0, retried.stderr
    await until(lambda: state_is("succeeded"), what="success after the retry")
    info = await batches.info(bid)
    assert info is not None and (info.total, info.processed, info.failed, info.pending) == (3, 3, 0, 0)


async def test_a_declared_total_counts_from_the_start_and_holds_the_batch_open_until_every_job_came(
    procs: Processes, pool: Workers, aclient: Any
) -> None:
    batches = Batches(aclient)
    bid = await batches.create(
        "declared", [JobRequest("t.span", {"n": i}) for i in range(2)], queue="t", total=6, then=["t.then"]
    )
    info = await batches.info(bid)
    assert info is not None and (info.total, info.dispatched, info.undispatched, info.pending) == (6, 2, 4, 6)
    await workers(pool, 1)

    async def processed(n: int) -> Any:
        i = await batches.info(bid)
        return i if i is not None and i.processed == n else None

    # every dispatched job is done, but four declared ones never came: not succeeded, 2/6
    info = await until(lambda: processed(2), what="the first two jobs")
    await until(lambda: _drained(aclient), what="the queue to drain")
    info = await batches.info(bid)
    assert info is not None and info.state == "running" and info.finished_at is None
    assert info.total == 6 and abs(info.progress - 2 / 6) < 1e-9 and info.pending == 4
    assert await callbacks(aclient) == []
    # the rest arrive through add (a run's dispatch path): the total is not counted twice
    await batches.add(bid, [JobRequest("t.span", {"n": i}) for i in range(2, 6)])
    info = await until(lambda: processed(6), what="all six jobs")

    async def succeeded() -> Any:
        i = await batches.info(bid)
        return i if i is not None and i.state == "succeeded" else None

    info = await until(succeeded, what="the batch to succeed")
    assert (info.total, info.dispatched, info.pending, info.progress) == (6, 6, 0, 1.0)
    await until(lambda: callbacks(aclient), what="the then callback")
    # jobs beyond the declared total still count
    await batches.add(bid, [JobRequest("t.span", {"n": 6})])
    info = await batches.info(bid)
    assert info is not None and info.total == 7 and info.dispatched == 7


async def test_a_sealed_or_cancelled_batch_with_a_declared_total_finishes_without_the_missing_jobs(
    procs: Processes, pool: Workers, aclient: Any
) -> None:
    batches = Batches(aclient)
    sealed = await batches.create("sealed", [JobRequest("t.span", {"n": i}) for i in range(3)], queue="t", total=10)
    cancelled = await batches.create(
        "cancelled", [JobRequest("t.span", {"n": i}) for i in range(3)], queue="t", total=10
    )
    retried = await batches.create("retried", [JobRequest("t.span", {"n": i}) for i in range(3)], queue="t", total=10)
    assert await batches.cancel(retried) == 3
    assert await batches.retry(retried) == 3  # the cancelled jobs run again; the 7 never dispatched do not come
    await workers(pool, 1)
    await until(lambda: _drained(aclient), what="the queue to drain")
    for bid in (sealed, cancelled):
        info = await batches.info(bid)
        assert info is not None and info.state == "running" and info.processed == 3 and info.total == 10
    assert await batches.seal(sealed) == 7
    assert await batches.cancel(cancelled) == 0
    a, b = await batches.info(sealed), await batches.info(cancelled)
    assert a is not None and a.state == "succeeded" and a.finished and a.pending == 0 and a.total == 10
    assert b is not None and b.state == "cancelled" and b.finished and b.pending == 0 and b.total == 10
    assert b.processed == 3 and b.undispatched == 0
    c = await batches.info(retried)
    assert c is not None and c.state == "succeeded" and c.finished and (c.processed, c.total) == (3, 10)
    shown = await procs.acli_here("batch", "show", "--json", sealed)
    row = json.loads(shown.stdout)
    assert (row["total"], row["declared"], row["dispatched"], row["state"]) == (10, 10, 3, "succeeded")
