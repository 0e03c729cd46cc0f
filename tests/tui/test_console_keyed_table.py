"""KeyedTable writes a changed cell in place and repaints only its row, through DataTable's private
caches as the pinned Textual has them: these tests fail when Textual changes them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import textual
from textual.app import App, ComposeResult
from textual.widgets.data_table import ColumnKey, RowKey

from evalharness.tui.app import ConnectionChecked, ConsoleApp, TelemetryReceived
from evalharness.tui.views.common import Cell, Col, KeyedTable, Row

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0
COLUMNS = (Col("name", "Name", 10), Col("count", "Count", 8, right=True), Col("state", "State", 10))


def rows(n: int, changed: dict[str, str] | None = None) -> list[Row]:
    changed = changed or {}
    return [
        (
            f"r{i}",
            {
                "name": Cell(f"row-{i}"),
                "count": Cell(changed.get(f"r{i}", str(i)), right=True),
                "state": Cell("running", "bold green"),
            },
        )
        for i in range(n)
    ]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(id="t")

    @property
    def table(self) -> KeyedTable:
        return self.query_one(KeyedTable)


def screen_text(app: App[None]) -> str:
    """The text on screen (what the terminal shows, not what the table holds)."""
    svg = app.export_screenshot()
    return " ".join(re.findall(r">([^<>]*)</text>", svg)).replace("&#160;", " ")


def test_textual_is_pinned_to_the_version_whose_internals_keyed_table_reads() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if re.match(r"textual\s*==", d)]
    assert pins == [f"textual=={textual.__version__}"], "KeyedTable reads DataTable internals: pin Textual exactly"


async def test_the_caches_have_the_keys_keyed_table_drops_entries_by() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        app.table.show(COLUMNS, rows(30))
        await pilot.pause()
        table = app.table
        assert all(isinstance(k, RowKey) for k in table._data)
        assert all(isinstance(c, ColumnKey) for row in table._data.values() for c in row)
        assert table._y_offsets[0] == (RowKey("r0"), 0) and len(table._y_offsets) == 30
        for caches, shape in (
            ((table._cell_render_cache,), lambda k: isinstance(k[0], RowKey) and isinstance(k[1], ColumnKey)),
            ((table._row_render_cache,), lambda k: isinstance(k[0], RowKey)),
            ((table._row_renderable_cache,), lambda k: len(k) == 2 and k[0] == table._update_count),
            ((table._line_cache,), lambda k: isinstance(k[0], int)),
        ):
            for cache in caches:
                assert len(cache) > 0
                assert all(isinstance(k, tuple) and shape(k) for k in cache.keys()), cache


async def test_a_changed_cell_is_drawn_and_only_its_row_is_rendered_again() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.table
        table.show(COLUMNS, rows(30))
        await pilot.pause()
        count = table._update_count
        before = {k: table._cell_render_cache.get(k) for k in list(table._cell_render_cache.keys())}
        assert "4242" not in screen_text(app)

        table.show(COLUMNS, rows(30, {"r3": "4242"}))
        await pilot.pause()

        assert "4242" in screen_text(app)
        assert table.get_cell("r3", "count").plain == "4242"
        assert table._update_count == count  # every other row's rendering is still valid
        after = {k: table._cell_render_cache.get(k) for k in list(table._cell_render_cache.keys())}
        others = {k: v for k, v in before.items() if k[0] != RowKey("r3")}
        assert others and all(after.get(k) is v for k, v in others.items())
        redrawn = {k[1] for k in after if k[0] == RowKey("r3") and after[k] is not before.get(k)}
        assert redrawn == {ColumnKey("count")}
        assert table.updates == 30 * len(COLUMNS) + 1


async def test_a_cell_changed_out_of_view_shows_its_new_value_when_scrolled_to() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.table
        table.focus()
        table.show(COLUMNS, rows(40))
        await pilot.pause()
        table.move_cursor(row=39, animate=False)
        await pilot.pause()
        assert " 39" in screen_text(app)
        table.move_cursor(row=0, animate=False)
        await pilot.pause()
        table.show(COLUMNS, rows(40, {"r39": "9999", "r0": "7777"}))
        await pilot.pause()
        assert "7777" in screen_text(app) and "9999" not in screen_text(app)
        table.move_cursor(row=39, animate=False)
        await pilot.pause()
        assert "9999" in screen_text(app) and table.cursor_key == "r39"


async def test_oldest_on_workload_ticks_on_screen(busy: dict[str, Any], send: Any, wait: Any) -> None:
    """A view's changed cell, written in place, reaches the screen: Oldest of ``evals`` (12.4s in
    the snapshot) reads 19.4s seven seconds later, and only that queue's row was rendered again."""
    now = [NOW]
    app = ConsoleApp("redis://127.0.0.1:6379/0", "eh", feed=False, clock=lambda: now[0])
    app.animation_level = "none"
    async with app.run_test(size=(160, 48)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), TelemetryReceived.from_dict(busy))
        await pilot.press("2")
        await wait(pilot, lambda: app.mode_shown == "workload" and app._views["workload"].table.row_count, "Workload")
        view = app._views["workload"]
        await pilot.pause()
        assert "12.4s" in screen_text(app) and "19.4s" not in screen_text(app)
        count = view.table._update_count
        now[0] = NOW + 7.0
        view.draw()
        await pilot.pause()
        assert "19.4s" in screen_text(app)
        assert view.table.get_cell("evals", "oldest").plain == "19.4s"
        assert view.table._update_count == count
