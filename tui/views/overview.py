"""The Overview screen's body: eight tiles with an hour's sparkline each, the queues with the
longest wait, the newest events; at 160×48 every queue, the supervisors, about twenty events and
the batches in progress.

The tiles and the queues draw a :class:`ConsoleState` (the telemetry) and touch only what changed
since the last draw, so a snapshot a second neither flickers nor moves the table's cursor; the
events, batches and supervisors are pages fetched every few seconds while the Overview shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive, var
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowKey

from evalharness.core.admin import BatchRow, BatchSummary, MasterRow
from evalharness.core.format import format_count

from ..fmt import sparkline, two_columns
from ..history import HISTORY_MINUTES, HistoryLine, minute_series
from ..model import HistoryEntry, QueueStats, Snapshot
from ..viewmodel import ConsoleState, Level, Tile, overview_tiles, queue_cells, workload_columns

History = tuple[HistoryEntry, ...] | None

NARROW_QUEUE_WIDTH = 14
"""Queue names longer than this are cut (with "…") below the wide breakpoint; the numbers come first."""
WIDE_QUEUE_WIDTH = 40
TOP_QUEUES = 5
"""Queues shown at 80×24: those whose oldest job has waited longest."""
EVENTS_NARROW = 6
EVENTS_WIDE = 20
BATCHES_WIDE = 12


def _set_level(widget: Widget, level: Level | None) -> None:
    for each in Level:
        widget.set_class(level is each, f"-{each.value}")


TILE_SERIES: Mapping[str, Callable[[HistoryEntry], float | None]] = {
    "jpm": lambda e: e.jobs_per_minute,
    "inflight": lambda e: e.total("reserved"),
    "backlog": lambda e: e.total("ready"),
    "wait": lambda e: e.largest("oldest_wait"),
    "failed": lambda e: e.total("failed"),
    "timeouts": lambda e: e.total("timeouts"),
    "procs": lambda e: e.total("processes"),
}
"""Each tile's value minute by minute in the recorded history (Batches has none)."""


