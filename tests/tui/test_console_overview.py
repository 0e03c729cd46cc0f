"""The Overview driven with run_test() and recorded telemetry: numbers change in place, the cursor
stays on its queue, the status and the formats read as specified, and queue names are data."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import ContentSwitcher, DataTable, Static

from evalharness.tui.app import ConnectionChecked, ConsoleApp, TelemetryReceived, TelemetryUnreadable

NOW = 1_700_000_000.0

MakeApp = Callable[..., ConsoleApp]
Send = Callable[..., Awaitable[None]]
Wait = Callable[..., Awaitable[None]]


def table_of(app: ConsoleApp) -> DataTable[Text]:
    return app.query_one("#queues", DataTable)


def cell(app: ConsoleApp, queue: str, column: str) -> str:
    return str(table_of(app).get_cell(queue, column).plain)


def rows(app: ConsoleApp) -> list[str]:
    return [str(row.key.value) for row in table_of(app).ordered_rows]


def cursor_queue(app: ConsoleApp) -> str:
    table = table_of(app)
    return str(table.ordered_rows[table.cursor_row].key.value)


def tile(app: ConsoleApp, key: str) -> Static:
    return app.query_one(f"#value-{key}", Static)


def text(widget: Static) -> str:
    return str(widget.content)


def telemetry(data: dict[str, Any]) -> TelemetryReceived:
    return TelemetryReceived.from_dict(data)


async def test_a_second_snapshot_updates_the_numbers_in_place(
    make_app: MakeApp, send: Send, example: dict[str, Any]
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry(example))
        assert rows(app) == ["evals", "default"]
        assert (cell(app, "evals", "ready"), cell(app, "evals", "jpm"), text(tile(app, "jpm"))) == ("240", "380", "412")
        await pilot.press("down")
        assert cursor_queue(app) == "default"
        untouched = table_of(app).get_cell("evals", "procs")

        later = copy.deepcopy(example)
        later["overview"]["jobs_per_minute"] = 433.0
        later["overview"]["jobs_past_hour"] = 18301
        later["queues"][0].update(ready=1250, reserved=41, oldest_wait=75.0)
        later["queues"][1].update(jobs_per_minute=40.5)
        await send(pilot, telemetry(later))

        assert rows(app) == ["evals", "default"]
        assert table_of(app).row_count == 2
        assert cursor_queue(app) == "default"
        assert (cell(app, "evals", "ready"), cell(app, "evals", "running"), cell(app, "evals", "oldest")) == (
            "1,250",
            "41",
            "1m 15s",
        )
        assert cell(app, "default", "jpm") == "40"
        assert (text(tile(app, "jpm")), text(tile(app, "backlog")), text(tile(app, "inflight"))) == (
            "433",
            "1,250",
            "41",
        )
        # Cells whose text did not change are not rewritten.
        assert table_of(app).get_cell("evals", "procs") is untouched


async def test_queues_that_come_go_or_move_keep_the_cursor_on_its_queue(
    make_app: MakeApp, send: Send, busy: dict[str, Any]
) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry(busy))
        # longest wait first: sut-anthropic 1h 03m, judge 3m 05s, sut-openai 1m 04s, evals 12.4s, …
        assert rows(app)[:4] == ["sut-anthropic", "judge", "sut-openai-gpt-4o-mini", "evals"]
        await pilot.press("down", "down", "down")
        assert cursor_queue(app) == "evals"

        later = copy.deepcopy(busy)
        later["queues"] = [q for q in later["queues"] if q["name"] != "judge"]
        later["queues"].append({**later["queues"][0], "name": "judge-v2"})
        await send(pilot, telemetry(later))
        assert "judge" not in rows(app) and "judge-v2" in rows(app)
        assert cursor_queue(app) == "evals"

        # evals' wait grows past every other: it moves to the top, the cursor with it
        moved = copy.deepcopy(later)
        next(q for q in moved["queues"] if q["name"] == "evals")["oldest_wait"] = 9_000.0
        await send(pilot, telemetry(moved))
        assert rows(app)[0] == "evals"
        assert cursor_queue(app) == "evals"


async def test_at_80x24_the_five_longest_waits_show(make_app: MakeApp, send: Send, busy: dict[str, Any]) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry(busy))
        assert rows(app) == ["sut-anthropic", "judge", "sut-openai-gpt-4o-mini", "evals", "retrieval-rerank"]
        assert text(app.query_one("#workload-title", Static)) == "Longest waits · 5 of 8 queues"
        assert table_of(app).size.height == 6  # the header and the five rows, all visible


@pytest.mark.parametrize(("status", "level"), [("paused", "-warning"), ("inactive", "-error"), ("running", "-ok")])
async def test_the_status_shows_paused_and_inactive(
    make_app: MakeApp, send: Send, example: dict[str, Any], status: str, level: str
) -> None:
    example["overview"]["status"] = status
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry(example))
        top = app.query_one("#status", Static)
        assert text(top) == f"● {status} · redis ok · 0.0s"
        assert top.has_class(level)


async def test_values_read_as_specified(make_app: MakeApp, send: Send, busy: dict[str, Any]) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry(busy))
        keys = ("jpm", "inflight", "backlog", "wait", "failed", "timeouts", "procs")
        assert [text(tile(app, k)) for k in keys] == [
            "3,434",
            "197",
            "17,964",
            "1h 03m · sut-anthropic",
            "214",
            "17",
            "47/59",
        ]
        # sut-anthropic has waited past its 10-minute threshold
        assert tile(app, "wait").has_class("-error")
        assert [cell(app, "judge", c) for c in ("ready", "running", "oldest", "clear", "procs", "jpm")] == [
            "12,480",
            "64",
            "3m 05s",
            "12m 22s",
            "16",
            "1,010",
        ]
        assert (cell(app, "sut-anthropic", "oldest"), cell(app, "evals", "oldest"), cell(app, "reports", "jpm")) == (
            "1h 03m",
            "12.4s",
            "3.5",
        )
        # Nulls and an empty backlog read as a dash.
        assert (cell(app, "embeddings", "oldest"), cell(app, "embeddings", "clear")) == ("—", "—")
        assert text(app.query_one("#workload-title", Static)) == "Workload · 8 queues"


async def test_a_wide_terminal_adds_columns_and_keeps_the_cursor(
    make_app: MakeApp, send: Send, busy: dict[str, Any]
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry(busy))
        narrow = [str(k.value) for k in table_of(app).columns]
        assert narrow == ["queue", "ready", "running", "delayed", "oldest", "clear", "procs", "jpm"]
        await pilot.press("down", "down")
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        wide = [str(k.value) for k in table_of(app).columns]
        assert wide == ["queue", "ready", "running", "delayed", "oldest", "clear", "procs", "jpm", "fpm", "p95"]
        assert cursor_queue(app) == "sut-openai-gpt-4o-mini"
        assert (cell(app, "reports", "delayed"), cell(app, "judge", "p95"), cell(app, "default", "p95")) == (
            "1,200",
            "3.8s",
            "—",
        )


async def test_queue_names_are_shown_as_data(make_app: MakeApp, send: Send, example: dict[str, Any]) -> None:
    name = "[bold red]evals[/]"
    example["queues"][0]["name"] = name
    example["overview"]["max_wait"]["queue"] = name
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry(example))
        assert rows(app) == [name, "default"]
        assert table_of(app).get_cell(name, "queue").plain == name
        assert text(tile(app, "wait")) == f"12.4s · {name}"


async def test_an_unreadable_snapshot_keeps_the_last_numbers_and_says_why(
    make_app: MakeApp, send: Send, wait: Wait, example: dict[str, Any]
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), telemetry(example))
        app.post_message(TelemetryUnreadable("telemetry schema 'evalharness.telemetry.v2' is not ..."))
        note = app.query_one("#workload-note", Static)
        await wait(pilot, lambda: "v2" in text(note), "the problem to show")
        assert note.has_class("-error")
        assert cell(app, "evals", "ready") == "240"


async def test_disconnected_numbers_stay_dimmed_and_marked_stale(
    make_app: MakeApp, send: Send, example: dict[str, Any]
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW - 14), telemetry(example))
        await send(pilot, ConnectionChecked.failed("ConnectionError: refused", NOW, 2.0))
        assert app.query_one("#overview").has_class("-stale")
        assert text(app.query_one("#workload-note", Static)) == "stale 14s"
        assert cell(app, "evals", "ready") == "240"
        await send(pilot, ConnectionChecked.connected(NOW + 2))
        assert not app.query_one("#overview").has_class("-stale")
        assert text(app.query_one("#workload-note", Static)) == ""


async def test_number_keys_switch_modes_and_only_the_overview_is_drawn(
    make_app: MakeApp, send: Send, wait: Wait, example: dict[str, Any]
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        switcher = app.query_one("#body", ContentSwitcher)
        assert switcher.current == "overview"
        await pilot.press("3")
        assert switcher.current == "supervisors"
        modes = app.query_one("#modes-short", Static).content
        assert modes.plain.startswith("1Ovr 2Wrk 3Sup")

        # Telemetry arriving meanwhile is kept, and drawn on the way back.
        first = telemetry(example)
        app.post_message(first)
        await wait(pilot, lambda: app.state.snapshot is first.snapshot, "the snapshot to be taken")
        assert app.drawn_snapshot is None
        await pilot.press("1")
        assert switcher.current == "overview"
        assert app.drawn_snapshot is first.snapshot
        assert cell(app, "evals", "ready") == "240"


async def test_snapshots_faster_than_the_redraw_end_with_the_newest_on_screen(
    make_app: MakeApp, send: Send, example: dict[str, Any]
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        messages = []
        for ready in range(100, 110):
            data = copy.deepcopy(example)
            data["queues"][0]["ready"] = ready
            messages.append(telemetry(data))
        await send(pilot, *messages)
        assert cell(app, "evals", "ready") == "109"
