"""What the list screens share: cells as plain values, a table that follows its rows by key and
touches only cells that changed, and the rule that gates every action (the page messages are in
``tui/messages.py``).

Everything above the widgets is plain values, so the view-models are testable without a terminal.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.segment import Segment
from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey, RowKey

from evalharness.core.format import NULL, format_count, format_seconds

PAGE_SIZE = 50
"""Rows in one fetched page (the engine's page size too)."""

REFETCH_INTERVAL = 5.0
"""Seconds between two fetches of the visible page while nothing else asks for one."""

TYPED_CONFIRM_OVER = 1_000
"""Actions that touch more jobs than this need the batch or queue name typed in."""


# --- cells and columns, as values ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: its text and how it looks (a theme-independent Rich style name or "")."""

    text: str
    style: str = ""
    right: bool = False

    def render(self) -> Text:
        # Text from Redis is data: a Text is never parsed as markup.
        return Text(
            self.text, style=self.style, no_wrap=True, overflow="ellipsis", justify="right" if self.right else "left"
        )


@dataclass(frozen=True, slots=True)
class Col:
    key: str
    label: str
    width: int | None = None
    right: bool = False
    wide_only: bool = False


def columns_for(columns: Sequence[Col], wide: bool) -> tuple[Col, ...]:
    return tuple(c for c in columns if wide or not c.wide_only)


Row = tuple[str, Mapping[str, Cell]]
"""A row as (its key, its cells by column key)."""


# --- formatting ------------------------------------------------------------------------------------


def short_id(value: str, width: int = 8) -> str:
    """An id cut to ``width`` characters, keeping its end: ids made together share their head
    (the time they were made; a run's samples are ``<run id>-<index>``), so the tail is what
    tells them apart.  ``y`` copies the whole id."""
    return value if len(value) <= width else "…" + value[-(width - 1) :]


def first_fitting(wordings: Sequence[Sequence[str]], width: int) -> str:
    """The first of ``wordings`` (each a line's parts, joined by " · ") that fits ``width``
    characters; the last, shortest one when none does."""
    line = ""
    for parts in wordings:
        line = " · ".join(parts)
        if len(line) <= width:
            break
    return line


def wrap_parts(parts: Sequence[str], width: int) -> str:
    """``parts`` joined by " · " in lines of at most ``width`` characters, broken only between
    parts (a part longer than a line gets one to itself), so "removed 0" never splits."""
    lines: list[str] = []
    line = ""
    for part in parts:
        joined = f"{line} · {part}" if line else part
        if line and len(joined) > width:
            lines.append(line)
            line = part
        else:
            line = joined
    if line:
        lines.append(line)
    return "\n".join(lines)


def clock_time(at: float | None) -> str:
    """Local wall-clock time of an epoch second: "11:22:01"; "—" when unknown."""
    if at is None:
        return NULL
    return time.strftime("%H:%M:%S", time.localtime(at))


def ago(at: float | None, now: float) -> str:
    """How long ago: "14s", "3m 05s"; "—" when unknown."""
    if at is None:
        return NULL
    return format_seconds(now - at)


def text_bar(fraction: float, cells: int = 10) -> str:
    """A progress bar of ``cells`` cells and its percentage: "███████░░░  70%"."""
    fraction = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, fraction))
    full = int(fraction * cells)
    return "█" * full + "░" * (cells - full) + f" {int(fraction * 100):3d}%"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|ms|m|s)\b")
_UNITS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_NUMBER = re.compile(r"^[-+]?\d[\d,]*(?:\.\d+)?[kKM]?")


def sort_value(text: str) -> tuple[int, float, str]:
    """How a cell sorts: durations ("3m 05s") and numbers ("1,234", "2.1k", "70%") by value,
    "—" (unknown) first, anything else by its text."""
    text = text.strip()
    if not text or text == NULL:
        return (0, 0.0, "")
    parts = _DURATION.findall(text)
    if parts and _DURATION.sub("", text).strip() == "":
        return (1, sum(float(v) * _UNITS[u] for v, u in parts), "")
    number = _NUMBER.match(text.replace("█", "").replace("░", "").strip())
    if number:
        raw = number.group(0).replace(",", "")
        scale = {"k": 1e3, "K": 1e3, "M": 1e6}.get(raw[-1], 1.0)
        return (1, float(raw.rstrip("kKM")) * scale, "")
    return (2, 0.0, text.lower())


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{format_count(n)} {word if n == 1 else (words or word + 's')}"


