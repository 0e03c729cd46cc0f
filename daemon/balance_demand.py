"""What the auto-balancer reads from Redis each pass: every queue's ready, running and paused
state and its oldest ready job, fresh, in one round trip; the runtimes come from the telemetry
snapshot, which changes slowly."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evalharness.core.keys import QueueKeys
from evalharness.core.queue import pipe_ready_state

from .balancer import QueueDemand


async def read_demand(
    client: Any, prefix: str, queues: Iterable[str], snapshot: Mapping[str, Any] | None, now: float
) -> dict[str, QueueDemand]:
    """Each queue's demand now (``now`` in epoch seconds, for the oldest job's wait).  A telemetry
    snapshot a second old would let a burst wait a second longer for its processes.

    Ready jobs a batch's ``max_running`` holds back are no demand: they start as the batch's
    running jobs end, whatever the processes (``ready_state.lua``, as the telemetry counts them),
    and the oldest wait is that of the oldest job that could start now."""
    names = list(dict.fromkeys(queues))
    async with client.pipeline(transaction=False) as pipe:
        for q in names:
            k = QueueKeys(prefix, q)
            pipe_ready_state(pipe, k)
            pipe.zcard(k.reserved)
            pipe.exists(k.paused)
        replies = await pipe.execute()
    rows = {str(r.get("name")): r for r in (snapshot or {}).get("queues", [])}
    out = {}
    for i, q in enumerate(names):
        (ready, oldest, _held), reserved, paused = replies[3 * i : 3 * i + 3]
        oldest_ms = int(oldest)  # -1: no ready job could start now
        wait = max(0.0, now - oldest_ms / 1000.0) if oldest_ms >= 0 else 0.0
        row = {
            "ready": int(ready),
            "reserved": int(reserved),
            "oldest_wait": wait,
            "paused": bool(paused),
            "runtime": (rows.get(q) or {}).get("runtime"),
        }
        out[q] = QueueDemand.from_telemetry(row)
    return out
