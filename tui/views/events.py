"""Screen 8 Events: the engine's capped event stream as a table of at most 1,000 rows, newest at
the bottom, following the tail unless the cursor has moved up ("▼ N new"); ``f`` cycles the
kind filter, ``enter`` opens the job, batch or supervisor an event is about.

:class:`EventsModel` keeps the rows and builds cells without Textual; only events newer than the
last one read are fetched after the first page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from evalharness.core.format import NULL, format_count

from ..messages import PageFailed, PageFetched
from .common import Cell, Col, KeyedTable, Row, clock_time, columns_for, set_text, short_id

CAP = 1_000
"""Rows kept; the oldest go first."""

POLL_INTERVAL = 2.0
"""Seconds between two reads of what is new on the stream while the screen is shown."""

COLUMNS: tuple[Col, ...] = (
    Col("time", "Time", 8),
    Col("kind", "Kind", 17),
    Col("queue", "Queue", 10),
    Col("subject", "Subject", 13),
    Col("worker", "Worker", 14, wide_only=True),
    Col("batch", "Batch", 16, wide_only=True),
    Col("message", "Message", 20),
)


NARROW_WIDTHS = {"kind": 12, "queue": 8, "subject": 10}
"""Below the wide breakpoint these columns are cut (with "…") so that the message, the one cell
that says what happened, keeps most of the width (at 160 columns nothing is cut)."""


def event_columns(wide: bool, width: int) -> tuple[Col, ...]:
    """The columns for a body ``width`` wide: the message takes what the others leave, so the
    table never scrolls sideways."""
    cols = columns_for(COLUMNS, wide)
    if not wide:
        cols = tuple(replace(c, width=NARROW_WIDTHS.get(c.key, c.width)) for c in cols)
    fixed = sum((c.width or 0) + 2 for c in cols if c.key != "message")
    message = max(12, width - fixed - 2 - 2 - 1)  # its own padding, the scrollbar, a spare column
    return tuple(replace(c, width=message) if c.key == "message" else c for c in cols)


KINDS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("all", lambda k: True),
    ("failures", lambda k: k in ("job_failed", "job_timed_out", "batch_failed", "error")),
    ("retries", lambda k: k in ("failed_retried", "batch_retried", "failed_forgotten")),
    ("batches", lambda k: k.startswith("batch_")),
    ("jobs", lambda k: k.startswith("job_")),
    ("waits", lambda k: k == "long_wait"),
    ("workers", lambda k: k.startswith(("worker_", "master_", "supervisor_", "scale"))),
    ("queues", lambda k: k.startswith("queue_") or k in ("paused", "continued")),
)
"""What ``f`` cycles through."""

KIND_STYLE = {
    "job_failed": "red",
    "job_timed_out": "bold red",
    "batch_failed": "bold red",
    "worker_crash_loop": "bold red",
    "long_wait": "yellow",
    "batch_finished": "green",
    "batch_cancelled": "dim",
    "job_cancelled": "dim",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the stream; every field is text as recorded (data, never markup)."""

    id: str
    kind: str
    at: float | None
    fields: Mapping[str, str]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        fields = {str(k): str(v) for k, v in raw.items()}
        try:
            at: float | None = float(fields.get("at", ""))
        except ValueError:
            # The stream id's first part is the server's time in ms.
            try:
                at = int((fields.get("event_id") or "0").split("-")[0]) / 1000.0
            except ValueError:
                at = None
        return cls(fields.get("event_id") or fields.get("id", ""), fields.get("kind", "?"), at, fields)

    def get(self, key: str) -> str:
        return self.fields.get(key, "")

    @property
    def batch(self) -> str:
        return self.get("batch")

    @property
    def job(self) -> str:
        """The job id an event is about ("" when it is about none)."""
        if self.kind.startswith(("job_", "failed_")):
            return self.get("id") or self.get("subject")
        return ""

    @property
    def supervisor(self) -> str:
        return self.get("supervisor") or self.get("master")

    def target(self) -> tuple[str, str] | None:
        """What ``enter`` opens: ("job", id), ("batch", id), ("supervisor", name) or None."""
        if self.job:
            return ("job", self.job)
        if self.batch:
            return ("batch", self.batch)
        if self.supervisor:
            return ("supervisor", self.supervisor)
        return None

    def subject(self) -> str:
        if self.job:
            name = self.get("job")
            return f"{name} {short_id(self.job, 6)}" if name else short_id(self.job, 14)
        if self.batch:
            return self.get("name") or self.batch
        return self.supervisor or self.get("subject")

    def cells(self) -> dict[str, Cell]:
        return {
            "time": Cell(clock_time(self.at)),
            "kind": Cell(self.kind, KIND_STYLE.get(self.kind, "")),
            "queue": Cell(self.get("queue") or NULL),
            "subject": Cell(self.subject() or NULL),
            "worker": Cell(self.get("worker") or self.supervisor or NULL),
            "batch": Cell(short_id(self.batch, 16) if self.batch else NULL),
            "message": Cell(self.message()),
        }

    def message(self) -> str:
        """The event's message; the engine writes none for a batch created or finished, so those
        say what their fields do (``succeeded · 200 jobs, 0 failed``)."""
        text = self.get("message")
        if text or not self.kind.startswith("batch_"):
            return text
        counts = []
        if self.get("total"):
            counts.append(f"{self.get('total')} jobs")
        if self.get("failed") and self.kind != "batch_created":
            counts.append(f"{self.get('failed')} failed")
        return " · ".join(part for part in (self.get("state"), ", ".join(counts)) if part)


