"""Short ids for people, like git's: the shortest prefix that tells an id apart from the others,
and the way back from such a prefix to the one id it names (failed jobs and batches).

Job ids start with the time in milliseconds, so ids dispatched together share a long head and
differ at the end: cutting them from the right ("01a233a68ee36de144c…") hides what tells them
apart. These helpers cut to a prefix that is unique instead, and every command that takes an id
accepts such a prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from .batches import batch_index_key
from .errors import EvalHarnessError
from .keys import QueueKeys
from .queue import known_queues

# Shown prefixes are at least this long, so an id read today still resolves next week when a few
# more ids exist (git's default is 7).
MIN_SHOWN = 8
# A prefix shorter than this is refused unless it is a whole id: "0" must not pick the one
# failed job there happens to be.
MIN_TYPED = 4
_LISTED = 10


class AmbiguousIdError(EvalHarnessError):
    """A prefix that matches several ids; the message lists them."""


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def prefix_length(ids: Iterable[str], minimum: int = MIN_SHOWN) -> int:
    """The one length (at least ``minimum``) at which every id's prefix differs from every other
    id's, as ``git log --oneline`` uses one length for all.  An id that is the head of another id
    (``f1`` and ``f12``) is shown whole; it still resolves, because a whole id always wins."""
    ordered = sorted(set(ids))
    length = minimum
    for a, b in zip(ordered, ordered[1:], strict=False):
        # Neighbours in sorted order share the longest heads; one more character parts them
        # (when ``a`` is the head of ``b``, ``b`` is then shown one character longer than ``a``).
        length = max(length, _common(a, b) + 1)
    return length


def abbreviate(ids: Sequence[str], among: Iterable[str] | None = None, minimum: int = MIN_SHOWN) -> dict[str, str]:
    """id -> the prefix to show.  Unique among ``among`` (default: ``ids`` themselves); pass every
    id a command could resolve, so a prefix copied from a listing works as an argument."""
    length = prefix_length(list(ids) + list(among or ()), minimum)
    return {i: i[:length] for i in ids}


def match_prefix(text: str, ids: Iterable[str], what: str, where: str = "") -> str:
    """The one id ``text`` names: the id itself, or the only id it is a prefix of.  Errors (exit
    2) say what was not found (``where``: " on queue(s) …"), or list the candidates of an
    ambiguous prefix."""
    pool = set(ids)
    if text in pool:
        return text
    if len(text) < MIN_TYPED:
        raise EvalHarnessError(f"no {what} {text!r}{where} (a prefix needs at least {MIN_TYPED} characters)")
    found = sorted(i for i in pool if i.startswith(text))
    if not found:
        raise EvalHarnessError(f"no {what} {text!r}{where}")
    if len(found) > 1:
        listed = ", ".join(found[:_LISTED]) + (f" and {len(found) - _LISTED} more" if len(found) > _LISTED else "")
        raise AmbiguousIdError(f"{text!r} is the start of {len(found)} {what} ids: {listed}; give more characters")
    return found[0]


# -- Redis-backed: which ids exist -------------------------------------------------------------


async def failed_job_ids(client: aioredis.Redis, prefix: str, queues: Sequence[str] = ()) -> dict[str, str]:
    """Every job id in the failed store of ``queues`` (default: every known queue) -> its queue."""
    names = list(queues) or await known_queues(client, prefix)
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zrange(QueueKeys(prefix, name).failed, 0, -1)
        replies = await pipe.execute()
    out: dict[str, str] = {}
    for name, ids in zip(names, replies, strict=True):
        for job_id in ids:
            out.setdefault(str(job_id), name)
    return out


async def resolve_failed_job(
    client: aioredis.Redis, prefix: str, text: str, queues: Sequence[str] = ()
) -> tuple[str, str]:
    """(queue, job id) of the failed job that ``text`` (an id or a unique prefix) names."""
    known = await failed_job_ids(client, prefix, queues)
    where = f" on queue(s) {', '.join(queues)}" if queues else ""
    job_id = match_prefix(text, known, "failed job", where)
    return known[job_id], job_id


async def batch_ids(client: aioredis.Redis, prefix: str) -> list[str]:
    """Every batch id there is a record of."""
    return [str(i) for i in await client.hkeys(batch_index_key(prefix))]


async def resolve_batch(client: aioredis.Redis, prefix: str, text: str) -> str:
    """The batch id that ``text`` (an id or a unique prefix) names."""
    return match_prefix(text, await batch_ids(client, prefix), "batch")


__all__ = [
    "MIN_SHOWN",
    "MIN_TYPED",
    "AmbiguousIdError",
    "abbreviate",
    "batch_ids",
    "failed_job_ids",
    "match_prefix",
    "prefix_length",
    "resolve_batch",
    "resolve_failed_job",
]