# --- the table -----------------------------------------------------------------------------------


class KeyedTable(DataTable[Text]):
    """A DataTable whose rows are known by key: :meth:`show` adds, removes and reorders rows and
    updates only the cells whose text or style changed; the cursor stays on its row's key."""

    DEFAULT_CSS: ClassVar[str] = """
    KeyedTable { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort", "Sort", show=False),
        Binding("S", "reverse", "Reverse sort", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("y", "copy", "Copy id", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", cell_padding=1, zebra_stripes=False)
        self._columns_shown: tuple[Col, ...] = ()
        self._cells: dict[str, dict[str, Cell]] = {}
        self._firsts: dict[str, Text] = {}
        self.updates = 0
        """Cells written since the table was made (a measure of how much a redraw touched)."""
        self.sort_by: str | None = None
        """The column ``s`` sorts by (None: the order the page came in)."""
        self.sort_reverse = False
        self.filter_text = ""
        """Rows shown only when one of their cells contains this (for lists without their own filter)."""
        self.held: tuple[tuple[Col, ...], list[Row]] | None = None
        """What arrived while the console is frozen, drawn when it thaws."""
        self.held_new = 0
        """Rows in what is held that are not on screen: the "N new" of a frozen list."""
        self._given: tuple[tuple[Col, ...], list[Row]] | None = None
        self._sources: dict[str, Mapping[str, Cell]] = {}

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count or not self.is_valid_row_index(self.cursor_row):
            return None
        key: RowKey = self.ordered_rows[self.cursor_row].key
        return key.value

    @property
    def keys(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]

    def show(self, columns: Sequence[Col], rows: Iterable[Row]) -> None:
        """Show ``rows`` in ``columns``; while the console is frozen they are held instead, and
        counted, so nothing moves under the reader's eyes."""
        columns, rows = tuple(columns), list(rows)
        app: Any = self.app if self.is_attached else None
        if app is not None and getattr(app, "frozen", False):
            self.held = (columns, rows)
            shown = set(self._cells)
            self.held_new = sum(1 for key, _ in rows if key not in shown)
            return
        self.held, self.held_new = None, 0
        self._given = (columns, rows)
        self._show(columns, self._arranged(columns, rows))

    def thaw(self) -> None:
        """Draw what was held while frozen."""
        if self.held is not None:
            columns, rows = self.held
            self.show(columns, rows)

    def _arranged(self, columns: tuple[Col, ...], rows: list[Row]) -> list[Row]:
        """The rows filtered by :attr:`filter_text` and sorted by :attr:`sort_by`."""
        if self.filter_text:
            needle = self.filter_text.lower()
            rows = [r for r in rows if any(needle in c.text.lower() for c in r[1].values())]
        if self.sort_by is not None and any(c.key == self.sort_by for c in columns):
            key = self.sort_by
            # Stable: rows that tie keep the page's order, so a sort never shuffles equal rows.
            rows = sorted(rows, key=lambda r: sort_value(r[1].get(key, Cell("")).text), reverse=self.sort_reverse)
        return rows

    def _reshow(self) -> None:
        if self._given is not None:
            self._show(*(self._given[0], self._arranged(*self._given)))
        self._mark_sorted()

    def _mark_sorted(self) -> None:
        for col in self._columns_shown:
            column = self.columns.get(ColumnKey(col.key))
            if column is None:
                continue
            arrow = (" ▼" if self.sort_reverse else " ▲") if col.key == self.sort_by else ""
            column.label = Text(col.label + arrow, justify="right" if col.right else "left")
        self._require_update_dimensions = True
        self.refresh()

    def sortable(self) -> list[str]:
        return [c.key for c in self._columns_shown]

    def action_sort(self) -> None:
        """Cycle the sort column: each column in turn, then the page's own order."""
        keys = self.sortable()
        if not keys:
            return
        if self.sort_by not in keys:
            self.sort_by = keys[0]
        else:
            i = keys.index(self.sort_by) + 1
            self.sort_by = keys[i] if i < len(keys) else None
        self._reshow()

    def action_reverse(self) -> None:
        if self.sort_by is None and self.sortable():
            self.sort_by = self.sortable()[0]
        self.sort_reverse = not self.sort_reverse
        self._reshow()

    def _owner_has(self, action: str) -> bool:
        """Whether a screen or view above the table handles ``action`` itself."""
        node = self.parent
        while node is not None:
            if callable(getattr(node, f"action_{action}", None)):
                return True
            node = node.parent
        return False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("filter", "copy") and self._owner_has(action):
            return False  # the view's own filter (server side) or copy (the whole id) answers
        if action == "copy":
            return self.cursor_key is not None or None
        return True

    @work(group="dialog", exit_on_error=False)
    async def action_filter(self) -> None:
        from .dialogs import ROWS_FILTER_HELP, FilterDialog

        text = await self.app.push_screen_wait(
            FilterDialog(self.filter_text, what="rows", hint=ROWS_FILTER_HELP, placeholder="TimeoutError")
        )
        if text is not None:
            self.filter_text = text
            self._reshow()

    def action_copy(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.app.copy_to_clipboard(str(key))
            self.app.notify(f"Copied {key}", timeout=3, markup=False)

    def _show(self, columns: tuple[Col, ...], rows: list[Row]) -> None:
        cursor = self.cursor_key
        if columns != self._columns_shown:
            self.clear(columns=True)
            for col in columns:
                self.add_column(Text(col.label, justify="right" if col.right else "left"), width=col.width, key=col.key)
            self._columns_shown = columns
            self._cells.clear()
            self._firsts.clear()
            self._sources.clear()
            if self.sort_by is not None:
                self._mark_sorted()
        keys = [key for key, _ in rows]
        wanted = set(keys)
        for gone in [k for k in self._cells if k not in wanted]:
            self.remove_row(gone)
            del self._cells[gone]
            del self._firsts[gone]
            self._sources.pop(gone, None)
        first = columns[0].key if columns else ""
        sources = self._sources
        changed: dict[str, list[tuple[str, Text]]] = {}
        for key, cells in rows:
            if sources.get(key) is cells:
                continue  # the very cells drawn last time (a list that caches rows that never change)
            sources[key] = cells
            shown = self._cells.get(key)
            if shown is None:
                rendered = [cells.get(c.key, Cell("")).render() for c in columns]
                self.add_row(*rendered, key=key)
                self._firsts[key] = rendered[0]
                self._cells[key] = {c.key: cells.get(c.key, Cell("")) for c in columns}
                self.updates += len(columns)
                continue
            for col in columns:
                cell = cells.get(col.key, Cell(""))
                if shown.get(col.key) != cell:
                    rendered = cell.render()
                    changed.setdefault(key, []).append((col.key, rendered))
                    if col.key == first:
                        self._firsts[key] = rendered
                    shown[col.key] = cell
                    self.updates += 1
        if changed:
            self._update_in_place(changed)
        if self.keys != keys:
            # DataTable sorts by cell values; the first cell of each row (an object we keep) says
            # which row it is, so the rows take the page's order without being rebuilt.
            position = {id(self._firsts[k]): i for i, k in enumerate(keys)}
            self.sort(first, key=lambda cell: position.get(id(cell), len(position)))
        if cursor is not None and cursor in self._cells and self.cursor_key != cursor:
            self.move_cursor(row=self.get_row_index(cursor), animate=False)

    def _update_in_place(self, changed: Mapping[str, Sequence[tuple[str, Text]]]) -> None:
        """Write changed cells and repaint only their rows.

        ``DataTable.update_cell`` bumps a table-wide counter that is part of every render-cache
        key, so one changed cell renders every row in view again. Here the cells are written in
        place, only the cache entries of their rows are dropped, and only those rows are
        repainted; the other rows' rendering stays cached. This reads DataTable's private caches
        as Textual 8.2.8 (pinned exactly) has them; tests/tui/test_console_keyed_table.py fails
        if they change shape.
        """
        data = self._data
        rows: set[RowKey] = set()
        cells: set[tuple[RowKey, ColumnKey]] = set()
        for key, updates in changed.items():
            row_key = RowKey(key)
            row_data = data[row_key]
            for column, value in updates:
                column_key = ColumnKey(column)
                row_data[column_key] = value
                cells.add((row_key, column_key))
            rows.add(row_key)
        indices = {self._row_locations.get(k) for k in rows}
        header = self.header_height if self.show_header else 0
        lines = {header + y for y, (k, _) in enumerate(self._y_offsets) if k in rows}
        # Each cache's key starts with what it renders: (row key, column key, ...) for cells,
        # (row key, ...) for a row's line, (update count, row index) for a row's renderables and
        # (y, ...) for a table line.
        for cell_key in [k for k in self._cell_render_cache.keys() if (k[0], k[1]) in cells]:
            self._cell_render_cache.discard(cell_key)
        for row_cache_key in [k for k in self._row_render_cache.keys() if k[0] in rows]:
            self._row_render_cache.discard(row_cache_key)
        for renderables_key in [k for k in self._row_renderable_cache.keys() if k[1] in indices]:
            self._row_renderable_cache.discard(renderables_key)
        for line_key in [k for k in self._line_cache.keys() if k[0] in lines]:
            self._line_cache.discard(line_key)
        for index in indices:
            if index is not None:
                self.refresh_row(index)


# --- the action gate -------------------------------------------------------------------------------


class Gated:
    """Mixed into every node that binds actions: under ``--read-only`` each action in ``ACTIONS``
    is hidden (bindings, footer, key panel and palette alike); :meth:`can` greys one that does
    not apply to the highlighted row."""

    ACTIONS: ClassVar[frozenset[str]] = frozenset()
    """The actions that change something."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        app: Any = getattr(self, "app", None)
        if action in self.ACTIONS and getattr(app, "read_only", False):
            return False
        return self.can(action)

    def can(self, action: str) -> bool | None:
        """True: offered; None: shown greyed (does not apply here); False: hidden."""
        return True

    GATED: ClassVar[tuple[str, ...]] = ("open", "copy")
    """Actions besides ``ACTIONS`` whose state depends on the highlighted row."""

    def gates_changed(self) -> bool:
        """Whether any action's state changed since the last call: only then are the bindings
        (and so the Footer, which rebuilds its keys) refreshed."""
        state = tuple(self.can(a) for a in (*sorted(self.ACTIONS), *self.GATED))
        if state == getattr(self, "_gate_state", None):
            return False
        self._gate_state = state
        return True

    def refresh_gates(self) -> None:
        if self.gates_changed():
            refresh: Any = getattr(self, "refresh_bindings", None)
            if refresh is not None:
                refresh()


def set_text(widget: Static, text: str, *, layout: bool = False) -> None:
    """Update a Static only when its text changes; a widget whose size does not follow its text
    (the default here) skips the layout pass, which costs more than the whole table's redraw."""
    if str(widget.content) != text:
        widget.update(text, layout=layout)


# --- big text ---------------------------------------------------------------------------------------


class LazyText(ScrollView, can_focus=True):
    """Read-only text of any size, drawn line by line as it scrolls into view: nothing is measured
    or styled for lines that are not on screen, so a 1 MB traceback or payload opens at once."""

    DEFAULT_CSS: ClassVar[str] = """
    LazyText { height: 1fr; }
    """

    def __init__(self, text: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.lines = text.splitlines() or [""]
        # Characters, not cells: measuring every line's cells is exactly the cost avoided here.
        self.virtual_size = Size(max(len(line) for line in self.lines) + 1, len(self.lines))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def render_line(self, y: int) -> Strip:
        x, top = self.scroll_offset
        index = top + y
        if index >= len(self.lines):
            return Strip.blank(self.size.width, self.rich_style)
        width = self.size.width
        piece = self.lines[index].expandtabs(4)[x : x + width]
        return Strip([Segment(piece, self.rich_style)]).extend_cell_length(width, self.rich_style).crop(0, width)
