"""Running an action: confirm it, call the engine, show what the engine says it did.

The toast's numbers are the engine's own (:class:`ActionResult.message`); a lost Redis is an error
toast and the console carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from textual.dom import DOMNode

from evalharness.core.admin import ActionResult

from ..messages import ActionDone
from .dialogs import Confirmation, ConfirmDialog

ACTION_TIMEOUT = 30.0
"""An action that has had no reply after this long is reported as failed (the engine may still act)."""


async def confirm_and_run(
    node: DOMNode,
    what: str,
    confirmation: Confirmation | None,
    call: Callable[[], Awaitable[ActionResult]],
) -> ActionResult | None:
    """Ask (unless ``confirmation`` is None), run ``call``, toast its result. Must run in a worker."""
    import asyncio

    app: Any = node.app
    if confirmation is not None:
        confirmed = await app.push_screen_wait(ConfirmDialog(confirmation))
        if not confirmed:
            return None
    try:
        async with asyncio.timeout(ACTION_TIMEOUT):
            result = await call()
    except (RedisError, OSError, TimeoutError) as exc:
        error = f"{what} failed: {type(exc).__name__}: {exc}".rstrip(": ")
        app.notify(error, title="Redis", severity="error", markup=False, timeout=10)
        app.post_message(ActionDone(None, error))
        return None
    app.notify(result.message, severity="information" if result.ok else "warning", markup=False, timeout=8)
    results = getattr(app, "results", None)
    if isinstance(results, list):
        results.append(result)
    app.post_message(ActionDone(result))
    return result
