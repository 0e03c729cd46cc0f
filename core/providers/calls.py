"""Provider calls made outside a job (a serial run, ``--outputs``, ``judge calibrate``, the
embeddings the producer fetches): the same outcomes a job gets, applied in process.

A 429 or ``Retry-After`` waits and uses no try; a 5xx, timeout or cut connection uses a try and
waits the backoff; a rejection (:class:`~evalharness.core.jobs.PermanentError`) is final."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..jobs import PermanentError, RateLimited

T = TypeVar("T")

DEFAULT_TRIES = 3
DEFAULT_BACKOFF = (1.0, 5.0)
MAX_RATE_LIMITED_WAITS = 20  # 429s in a row before a call gives up, so a dead key cannot hang a run
RATE_LIMIT_FALLBACK = 1.0  # seconds to wait after a 429 that names no Retry-After


class GaveUp(Exception):
    """A call that used its tries (or kept being rate limited); ``kind`` is the last failure's."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    tries: int = DEFAULT_TRIES,
    backoff: Sequence[float] = DEFAULT_BACKOFF,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``await call()`` until it returns, under the job semantics above; raises :class:`GaveUp`."""
    used = 0
    limited = 0
    while True:
        try:
            return await call()
        except RateLimited as exc:
            limited += 1
            if limited > MAX_RATE_LIMITED_WAITS:
                raise GaveUp(f"still rate limited after {limited} waits: {exc}", "rate_limited") from None
            await sleep(exc.retry_after if exc.retry_after is not None else RATE_LIMIT_FALLBACK)
        except PermanentError as exc:
            raise GaveUp(str(exc), exc.kind) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            used += 1
            if used >= tries:
                raise GaveUp(f"{exc} (after {used} tries)", "exception") from None
            await sleep(backoff[min(used - 1, len(backoff) - 1)] if backoff else 0.0)
