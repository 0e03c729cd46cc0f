"""Loads the Lua scripts that live next to this module, one named script per state change, each
after the prelude (``core/prelude.py`` and ``lua/_prelude.lua``) and the helpers it uses."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript

from .prelude import prelude_source

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
        "clear_queue",
    }
)
# Scripts that put jobs into the failed store or take them out keep its indexes (_failed.lua).
WITH_FAILED_HELPERS = frozenset({"fail", "retry_failed", "batch_retry", "cancel_job", "forget_failed", "failed_index"})


_TOP_DEF = re.compile(r"^local (?:function )?([A-Za-z_]\w*)", re.M)


def _pieces(library: str) -> list[tuple[frozenset[str], str]]:
    """The top-level definitions of the prelude and helpers, one paragraph each (with the comment
    above it), as (names defined, text); paragraphs of comments alone are left out."""
    out = []
    for para in re.split(r"\n\s*\n", library):
        names = frozenset(_TOP_DEF.findall(para))
        code = [line for line in para.splitlines() if line.strip() and not line.lstrip().startswith("--")]
        if not names:
            if code:
                raise ValueError(f"the Lua library has top-level code outside a definition: {code[0]!r}")
            continue
        # a function ends in its own paragraph, so a blank line never splits one
        if len(re.findall(r"^local function ", para, re.M)) != len(re.findall(r"^end$", para, re.M)):
            raise ValueError(f"a blank line splits a function of the Lua library: {sorted(names)}")
        out.append((names, para.strip("\n")))
    return out


def link(library: str, body: str) -> str:
    """``body`` after the pieces of ``library`` it uses, directly or through another piece, in
    the library's order (a piece comes after what it calls).  What a script does not call is
    not loaded with it, so the prelude costs a small script nothing."""
    pieces = _pieces(library)
    used: set[int] = set()
    text = body
    grown = True
    while grown:
        grown = False
        for i, (names, piece) in enumerate(pieces):
            if i not in used and any(re.search(rf"\b{n}\b", text) for n in names):
                used.add(i)
                text += "\n" + piece
                grown = True
    return "\n\n".join([*(pieces[i][1] for i in sorted(used)), body])


@cache
def script_source(name: str) -> str:
    """The source of script ``name`` as it is loaded: the pieces of the prelude and of the
    helpers it may use (``_batch.lua``, ``_failed.lua``) that it calls, each once, then its body."""
    lua = resources.files("evalharness.core").joinpath("lua")
    library = [prelude_source()]
    if name in WITH_BATCH_HELPERS:
        library.append(lua.joinpath("_batch.lua").read_text())
    if name in WITH_FAILED_HELPERS:
        library.append(lua.joinpath("_failed.lua").read_text())
    return link("\n\n".join(library), lua.joinpath(f"{name}.lua").read_text())


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
