"""Graphs, Events and the frame, driven with keys over the fake engine interface: the graph
window steps, the events table follows its tail until the cursor moves up, freezing holds every
list still, sort and filter work on any list, and the palette jumps to a batch by id prefix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from fake_admin import NOW, FakeAdmin, batches
from textual.widgets import Static

from evalharness.tui.app import ConnectionChecked, ConsoleApp, TelemetryReceived
from evalharness.tui.state import Snapshot
from evalharness.tui.views.batches import BatchDetailScreen
from evalharness.tui.views.common import KeyedTable, sort_value
from evalharness.tui.views.dialogs import FilterDialog
from evalharness.tui.views.events import CAP, EventsModel, event_columns
from evalharness.tui.views.graphs import ALL, METRICS, WINDOWS, collecting_text, graph_series

MakeApp = Callable[..., ConsoleApp]
Wait = Callable[..., Awaitable[None]]


def add_event(admin: FakeAdmin, i: int, kind: str = "job_failed") -> None:
    at = NOW + i
    admin.event_rows.append(
        {
            "event_id": f"{int(at * 1000)}-{i}",
            "at": f"{at:.3f}",
            "kind": kind,
            "queue": "judge",
            "message": f"new event {i}",
        }
    )


# --- pure parts -----------------------------------------------------------------------------------


def test_graph_series_reads_the_window_and_adds_the_live_point(busy: dict[str, Any]) -> None:
    from fake_admin import day_history

    history = day_history()
    snapshot = Snapshot.from_dict(busy)
    one_hour = graph_series(history, snapshot, METRICS[0], "judge", WINDOWS[1], NOW)
    assert len(one_hour.xs) == 61 and one_hour.xs[0] == -60 and one_hour.xs[-1] == 0
    judge = next(q for q in snapshot.queues if q.name == "judge")
    assert one_hour.ys[1][-1] == judge.failed_per_minute  # the live point is the snapshot's
    assert one_hour.ys[0][-2] == history[-1]["queues"]["judge"]["completed"]
    day = graph_series(history, None, METRICS[0], ALL, WINDOWS[3], NOW)
    assert len(day.xs) == 1440 and day.points == 1440
    assert day.ys[0][-1] == sum(q["completed"] for q in history[-1]["queues"].values())


def test_a_window_with_too_little_data_says_it_is_collecting() -> None:
    from fake_admin import day_history

    series = graph_series(day_history(1), None, METRICS[1], ALL, WINDOWS[0], NOW)
    assert collecting_text(series) == "collecting… (1 of 15 points)"
    series = graph_series([], None, METRICS[1], ALL, WINDOWS[1], NOW)
    assert collecting_text(series) == "collecting… (0 of 60 points)"


def test_events_are_capped_at_a_thousand_oldest_first() -> None:
    model = EventsModel()
    model.add([{"event_id": f"{i}-0", "id": "job-1", "kind": "job_failed", "at": str(i)} for i in range(1, 1_200)])
    assert len(model.events) == CAP
    assert model.events[0].id == "200-0" and model.last_id == "1199-0"
    assert model.add([{"event_id": "1199-0", "kind": "job_failed"}]) == 0  # read twice, kept once
    assert model.events[-1].job == "job-1"  # the event's own id field is the job's


def test_cells_sort_by_value() -> None:
    texts = ["3m 05s", "14s", "—", "1h 02m", "2.1k", "950", "1,200"]
    assert sorted(texts[:4], key=sort_value) == ["—", "14s", "3m 05s", "1h 02m"]
    assert sorted(texts[4:], key=sort_value) == ["950", "1,200", "2.1k"]


# --- Graphs --------------------------------------------------------------------------------------


async def test_graph_keys_step_the_window_metric_and_queue(make_app: MakeApp, wait: Wait, busy: dict[str, Any]) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        app.post_message(TelemetryReceived.from_dict(busy))
        await pilot.press("7")
        view = app._views["graphs"]
        await wait(pilot, lambda: view.model.fetched, "the history")
        panel = view.panels[0]
        title = lambda: panel.drawn[0] if panel.drawn else ""  # noqa: E731
        await wait(pilot, lambda: title().endswith("· all queues · 1h"), "the 1h plot")
        assert ("history", 1440) in admin.calls
        await pilot.press("right_square_bracket")
        await wait(pilot, lambda: title().endswith("· 6h"), "the 6h window")
        await pilot.press("right_square_bracket", "right_square_bracket")  # stops at the longest
        await wait(pilot, lambda: title().endswith("· 24h"), "the 24h window")
        assert len(panel.drawn[1]) == 1441
        await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket", "left_square_bracket")
        await wait(pilot, lambda: title().endswith("· 15m"), "the 15m window")
        await pilot.press("m")
        await wait(pilot, lambda: title().startswith("Oldest wait vs est. clear"), "the next metric")
        await pilot.press("q")
        await wait(pilot, lambda: " · default · " in title(), "the first queue by name")
        assert app.is_running  # q on Graphs cycles the queue, it does not quit


async def test_graphs_grid_at_160_columns(make_app: MakeApp, wait: Wait, busy: dict[str, Any]) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(160, 48)) as pilot:
        app.post_message(TelemetryReceived.from_dict(busy))
        await pilot.press("7")
        view = app._views["graphs"]
        await wait(pilot, lambda: all(p.drawn for p in view.panels), "four plots")
        assert [p.drawn[0].split(" · ")[0] for p in view.panels] == [m.title for m in METRICS[:4]]


# --- Events --------------------------------------------------------------------------------------


async def test_events_follow_the_tail_until_the_cursor_moves_up(make_app: MakeApp, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        view = app._views["events"]
        await wait(pilot, lambda: view.table.row_count == 40, "the events")
        table = view.table
        assert table.cursor_row == 39  # on the newest, at the bottom
        add_event(admin, 1)
        view.fetch()
        await wait(pilot, lambda: table.row_count == 41, "the new event")
        assert table.cursor_row == 40 and view.unseen == 0  # followed
        await pilot.press("up", "up")
        key = table.cursor_key
        add_event(admin, 2)
        add_event(admin, 3)
        view.fetch()
        await wait(pilot, lambda: table.row_count == 43, "two more events")
        assert table.cursor_key == key  # stayed where the reader is
        note = str(view.query_one("#events-note").content)
        assert "▼ 2 new" in note
        await pilot.press("end")
        assert table.cursor_row == 42 and view.unseen == 0


async def test_space_freezes_the_events_and_counts_what_is_new(make_app: MakeApp, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        view = app._views["events"]
        table = view.table
        await wait(pilot, lambda: table.row_count == 40, "the events")
        await pilot.press("space")
        assert app.frozen
        for i in range(5):
            add_event(admin, 10 + i)
        view.fetch()
        await wait(pilot, lambda: table.held_new == 5, "the held events")
        assert table.row_count == 40 and table.cursor_row == 39
        await wait(pilot, lambda: "❄ frozen · 5 new" in str(app._frozen_mark.content), "the top bar's mark")
        await pilot.press("space")
        await wait(pilot, lambda: table.row_count == 45, "the held events drawn")
        assert not app.frozen and "❄" not in str(app._frozen_mark.content)


async def test_f_cycles_the_kind_filter(make_app: MakeApp, wait: Wait) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        view = app._views["events"]
        await wait(pilot, lambda: view.table.row_count == 40, "the events")
        await pilot.press("f")
        assert view.model.kind_name == "failures"
        kinds = {view.model.find(k).kind for k in view.table.keys}
        assert kinds == {"job_failed", "job_timed_out"}


async def test_enter_on_a_batch_event_opens_the_batch(make_app: MakeApp, wait: Wait) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        view = app._views["events"]
        await wait(pilot, lambda: view.table.row_count == 40, "the events")
        target = next(i for i, k in enumerate(view.table.keys) if view.model.find(k).kind == "batch_finished")
        view.table.move_cursor(row=target)
        await pilot.press("enter")
        await wait(pilot, lambda: isinstance(app.screen, BatchDetailScreen), "the batch detail")
        assert app.screen.row.name == "run-41"


# --- the frame -----------------------------------------------------------------------------------


async def test_freeze_holds_a_list_and_keeps_the_cursor(make_app: MakeApp, open_list: Any, wait: Wait) -> None:
    admin = FakeAdmin()
    app = make_app(admin=admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "4")
        view = app._views["batches"]
        await pilot.press("down")
        key = view.table.cursor_key
        await pilot.press("space")
        admin.batch_rows.insert(0, replace(batches()[0], id="bnew", name="run-43"))
        view.fetch()
        await wait(pilot, lambda: view.table.held_new == 1, "the held page")
        assert "bnew" not in view.table.keys and view.table.cursor_key == key
        await pilot.press("space")
        await wait(pilot, lambda: "bnew" in view.table.keys, "the new batch after thawing")
        assert view.table.cursor_key == key


async def test_s_sorts_any_list_and_keeps_the_highlighted_row(make_app: MakeApp, open_list: Any) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_list(pilot, "6")
        table = app._views["running"].table
        await pilot.press("down", "down")
        key = table.cursor_key
        await pilot.press("s")  # by the first column, Job
        assert table.sort_by == "job"
        labels = [table.get_row(k)[0].plain for k in table.keys]
        assert labels == sorted(labels, key=sort_value)
        assert table.cursor_key == key
        await pilot.press("S")
        labels = [table.get_row(k)[0].plain for k in table.keys]
        assert labels == sorted(labels, key=sort_value, reverse=True)
        assert table.cursor_key == key
        assert "▼" in str(table.columns[table.ordered_columns[0].key].label)


async def test_slash_filters_a_list_without_its_own_filter(make_app: MakeApp, wait: Wait) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        table = app._views["events"].table
        await wait(pilot, lambda: table.row_count == 40, "the events")
        await pilot.press("slash")
        # a table's own filter is plain text: its prompt offers no facets it would not apply
        await wait(pilot, lambda: isinstance(app.screen, FilterDialog), "the filter prompt")
        hint = str(app.screen.query_one("#dialog-body", Static).render())
        assert hint.startswith("text any column of a row shows") and "exc:" not in hint
        await pilot.press(*"long_wait", "enter")
        await wait(pilot, lambda: table.row_count == 5, "the filtered rows")
        assert isinstance(table, KeyedTable) and table.filter_text == "long_wait"


async def test_palette_goes_to_a_batch_by_id_prefix(make_app: MakeApp, wait: Wait) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        app.post_message(ConnectionChecked.connected(NOW))
        await pilot.press("ctrl+p")
        await pilot.press(*"b04")
        from textual.command import CommandList

        await wait(
            pilot,
            lambda: any("run-41" in str(o.prompt) for o in app.screen.query_one(CommandList).options),
            "the batch in the palette",
        )
        await pilot.press("down", "enter")
        await wait(pilot, lambda: isinstance(app.screen, BatchDetailScreen), "the batch detail")
        assert app.screen.row.id.startswith("b04")


async def test_palette_offers_the_screens_actions_and_theme(make_app: MakeApp, wait: Wait) -> None:
    app = make_app(admin=FakeAdmin())
    async with app.run_test(size=(80, 24)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Show Graphs (7)" in titles and "Show Events (8)" in titles
        assert any(t.startswith("Theme") or "theme" in t.lower() for t in titles)
        await pilot.press("7")
        await wait(pilot, lambda: app.focused is app._views["graphs"], "the graphs focused")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Graphs: Metric (m)" in titles and "Freeze (space)" in titles, titles


def test_at_80_columns_the_events_message_gets_what_the_others_leave() -> None:
    narrow = {c.key: c.width or 0 for c in event_columns(False, 78)}
    assert list(narrow) == ["time", "kind", "queue", "subject", "message"]
    assert narrow["message"] >= 27 and narrow["message"] > max(w for k, w in narrow.items() if k != "message")
    # the whole table fits beside the scrollbar: no sideways scrolling
    assert sum(w + 2 for w in narrow.values()) + 2 <= 78
    wide = {c.key: c.width or 0 for c in event_columns(True, 156)}
    assert wide["kind"] == 17 and wide["subject"] == 13  # at 160 columns nothing is cut


async def test_batch_events_the_engine_writes_read_as_sentences(aclient: Any) -> None:
    """The engine writes no message for a batch created or finished: the row says what their fields do."""
    from evalharness.core.admin import Admin
    from evalharness.core.batches import Batches
    from evalharness.core.queue import JobRequest, Queue
    from evalharness.tui.views.events import Event

    queue = Queue(aclient, prefix="ev")
    await Batches(aclient, "ev", queue).create(
        "nightly", [JobRequest("judge", {"n": n}) for n in range(2)], queue="q", allow_failures=True
    )
    jobs = (await queue.pop("q", 2, 30, "w")).jobs
    await queue.ack("q", "w", [(jobs[0].id, "")])
    failure = {"kind": "exception", "message": "ValueError: x", "exception_type": "ValueError", "batch": jobs[1].batch}
    assert await queue.fail("q", "w", jobs[1].id, failure)
    raw = await Admin(aclient, "ev").events()
    rows = [Event.from_dict(e) for e in raw]
    messages = {e.kind: e.cells()["message"].text for e in rows if e.kind.startswith("batch_")}
    assert messages == {"batch_created": "2 jobs", "batch_finished": "finished_with_failures · 2 jobs, 1 failed"}
    from evalharness.tui.overview import event_line

    lines = [event_line(e, 120).plain for e in raw if e["kind"] == "batch_finished"]
    assert lines and lines[0].endswith("nightly: finished_with_failures · 2 jobs, 1 failed")  # the Overview's tail
