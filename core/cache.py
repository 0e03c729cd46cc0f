"""The response cache: SUT outputs kept in Redis by the SUT's fingerprint and the sample's input,
so a run of the same code on the same inputs reuses them without calling the SUT again.

The fingerprint covers the SUT's source (a Python SUT) or its spec and settings (an ``openai:`` or
``http:`` SUT: model, temperature, system prompt, URL), so a change to any of them misses.  Only
outputs are cached, never failures; each entry expires after the cache's TTL (7 days by default).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .datasets import Dataset
from .errors import ConfigError, EvalHarnessError
from .keys import GlobalKeys
from .report import SampleOutcome

DEFAULT_CACHE_TTL = 7 * 86_400  # seconds, as Inspect AI's response cache
CACHE_VERSION = 1
_RUN_KEYS = {"cache": bool, "cache_ttl": int}


@dataclass(frozen=True)
class CacheSettings:
    """``[run] cache = true``, ``cache_ttl = SECONDS`` of the config file; flags override them."""

    enabled: bool = False
    ttl: int = DEFAULT_CACHE_TTL


def check_run_table(raw: Any, path: str) -> dict[str, Any]:
    """The ``[run]`` table's cache keys, checked; an error names the file, table and key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: [run] must be a table")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _RUN_KEYS:
            raise ConfigError(f"{path}: table [run]: unknown key {key!r} (known: {', '.join(sorted(_RUN_KEYS))})")
        want = _RUN_KEYS[key]
        if want is bool and not isinstance(value, bool):
            raise ConfigError(f"{path}: table [run]: key {key!r} must be true or false, got {value!r}")
        if want is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{path}: table [run]: key {key!r} must be a whole number of seconds >= 1, got {value!r}")
        out[key] = value
    return out


def cache_settings(run_table: Mapping[str, Any], flag: bool | None, ttl_flag: int | None) -> CacheSettings:
    """``--cache/--no-cache`` and ``--cache-ttl`` win over ``[run]``; the default is off."""
    enabled = bool(run_table.get("cache", False)) if flag is None else flag
    ttl = ttl_flag if ttl_flag is not None else int(run_table.get("cache_ttl", DEFAULT_CACHE_TTL))
    if ttl < 1:
        raise EvalHarnessError(f"--cache-ttl must be >= 1 second, got {ttl}")
    return CacheSettings(enabled, ttl)


def cache_digest(sut: str, fingerprint: str | None, sample_input: Any, variant: str | None = None) -> str:
    """sha256 of the SUT, its fingerprint and the input (keys sorted, so the same input in
    another key order hits).  ``variant`` tells apart outputs that must not be shared although
    the input is the same, such as the repetitions of one sample (as Inspect AI keys by epoch)."""
    key: dict[str, Any] = {"v": CACHE_VERSION, "sut": sut, "fingerprint": fingerprint, "input": sample_input}
    if variant is not None:
        key["variant"] = variant
    body = json.dumps(key, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class ResponseCache:
    """Reads and writes the cached outputs of one SUT (one fingerprint)."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        sut: str,
        fingerprint: str | None,
        ttl: int = DEFAULT_CACHE_TTL,
        repetitions: int = 1,
    ) -> None:
        self.client = client
        # a repeated run executes each sample ``repetitions`` times in a row (unit u is repetition
        # u % repetitions): each repetition keeps its own entry, or the cache would make them agree
        self.repetitions = repetitions
        self.keys = GlobalKeys(prefix)
        self.sut = sut
        self.fingerprint = fingerprint
        self.ttl = ttl

    def key(self, sample_input: Any, index: int = 0) -> str:
        variant = None if self.repetitions <= 1 else f"repetition:{index % self.repetitions}"
        return self.keys.cache_entry(cache_digest(self.sut, self.fingerprint, sample_input, variant))

    async def lookup(self, dataset: Dataset) -> dict[int, dict[str, Any]]:
        """The cached outputs of ``dataset``'s samples, as the result store holds outcomes
        (``{"result": {"output", "attempts": 0, "usage"?, "cached": true}}``), by index."""
        if not dataset.samples:
            return {}
        raw = await self.client.mget([self.key(s.input, i) for i, s in enumerate(dataset.samples)])
        hits: dict[int, dict[str, Any]] = {}
        for index, value in enumerate(raw):
            if value is None:
                continue
            try:
                entry = json.loads(value)
                output = entry["output"]
            except (ValueError, KeyError, TypeError):
                continue  # an unreadable entry is a miss; the fresh output overwrites it
            if not isinstance(output, str):
                continue
            result: dict[str, Any] = {
                "output": output,
                "attempts": 0,
                "cached": True,
                "sut_fingerprint": self.fingerprint,
            }
            if entry.get("usage"):
                result["usage"] = entry["usage"]
            hits[index] = {"result": result}
        return hits

    async def store(
        self, outcomes: Sequence[SampleOutcome], skip: Mapping[int, Any] = {}, now: float | None = None
    ) -> int:
        """Keep the outputs of ``outcomes`` (never their failures), except those of ``skip`` (the
        cached ones, whose TTL is not renewed by being read); returns how many were written."""
        stamp = time.time() if now is None else now
        pipe = self.client.pipeline(transaction=False)
        written = 0
        for o in outcomes:
            if o.index in skip or o.error is not None or o.output is None:
                continue
            entry: dict[str, Any] = {"output": o.output, "stored_at": stamp, "sample_id": o.sample.id}
            if o.usage:
                entry["usage"] = o.usage
            pipe.set(self.key(o.sample.input, o.index), json.dumps(entry, ensure_ascii=False), ex=self.ttl)
            written += 1
        if written:
            await pipe.execute()
        return written


async def cache_stats(client: aioredis.Redis, prefix: str) -> dict[str, Any]:
    """How many outputs the cache holds and the memory they take (bytes, where the server says)."""
    keys = GlobalKeys(prefix)
    entries = 0
    size = 0
    oldest: float | None = None
    batch: list[Any] = []

    async def count(names: list[Any]) -> None:
        nonlocal entries, size, oldest
        for raw in await client.mget(names):  # one round trip per 500 entries
            if raw is None:
                continue  # expired between the scan and the read
            entries += 1
            size += len(raw)
            try:
                stored = float(json.loads(raw).get("stored_at"))
            except (ValueError, TypeError, AttributeError):
                continue
            if math.isfinite(stored):
                oldest = stored if oldest is None else min(oldest, stored)

    async for key in client.scan_iter(match=keys.cache_pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            await count(batch)
            batch = []
    if batch:
        await count(batch)
    return {"entries": entries, "bytes": size, "oldest_stored_at": oldest}


async def cache_clear(client: aioredis.Redis, prefix: str) -> int:
    """Delete every cached output (each entry is one key, so no script is needed); returns how many."""
    keys = GlobalKeys(prefix)
    removed = 0
    batch: list[Any] = []
    async for key in client.scan_iter(match=keys.cache_pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(await client.unlink(*batch))
            batch = []
    if batch:
        removed += int(await client.unlink(*batch))
    return removed


def cache_summary(settings: CacheSettings, total: int, hits: int, stored: int) -> dict[str, Any]:
    """The report's ``cache`` block."""
    return {
        "enabled": settings.enabled,
        "ttl_seconds": settings.ttl,
        "hits": hits,
        "misses": total - hits,
        "stored": stored,
    }
