"""Jobs behind an adaptive limiter, for the worker tests: a call that "gets a 429" on its first
attempt when asked to, and records when it ran."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from evalharness.core import RateLimited, adaptive_limiter
from evalharness.core.jobs import JobContext, job

adaptive_limiter("t-api", floor=1, ceiling=8, start=4, cooldown=0, retry_after=0.05, hold=5)


@job("t.adaptive", queue="t", limiters=["t-api"], tries=1)
async def adaptive_call(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    await asyncio.sleep(payload.get("seconds", 0.1))
    if payload.get("throttle") and ctx.job.releases == 0:
        raise RateLimited(0.05, "the API answered 429")
    return {
        "started": started,
        "ended": time.time(),
        "attempts": ctx.job.attempts,
        "releases": ctx.job.releases,
        "tries_used": ctx.job.tries_used,
    }
