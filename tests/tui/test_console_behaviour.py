"""The console driven with run_test(): connection results change the status, keys work, the feed
reports a Redis it cannot reach (or one that never answers) without holding up the screen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from textual.widgets import HelpPanel, Static

from evalharness.tui import app as console
from evalharness.tui.app import PING_TIMEOUT, ConnectionChecked, ConsoleApp

NOW = 1_700_000_000.0
ERROR = "ConnectionError: Error 111 connecting to redis.internal:6379. Connection refused."

MakeApp = Callable[..., ConsoleApp]
Send = Callable[..., Awaitable[None]]
Wait = Callable[..., Awaitable[None]]


def status_of(app: ConsoleApp) -> Static:
    return app.query_one("#status", Static)


def shows_disconnected(app: ConsoleApp) -> bool:
    status = status_of(app)
    return "disconnected" in str(status.content) and status.has_class("-error")


async def test_status_follows_the_checks(make_app: MakeApp, send: Send) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        status = status_of(app)
        assert str(status.content) == "◌ redis: connecting…"
        assert status.has_class("-pending")

        await send(pilot, ConnectionChecked.connected(NOW - 14), ConnectionChecked.failed(ERROR, NOW, 2.0))
        assert str(status.content) == "✕ redis: disconnected, retrying in 2s"
        assert status.has_class("-error") and not status.has_class("-ok")
        assert app.query_one("#connection").has_class("-stale")
        assert app.state.status_rows() == [
            ("Status", "disconnected · no reply for 14s"),
            ("Error", ERROR),
        ]

        await send(pilot, ConnectionChecked.connected(NOW + 2))
        assert str(status.content) == "● redis ok"
        assert status.has_class("-ok") and not status.has_class("-error")
        assert not app.query_one("#connection").has_class("-stale")
        assert app.state.status_rows() == [("Status", "connected")]


async def test_question_mark_toggles_the_key_help(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert not app.screen.query(HelpPanel)
        await pilot.press("question_mark")
        assert app.screen.query(HelpPanel)
        await pilot.press("question_mark")
        assert not app.screen.query(HelpPanel)


async def test_q_quits(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_the_url_password_is_never_shown(make_app: MakeApp, send: Send) -> None:
    app = make_app("redis://:s3cret@redis.internal:6379/0")
    async with app.run_test(size=(160, 48)) as pilot:
        await send(pilot, ConnectionChecked.failed(ERROR, NOW))
        assert "s3cret" not in app.sub_title
        assert all("s3cret" not in value for _, value in app.state.details() + app.state.status_rows())
        assert app.state.details()[0] == ("Redis", "redis://:***@redis.internal:6379/0")


async def test_feed_reports_a_redis_it_cannot_reach(make_app: MakeApp, wait: Wait, tmp_path: Path) -> None:
    app = make_app(f"unix://{tmp_path / 'absent' / 'redis.sock'}", feed=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot, lambda: shows_disconnected(app), "the status to show disconnected")
        assert app.state.last_error is not None
        assert "No such file or directory" in app.state.last_error
        assert app.state.stale_for() is None  # never reached, so no age to show
        assert app.state.connection_status() == "disconnected · never reached"


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a stuck Redis."""
    peers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()
        for writer in peers:
            writer.close()
        await server.wait_closed()


async def test_a_redis_that_never_answers_does_not_hold_up_the_screen(
    make_app: MakeApp, wait: Wait, silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A longer wait for the reply than the console's own, so that on a busy machine the app's start-up
    # cannot use it all up before the key below is pressed: the key must be handled while the PING waits.
    timeout = PING_TIMEOUT * 3
    monkeypatch.setattr(console, "PING_TIMEOUT", timeout)
    app = make_app(silent_server, feed=True)
    async with app.run_test(size=(80, 24)) as pilot:
        # While the first PING is still waiting for its reply, keys are handled at once.
        await pilot.press("question_mark")
        assert app.screen.query(HelpPanel)
        assert app.state.connected is None
        await wait(pilot, lambda: shows_disconnected(app), "the PING to time out", within=timeout + 5)
        assert app.state.last_error == f"no reply within {timeout:g}s"


async def test_feed_reaches_a_real_redis(make_app: MakeApp, wait: Wait, redis_url: str) -> None:
    # With no way to read snapshots and none published, the status is the connection's alone.
    app = make_app(redis_url, feed=True, collect=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot, lambda: app.state.connected is True, "the first good check")
        assert str(status_of(app).content) == "● redis ok"
        assert status_of(app).has_class("-ok")
