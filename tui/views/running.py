"""Screen 6 Running now: every leased job, longest-running first, with its worker, how long it has
run (ticking locally), the time left to its timeout and the age of its lease; ``k`` cancels one.

The lease table is fetched as a page; between fetches the times move on from the fetched values
with the console's clock, so nothing is read from Redis to tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from evalharness.core.admin import FailedFilter, RunningRow
from evalharness.core.format import NULL, format_count, format_seconds

from ..messages import PageFailed, PageFetched
from .actions import confirm_and_run
from .common import Cell, Col, Gated, KeyedTable, Row, columns_for, set_text, short_id, text_bar
from .dialogs import Confirmation, FilterDialog

TIMEOUT_WARNING = 10.0
"""Seconds to the timeout under which "T/O in" turns red."""

CANCEL_GRACE = 30.0
"""What the cancel dialog states as the grace before a blocking job's worker is replaced."""

COLUMNS: tuple[Col, ...] = (
    Col("job", "Job", 14),
    Col("queue", "Queue", 9),
    Col("batch", "Batch", 9),
    Col("worker", "Worker", 12),
    Col("running", "Running", 7, right=True),
    Col("timeout", "T/O in", 7, right=True),
    Col("lease", "Lease", 5, right=True),
    Col("attempt", "Att", 5, right=True, wide_only=True),
    Col("progress", "Progress", 26, wide_only=True),
    Col("sample", "Sample", 6, right=True, wide_only=True),
    Col("releases", "429s", 5, right=True, wide_only=True),
)


WIDE_JOB = 28


def running_columns(wide: bool) -> tuple[Col, ...]:
    cols = columns_for(COLUMNS, wide)
    return tuple(replace(c, width=WIDE_JOB) if wide and c.key == "job" else c for c in cols)


def elapsed(row: RunningRow, now: float) -> float | None:
    return None if row.started_at is None else max(0.0, now - row.started_at)


def time_to_timeout(row: RunningRow, now: float) -> float | None:
    if row.started_at is None or row.timeout is None:
        return None
    return row.started_at + row.timeout - now


def lease_overdue(row: RunningRow, now: float) -> bool:
    """A renewal is overdue once half the lease has passed without one (workers renew well before),
    or the lease deadline itself has passed: the sign of a stuck worker."""
    if row.lease_deadline is not None and now > row.lease_deadline:
        return True
    if row.renewed_at is not None and row.lease_seconds:
        return now - row.renewed_at > row.lease_seconds / 2
    return False


def running_cells(row: RunningRow, now: float, p95: float | None) -> dict[str, Cell]:
    ran = elapsed(row, now)
    left = time_to_timeout(row, now)
    lease_age = None if row.renewed_at is None else now - row.renewed_at
    name = f"{row.name} {short_id(row.id, 6)}"
    if row.cancel_requested:
        name = "✕ " + name
    progress = ""
    if row.progress is not None:
        progress = text_bar(row.progress, 8) + (f" {row.progress_note}" if row.progress_note else "")
    tries = f"{row.attempt}/{row.tries}" if row.tries else str(row.attempt)
    return {
        "job": Cell(name, "dim" if row.cancel_requested else ""),
        "queue": Cell(row.queue),
        "batch": Cell(row.batch or NULL),
        "worker": Cell(row.worker),
        "running": Cell(
            NULL if ran is None else format_seconds(ran),
            right=True,
            style="yellow" if ran is not None and p95 is not None and ran > p95 else "",
        ),
        "timeout": Cell(
            NULL if left is None else ("over" if left < 0 else format_seconds(left, round_up=True)),
            right=True,
            style="bold red" if left is not None and left < TIMEOUT_WARNING else "",
        ),
        "lease": Cell(
            NULL if lease_age is None else format_seconds(lease_age),
            right=True,
            style="bold red" if lease_overdue(row, now) else "",
        ),
        "attempt": Cell(tries, right=True),
        "progress": Cell(progress),
        "sample": Cell(NULL if row.sample is None else str(row.sample), right=True),
        "releases": Cell(format_count(row.releases), right=True),
    }


def cancel_confirmation(row: RunningRow, grace: float = CANCEL_GRACE) -> Confirmation:
    body = (
        f"The worker {row.worker} is told to stop {row.name} at once (at its next lease renewal if it misses "
        f"the word); a blocking job is "
        f"killed after {format_seconds(grace)}; it is recorded as cancelled with its partial state."
    )
    return Confirmation(f"Cancel running job {short_id(row.id)}?", body, "Cancel job")


