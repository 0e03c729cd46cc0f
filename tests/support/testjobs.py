"""Jobs and SUTs the tests run in real worker processes (imported with --import)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from evalharness.core.jobs import JobContext, job


@job("t.sleep", queue="t")
async def sleep_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    await asyncio.sleep(payload["seconds"])
    return {"attempts": ctx.job.attempts, "started": started, "pid": os.getpid()}


@job("t.blocking", queue="t")
def blocking_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    time.sleep(payload["seconds"])
    return {"attempts": ctx.job.attempts, "pid": os.getpid()}


@job("t.noop", queue="t")
async def noop_job(payload: Any) -> None:
    return None


@job("t.loop", queue="t")
async def loop_job(payload: Any) -> str:
    """The class of the selector the worker's event loop waits with."""
    return type(asyncio.get_running_loop()._selector).__name__  # type: ignore[attr-defined]


# -- job semantics ---------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

from evalharness.core import PermanentError, RateLimited, concurrency_limiter, limiter  # noqa: E402
from evalharness.core.examples.http_sut import HTTPStatusError, post_json  # noqa: E402

limiter("ten-per-second", per_second=10)
limiter("three-per-tenant", limit=3, window=30, key=lambda job: job.tenant)
concurrency_limiter("two-at-once", 2)


@job("t.limited", queue="t", limiters=["ten-per-second"])
async def limited_job(payload: Any) -> float:
    return time.time()


@job("t.tenant_limited", queue="t", limiters=["three-per-tenant"])
async def tenant_limited_job(payload: Any) -> float:
    return time.time()


@job("t.exclusive", queue="t", limiters=["two-at-once"])
async def exclusive_job(payload: Any) -> list[float]:
    started = time.time()
    await asyncio.sleep(0.3)
    return [started, time.time()]


@job("t.rate_limited_5", queue="t", tries=3, backoff=0.05)
async def rate_limited_five_times(ctx: JobContext, payload: Any) -> dict[str, int]:
    if ctx.job.releases < 5:
        raise RateLimited(retry_after=0.05)
    return {"attempts": ctx.job.attempts, "releases": ctx.job.releases, "tries_used": ctx.job.tries_used}


@job("t.http", queue="t", tries=3, backoff=0.05)
async def http_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    status, headers, body = await post_json(
        payload["url"] + "/v1/answer", {"question": "What is 2 + 2?"}, {"Idempotency-Key": payload["key"]}
    )
    if status != 200:
        raise HTTPStatusError(status, {"Retry-After": headers.get("retry-after", "")}, body)
    return {"answer": json.loads(body)["answer"], "releases": ctx.job.releases, "tries_used": ctx.job.tries_used}


def _record_hook(ctx: JobContext, exc: BaseException, error: dict[str, Any]) -> None:
    """The failed hook: writes what it was given next to the test, once per call."""
    path = Path(ctx.job.payload["hook_file"])
    with path.open("a") as fh:
        fh.write(json.dumps({"type": type(exc).__name__, "kind": error["kind"], "partial": ctx.partial}) + "\n")


@job("t.stuck", queue="t", timeout=1, tries=1, on_failure=_record_hook)
def stuck_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    ctx.checkpoint({"step": 1})
    time.sleep(payload.get("seconds", 60))


@job("t.slow_async", queue="t", timeout=0.5, tries=1, on_failure=_record_hook)
async def slow_async_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    ctx.checkpoint({"step": "before the wait"})
    await asyncio.sleep(30)


@job("t.resumes", queue="t", tries=3, backoff=0.05)
async def resumes_job(ctx: JobContext, payload: Any) -> Any:
    if ctx.partial is None:
        ctx.checkpoint({"done": ["a", "b"]})
        raise RuntimeError("provider failed after two of three steps")
    return {"resumed_from": ctx.partial, "attempts": ctx.job.attempts}


@job("t.counted", queue="t")
def counted_job(payload: dict[str, Any]) -> None:
    with Path(payload["file"]).open("a") as fh:
        fh.write("ran\n")
    time.sleep(payload.get("seconds", 0))


