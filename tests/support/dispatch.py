"""Dispatching test jobs through the real queue code: one helper for every test that queues
work, sync (for tests that drive processes) and async (for tests that run a worker in-process)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from evalharness.core.connection import async_client
from evalharness.core.jobs import JobOptions
from evalharness.core.queue import JobRequest, Queue


def requests(jobs: list[dict[str, Any]], queue: str, sink: str | None) -> list[JobRequest]:
    """JobRequests from plain dicts: ``name`` and optionally ``payload``, ``id``, ``queue``,
    ``tenant``, ``key``, ``delay``, ``overrides``, ``options`` (a dict of JobOptions) and
    ``field`` (the result field; the id when not given)."""
    out = []
    for j in jobs:
        out.append(
            JobRequest(
                j["name"],
                j.get("payload"),
                queue=j.get("queue", queue),
                id=j.get("id"),
                tenant=j.get("tenant"),
                key=j.get("key"),
                delay=float(j.get("delay") or 0.0),
                options=JobOptions(**j["options"]) if j.get("options") is not None else None,
                result_to=None if sink is None else (sink, str(j.get("field") or j.get("id") or "x"), 600),
                overrides=j.get("overrides") or {},
            )
        )
    return out


async def adispatch(
    url: str, *jobs: dict[str, Any], queue: str = "t", sink: str | None = "s", prefix: str = "eh"
) -> list[str]:
    client = async_client(url)
    try:
        return await Queue(client, prefix).dispatch_many(requests(list(jobs), queue, sink))
    finally:
        await client.aclose()


def dispatch(
    url: str, *jobs: dict[str, Any], queue: str = "t", sink: str | None = "s", prefix: str = "eh"
) -> list[str]:
    """Dispatch ``jobs`` (see :func:`requests`); returns the id representing each.  Callable from
    an async test too (on a thread of its own, so it needs no await)."""

    def go() -> list[str]:
        return asyncio.run(adispatch(url, *jobs, queue=queue, sink=sink, prefix=prefix))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return go()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(go).result(timeout=30)
