"""What the commands share: the connection settings from the root group's options, and errors
turned into messages and exit codes."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from evalharness.core.config import Settings, load_config, resolve_settings
from evalharness.core.errors import EvalHarnessError
from evalharness.daemon.common import exit_with_error  # noqa: F401  (the commands' name for it)

if TYPE_CHECKING:
    from rich.console import Console

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


def settings_from(ctx: click.Context, imports: tuple[str, ...] = ()) -> Settings:
    """Resolve the connection from the group options (flag > env > config file > embedded)."""
    obj = ctx.find_root().obj or {}
    config = load_config(obj.get("config"))
    return resolve_settings(obj.get("redis_url"), obj.get("prefix"), config, imports)


PIPED_WIDTH = 1000  # a table's line when stdout is a pipe or a file: as wide as its cells need


def table_console(**options: Any) -> Console:
    """The console a command prints its tables on: the terminal's width on a terminal, and on a
    pipe or a file (no terminal to fit) lines as long as the cells need, so `| grep` and `> file`
    get whole rows rather than cells folded at 80 columns; $COLUMNS still decides when set."""
    from rich.console import Console

    if not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        options.setdefault("width", PIPED_WIDTH)
    return Console(**options)
