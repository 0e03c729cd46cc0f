"""Screen 5 Failed jobs and 5b Failed job detail: a page of the failed-job store, filtered by its
indexes (queue, batch, exception class, job name), grouped by exception class with ``g``; retry and
forget one, or every job matching the filter, with the count stated first.

:class:`FailedModel` holds the page and builds cells and dialog texts without Textual.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from rich.syntax import Syntax
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from evalharness.core.admin import FailedDetail, FailedFilter, FailedGroup, FailedPage, FailedRow
from evalharness.core.format import NULL, format_count, format_duration

from ..fmt import two_columns
from ..messages import PageFailed, PageFetched
from .actions import confirm_and_run
from .common import (
    PAGE_SIZE,
    TYPED_CONFIRM_OVER,
    Cell,
    Col,
    Gated,
    KeyedTable,
    LazyText,
    Row,
    ago,
    clock_time,
    columns_for,
    plural,
    set_text,
    short_id,
)
from .dialogs import Confirmation, FilterDialog

HIGHLIGHT_LIMIT = 64_000
"""Text longer than this (characters) opens plain in a :class:`LazyText`, which draws only the
lines in view, instead of being highlighted as a whole: a 1 MB traceback must not freeze the screen."""

PANE_LINES = 15
"""Traceback lines in the 160-column side pane."""

COLUMNS: tuple[Col, ...] = (
    Col("job", "Job", 9),
    Col("queue", "Queue", 8),
    Col("batch", "Batch", 8),
    Col("exception", "Exception", 18),
    Col("att", "Att", 3, right=True),
    Col("failed", "Failed", 7),
    Col("retried", "↻", 8),
    Col("runtime", "Runtime", 7, right=True, wide_only=True),
    Col("worker", "Worker", 14, wide_only=True),
    Col("tags", "Tags", 10, wide_only=True),
    Col("timeout", "T/O?", 4, wide_only=True),
)
WIDE_EXCEPTION = 44

GROUP_COLUMNS: tuple[Col, ...] = (
    Col("exception", "Exception class", 40),
    Col("count", "Jobs", 8, right=True),
)


def exception_text(row: FailedRow) -> str:
    return f"{row.exception}: {row.message}" if row.message else row.exception


def retried_text(row: FailedRow) -> str:
    if not row.retried_by:
        return ""
    return f"↻ {row.retry_state}" if row.retry_state else "↻"


def failed_cells(row: FailedRow, now: float) -> dict[str, Cell]:
    retried = retried_text(row)
    return {
        "job": Cell(short_id(row.id, 9)),
        "queue": Cell(row.queue),
        "batch": Cell(row.batch or NULL),
        "exception": Cell(exception_text(row), "red"),
        "att": Cell(str(row.attempts), right=True),
        "failed": Cell(ago(row.failed_at, now)),
        "retried": Cell(retried, "green" if row.retry_state == "succeeded" else "yellow" if retried else ""),
        "runtime": Cell(format_duration(row.runtime), right=True),
        "worker": Cell(row.worker or NULL),
        "tags": Cell(",".join(row.tags) or NULL),
        "timeout": Cell("yes" if row.kind == "timeout" else ""),
    }


def header_line(row: FailedRow) -> str:
    kind = f" ({row.kind})" if row.kind and row.kind != "exception" else ""
    tries = f"/{row.tries}" if row.tries else ""
    parts = [row.name, short_id(row.id, 9), f"FAILED{kind}", f"attempt {row.attempts}{tries}", f"queue {row.queue}"]
    if row.batch:
        parts.append(f"batch {row.batch}")
    return "  ".join(parts)


def matching_target(flt: FailedFilter) -> str:
    """What must be typed for an action over everything a filter matches: its batch, else its
    queue, else its exception class, else the word "all"."""
    return flt.batch or flt.queue or flt.exception or flt.name or "all"


def retry_all_confirmation(flt: FailedFilter, count: int) -> Confirmation:
    described = flt.describe() or "no filter: every failed job"
    body = (
        f"Queues {plural(count, 'failed job')} again, matching {described}, under new ids that name the job "
        "they retry. They leave this list; one that fails again comes back."
    )
    typed = matching_target(flt) if count > TYPED_CONFIRM_OVER else None
    return Confirmation(f"Retry all matching ({format_count(count)})?", body, "Retry all", typed)


def forget_all_confirmation(flt: FailedFilter, count: int) -> Confirmation:
    described = flt.describe() or "no filter: every failed job"
    body = (
        f"Deletes {plural(count, 'failed job record')} matching {described}: tracebacks, payloads and "
        "partial state. This cannot be undone."
    )
    return Confirmation(f"Forget all matching ({format_count(count)})?", body, "Forget all", matching_target(flt))


def retry_confirmation(row: FailedRow) -> Confirmation:
    already = f" It was already retried ({row.retry_state or 'queued'})." if row.retried_by else ""
    return Confirmation(
        f"Retry {row.name} {short_id(row.id)}?",
        f"Queues this job again on {row.queue} with a fresh set of tries.{already}",
        "Retry",
    )


def forget_confirmation(row: FailedRow) -> Confirmation:
    return Confirmation(
        f"Forget {row.name} {short_id(row.id)}?",
        "Deletes this failed job's record: traceback, payload and partial state.",
        "Forget",
    )


@dataclass
class FailedModel:
    """The list as plain values: the filter, grouping, the page offset and what the engine returned."""

    filter_text: str = ""
    grouped: bool = False
    offset: int = 0
    page: FailedPage | None = None
    groups: tuple[FailedGroup, ...] = ()
    error: str | None = None

    @property
    def filter(self) -> FailedFilter:
        return FailedFilter.parse(self.filter_text)

    @property
    def total(self) -> int:
        return self.page.total if self.page is not None else 0

    @property
    def rows(self) -> tuple[FailedRow, ...]:
        return self.page.rows if self.page is not None else ()

    def find(self, key: str | None) -> FailedRow | None:
        return next((r for r in self.rows if r.id == key), None)

    def group_of(self, key: str | None) -> FailedGroup | None:
        if key is None or not key.startswith("exc:"):
            return None
        return next((g for g in self.groups if g.exception == key[4:]), None)

    def filter_for(self, key: str | None) -> FailedFilter:
        """What ``R``/``D`` act on: the filter, narrowed to the highlighted group when grouped."""
        group = self.group_of(key) if self.grouped else None
        return replace(self.filter, exception=group.exception) if group else self.filter

    def table_rows(self, now: float) -> list[Row]:
        if self.grouped:
            return [
                (
                    f"exc:{g.exception}",
                    {"exception": Cell(g.exception, "red"), "count": Cell(format_count(g.count), right=True)},
                )
                for g in self.groups
            ]
        return [(r.id, failed_cells(r, now)) for r in self.rows]

    def columns(self, wide: bool) -> tuple[Col, ...]:
        if self.grouped:
            return GROUP_COLUMNS
        cols = columns_for(COLUMNS, wide)
        if wide:
            cols = tuple(replace(c, width=WIDE_EXCEPTION) if c.key == "exception" else c for c in cols)
        return cols

    def title(self) -> str:
        if self.grouped:
            text = f"{len(self.groups)} exception classes · {format_count(sum(g.count for g in self.groups))} jobs"
        elif self.total > len(self.rows):
            first, last = format_count(self.offset + 1), format_count(self.offset + len(self.rows))
            text = f"{first}–{last} of {format_count(self.total)}"
        else:
            text = plural(self.total, "failed job")
        if self.filter_text:
            text += f" · filter {self.filter_text}"
        return text

    def page_by(self, step: int) -> bool:
        """Move a page forward (1) or back (-1); False when there is no such page."""
        offset = self.offset + step * PAGE_SIZE
        if offset < 0 or (step > 0 and offset >= self.total):
            return False
        self.offset = offset
        return True


def traceback_head(text: str, lines: int = PANE_LINES) -> str:
    return "\n".join(text.splitlines()[:lines])


def as_json(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


def code_view(text: str, lexer: str, *, id: str | None = None) -> Widget:
    """Highlighted text in a scroll, or for big text a read-only TextArea (drawn lazily by line)."""
    if len(text) > HIGHLIGHT_LIMIT:
        return LazyText(text, id=id, classes="code")
    syntax = Syntax(text, lexer, theme="ansi_dark", background_color="default", word_wrap=False)
    scroll = VerticalScroll(
        Static(syntax, expand=True, shrink=False, markup=False), id=id, classes="code", can_focus=True
    )
    return scroll


# --- widgets -----------------------------------------------------------------------------------


class FailedView(Gated, Vertical):
    """The list (or its groups), and at 160 columns the highlighted job's first traceback lines."""

    BINDING_GROUP_TITLE = "Failed"
    ACTIONS: ClassVar[frozenset[str]] = frozenset({"retry", "forget", "retry_all", "forget_all"})
    GATED: ClassVar[tuple[str, ...]] = ("open", "copy")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Detail", show=False),
        Binding("r", "retry", "Retry"),
        Binding("d", "forget", "Forget"),
        Binding("R", "retry_all", "Retry all"),
        Binding("D", "forget_all", "Forget all", show=False),
        Binding("g", "group", "Group"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("y", "copy", "Copy id", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page", key_display="[", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = FailedModel()
        self._tracebacks: dict[str, str] = {}
        self._pane_for: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="list-bar"):
            yield Static("Failed jobs", classes="list-title", markup=False)
            yield Static("", id="failed-note", classes="list-note", markup=False)
        yield KeyedTable(id="failed-table")
        yield Static("", id="failed-pane", classes="side-pane", markup=False)

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#failed-table", KeyedTable)

    @property
    def highlighted(self) -> FailedRow | None:
        return None if self.model.grouped else self.model.find(self.table.cursor_key)

    # --- data ---------------------------------------------------------------------------------

    def fetch(self) -> None:
        app: Any = self.app
        if app.admin is not None:
            self._fetch(self.model.filter, self.model.offset, self.model.grouped)

    @work(group="fetch-failed", exclusive=True, exit_on_error=False)
    async def _fetch(self, flt: FailedFilter, offset: int, grouped: bool) -> None:
        app: Any = self.app
        try:
            if grouped:
                data: Any = tuple(await app.admin.failed_groups(flt))
            else:
                data = await app.admin.failed_page(flt, offset, PAGE_SIZE)
        except Exception as exc:  # a lost Redis: keep the rows, say why they are old
            self.post_message(PageFailed("failed", f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(PageFetched("failed", (flt, grouped, data), app.clock()))

    @on(PageFetched)
    def _fetched(self, message: PageFetched) -> None:
        if message.view != "failed":
            return
        message.stop()
        flt, grouped, data = message.data
        if flt != self.model.filter or grouped != self.model.grouped:
            return  # an answer to a question no longer asked
        if grouped:
            self.model.groups = data
        else:
            self.model.page = data
        self.model.error = None
        self.draw()

    @on(PageFailed)
    def _failed(self, message: PageFailed) -> None:
        if message.view != "failed":
            return
        message.stop()
        self.model.error = message.error
        self.draw()

    # --- drawing ------------------------------------------------------------------------------

    def draw(self) -> None:
        app: Any = self.app
        wide = bool(app.wide)
        note = f"not refreshed: {self.model.error}" if self.model.error else self.model.title()
        widget = self.query_one("#failed-note", Static)
        set_text(widget, note)
        widget.set_class(self.model.error is not None, "-error")
        self.table.show(self.model.columns(wide), self.model.table_rows(app.clock()))
        self._draw_pane()
        self.refresh_gates()

    def _draw_pane(self) -> None:
        app: Any = self.app
        if not app.wide:
            return
        row = self.highlighted
        pane = self.query_one("#failed-pane", Static)
        if row is None:
            if self._pane_for is not None or not pane.content:
                pane.update(
                    "Highlight a failed job to see its traceback."
                    if not self.model.grouped
                    else "Grouped by exception class: enter lists a group, R retries it."
                )
                self._pane_for = None
            return
        if self._pane_for == row.id:
            return
        text = self._tracebacks.get(row.id)
        if text is None:
            pane.update(f"{exception_text(row)}\n\nloading traceback…")
            self._load_traceback(row)
            return
        pane.update(
            Syntax(
                traceback_head(text) or "(no traceback recorded)",
                "pytb",
                theme="ansi_dark",
                background_color="default",
                word_wrap=False,
            )
        )
        self._pane_for = row.id

    @work(group="failed-pane", exclusive=True, exit_on_error=False)
    async def _load_traceback(self, row: FailedRow) -> None:
        app: Any = self.app
        try:
            detail = await app.admin.failed_detail(row.id, row.queue)
        except Exception as exc:  # the pane says it, the list carries on
            self.query_one("#failed-pane", Static).update(f"traceback not read: {type(exc).__name__}: {exc}")
            return
        if len(self._tracebacks) > 2 * PAGE_SIZE:
            self._tracebacks.clear()
        self._tracebacks[row.id] = detail.traceback if detail is not None else "(this job is no longer in the store)"
        self._draw_pane()

    @on(DataTable.RowHighlighted, "#failed-table")
    def _highlighted(self) -> None:
        self._draw_pane()
        self.refresh_gates()

    @on(DataTable.RowSelected, "#failed-table")
    def _selected(self) -> None:
        self.action_open()

    # --- actions ------------------------------------------------------------------------------

    def can(self, action: str) -> bool | None:
        row = self.highlighted
        if action in ("retry", "forget", "copy"):
            return row is not None or None
        if action == "open":
            return (row is not None or self.model.group_of(self.table.cursor_key) is not None) or None
        if action in ("retry_all", "forget_all"):
            return (self.model.total > 0 or bool(self.model.groups)) or None
        return True

    def action_open(self) -> None:
        group = self.model.group_of(self.table.cursor_key) if self.model.grouped else None
        if group is not None:
            flt = replace(self.model.filter, exception=group.exception)
            self._set_filter(flt.describe(), grouped=False)
            return
        row = self.highlighted
        if row is not None:
            self.app.push_screen(FailedDetailScreen(row))

    def _set_filter(self, text: str, *, grouped: bool | None = None) -> None:
        self.model.filter_text = text
        if grouped is not None:
            self.model.grouped = grouped
        self.model.offset = 0
        self.model.page = None
        self.model.groups = ()
        self.draw()
        self.fetch()

    def action_group(self) -> None:
        self._set_filter(self.model.filter_text, grouped=not self.model.grouped)

    def action_page(self, step: int) -> None:
        if not self.model.grouped and self.model.page_by(step):
            self.fetch()

    @work(group="dialog", exit_on_error=False)
    async def action_filter(self) -> None:
        text = await self.app.push_screen_wait(FilterDialog(self.model.filter_text, what="failed jobs"))
        if text is not None:
            self._set_filter(text)

    def action_copy(self) -> None:
        row = self.highlighted
        if row is not None:
            from .batches import copy_id

            copy_id(self, row.id)

    def action_retry(self) -> None:
        row = self.highlighted
        if row is not None:
            run_retry_one(self, row)

    def action_forget(self) -> None:
        row = self.highlighted
        if row is not None:
            run_forget_one(self, row)

    def action_retry_all(self) -> None:
        self._run_matching(retry=True)

    def action_forget_all(self) -> None:
        self._run_matching(retry=False)

    def _run_matching(self, *, retry: bool) -> None:
        flt = self.model.filter_for(self.table.cursor_key)

        async def go() -> None:
            admin = self.app.admin  # type: ignore[attr-defined]
            try:
                # The count comes from the same indexes the action uses, read just before asking.
                count = await admin.failed_count(flt)
            except Exception as exc:  # Redis lost before the dialog: say so, change nothing
                self.app.notify(
                    f"Counting failed jobs failed: {type(exc).__name__}: {exc}",
                    title="Redis",
                    severity="error",
                    markup=False,
                    timeout=10,
                )
                return
            if retry:
                await confirm_and_run(
                    self, "Retry all matching", retry_all_confirmation(flt, count), lambda: admin.retry_matching(flt)
                )
            else:
                await confirm_and_run(
                    self, "Forget all matching", forget_all_confirmation(flt, count), lambda: admin.forget_matching(flt)
                )

        self.run_worker(go(), group="action", exit_on_error=False)


def run_retry_one(node: Any, row: FailedRow) -> None:
    async def go() -> None:
        admin = node.app.admin
        await confirm_and_run(
            node, f"Retry {short_id(row.id)}", retry_confirmation(row), lambda: admin.retry_failed(row.id, row.queue)
        )

    node.run_worker(go(), group="action", exit_on_error=False)


def run_forget_one(node: Any, row: FailedRow, then: Any = None) -> None:
    async def go() -> None:
        admin = node.app.admin
        result = await confirm_and_run(
            node, f"Forget {short_id(row.id)}", forget_confirmation(row), lambda: admin.forget_failed(row.id, row.queue)
        )
        if result is not None and result.ok and then is not None:
            then()

    node.run_worker(go(), group="action", exit_on_error=False)


def summary_rows(detail: FailedDetail) -> list[tuple[str, str]]:
    rows = [(str(k), NULL if v is None else str(v)) for k, v in detail.summary.items()]
    if not rows:
        row = detail.row
        rows = [
            ("id", row.id),
            ("queue", row.queue),
            ("batch", row.batch or NULL),
            ("attempts", str(row.attempts)),
            ("failed", clock_time(row.failed_at)),
            ("runtime", format_duration(row.runtime)),
            ("worker", row.worker or NULL),
        ]
    return rows


class FailedDetailScreen(Gated, Screen[None]):
    """5b: one failed job, with its whole traceback, summary, payload, partial state and retries."""

    BINDING_GROUP_TITLE = "Failed job"
    ACTIONS: ClassVar[frozenset[str]] = frozenset({"retry", "forget"})
    GATED: ClassVar[tuple[str, ...]] = ("batch", "pager", "copy_traceback")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "retry", "Retry"),
        Binding("d", "forget", "Forget"),
        Binding("y", "copy", "Copy id", show=False),
        Binding("Y", "copy_traceback", "Copy traceback", show=False),
        Binding("b", "batch", "Batch"),
        Binding("o", "pager", "Pager"),
    ]

    def __init__(self, row: FailedRow) -> None:
        super().__init__(classes="detail-screen")
        self.row = row
        self.detail: FailedDetail | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(header_line(self.row), id="failed-header", classes="detail-header", markup=False)
        yield Static(exception_text(self.row), id="failed-exception", markup=False)
        with TabbedContent(id="failed-tabs"):
            for title, pane_id in (
                ("Traceback", "tb"),
                ("Summary", "summary"),
                ("Payload", "payload"),
                ("Partial state", "partial"),
                ("Retries", "retries"),
            ):
                with TabPane(title, id=f"pane-{pane_id}"):
                    yield Static("loading…", classes="pane-note", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._fetch()

    @work(group="fetch-failed-detail", exclusive=True, exit_on_error=False)
    async def _fetch(self) -> None:
        app: Any = self.app
        try:
            detail = await app.admin.failed_detail(self.row.id, self.row.queue)
        except Exception as exc:  # say why nothing shows; the console carries on
            self.error = f"not read: {type(exc).__name__}: {exc}"
            for note in self.query(".pane-note").results(Static):
                note.update(self.error)
            return
        if detail is None:
            self.error = "this job is no longer in the failed store (retried and forgotten, or expired)"
            for note in self.query(".pane-note").results(Static):
                note.update(self.error)
            return
        self.detail = detail
        self.row = detail.row
        await self._fill(detail)
        self.refresh_gates()

    async def _fill(self, detail: FailedDetail) -> None:
        self.query_one("#failed-header", Static).update(header_line(detail.row))
        await self._replace("tb", code_view(detail.traceback or "(no traceback recorded)", "pytb", id="traceback"))
        await self._replace("summary", VerticalScroll(Static(two_columns(summary_rows(detail)), markup=False)))
        await self._replace("payload", code_view(as_json(detail.payload), "json", id="payload"))
        partial = (
            "Nothing was recorded before the failure." if detail.checkpoint is None else as_json(detail.checkpoint)
        )
        await self._replace("partial", code_view(partial, "json", id="partial"))
        table = KeyedTable(id="retries-table")
        await self._replace("retries", table)
        table.show(
            (Col("status", "Status", 10), Col("id", "Job", 24), Col("at", "Time", 8)),
            [
                (job_id, {"status": Cell(status), "id": Cell(job_id), "at": Cell(clock_time(at))})
                for status, job_id, at in detail.retries
            ],
        )
        if not detail.retries:
            await self.query_one("#pane-retries", TabPane).mount(Static("Not retried yet.", markup=False))

    async def _replace(self, pane: str, widget: Widget) -> None:
        tab = self.query_one(f"#pane-{pane}", TabPane)
        await tab.remove_children()
        await tab.mount(widget)

    def can(self, action: str) -> bool | None:
        if action == "batch":
            return bool(self.row.batch) or None
        if action == "pager":
            app: Any = self.app
            return not app.is_web and (self.detail is not None or None)
        if action in ("retry", "forget", "copy_traceback"):
            return self.detail is not None or None
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_copy(self) -> None:
        from .batches import copy_id

        copy_id(self, self.row.id)

    def action_copy_traceback(self) -> None:
        if self.detail is not None:
            self.app.copy_to_clipboard(self.detail.traceback)
            self.app.notify(
                f"Copied the traceback ({format_count(len(self.detail.traceback.splitlines()))} lines)",
                timeout=3,
                markup=False,
            )

    def action_retry(self) -> None:
        run_retry_one(self, self.row)

    def action_forget(self) -> None:
        run_forget_one(self, self.row, then=self.dismiss)

    @work(group="goto", exclusive=True, exit_on_error=False)
    async def action_batch(self) -> None:
        from .batches import BatchDetailScreen

        if not self.row.batch:
            return
        app: Any = self.app
        try:
            detail = await app.admin.batch_detail(self.row.batch)
        except Exception as exc:  # say so and stay
            app.notify(f"Batch not read: {type(exc).__name__}: {exc}", severity="error", markup=False)
            return
        if detail is None:
            app.notify(f"Batch {self.row.batch} no longer exists", severity="warning", markup=False)
            return
        app.push_screen(BatchDetailScreen(detail.row))

    def action_pager(self) -> None:
        if self.detail is None:
            return
        tabs = self.query_one("#failed-tabs", TabbedContent)
        text = as_json(self.detail.payload) if tabs.active == "pane-payload" else self.detail.traceback
        pager = shlex.split(os.environ.get("PAGER") or "less")
        with self.app.suspend():
            subprocess.run(pager, input=text.encode(), check=False)
