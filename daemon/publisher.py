"""The daemon's telemetry duties, run by every master: its own heartbeat, the snapshot published
about once a second while someone listens, and — by one elected leader across all masters — the
per-minute history and the long-wait events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from evalharness.core.connection import REDIS_ERRORS
from evalharness.core.forget import DEFAULT_QUEUE_RETENTION, QueueForgetter, QueueUse
from evalharness.core.format import format_duration
from evalharness.core.keys import GlobalKeys
from evalharness.core.telemetry import (
    EVENTS_MAXLEN,
    HISTORY_CAP,
    MASTER_FORGET,
    channel,
    closed_minute,
    collect_snapshot,
    events_key,
    history_entry,
    history_key,
    masters_key,
)

log = logging.getLogger("evalharness.telemetry")

LEADER_TTL_MS = 5_000
DEFAULT_LONG_WAIT = 60.0
FORGET_EVERY = 60.0  # seconds between the leader's checks for queues nobody uses

_LEAD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""


async def add_event(client: aioredis.Redis, prefix: str, kind: str, **fields: Any) -> None:
    data = {"kind": kind, "at": f"{time.time():.3f}", **{k: str(v) for k, v in fields.items()}}
    await client.xadd(events_key(prefix), data, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]


class Publisher:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        name: str,
        describe: Callable[[], dict[str, Any]],
        long_waits: dict[str, float] | None = None,
        default_long_wait: float = DEFAULT_LONG_WAIT,
        history_cap: int = HISTORY_CAP,
        interval: float = 1.0,
        queue_retention: float = DEFAULT_QUEUE_RETENTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.name = name
        self.describe = describe
        self.long_waits = long_waits or {}
        self.default_long_wait = default_long_wait
        self.history_cap = history_cap
        self.interval = interval
        self.queue_retention = queue_retention  # 0: never forget a queue
        # epoch seconds; the snapshot's time and the waits it measures (a test passes its own)
        self.clock = clock
        self._forgetter = QueueForgetter(client, prefix)
        self._next_forget = 0.0  # monotonic
        self._lead = client.register_script(_LEAD)
        self.published = 0
        self.last_snapshot: dict[str, Any] | None = None  # the newest one built, for the balancer

    def long_wait_for(self, queue: str) -> float:
        return self.long_waits.get(queue, self.default_long_wait)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self.tick()
                backoff = 0.5
                wait = self.interval
            except REDIS_ERRORS as exc:
                log.warning("telemetry: redis unavailable (%s); retrying", exc)
                wait = backoff
                backoff = min(backoff * 2, 5.0)
            except redis.exceptions.RedisError as exc:
                # e.g. an ACL user without the rights this needs: say so, keep trying, never die
                log.error(
                    "telemetry: Redis refused a command (%s: %s); heartbeats and telemetry need it",
                    type(exc).__name__,
                    exc,
                )
                wait = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.client.hdel(masters_key(self.prefix), self.name)

    async def tick(self) -> None:
        now = self.clock()
        info = self.describe()
        info.update(name=self.name, heartbeat_at=now)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(masters_key(self.prefix), self.name, json.dumps(info))
            pipe.pubsub_numsub(channel(self.prefix))
            _, numsub = await pipe.execute()
        listeners = int(numsub[0][1]) if numsub else 0
        leader = bool(
            await self._lead(keys=[GlobalKeys(self.prefix).telemetry_leader], args=[self.name, LEADER_TTL_MS])
        )
        if not listeners and not leader:
            return
        snapshot = await collect_snapshot(self.client, self.prefix, now)
        for q in snapshot["queues"]:
            # the console draws Oldest red past this; only the daemon knows the thresholds
            q["long_wait"] = self.long_wait_for(q["name"])
        self.last_snapshot = snapshot
        if listeners:
            await self.client.publish(channel(self.prefix), json.dumps(snapshot))
            self.published += 1
        if leader:
            await self._history(snapshot)
            await self._long_waits(snapshot)
            await self._forget_dead_masters(snapshot)
            await self._forget_unused_queues(snapshot)

    async def _history(self, snapshot: dict[str, Any]) -> None:
        closed = int(snapshot["at"] // 60) - 1
        last_key = GlobalKeys(self.prefix).telemetry_history_last
        last = await self.client.get(last_key)
        if last is not None and int(last) >= closed:
            return
        queues = [q["name"] for q in snapshot["queues"]]
        entry = history_entry(snapshot, await closed_minute(self.client, self.prefix, queues, closed))
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(history_key(self.prefix), json.dumps(entry))
            pipe.ltrim(history_key(self.prefix), -self.history_cap, -1)
            pipe.set(last_key, closed)
            await pipe.execute()

    async def _long_waits(self, snapshot: dict[str, Any]) -> None:
        state_key = GlobalKeys(self.prefix).telemetry_long_wait
        for q in snapshot["queues"]:
            wait = q["oldest_wait"]
            threshold = self.long_wait_for(q["name"])
            if wait is not None and wait >= threshold:
                # fires once per crossing: the flag stays until the wait drops below the threshold
                if await self.client.hsetnx(state_key, q["name"], "1"):
                    await add_event(
                        self.client,
                        self.prefix,
                        "long_wait",
                        queue=q["name"],
                        seconds=f"{wait:.1f}",
                        threshold=f"{threshold:g}",
                        message=f"oldest job on {q['name']} has waited {format_duration(wait)}",
                    )
            else:
                await self.client.hdel(state_key, q["name"])

    async def _forget_dead_masters(self, snapshot: dict[str, Any]) -> None:
        """A master that stopped cleanly removed itself; one silent past its TTL stays listed (the
        console shows it as lost) until MASTER_FORGET has passed."""
        alive = {m["name"] for m in snapshot["masters"]}
        entries = await self.client.hgetall(masters_key(self.prefix))
        dead = []
        for name, raw in entries.items():
            if name in alive or name == self.name:
                continue
            try:
                beat = float(json.loads(raw).get("heartbeat_at", 0))
            except (ValueError, TypeError, AttributeError):
                beat = 0.0
            if snapshot["at"] - beat > MASTER_FORGET:
                dead.append(name)
        if dead:
            await self.client.hdel(masters_key(self.prefix), *dead)

    async def _forget_unused_queues(self, snapshot: dict[str, Any]) -> None:
        """Once a minute, let the forget script look at the queues that seem unused: it starts
        their retention clock, or forgets them once it has run out."""
        now = time.monotonic()
        if not self.queue_retention or now < self._next_forget:
            return
        self._next_forget = now + FORGET_EVERY
        unused = [
            q["name"]
            for q in snapshot["queues"]
            if not (
                q["ready"] or q.get("held") or q["delayed"] or q["reserved"] or q["failed_stored"] or q["processes"]
            )
        ]
        for outcome in await self._forgetter.sweep(unused, self.queue_retention):
            if outcome.use is QueueUse.FORGOTTEN:
                log.info(
                    "telemetry: forgot queue %s (no jobs and no workers for %s)",
                    outcome.queue,
                    format_duration(self.queue_retention),
                )