@job("t.needs_flag", queue="t", tries=1, redact=["secret"])
def needs_flag_job(ctx: JobContext, payload: dict[str, Any]) -> str:
    ctx.checkpoint({"tried": True})
    if not Path(payload["flag"]).exists():
        raise ValueError("flag file missing")
    return "ok"


@job("t.bad_payload", queue="t")
async def bad_payload_job(payload: Any) -> None:
    raise PermanentError("payload has no 'question'", kind="invalid_payload")


@job("t.outcome", queue="t", tries=1, timeout=0.3)
async def outcome_job(payload: dict[str, Any]) -> None:
    """Does what it is told: "ok", "fail" (an exception) or "timeout" (sleeps past its timeout)."""
    if payload["do"] == "fail":
        raise RuntimeError(f"told to fail ({payload['n']})")
    if payload["do"] == "timeout":
        await asyncio.sleep(5)
    await asyncio.sleep(0.01)


# -- batches -----------------------------------------------------------------------------------

import redis as _redis  # noqa: E402

from evalharness.core.batches import BatchInfo, batch_callback  # noqa: E402


@job("t.span", queue="t")
async def span_job(payload: dict[str, Any]) -> list[float]:
    started = time.time()
    await asyncio.sleep(payload.get("seconds", 0))
    return [started, time.time()]


@job("t.maybe_fail", queue="t", tries=1)
def maybe_fail_job(payload: dict[str, Any]) -> str:
    if payload.get("fail") and not Path(payload["flag"]).exists():
        raise RuntimeError("told to fail until the flag file exists")
    return "ok"


def _record_callback(stage: str) -> Any:
    def record(batch: BatchInfo) -> None:
        client = _redis.Redis.from_url(os.environ["EVALHARNESS_REDIS_URL"], decode_responses=True)
        try:
            client.rpush("t:callbacks", f"{stage}:{batch.id}:{batch.state}:{batch.processed}/{batch.total}")
        finally:
            client.close()

    return record


for _stage in ("before", "progress", "then", "catch", "finally"):
    batch_callback(f"t.{_stage}")(_record_callback(_stage))


@job("t.blocks_loop", queue="t", timeout=1, tries=1)
async def blocks_loop_job(ctx: JobContext, payload: Any) -> None:
    """Blocking code inside an async job: the event loop itself stops."""
    ctx.checkpoint({"before": "the block"})
    await asyncio.sleep(0.1)  # let the checkpoint reach Redis
    time.sleep(60)  # noqa: ASYNC251


# -- cancel and progress -----------------------------------------------------------------------


@job("t.cancellable", queue="t", timeout=120, tries=3)
async def cancellable_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Calls its "SUT" (a line in a file) every 0.1 s until cancelled, checkpointing and reporting progress."""
    calls = Path(payload["calls"])
    step = 0
    while True:
        step += 1
        with calls.open("a") as fh:  # noqa: ASYNC230 (a tiny local append stands in for the SUT call)
            fh.write(f"{ctx.job.id} {time.time()}\n")
        if step % 3 == 1:
            ctx.checkpoint({"step": step})
        ctx.progress(min(0.99, step / 1000), f"step {step}")
        await asyncio.sleep(0.1)


@job("t.sync_cancellable", queue="t", timeout=120, tries=3)
def sync_cancellable_job(ctx: JobContext, payload: dict[str, Any]) -> str:
    """Blocking code that returns after `seconds` and does not look at cancel_requested."""
    ctx.checkpoint({"started": True})
    ctx.progress(0.5, "blocking")
    end = time.time() + payload["seconds"]
    while time.time() < end:
        time.sleep(0.05)
    return "done"


concurrency_limiter("one-short-hold", 1, hold=2, retry_after=0.2)


@job("t.exclusive_long", queue="t", limiters=["one-short-hold"], timeout=30)
async def exclusive_long_job(payload: Any) -> list[float]:
    """Runs longer than its limiter slot's hold: only the worker's renewals keep the slot."""
    started = time.time()
    await asyncio.sleep(payload.get("seconds", 4))
    return [started, time.time()]
