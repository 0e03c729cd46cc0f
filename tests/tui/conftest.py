"""Fixtures for the console tests: apps with no feed and a fixed clock, recorded telemetry, and
waiting on their state."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message
from textual.pilot import Pilot

from evalharness.tui.app import ConnectionChecked, ConsoleApp, HistoryReceived, TelemetryReceived

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).parent))  # fake_admin, shared with scripts/screenshots and bench

URL = "redis://:s3cret@redis.internal:6379/0"
PREFIX = "eh"
NOW = 1_700_000_000.0
"""The fixed clock's time; tests that need it in messages use the same value."""


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Nothing on screen may depend on where the tests run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "UTC")
        time.tzset()
        yield
    time.tzset()


@pytest.fixture
def make_app() -> Callable[..., ConsoleApp]:
    """Builds a console with no feed, a fixed clock, no animations and the default theme."""

    def make(url: str = URL, *, feed: bool = False, read_only: bool = False, **options: Any) -> ConsoleApp:
        app = ConsoleApp(url, PREFIX, feed=feed, clock=lambda: NOW, read_only=read_only, **options)
        app.animation_level = "none"
        app.theme = "textual-dark"
        return app

    return make


async def wait_for(pilot: Pilot[None], predicate: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` once ``within`` seconds pass.
    The bound only ends a wait that will never succeed: with the suite's processes sharing two cores
    a 1 s timer can take several seconds to fire, so it is generous."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {within:g}s for {what}")
        await pilot.pause(0.02)


@pytest.fixture
def wait() -> Callable[..., Awaitable[None]]:
    return wait_for


def recorded(name: str) -> dict[str, Any]:
    """A recorded telemetry snapshot from tests/tui/data (a fresh copy: tests may change it)."""
    data: dict[str, Any] = json.loads((DATA / f"telemetry-{name}.json").read_text())
    return data


def recorded_history(name: str) -> list[dict[str, Any]]:
    """Recorded per-minute history entries from tests/tui/data, oldest first."""
    data: list[dict[str, Any]] = json.loads((DATA / f"history-{name}.json").read_text())
    return data


@pytest.fixture
def busy_history() -> list[dict[str, Any]]:
    """Sixty minutes of history of the busy snapshot's eight queues."""
    return recorded_history("busy")


@pytest.fixture
def example() -> dict[str, Any]:
    """The two-queue snapshot of the telemetry contract."""
    return recorded("example")


@pytest.fixture
def busy() -> dict[str, Any]:
    """Eight queues with long names, big counts, long waits and nulls."""
    return recorded("busy")


async def feed(pilot: Pilot[None], *messages: Message) -> None:
    """Post messages as the feed would, and wait until the console has taken the last connection
    result and drawn the last snapshot and history among them."""
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    for message in messages:
        app.post_message(message)
    checks = [m for m in messages if isinstance(m, ConnectionChecked)]
    snapshots = [m.snapshot for m in messages if isinstance(m, TelemetryReceived)]
    histories = [m.history for m in messages if isinstance(m, HistoryReceived)]

    def taken() -> bool:
        if checks and not (app.state.checked_at == checks[-1].at and app.state.connected is checks[-1].ok):
            return False
        if histories and app.drawn_history != histories[-1]:
            return False
        return not snapshots or app.drawn_snapshot is snapshots[-1]

    await wait_for(pilot, taken, "the messages to be taken")
    await pilot.pause()


@pytest.fixture
def send() -> Callable[..., Awaitable[None]]:
    return feed


@pytest.fixture
def fake_admin() -> Any:
    """The engine's operator interface over fixed rows (tests/tui/fake_admin.py)."""
    from fake_admin import FakeAdmin

    return FakeAdmin()


async def open_mode(pilot: Pilot[None], key: str) -> None:
    """Press a mode key and wait until its list has its first page drawn."""
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    await pilot.press(key)
    # the key is taken by the app's message loop: on a busy machine the mode may not have changed yet
    await wait_for(pilot, lambda: app.mode_shown in app._views, f"the screen of key {key}")
    view = app._views[app.mode_shown]

    def drawn() -> bool:
        model = view.model
        page = getattr(model, "page", None)
        return bool(page) or bool(getattr(model, "groups", ())) or model.error is not None

    await wait_for(pilot, drawn, f"the {app.mode_shown} page")
    await pilot.pause()


@pytest.fixture
def open_list() -> Callable[..., Awaitable[None]]:
    return open_mode
