"""Forgetting queues nobody uses: a queue used once (a test, a typo, one eval run) would
otherwise stay in ``status`` and the console for ever.  A queue with no jobs, no unfinished
batch and no live workers is forgotten once it has stayed so for the retention (24 hours by
default); ``evalharness queue forget`` does it at once.  Its finished batch records go with it
(every eval run leaves one, so they must not keep a queue listed).  The last check and the
removal are one script (``lua/forget_queue.lua``), so a dispatch at the same moment never loses
its queue."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from .keys import GlobalKeys, QueueKeys
from .queue import script_source

DEFAULT_QUEUE_RETENTION = 24 * 3600.0  # seconds a queue stays listed after it was last used


class QueueUse(StrEnum):
    IN_USE = "in_use"
    IDLE = "idle"  # unused, for less than the retention
    FORGOTTEN = "forgotten"


@dataclass(frozen=True, slots=True)
class ForgetOutcome:
    """What the forget script found on a queue, and what it did."""

    queue: str
    use: QueueUse
    ready: int = 0
    delayed: int = 0
    reserved: int = 0
    failed: int = 0
    workers: int = 0
    batches: int = 0
    idle_since: float | None = None  # epoch seconds
    pruned_batches: int = 0  # finished batch records removed so the queue could go

    @property
    def only_batches(self) -> bool:
        """In use by batch records alone: no job and no live worker."""
        return self.batches > 0 and not (self.ready or self.delayed or self.reserved or self.failed or self.workers)

    def holding(self) -> str:
        """What keeps the queue in use, in words: "3 ready jobs, 1 live worker"."""
        parts = [
            (self.ready, "ready job"),
            (self.delayed, "delayed job"),
            (self.reserved, "running job"),
            (self.failed, "failed job"),
            (self.batches, "batch"),
            (self.workers, "live worker"),
        ]
        return ", ".join(
            f"{n} {word}{'es' if word == 'batch' and n != 1 else 's' if n != 1 else ''}" for n, word in parts if n
        )


class QueueForgetter:
    """Runs the forget script for queues under one prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.globals = GlobalKeys(prefix)
        self._script: AsyncScript = client.register_script(script_source("forget_queue"))

    def _call(self, queue: str, retention: float) -> dict[str, list[Any]]:
        k = QueueKeys(self.prefix, queue)
        return {
            "keys": [
                self.globals.queues,
                self.globals.queues_idle,
                k.ready,
                k.delayed,
                k.reserved,
                k.failed,
                k.workers,
                k.batches,
                k.lanes,
                k.stats,
                k.wake,
            ],
            "args": [queue, int(retention * 1000)],
        }

    @staticmethod
    def _outcome(queue: str, raw: list[Any]) -> ForgetOutcome:
        state, ready, delayed, reserved, failed, workers, batches, since = (int(v) for v in raw)
        return ForgetOutcome(
            queue=queue,
            use=(QueueUse.IN_USE, QueueUse.IDLE, QueueUse.FORGOTTEN)[state],
            ready=ready,
            delayed=delayed,
            reserved=reserved,
            failed=failed,
            workers=workers,
            batches=batches,
            idle_since=None if since < 0 else since / 1000.0,
        )

    async def _once(self, queue: str, retention: float) -> ForgetOutcome:
        call = self._call(queue, retention)
        return self._outcome(queue, await self._script(keys=call["keys"], args=call["args"]))

    async def _prune_finished(self, outcome: ForgetOutcome, older_than: float) -> int:
        """Remove the finished batch records of a queue that only they keep in use (none while
        one of its batches is still pending or running)."""
        from .batches import Batches, active_batches_key

        if not outcome.only_batches:
            return 0
        if await self.client.zcard(active_batches_key(QueueKeys(self.prefix, outcome.queue))):
            return 0
        return await Batches(self.client, self.prefix).prune(older_than, queue=outcome.queue)

    async def forget(self, queue: str) -> ForgetOutcome:
        """Forget ``queue`` now if nothing uses it (finished batch records go with it);
        otherwise say what does."""
        outcome = await self._once(queue, 0)
        pruned = await self._prune_finished(outcome, 0)
        if pruned:
            outcome = replace(await self._once(queue, 0), pruned_batches=pruned)
        return outcome

    async def sweep(self, queues: list[str], retention: float) -> list[ForgetOutcome]:
        """Check every queue in one pipeline: start the retention clock of those unused, and
        forget the ones unused for ``retention`` seconds."""
        if not queues:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for queue in queues:
                call = self._call(queue, retention)
                await self._script(keys=call["keys"], args=call["args"], client=pipe)
            replies = await pipe.execute()
        outcomes = [self._outcome(q, raw) for q, raw in zip(queues, replies, strict=True)]
        for i, outcome in enumerate(outcomes):
            # batches that finished more than the retention ago keep no queue listed
            pruned = await self._prune_finished(outcome, retention)
            if pruned:
                outcomes[i] = replace(await self._once(outcome.queue, retention), pruned_batches=pruned)
        return outcomes

    async def known(self, queue: str) -> bool:
        return bool(await self.client.sismember(self.globals.queues, queue))
