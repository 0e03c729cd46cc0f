"""Adaptive concurrency shared by every worker: how many calls to one provider key may be in
flight at once, lowered on each 429 and raised slowly after sustained success (AIMD), between a
floor and a ceiling, with the state in Redis so that every process on every host obeys one limit.

* :func:`on_release` is the whole decision, a pure function with the clock passed in;
  ``core/lua/adaptive.lua`` does the same arithmetic atomically on Redis.
* :class:`AdaptiveClient` takes and gives back slots (crash-safe leases: a slot of a killed
  process lapses after ``hold`` seconds).
* :func:`slot` wraps one provider call: the ``openai:`` and ``http:`` SUTs and
  :class:`~evalharness.core.providers.client.OpenAIClient` use it when their provider is
  configured ``adaptive``; job code registers :func:`~evalharness.core.limits.adaptive_limiter`.
* :func:`read_limiters` gives the ``limiters`` list of the telemetry snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from .errors import ConfigError
from .jobs import RateLimited
from .keys import LimiterKeys, adaptive_index
from .queue import script_source

log = logging.getLogger(__name__)

MILLI = 1000  # the limit is kept in thousandths of a slot: whole-number arithmetic on both sides
STATE_TTL = 24 * 3600.0  # seconds an unused limiter keeps its learned limit
PROVIDER_LIMITER = "@provider"  # the Redis name of provider limiters: no job limiter can take it
OK, THROTTLED, NEUTRAL = "ok", "throttled", ""


@dataclass(frozen=True)
class AdaptiveParams:
    """The bounds and pace of one adaptive limiter (``[providers.NAME.adaptive]``)."""

    floor: int = 1  # never fewer slots than this
    ceiling: int = 64  # never more
    start: int = 8  # the limit before anything was learned (and after 24 h unused)
    decrease: float = 0.5  # on a 429, the limit is multiplied by this
    cooldown: float = 5.0  # seconds after a decrease during which further 429s do not lower it again
    # successes (with no 429 between them) that raise the limit by one slot; 0 = the current limit
    # (one "window" of calls), the classic additive increase
    increase_after: int = 0
    # at one slot below the level that was throttled last, that many times more successes are
    # needed to try it again: the limit rests just under what the provider allows
    probe_slowdown: int = 4
    hold: float = 60.0  # seconds a slot is leased; renewed while the call runs
    retry_after: float = 0.25  # seconds a call refused a slot waits (its job is released), jittered
    key: str | None = None  # the provider key this limiter counts for (default: base URL + key variable)

    def validate(self, where: str = "adaptive limiter") -> AdaptiveParams:
        if self.floor < 1:
            raise ConfigError(f"{where} key 'floor': must be a whole number >= 1, got {self.floor!r}")
        if self.ceiling < self.floor:
            raise ConfigError(f"{where} key 'ceiling': must be >= floor ({self.floor}), got {self.ceiling!r}")
        if not self.floor <= self.start <= self.ceiling:
            raise ConfigError(
                f"{where} key 'start': must be between floor ({self.floor}) and ceiling ({self.ceiling}), "
                f"got {self.start!r}"
            )
        if not 0 < self.decrease < 1:
            raise ConfigError(
                f"{where} key 'decrease': must be a factor between 0 and 1 (exclusive), got {self.decrease!r}"
            )
        if self.cooldown < 0:
            raise ConfigError(f"{where} key 'cooldown': must be a number of seconds >= 0, got {self.cooldown!r}")
        if self.increase_after < 0:
            raise ConfigError(f"{where} key 'increase_after': must be a whole number >= 0, got {self.increase_after!r}")
        if self.probe_slowdown < 1:
            raise ConfigError(f"{where} key 'probe_slowdown': must be a whole number >= 1, got {self.probe_slowdown!r}")
        if self.hold <= 0:
            raise ConfigError(f"{where} key 'hold': must be a number of seconds > 0, got {self.hold!r}")
        if self.retry_after <= 0:
            raise ConfigError(f"{where} key 'retry_after': must be a number of seconds > 0, got {self.retry_after!r}")
        return self

    def script_args(self) -> list[Any]:
        """ARGV[6..13] of ``adaptive.lua``."""
        return [
            self.floor,
            self.ceiling,
            self.start,
            repr(float(self.decrease)),
            int(self.cooldown * 1000),
            self.increase_after,
            self.probe_slowdown,
            int(STATE_TTL * 1000),
        ]


# config key -> (type check, what it must be)
_WHOLE = "a whole number"
_SECONDS = "a number of seconds"
CONFIG_KEYS: dict[str, str] = {
    "floor": _WHOLE,
    "ceiling": _WHOLE,
    "start": _WHOLE,
    "increase_after": _WHOLE,
    "probe_slowdown": _WHOLE,
    "decrease": "a number",
    "cooldown": _SECONDS,
    "hold": _SECONDS,
    "retry_after": _SECONDS,
    "key": "a string",
}


def parse_adaptive(raw: Any, where: str) -> AdaptiveParams | None:
    """The ``adaptive`` setting of a provider table: ``true`` (the defaults), ``false``, or a
    table of the keys of :class:`AdaptiveParams`.  Errors name ``where`` (file, table) and the key."""
    if isinstance(raw, bool):
        return AdaptiveParams() if raw else None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} key 'adaptive': expected true, false or a table, got {type(raw).__name__}")
    at = f"{where.removesuffix(']')}.adaptive]" if where.endswith("]") else f"{where} adaptive"
    given: dict[str, Any] = {}
    for key, value in raw.items():
        kind = CONFIG_KEYS.get(key)
        if kind is None:
            known = ", ".join(sorted(CONFIG_KEYS))
            raise ConfigError(f"{at}: unknown key {key!r} (known: {known})")
        if kind == _WHOLE:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "a string":
            ok = isinstance(value, str) and bool(value.strip())
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        if not ok:
            raise ConfigError(f"{at} key {key!r}: expected {kind}, got {value!r}")
        given[key] = value
    params = AdaptiveParams(**given)
    if "start" not in given:  # the default start, kept within the bounds given
        params = replace(params, start=min(max(params.start, params.floor), params.ceiling))
    return params.validate(at)


# -- the decision ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptiveState:
    """What Redis keeps for one limiter key (the ``…:adaptive`` hash)."""

    limit: int  # thousandths of a slot
    ok: int = 0  # successes since the limit last changed, none throttled
    last_decrease: int = 0  # ms of the last decrease (0: never)
    throttled_at: int = 0  # allowed slots when the last decrease happened (0: never)

    @property
    def allowed(self) -> int:
        """Slots that may be in flight now."""
        return self.limit // MILLI


def initial_state(params: AdaptiveParams) -> AdaptiveState:
    return AdaptiveState(limit=params.start * MILLI)


def clamp(state: AdaptiveState, params: AdaptiveParams) -> AdaptiveState:
    """``state`` within the caller's bounds (callers sharing a key may be configured apart)."""
    return replace(state, limit=max(params.floor * MILLI, min(params.ceiling * MILLI, state.limit)))


