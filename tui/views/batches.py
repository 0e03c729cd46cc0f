"""Screen 4 Batches and 4b Batch detail: progress, counts kept apart (pending, running, succeeded,
failed, removed), rate and ETA; cancel and retry with the consequence stated first.

:class:`BatchesModel` turns fetched :class:`BatchRow` pages into cells and dialog texts without
Textual; :class:`BatchesView` and :class:`BatchDetailScreen` draw them and run the actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static

from evalharness.core.admin import BatchDetail, BatchRow, FailedFilter, FailedRow
from evalharness.core.format import NULL, format_count, format_rate, format_seconds

from ..fmt import sparkline
from ..messages import PageFailed, PageFetched
from .actions import confirm_and_run
from .common import (
    TYPED_CONFIRM_OVER,
    Cell,
    Col,
    Gated,
    KeyedTable,
    Row,
    ago,
    clock_time,
    columns_for,
    plural,
    set_text,
    short_id,
    text_bar,
    wrap_parts,
)
from .dialogs import BATCH_FILTER_HELP, Confirmation, FilterDialog

CHIPS = ("active", "all", "failed", "cancelled")
"""The state chips of the list, cycled with ``f``."""

ACTIVE = frozenset({"pending", "running"})

STATE_LABEL = {
    "pending": "pending",
    "running": "running",
    "succeeded": "succeeded",
    "finished_with_failures": "done ⚠",
    "failed": "failed",
    "cancelled": "cancelled",
}
STATE_STYLE = {
    "pending": "",
    "running": "bold green",
    "succeeded": "green",
    "finished_with_failures": "yellow",
    "failed": "bold red",
    "cancelled": "dim",
}

COLUMNS: tuple[Col, ...] = (
    Col("batch", "Batch", 14),
    Col("state", "State", 9),
    Col("queue", "Queue", 10, wide_only=True),
    Col("tenant", "Tenant", 8, wide_only=True),
    Col("progress", "Progress", 15),
    Col("counts", "Done/Fail/Total", 15, right=True),
    Col("pending", "Pending", 7, right=True, wide_only=True),
    Col("running", "Running", 7, right=True, wide_only=True),
    Col("rate", "Rate", 5, right=True),
    Col("eta", "ETA", 7, right=True),
    Col("created", "Created", 8, wide_only=True),
    Col("finished", "Finished", 8, wide_only=True),
)

FAILED_COLUMNS: tuple[Col, ...] = (
    Col("job", "Job", 9),
    Col("sample", "Sample", 6, right=True),
    Col("exception", "Exception", 30),
    Col("att", "Att", 3, right=True),
    Col("failed", "Failed", 8),
)


def queued(row: BatchRow) -> int:
    """Jobs waiting in a queue: not finished and not running."""
    return max(0, row.pending - row.running)


def eta_seconds(row: BatchRow) -> float | None:
    """The time left at the last minute's rate; None when it cannot be told (or nothing is left).
    What is left is the total less what is done: an eval run's batch declares the whole dataset,
    so the samples its producer has yet to dispatch count too, not only the pending jobs."""
    left = max(0, row.total - row.done)
    if row.state not in ACTIVE or not left or not row.rate_per_min:
        return None
    return left / row.rate_per_min * 60


def rate_text(row: BatchRow, *, unit: str = "/m") -> str:
    if row.rate_per_min is None:
        return NULL
    return f"{format_rate(row.rate_per_min)}{unit}"


def counts_parts(row: BatchRow) -> list[str]:
    return [
        f"total {format_count(row.total)}",
        f"pending {format_count(queued(row))}",
        f"running {format_count(row.running)}",
        f"succeeded {format_count(row.succeeded)}",
        f"failed {format_count(row.failed)}",
        f"removed {format_count(row.removed)}",
    ]


def counts_line(row: BatchRow) -> str:
    return " · ".join(counts_parts(row))


def timing_line(row: BatchRow, rates: Sequence[float] = ()) -> str:
    return " · ".join(timing_parts(row, rates))


def timing_parts(row: BatchRow, rates: Sequence[float] = ()) -> list[str]:
    parts = [f"created {clock_time(row.created_at)}", f"started {clock_time(row.started_at)}"]
    if row.finished_at is not None:
        parts.append(f"finished {clock_time(row.finished_at)}")
    if row.cancelled_at is not None:
        parts.append(f"cancelled {clock_time(row.cancelled_at)}")
    rate = f"rate {rate_text(row, unit='/min')}"
    if len(rates) > 1:
        rate += " " + sparkline(list(rates))
    parts.append(rate)
    if row.metrics:
        first, value = next(iter(row.metrics.items()))
        parts.append(f"eval {first} {value:.2f} (n={format_count(row.succeeded)})")
    return parts


def eta_text(row: BatchRow) -> str:
    eta = eta_seconds(row)
    return NULL if eta is None else format_seconds(eta, round_up=True)


def header_line(row: BatchRow) -> str:
    parts = [
        row.name or row.id,
        short_id(row.id, 10),
        STATE_LABEL.get(row.state, row.state).upper(),
        f"queue {row.queue}",
    ]
    if row.tenant:
        parts.append(f"tenant {row.tenant}")
    return "  ".join(parts)


def callbacks_line(row: BatchRow) -> str:
    if not row.callbacks:
        return "callbacks: none"
    return "callbacks: " + " · ".join(f"{stage} {status}" for stage, status in row.callbacks.items())


def metrics_line(row: BatchRow) -> str | None:
    if not row.metrics:
        return None
    means = " · ".join(f"{name} {value:.3f}" for name, value in row.metrics.items())
    return f"eval running means (n={format_count(row.succeeded)}): {means}"


def batch_cells(row: BatchRow) -> dict[str, Cell]:
    label = row.name or row.id
    return {
        "batch": Cell(label),
        "state": Cell(STATE_LABEL.get(row.state, row.state), STATE_STYLE.get(row.state, "")),
        "queue": Cell(row.queue),
        "tenant": Cell(row.tenant or NULL),
        "progress": Cell(text_bar(row.progress), "green" if row.state == "succeeded" else ""),
        "counts": Cell(
            f"{format_count(row.done)}/{format_count(row.failed)}/{format_count(row.total)}",
            right=True,
            style="red" if row.failed else "",
        ),
        "pending": Cell(format_count(queued(row)), right=True),
        "running": Cell(format_count(row.running), right=True),
        "rate": Cell(rate_text(row), right=True),
        "eta": Cell(eta_text(row), right=True),
        "created": Cell(clock_time(row.created_at)),
        "finished": Cell(clock_time(row.finished_at or row.cancelled_at)),
    }


def failed_job_cells(row: FailedRow, now: float) -> dict[str, Cell]:
    return {
        "job": Cell(short_id(row.id, 9)),
        "sample": Cell(NULL if row.sample is None else str(row.sample), right=True),
        "exception": Cell(f"{row.exception}: {row.message}" if row.message else row.exception, "red"),
        "att": Cell(str(row.attempts), right=True),
        "failed": Cell(ago(row.failed_at, now)),
    }


def cancel_confirmation(row: BatchRow, queued_jobs: int, running_jobs: int) -> Confirmation:
    """The consequence of a cancel, with the engine's counts; typed when it touches over 1,000 jobs."""
    body = (
        f"Removes {plural(queued_jobs, 'queued job')}; {format_count(running_jobs)} running will be told to stop; "
        "`finally` runs once. Succeeded and failed jobs are kept."
    )
    typed = row.name or row.id if queued_jobs + running_jobs > TYPED_CONFIRM_OVER else None
    return Confirmation(f"Cancel batch {row.name or row.id}?", body, "Cancel batch", typed)


