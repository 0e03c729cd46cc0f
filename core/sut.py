"""The system under test (SUT): a ``module:callable`` that takes a sample's input and returns
the output text, sync or async.  Producers and workers load it the same way."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from typing import Any

from .errors import SutError
from .jobs import PermanentError

SutFunc = Callable[[Any], Any]

# Sync SUTs run here rather than in asyncio's default pool (min(32, cores + 4) threads), so a
# worker's --concurrency, not the core count, bounds how many calls run at once.
_SYNC_POOL = ThreadPoolExecutor(max_workers=256, thread_name_prefix="sut")


class InvalidOutput(PermanentError):
    """The SUT returned something that is not text."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="invalid_output")


def _importable_cwd() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


@cache
def load_sut(path: str) -> SutFunc:
    """Import ``module:callable`` (the current directory and ``PYTHONPATH`` are searched, as for
    ``python -m``).  Raises :class:`SutError` saying what is wrong."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise SutError(f"SUT must be given as module:callable (for example mypkg.bot:answer), got {path!r}")
    _importable_cwd()
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise SutError(
                f"SUT {path!r}: no module named {exc.name!r} (searched the current directory "
                f"{os.getcwd()} and PYTHONPATH)"
            ) from None
        raise SutError(f"SUT {path!r}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise SutError(f"SUT {path!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SutError(f"SUT {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise SutError(f"SUT {path!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    func: SutFunc = obj
    return func


@cache
def _takes_key(func: SutFunc) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "idempotency_key" or p.kind is p.VAR_KEYWORD for p in params)


async def call_sut(func: SutFunc, sample_input: Any, idempotency_key: str | None = None) -> str:
    """Call the SUT once: async functions are awaited, sync ones run in a thread so they never
    block the event loop.  A SUT with an ``idempotency_key`` parameter receives the job's key,
    to pass on to a provider that deduplicates.  The output must be text."""
    kwargs: dict[str, Any] = {}
    if idempotency_key is not None and _takes_key(func):
        kwargs["idempotency_key"] = idempotency_key
    if inspect.iscoroutinefunction(func):
        output = await func(sample_input, **kwargs)
    else:
        output = await asyncio.get_running_loop().run_in_executor(_SYNC_POOL, partial(func, sample_input, **kwargs))
        if inspect.isawaitable(output):
            output = await output
    if not isinstance(output, str):
        raise InvalidOutput(f"the SUT returned {type(output).__name__}, expected str (the output text)")
    return output
