"""Workload and Supervisors acting on a real Redis: pause a queue (its flag is set for every
worker), clear a queue with its name typed (the toast has the engine's count), jobs a batch's
max_running holds back shown as held and counted by a clear, and a scale
override from the console that a real daemon applies and `evalharness supervisors` shows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from support.procs import Processes, live_workers, wait_until
from textual.pilot import Pilot
from textual.widgets import Static

from evalharness.core.admin import Admin
from evalharness.core.batches import Batches
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import JobRequest, Queue
from evalharness.core.telemetry import collect_snapshot
from evalharness.tui.app import ConnectionChecked, ConsoleApp, TelemetryReceived
from evalharness.tui.views.dialogs import ConfirmDialog
from evalharness.tui.views.queue_detail import QueueDetailScreen
from evalharness.tui.views.supervisors import SupervisorsView
from evalharness.tui.views.workload import WorkloadView

MakeApp = Callable[..., ConsoleApp]
Wait = Callable[..., Awaitable[None]]
NOW = 1_700_000_000.0


def toasts(app: ConsoleApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def show_snapshot(pilot: Pilot[None], app: ConsoleApp, client: Any, wait: Wait) -> None:
    data = await collect_snapshot(client, "eh")
    message = TelemetryReceived.from_dict(data)
    app.post_message(ConnectionChecked.connected(NOW))
    app.post_message(message)
    await wait(pilot, lambda: app.state.snapshot is message.snapshot, "the snapshot")


async def open_workload_on(pilot: Pilot[None], app: ConsoleApp, queue: str, wait: Wait) -> WorkloadView:
    await pilot.press("2")
    view: WorkloadView = app._views["workload"]
    await wait(pilot, lambda: queue in view.table.keys, f"{queue} in the Workload table")
    while view.table.cursor_key != queue:
        await pilot.press("down")
    return view


async def test_p_pauses_the_queue_for_every_worker_and_toasts(
    make_app: MakeApp, wait: Wait, redis_url: str, aclient: Any
) -> None:
    queue = Queue(aclient, "eh")
    for i in range(3):
        await queue.dispatch("noop", {"i": i}, queue="judge")
    await queue.dispatch("noop", {}, queue="other")
    app = make_app(admin=Admin(aclient, "eh"))
    async with app.run_test(size=(80, 24)) as pilot:
        await show_snapshot(pilot, app, aclient, wait)
        await open_workload_on(pilot, app, "judge", wait)
        await pilot.press("p")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the pause confirm")
        body = str(app.screen.query_one("#dialog-body").content)
        assert "3 ready jobs stay queued" in body and "every host" in body
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the pause to finish")
        assert await aclient.exists(QueueKeys("eh", "judge").paused) == 1
        assert await aclient.exists(QueueKeys("eh", "other").paused) == 0
        assert app.results[-1].message == "paused queue judge: 3 ready jobs stay queued; 0 running finish"
        assert app.results[-1].message in toasts(app)

        # the next snapshot marks it; p again continues it
        await show_snapshot(pilot, app, aclient, wait)
        view: WorkloadView = app._views["workload"]
        await wait(pilot, lambda: view.highlighted is not None and view.highlighted.paused, "the paused mark")
        assert view.table.get_cell("judge", "queue").plain.startswith("‖ ")
        await pilot.press("p")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the continue confirm")
        await pilot.press("y")
        await wait(pilot, lambda: len(app.results) == 2, "the continue to finish")
        assert await aclient.exists(QueueKeys("eh", "judge").paused) == 0
        assert app.results[-1].message == "continued queue judge: 3 ready jobs can start"


async def test_x_clears_the_queue_only_once_its_name_is_typed(
    make_app: MakeApp, wait: Wait, redis_url: str, aclient: Any
) -> None:
    queue = Queue(aclient, "eh")
    for i in range(4):
        await queue.dispatch("noop", {"i": i}, queue="judge")
    await queue.dispatch("noop", {}, queue="other")
    app = make_app(admin=Admin(aclient, "eh"))
    async with app.run_test(size=(80, 24)) as pilot:
        await show_snapshot(pilot, app, aclient, wait)
        await open_workload_on(pilot, app, "judge", wait)
        await pilot.press("X")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the clear confirm")
        dialog = app.screen
        assert "Removes 4 ready jobs of judge" in str(dialog.query_one("#dialog-body").content)
        await pilot.press(*"judg", "enter")  # not the name yet: enter does nothing
        await pilot.pause()
        assert app.screen is dialog and await aclient.zcard(QueueKeys("eh", "judge").ready) == 4
        await pilot.press("e", "enter")
        await wait(pilot, lambda: bool(app.results), "the clear to finish")
        assert app.results[-1].removed == 4
        assert app.results[-1].message == "cleared queue judge: removed 4 ready jobs"
        assert app.results[-1].message in toasts(app)
        assert await aclient.zcard(QueueKeys("eh", "judge").ready) == 0
        assert await aclient.zcard(QueueKeys("eh", "other").ready) == 1


async def test_escape_aborts_a_clear_and_nothing_is_removed(make_app: MakeApp, wait: Wait, aclient: Any) -> None:
    queue = Queue(aclient, "eh")
    await queue.dispatch("noop", {}, queue="judge")
    app = make_app(admin=Admin(aclient, "eh"))
    async with app.run_test(size=(80, 24)) as pilot:
        await show_snapshot(pilot, app, aclient, wait)
        await open_workload_on(pilot, app, "judge", wait)
        await pilot.press("X")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the clear confirm")
        await pilot.press("escape")
        await wait(pilot, lambda: not isinstance(app.screen, ConfirmDialog), "the confirm to close")
        assert app.results == [] and await aclient.zcard(QueueKeys("eh", "judge").ready) == 1


async def test_queue_detail_pages_through_a_queues_ready_jobs(make_app: MakeApp, wait: Wait, aclient: Any) -> None:
    queue = Queue(aclient, "eh")
    ids = [await queue.dispatch("noop", {"secret": f"payload-{i}"}, queue="judge") for i in range(60)]
    app = make_app(admin=Admin(aclient, "eh"))
    async with app.run_test(size=(80, 24)) as pilot:
        await show_snapshot(pilot, app, aclient, wait)
        await open_workload_on(pilot, app, "judge", wait)
        await pilot.press("enter")
        await wait(pilot, lambda: getattr(app.screen, "loaded", False), "the queue's first page")
        screen: Any = app.screen
        assert screen.model.page.total == 60 and len(screen.model.page.rows) == 50
        assert str(screen.query_one("#queue-page-note").content) == "1–50 of 60 · pgup/pgdn"
        table = screen.query_one("#queue-jobs")
        assert table.keys == ids[:50]  # oldest first
        # a list row never carries a payload
        assert not any("payload-" in table.get_row(k)[0].plain + table.get_row(k)[1].plain for k in table.keys)
        await pilot.press("pagedown")
        await wait(pilot, lambda: screen.model.page.offset == 50, "the second page")
        assert table.keys == ids[50:]
        await pilot.press("enter")
        await wait(pilot, lambda: getattr(app.screen, "loaded", False) and app.screen is not screen, "the job detail")
        assert '"secret": "payload-50"' in app.screen.query_one("#job-payload").text


@pytest.mark.slow
def test_scale_plus_from_the_console_is_an_override_evalharness_supervisors_shows(
    procs: Processes, redis_url: str, make_app: MakeApp
) -> None:
    procs.start(
        "-m", "evalharness.daemon.master", "--import", "support.testjobs", "--queue", "t=1", "--log-level", "warning"
    )
    wait_until(lambda: live_workers(redis_url, "t") >= 1, deadline=30, what="the daemon's worker")

    async def steer() -> list[str]:
        from evalharness.core.connection import async_client

        client = async_client(redis_url)
        app = make_app(admin=Admin(client, "eh"))
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("3")
                view: SupervisorsView = app._views["supervisors"]
                deadline = asyncio.get_running_loop().time() + 20
                while not any(k.startswith("s:") for k in view.table.keys):
                    assert asyncio.get_running_loop().time() < deadline, "the master never showed"
                    await pilot.pause(0.05)
                while not view.table.cursor_key or not view.table.cursor_key.startswith("s:"):
                    await pilot.press("down")
                await pilot.press("plus")
                while not isinstance(app.screen, ConfirmDialog):
                    assert asyncio.get_running_loop().time() < deadline, "the scale was not confirmed first"
                    await pilot.pause(0.05)
                title = str(app.screen.query_one("#dialog-title").content)
                await pilot.press("y")
                while not app.results:
                    assert asyncio.get_running_loop().time() < deadline, "the scale never finished"
                    await pilot.pause(0.05)
                return [title] + [r.message for r in app.results] + toasts(app)
        finally:
            await client.aclose()

    title, *messages = asyncio.run(steer())
    assert title == "Scale t of t from 1 to 2?"
    assert messages[0].startswith("Scaled t t on ") and messages[0].endswith(" to 2 processes (override)")
    assert messages[0] in messages[1:]

    def shown() -> bool:
        out = procs.cli("supervisors")
        return out.returncode == 0 and "t=2" in out.stdout.split("override", 1)[-1]

    wait_until(shown, deadline=20, what="the override in `evalharness supervisors`")
    listed = json.loads(procs.cli("supervisors", "--json").stdout)
    assert listed[0]["supervisors"][0]["overrides"] == {"t": 2}
    wait_until(lambda: live_workers(redis_url, "t") == 2, deadline=30, what="a second worker")


async def test_jobs_a_batch_cap_holds_back_show_as_held_and_a_clear_counts_them(
    make_app: MakeApp, wait: Wait, aclient: Any
) -> None:
    # a batch that may run one job at a time: of its three ready jobs one could start, two are held
    queue = Queue(aclient, "eh")
    await Batches(aclient, "eh", queue).create(
        "capped", [JobRequest("noop", i) for i in range(3)], queue="judge", max_running=1
    )
    app = make_app(admin=Admin(aclient, "eh"))
    async with app.run_test(size=(160, 48)) as pilot:
        await show_snapshot(pilot, app, aclient, wait)
        view = await open_workload_on(pilot, app, "judge", wait)
        # Ready counts the job that can start; the line below the table the two held back
        assert view.table.get_cell("judge", "ready").plain == "1"
        pane = str(app.screen.query_one("#workload-queue", Static).content)
        assert pane.startswith("2 held by batch caps · p50")

        # Queue detail's header adds up to what its Ready tab lists
        await pilot.press("enter")
        await wait(pilot, lambda: isinstance(app.screen, QueueDetailScreen), "Queue detail")
        header = app.screen.query_one("#queue-header", Static)
        await wait(pilot, lambda: "held 2" in str(header.content), "the header")
        assert str(header.content).startswith("Queue judge · ready 1 · held 2 · delayed 0")
        note = app.screen.query_one("#queue-page-note", Static)
        await wait(pilot, lambda: str(note.content).endswith("of 3"), "the Ready tab's count")

        # clearing removes the held jobs too, and says so before it does
        await pilot.press("X")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the clear confirm")
        body = str(app.screen.query_one("#dialog-body").content)
        assert "Removes 3 ready jobs (2 of them held by their batch's max_running) of judge" in body
        await pilot.press(*"judge", "enter")
        await wait(pilot, lambda: bool(app.results), "the clear to finish")
        assert app.results[-1].removed == 3
        assert await aclient.zcard(QueueKeys("eh", "judge").ready) == 0
