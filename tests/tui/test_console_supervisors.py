"""Supervisors and Workload over fixed rows: which actions apply where, what the confirms say,
what each sends to the master, and that --read-only hides every one of them."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from fake_admin import NOW, FakeAdmin
from textual.pilot import Pilot

from evalharness.core.admin import MasterRow, SupervisorRow
from evalharness.tui.app import ConnectionChecked, ConsoleApp, TelemetryReceived
from evalharness.tui.views.dialogs import ConfirmDialog
from evalharness.tui.views.supervisors import SupervisorsView, build_lines, decision_text, is_lost
from evalharness.tui.views.workload import WorkloadView, clear_text, oldest_now, workload_cells

MakeApp = Callable[..., ConsoleApp]
Wait = Callable[..., Awaitable[None]]


async def open_supervisors(pilot: Pilot[None], wait: Wait) -> SupervisorsView:
    app: Any = pilot.app
    await pilot.press("3")
    view: SupervisorsView = app._views["supervisors"]
    await wait(pilot, lambda: view.model.loaded, "the masters")
    await pilot.pause()
    return view


async def move_to(pilot: Pilot[None], view: SupervisorsView, key: str) -> None:
    view.table.move_cursor(row=view.table.get_row_index(key))
    await pilot.pause()


def test_lost_and_inactive() -> None:
    alive = MasterRow("a", "h", 1, "running", NOW - 14, 15.0, "", None, None, ())
    assert not is_lost(alive, NOW) and is_lost(alive, NOW + 2)  # the TTL passes while on screen
    sup = SupervisorRow("s", "running", ("q",), 1, 0, {"q": 1}, {"q": 1}, {}, "auto", 1, 2)
    lines = build_lines([MasterRow("a", "h", 1, "running", NOW, 15.0, "", None, None, (sup,))], ["s", "absent"])
    assert [(line.kind, line.key) for line in lines] == [
        ("master", "m:a"),
        ("supervisor", "s:a/s"),
        ("master", "m:(not running)"),
        ("supervisor", "s:(not running)/absent"),
    ]
    assert lines[-1].supervisor is not None and lines[-1].supervisor.status == "inactive"
    assert decision_text({"pool": "judge", "from": 14, "to": 16, "at": NOW - 14}, NOW) == "+2 judge 14s ago"


def test_oldest_ticks_and_turns_red_past_the_threshold(busy: dict[str, Any]) -> None:
    from evalharness.tui.state import Snapshot

    judge = Snapshot.from_dict(busy).queue("judge")
    assert judge is not None and judge.long_wait == 120 and judge.oldest_wait == 185.3
    assert oldest_now(judge, 10.0) == 195.3
    assert workload_cells(judge, 0.0)["oldest"].style == "bold red"
    embeddings = Snapshot.from_dict(busy).queue("embeddings")
    assert embeddings is not None and clear_text(embeddings) == "—"  # no backlog: nothing to clear


async def test_terminate_states_the_grace_and_sends_to_the_master(make_app: MakeApp, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_supervisors(pilot, wait)
        await move_to(pilot, view, "s:gpu-01-a3f/evals-pool")
        await pilot.press("T")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        body = str(app.screen.query_one("#dialog-body").content)
        assert "gpu-01-a3f stops: its 32 workers get up to 1m 30s to finish their running jobs" in body
        await pilot.press("y")
        await wait(pilot, lambda: bool(admin.commands), "the command")
        assert admin.commands == [{"master": "gpu-01-a3f", "action": "terminate", "supervisor": None}]


async def test_p_pauses_the_supervisor_or_continues_a_paused_one(make_app: MakeApp, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_supervisors(pilot, wait)
        await move_to(pilot, view, "s:gpu-01-a3f/evals-pool")  # paused
        await pilot.press("p")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        assert str(app.screen.query_one("#dialog-title").content) == "Continue supervisor evals-pool?"
        await pilot.press("y")
        await move_to(pilot, view, "m:gpu-02-7b1")
        await pilot.press("p")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        assert str(app.screen.query_one("#dialog-title").content) == "Pause master gpu-02-7b1?"
        await pilot.press("y")
        await wait(pilot, lambda: len(admin.commands) == 2, "both commands")
        assert [(c["master"], c["action"], c["supervisor"]) for c in admin.commands] == [
            ("gpu-01-a3f", "continue", "evals-pool"),
            ("gpu-02-7b1", "pause", None),
        ]


async def test_plus_minus_and_zero_confirm_then_act_on_the_highlighted_pool(make_app: MakeApp, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_supervisors(pilot, wait)
        # a supervisor with two pools: the keys need one of them highlighted
        await move_to(pilot, view, "s:gpu-01-a3f/judge-pool")
        assert view.can("scale_up") is None
        await move_to(pilot, view, "p:gpu-01-a3f/judge-pool/judge")
        assert view.can("scale_reset") is None  # no override yet
        await pilot.press("plus")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        assert str(app.screen.query_one("#dialog-title").content) == "Scale judge of judge-pool from 16 to 17?"
        body = str(app.screen.query_one("#dialog-body").content)
        assert body.startswith(
            "Pool judge of supervisor judge-pool on gpu-01-a3f: 16 processes now, 17 processes after."
        )
        await pilot.press("n")  # aborted: nothing is sent
        await wait(pilot, lambda: not isinstance(app.screen, ConfirmDialog), "the confirm closed")
        await pilot.pause()
        assert admin.commands == [] and app.results == []
        await pilot.press("plus")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm again")
        await pilot.press("y")
        await wait(pilot, lambda: len(app.results) == 1, "the scale")
        assert admin.commands[-1] == {
            "master": "gpu-01-a3f",
            "action": "scale",
            "supervisor": "judge-pool",
            "queue": "judge",
            "processes": 17,
        }
        await wait(
            pilot,
            lambda: view.table.get_cell("p:gpu-01-a3f/judge-pool/judge", "status").plain == "override",
            "the override shown",
        )
        assert view.table.get_cell("s:gpu-01-a3f/judge-pool", "balance").plain == "auto ·ovr"
        await pilot.press("minus")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm of -")
        assert str(app.screen.query_one("#dialog-title").content) == "Scale judge of judge-pool from 17 to 16?"
        await pilot.press("y")
        await wait(pilot, lambda: len(app.results) == 2, "the second scale")
        assert admin.commands[-1]["processes"] == 16
        await wait(pilot, lambda: view.can("scale_reset") is True, "0 to apply")
        await pilot.press("0")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm of 0")
        assert str(app.screen.query_one("#dialog-title").content) == "Drop the override of judge?"
        body = str(app.screen.query_one("#dialog-body").content)
        assert "16 processes now, by its override; then the balancer (auto) sizes it again." in body
        await pilot.press("y")
        await wait(pilot, lambda: len(app.results) == 3, "the reset")
        assert admin.commands[-1]["processes"] is None
        await wait(
            pilot,
            lambda: view.table.get_cell("p:gpu-01-a3f/judge-pool/judge", "status").plain == "",
            "the override gone",
        )


async def test_a_lost_master_takes_no_commands(make_app: MakeApp, wait: Wait) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_supervisors(pilot, wait)
        await move_to(pilot, view, "m:gpu-03-c09")
        assert view.table.get_cell("m:gpu-03-c09", "status").plain == "lost"
        assert all(view.can(a) is None for a in ("pause", "restart", "terminate", "scale_up"))


async def test_read_only_hides_every_action_of_workload_and_supervisors(
    make_app: MakeApp, wait: Wait, busy: dict[str, Any]
) -> None:
    app = make_app(admin=FakeAdmin(), read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        app.post_message(ConnectionChecked.connected(NOW))
        app.post_message(TelemetryReceived.from_dict(copy.deepcopy(busy)))
        await pilot.press("2")
        workload: WorkloadView = app._views["workload"]
        await wait(pilot, lambda: bool(workload.table.keys), "the workload rows")
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert not actions & {"pause", "clear"}
        await open_supervisors(pilot, wait)
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert not actions & {"pause", "scale_up", "scale_down", "scale_reset", "restart", "terminate"}


async def test_enter_on_an_overview_queue_opens_workload_on_it(
    make_app: MakeApp, wait: Wait, busy: dict[str, Any]
) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        app.post_message(ConnectionChecked.connected(NOW))
        app.post_message(TelemetryReceived.from_dict(copy.deepcopy(busy)))
        await wait(pilot, lambda: app.drawn_snapshot is not None, "the snapshot")
        await pilot.press("down", "down")  # sut-anthropic, judge, sut-openai-gpt-4o-mini
        await pilot.press("enter")
        workload: WorkloadView = app._views["workload"]
        await wait(pilot, lambda: app.mode_shown == "workload" and bool(workload.table.keys), "Workload")
        assert workload.table.cursor_key == "sut-openai-gpt-4o-mini"