def on_release(
    state: AdaptiveState, params: AdaptiveParams, outcome: str, now_ms: int, granted_ms: int, in_use: int
) -> tuple[AdaptiveState, bool]:
    """The state after a slot granted at ``granted_ms`` is given back at ``now_ms`` with
    ``outcome`` (:data:`OK`, :data:`THROTTLED`, or :data:`NEUTRAL` for an error that says nothing
    about load), and whether the limit was lowered.  ``in_use``: the slots in flight just after
    this one was granted.

    * a success counts when the limit was full as it started (``in_use`` >= the limit) and it
      started after the last decrease: calls that never reached the limit say nothing about a
      higher one (a limit raised by them would overshoot at the next burst), and calls started
      under the limit before the decrease would undo it; after ``increase_after`` successes in a
      row (default: as many as the current limit) the limit rises by one slot, up to the ceiling.
      One slot below the level at which it was last throttled it needs ``probe_slowdown`` times as
      many;
    * a 429 multiplies the limit by ``decrease`` (not below the floor) — unless the last decrease
      was less than ``cooldown`` ago, or this call was granted before it (it belongs to the burst
      that caused it): one burst of 429s lowers the limit once.  Any 429 resets the successes."""
    state = clamp(state, params)
    if outcome == OK:
        counts = in_use >= state.allowed and granted_ms >= state.last_decrease
        ok = state.ok + (1 if counts else 0)
        need = params.increase_after if params.increase_after > 0 else max(1, state.allowed)
        if state.throttled_at > 0 and state.allowed == state.throttled_at - 1:
            need *= params.probe_slowdown
        limit = state.limit
        if ok >= need:
            limit = min(params.ceiling * MILLI, limit + MILLI)
            ok = 0
        return replace(state, limit=limit, ok=ok), False
    if outcome == THROTTLED:
        cooldown_ms = int(params.cooldown * 1000)
        if state.last_decrease == 0 or (
            now_ms - state.last_decrease >= cooldown_ms and granted_ms >= state.last_decrease
        ):
            lowered = max(params.floor * MILLI, math.floor(state.limit * float(params.decrease)))
            return AdaptiveState(limit=lowered, ok=0, last_decrease=now_ms, throttled_at=state.allowed), True
        return replace(state, ok=0), False
    return state, False


