"""The feed against a real Redis: published snapshots reach the screen, the console reads snapshots
itself when nothing is published, and it comes back by itself after Redis has been away."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from textual.widgets import DataTable, Static

from evalharness.tui import app as console
from evalharness.tui.app import ConsoleApp

MakeApp = Callable[..., ConsoleApp]
Wait = Callable[..., Awaitable[None]]
CHANNEL = "eh:telemetry"


def shows(app: ConsoleApp, tile: str, value: str) -> bool:
    return str(app.query_one(f"#value-{tile}", Static).content) == value


def ready_of(app: ConsoleApp, queue: str) -> str | None:
    table = app.query_one("#queues", DataTable)
    if queue not in {row.key.value for row in table.ordered_rows}:
        return None
    return str(table.get_cell(queue, "ready").plain)


async def subscribed(aclient: Redis) -> bool:
    [(_, listeners)] = await aclient.pubsub_numsub(CHANNEL)
    return int(listeners) > 0


async def wait_until_subscribed(aclient: Redis, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await subscribed(aclient):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the console did not subscribe to {CHANNEL} within {within:g}s")
        await asyncio.sleep(0.02)


async def test_a_published_snapshot_reaches_the_screen(
    make_app: MakeApp, wait: Wait, redis_url: str, aclient: Redis, example: dict[str, Any]
) -> None:
    app = make_app(redis_url, feed=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot, lambda: app.state.connected is True, "the connection")
        await wait_until_subscribed(aclient)
        await aclient.publish(CHANNEL, json.dumps(example))
        await wait(pilot, lambda: shows(app, "jpm", "412") and ready_of(app, "evals") == "240", "the published numbers")
        assert shows(app, "backlog", "240") and shows(app, "wait", "12.4s · evals")
        assert str(app.query_one("#status", Static).content).startswith("● running · redis ok · ")


async def test_an_unreadable_message_is_reported_not_fatal(
    make_app: MakeApp, wait: Wait, redis_url: str, aclient: Redis, example: dict[str, Any]
) -> None:
    app = make_app(redis_url, feed=True, collect=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot, lambda: app.state.connected is True, "the connection")
        await wait_until_subscribed(aclient)
        await aclient.publish(CHANNEL, "not json")
        await wait(
            pilot, lambda: (app.state.telemetry_problem or "").startswith("telemetry is not JSON"), "the problem"
        )
        await aclient.publish(CHANNEL, json.dumps(example))
        await wait(pilot, lambda: ready_of(app, "evals") == "240", "the next good snapshot")
        assert app.state.telemetry_problem is None and app.state.connected is True


async def test_without_a_publisher_the_console_reads_snapshots_itself(
    make_app: MakeApp, wait: Wait, redis_url: str, example: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "TELEMETRY_SILENCE", 0.2)
    monkeypatch.setattr(console, "POLL_INTERVAL", 0.1)
    calls: list[str] = []

    async def collect(client: Redis, prefix: str) -> dict[str, Any]:
        assert await client.ping()
        calls.append(prefix)
        return {**example, "overview": {**example["overview"], "jobs_past_hour": len(calls)}}

    app = make_app(redis_url, feed=True, collect=collect)
    async with app.run_test(size=(80, 24)) as pilot:
        # Once on connecting (the state before any message), then again while nothing is published.
        await wait(pilot, lambda: len(calls) >= 3 and app.state.snapshot is not None, "three snapshots read")
        await wait(pilot, lambda: ready_of(app, "evals") == "240", "the numbers read")
        assert set(calls) == {"eh"}
        assert app.state.connected is True


async def test_the_engine_snapshot_of_an_empty_redis(make_app: MakeApp, wait: Wait, redis_url: str) -> None:
    pytest.importorskip("evalharness.core.telemetry")
    app = make_app(redis_url, feed=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot, lambda: app.drawn_snapshot is not None, "the first snapshot")
        assert str(app.query_one("#status").content).startswith("● inactive")
        assert shows(app, "backlog", "—") and shows(app, "procs", "0/0")
        assert app.query_one("#queues", DataTable).row_count == 0


class Proxy:
    """A TCP front for the test Redis that can be taken away and brought back on the same port."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[Proxy]:
    front = Proxy(redis_url.removeprefix("unix://"))
    await front.start()
    yield front
    await front.stop()


async def test_the_feed_recovers_when_redis_comes_back(
    make_app: MakeApp,
    wait: Wait,
    proxy: Proxy,
    aclient: Redis,
    example: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console, "PING_INTERVAL", 0.2)
    app = make_app(proxy.url, feed=True, collect=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot, lambda: app.state.connected is True, "the connection")
        await wait_until_subscribed(aclient)
        await aclient.publish(CHANNEL, json.dumps(example))
        await wait(pilot, lambda: ready_of(app, "evals") == "240", "the first snapshot")

        await proxy.stop()
        await wait(pilot, lambda: app.state.connected is False, "the loss to show")
        assert "disconnected, retrying" in str(app.query_one("#status", Static).content)
        assert app.query_one("#overview").has_class("-stale")
        assert ready_of(app, "evals") == "240"  # the last numbers stay visible

        await proxy.start()
        await wait(pilot, lambda: app.state.connected is True, "the reconnection")
        await wait_until_subscribed(aclient)
        example["queues"][0]["ready"] = 7
        await aclient.publish(CHANNEL, json.dumps(example))
        await wait(pilot, lambda: ready_of(app, "evals") == "7", "a snapshot after the reconnection")
        assert not app.query_one("#overview").has_class("-stale")
