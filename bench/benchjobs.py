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


@job("bench.sleep50", queue="bench")
async def sleep50(payload: Any) -> None:
    await asyncio.sleep(0.05)


@job("bench.latency", queue="bench")
async def latency(ctx: Any, payload: Any) -> None:
    """Records how long after its dispatch call began it started (the peer comparison's W3)."""
    started = time.time()
    await ctx.client.rpush("peerbench:latency", f"{started - float(payload):.6f}")


@job("bench.hold", queue="bench", timeout=600)
async def hold(payload: Any) -> None:
    """Stays in flight for ``payload`` seconds (the memory figure of a busy worker)."""
    await asyncio.sleep(float(payload))


@job("bench.sleep1000", queue="y")
async def sleep1000(ctx: Any, payload: Any) -> float:
    """1 s of work (a judge call, say); returns how long the job waited in the queue."""
    waited = time.time() - ctx.job.enqueued_at
    await asyncio.sleep(1.0)
    return waited
