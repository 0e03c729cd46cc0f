"""Fixtures for the console tests: apps with no feed and a fixed clock, and waiting on their state."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from textual.pilot import Pilot

from evalharness.tui.app import ConnectionChecked, ConsoleApp

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

    def make(url: str = URL, *, feed: bool = False, read_only: bool = False) -> ConsoleApp:
        app = ConsoleApp(url, PREFIX, feed=feed, clock=lambda: NOW, read_only=read_only)
        app.animation_level = "none"
        app.theme = "textual-dark"
        return app

    return make


async def wait_for(pilot: Pilot[None], predicate: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` once ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {within:g}s for {what}")
        await pilot.pause(0.02)


@pytest.fixture
def wait() -> Callable[..., Awaitable[None]]:
    return wait_for


async def feed(pilot: Pilot[None], *messages: ConnectionChecked) -> None:
    """Post connection results as the feed would, and wait until the console has taken the last one."""
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    for message in messages:
        app.post_message(message)
    last = messages[-1]
    await wait_for(pilot, lambda: app.state.checked_at == last.at and app.state.connected is last.ok, "the check")
    await pilot.pause()


@pytest.fixture
def send() -> Callable[..., Awaitable[None]]:
    return feed
