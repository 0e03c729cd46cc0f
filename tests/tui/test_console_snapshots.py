"""Pictures of the console at 80x24 and 160x48 from fixed data: recorded telemetry (the contract's
two-queue example and a busy eight-queue one with an hour of history), disconnected, paused, and
before any telemetry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from evalharness.tui.app import ConnectionChecked, ConsoleApp, HistoryReceived, TelemetryReceived

NOW = 1_700_000_000.0
ERROR = "ConnectionError: Error 111 connecting to redis.internal:6379. Connection refused."
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
RECORDED = [pytest.param("example", id="example"), pytest.param("busy", id="busy")]

Send = Callable[..., Awaitable[None]]
MakeApp = Callable[..., ConsoleApp]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", RECORDED)
def test_overview(
    snap_compare, request: pytest.FixtureRequest, make_app: MakeApp, send: Send, name: str, size: tuple[int, int]
) -> None:
    telemetry = TelemetryReceived.from_dict(request.getfixturevalue(name))
    history = HistoryReceived.from_entries(request.getfixturevalue("busy_history") if name == "busy" else [])

    async def run_before(pilot: Pilot[None]) -> None:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry, history)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_disconnected(
    snap_compare,
    make_app: MakeApp,
    send: Send,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
) -> None:
    """The last numbers and history stay, dimmed and marked stale, beside the error."""
    telemetry = TelemetryReceived.from_dict(busy)
    history = HistoryReceived.from_entries(busy_history)

    async def run_before(pilot: Pilot[None]) -> None:
        await send(
            pilot, ConnectionChecked.connected(NOW - 14), telemetry, history, ConnectionChecked.failed(ERROR, NOW, 2.0)
        )

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


def test_paused(snap_compare, make_app: MakeApp, send: Send, example: dict[str, Any]) -> None:
    example["overview"]["status"] = "paused"
    telemetry = TelemetryReceived.from_dict(example)

    async def run_before(pilot: Pilot[None]) -> None:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_connected_before_any_telemetry(snap_compare, make_app: MakeApp, send: Send, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await send(pilot, ConnectionChecked.connected(NOW))

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


def test_connecting_read_only(snap_compare, make_app: MakeApp) -> None:
    """Before the first check, and with actions hidden: the status says so and the panel says read-only."""
    assert snap_compare(make_app(read_only=True), terminal_size=(80, 24))
