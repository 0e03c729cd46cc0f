"""One name per thing: the names that once meant two things are defined once, and the CLI's
error wrapper keeps the identity of the command it wraps."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from evalharness.cli.common import handle_errors

ROOT = Path(__file__).resolve().parents[2]


def _top_level_names() -> dict[str, list[str]]:
    """Every module-level (and class-level) definition in core/, daemon/ and tui/: name -> where."""
    found: dict[str, list[str]] = {}
    for package in ("core", "daemon", "tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in [*tree.body, *(n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body)]:
                names: list[str] = []
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    names = [node.name]
                elif isinstance(node, ast.Assign):
                    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                for name in names:
                    found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@pytest.mark.parametrize("name", ["QueueStats", "describe_failure", "format_seconds", "fail", "REDIS_ERRORS"])
def test_a_name_that_meant_two_things_is_defined_once(name: str) -> None:
    where = _top_level_names().get(name, [])
    assert len(where) <= 1, f"{name} is defined in {where}"


def test_handle_errors_keeps_the_wrapped_commands_identity() -> None:
    def show_things(x: int) -> int:
        """Show the things."""
        return x

    wrapped = handle_errors(show_things)
    assert (wrapped.__name__, wrapped.__qualname__, wrapped.__doc__, wrapped.__module__) == (
        show_things.__name__,
        show_things.__qualname__,
        show_things.__doc__,
        show_things.__module__,
    )
    assert wrapped.__wrapped__ is show_things  # type: ignore[attr-defined]
    assert wrapped(3) == 3
