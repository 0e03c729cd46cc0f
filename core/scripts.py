"""Loads the Lua scripts that live next to this module, one named script per state change."""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis.asyncio as aioredis
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
    "cancel_job",
    "forget_failed",
    "failed_index",
)


# Scripts that change batches share the helper functions in _batch.lua.
WITH_BATCH_HELPERS = frozenset(
    {"pop_with_lease", "ack", "fail", "release", "dispatch", "batch_cancel", "batch_retry", "cancel_job"}
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
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]