def matches(row: RunningRow, flt: FailedFilter) -> bool:
    if flt.queue and row.queue != flt.queue:
        return False
    if flt.batch and row.batch != flt.batch:
        return False
    if flt.name and flt.name.lower() not in row.name.lower():
        return False
    if flt.text:
        text = flt.text.lower()
        return text in row.id.lower() or text in row.name.lower() or text in row.worker.lower()
    return True


@dataclass
class RunningModel:
    """The fetched lease table and the filter; cells are computed for a given clock reading."""

    page: tuple[RunningRow, ...] = ()
    filter_text: str = ""
    error: str | None = None

    @property
    def rows(self) -> list[RunningRow]:
        flt = FailedFilter.parse(self.filter_text)
        # Longest-running first; a job not started yet (no time) last; ties by id, so rows stay put.
        return sorted(
            (r for r in self.page if matches(r, flt)), key=lambda r: (r.started_at is None, r.started_at or 0.0, r.id)
        )

    def find(self, key: str | None) -> RunningRow | None:
        return next((r for r in self.page if r.id == key), None)

    def table_rows(self, now: float, p95: Mapping[str, float | None]) -> list[Row]:
        return [(r.id, running_cells(r, now, p95.get(r.queue))) for r in self.rows]

    def title(self) -> str:
        shown = len(self.rows)
        text = f"{format_count(shown)} running"
        if self.filter_text:
            text += f" · filter {self.filter_text}"
        return text


class RunningView(Gated, Vertical):
    BINDING_GROUP_TITLE = "Running now"
    ACTIONS: ClassVar[frozenset[str]] = frozenset({"cancel"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "cancel", "Cancel job"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("y", "copy", "Copy id", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = RunningModel()

    def compose(self) -> ComposeResult:
        with Horizontal(classes="list-bar"):
            yield Static("Running now", classes="list-title", markup=False)
            yield Static("", id="running-note", classes="list-note", markup=False)
        yield KeyedTable(id="running-table")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#running-table", KeyedTable)

    @property
    def highlighted(self) -> RunningRow | None:
        return self.model.find(self.table.cursor_key)

    def fetch(self) -> None:
        app: Any = self.app
        if app.admin is not None:
            self._fetch()

    @work(group="fetch-running", exclusive=True, exit_on_error=False)
    async def _fetch(self) -> None:
        app: Any = self.app
        try:
            rows = await app.admin.running()
        except Exception as exc:  # keep the rows, say why they are old
            self.post_message(PageFailed("running", f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(PageFetched("running", tuple(rows), app.clock()))

    @on(PageFetched)
    def _fetched(self, message: PageFetched) -> None:
        if message.view != "running":
            return
        message.stop()
        self.model.page = message.data
        self.model.error = None
        self.draw()

    @on(PageFailed)
    def _failed(self, message: PageFailed) -> None:
        if message.view != "running":
            return
        message.stop()
        self.model.error = message.error
        self.draw()

    def p95_by_queue(self) -> dict[str, float | None]:
        app: Any = self.app
        snapshot = app.state.snapshot
        return {} if snapshot is None else {q.name: q.runtime_p95 for q in snapshot.queues}

    def draw(self) -> None:
        """Also the 1 s tick: only the time cells change, and only those are written."""
        app: Any = self.app
        note = f"not refreshed: {self.model.error}" if self.model.error else self.model.title()
        widget = self.query_one("#running-note", Static)
        set_text(widget, note)
        widget.set_class(self.model.error is not None, "-error")
        self.table.show(running_columns(bool(app.wide)), self.model.table_rows(app.clock(), self.p95_by_queue()))
        self.refresh_gates()

    @on(DataTable.RowHighlighted, "#running-table")
    def _highlighted(self) -> None:
        self.refresh_gates()

    def can(self, action: str) -> bool | None:
        row = self.highlighted
        if action == "cancel":
            return (row is not None and not row.cancel_requested) or None
        if action == "copy":
            return row is not None or None
        return True

    @work(group="dialog", exit_on_error=False)
    async def action_filter(self) -> None:
        text = await self.app.push_screen_wait(FilterDialog(self.model.filter_text, what="running jobs"))
        if text is not None:
            self.model.filter_text = text
            self.draw()

    def action_copy(self) -> None:
        row = self.highlighted
        if row is not None:
            from .batches import copy_id

            copy_id(self, row.id)

    def action_cancel(self) -> None:
        row = self.highlighted
        if row is None or row.cancel_requested:
            return

        async def go() -> None:
            admin = self.app.admin  # type: ignore[attr-defined]
            await confirm_and_run(
                self,
                f"Cancel {short_id(row.id)}",
                cancel_confirmation(row),
                lambda: admin.cancel_job(row.id, row.queue),
            )

        self.run_worker(go(), group="action", exit_on_error=False)