@dataclass
class EventsModel:
    """The rows read so far (oldest first, at most :data:`CAP`) and the kind filter."""

    events: list[Event] = field(default_factory=list)
    kind: int = 0
    error: str | None = None
    fetched: bool = False
    _cells: dict[str, dict[str, Cell]] = field(default_factory=dict, repr=False)

    @property
    def last_id(self) -> str | None:
        return self.events[-1].id if self.events else None

    def add(self, raw: list[Mapping[str, Any]]) -> int:
        """Append what was read (skipping what is already here); returns how many were new."""
        known = {e.id for e in self.events[-len(raw) - 1 :]} if raw else set()
        new = [Event.from_dict(r) for r in raw]
        new = [e for e in new if e.id not in known]
        self.events.extend(new)
        del self.events[:-CAP]
        return len(new)

    @property
    def kind_name(self) -> str:
        return KINDS[self.kind][0]

    @property
    def rows(self) -> list[Event]:
        test = KINDS[self.kind][1]
        return [e for e in self.events if test(e.kind)]

    def find(self, key: str | None) -> Event | None:
        return next((e for e in reversed(self.events) if e.id == key), None)

    def table_rows(self) -> list[Row]:
        # An event never changes once written: its cells are made once.
        cells = self._cells
        if len(cells) > 2 * CAP:
            keep = {e.id for e in self.events}
            self._cells = cells = {k: v for k, v in cells.items() if k in keep}
        out = []
        for e in self.rows:
            row = cells.get(e.id)
            if row is None:
                row = cells[e.id] = e.cells()
            out.append((e.id, row))
        return out

    def chips(self) -> str:
        return " ".join(f"[{name}]" if i == self.kind else name for i, (name, _) in enumerate(KINDS))


