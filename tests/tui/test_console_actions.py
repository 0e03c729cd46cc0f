"""The acting screens driven with run_test() over the fake engine interface: every action confirms
first (default No) and toasts the engine's own numbers; big and "all matching" actions need a
name typed; read-only hides every action from keys, key panel and palette; refreshes keep the
cursor on its row; a lost Redis is an error toast, not a dead console."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from fake_admin import NOW, FakeAdmin, batches
from textual.pilot import Pilot
from textual.widgets import Input, TabbedContent

from evalharness.core.admin import FailedFilter
from evalharness.tui.app import ConsoleApp
from evalharness.tui.views.batches import BatchDetailScreen, BatchesView
from evalharness.tui.views.common import LazyText
from evalharness.tui.views.dialogs import ConfirmDialog, FilterDialog
from evalharness.tui.views.failed import FailedDetailScreen, FailedView
from evalharness.tui.views.running import RunningView

MakeApp = Callable[..., ConsoleApp]
Open = Callable[..., Awaitable[None]]
Wait = Callable[..., Awaitable[None]]


def toasts(app: ConsoleApp) -> list[str]:
    return [n.message for n in app._notifications]


def dialog(app: ConsoleApp) -> ConfirmDialog:
    assert isinstance(app.screen, ConfirmDialog), app.screen
    return app.screen


def calls(admin: FakeAdmin, name: str) -> list[object]:
    return [arg for called, arg in admin.calls if called == name]


async def test_cancel_batch_confirms_with_counts_then_toasts_the_engines_numbers(
    make_app: MakeApp, open_list: Open, wait: Wait
) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        view = app._views["batches"]
        assert view.highlighted is not None and view.highlighted.name == "run-42"
        await pilot.press("c")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        body = dialog(app).confirmation.body
        assert "Removes 700 queued jobs; 38 running will be told to stop; `finally` runs once" in body
        assert app.screen.focused is not None and app.screen.focused.id == "no"  # default No
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the result")
        result = app.results[-1]
        assert (result.action, result.removed, result.told_to_stop) == ("cancel_batch", 700, 38)
        assert result.message in toasts(app)
        assert "removed 700 queued jobs, 38 running told to stop" in result.message
        # The list is fetched again: a cancelled batch leaves the active chip.
        await wait(pilot, lambda: "run-42" not in [r.name for r in view.model.rows], "the refetched page")


async def test_no_escape_and_enter_abort_a_confirm(make_app: MakeApp, open_list: Open, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        for key in ("n", "escape", "enter"):
            await pilot.press("c")
            await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
            await pilot.press(key)
            await wait(pilot, lambda: not isinstance(app.screen, ConfirmDialog), f"{key} to close the confirm")
        assert calls(admin, "cancel_batch") == []
        assert app.results == []


async def test_a_cancel_over_a_thousand_jobs_needs_the_name_typed(
    make_app: MakeApp, open_list: Open, wait: Wait
) -> None:
    rows = batches()
    rows[0] = replace(rows[0], total=20_000, pending=18_738)
    admin = FakeAdmin(batches_=rows)
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        await pilot.press("c")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the typed confirm")
        assert dialog(app).confirmation.typed == "run-42"
        await pilot.press("y")  # typed into the box, not a confirmation
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog) and calls(admin, "cancel_batch") == []
        input_ = app.screen.query_one(Input)
        input_.value = ""
        await pilot.press(*"run-42", "enter")
        await wait(pilot, lambda: bool(app.results), "the result")
        assert app.results[-1].removed == 18_700


async def test_retry_all_matching_confirms_the_filters_count(make_app: MakeApp, open_list: Open, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "5")
        await pilot.press("slash")
        await wait(pilot, lambda: isinstance(app.screen, FilterDialog), "the filter prompt")
        await pilot.press(*"queue:judge exc:TimeoutError", "enter")
        view = app._views["failed"]
        flt = FailedFilter(queue="judge", exception="TimeoutError")
        await wait(pilot, lambda: view.model.page is not None and view.model.filter == flt, "the filtered page")
        count = await admin.failed_count(flt)
        assert view.model.total == count == 3
        await pilot.press("R")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        confirmation = dialog(app).confirmation
        assert f"({count})" in confirmation.title and "queue:judge exc:TimeoutError" in confirmation.body
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the result")
        result = app.results[-1]
        assert calls(admin, "retry_matching") == [flt]
        assert result.retried + result.skipped == count
        assert result.message in toasts(app)


async def test_forget_all_matching_is_always_typed(make_app: MakeApp, open_list: Open, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "5")
        await pilot.press("D")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the typed confirm")
        assert dialog(app).confirmation.typed == "all"
        await pilot.press(*"all", "enter")
        await wait(pilot, lambda: bool(app.results), "the result")
        assert app.results[-1].forgotten == 10
        assert admin.failed_rows == []


async def test_grouped_retry_acts_on_the_highlighted_exception_class(
    make_app: MakeApp, open_list: Open, wait: Wait
) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "5")
        await pilot.press("g")
        view = app._views["failed"]
        await wait(pilot, lambda: bool(view.model.groups), "the groups")
        assert view.table.cursor_key == "exc:TimeoutError"
        await pilot.press("R")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        assert "(3)" in dialog(app).confirmation.title
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the result")
        assert calls(admin, "retry_matching") == [FailedFilter(exception="TimeoutError")]


async def test_read_only_hides_every_action(make_app: MakeApp, open_list: Open, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin, read_only=True)
    acting = {"cancel", "retry", "forget", "retry_all", "forget_all"}

    def offered() -> set[str]:
        return {b.binding.action for b in app.screen.active_bindings.values()}

    def palette() -> list[str]:
        return [c.title for c in app.get_system_commands(app.screen)]

    async with app.run_test(size=(80, 24)) as pilot:
        for key in ("4", "5", "6"):
            await open_list(pilot, key)
            assert not offered() & acting, (key, offered())
            assert not [t for t in palette() if any(w in t for w in ("Cancel", "Retry", "Forget"))]
            assert "copy" in offered() and "filter" in offered()
        await pilot.press("k", "4", "c", "R", "5", "r", "d", "R", "D")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")
        await wait(
            pilot,
            lambda: isinstance(app.screen, FailedDetailScreen) and app.screen.detail is not None,
            "the failed job",
        )
        assert not offered() & acting
        await pilot.press("escape", "4", "enter")
        await wait(pilot, lambda: isinstance(app.screen, BatchDetailScreen), "the batch")
        assert not offered() & acting
    assert admin.calls and not [
        c
        for c, _ in admin.calls
        if c
        in (
            "cancel_batch",
            "retry_batch",
            "retry_failed",
            "forget_failed",
            "retry_matching",
            "forget_matching",
            "cancel_job",
            "cancel_batch_preview",
        )
    ]


async def test_palette_and_key_panel_offer_only_built_screens_and_their_actions(
    make_app: MakeApp, open_list: Open
) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        shows = [c.title for c in app.get_system_commands(app.screen) if c.title.startswith("Show ")]
        assert shows == [
            "Show Overview (1)",
            "Show Workload (2)",
            "Show Supervisors (3)",
            "Show Batches (4)",
            "Show Failed (5)",
            "Show Running (6)",
            "Show Graphs (7)",
            "Show Events (8)",
        ]
        keys = {b.binding.key for b in app.screen.active_bindings.values()}
        assert {"1", "2", "3", "4", "5", "6", "7", "8"} <= keys
        await open_list(pilot, "4")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Batches: Cancel batch (c)" in titles and "Batches: Retry failed (R)" in titles
        # The palette runs the action as the key does.
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Batches: Cancel batch (c)")
        command.callback()
        await pilot.pause(0.2)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await pilot.press("7")
        assert app.mode_shown == "graphs"


async def test_actions_that_do_not_apply_are_greyed(make_app: MakeApp, open_list: Open) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        await pilot.press("down", "down")  # judge-sweep-b: pending, no failures
        bindings = {b.binding.action: b.enabled for b in app.screen.active_bindings.values()}
        assert bindings["cancel"] is True and bindings["retry"] is False


async def test_the_cursor_stays_on_its_row_when_a_refresh_resorts(
    make_app: MakeApp, open_list: Open, wait: Wait
) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        view: BatchesView = app._views["batches"]
        await pilot.press("down")
        key = view.table.cursor_key
        assert key is not None and view.model.find(key).name == "nightly-rag-eval"  # type: ignore[union-attr]
        # Two newer running batches arrive: they sort above it.
        fresh = [replace(admin.batch_rows[0], id=f"bnew{i}", name=f"new-{i}", created_at=NOW - i) for i in range(2)]
        admin.batch_rows.extend(fresh)
        before = view.table.updates
        view.fetch()
        await wait(pilot, lambda: len(view.model.page) == 5, "the new page")
        await pilot.pause()
        assert view.table.keys[:2] == ["bnew0", "bnew1"]
        assert view.table.cursor_key == key
        # Only the new rows were written: the others' cells did not change.
        assert view.table.updates - before == 2 * len(view.table.columns)

        await open_list(pilot, "6")
        running: RunningView = app._views["running"]
        await pilot.press("down", "down")
        key = running.table.cursor_key
        admin.running_rows.append(replace(admin.running_rows[0], id="longest", started_at=NOW - 500))
        running.fetch()
        await wait(pilot, lambda: "longest" in running.table.keys, "the new lease")
        assert running.table.keys[0] == "longest" and running.table.cursor_key == key


async def test_redis_lost_during_an_action_is_an_error_toast(make_app: MakeApp, open_list: Open, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "5")
        await pilot.press("r")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        admin.down = True
        await pilot.press("y")
        await wait(pilot, lambda: any("Connection refused" in t for t in toasts(app)), "the error toast")
        assert app.is_running and app.results == []
        view: FailedView = app._views["failed"]
        view.fetch()
        await wait(pilot, lambda: view.model.error is not None, "the list to say it is stale")
        assert len(view.model.rows) == 10  # the rows stay
        admin.down = False
        await pilot.press("r")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the result once Redis is back")
        assert app.results[-1].retried == 1


async def test_acting_on_a_batch_that_finished_meanwhile_says_so(
    make_app: MakeApp, open_list: Open, wait: Wait
) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        await pilot.press("c")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        admin.batch_rows[0] = replace(admin.batch_rows[0], state="succeeded")
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the result")
        assert not app.results[-1].ok and "already finished" in toasts(app)[-1]


async def open_first_failed(pilot: Pilot[None], wait: Wait) -> float:
    """Open the first failed job from the list; the seconds until its tabs are filled."""
    app = pilot.app
    started = time.monotonic()
    await pilot.press("enter")
    await wait(
        pilot,
        lambda: isinstance(app.screen, FailedDetailScreen) and app.screen.detail is not None,
        "the failed job",
        within=60,
    )
    await pilot.pause()
    return time.monotonic() - started


async def test_a_huge_traceback_and_payload_open_without_freezing(
    make_app: MakeApp, open_list: Open, wait: Wait
) -> None:
    """A 1 MB traceback and payload open about as fast as a small one, and scroll to their end."""
    small = make_app(admin=FakeAdmin())
    async with small.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "5")
        small_seconds = await open_first_failed(pilot, wait)
    app = make_app(admin=FakeAdmin(huge=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "5")
        huge_seconds = await open_first_failed(pilot, wait)
        screen = app.screen
        assert isinstance(screen, FailedDetailScreen) and screen.detail is not None
        assert len(screen.detail.traceback) > 1_000_000
        traceback = screen.query_one("#traceback", LazyText)  # every line, drawn as scrolled to
        assert len(traceback.lines) == len(screen.detail.traceback.splitlines())
        traceback.focus()
        await pilot.press("end")
        await wait(pilot, lambda: traceback.scroll_offset.y > 15_000, "the end of the traceback")
        screen.query_one(TabbedContent).active = "pane-payload"
        await pilot.pause()
        assert isinstance(screen.query_one("#payload"), LazyText)
    assert huge_seconds < 3 * small_seconds + 2, (huge_seconds, small_seconds)


async def test_y_copies_the_highlighted_id(make_app: MakeApp, open_list: Open, wait: Wait) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "6")
        view: RunningView = app._views["running"]
        await pilot.press("y")
        assert app.clipboard == view.table.cursor_key
        await open_list(pilot, "5")
        await pilot.press("enter")
        await wait(
            pilot,
            lambda: isinstance(app.screen, FailedDetailScreen) and app.screen.detail is not None,
            "the failed job",
        )
        await pilot.press("Y")
        assert app.clipboard.startswith("Traceback (most recent call last):")


async def test_b_goes_from_a_failed_job_to_its_batch(make_app: MakeApp, open_list: Open, wait: Wait) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "5")
        await pilot.press("enter")
        await wait(
            pilot,
            lambda: isinstance(app.screen, FailedDetailScreen) and app.screen.detail is not None,
            "the failed job",
        )
        await pilot.press("b")
        await wait(pilot, lambda: isinstance(app.screen, BatchDetailScreen), "the batch")
        assert app.screen.row.name == "run-42"  # type: ignore[attr-defined]


async def test_cancel_a_running_job(make_app: MakeApp, open_list: Open, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "6")
        view: RunningView = app._views["running"]
        key = view.table.cursor_key
        await pilot.press("k")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        assert "recorded as cancelled with its partial state" in dialog(app).confirmation.body
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the result")
        assert calls(admin, "cancel_job") == [key] and app.results[-1].told_to_stop == 1
        await wait(pilot, lambda: view.highlighted is not None and view.highlighted.cancel_requested, "the refetch")
        assert not {b.binding.action: b.enabled for b in app.screen.active_bindings.values()}["cancel"]
