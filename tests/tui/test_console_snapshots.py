"""Pictures of the console at 80x24 and 160x48, connected and disconnected, from fixed data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot

from evalharness.tui.app import ConnectionChecked, ConsoleApp

NOW = 1_700_000_000.0
ERROR = "ConnectionError: Error 111 connecting to redis.internal:6379. Connection refused."
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]

Send = Callable[..., Awaitable[None]]
MakeApp = Callable[..., ConsoleApp]


@pytest.mark.parametrize("size", SIZES)
def test_connected(snap_compare, make_app: MakeApp, send: Send, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await send(pilot, ConnectionChecked.connected(NOW))

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_disconnected(snap_compare, make_app: MakeApp, send: Send, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await send(pilot, ConnectionChecked.connected(NOW - 14), ConnectionChecked.failed(ERROR, NOW, 2.0))

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


def test_connecting_read_only(snap_compare, make_app: MakeApp) -> None:
    """Before the first check, and with actions hidden: the status says so and the panel says read-only."""
    assert snap_compare(make_app(read_only=True), terminal_size=(80, 24))