class EventsView(Vertical):
    BINDING_GROUP_TITLE = "Events"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        Binding("f", "kind", "Kind"),
        Binding("end", "follow", "Follow", show=False, priority=True),
        Binding("y", "copy", "Copy id", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = EventsModel()
        self.unseen = 0
        """Rows added below the cursor since it left the tail: the "▼ N new"."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="list-bar"):
            yield Static("Events", classes="list-title", markup=False)
            yield Static(self.model.chips(), id="events-chips", classes="chips", markup=False)
            yield Static("", id="events-note", classes="list-note", markup=False)
        yield KeyedTable(id="events-table")

    def on_mount(self) -> None:
        self.set_interval(POLL_INTERVAL, self._poll)
        self.watch(self.table, "scroll_y", lambda: self.call_after_refresh(self._sync_scrollbar), init=False)

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#events-table", KeyedTable)

    @property
    def highlighted(self) -> Event | None:
        return self.model.find(self.table.cursor_key)

    @property
    def following(self) -> bool:
        """Whether the cursor is on the last row (or there are none): new rows then move it along."""
        table = self.table
        return table.row_count == 0 or table.cursor_row >= table.row_count - 1

    def _poll(self) -> None:
        app: Any = self.app
        if app.mode_shown == "events" and self.screen is app.screen_stack[0]:
            self.fetch()

    def fetch(self) -> None:
        app: Any = self.app
        if app.admin is not None:
            self._fetch(self.model.last_id)

    @work(group="fetch-events", exclusive=True, exit_on_error=False)
    async def _fetch(self, after: str | None) -> None:
        app: Any = self.app
        try:
            rows = await app.admin.events(after, CAP)
        except Exception as exc:  # keep the rows, say why they are old
            self.post_message(PageFailed("events", f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(PageFetched("events", (after, list(rows)), app.clock()))

    @on(PageFetched)
    def _fetched(self, message: PageFetched) -> None:
        if message.view != "events":
            return
        message.stop()
        after, rows = message.data
        if after != self.model.last_id:
            return  # an answer to an older question: what it has is here already
        self.model.error = None
        self.model.fetched = True
        if rows:
            self.model.add(rows)
            self.draw()
        else:
            self._draw_note()

    @on(PageFailed)
    def _failed(self, message: PageFailed) -> None:
        if message.view != "events":
            return
        message.stop()
        self.model.error = message.error
        self._draw_note()

    def draw(self) -> None:
        app: Any = self.app
        table = self.table
        follow = self.following
        before = set(table.keys)
        # Before its first layout the view has no width: the screen's less the body's padding.
        width = self.size.width or app.size.width - (4 if app.wide else 2)
        table.show(event_columns(bool(app.wide), width), self.model.table_rows())
        if table.held is None:
            if follow and table.row_count:
                table.move_cursor(row=table.row_count - 1, animate=False)
                self.unseen = 0
            elif not follow:
                self.unseen += sum(1 for key in table.keys if key not in before)
        self._draw_note()

    def _sync_scrollbar(self) -> None:
        """The table may scroll to the tail before its scrollbar shows (the first rows arrive
        before the layout that gives it one); the scrollbar then keeps its thumb at the top while
        the rows are at the bottom, until the next scroll.  Put the thumb where the rows are."""
        table = self.table
        if table.show_vertical_scrollbar and table.vertical_scrollbar.position != table.scroll_y:
            table.vertical_scrollbar.position = table.scroll_y

    def _draw_note(self) -> None:
        set_text(self.query_one("#events-chips", Static), self.model.chips())
        widget = self.query_one("#events-note", Static)
        if self.model.error:
            note = f"not refreshed: {self.model.error}"
        elif not self.model.fetched:
            note = "reading the stream…"
        else:
            shown = len(self.model.rows)
            note = f"{format_count(shown)} {'event' if shown == 1 else 'events'}"
            held = self.table.held_new
            if held:
                note = f"❄ {format_count(held)} new · " + note
            elif self.unseen:
                note = f"▼ {format_count(self.unseen)} new (end follows) · " + note
        set_text(widget, note)
        widget.set_class(self.model.error is not None, "-error")

    @on(DataTable.RowHighlighted, "#events-table")
    def _highlighted(self) -> None:
        if self.following and self.unseen:
            self.unseen = 0
            self._draw_note()

    @on(DataTable.RowSelected, "#events-table")
    def _selected(self) -> None:
        self.action_open()

    def action_follow(self) -> None:
        table = self.table
        if table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)
        self.unseen = 0
        self._draw_note()

    def action_kind(self) -> None:
        self.model.kind = (self.model.kind + 1) % len(KINDS)
        self.unseen = 0
        self.draw()
        self.action_follow()

    def action_copy(self) -> None:
        event = self.highlighted
        if event is not None:
            target = event.target()
            value = target[1] if target else event.id
            self.app.copy_to_clipboard(value)
            self.app.notify(f"Copied {value}", timeout=3, markup=False)

    def action_open(self) -> None:
        event = self.highlighted
        if event is None:
            return
        target = event.target()
        if target is None:
            self.app.notify(f"{event.kind}: it names no job, batch or supervisor", timeout=4, markup=False)
            return
        open_target(self, target[0], target[1], event.get("queue") or None)


def open_target(node: Any, kind: str, ident: str, queue: str | None = None) -> None:
    """Open what an event or the palette names: a job's failed-job detail, a batch's detail, a
    queue's or supervisor's screen. Says so when it is gone."""
    app: Any = node.app

    async def go() -> None:
        from .batches import BatchDetailScreen
        from .failed import FailedDetailScreen

        try:
            if kind == "batch":
                row = await app.admin.batch(ident)
                if row is None:
                    app.notify(f"No batch {ident} (it was forgotten or expired)", timeout=5, markup=False)
                    return
                await app.push_screen(BatchDetailScreen(row))
            elif kind == "job":
                detail = await app.admin.failed_detail(ident, queue)
                if detail is not None:
                    await app.push_screen(FailedDetailScreen(detail.row))
                    return
                running = [r for r in await app.admin.running(queue) if r.id == ident]
                if running:
                    await app.run_action("show_mode('running')")
                    app.notify(f"{ident} is running now", timeout=4, markup=False)
                    return
                app.notify(
                    f"{ident} is not failed or running now (it completed, or its record expired)",
                    timeout=5,
                    markup=False,
                )
            else:
                await app.open_named(kind, ident)
        except Exception as exc:  # Redis lost on the way: say so, stay
            app.notify(
                f"Opening {ident} failed: {type(exc).__name__}: {exc}", severity="error", timeout=8, markup=False
            )

    node.run_worker(go(), group="open", exit_on_error=False)
