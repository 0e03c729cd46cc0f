"""The Overview screen's body: a strip of totals, the recorded history as sparklines, the current
workload per queue, the connection.

It draws a :class:`ConsoleState` and nothing else, touching only what changed since the last
draw, so a snapshot a second neither flickers nor moves the table's cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowKey

from .state import (
    ConsoleState,
    HistoryEntry,
    HistoryLine,
    Level,
    QueueStats,
    Snapshot,
    backlog_history_line,
    jobs_history_line,
    overview_tiles,
    queue_cells,
    workload_columns,
)

History = tuple[HistoryEntry, ...] | None

NARROW_QUEUE_WIDTH = 18
"""Queue names longer than this are cut (with "…") below the wide breakpoint; the numbers come first."""
WIDE_QUEUE_WIDTH = 40


def two_columns(rows: list[tuple[str, str]], *, label_width: int | None = None) -> Table:
    """Bold labels beside their values; a long value wraps within its own column.

    Values are data and are never parsed as markup; a word too long for the column (a socket
    path, a URL) is folded rather than cut off.
    """
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, min_width=label_width)
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(Text(label), Text(value))
    return table


def _set_level(widget: Static, level: Level | None) -> None:
    for each in Level:
        widget.set_class(level is each, f"-{each.value}")


class HistorySpark(Widget):
    """One line of history: a title, a sparkline fitted to the widget's width, its min and max."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"history-spark--title", "history-spark--spark", "history-spark--range"}

    def __init__(self, line_of: Callable[[History, int], HistoryLine], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._line_of = line_of
        self._history: History = None

    @property
    def line(self) -> HistoryLine:
        """The line as drawn at the widget's current width."""
        return self._line_of(self._history, self.content_size.width or 80)

    def show(self, history: History) -> None:
        if history is not self._history:
            self._history = history
            self.refresh()

    def render(self) -> Text:
        line = self.line
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(line.title, style=self.get_component_rich_style("history-spark--title"))
        if line.spark:
            text.append("  ")
            text.append(line.spark, style=self.get_component_rich_style("history-spark--spark"))
        text.append("  ")
        text.append(line.range, style=self.get_component_rich_style("history-spark--range"))
        return text


class OverviewView(Vertical):
    """Totals, the workload table and the connection; call :meth:`draw` to bring them up to date."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._wide: bool | None = None
        self._shown_cells: dict[str, dict[str, str]] = {}
        self._shown_tiles: dict[str, tuple[str, Level | None]] = {}
        self._shown_text: dict[str, object] = {}
        self._queue_width = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="strip"):
            for tile in overview_tiles(None):
                with Vertical(classes="tile", id=f"tile-{tile.key}"):
                    yield Static(tile.label, classes="tile-label", markup=False)
                    yield Static(tile.value, classes="tile-value", id=f"value-{tile.key}", markup=False)
        with Vertical(id="history"):
            yield HistorySpark(jobs_history_line, id="history-jobs")
            yield HistorySpark(backlog_history_line, id="history-backlog")
        with Horizontal(id="workload-bar"):
            yield Static("Workload", id="workload-title", markup=False)
            yield Static("", id="workload-note", markup=False)
        yield DataTable(id="queues", cursor_type="row", cell_padding=1)
        with Vertical(id="connection", classes="panel") as connection:
            connection.border_title = "Connection"
            yield Static(id="conn-details")
            yield Static(id="conn-status")

    # --- drawing -------------------------------------------------------------------------------

    def draw(self, state: ConsoleState, now: float, *, wide: bool) -> None:
        """Bring every part up to date with ``state``; the caller batches the screen update."""
        stale = state.connected is False and state.snapshot is not None
        self.set_class(stale, "-stale")
        self._draw_tiles(state.snapshot)
        for spark in self.query(HistorySpark):
            spark.show(state.history)
        self._draw_table(state.snapshot, wide)
        self.draw_ages(state, now)

    def draw_ages(self, state: ConsoleState, now: float) -> None:
        """The parts that change with time alone: the table's note and the connection's status."""
        self._draw_note(state, now)
        self._draw_connection(state, now)

    def _draw_note(self, state: ConsoleState, now: float) -> None:
        """The title line of the table: the queue count and, when they apply, staleness or a problem."""
        snapshot = state.snapshot
        count = len(snapshot.queues) if snapshot is not None else 0
        title = "Workload" if snapshot is None else f"Workload · {count} queue{'s' if count != 1 else ''}"
        self._update_text("#workload-title", title)
        note, level = state.workload_note(now)
        note_widget = self._update_text("#workload-note", note)
        _set_level(note_widget, level)

    def _update_text(self, selector: str, text: str) -> Static:
        widget = self.query_one(selector, Static)
        if self._shown_text.get(selector) != text:
            widget.update(text)
            self._shown_text[selector] = text
        return widget

    def _draw_tiles(self, snapshot: Snapshot | None) -> None:
        for tile in overview_tiles(snapshot):
            shown = (tile.value, tile.level)
            if self._shown_tiles.get(tile.key) == shown:
                continue
            value = self.query_one(f"#value-{tile.key}", Static)
            value.update(tile.value, layout=False)
            _set_level(value, tile.level)
            self._shown_tiles[tile.key] = shown

    def _draw_connection(self, state: ConsoleState, now: float) -> None:
        details, status_rows = state.details(), state.status_rows(now)
        key = (tuple(details), tuple(status_rows))
        if self._shown_text.get("#connection") != key:
            # Both parts share one label width so their values line up as one list.
            width = max(len(label) for label, _ in details + status_rows)
            self.query_one("#conn-details", Static).update(two_columns(details, label_width=width))
            self.query_one("#conn-status", Static).update(two_columns(status_rows, label_width=width))
            self._shown_text["#connection"] = key
        _set_level(self.query_one("#conn-status", Static), state.level)
        self.query_one("#connection").set_class(state.level is Level.ERROR, "-stale")

    def _draw_table(self, snapshot: Snapshot | None, wide: bool) -> None:
        table = self.query_one("#queues", DataTable)
        queues = snapshot.queues if snapshot is not None else ()
        # The cursor belongs to a queue, not to a line: it follows its queue through every change.
        cursor = self._cursor_key(table)
        queue_width = min(
            WIDE_QUEUE_WIDTH if wide else NARROW_QUEUE_WIDTH,
            max([5, self._queue_width, *(len(q.name) for q in queues)]),
        )
        if wide != self._wide or queue_width != self._queue_width:
            self._rebuild(table, wide, queue_width)
        names = [q.name for q in queues]
        for name in [n for n in self._shown_cells if n not in set(names)]:
            table.remove_row(name)
            del self._shown_cells[name]
        for queue in queues:
            self._draw_row(table, queue, wide)
        if [row.key.value for row in table.ordered_rows] != names:
            position = {name: i for i, name in enumerate(names)}
            table.sort("queue", key=lambda cell: position.get(cell.plain, len(position)))
        if cursor in self._shown_cells and self._cursor_key(table) != cursor:
            table.move_cursor(row=table.get_row_index(cursor), animate=False)

    def _rebuild(self, table: DataTable[Text], wide: bool, queue_width: int) -> None:
        """New columns: the breakpoint was crossed, or a longer name arrived."""
        table.clear(columns=True)
        table.add_column(Text("Queue"), width=queue_width, key="queue")
        for column in workload_columns(wide):
            table.add_column(Text(column.label, justify="right"), width=column.width, key=column.key)
        self._wide, self._queue_width = wide, queue_width
        self._shown_cells.clear()

    def _draw_row(self, table: DataTable[Text], queue: QueueStats, wide: bool) -> None:
        cells = queue_cells(queue, wide)
        shown = self._shown_cells.get(queue.name)
        if shown is None:
            name = Text(queue.name, no_wrap=True, overflow="ellipsis")
            table.add_row(name, *(Text(v, justify="right") for v in cells.values()), key=queue.name)
            self._shown_cells[queue.name] = cells
            return
        for key, value in cells.items():
            if shown.get(key) != value:
                table.update_cell(queue.name, key, Text(value, justify="right"))
                shown[key] = value

    @staticmethod
    def _cursor_key(table: DataTable[Text]) -> str | None:
        if not table.row_count or not table.is_valid_row_index(table.cursor_row):
            return None
        key: RowKey = table.ordered_rows[table.cursor_row].key
        return key.value
