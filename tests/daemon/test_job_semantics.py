"""Job semantics under LLM reality on a real Redis: rate-limit releases, HTTP 429s, shared
limiters, timeouts that are never silent, checkpoints, idempotency, the failed-job store and
worker recycling.  Workers run in-process (support.inproc) unless the behaviour is a process's
own: an exit code, a signal, the watchdog."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from support.dispatch import dispatch
from support.inproc import burst, make_worker, running
from support.procs import Processes, live_workers, until, wait_until

from evalharness.core.examples.provider import ProviderConfig, SimulatedProvider
from evalharness.core.keys import QueueKeys

K = QueueKeys("eh", "t")


def results(r: Any, *fields: str) -> list[Any]:
    raw = r.hmget(K.results("s"), list(fields))
    return [None if v is None else json.loads(v) for v in raw]


def _all_in(r: Any, fields: list[str]) -> list[Any] | None:
    got = results(r, *fields)
    return got if all(x is not None for x in got) else None


def all_results(r: Any, fields: list[str], deadline: float = 20) -> list[Any]:
    return list(wait_until(lambda: _all_in(r, fields), deadline, f"results of {fields[:3]}..."))  # type: ignore[arg-type]


async def all_results_soon(r: Any, fields: list[str], deadline: float = 20) -> list[Any]:
    return list(await until(lambda: _all_in(r, fields), deadline, f"results of {fields[:3]}..."))


def start_workers(procs: Processes, redis_url: str, n: int = 1, **kw: Any) -> list[Any]:
    ws = [procs.worker("t", **kw) for _ in range(n)]
    wait_until(lambda: live_workers(redis_url, "t") >= n, what=f"{n} worker(s)")
    return ws


async def test_a_job_rate_limited_five_times_succeeds_with_three_tries_and_one_try_used(r: Any, redis_url: str) -> None:
    dispatch(redis_url, {"name": "t.rate_limited_5", "id": "j"})
    await burst(redis_url)
    (outcome,) = results(r, "j")
    assert outcome["result"] == {"attempts": 6, "releases": 5, "tries_used": 1}
    assert int(r.hget(K.stats, "released")) == 5


async def test_http_429_with_retry_after_releases_without_using_tries(r: Any, redis_url: str) -> None:
    with SimulatedProvider(
        ProviderConfig(latency=(0.0, 0.0), rate_limit=0, errors=0, retry_after=0.1, fail_first={"k1": 4})
    ) as provider:
        dispatch(redis_url, {"name": "t.http", "id": "h", "payload": {"url": provider.url, "key": "k1"}})
        await burst(redis_url)
        (outcome,) = results(r, "h")
        assert outcome["result"] == {"answer": "The answer is 4.", "releases": 4, "tries_used": 1}
        # the job's idempotency key reached the provider on every call
        assert provider.stats()["keys"] == {"k1": 5}
        assert provider.stats()["by_status"] == {"200": 1, "429": 4}


def window_max(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def test_a_rate_limiter_shared_by_two_workers_never_lets_more_than_ten_start_per_second(
    r: Any, redis_url: str
) -> None:
    ids = dispatch(redis_url, *({"name": "t.limited", "id": f"l{i}", "payload": i} for i in range(35)))
    # two workers, each its own Redis connections and limiter client: they share only Redis
    await asyncio.gather(burst(redis_url, concurrency=20), burst(redis_url, concurrency=20))
    outcomes = await all_results_soon(r, ids, deadline=30)
    starts = [o["result"] for o in outcomes]
    assert window_max(starts) <= 10
    assert max(starts) - min(starts) >= 3.0 - 0.05  # 35 starts at 10/s need at least 3 s
    # refused jobs were released, not failed, and used no try
    assert int(r.hget(K.stats, "failed") or 0) == 0


async def test_a_limiter_keyed_by_tenant_does_not_let_one_tenant_throttle_another(r: Any, redis_url: str) -> None:
    async with running(redis_url, concurrency=20):
        ids_a = dispatch(
            redis_url, *({"name": "t.tenant_limited", "id": f"a{i}", "payload": i, "tenant": "A"} for i in range(6))
        )
        ids_b = dispatch(
            redis_url, *({"name": "t.tenant_limited", "id": f"b{i}", "payload": i, "tenant": "B"} for i in range(3))
        )
        await all_results_soon(r, ids_b)  # B is served although A is over its limit
        done_a = [x for x in results(r, *ids_a) if x is not None]
        assert len(done_a) == 3
        # A's other three wait, delayed for when a slot frees (the window is 30 s); the worker
        # sends the release of a refused job with its next acks, which may follow B's results
        await until(lambda: r.zcard(K.delayed) == 3, deadline=10, what="A's three refused jobs to wait, delayed")
        assert len([x for x in results(r, *ids_a) if x is not None]) == 3


async def test_a_concurrency_limiter_caps_running_jobs_across_workers(r: Any, redis_url: str) -> None:
    ids = dispatch(redis_url, *({"name": "t.exclusive", "id": f"x{i}", "payload": i} for i in range(8)))
    await asyncio.gather(burst(redis_url, concurrency=10), burst(redis_url, concurrency=10))
    spans = [o["result"] for o in await all_results_soon(r, ids, deadline=30)]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2


@pytest.mark.slow
def test_a_blocking_job_past_its_timeout_is_killed_recorded_and_its_neighbour_finishes_elsewhere(
    r: Any, procs: Processes, redis_url: str, tmp_path: Path
) -> None:
    hook = tmp_path / "hook.jsonl"
    (a,) = start_workers(procs, redis_url, 1, concurrency=2)
    dispatch(
        redis_url,
        {"name": "t.stuck", "id": "stuck", "payload": {"hook_file": str(hook)}},
        {"name": "t.sleep", "id": "neighbour", "payload": {"seconds": 2.0}},
    )
    wait_until(lambda: r.zcard(K.reserved) == 2, what="both jobs running on the first worker")
    procs.worker("t")  # somewhere for the neighbour to go
    assert a.wait(timeout=20) == 70  # the first worker replaced itself
    (neighbour,) = all_results(r, ["neighbour"])
    assert neighbour["result"]["pid"] != a.pid
    (stuck,) = results(r, "stuck")
    assert stuck["error"]["kind"] == "timeout"
    record = r.hgetall(K.job("stuck"))
    assert record["state"] == "failed" and json.loads(record["checkpoint"]) == {"step": 1}
    assert json.loads(record["failure"])["checkpoint"] == {"step": 1}
    calls = [json.loads(line) for line in hook.read_text().splitlines()]
    assert calls == [{"type": "TimeoutError", "kind": "timeout", "partial": {"step": 1}}]


async def test_an_async_job_past_its_timeout_is_cancelled_and_recorded_and_the_worker_lives_on(
    r: Any, redis_url: str, tmp_path: Path
) -> None:
    hook = tmp_path / "hook.jsonl"
    async with running(redis_url) as w:
        dispatch(redis_url, {"name": "t.slow_async", "id": "slow", "payload": {"hook_file": str(hook)}})
        (outcome,) = await all_results_soon(r, ["slow"])
        assert outcome["error"]["kind"] == "timeout" and "0.5s" in outcome["error"]["message"]
        # the failed hook runs right after the failure is recorded
        await until(lambda: hook.exists() and hook.read_text().endswith("\n"), what="the failed hook")
        assert json.loads(hook.read_text()) == {
            "type": "TimeoutError",
            "kind": "timeout",
            "partial": {"step": "before the wait"},
        }
        assert not w.stop_event.is_set() and w.exit_code == 0
        dispatch(redis_url, {"name": "t.sleep", "id": "after", "payload": {"seconds": 0}})
        await all_results_soon(r, ["after"])


async def test_a_retry_receives_the_checkpoint_of_the_failed_attempt(r: Any, redis_url: str) -> None:
    dispatch(redis_url, {"name": "t.resumes", "id": "c"})
    await burst(redis_url)
    (outcome,) = results(r, "c")
    assert outcome["result"] == {"resumed_from": {"done": ["a", "b"]}, "attempts": 2}


async def test_two_identical_dispatches_both_run(r: Any, redis_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    payload = {"file": str(runs)}
    first = dispatch(redis_url, {"name": "t.counted", "payload": payload, "field": "n1"})
    second = dispatch(redis_url, {"name": "t.counted", "payload": payload, "field": "n2"})
    assert first != second
    await burst(redis_url)
    assert _all_in(r, ["n1", "n2"])
    assert runs.read_text() == "ran\nran\n"
    assert r.hget(K.stats, "deduplicated") is None
    # ...and so do two dispatch("noop", None)
    dispatch(redis_url, {"name": "t.noop", "field": "z1"}, {"name": "t.noop", "field": "z2"})
    await burst(redis_url)
    assert _all_in(r, ["z1", "z2"])
    assert int(r.hget(K.stats, "completed")) == 4


async def test_a_unique_dispatch_while_the_first_is_pending_yields_one_execution(
    r: Any, redis_url: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    payload = {"file": str(runs)}
    unique = {"unique": True}
    first = dispatch(redis_url, {"name": "t.counted", "payload": payload, "field": "d", "overrides": unique})
    second = dispatch(redis_url, {"name": "t.counted", "payload": payload, "field": "d2", "overrides": unique})
    await burst(redis_url)
    assert first == second
    assert _all_in(r, ["d"])
    assert runs.read_text() == "ran\n"
    assert int(r.hget(K.stats, "deduplicated")) == 1
    # once it completed, the same key runs again (no unique_for window given)
    dispatch(redis_url, {"name": "t.counted", "payload": payload, "field": "d3", "overrides": unique})
    await burst(redis_url)
    assert _all_in(r, ["d3"])
    assert runs.read_text() == "ran\nran\n"


async def test_unique_for_keeps_deduplicating_after_completion(r: Any, redis_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    job = {
        "name": "t.counted",
        "payload": {"file": str(runs)},
        "key": "report-2026-11",
        "overrides": {"unique_for": 60},
    }
    (first,) = dispatch(redis_url, {**job, "field": "u1"})
    await burst(redis_url)
    assert _all_in(r, ["u1"])
    (again,) = dispatch(redis_url, {**job, "field": "u2"})
    assert again == first
    await burst(redis_url)
    assert runs.read_text() == "ran\n"


def cli_json_lines(procs: Processes, *args: str) -> list[dict[str, Any]]:
    done = procs.cli_here(*args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def test_the_failed_store_keeps_everything_and_retry_records_which_job_retried_which(
    r: Any, procs: Processes, redis_url: str, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    dispatch(redis_url, {"name": "t.needs_flag", "id": "f1", "payload": {"flag": str(flag), "secret": "sk-live-123"}})
    await burst(redis_url)
    (outcome,) = results(r, "f1")
    assert outcome["error"]["kind"] == "exception"
    (row,) = cli_json_lines(procs, "failed", "list", "--json", "--queue", "t")
    assert row["id"] == "f1" and row["name"] == "t.needs_flag" and row["exception_type"] == "ValueError"
    assert row["payload"]["secret"] == "***" and row["checkpoint"] == {"tried": True}
    shown = procs.cli_here("failed", "show", "f1")
    assert shown.returncode == 0 and "flag file missing" in shown.stdout and "Traceback" in shown.stdout
    assert "sk-live-123" not in shown.stdout
    flag.write_text("")
    retried = procs.cli_here("failed", "retry", "f1")
    assert retried.returncode == 0, retried.stderr
    new_id = retried.stdout.split("->")[1].strip()
    await burst(redis_url)
    (again,) = results(r, "f1")  # the retry writes to the same result field
    assert again == {"result": "ok"}
    assert r.hget(K.job("f1"), "retried_by") == new_id
    assert cli_json_lines(procs, "failed", "list", "--json") == []
    # retrying a job no longer in the store says so
    gone = procs.cli_here("failed", "retry", "f1")
    assert gone.returncode == 2 and "no failed job 'f1'" in gone.stderr


async def test_failed_forget_and_flush(r: Any, procs: Processes, redis_url: str) -> None:
    dispatch(redis_url, *({"name": "t.bad_payload", "id": f"b{i}", "payload": i} for i in range(3)))
    await burst(redis_url)
    assert _all_in(r, ["b0", "b1", "b2"])
    assert len(cli_json_lines(procs, "failed", "list", "--json")) == 3
    assert procs.cli_here("failed", "forget", "b0").returncode == 0
    assert r.exists(K.job("b0")) == 0
    assert procs.cli_here("failed", "show", "b0").returncode == 2
    assert "flushed 2" in procs.cli_here("failed", "flush", "--yes").stdout
    assert cli_json_lines(procs, "failed", "list", "--json") == []


async def test_a_worker_recycles_after_max_jobs_once_its_jobs_are_done(r: Any, redis_url: str) -> None:
    ids = dispatch(
        redis_url, *({"name": "t.sleep", "id": f"m{i}", "payload": {"seconds": 0.2, "n": i}} for i in range(5))
    )
    w = make_worker(redis_url, max_jobs=3, concurrency=2)
    assert await asyncio.wait_for(w.run(), 20) == 0
    assert w.stop_reason == "--max-jobs 3 reached"
    done = [x for x in results(r, *ids) if x is not None]
    assert len(done) == 3 and r.zcard(K.ready) == 2 and r.zcard(K.reserved) == 0


def test_a_worker_over_its_memory_limit_exits_cleanly(procs: Processes) -> None:
    w = procs.start("-m", "evalharness.cli", "--log-level", "info", "work", "--queue", "t", "--memory", "1")
    assert w.wait(timeout=20) == 0
    assert "over --memory 1 MB" in w.communicate()[1]


def test_a_hard_timeout_below_a_job_timeout_is_refused_at_start_naming_the_setting(procs: Processes) -> None:
    done = procs.cli("work", "--queue", "t", "--import", "support.testjobs", "--hard-timeout", "5")
    assert done.returncode == 2
    assert "--hard-timeout" in done.stderr and "t.sleep" in done.stderr


def test_sigterm_still_gives_back_a_rate_limited_release_cleanly(r: Any, procs: Processes, redis_url: str) -> None:
    (w,) = start_workers(procs, redis_url)
    dispatch(redis_url, {"name": "t.sleep", "id": "z", "payload": {"seconds": 0.3}})
    all_results(r, ["z"])
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=10) == 0


@pytest.mark.slow
def test_a_job_that_blocks_the_event_loop_is_recorded_as_timed_out_by_the_watchdog(
    r: Any, procs: Processes, redis_url: str
) -> None:
    (w,) = start_workers(procs, redis_url, 1, concurrency=2)
    dispatch(
        redis_url, {"name": "t.blocks_loop", "id": "blk"}, {"name": "t.sleep", "id": "next", "payload": {"seconds": 30}}
    )
    wait_until(lambda: r.zcard(K.reserved) == 2, what="both jobs running")
    # the loop is stuck: only the watchdog thread can act, 5 s past the 1 s timeout
    assert w.wait(timeout=20) == 70
    (outcome,) = results(r, "blk")
    assert outcome["error"]["kind"] == "timeout" and "event loop" in outcome["error"]["detail"]
    assert json.loads(r.hget(K.job("blk"), "checkpoint")) == {"before": "the block"}
    # the console's event stream says so, as for a timeout the loop itself saw
    (event,) = [f for _, f in r.xrange("eh:events") if f.get("id") == "blk"]
    assert event["kind"] == "job_timed_out" and event["queue"] == "t" and event["job"] == "t.blocks_loop"
    # its neighbour was given back without using a try, not left to its lease
    assert r.zscore(K.ready, "next") is not None and r.hget(K.job("next"), "attempts") == "0"
