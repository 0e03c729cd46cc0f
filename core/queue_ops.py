"""Operator actions on one queue: pause it, continue it, clear its ready jobs.

A pause is a flag key under the queue's hash tag (:attr:`QueueKeys.paused`) that the pop script
checks, so it holds for every worker on every host at once, including workers started later;
dispatches still land.  A clear is one script (``lua/clear_queue.lua``) that takes the queue's
ready jobs out (optionally one batch's only, optionally the delayed ones too) and keeps batch
counters right: a removed job of a batch counts as cancelled and its batch is cancelled.

Each action returns an :class:`~evalharness.core.admin.ActionResult` with the engine's numbers
and writes an event (``queue_paused``, ``queue_continued``, ``queue_cleared``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .admin import ActionResult
from .config import validate_name
from .errors import EvalHarnessError
from .keys import QueueKeys
from .queue import script_source


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class PauseState:
    """Whether a queue is paused, since when and by whom (from its flag key)."""

    queue: str
    paused: bool
    at: float | None = None  # epoch seconds
    by: str = ""

    @classmethod
    def parse(cls, queue: str, raw: Any) -> PauseState:
        if raw is None:
            return cls(queue, False)
        try:
            data = json.loads(raw)
        except (TypeError, ValueError):
            # a flag set by hand (redis-cli SET ... 1) pauses all the same
            return cls(queue, True)
        if not isinstance(data, dict):
            return cls(queue, True)
        at = data.get("at")
        return cls(queue, True, float(at) if isinstance(at, int | float) else None, str(data.get("by", "")))


def pause_message(queue: str, paused: bool, changed: bool, ready: int, running: int) -> str:
    """The one sentence the CLI (and the console's toast) shows for a pause or a continue."""
    if paused:
        if not changed:
            return f"queue {queue} was already paused: {_plural(ready, 'ready job')} queued, {running} running"
        stay = "stays" if ready == 1 else "stay"
        finish = "finishes" if running == 1 else "finish"
        return f"paused queue {queue}: {_plural(ready, 'ready job')} {stay} queued; {running} running {finish}"
    if not changed:
        return f"queue {queue} was not paused: {_plural(ready, 'ready job')} queued"
    return f"continued queue {queue}: {_plural(ready, 'ready job')} can start"


def clear_message(queue: str, batch: str | None, ready: int, delayed: int, batches: int, with_delayed: bool) -> str:
    what = f"queue {queue}" + (f" (batch {batch})" if batch else "")
    parts = [_plural(ready, "ready job")]
    if with_delayed:
        parts.append(_plural(delayed, "delayed job"))
    text = f"cleared {what}: removed {' and '.join(parts)}"
    if batches:
        text += f"; {batches} batch{'' if batches == 1 else 'es'} cancelled"
    return text


class QueueOps:
    """Pause, continue and clear queues under one prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._pause = client.register_script(script_source("queue_pause"))
        # the clear reuses the batch helpers (b_remove_queued, b_maybe_finish, b_event)
        self._clear = client.register_script(script_source("clear_queue"))

    def _keys(self, queue: str) -> QueueKeys:
        validate_name("queue", queue)
        return QueueKeys(self.prefix, queue)

    async def _switch(self, queue: str, action: str, by: str) -> ActionResult:
        k = self._keys(queue)
        flag = json.dumps({"at": time.time(), "by": by})
        changed, ready, _delayed, running = (
            int(v)
            for v in await self._pause(
                keys=[k.paused, k.ready, k.delayed, k.reserved, k.wake], args=[action, flag, queue]
            )
        )
        paused = action == "pause"
        return ActionResult(
            action=f"{action}_queue",
            target=queue,
            ok=True,
            message=pause_message(queue, paused, bool(changed), ready, running),
            skipped=0 if changed else 1,
        )

    async def pause(self, queue: str, by: str = "") -> ActionResult:
        """Pause ``queue``: its workers, everywhere, take no more of its jobs (running ones
        finish); dispatches still land.  Pausing a paused queue changes nothing (``skipped=1``)."""
        return await self._switch(queue, "pause", by)

    async def resume(self, queue: str, by: str = "") -> ActionResult:
        """Continue ``queue``: idle workers are woken at once."""
        return await self._switch(queue, "continue", by)

    async def state(self, queue: str) -> PauseState:
        return PauseState.parse(queue, await self.client.get(self._keys(queue).paused))

    async def states(self, queues: Sequence[str]) -> dict[str, PauseState]:
        if not queues:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.get(QueueKeys(self.prefix, q).paused)
            raws = await pipe.execute()
        return {q: PauseState.parse(q, raw) for q, raw in zip(queues, raws, strict=True)}

    async def clear(self, queue: str, batch: str | None = None, *, delayed: bool = False) -> ActionResult:
        """Remove ``queue``'s ready jobs (only ``batch``'s with one; the delayed ones too with
        ``delayed=True``) in one script.  Running jobs are untouched; batch callbacks stay."""
        k = self._keys(queue)
        if batch is not None:
            validate_name("batch id", batch)
        raw = await self._clear(
            keys=[k.lanes, k.ready, k.delayed, k.wake, k.stats],
            args=[k.base, batch or "", "1" if delayed else "0", queue],
        )
        if int(raw[0]) < 0:
            raise EvalHarnessError(f"no batch {batch!r} on queue {queue!r} (evalharness batch list shows the batches)")
        ready, later, batches = (int(v) for v in raw)
        return ActionResult(
            action="clear_queue",
            target=queue if batch is None else f"{queue}/{batch}",
            ok=True,
            message=clear_message(queue, batch, ready, later, batches, delayed),
            removed=ready + later,
        )


async def pause_queue(client: aioredis.Redis, prefix: str, queue: str, by: str = "") -> ActionResult:
    return await QueueOps(client, prefix).pause(queue, by)


async def continue_queue(client: aioredis.Redis, prefix: str, queue: str, by: str = "") -> ActionResult:
    return await QueueOps(client, prefix).resume(queue, by)


async def clear_queue(
    client: aioredis.Redis, prefix: str, queue: str, batch: str | None = None, *, delayed: bool = False
) -> ActionResult:
    return await QueueOps(client, prefix).clear(queue, batch, delayed=delayed)