def retry_confirmation(row: BatchRow) -> Confirmation:
    body = (
        f"Queues {plural(row.failed, 'failed job')} of this batch again; the batch reopens "
        "and its callbacks wait for them."
    )
    typed = row.name or row.id if row.failed > TYPED_CONFIRM_OVER else None
    return Confirmation(f"Retry failed jobs of {row.name or row.id}?", body, "Retry", typed)


def matches(row: BatchRow, flt: FailedFilter) -> bool:
    """The list filter over a fetched page: facets are exact, free text finds id or name."""
    if flt.queue and row.queue != flt.queue:
        return False
    if flt.batch and flt.batch not in (row.id, row.name, row.run_id):
        return False
    if flt.name and flt.name.lower() not in (row.name or "").lower():
        return False
    if flt.text:
        text = flt.text.lower()
        if text not in row.id.lower() and text not in (row.name or "").lower() and text != (row.tenant or "").lower():
            return False
    return True


def rate_points(points: Sequence[float], row: BatchRow, done_before: int | None) -> list[float]:
    """The rate sparkline's points: one more each time the batch has moved on (the last 20)."""
    if done_before is not None and row.done == done_before and points:
        return list(points)
    return [*points, row.rate_per_min or 0.0][-20:]


def sort_key(row: BatchRow) -> tuple[int, float, str]:
    """Running first, then pending, then the rest; newest first within each."""
    rank = 0 if row.state == "running" else 1 if row.state == "pending" else 2
    return (rank, -(row.created_at or 0.0), row.id)


