"""Pictures of the Overview, Workload, Queue detail, a job's detail and Supervisors, at 80x24 and
160x48, from recorded telemetry and history and the fixed rows of the fake engine interface, with
a fixed clock and time zone; and of their dialogs: pause and clear a queue, terminate a master."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fake_admin import FakeAdmin
from textual.pilot import Pilot
from textual.widgets import Input

from evalharness.tui.app import ConnectionChecked, ConsoleApp, HistoryReceived, TelemetryReceived
from evalharness.tui.views.dialogs import ConfirmDialog

NOW = 1_700_000_000.0
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
CONFIGURED = ("judge-pool", "evals-pool", "embed-pool", "sut-pool", "nightly-pool")

MakeApp = Callable[..., ConsoleApp]
Wait = Callable[..., Awaitable[None]]


def shoot(
    snap_compare: Any,
    app: ConsoleApp,
    size: tuple[int, int],
    busy: dict[str, Any],
    history: list[dict[str, Any]],
    steps: Callable[[Pilot[None]], Awaitable[None]],
) -> bool:
    app.configured_supervisors = CONFIGURED

    async def run_before(pilot: Pilot[None]) -> None:
        app.post_message(ConnectionChecked.connected(NOW))
        app.post_message(TelemetryReceived.from_dict(busy))
        app.post_message(HistoryReceived.from_entries(history))
        await pilot.pause()
        await steps(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False  # the cursor shown, wherever its blink was when the picture is taken
        await pilot.pause()

    result: bool = snap_compare(app, terminal_size=size, run_before=run_before)
    return result


async def overview_ready(pilot: Pilot[None], wait: Wait) -> None:
    app: Any = pilot.app
    await wait(pilot, lambda: app._overview.fetched and app.drawn_history is not None, "the overview's pages")


async def workload(pilot: Pilot[None], wait: Wait) -> None:
    app: Any = pilot.app
    await pilot.press("2")
    view = app._views["workload"]
    await wait(pilot, lambda: len(view.table.keys) == 8 and view._pane is not None, "the workload rows and pane")


async def supervisors(pilot: Pilot[None], wait: Wait) -> None:
    app: Any = pilot.app
    await pilot.press("3")
    await wait(pilot, lambda: app._views["supervisors"].model.loaded, "the masters")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_overview_screen(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
) -> None:
    """Eight tiles with sparklines, the longest waits, the events; at 160x48 every queue, the
    supervisors and the batches in progress."""
    app = make_app(admin=FakeAdmin())
    assert shoot(snap_compare, app, size, busy, busy_history, lambda pilot: overview_ready(pilot, wait))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("read_only", [False, True], ids=["actions", "read-only"])
def test_workload(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
    read_only: bool,
) -> None:
    """Oldest red past the threshold (sut-anthropic), a paused queue marked, "—" with no backlog;
    the highlighted queue's hour below; at 160x48 the extra columns, the plot and the limiters.
    Read-only: no pause or clear in the footer."""
    app = make_app(admin=FakeAdmin(), read_only=read_only)
    assert shoot(snap_compare, app, size, busy, busy_history, lambda pilot: workload(pilot, wait))


@pytest.mark.parametrize("size", SIZES)
def test_queue_detail(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await workload(pilot, wait)
        await pilot.press("enter")
        await wait(pilot, lambda: getattr(app.screen, "loaded", False), "the ready jobs")

    assert shoot(snap_compare, app, size, busy, busy_history, steps)


@pytest.mark.parametrize("size", SIZES)
def test_queue_detail_running_tab(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await workload(pilot, wait)
        await pilot.press("enter")
        await wait(pilot, lambda: getattr(app.screen, "loaded", False), "the ready jobs")
        await pilot.press("t", "t")
        screen: Any = app.screen
        await wait(pilot, lambda: screen.model.page is not None and screen.model.page.tab == "running", "running jobs")

    assert shoot(snap_compare, app, size, busy, busy_history, steps)


@pytest.mark.parametrize("size", SIZES)
def test_job_detail(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
) -> None:
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await workload(pilot, wait)
        await pilot.press("enter")
        await wait(pilot, lambda: getattr(app.screen, "loaded", False), "the ready jobs")
        await pilot.press("enter")
        await wait(pilot, lambda: bool(app.screen.query("#job-payload")), "the job's payload")

    assert shoot(snap_compare, app, size, busy, busy_history, steps)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("read_only", [False, True], ids=["actions", "read-only"])
def test_supervisors(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
    read_only: bool,
) -> None:
    """Grouped by master; gpu-03 silent for 40 s is red "lost"; nightly-pool, configured but run by
    no master, dim "inactive"; at 160x48 per queue, memory, jobs done, uptime, last balance."""
    app = make_app(admin=FakeAdmin(), read_only=read_only)
    assert shoot(snap_compare, app, size, busy, busy_history, lambda pilot: supervisors(pilot, wait))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", ["p", "X"], ids=["pause", "clear"])
def test_queue_confirm(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
    key: str,
) -> None:
    """Pause states what stays queued and what finishes; clear needs the queue's name typed."""
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await workload(pilot, wait)
        await pilot.press(key)
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")

    assert shoot(snap_compare, app, size, busy, busy_history, steps)


@pytest.mark.parametrize("size", SIZES)
def test_terminate_confirm(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
) -> None:
    """The confirm states the master's grace period."""
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await supervisors(pilot, wait)
        await pilot.press("T")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")

    assert shoot(snap_compare, app, size, busy, busy_history, steps)


@pytest.mark.parametrize("size", SIZES)
def test_scale_confirm(
    snap_compare,
    make_app: MakeApp,
    wait: Wait,
    busy: dict[str, Any],
    busy_history: list[dict[str, Any]],
    size: tuple[int, int],
) -> None:
    """`+` on a pool asks first, naming the pool, its size now and after."""
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await supervisors(pilot, wait)
        view = app._views["supervisors"]  # type: ignore[attr-defined]
        view.table.move_cursor(row=view.table.get_row_index("p:gpu-01-a3f/judge-pool/judge"))
        await pilot.pause()
        await pilot.press("plus")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")

    assert shoot(snap_compare, app, size, busy, busy_history, steps)
