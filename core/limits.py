"""Named limiters shared by every worker: a rate limiter (at most N starts per window) and a
concurrency limiter (at most N running at once), each scoped per key (a tenant, a model...).

Every decision is one Lua script on Redis, so two workers never both take the last slot.  A job
the limiter refuses is released for exactly the time until a slot frees, without using a try.

An adaptive limiter (``adaptive_limiter``) is a concurrency limiter whose limit learns: each job
that raises :class:`~evalharness.core.jobs.RateLimited` lowers it, sustained success raises it
(``core/adaptive.py``).

    from evalharness.core import limiter, concurrency_limiter, job

    limiter("llm-gateway", per_minute=80, key=lambda job: job.tenant)
    concurrency_limiter("gpu", 4)
    adaptive_limiter("search-api", floor=1, ceiling=32)

    @job("summarise", limiters=["llm-gateway", "gpu"])
    async def summarise(payload): ...
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .adaptive import NEUTRAL, OK, THROTTLED, AdaptiveClient, AdaptiveParams, Grant, jittered
from .config import validate_name
from .errors import ConfigError
from .jobs import Job
from .keys import LimiterKeys
from .queue import Scripts

KeyFunc = Callable[[Job], Any]

# A rate limiter's window in Redis is this much longer than its nominal window, so that the
# guarantee holds for the moments jobs actually start (a few ms after their grant, under load)
# and not only for the grants: at most 2 % or 50 ms of throughput, whichever is larger.
RATE_MARGIN_FRACTION = 0.02
RATE_MARGIN_MIN = 0.05


@dataclass(frozen=True)
class Limiter:
    name: str
    kind: str  # "rate", "concurrency" or "adaptive"
    limit: int
    span: float  # rate: window seconds; concurrency: how long a slot is held without renewal
    key: KeyFunc | None = None
    retry_after: float = 1.0  # concurrency: the longest a refused job waits before trying again
    adaptive: AdaptiveParams | None = None  # adaptive: its bounds and pace

    def scope(self, job: Job) -> str:
        if self.key is None:
            return "_"
        value = self.key(job)
        return "_" if value is None or value == "" else str(value)

    def redis_key(self, prefix: str, scope: str) -> str:
        return LimiterKeys(prefix, self.name, scope).slots


LIMITERS: dict[str, Limiter] = {}


def limiter(
    name: str,
    *,
    per_second: float | None = None,
    per_minute: float | None = None,
    per_hour: float | None = None,
    limit: int | None = None,
    window: float | None = None,
    key: KeyFunc | None = None,
) -> Limiter:
    """Register a rate limiter: ``per_minute=80`` = at most 80 starts in any 60 s, per key."""
    validate_name("limiter", name)
    given = [(v, w) for v, w in ((per_second, 1.0), (per_minute, 60.0), (per_hour, 3600.0)) if v is not None]
    if limit is not None or window is not None:
        if limit is None or window is None:
            raise ConfigError(f"limiter {name!r}: give both limit= and window=")
        given.append((float(limit), float(window)))
    if len(given) != 1:
        raise ConfigError(f"limiter {name!r}: give exactly one of per_second, per_minute, per_hour or limit+window")
    count, span = given[0]
    if count < 1 or int(count) != count or span <= 0:
        raise ConfigError(f"limiter {name!r}: the limit must be a whole number >= 1 and the window > 0")
    lim = Limiter(name, "rate", int(count), span, key)
    LIMITERS[name] = lim
    return lim


def concurrency_limiter(
    name: str, max_running: int, *, key: KeyFunc | None = None, hold: float = 60.0, retry_after: float = 1.0
) -> Limiter:
    """Register a concurrency limiter: at most ``max_running`` jobs hold a slot at once, per key.
    A slot is held like a lease (renewed while the job runs, freed when it ends or its worker dies)."""
    validate_name("limiter", name)
    if max_running < 1:
        raise ConfigError(f"limiter {name!r}: max_running must be >= 1")
    lim = Limiter(name, "concurrency", max_running, hold, key, retry_after)
    LIMITERS[name] = lim
    return lim


def adaptive_limiter(
    name: str,
    *,
    floor: int = 1,
    ceiling: int = 64,
    start: int | None = None,
    key: KeyFunc | None = None,
    **pace: Any,
) -> Limiter:
    """Register an adaptive limiter: at most its current limit of jobs hold a slot at once, per
    key, across every worker.  A job that raises :class:`RateLimited` (its provider said 429)
    lowers the limit (×``decrease``, once per ``cooldown``); sustained success raises it by one
    slot at a time, between ``floor`` and ``ceiling``.  ``pace``: ``decrease``, ``cooldown``,
    ``increase_after``, ``probe_slowdown``, ``hold``, ``retry_after`` (see ``AdaptiveParams``)."""
    validate_name("limiter", name)
    unknown = set(pace) - {"decrease", "cooldown", "increase_after", "probe_slowdown", "hold", "retry_after"}
    if unknown:
        raise ConfigError(f"limiter {name!r}: unknown option(s) {', '.join(sorted(unknown))}")
    chosen = min(max(8, floor), ceiling) if start is None else start
    params = AdaptiveParams(floor=floor, ceiling=ceiling, start=chosen, **pace).validate(f"limiter {name!r}")
    lim = Limiter(name, "adaptive", params.ceiling, params.hold, key, params.retry_after, params)
    LIMITERS[name] = lim
    return lim


def _adaptive_outcome(outcome: str | None) -> str:
    """What a job's outcome tells an adaptive limiter: a success, a 429, or nothing."""
    return {"ok": OK, "rate_limited": THROTTLED}.get(outcome or "", NEUTRAL)


