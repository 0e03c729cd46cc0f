"""Pictures of Graphs, Events and the frame at 80x24 and 160x48, from recorded telemetry, a day
of recorded history and fixed events (the fake engine interface), a fixed clock and time zone:
the graphs (and one collecting), the events table, a frozen list with what is new held, a list
while Redis is lost, the palette going to a batch, and the key panel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from fake_admin import NOW, FakeAdmin, batches
from textual.pilot import Pilot
from textual.widgets import Input

from evalharness.tui.app import ConnectionChecked, ConsoleApp, TelemetryReceived

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
ERROR = "ConnectionError: Error 111 connecting to redis.internal:6379. Connection refused."

MakeApp = Callable[..., ConsoleApp]
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


async def open_graphs(pilot: Pilot[None], wait: Wait) -> None:
    app: Any = pilot.app
    await pilot.press("7")
    view = app._views["graphs"]
    count = 4 if app.size.width >= 120 else 1
    await wait(pilot, lambda: view.model.fetched and all(p.drawn for p in view.panels[:count]), "the plots")


async def open_events(pilot: Pilot[None], wait: Wait) -> None:
    app: Any = pilot.app
    await pilot.press("8")
    table = app._views["events"].table
    # all rows in, the cursor on the newest and the table scrolled to it (the tail followed), no
    # scroll still animating, and the scrollbar drawn for that
    await wait(
        pilot,
        lambda: (
            table.row_count == 40
            and table.cursor_row == 39
            and table.scroll_y == table.max_scroll_y
            and not app.animator.is_being_animated(table, "scroll_y")
            and scrollbar_settled(table)
        ),
        "the events, the tail followed",
    )
    await pilot.wait_for_scheduled_animations()


def scrollbar_settled(table: Any) -> bool:
    """The scrollbar draws the table as it is now: its size and position follow the rows (they
    catch up on a later layout, so a picture taken before shows the thumb where it was)."""
    if not table.show_vertical_scrollbar:
        return True
    bar = table.vertical_scrollbar
    return bool(bar.window_virtual_size == table.virtual_size.height and round(bar.position) == round(table.scroll_y))


@pytest.mark.parametrize("size", SIZES)
def test_graphs(snap_compare, make_app: MakeApp, wait: Wait, busy: dict[str, Any], size: tuple[int, int]) -> None:
    """Throughput over the last hour of every queue; at 160x48 the 2x2 grid."""
    app = make_app(admin=FakeAdmin())
    assert shoot(snap_compare, app, size, busy, lambda pilot: open_graphs(pilot, wait))


@pytest.mark.parametrize("size", SIZES)
def test_graphs_one_queue_six_hours(
    snap_compare, make_app: MakeApp, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    """`q` to the first queue, `]` to 6 h, `m` to the wait metric."""
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        await open_graphs(pilot, wait)
        await pilot.press("q", "right_square_bracket", "m")
        panel = app._views["graphs"].panels[0]
        await wait(
            pilot,
            lambda: (
                panel.drawn is not None and panel.drawn[0].startswith("Oldest wait") and panel.drawn[0].endswith("· 6h")
            ),
            "the replot",
        )

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_graphs_collecting(
    snap_compare, make_app: MakeApp, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    """A daemon that has recorded one minute: "collecting…", never an empty frame."""
    admin = FakeAdmin()
    admin.history_rows = admin.history_rows[-1:]
    app = make_app(admin=admin)

    async def steps(pilot: Pilot[None]) -> None:
        await pilot.press("7")
        view = app._views["graphs"]
        await wait(pilot, lambda: view.model.fetched and view.panels[0].has_class("-collecting"), "the note")

    busy = {**busy, "queues": []}
    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_events(snap_compare, make_app: MakeApp, wait: Wait, busy: dict[str, Any], size: tuple[int, int]) -> None:
    """The tail followed: the cursor on the newest event, at the bottom."""
    app = make_app(admin=FakeAdmin())
    assert shoot(snap_compare, app, size, busy, lambda pilot: open_events(pilot, wait))


@pytest.mark.parametrize("size", SIZES)
def test_events_scrolled_up_with_new_ones(
    snap_compare, make_app: MakeApp, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    """The cursor moved up, three events came: "▼ 3 new", the cursor stayed."""
    admin = FakeAdmin()
    app = make_app(admin=admin)

    async def steps(pilot: Pilot[None]) -> None:
        await open_events(pilot, wait)
        await pilot.press("up", "up", "up")
        for i in range(3):
            admin.event_rows.append(
                {
                    "event_id": f"{int(NOW * 1000) + i + 1}-0",
                    "at": f"{NOW + i + 1:.3f}",
                    "kind": "long_wait",
                    "queue": "judge",
                    "message": f"oldest job on judge has waited {4 + i}m",
                }
            )
        view = app._views["events"]
        view.fetch()
        await wait(pilot, lambda: view.unseen == 3 and scrollbar_settled(view.table), "the new events")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_frozen(
    snap_compare, make_app: MakeApp, open_list: Any, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    """`space` on Batches: ❄ in the top bar with the new batch held, the rows as they were."""
    admin = FakeAdmin()
    app = make_app(admin=admin)

    async def steps(pilot: Pilot[None]) -> None:
        await open_list(pilot, "4")
        await pilot.press("space")
        admin.batch_rows.insert(0, replace(batches()[0], id="bnew00000000000", name="run-43"))
        view = app._views["batches"]
        view.fetch()
        await wait(pilot, lambda: view.table.held_new == 1, "the held page")
        await wait(pilot, lambda: "1 new" in str(app._frozen_mark.content), "the mark")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_disconnected_list(
    snap_compare, make_app: MakeApp, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    """Redis lost 14 s ago on Events: the rows stay, dimmed, "stale 14s" in the top bar."""
    admin = FakeAdmin()
    app = make_app(admin=admin)

    async def steps(pilot: Pilot[None]) -> None:
        app.post_message(ConnectionChecked.connected(NOW - 14))
        await open_events(pilot, wait)
        app.post_message(ConnectionChecked.failed(ERROR, NOW, 2.0))
        await wait(pilot, lambda: "stale 14s" in str(app._frozen_mark.content), "the stale mark")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_palette_goes_to_a_batch(
    snap_compare, make_app: MakeApp, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    """ctrl+p, "run-4": the batches whose name holds it, by id."""
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        from textual.command import CommandList

        await pilot.press("ctrl+p")
        await pilot.press(*"run-4")

        def listed() -> bool:
            options = app.screen.query(CommandList)
            return bool(options) and sum("Go to batch" in str(o.prompt) for o in options.first().options) == 3

        await wait(pilot, listed, "the batches in the palette")

    assert shoot(snap_compare, app, size, busy, steps)


@pytest.mark.parametrize("size", SIZES)
def test_key_panel_on_graphs(
    snap_compare, make_app: MakeApp, wait: Wait, busy: dict[str, Any], size: tuple[int, int]
) -> None:
    """`?` on Graphs: the screen's keys and the frame's."""
    app = make_app(admin=FakeAdmin())

    async def steps(pilot: Pilot[None]) -> None:
        from textual.widgets import HelpPanel

        await open_graphs(pilot, wait)
        await pilot.press("question_mark")
        await wait(pilot, lambda: bool(app.screen.query(HelpPanel)), "the key panel")

    assert shoot(snap_compare, app, size, busy, steps)
