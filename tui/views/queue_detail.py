"""Queue detail (from Workload's ``enter``): one queue's jobs in four tabs, Ready | Delayed |
Running | Failed, fetched 50 at a time (``pageup``/``pagedown``), oldest first; a row never
carries a payload, ``enter`` opens the job with it. ``p`` and ``X`` act on the queue as on Workload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, Tab, Tabs

from evalharness.core.admin import QUEUE_TABS, JobDetail, QueueJobPage, QueueJobRow
from evalharness.core.format import NULL, format_count, format_seconds

from ..model import QueueStats
from .common import (
    PAGE_SIZE,
    Cell,
    Col,
    Gated,
    KeyedTable,
    LazyText,
    Row,
    clock_time,
    columns_for,
    first_fitting,
    set_text,
    short_id,
)
from .workload import run_clear, run_pause

TAB_LABELS = {"ready": "Ready", "delayed": "Delayed", "running": "Running", "failed": "Failed"}
AT_LABELS = {"ready": "Waiting", "delayed": "Due in", "running": "Lease", "failed": "Failed"}

COLUMNS: tuple[Col, ...] = (
    Col("job", "Job", 26),
    Col("batch", "Batch", 14),
    Col("at", "When", 9, right=True),
    Col("attempts", "Att", 4, right=True),
    Col("worker", "Worker", 16, wide_only=True),
    Col("since", "At", 8, wide_only=True),
    Col("id", "Id", 36, wide_only=True),
)


def detail_columns(tab: str, wide: bool) -> tuple[Col, ...]:
    cols = columns_for(COLUMNS, wide)
    return tuple(
        Col(c.key, AT_LABELS[tab], c.width, c.right) if c.key == "at" else c
        for c in cols
        if c.key != "worker" or tab == "running"
    )


def job_cells(tab: str, row: QueueJobRow, now: float) -> dict[str, Cell]:
    """``at`` reads as the age for ready and failed jobs, the time left for delayed ones and a
    lease's deadline, so each tab's column says what an operator asks of it."""
    when = NULL
    style = ""
    if row.at is not None:
        if tab in ("ready", "failed"):
            when = format_seconds(max(0.0, now - row.at))
        else:
            left = row.at - now
            when = "due" if left <= 0 else format_seconds(left, round_up=True)
            style = "bold red" if tab == "running" and left <= 0 else ""
    return {
        "job": Cell(f"{row.name or '?'} {short_id(row.id, 8)}"),
        "batch": Cell(row.batch or NULL),
        "at": Cell(when, style, right=True),
        "attempts": Cell(str(row.attempts), right=True),
        "worker": Cell(row.worker or NULL),
        "since": Cell(clock_time(row.at)),
        "id": Cell(row.id, "dim"),
    }


@dataclass
class QueueDetailModel:
    queue: str
    tab: str = "ready"
    offsets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUEUE_TABS, 0))
    page: QueueJobPage | None = None
    error: str | None = None

    @property
    def offset(self) -> int:
        return self.offsets[self.tab]

    def rows(self, now: float) -> list[Row]:
        if self.page is None or self.page.tab != self.tab:
            return []
        return [(r.id, job_cells(self.tab, r, now)) for r in self.page.rows]

    def page_note(self) -> str:
        page = self.page
        if page is None or page.tab != self.tab:
            return "loading…"
        if not page.total:
            return f"no {TAB_LABELS[self.tab].lower()} jobs"
        last = page.offset + len(page.rows)
        more = " · pgup/pgdn" if page.total > PAGE_SIZE else ""
        return f"{format_count(page.offset + 1)}–{format_count(last)} of {format_count(page.total)}{more}"

    def step(self, pages: int) -> bool:
        """Move ``pages`` pages; False when already at that end."""
        total = self.page.total if self.page is not None and self.page.tab == self.tab else 0
        new = max(0, min(self.offset + pages * PAGE_SIZE, max(0, (total - 1) // PAGE_SIZE * PAGE_SIZE)))
        if new == self.offset:
            return False
        self.offsets[self.tab] = new
        return True


def header_text(name: str, queue: QueueStats | None, width: int = 160) -> str:
    """The queue's counts; ready and held (by their batch's max_running) add up to what the
    Ready tab lists. Shorter words where the full ones do not fit ``width``, and then no
    failed count rather than a cut one."""
    if queue is None:
        return f"Queue {name} · not in the latest snapshot"
    head = [
        f"Queue {name}",
        *(["PAUSED"] if queue.paused else []),
        f"ready {format_count(queue.ready)}",
        *([f"held {format_count(queue.held)}"] if queue.held else []),
    ]
    delayed, running = format_count(queue.delayed), format_count(queue.reserved)
    failed = f"failed 1h {format_count(queue.failed_past_hour)}"
    return first_fitting(
        [
            [*head, f"delayed {delayed}", f"running {running}", failed],
            [*head, f"delay {delayed}", f"run {running}", failed],
            [*head, f"delay {delayed}", f"run {running}"],
        ],
        width,
    )


class QueueDetailScreen(Gated, Screen[None]):
    BINDING_GROUP_TITLE = "Queue"
    ACTIONS: ClassVar[frozenset[str]] = frozenset({"pause", "clear"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("t", "next_tab", "Next tab"),
        # above the table's own pageup/pagedown: its rows are one fetched page, these fetch the next
        Binding("pagedown", "page(1)", "Next page", show=False, priority=True),
        Binding("pageup", "page(-1)", "Previous page", show=False, priority=True),
        Binding("enter", "open", "Job", show=False),
        Binding("p", "pause", "Pause/continue"),
        Binding("X", "clear", "Clear queue"),
        Binding("y", "copy", "Copy id", show=False),
    ]

    def __init__(self, queue: str) -> None:
        super().__init__(classes="detail-screen")
        self.model = QueueDetailModel(queue)
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("", id="queue-header", classes="detail-header", markup=False)
        yield Tabs(*(Tab(TAB_LABELS[t], id=f"tab-{t}") for t in QUEUE_TABS), id="queue-tabs")
        yield Static("", id="queue-page-note", classes="list-note", markup=False)
        yield KeyedTable(id="queue-jobs")
        yield Footer()

    def on_mount(self) -> None:
        self.draw()
        self.fetch()
        self.set_interval(5.0, self.fetch)
        self.query_one("#queue-jobs").focus()

    @property
    def queue(self) -> QueueStats | None:
        app: Any = self.app
        snapshot = app.state.snapshot
        return snapshot.queue(self.model.queue) if snapshot is not None else None

    def fetch(self) -> None:
        self._fetch(self.model.tab, self.model.offset)

    @work(group="fetch-queue-jobs", exclusive=True, exit_on_error=False)
    async def _fetch(self, tab: str, offset: int) -> None:
        app: Any = self.app
        try:
            page = await app.admin.queue_jobs(self.model.queue, tab, offset, PAGE_SIZE)
        except Exception as exc:  # keep what is shown, say why it is old
            self.model.error = f"{type(exc).__name__}: {exc}"
        else:
            if tab == self.model.tab:
                self.model.page, self.model.error = page, None
                self.loaded = True
        self.draw()

    def draw(self) -> None:
        app: Any = self.app
        header = self.query_one("#queue-header", Static)
        set_text(header, header_text(self.model.queue, self.queue, header.content_region.width or self.size.width))
        note = self.model.page_note()
        if self.model.error:
            note = f"not refreshed: {self.model.error}"
        set_text(self.query_one("#queue-page-note", Static), note)
        table = self.query_one("#queue-jobs", KeyedTable)
        table.show(detail_columns(self.model.tab, bool(app.wide)), self.model.rows(app.clock()))
        self.refresh_gates()

    @on(Tabs.TabActivated, "#queue-tabs")
    def _tab(self, event: Tabs.TabActivated) -> None:
        tab = (event.tab.id or "tab-ready").removeprefix("tab-")
        if tab != self.model.tab:
            self.model.tab = tab
            self.draw()
            self.fetch()

    @on(DataTable.RowSelected, "#queue-jobs")
    def _selected(self) -> None:
        self.action_open()

    @on(DataTable.RowHighlighted, "#queue-jobs")
    def _highlighted(self) -> None:
        self.refresh_gates()

    def can(self, action: str) -> bool | None:
        queue = self.queue
        if action == "pause":
            return queue is not None or None
        if action == "clear":
            return (queue is not None and bool(queue.queued)) or None
        if action in ("open", "copy"):
            return self.query_one("#queue-jobs", KeyedTable).cursor_key is not None or None
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_next_tab(self) -> None:
        self.query_one("#queue-tabs", Tabs).action_next_tab()

    def action_page(self, pages: int) -> None:
        if self.model.step(pages):
            self.fetch()

    def action_open(self) -> None:
        key = self.query_one("#queue-jobs", KeyedTable).cursor_key
        if key is not None:
            self.app.push_screen(JobDetailScreen(self.model.queue, key))

    def action_copy(self) -> None:
        key = self.query_one("#queue-jobs", KeyedTable).cursor_key
        if key is not None:
            from .batches import copy_id

            copy_id(self, key)

    def action_pause(self) -> None:
        queue = self.queue
        if queue is not None:
            run_pause(self, queue)

    def action_clear(self) -> None:
        queue = self.queue
        if queue is not None and queue.queued:
            run_clear(self, queue)


class JobDetailScreen(Screen[None]):
    """One job of a queue: its record's fields and its payload (the only place payloads show)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("y", "copy", "Copy id", show=False),
    ]

    def __init__(self, queue: str, job_id: str) -> None:
        super().__init__(classes="detail-screen")
        self.queue, self.job_id = queue, job_id
        self.detail: JobDetail | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(
            f"Job {self.job_id} · queue {self.queue} · loading…", id="job-header", classes="detail-header", markup=False
        )
        yield Static("", id="job-fields", markup=False)
        yield Static("Payload", classes="section-title", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._fetch()

    @work(group="fetch-job", exclusive=True, exit_on_error=False)
    async def _fetch(self) -> None:
        app: Any = self.app
        try:
            detail = await app.admin.job_detail(self.queue, self.job_id)
        except Exception as exc:  # say why, keep the screen
            set_text(
                self.query_one("#job-header", Static), f"Job {self.job_id} · not read: {type(exc).__name__}: {exc}"
            )
            return
        self.detail, self.loaded = detail, True
        if detail is None:
            set_text(
                self.query_one("#job-header", Static), f"Job {self.job_id} · gone (finished, forgotten or expired)"
            )
            return
        set_text(self.query_one("#job-header", Static), f"{detail.name or '?'} {detail.id} · queue {detail.queue}")
        width = max(len(k) for k, _ in detail.fields)
        set_text(
            self.query_one("#job-fields", Static),
            "\n".join(f"{k.ljust(width)}  {v}" for k, v in detail.fields),
            layout=True,
        )
        await self.mount(LazyText(detail.payload, id="job-payload", classes="code"), before=self.query_one(Footer))

    def action_back(self) -> None:
        self.dismiss()

    def action_copy(self) -> None:
        from .batches import copy_id

        copy_id(self, self.job_id)