class LimiterClient:
    """Takes and gives back limiter slots for one worker."""

    def __init__(self, client: aioredis.Redis, prefix: str, scripts: Scripts | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.scripts = scripts or Scripts(client)
        self.adaptive = AdaptiveClient(client, prefix)
        self._granted: dict[tuple[str, str], Grant] = {}  # (job id, limiter) -> its adaptive slot

    async def acquire(self, job: Job, names: tuple[str, ...]) -> tuple[float, list[tuple[Limiter, str]]]:
        """Try every limiter of ``job``; returns (0, held concurrency slots) when all granted, or
        (seconds to wait, []) after giving back what was taken."""
        held: list[tuple[Limiter, str]] = []
        for name in names:
            lim = LIMITERS.get(name)
            if lim is None:
                await self.release(job, held)
                raise ConfigError(
                    f"job {job.name!r} uses limiter {name!r}, which this worker does not know: "
                    "define it in a module the worker imports (--import)"
                )
            scope = lim.scope(job)
            key = lim.redis_key(self.prefix, scope)
            if lim.kind == "adaptive" and lim.adaptive is not None:
                grant = await self.adaptive.acquire(lim.name, scope, job.id, lim.adaptive)
                if not grant.granted:
                    await self.release(job, held)
                    return jittered(lim.retry_after), []
                self._granted[(job.id, lim.name)] = grant
                held.append((lim, scope))
                continue
            if lim.kind == "concurrency":
                member, span = job.id, lim.span
            else:
                member = f"{job.id}:{job.attempts}:{os.urandom(4).hex()}"
                span = lim.span + max(RATE_MARGIN_MIN, lim.span * RATE_MARGIN_FRACTION)
            wait_ms = int(await self.scripts["limit"](keys=[key], args=[lim.kind, lim.limit, int(span * 1000), member]))
            if wait_ms:
                await self.release(job, held)
                wait = wait_ms / 1000.0
                return (min(wait, lim.retry_after) if lim.kind == "concurrency" else wait), []
            if lim.kind == "concurrency":
                held.append((lim, key))
        return 0.0, held

    async def renew(self, slots: list[tuple[Job, list[tuple[Limiter, str]]]]) -> None:
        """Extend the concurrency slots held by running jobs, all in one pipeline."""
        if not any(held for _, held in slots):
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for job, held in slots:
                for lim, key in held:
                    if lim.adaptive is not None:
                        await self.adaptive.renew(lim.name, key, job.id, lim.adaptive, client=pipe)
                        continue
                    await self.scripts["limit"](
                        keys=[key], args=["concurrency", lim.limit, int(lim.span * 1000), job.id], client=pipe
                    )
            await pipe.execute()

    async def release(self, job: Job, held: list[tuple[Limiter, str]], outcome: str | None = None) -> None:
        """Give back the slots ``job`` held; ``outcome`` (the worker's: ``ok``, ``rate_limited``,
        ``exception``...) feeds the adaptive limiters among them."""
        plain = [(lim, key) for lim, key in held if lim.adaptive is None]
        for lim, scope in held:
            if lim.adaptive is not None:
                # a slot renewed after a restart of this worker has no grant: it teaches nothing
                grant = self._granted.pop((job.id, lim.name), None)
                outcome_seen = _adaptive_outcome(outcome) if grant else NEUTRAL
                await self.adaptive.release(
                    lim.name, scope, job.id, lim.adaptive, outcome_seen, grant or Grant(False, 0, 0, 0)
                )
        if plain:
            async with self.client.pipeline(transaction=False) as pipe:
                for _lim, key in plain:
                    pipe.zrem(key, job.id)
                await pipe.execute()
