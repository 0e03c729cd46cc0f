"""What the auto-balancer reads from Redis each pass: every queue's ready, running and paused
state and its oldest ready job, fresh, in one round trip; the runtimes come from the telemetry
snapshot, which changes slowly."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evalharness.core.keys import QueueKeys

from .balancer import QueueDemand


async def read_demand(
    client: Any, prefix: str, queues: Iterable[str], snapshot: Mapping[str, Any] | None, now: float
) -> dict[str, QueueDemand]:
    """Each queue's demand now (``now`` in epoch seconds, for the oldest job's wait).  A telemetry
    snapshot a second old would let a burst wait a second longer for its processes."""
    names = list(dict.fromkeys(queues))
    async with client.pipeline(transaction=False) as pipe:
        for q in names:
            k = QueueKeys(prefix, q)
            pipe.zcard(k.ready)
            pipe.zcard(k.reserved)
            pipe.zrange(k.ready, 0, 0, withscores=True)
            pipe.exists(k.paused)
        replies = await pipe.execute()
    rows = {str(r.get("name")): r for r in (snapshot or {}).get("queues", [])}
    out = {}
    for i, q in enumerate(names):
        ready, reserved, oldest, paused = replies[4 * i : 4 * i + 4]
        wait = max(0.0, now - float(oldest[0][1]) / 1000.0) if oldest else 0.0
        row = {
            "ready": int(ready),
            "reserved": int(reserved),
            "oldest_wait": wait,
            "paused": bool(paused),
            "runtime": (rows.get(q) or {}).get("runtime"),
        }
        out[q] = QueueDemand.from_telemetry(row)
    return out
