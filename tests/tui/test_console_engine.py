"""The console against the real engine on a real Redis: what the confirm states and what the toast
says are the engine's own numbers, and what the engine then holds agrees with them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from evalharness.core.admin import Admin, FailedFilter
from evalharness.core.batches import Batches
from evalharness.core.queue import JobRequest, LeaseUpdate, Queue
from evalharness.tui.app import ConsoleApp
from evalharness.tui.views.dialogs import ConfirmDialog

P = "eh"
WORKER = "host-1:42:abc"

MakeApp = Callable[..., ConsoleApp]
Open = Callable[..., Awaitable[None]]
Wait = Callable[..., Awaitable[None]]


async def test_cancel_batch_toast_counts_equal_the_engines(
    aclient: Any, make_app: MakeApp, open_list: Open, wait: Wait
) -> None:
    queue = Queue(aclient, prefix=P)
    batches = Batches(aclient, P, queue)
    run = await batches.create("run-7", [JobRequest("judge", {"n": i}) for i in range(30)], queue="a", batch_id="run-7")
    running = (await queue.pop("a", 5, 30, WORKER)).jobs
    assert len(running) == 5
    app = make_app(admin=Admin(aclient, prefix=P))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        view = app._views["batches"]
        assert view.highlighted is not None and view.highlighted.id == run
        await pilot.press("c")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        assert isinstance(app.screen, ConfirmDialog)
        assert "Removes 25 queued jobs; 5 running will be told to stop" in app.screen.confirmation.body
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the engine's result")
        result = app.results[-1]
        assert result.ok and (result.removed, result.told_to_stop) == (25, 5)
        assert result.message in [n.message for n in app._notifications]
        assert "removed 25 queued jobs, 5 running told to stop" in result.message
        await wait(pilot, lambda: view.model.find(run) is None, "the batch to leave the active chip")
    # What the engine holds now agrees with the toast.
    assert (await queue.stats("a")).ready == 0
    reply = await queue.renew_leases("a", WORKER, [LeaseUpdate(j.id) for j in running], 30)
    assert sorted(reply.cancel) == sorted(j.id for j in running)
    info = await batches.info(run)
    assert info is not None and info.state == "cancelled"


async def test_retry_all_matching_confirms_the_filters_count(
    aclient: Any, make_app: MakeApp, open_list: Open, wait: Wait
) -> None:
    queue = Queue(aclient, prefix=P)
    await queue.dispatch_many([JobRequest("judge", {"i": i}, queue="a") for i in range(12)])
    popped = (await queue.pop("a", 12, 30, WORKER)).jobs
    for i, job in enumerate(popped):
        exc = "TimeoutError" if i % 3 == 0 else "ValueError"
        failure = {
            "kind": "timeout" if exc == "TimeoutError" else "exception",
            "message": f"{exc} in {job.id}",
            "exception_type": exc,
            "job": job.name,
            "batch": None,
            "tags": [],
        }
        assert await queue.fail("a", WORKER, job.id, failure)
    admin = Admin(aclient, prefix=P)
    flt = FailedFilter(queue="a", exception="TimeoutError")
    count = await admin.failed_count(flt)
    assert count == 4
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "5")
        view = app._views["failed"]
        assert view.model.total == 12
        await pilot.press("slash", *"queue:a exc:TimeoutError", "enter")
        await wait(
            pilot,
            lambda: view.model.filter == flt and view.model.page is not None and view.model.total == count,
            "the filtered page",
        )
        await pilot.press("R")
        await wait(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm")
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.confirmation.title == f"Retry all matching ({count})?"
        await pilot.press("y")
        await wait(pilot, lambda: bool(app.results), "the engine's result")
        result = app.results[-1]
        assert result.ok and result.retried == count
        assert result.message in [n.message for n in app._notifications]
        await wait(pilot, lambda: view.model.page is not None and view.model.total == 0, "the emptied page")
    assert await admin.failed_count(flt) == 0
    assert await admin.failed_count(FailedFilter(queue="a")) == 12 - count
    assert (await queue.stats("a")).ready == count


async def test_an_active_batch_updates_every_second_a_finished_page_is_not_read_each_second(
    aclient: Any, make_app: MakeApp, open_list: Open, wait: Wait, monkeypatch: Any
) -> None:
    # only the per-second tick can read the page again here: the every-5-s read is pushed far out
    monkeypatch.setattr("evalharness.tui.app.REFETCH_INTERVAL", 3600.0)
    queue = Queue(aclient, prefix=P)
    batches = Batches(aclient, P, queue)
    run = await batches.create("run-8", [JobRequest("judge", {"n": i}) for i in range(6)], queue="a", batch_id="run-8")
    running = (await queue.pop("a", 6, 30, WORKER)).jobs
    app = make_app(admin=Admin(aclient, prefix=P))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        view = app._views["batches"]
        await wait(pilot, lambda: view.model.find(run) is not None, "the running batch")
        assert view.model.find(run).done == 0
        await queue.ack("a", WORKER, [(j.id, "") for j in running[:4]])
        await wait(pilot, lambda: view.model.find(run).done == 4, "the batch's progress read again")
        await queue.ack("a", WORKER, [(j.id, "") for j in running[4:]])
        await wait(pilot, lambda: view.model.find(run) is None, "the finished batch to leave the active chip")
        # a page of finished batches only is not read every second
        await pilot.press("f")
        await wait(pilot, lambda: view.model.find(run) is not None, "the finished batch under 'all'")
        reads = []
        monkeypatch.setattr(view, "fetch", lambda: reads.append(1))
        view.tick()
        assert reads == []