@dataclass
class BatchesModel:
    """The list as plain values: the chip, the filter, the fetched page and the rows it shows."""

    chip: str = "active"
    filter_text: str = ""
    page: tuple[BatchRow, ...] = ()
    fetched_at: float | None = None
    error: str | None = None
    rates: dict[str, list[float]] = field(default_factory=dict)
    _done: dict[str, int] = field(default_factory=dict)
    _cells: dict[str, tuple[BatchRow, dict[str, Cell]]] = field(default_factory=dict)

    @property
    def filter(self) -> FailedFilter:
        return FailedFilter.parse(self.filter_text)

    def next_chip(self) -> str:
        self.chip = CHIPS[(CHIPS.index(self.chip) + 1) % len(CHIPS)]
        return self.chip

    def take(self, page: Sequence[BatchRow], at: float) -> None:
        self.page = tuple(page)
        self.fetched_at = at
        self.error = None
        for row in page:
            if row.rate_per_min is not None and row.state in ACTIVE:
                self.rates[row.id] = rate_points(self.rates.get(row.id, []), row, self._done.get(row.id))
                self._done[row.id] = row.done

    @property
    def rows(self) -> list[BatchRow]:
        flt = self.filter
        return sorted((r for r in self.page if matches(r, flt)), key=sort_key)

    def find(self, key: str | None) -> BatchRow | None:
        return next((r for r in self.page if r.id == key), None)

    def table_rows(self) -> list[Row]:
        """The rows' cells; a batch whose values did not change since the last page keeps the very
        cells it had, which the table passes over without comparing them."""
        made: dict[str, tuple[BatchRow, dict[str, Cell]]] = {}
        for row in self.rows:
            kept = self._cells.get(row.id)
            made[row.id] = kept if kept is not None and kept[0] == row else (row, batch_cells(row))
        self._cells = made
        return [(key, cells) for key, (_, cells) in made.items()]

    def chips_line(self) -> list[tuple[str, bool]]:
        return [(chip, chip == self.chip) for chip in CHIPS]

    def title(self) -> str:
        shown = len(self.rows)
        text = f"{shown} {'batch' if shown == 1 else 'batches'}"
        if self.filter_text:
            text += f" · filter {self.filter_text}"
        return text


def pane_lines(row: BatchRow | None, rates: Sequence[float] = ()) -> list[str]:
    """The 160-column side pane: the highlighted batch's detail, callbacks and running means."""
    if row is None:
        return ["No batch highlighted."]
    lines = [
        header_line(row),
        f"{text_bar(row.progress, 30)}  ETA {eta_text(row)}",
        counts_line(row),
        timing_line(row, rates),
        callbacks_line(row),
    ]
    means = metrics_line(row)
    if means:
        lines.append(means)
    return lines