class TileSpark(Widget):
    """A tile's last hour as a one-row sparkline: the newest minutes that fit its width."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"tile-spark--spark"}

    history: reactive[History] = reactive(None)
    """The recorded history the sparkline draws; a new one repaints it, the same one again does not."""

    def __init__(self, series: Callable[[HistoryEntry], float | None] | None, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="tile-spark")
        self._series = series

    @property
    def values(self) -> list[float | None]:
        if self._series is None or not self.history:
            return []
        values = minute_series(self.history, self._series)[-HISTORY_MINUTES:]
        return values[-(self.content_size.width or HISTORY_MINUTES) :]

    @property
    def spark(self) -> str:
        return sparkline(self.values)

    def render(self) -> Text:
        if self._series is None:
            return Text("")
        if not self.history:
            return Text("no history yet", style="dim", no_wrap=True, overflow="ellipsis")
        return Text(self.spark, style=self.get_component_rich_style("tile-spark--spark"), no_wrap=True)


class TileBox(Vertical):
    """One tile of the strip: its label, its value coloured by its level, its hour's sparkline.
    Setting :attr:`value` or :attr:`level` to what is shown already touches nothing."""

    value: var[str] = var("", init=False)
    level: var[Level | None] = var(None, init=False)

    def __init__(self, tile: Tile) -> None:
        super().__init__(classes="tile", id=f"tile-{tile.key}")
        self._label = Static(tile.label, classes="tile-label", markup=False)
        self._value = Static(tile.value, classes="tile-value", id=f"value-{tile.key}", markup=False)
        self.spark = TileSpark(TILE_SERIES.get(tile.key), id=f"spark-{tile.key}")
        self.set_reactive(TileBox.value, tile.value)
        self.set_reactive(TileBox.level, tile.level)

    def compose(self) -> ComposeResult:
        yield self._label
        yield self._value
        yield self.spark

    def watch_value(self, value: str) -> None:
        self._value.update(value, layout=False)  # a tile's size never follows its value

    def watch_level(self, level: Level | None) -> None:
        _set_level(self._value, level)


class HistorySpark(Widget):
    """One line of history: a title, a sparkline fitted to the widget's width, its min and max."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"history-spark--title", "history-spark--spark", "history-spark--range"}

    history: reactive[History] = reactive(None)
    """The recorded history the line is drawn from; a new one repaints it."""

    def __init__(self, line_of: Callable[[History, int], HistoryLine], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._line_of = line_of

    @property
    def line(self) -> HistoryLine:
        return self._line_of(self.history, self.content_size.width or 80)

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


def top_queues(queues: Sequence[QueueStats], limit: int | None) -> list[QueueStats]:
    """Longest oldest wait first (queues with nothing waiting after, by backlog, then by name)."""
    ordered = sorted(queues, key=lambda q: (q.oldest_wait is None, -(q.oldest_wait or 0.0), -(q.ready or 0), q.name))
    return ordered if limit is None else ordered[:limit]


def event_line(event: Mapping[str, Any], width: int) -> Text:
    """`11:22:01  job_failed  judge  judge_sample 8f2c… failed: …`, as data (never markup)."""
    try:
        at = float(event.get("at") or str(event.get("id", "0-0")).split("-")[0]) / (1 if event.get("at") else 1000)
    except ValueError:
        at = 0.0
    stamp = time.strftime("%H:%M:%S", time.localtime(at)) if at else "--:--:--"
    kind = str(event.get("kind") or "?")
    queue = str(event.get("queue") or "")
    from .events import Event

    # a batch event has no message of its own: its name and what its fields say
    row = Event.from_dict(event)
    said = row.message() if not event.get("message") and row.batch else ""
    text = f"{row.subject()}: {said}" if said else event.get("message") or event.get("subject") or ""
    message = " ".join(str(text).split())
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(stamp, style="dim")
    line.append(f"  {kind:<14.14}", style="bold red" if "fail" in kind or "lost" in kind else "bold")
    line.append(f" {queue:<14.14} ", style="cyan")
    line.append(message)
    line.truncate(width, overflow="ellipsis")
    return line


def batch_line(row: BatchRow, width: int) -> Text:
    done = row.succeeded + row.failed
    fraction = 1.0 if row.total == 0 else min(1.0, done / row.total)
    cells = 10
    bar = "█" * int(fraction * cells) + "░" * (cells - int(fraction * cells))
    text = Text(no_wrap=True, overflow="ellipsis")
    name_width = max(8, width - 19)
    name = row.name if len(row.name) <= name_width else row.name[: name_width - 1] + "…"
    text.append(f"{name:<{name_width}} ")
    text.append(bar, style="green" if not row.failed else "yellow")
    text.append(f" {int(fraction * 100):3d}%")
    return text


def supervisor_lines(masters: Sequence[MasterRow], now: float) -> list[Text]:
    """A line per master and per supervisor, as the Supervisors screen groups them."""
    from .supervisors import is_lost

    out = []
    for m in masters:
        lost = is_lost(m, now)
        age = "—" if m.heartbeat_at is None else f"{max(0.0, now - m.heartbeat_at):.0f}s"
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{m.name:<14.14}", style="bold red" if lost else "bold")
        line.append(
            f" pid {m.pid:<7} {('lost' if lost else m.status):<8} hb {age:<5} {m.environment}",
            style="red" if lost else "",
        )
        out.append(line)
        for s in m.supervisors:
            per = " · ".join(f"{q} {n}" + ("*" if q in s.overrides else "") for q, n in s.per_queue.items())
            sub = Text(no_wrap=True, overflow="ellipsis", style="dim" if lost else "")
            sub.append(f"  {s.name:<14.14} {s.status:<8} {s.processes:>4} procs  {per}")
            out.append(sub)
    return out


def batches_tile(summary: BatchSummary) -> Tile:
    """`12 · ⚠ 3`: the batches running on every queue, and those that finished with failures."""
    text = format_count(summary.running)
    if summary.finished_with_failures:
        text += f" · ⚠ {format_count(summary.finished_with_failures)}"
    return Tile("batches", "Batches run·⚠", text, Level.WARNING if summary.finished_with_failures else None)


class OverviewView(Vertical):
    """Tiles, the queues, the events (and at 160×48 the supervisors and batches); call :meth:`draw`
    to bring the telemetry's parts up to date and :meth:`fetch` for the pages."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._wide: bool | None = None
        self._shown_cells: dict[str, dict[str, str]] = {}
        self._tiles = {tile.key: TileBox(tile) for tile in overview_tiles(None)}
        self._shown_text: dict[str, object] = {}
        self._queue_width = 0
        self.events: list[dict[str, Any]] = []
        self.active_batches: list[BatchRow] = []
        self.batch_summary: BatchSummary | None = None
        self.masters: list[MasterRow] = []
        self.fetched = False
        """Whether the events, batches and supervisors have been read at least once."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="strip"):
            yield from self._tiles.values()
        with Horizontal(id="overview-main"):
            with Vertical(id="overview-left"):
                with Horizontal(id="workload-bar"):
                    yield Static("Workload", id="workload-title", markup=False)
                    yield Static("", id="workload-note", markup=False)
                yield DataTable(id="queues", cursor_type="row", cell_padding=1)
                yield Static(
                    "Supervisors", id="overview-sup-title", classes="overview-section wide-block", markup=False
                )
                yield Static("", id="overview-supervisors", classes="wide-block", markup=False)
                with Vertical(id="connection", classes="panel") as connection:
                    connection.border_title = "Connection"
                    yield Static(id="conn-details")
                    yield Static(id="conn-status")
                yield Static("Events", id="overview-events-title", classes="overview-section", markup=False)
                yield Static("", id="overview-events", markup=False)
            with Vertical(id="overview-right"):
                yield Static("Batches in progress", classes="overview-section", markup=False)
                yield Static("", id="overview-batches", markup=False)

    @on(DataTable.RowSelected, "#queues")
    async def _open_queue(self, event: DataTable.RowSelected) -> None:
        """``enter`` on a queue: Workload, with that queue highlighted."""
        name = event.row_key.value
        app: Any = self.app
        await app.action_show_mode("workload")
        app._views["workload"].select_queue(name)

    # --- pages ---------------------------------------------------------------------------------

    def fetch(self) -> None:
        app: Any = self.app
        if app.admin is not None:
            self._fetch(bool(app.wide))

    @work(group="fetch-overview", exclusive=True, exit_on_error=False)
    async def _fetch(self, wide: bool) -> None:
        app: Any = self.app
        admin = app.admin
        try:
            events = await admin.recent_events(EVENTS_WIDE if wide else EVENTS_NARROW)
            # the counts and the first batches in one cheap read: no scan of the finished batches
            summary = await admin.batch_summary(BATCHES_WIDE)
            masters = await admin.masters() if wide else self.masters
        except Exception as exc:  # the tiles stay live; the pages keep what they had
            app.log.warning("overview pages:", exc)
            return
        self.events = list(events)
        self.batch_summary = summary
        self.active_batches = list(summary.rows)
        self.masters = list(masters)
        self.fetched = True
        self.draw(app.state, app.clock(), wide=bool(app.wide))

    # --- drawing -------------------------------------------------------------------------------

    def draw(self, state: ConsoleState, now: float, *, wide: bool) -> None:
        """Bring every part up to date with ``state``; the caller batches the screen update."""
        stale = state.connected is False and state.snapshot is not None
        self.set_class(stale, "-stale")
        self._draw_tiles(state.snapshot)
        for box in self._tiles.values():
            box.spark.history = state.history
        self._draw_table(state.snapshot, wide)
        self._draw_pages(now, wide)
        self.draw_ages(state, now)

    def draw_ages(self, state: ConsoleState, now: float) -> None:
        """The parts that change with time alone: the table's note and the connection's status."""
        self._draw_note(state, now)
        self._draw_connection(state, now)

    def _draw_note(self, state: ConsoleState, now: float) -> None:
        snapshot = state.snapshot
        count = len(snapshot.queues) if snapshot is not None else 0
        if snapshot is None:
            title = "Workload"
        elif self._wide is False and count > TOP_QUEUES:
            title = f"Longest waits · {TOP_QUEUES} of {count} queues"
        else:
            title = f"Workload · {count} queue{'s' if count != 1 else ''}"
        self._update_text("#workload-title", title)
        note, level = state.workload_note(now)
        note_widget = self._update_text("#workload-note", note)
        _set_level(note_widget, level)

    def _update_text(self, selector: str, text: str | Text) -> Static:
        widget = self.query_one(selector, Static)
        key = text.markup if isinstance(text, Text) else text
        if self._shown_text.get(selector) != key:
            widget.update(text)
            self._shown_text[selector] = key
        return widget

    def _draw_tiles(self, snapshot: Snapshot | None) -> None:
        tiles = overview_tiles(snapshot)
        if self.batch_summary is not None:
            tiles[-1] = batches_tile(self.batch_summary)
        for tile in tiles:
            box = self._tiles[tile.key]
            box.value, box.level = tile.value, tile.level

    def _draw_pages(self, now: float, wide: bool) -> None:
        width = max(20, self.query_one("#overview-events", Static).content_size.width or 76)
        count = EVENTS_WIDE if wide else EVENTS_NARROW
        if not self.fetched:
            events = Text("loading…", style="dim")
        elif not self.events:
            events = Text("no events yet", style="dim")
        else:
            events = Text("\n").join(event_line(e, width) for e in self.events[:count])
        self._update_text("#overview-events", events)
        if not wide:
            return
        right = max(20, self.query_one("#overview-batches", Static).content_size.width or 40)
        shown = self.active_batches[:BATCHES_WIDE]
        batches = (
            Text("\n").join(batch_line(b, right) for b in shown)
            if shown
            else Text("none running" if self.fetched else "loading…", style="dim")
        )
        active = 0 if self.batch_summary is None else self.batch_summary.running + self.batch_summary.pending
        if active > len(shown):
            batches.append(f"\n… and {format_count(active - len(shown))} more (4 Batches)", style="dim")
        self._update_text("#overview-batches", batches)
        sups = supervisor_lines(self.masters, now)
        self._update_text(
            "#overview-supervisors",
            Text("\n").join(sups)
            if sups
            else Text("no master on this Redis" if self.fetched else "loading…", style="dim"),
        )

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
        connection = self.query_one("#connection")
        connection.set_class(state.level is Level.ERROR, "-stale")
        # At 80 columns the top bar says all is well; the panel shows only when something is not.
        connection.set_class(state.level is not Level.OK or state.snapshot is None, "-needed")

    def _draw_table(self, snapshot: Snapshot | None, wide: bool) -> None:
        table = self.query_one("#queues", DataTable)
        queues = top_queues(snapshot.queues if snapshot is not None else (), None if wide else TOP_QUEUES)
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
