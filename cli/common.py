"""What the commands share: the connection settings from the root group's options, and errors
turned into messages and exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from evalharness.core.errors import EvalHarnessError
from evalharness.daemon.common import exit_with_error, settings_from  # noqa: F401  (the commands' names for them)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn a known error into ``error: message`` on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EvalHarnessError as exc:
            exit_with_error(exc)

    return wrapper  # type: ignore[return-value]
