"""Loads the Lua scripts that live next to this module, one named script per state change."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript

SCRIPT_NAMES = (
    "dispatch",
    "pop_with_lease",
    "ack",
    "release",
    "fail",
    "renew",
    "checkpoint",
    "retry_failed",
    "limit",
    "batch_cancel",
    "batch_retry",
    "batch_seal",
    "cancel_job",
    "forget_failed",
    "failed_index",
    "batch_summary",
)


# Scripts that change batches share the helper functions in _batch.lua.
WITH_BATCH_HELPERS = frozenset(
    {
        "pop_with_lease",
        "ack",
        "fail",
        "release",
        "dispatch",
        "batch_cancel",
        "batch_retry",
        "batch_seal",
        "retry_failed",
        "cancel_job",
    }
)
# Scripts that put jobs into the failed store or take them out keep its indexes (_failed.lua).
WITH_FAILED_HELPERS = frozenset({"fail", "retry_failed", "batch_retry", "cancel_job", "forget_failed", "failed_index"})


@cache
def script_source(name: str) -> str:
    lua = resources.files("evalharness.core").joinpath("lua")
    body = lua.joinpath(f"{name}.lua").read_text()
    if name in WITH_FAILED_HELPERS:
        body = lua.joinpath("_failed.lua").read_text() + "\n" + body
    if name in WITH_BATCH_HELPERS:
        body = lua.joinpath("_batch.lua").read_text() + "\n" + body
    return body


class Scripts:
    """The registered scripts of one client (EVALSHA with a reload on NOSCRIPT, e.g. after a restart)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]

    async def run(
        self, calls: Sequence[tuple[str, Sequence[Any], Sequence[Any]]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run script calls ``(name, keys, args)`` in order, in one round trip: EVALSHA alone or
        pipelined, without the SCRIPT EXISTS check a redis-py pipeline makes first.  A script the
        server does not know (it restarted, or was flushed) is loaded and only the calls it
        refused are run again: a refused call did nothing.  The first error raised by a script
        is raised after all calls ran, as a pipeline does, or with ``raise_on_error=False`` left
        in its place among the replies (connection errors are always raised)."""
        if len(calls) == 1:
            name, keys, args = calls[0]
            return [await self._scripts[name](keys=keys, args=args)]
        replies: list[Any] = []
        async with self._client.pipeline(transaction=False) as pipe:
            for name, keys, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
            replies = list(await pipe.execute(raise_on_error=False))
        for i, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                name, keys, args = calls[i]
                replies[i] = await self._scripts[name](keys=keys, args=args)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies
