"""SAQ's side of the peer comparison: its Redis queue with its defaults, and the jobs."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis.asyncio as aioredis
from saq.queue.redis import RedisQueue  # its URL parser knows no unix sockets

URL = os.environ["PEERBENCH_URL"]


async def noop(ctx: Any, *, payload: Any = None) -> None:
    return None


async def sleep50(ctx: Any, *, payload: Any = None) -> None:
    await asyncio.sleep(0.05)


_client: aioredis.Redis | None = None


async def latency(ctx: Any, *, sent: float) -> None:
    global _client
    started = time.time()
    if _client is None:
        _client = aioredis.Redis.from_url(URL)
    await _client.rpush("peerbench:latency", f"{started - sent:.6f}")


settings = {
    "queue": RedisQueue(aioredis.Redis.from_url(URL)),
    "functions": [noop, sleep50, latency],
    "concurrency": int(os.environ.get("PEERBENCH_CONCURRENCY", "10")),
}
