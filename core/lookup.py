"""Finding things by what an operator types: a batch, job, queue or master by id prefix or name,
for the console's command palette. Every read is bounded, so a lookup never walks a whole store:
ids come from an index scan with a ``MATCH`` pattern, names from the newest batches only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .batches import batch_index_key, batch_key, batches_key
from .keys import QueueKeys
from .queue import known_queues
from .telemetry import masters_key

NAMES_READ = 200
"""Batches per queue (newest first) whose names are compared with the text."""

SCAN_COUNT = 500
"""Elements asked of each SCAN step; a lookup reads at most :data:`SCAN_STEPS` of them per index."""

SCAN_STEPS = 20


@dataclass(frozen=True, slots=True)
class Found:
    """One thing a lookup found: ``kind`` is batch, job, queue or master; ``state`` says where a
    job was found (failed or running)."""

    kind: str
    id: str
    label: str
    queue: str | None = None
    state: str | None = None


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


async def _scan_hash(client: aioredis.Redis, key: str, pattern: str, limit: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    cursor = 0
    for _ in range(SCAN_STEPS):
        reply: Any = await client.hscan(key, cursor, match=pattern, count=SCAN_COUNT)
        cursor, items = reply
        out.extend((str(k), str(v)) for k, v in items.items())
        if cursor == 0 or len(out) >= limit:
            break
    return out[:limit]


async def _scan_zset(client: aioredis.Redis, key: str, pattern: str, limit: int) -> list[str]:
    out: list[str] = []
    cursor = 0
    for _ in range(SCAN_STEPS):
        cursor, items = await client.zscan(key, cursor, match=pattern, count=SCAN_COUNT)
        out.extend(str(member) for member, _ in items)
        if cursor == 0 or len(out) >= limit:
            break
    return out[:limit]


async def lookup(client: aioredis.Redis, prefix: str, text: str, limit: int = 20) -> list[Found]:
    """What matches ``text``: queues and masters whose name contains it, batches whose id starts
    with it or whose name contains it, failed and running jobs whose id starts with it."""
    text = text.strip()
    if not text:
        return []
    needle = text.lower()
    pattern = glob_escape(text) + "*"
    found: list[Found] = []
    seen: set[tuple[str, str]] = set()

    def add(item: Found) -> None:
        if (item.kind, item.id) not in seen and len(found) < limit:
            seen.add((item.kind, item.id))
            found.append(item)

    queues = await known_queues(client, prefix)
    for q in queues:
        if needle in q.lower():
            add(Found("queue", q, q))
    for bid, queue in await _scan_hash(client, batch_index_key(prefix), pattern, limit):
        name = await client.hget(batch_key(QueueKeys(prefix, queue), bid), "name")
        add(Found("batch", bid, str(name or bid), queue))
    for q in queues:
        keys = QueueKeys(prefix, q)
        ids = [str(b) for b in await client.zrevrange(batches_key(keys), 0, NAMES_READ - 1)]
        if not ids:
            continue
        async with client.pipeline(transaction=False) as pipe:
            for bid in ids:
                pipe.hget(batch_key(keys, bid), "name")
            names = await pipe.execute()
        for bid, name in zip(ids, names, strict=True):
            if name and needle in str(name).lower():
                add(Found("batch", bid, str(name), q))
    for q in queues:
        keys = QueueKeys(prefix, q)
        for job in await _scan_zset(client, keys.failed, pattern, limit):
            add(Found("job", job, job, q, "failed"))
        for job in await _scan_zset(client, keys.reserved, pattern, limit):
            add(Found("job", job, job, q, "running"))
    for name, raw in (await client.hgetall(masters_key(prefix))).items():
        try:
            info: Any = json.loads(raw)
        except ValueError:
            info = {}
        label = str(info.get("name") or name) if isinstance(info, dict) else str(name)
        if needle in label.lower() or str(name).lower().startswith(needle):
            add(Found("master", str(name), label))
    return found