# -- Redis ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    granted: bool
    at_ms: int  # Redis's clock when it was decided (the slot's grant time)
    allowed: int
    in_flight: int


class AdaptiveClient:
    """Takes and gives back adaptive slots on one Redis client; one instance per process."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.script = client.register_script(script_source("adaptive"))
        self._indexed: set[str] = set()

    def keys(self, name: str, scope: str) -> LimiterKeys:
        return LimiterKeys(self.prefix, name, scope)

    async def acquire(
        self,
        name: str,
        scope: str,
        member: str,
        params: AdaptiveParams,
        *,
        shown: str | None = None,
        now_ms: int | None = None,
    ) -> Grant:
        k = self.keys(name, scope)
        raw = await self.script(
            keys=[k.slots, k.adaptive], args=self._args("acquire", member, params, NEUTRAL, 0, now_ms)
        )
        granted, at_ms, allowed, in_flight, fresh = (int(x) for x in raw)
        field = f"{name}:{scope}"
        if fresh or field not in self._indexed:
            entry = {
                "name": shown or name,
                "limiter": name,
                "key": scope,
                "kind": "adaptive",
                "floor": params.floor,
                "ceiling": params.ceiling,
                "start": params.start,
            }
            await self.client.hset(adaptive_index(self.prefix), field, json.dumps(entry))
            self._indexed.add(field)
        return Grant(bool(granted), at_ms, allowed, in_flight)

    async def release(
        self,
        name: str,
        scope: str,
        member: str,
        params: AdaptiveParams,
        outcome: str,
        grant: Grant,
        *,
        now_ms: int | None = None,
        shown: str | None = None,
    ) -> tuple[int, int, bool]:
        """Give the slot of ``grant`` back and feed ``outcome`` to the limit; returns (allowed,
        in flight, lowered).  A decrease is also a ``limiter_lowered`` event."""
        k = self.keys(name, scope)
        args = [*self._args("release", member, params, outcome, grant.at_ms, now_ms), grant.in_flight]
        raw = await self.script(keys=[k.slots, k.adaptive], args=args)
        allowed, in_flight, lowered, before = (int(x) for x in raw)
        if lowered:
            await self._lowered(shown or name, scope, allowed, before)
        return allowed, in_flight, bool(lowered)

    async def _lowered(self, shown: str, scope: str, allowed: int, before: int) -> None:
        from .telemetry import EVENTS_MAXLEN, events_key  # telemetry reads this module

        message = f"adaptive limiter {shown} ({scope}): a 429, limit lowered from {before} to {allowed}"
        log.info("%s", message)
        fields = {
            "kind": "limiter_lowered",
            "limiter": shown,
            "key": scope,
            "limit": str(allowed),
            "message": message,
            "at": f"{time.time():.3f}",
        }
        with contextlib.suppress(Exception):  # an event is worth less than the call that caused it
            await self.client.xadd(events_key(self.prefix), fields, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]

    async def renew(
        self,
        name: str,
        scope: str,
        member: str,
        params: AdaptiveParams,
        client: Any = None,
        *,
        now_ms: int | None = None,
    ) -> Any:
        k = self.keys(name, scope)
        return await self.script(
            keys=[k.slots, k.adaptive], args=self._args("renew", member, params, NEUTRAL, 0, now_ms), client=client
        )

    @staticmethod
    def _args(
        op: str, member: str, params: AdaptiveParams, outcome: str, granted_ms: int, now_ms: int | None
    ) -> list[Any]:
        return [
            op,
            member,
            int(params.hold * 1000),
            outcome,
            granted_ms,
            *params.script_args(),
            "" if now_ms is None else now_ms,
        ]

    async def state(self, name: str, scope: str) -> AdaptiveState | None:
        raw = await self.client.hmget(self.keys(name, scope).adaptive, ["limit", "ok", "last_decrease", "throttled_at"])
        if raw[0] is None:
            return None
        limit, ok, last, at = (int(float(x or 0)) for x in raw)
        return AdaptiveState(limit, ok, last, at)


# The client a process's provider calls use: bound by the worker (one per event loop, as a
# redis-py async client belongs to the loop that made it).  Without one, :func:`slot` does not
# limit: a serial run is one process whose own --concurrency bounds it.
_BOUND: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AdaptiveClient] = weakref.WeakKeyDictionary()


def bind(client: aioredis.Redis, prefix: str) -> AdaptiveClient:
    """Make adaptive limiting of provider calls in this event loop use ``client``."""
    bound = AdaptiveClient(client, prefix)
    _BOUND[asyncio.get_running_loop()] = bound
    return bound


def bound() -> AdaptiveClient | None:
    try:
        return _BOUND.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


def provider_scope(base_url: str, api_key_env: str | None, key: str | None = None) -> str:
    """The provider key a limiter counts for: a configured ``key``, else the base URL and the
    name of the key's variable (never the key), so every table and adapter calling the same
    endpoint with the same key shares one limit."""
    scope = key or f"{base_url.rstrip('/')} ${api_key_env or '-'}"
    # braces would end the key's hash tag early
    return scope.replace("{", "(").replace("}", ")")


def jittered(seconds: float) -> float:
    """Refused callers come back spread out rather than all at once."""
    return seconds * random.uniform(0.5, 1.5)


@contextlib.asynccontextmanager
async def slot(
    name: str,
    scope: str,
    params: AdaptiveParams | None,
    *,
    shown: str | None = None,
    client: AdaptiveClient | None = None,
) -> AsyncIterator[Grant | None]:
    """Hold one slot of the adaptive limiter ``name`` for ``scope`` around a call.

    No slot free: raises :class:`RateLimited` (the job is released, no try used).  Leaving the
    block normally is a success; leaving it with :class:`RateLimited` (a 429) lowers the limit;
    any other error gives the slot back without a verdict.  While the call runs the slot's lease
    is renewed every ``hold``/3 seconds, so only a process that died loses it, after ``hold``."""
    backend = client or bound()
    if params is None or backend is None:
        yield None
        return
    member = os.urandom(8).hex()
    grant = await backend.acquire(name, scope, member, params, shown=shown)
    if not grant.granted:
        wait = jittered(params.retry_after)
        raise RateLimited(
            wait,
            f"adaptive limiter {shown or name} ({scope}): {grant.in_flight} of {grant.allowed} "
            f"call(s) in flight, none free; trying again in {wait:.2f}s",
        )
    renewer = asyncio.create_task(
        _renew_while_held(backend, name, scope, member, params), name=f"adaptive-renew:{member}"
    )
    outcome = NEUTRAL
    try:
        yield grant
        outcome = OK
    except RateLimited:
        outcome = THROTTLED
        raise
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            await backend.release(name, scope, member, params, outcome, grant, shown=shown)
        except Exception as exc:  # the lease lapses and the slot frees itself
            log.warning("adaptive limiter %s (%s): could not give a slot back (%s)", shown or name, scope, exc)


async def _renew_while_held(
    backend: AdaptiveClient, name: str, scope: str, member: str, params: AdaptiveParams
) -> None:
    while True:
        await asyncio.sleep(params.hold / 3)
        try:
            await backend.renew(name, scope, member, params)
        except Exception as exc:
            log.warning("adaptive limiter %s (%s): slot renewal failed (%s)", name, scope, exc)


# -- telemetry ------------------------------------------------------------------------------


def _hour_counts(state: Mapping[str, str], now: float) -> dict[str, int]:
    minute = int(now // 60)
    out = {"ok_1h": 0, "throttled_1h": 0, "decreases_1h": 0}
    for field, value in state.items():
        if not field.startswith("b"):
            continue
        try:
            m, ok, thr, dec = (int(x) for x in value.split())
        except ValueError:
            continue
        if minute - 60 < m <= minute:
            out["ok_1h"] += ok
            out["throttled_1h"] += thr
            out["decreases_1h"] += dec
    return out


async def read_limiters(
    client: aioredis.Redis, prefix: str, now: float | None = None, index: Mapping[Any, Any] | None = None
) -> list[dict[str, Any]]:
    """The ``limiters`` of the telemetry snapshot: one entry per adaptive limiter key in use,
    sorted by name and key.  Entries whose state expired (unused for 24 h) are dropped.
    ``index``: the ``{prefix}:limiters`` hash when the caller already read it."""
    now = time.time() if now is None else now
    if index is None:
        index = await client.hgetall(adaptive_index(prefix))
    if not index:
        return []
    entries: list[tuple[str, dict[str, Any]]] = []
    for field, raw in index.items():
        try:
            entry = json.loads(raw)
            entries.append((str(field), entry))
        except ValueError:
            continue
    async with client.pipeline(transaction=False) as pipe:
        for _, e in entries:
            k = LimiterKeys(prefix, str(e.get("limiter", e.get("name"))), str(e.get("key")))
            pipe.hgetall(k.adaptive)
            pipe.zcount(k.slots, int(now * 1000), "+inf")
        replies = await pipe.execute()
    out: list[dict[str, Any]] = []
    gone: list[str] = []
    for i, (field, e) in enumerate(entries):
        state, in_flight = replies[2 * i], replies[2 * i + 1]
        if not state:
            gone.append(field)
            continue
        state = {str(k): str(v) for k, v in state.items()}
        last = int(float(state.get("last_decrease", 0) or 0))
        out.append(
            {
                "name": e.get("name"),
                "key": e.get("key"),
                "kind": "adaptive",
                "limit": int(float(state.get("limit", 0))) // MILLI,
                "floor": int(float(state.get("floor", e.get("floor", 1)))),
                "ceiling": int(float(state.get("ceiling", e.get("ceiling", 1)))),
                "in_flight": int(in_flight),
                **_hour_counts(state, now),
                "last_decrease_at": last / 1000.0 if last else None,
            }
        )
    if gone:
        with contextlib.suppress(Exception):
            await client.hdel(adaptive_index(prefix), *gone)
    out.sort(key=lambda x: (str(x["name"]), str(x["key"])))
    return out
