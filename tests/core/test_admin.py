"""The operator's pages and actions (core/admin.py) over a real Redis, on recorded situations
built with the real queue scripts: failed-job indexes against a brute-force filter of the store,
retry/forget of all matching, cancel of queued jobs, running rows and progress, batches, and
acting on finished, forgotten and unknown ids."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from evalharness.core.admin import Admin, FailedFilter
from evalharness.core.batches import Batches
from evalharness.core.jobs import Job
from evalharness.core.queue import JobRequest, LeaseUpdate, Queue
from evalharness.core.telemetry import events_key

P = "t"
EXCEPTIONS = ("TimeoutError", "ValueError", "KeyError")
NAMES = ("judge", "answer")


@pytest.fixture
def queue(aclient: Any) -> Queue:
    return Queue(aclient, prefix=P)


@pytest.fixture
def admin(aclient: Any) -> Admin:
    return Admin(aclient, prefix=P)


async def fail_jobs(queue: Queue, popped: list[Job], exc_of: Any, owner: str = "w") -> None:
    for job in popped:
        exc = exc_of(job)
        failure = {
            "kind": "timeout" if exc == "TimeoutError" else "exception",
            "message": f"{exc} in {job.id}",
            "exception_type": exc,
            "job": job.name,
            "batch": job.batch,
            "tags": list(job.tags),
        }
        assert await queue.fail(job.queue, owner, job.id, failure)


async def recorded_failures(queue: Queue, batches: Batches, n: int = 120, seed: int = 7) -> None:
    """Failed jobs over two queues, two batches, two names and three exception classes."""
    rnd = random.Random(seed)
    b1 = await batches.create("b1", [], queue="a", batch_id="b1", allow_failures=True)
    b2 = await batches.create("b2", [], queue="b", batch_id="b2", allow_failures=True)
    reqs = []
    for i in range(n):
        q = rnd.choice(("a", "b"))
        reqs.append(
            JobRequest(
                rnd.choice(NAMES),
                {"i": i},
                queue=q,
                batch=rnd.choice([None, b1 if q == "a" else b2]),
                tags=("x",) if i % 3 == 0 else (),
            )
        )
    await queue.dispatch_many(reqs)
    for q in ("a", "b"):
        popped = (await queue.pop(q, n, 30, "w")).jobs
        await fail_jobs(queue, popped, lambda j: rnd.choice(EXCEPTIONS))


async def brute_force(queue: Queue, flt: FailedFilter) -> list[str]:
    """The filter applied to every record of the failed store, newest first."""
    out: list[tuple[float, str]] = []
    for q in ("a", "b"):
        if flt.queue and q != flt.queue:
            continue
        for job_id in await queue.failed_ids(q):
            rec = await queue.job_record(q, job_id)
            failure = json.loads(rec["failure"])
            env = json.loads(rec["data"])
            if flt.batch and env.get("batch") != flt.batch:
                continue
            if flt.name and env["name"] != flt.name:
                continue
            if flt.exception and failure["exception_type"] != flt.exception:
                continue
            if flt.text and flt.text.lower() not in (job_id + " " + failure["message"]).lower():
                continue
            out.append((float(rec["failed_at"]), job_id))
    out.sort(key=lambda t: -t[0])
    return [i for _, i in out]


FILTERS = [
    FailedFilter(),
    FailedFilter(queue="a"),
    FailedFilter(exception="TimeoutError"),
    FailedFilter(batch="b1"),
    FailedFilter(name="judge", exception="ValueError"),
    FailedFilter(queue="b", batch="b2", name="answer", exception="KeyError"),
    FailedFilter(exception="KeyError", text="keyerror in"),
    FailedFilter(batch="b1", queue="b"),
]


async def page_ids(admin: Admin, flt: FailedFilter) -> list[str]:
    ids: list[str] = []
    offset = 0
    while True:
        page = await admin.failed_page(flt, offset, 25)
        ids += [r.id for r in page.rows]
        offset += 25
        if offset >= page.total:
            return ids


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: f.describe() or "all")
async def test_filtered_pages_and_counts_equal_a_brute_force_filter_of_the_store(
    queue: Queue, admin: Admin, aclient: Any, flt: FailedFilter
) -> None:
    await recorded_failures(queue, Batches(aclient, P, queue))
    expected = await brute_force(queue, flt)
    assert await admin.failed_count(flt) == len(expected)
    assert sorted(await page_ids(admin, flt)) == sorted(expected)
    groups = {g.exception: g.count for g in await admin.failed_groups(flt)}
    for exc in EXCEPTIONS:
        n = len(await brute_force(queue, FailedFilter(flt.queue, flt.batch, exc, flt.name, flt.text)))
        assert groups.get(exc, 0) == (0 if flt.exception not in (None, exc) else n)


async def test_indexes_follow_retry_forget_and_the_retention_trim(queue: Queue, admin: Admin, aclient: Any) -> None:
    await recorded_failures(queue, Batches(aclient, P, queue))
    flt = FailedFilter(exception="ValueError")
    before = await brute_force(queue, flt)
    one = await admin.retry_failed(before[0])
    assert one.ok and one.retried == 1 and one.new_ids
    two = await admin.forget_failed(before[1])
    assert two.ok and two.forgotten == 1
    assert sorted(await page_ids(admin, flt)) == sorted(before[2:]) == sorted(await brute_force(queue, flt))
    # acting again on them: the engine says so and nothing changes
    again = await admin.retry_failed(before[0])
    assert not again.ok and "already retried" in again.message and again.skipped == 1
    gone = await admin.forget_failed(before[1])
    assert not gone.ok and "No failed job" in gone.message
    unknown = await admin.retry_failed("nope")
    assert not unknown.ok and await admin.failed_count(flt) == len(before) - 2
    # a failure older than the retention is trimmed from the store and from its indexes
    old = before[2]
    k = queue.keys("a" if await aclient.zscore(queue.keys("a").failed, old) is not None else "b")
    for key in (k.failed, k.failed_index("exc", "ValueError")):
        await aclient.zadd(key, {old: 1000})
    assert old not in await page_ids(admin, flt)
    assert await admin.failed_count(flt) == len(before) - 3


async def test_retry_matching_acts_on_exactly_the_filter_count(queue: Queue, admin: Admin, aclient: Any) -> None:
    await recorded_failures(queue, Batches(aclient, P, queue))
    flt = FailedFilter(name="judge", exception="TimeoutError")
    count = await admin.failed_count(flt)
    assert count > 0
    result = await admin.retry_matching(flt)
    assert result.ok and result.retried == count and len(result.new_ids) == count
    assert f"Retried {count} failed job" in result.message and "exc:TimeoutError name:judge" in result.message
    assert await admin.failed_count(flt) == 0
    nothing = await admin.retry_matching(flt)
    assert not nothing.ok and nothing.retried == 0
    total = await admin.failed_count()
    forgot = await admin.forget_matching(FailedFilter(queue="a"))
    assert forgot.ok and forgot.forgotten == total - await admin.failed_count()
    kinds = [e[1]["kind"] for e in await aclient.xrange(events_key(P))]
    assert kinds.count("failed_retried") == 1 and kinds.count("failed_forgotten") == 1


async def test_the_one_time_rebuild_indexes_jobs_that_failed_before_the_indexes(queue: Queue, aclient: Any) -> None:
    await recorded_failures(queue, Batches(aclient, P, queue))
    expected = await brute_force(queue, FailedFilter(exception="KeyError"))
    # as a store written before the indexes existed: no index keys, no marker
    for key in await aclient.keys(f"{P}:*failed:*") + await aclient.keys(f"{P}:*failed_values:*"):
        await aclient.delete(key)
    fresh = Admin(aclient, prefix=P)
    assert await fresh.failed_count(FailedFilter(exception="KeyError")) == len(expected)
    assert await aclient.exists(queue.keys("a").failed_indexed)


async def test_cancel_a_queued_job_records_it_cancelled_and_acting_again_changes_nothing(
    queue: Queue, admin: Admin, aclient: Any
) -> None:
    job_id = await queue.dispatch("judge", {"n": 1}, queue="a")
    later = await queue.dispatch("judge", {"n": 2}, queue="a", delay=60)
    result = await admin.cancel_job(job_id)
    assert result.ok and result.removed == 1 and "removed from the queue" in result.message
    assert (await queue.stats("a")).ready == 0
    assert (await admin.cancel_job(later)).removed == 1
    page = await admin.failed_page(FailedFilter(exception="JobCancelled"))
    assert {r.id for r in page.rows} == {job_id, later} and {r.kind for r in page.rows} == {"cancelled"}
    again = await admin.cancel_job(job_id)
    assert not again.ok and "already finished" in again.message
    missing = await admin.cancel_job("no-such-job")
    assert not missing.ok and "No job" in missing.message
    assert (await queue.pop("a", 10, 30, "w")).jobs == []


async def test_cancel_a_running_job_flags_it_for_its_workers_next_renewal(queue: Queue, admin: Admin) -> None:
    job_id = await queue.dispatch("judge", {"n": 1}, queue="a")
    (job,) = (await queue.pop("a", 1, 30, "host-1:42:abc")).jobs
    result = await admin.cancel_job(job_id)
    assert result.ok and result.told_to_stop == 1 and "host-1:42" in result.message
    reply = await queue.renew_leases("a", "host-1:42:abc", [LeaseUpdate(job.id, 0.4, "tokens 812", 30)], 30)
    assert reply.cancel == [job.id] and reply.lost == []
    (row,) = await admin.running()
    assert (row.worker, row.progress, row.progress_note, row.cancel_requested) == ("host-1:42", 0.4, "tokens 812", True)
    assert row.lease_seconds == 30 and row.timeout == 30 and row.renewed_at and row.lease_deadline and row.renewals == 1
    assert not (await admin.cancel_job(job_id)).ok  # told already


async def test_batch_pages_counts_and_cancel_of_a_finished_batch(queue: Queue, admin: Admin, aclient: Any) -> None:
    batches = Batches(aclient, P, queue)
    run = await batches.create("run", [JobRequest("judge", {"n": i}) for i in range(10)], queue="a", batch_id="run-42")
    done = await batches.create("done", [JobRequest("judge", {"n": 1})], queue="a", batch_id="done")
    popped = (await queue.pop("a", 4, 30, "w:1:x")).jobs
    run_jobs = [j for j in popped if j.batch == "run-42"]
    await queue.ack("a", "w:1:x", [(j.id, "") for j in popped if j.batch == "done"])
    for j in (await queue.pop("a", 20, 30, "w:1:x")).jobs:
        if j.batch == "done":
            await queue.ack("a", "w:1:x", [(j.id, "")])
        else:
            run_jobs.append(j)
    await queue.ack("a", "w:1:x", [(j.id, "") for j in run_jobs[:2]])
    active = await admin.batches_page("active")
    assert [b.id for b in active] == [run]
    (row,) = active
    assert (row.total, row.succeeded, row.running, row.pending) == (10, 2, 8, 8) and row.run_id == "42"
    # 2 done since it started, moments ago: its first minute's rate is its count over its age
    assert row.rate_per_min is not None and row.started_at is not None
    assert row.rate_per_min == pytest.approx(2 * 60 / max(1.0, time.time() - row.started_at), rel=0.25)
    assert [b.id for b in await admin.batches_page("all")] == [run, done]
    assert await admin.cancel_batch_preview(run) == (0, 8)
    result = await admin.cancel_batch(run)
    assert result.ok and (result.removed, result.told_to_stop) == (0, 8)
    assert result.message == "Cancelled run-42: removed 0 queued jobs, 8 running told to stop"
    reply = await queue.renew_leases("a", "w:1:x", [LeaseUpdate(j.id) for j in run_jobs[2:]], 30)
    assert sorted(reply.cancel) == sorted(j.id for j in run_jobs[2:])
    again = await admin.cancel_batch(run)
    assert not again.ok and "already cancelled" in again.message
    finished = await admin.cancel_batch(done)
    assert not finished.ok and "already succeeded" in finished.message
    assert (await batches.info(done)).state == "succeeded"  # type: ignore[union-attr]
    assert not (await admin.cancel_batch("nope")).ok
    assert not (await admin.retry_batch(done)).ok
    assert [b.id for b in await admin.batches_page("cancelled")] == [run]


def test_the_batch_rate_counts_the_last_sixty_seconds() -> None:
    from evalharness.core.admin import rate_per_minute

    minute = 29_000_000
    rec = {"rate_min": str(minute), "rate_this": "30", "rate_prev": "60"}
    assert rate_per_minute(rec, minute * 60 + 15) == 30 + 60 * 0.75
    assert rate_per_minute(rec, (minute + 1) * 60 + 30) == 15.0
    assert rate_per_minute(rec, (minute + 5) * 60) == 0.0
    assert rate_per_minute({}, 0) is None
    # a batch 10 s old that did 47 runs at 282 a minute, not at the 47 a sixty-second window shows
    young = {**rec, "rate_this": "47", "rate_prev": "0", "started_at": str(int((minute * 60 + 5) * 1000))}
    assert rate_per_minute(young, minute * 60 + 15) == pytest.approx(47 * 6)
    # 75 s old: the window again (the 47 of the minute before, less the part gone by)
    assert rate_per_minute(young, minute * 60 + 80) == pytest.approx(47 * (1 - 20 / 60))


async def test_failed_detail_has_the_traceback_checkpoint_summary_and_retries(
    queue: Queue, admin: Admin, aclient: Any
) -> None:
    await Batches(aclient, P, queue).create(
        "b", [JobRequest("judge", {"n": 1, "secret": "s"})], queue="a", batch_id="b"
    )
    (job,) = (await queue.pop("a", 1, 30, "gpu-1:77:ab")).jobs
    await queue.checkpoint("a", "gpu-1:77:ab", job.id, json.dumps({"tokens": 812}))
    failure = {
        "kind": "exception",
        "message": "judge said no",
        "exception_type": "ValueError",
        "job": "judge",
        "traceback": "Traceback (most recent call last):\n" + "  line\n" * 5000 + "ValueError: judge said no\n",
        "payload": {"n": 1, "secret": "***"},
        "worker": "gpu-1:77",
    }
    assert await queue.fail("a", "gpu-1:77:ab", job.id, failure)
    (row,) = (await admin.batch_detail("b")).failed_jobs  # type: ignore[union-attr]
    assert (row.id, row.exception, row.worker, row.batch, row.attempts) == (job.id, "ValueError", "gpu-1:77", "b", 1)
    detail = await admin.failed_detail(job.id)
    assert detail is not None and detail.traceback.count("\n") == 5002  # every line, no cut
    assert detail.checkpoint == {"tokens": 812} and detail.payload == {"n": 1, "secret": "***"}
    assert detail.summary["queue"] == "a" and detail.summary["lease_seconds"] == 30
    retried = await admin.retry_failed(job.id)
    detail = await admin.failed_detail(job.id)
    assert detail is not None and detail.retries == (("ready", retried.new_ids[0], detail.retries[0][2]),)
    assert detail.row.retry_state == "ready"
    assert await admin.failed_detail("nope") is None


async def test_the_active_list_reads_only_unfinished_batches_and_follows_reopening(
    queue: Queue, admin: Admin, aclient: Any
) -> None:
    from evalharness.core.batches import active_batches_key

    batches = Batches(aclient, P, queue)
    keys = queue.keys("a")
    old = await batches.create("old", [JobRequest("judge", {"n": 0})], queue="a", batch_id="old")
    # as a batch created before the active index existed
    await aclient.zrem(active_batches_key(keys), old)
    live = await batches.create(
        "live", [JobRequest("judge", {"n": 1})], queue="a", batch_id="live", allow_failures=True
    )
    assert {b.id for b in await admin.batches_page("active")} == {old, live}  # the one-time rebuild found "old"
    for job in (await queue.pop("a", 10, 30, "w:1:x")).jobs:
        if job.batch == live:
            await fail_jobs(queue, [job], lambda j: "ValueError", owner="w:1:x")
        else:
            await queue.ack("a", "w:1:x", [(job.id, "")])
    assert await admin.batches_page("active") == []
    assert await aclient.zcard(active_batches_key(keys)) == 0
    assert [b.id for b in await admin.batches_page("failed")] == [live]
    assert (await admin.retry_batch(live)).retried == 1
    (row,) = await admin.batches_page("active")
    assert row.id == live and row.state == "running" and row.pending == 1


async def test_a_cancel_pending_when_its_worker_died_travels_with_the_redelivery(queue: Queue, admin: Admin) -> None:
    import asyncio

    job_id = await queue.dispatch("judge", {"n": 1}, queue="a")
    await queue.pop("a", 1, 0.2, "dead:1:x")
    assert (await admin.cancel_job(job_id)).told_to_stop == 1
    # the dead worker's lease lapses (server clock); a later pop re-delivers the job with the flag
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while not (again := await queue.pop("a", 1, 30, "next:2:y")).jobs:
        assert loop.time() < end, "the lapsed job was not re-delivered"
        await asyncio.sleep(0.05)
    assert [j.id for j in again.jobs] == [job_id] and again.cancelled == {job_id}


async def test_indexes_equal_a_brute_force_filter_after_any_mix_of_fail_retry_forget_cancel(
    queue: Queue, admin: Admin, aclient: Any
) -> None:
    rnd = random.Random(11)
    batches = Batches(aclient, P, queue)
    await batches.create("b1", [], queue="a", batch_id="b1", allow_failures=True)
    checks = [
        FailedFilter(queue="a"),
        FailedFilter(batch="b1"),
        FailedFilter(exception="ValueError"),
        FailedFilter(exception="JobCancelled"),
        FailedFilter(name="judge", batch="b1"),
    ]
    for step in range(40):
        op = rnd.choice(("fail", "fail", "retry", "forget", "cancel", "batch_retry", "redo"))
        failed = await queue.failed_ids("a")
        if op == "fail":
            await queue.dispatch_many(
                [
                    JobRequest(rnd.choice(NAMES), {"s": step, "k": k}, queue="a", batch=rnd.choice([None, "b1"]))
                    for k in range(3)
                ]
            )
            await fail_jobs(queue, (await queue.pop("a", 3, 30, "w")).jobs, lambda j: rnd.choice(EXCEPTIONS))
        elif op == "retry" and failed:
            await admin.retry_failed(rnd.choice(failed))
        elif op == "forget" and failed:
            await admin.forget_failed(rnd.choice(failed))
        elif op == "cancel":
            await admin.cancel_job(await queue.dispatch("judge", {"c": step}, queue="a", batch="b1"))
        elif op == "batch_retry":
            await admin.retry_batch("b1")
        elif op == "redo":
            # run what retries queued, failing it again
            await fail_jobs(queue, (await queue.pop("a", 100, 30, "w")).jobs, lambda j: rnd.choice(EXCEPTIONS))
        for flt in checks:
            expected = await brute_force(queue, flt) if flt.exception != "JobCancelled" else None
            if expected is None:
                ids = await queue.failed_ids("a")
                recs = [await queue.job_record("a", i) for i in ids]
                expected = [
                    i for i, r in zip(ids, recs, strict=True) if json.loads(r["failure"])["kind"] == "cancelled"
                ]
            assert sorted(await page_ids(admin, flt)) == sorted(expected), (step, op, flt)


def test_an_eval_runs_running_means_come_in_the_runs_metric_order() -> None:
    from evalharness.core.admin import running_means

    rec = {
        "mean_names": '["rouge-l:max_tokens=100", "exact-match", "contains"]',
        "mean_sum:exact-match": "3",
        "mean_n:exact-match": "4",
        "mean_sum:rouge-l:max_tokens=100": "2.5",
        "mean_n:rouge-l:max_tokens=100": "5",
    }
    # contains scored nothing yet: no mean rather than 0
    assert list(running_means(rec).items()) == [("rouge-l:max_tokens=100", 0.5), ("exact-match", 0.75)]
    assert running_means({}) == {} and running_means({"mean_names": "not json"}) == {}
