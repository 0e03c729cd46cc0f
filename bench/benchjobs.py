"""Jobs and a SUT for the benchmarks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from evalharness.core.jobs import job


@job("bench.noop", queue="bench")
async def noop(payload: Any) -> None:
    return None


@job("bench.stamp", queue="bench")
async def stamp(payload: Any) -> float:
    """Returns when it started, to measure pickup latency."""
    return time.time()


async def sut_50ms(question: Any) -> str:
    await asyncio.sleep(0.05)
    return str(question)


@job("bench.sleep100", queue="x")
async def sleep100(ctx: Any, payload: Any) -> float:
    """100 ms of work; returns how long the job waited in the queue."""
    waited = time.time() - ctx.job.enqueued_at
    await asyncio.sleep(0.1)
    return waited
