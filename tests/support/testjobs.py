"""Jobs and SUTs the tests run in real worker processes (imported with --import)."""

from __future__ import annotations

import asyncio
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