# --- widgets -----------------------------------------------------------------------------------


class BatchesView(Gated, Vertical):
    """The list: chips, the table, and at 160 columns the highlighted batch's detail below it."""

    BINDING_GROUP_TITLE = "Batches"
    ACTIONS: ClassVar[frozenset[str]] = frozenset({"cancel", "retry"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Detail", show=False),
        Binding("c", "cancel", "Cancel batch"),
        Binding("R", "retry", "Retry failed"),
        Binding("f", "chip", "State"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("y", "copy", "Copy id", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = BatchesModel()
        self._pane_text: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="list-bar"):
            yield Static("", id="batch-chips", classes="chips", markup=False)
            yield Static("", id="batch-note", classes="list-note", markup=False)
        yield KeyedTable(id="batches-table")
        yield Static("", id="batch-pane", classes="side-pane", markup=False)

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#batches-table", KeyedTable)

    @property
    def highlighted(self) -> BatchRow | None:
        return self.model.find(self.table.cursor_key)

    # --- data ---------------------------------------------------------------------------------

    def fetch(self) -> None:
        app: Any = self.app
        if app.admin is None:
            return
        self._fetch(self.model.chip)

    def tick(self) -> None:
        """Active batches update live: while the page shows one, it is read again every second
        (the other pages every 5 s, as every list)."""
        if any(row.state in ACTIVE for row in self.model.rows):
            self.fetch()

    @work(group="fetch-batches", exclusive=True, exit_on_error=False)
    async def _fetch(self, chip: str) -> None:
        app: Any = self.app
        try:
            page = await app.admin.batches_page(chip)
        except Exception as exc:  # a lost Redis or a refused read: the list keeps its rows and says so
            self.post_message(PageFailed("batches", f"{type(exc).__name__}: {exc}"))
        else:
            if chip == self.model.chip:
                self.post_message(PageFetched("batches", tuple(page), app.clock()))

    @on(PageFetched)
    def _fetched(self, message: PageFetched) -> None:
        if message.view != "batches":
            return
        message.stop()
        self.model.take(message.data, message.at)
        self.draw()

    @on(PageFailed)
    def _failed(self, message: PageFailed) -> None:
        if message.view != "batches":
            return
        message.stop()
        self.model.error = message.error
        self.draw()

    # --- drawing ------------------------------------------------------------------------------

    def draw(self) -> None:
        app: Any = self.app
        wide = bool(app.wide)
        chips = "  ".join(f"[{c}]" if on_ else c for c, on_ in self.model.chips_line())
        set_text(self.query_one("#batch-chips", Static), chips, layout=True)
        note = self.model.error and f"not refreshed: {self.model.error}" or self.model.title()
        set_text(self.query_one("#batch-note", Static), note)
        self.query_one("#batch-note", Static).set_class(self.model.error is not None, "-error")
        self.table.show(columns_for(COLUMNS, wide), self.model.table_rows())
        self._draw_pane(wide)
        self.refresh_gates()

    def _draw_pane(self, wide: bool) -> None:
        if not wide:
            return
        row = self.highlighted
        text = "\n".join(pane_lines(row, self.model.rates.get(row.id, ()) if row else ()))
        if text != self._pane_text:
            self.query_one("#batch-pane", Static).update(text, layout=False)  # a fixed-size pane
            self._pane_text = text

    @on(DataTable.RowHighlighted, "#batches-table")
    def _highlighted(self) -> None:
        app: Any = self.app
        self._draw_pane(bool(app.wide))
        self.refresh_gates()

    @on(DataTable.RowSelected, "#batches-table")
    def _selected(self) -> None:
        self.action_open()

    # --- actions ------------------------------------------------------------------------------

    def can(self, action: str) -> bool | None:
        row = self.highlighted
        if action == "cancel":
            return row is not None and row.state in ACTIVE or None
        if action == "retry":
            return row is not None and row.failed > 0 or None
        if action in ("open", "copy"):
            return row is not None or None
        return True

    def action_open(self) -> None:
        row = self.highlighted
        if row is not None:
            self.app.push_screen(BatchDetailScreen(row, self.model.rates.get(row.id, [])))

    def action_chip(self) -> None:
        self.model.next_chip()
        self.model.page = ()
        self.draw()
        self.fetch()

    @work(group="dialog", exit_on_error=False)
    async def action_filter(self) -> None:
        text = await self.app.push_screen_wait(
            FilterDialog(
                self.model.filter_text, what="batches", hint=BATCH_FILTER_HELP, placeholder="queue:judge nightly"
            )
        )
        if text is not None:
            self.model.filter_text = text
            self.draw()

    def action_copy(self) -> None:
        row = self.highlighted
        if row is not None:
            copy_id(self, row.id)

    def action_cancel(self) -> None:
        row = self.highlighted
        if row is not None and row.state in ACTIVE:
            run_cancel(self, row)

    def action_retry(self) -> None:
        row = self.highlighted
        if row is not None and row.failed:
            run_retry(self, row)


def copy_id(node: Any, value: str) -> None:
    """Copy through the terminal (OSC 52), which works over SSH and tmux."""
    node.app.copy_to_clipboard(value)
    node.app.notify(f"Copied {value}", timeout=3, markup=False)


def run_cancel(node: Any, row: BatchRow) -> None:
    async def go() -> None:
        admin = node.app.admin
        try:
            queued_jobs, running_jobs = await admin.cancel_batch_preview(row.id)
        except Exception as exc:  # Redis lost before the dialog: say so, change nothing
            node.app.notify(
                f"Cancel {row.name or row.id} failed: {type(exc).__name__}: {exc}",
                title="Redis",
                severity="error",
                markup=False,
                timeout=10,
            )
            return
        await confirm_and_run(
            node,
            f"Cancel {row.name or row.id}",
            cancel_confirmation(row, queued_jobs, running_jobs),
            lambda: admin.cancel_batch(row.id),
        )

    node.run_worker(go(), group="action", exit_on_error=False)


def run_retry(node: Any, row: BatchRow) -> None:
    async def go() -> None:
        admin = node.app.admin
        await confirm_and_run(
            node, f"Retry {row.name or row.id}", retry_confirmation(row), lambda: admin.retry_batch(row.id)
        )

    node.run_worker(go(), group="action", exit_on_error=False)


class BatchFailedTable(KeyedTable):
    """The batch's newest failed jobs: ``/`` still filters them, but the footer leaves it out so
    that at 80 columns it holds the screen's own keys (Back, Cancel batch, Retry failed) and the
    app's (Quit, Keys) in full."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/", show=False),
    ]


class BatchDetailScreen(Gated, Screen[None]):
    """4b: one batch, its counts kept apart, its timing and its failed jobs."""

    BINDING_GROUP_TITLE = "Batch"
    ACTIONS: ClassVar[frozenset[str]] = frozenset({"cancel", "retry"})
    GATED: ClassVar[tuple[str, ...]] = ("open",)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("c", "cancel", "Cancel batch"),
        Binding("R", "retry", "Retry failed"),
        Binding("enter", "open", "Failed job", show=False),
        Binding("y", "copy", "Copy id", show=False),
    ]

    def __init__(self, row: BatchRow, rates: Sequence[float] = ()) -> None:
        super().__init__(classes="detail-screen")
        self.row = row
        self._ticks = 0  # seconds shown, for the slower reads of a finished batch
        self.failed: tuple[FailedRow, ...] = ()
        self.rates = list(rates)
        self.error: str | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("", id="batch-header", classes="detail-header", markup=False)
        with Horizontal(id="batch-progress-line"):
            yield ProgressBar(total=100, show_eta=False, show_percentage=True, id="batch-progress")
            yield Static("", id="batch-eta", markup=False)
        yield Static("", id="batch-counts", markup=False)
        yield Static("", id="batch-timing", markup=False)
        yield Static("", id="batch-extra", classes="wide-only", markup=False)
        yield Static("", id="batch-failed-title", classes="section-title", markup=False)
        yield BatchFailedTable(id="batch-failed-table")
        yield Footer()

    def on_mount(self) -> None:
        self.draw()
        self.fetch()
        self.set_interval(1.0, self._live)
        self.query_one("#batch-failed-table").focus()

    def _live(self) -> None:
        """Read again every second while the batch is active, every 5 s once it has finished."""
        self._ticks += 1
        if self.row.state in ACTIVE or self._ticks % 5 == 0:
            self.fetch()

    def fetch(self) -> None:
        self._fetch()

    @work(group="fetch-batch", exclusive=True, exit_on_error=False)
    async def _fetch(self) -> None:
        app: Any = self.app
        try:
            detail: BatchDetail | None = await app.admin.batch_detail(self.row.id)
        except Exception as exc:  # keep what is shown, say why it is old
            self.error = f"{type(exc).__name__}: {exc}"
        else:
            self.loaded = True
            if detail is None:
                self.error = "this batch no longer exists"
            else:
                self.error = None
                if detail.row.rate_per_min is not None and detail.row.state in ACTIVE:
                    self.rates = rate_points(self.rates, detail.row, self.row.done)
                self.row, self.failed = detail.row, detail.failed_jobs
        self.draw()

    def draw(self) -> None:
        app: Any = self.app
        row = self.row
        self.query_one("#batch-header", Static).update(header_line(row))
        self.query_one("#batch-progress", ProgressBar).update(progress=round(row.progress * 100, 1))
        self.query_one("#batch-eta", Static).update(f"ETA {eta_text(row)}")
        # broken between parts at the screen's width, never inside one ("removed" and its count)
        width = max(20, self.app.size.width - 2)
        self.query_one("#batch-counts", Static).update(wrap_parts(counts_parts(row), width))
        self.query_one("#batch-timing", Static).update(wrap_parts(timing_parts(row, self.rates), width))
        extra = [callbacks_line(row)]
        means = metrics_line(row)
        if means:
            extra.append(means)
        self.query_one("#batch-extra", Static).update("\n".join(extra))
        title = f"Failed jobs ({format_count(row.failed)})"
        if self.loaded and len(self.failed) < row.failed:
            title += f" · newest {format_count(len(self.failed))} shown; all in Failed (5) with batch:{row.id}"
        if self.error:
            title += f" · not refreshed: {self.error}"
        elif not self.loaded:
            title += " · loading…"
        self.query_one("#batch-failed-title", Static).update(title)
        now = app.clock()
        table = self.query_one("#batch-failed-table", KeyedTable)
        table.show(FAILED_COLUMNS, [(f.id, failed_job_cells(f, now)) for f in self.failed])
        self.refresh_gates()

    def can(self, action: str) -> bool | None:
        if action == "cancel":
            return self.row.state in ACTIVE or None
        if action == "retry":
            return self.row.failed > 0 or None
        if action == "open":
            return bool(self.failed) or None
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_copy(self) -> None:
        copy_id(self, self.row.id)

    def action_cancel(self) -> None:
        if self.row.state in ACTIVE:
            run_cancel(self, self.row)

    def action_retry(self) -> None:
        if self.row.failed:
            run_retry(self, self.row)

    def action_open(self) -> None:
        from .failed import FailedDetailScreen

        table = self.query_one("#batch-failed-table", KeyedTable)
        job = next((f for f in self.failed if f.id == table.cursor_key), None)
        if job is not None:
            self.app.push_screen(FailedDetailScreen(job))

    @on(DataTable.RowSelected, "#batch-failed-table")
    def _selected(self) -> None:
        self.action_open()
