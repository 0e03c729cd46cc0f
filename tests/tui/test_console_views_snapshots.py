"""Pictures of the screens that act on work, at 80x24 and 160x48, from fixed rows (the fake
engine interface), a fixed clock and time zone: Batches, Batch detail, Failed (flat and grouped),
Failed job detail, Running now, the confirm and typed-confirm dialogs, the filter prompt, and the
read-only variant of each list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from fake_admin import FakeAdmin, batches
from textual.pilot import Pilot
from textual.widgets import Input

from evalharness.tui.app import ConnectionChecked, ConsoleApp, TelemetryReceived
from evalharness.tui.views.dialogs import ConfirmDialog

NOW = 1_700_000_000.0
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]

MakeApp = Callable[..., ConsoleApp]
Open = Callable[..., Awaitable[None]]
Wait = Callable[..., Awaitable[None]]


def shoot(
    snap_compare: Any,
    app: ConsoleApp,
    size: tuple[int, int],
    busy: dict[str, Any],
    steps: Callable[[Pilot[None]], Awaitable[None]],
) -> bool:
    async def run_before(pilot: Pilot[None]) -> None:
        app.post_message(ConnectionChecked.connected(NOW))
        app.post_message(TelemetryReceived.from_dict(busy))
        await pilot.pause()
        await steps(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False  # the cursor shown, wherever its blink was when the picture is taken
        await pilot.pause()

    result: bool = snap_compare(app, terminal_size=size, run_before=run_before)
    return result


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("read_only", [False, True], ids=["actions", "read-only"])
def test_batches(
    snap_compare, make_app: MakeApp, open_list: Open, busy: dict[str, Any], size: tuple[int, int], read_only: bool
) -> None:
    """Active batches, running first; at 160 columns the highlighted one's detail below. Read-only:
    no cancel or retry in the footer."""
    app = make_app(admin=FakeAdmin(), read_only=read_only)
    assert shoot(snap_compare, app, size, busy, lambda pilot: open_list(pilot, "4"))


@pytest.mark.parametrize("size", SIZES)
def test_batches_all_chip(
    snap_compare, make_app: MakeApp, open_list: Open, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "4")
        await pilot.press("f")
        await wait(pilot, lambda: len(app._views["batches"].model.page) == len(batches()), "every batch")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_batch_detail(
    snap_compare, make_app: MakeApp, open_list: Open, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "4")
        await pilot.press("enter")
        await wait(pilot, lambda: getattr(app.screen, "loaded", False), "the batch detail")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("read_only", [False, True], ids=["actions", "read-only"])
def test_failed(
    snap_compare,
    make_app: MakeApp,
    open_list: Open,
    wait: Wait,
    busy: dict[str, Any],
    size: tuple[int, int],
    read_only: bool,
) -> None:
    """At 160 columns: runtime, worker, tags, timeout, the whole message and the traceback's head."""
    app = make_app(admin=FakeAdmin(), read_only=read_only)

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "5")
        if size[0] >= 120:
            view = app._views["failed"]
            await wait(pilot, lambda: view._pane_for is not None, "the traceback pane")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_failed_grouped(
    snap_compare, make_app: MakeApp, open_list: Open, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "5")
        await pilot.press("g")
        await wait(pilot, lambda: bool(app._views["failed"].model.groups), "the groups")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tab", ["traceback", "summary", "payload", "partial", "retries"])
def test_failed_detail(
    snap_compare, make_app: MakeApp, open_list: Open, wait: Wait, busy: dict[str, Any], size: tuple[int, int], tab: str
) -> None:
    app = make_app(admin=FakeAdmin())
    app_tabs = {
        "traceback": "pane-tb",
        "summary": "pane-summary",
        "payload": "pane-payload",
        "partial": "pane-partial",
        "retries": "pane-retries",
    }

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "5")
        if tab == "retries":
            await pilot.press("down", "down", "down")  # the job that was retried
        await pilot.press("enter")
        await wait(pilot, lambda: getattr(app.screen, "detail", None) is not None, "the failed job")
        await pilot.pause()
        from textual.widgets import TabbedContent

        app.screen.query_one(TabbedContent).active = app_tabs[tab]

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("read_only", [False, True], ids=["actions", "read-only"])
def test_running(
    snap_compare, make_app: MakeApp, open_list: Open, busy: dict[str, Any], size: tuple[int, int], read_only: bool
) -> None:
    """Running yellow past the queue's p95, T/O in red under 10 s, Lease red when a renewal is overdue."""
    app = make_app(admin=FakeAdmin(), read_only=read_only)

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "6")
        await pilot.press(*["down"] * 6)  # the cursor off the top rows, so their colours show

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_cancel_confirm(
    snap_compare, make_app: MakeApp, open_list: Open, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "4")
        await pilot.press("c")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_typed_confirm(
    snap_compare, make_app: MakeApp, open_list: Open, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    """Cancelling a batch with over 1,000 jobs to touch asks for its name."""
    rows = batches()
    rows[0] = replace(rows[0], total=20_000, pending=18_738)
    app = make_app(admin=FakeAdmin(batches_=rows))

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "4")
        await pilot.press("c")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the typed confirm")
        await pilot.press(*"run-4")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_filter_prompt(
    snap_compare, make_app: MakeApp, open_list: Open, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "5")
        await pilot.press("slash", *"queue:judge exc:TimeoutError")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_failed_filtered(
    snap_compare, make_app: MakeApp, open_list: Open, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "5")
        await pilot.press("slash", *"queue:judge exc:TimeoutError", "enter")
        view = app._views["failed"]
        await wait(pilot, lambda: view.model.page is not None and view.model.total == 3, "the filtered page")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("screen", "key"),
    [("4", "R"), ("5", "r"), ("5", "d"), ("5", "R"), ("6", "k")],
    ids=["batch-retry", "failed-retry", "failed-forget", "failed-retry-all", "running-cancel"],
)
def test_list_confirms(
    snap_compare,
    make_app: MakeApp,
    open_list: Open,
    wait: Wait,
    busy: dict[str, Any],
    size: tuple[int, int],
    screen: str,
    key: str,
) -> None:
    """Every other confirm of the lists: what it names and the counts it states."""
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, screen)
        await pilot.press(key)
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")

    assert shoot(snap_compare, app, size, busy, steps)
