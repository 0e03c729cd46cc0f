"""Screen 2 Workload: one row per queue from the telemetry snapshot (ready, delayed, running, the
measured oldest wait next to the estimated clear time, busy/assigned processes), the highlighted
queue's past hour below the table, its limiters beside it at 160 columns; ``p`` pauses or
continues the queue, ``X`` clears its ready jobs, ``enter`` opens its jobs (Queue detail).

Everything drawn comes from the snapshot and the recorded history; only the actions call the
engine. Oldest ticks every second from the snapshot's value with the console's clock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from evalharness.core.format import NULL, format_count, format_duration, format_rate

from ..fmt import SPARK_BLOCKS, sparkline
from ..history import history_line, minute_series
from ..model import HistoryEntry, Limiter, QueueStats, Snapshot
from .actions import confirm_and_run
from .common import Cell, Col, Gated, KeyedTable, Row, columns_for, first_fitting, plural, set_text
from .dialogs import Confirmation

COLUMNS: tuple[Col, ...] = (
    Col("queue", "Queue", 13),
    Col("ready", "Ready", 7, right=True),
    Col("delayed", "Delay", 5, right=True),
    Col("running", "Run", 4, right=True),
    Col("oldest", "Oldest", 7, right=True),
    Col("clear", "Clear", 7, right=True),
    Col("procs", "Procs", 5, right=True),
    Col("jpm", "/min", 6, right=True),
    Col("failed", "Fail", 4, right=True),
    Col("fpm", "F/min", 6, right=True, wide_only=True),
    Col("p50", "p50", 5, right=True, wide_only=True),
    Col("p95", "p95", 5, right=True, wide_only=True),
    Col("timeouts", "T/O", 4, right=True, wide_only=True),
    Col("releases", "429s", 5, right=True, wide_only=True),
    Col("trend", "Trend (jobs/min)", 20, wide_only=True),
    Col("paused", "Paused", 6, wide_only=True),
    Col("threshold", "Thresh", 7, right=True, wide_only=True),
)
"""The Workload table. "Oldest" is measured, "Clear" estimated; "Fail" is the past hour's. Ready
leaves out the jobs a batch's ``max_running`` holds back: the line below the table counts them."""

WIDE_QUEUE = 18
TICK_SKIP = 0.9
"""Seconds since the last draw under which the 1 s tick draws nothing."""
TREND_MINUTES = 20
PAUSED_MARK = "‖ "


def workload_columns(wide: bool) -> tuple[Col, ...]:
    cols = columns_for(COLUMNS, wide)
    if wide:
        return tuple(Col(c.key, c.label, WIDE_QUEUE) if c.key == "queue" else c for c in cols)
    return cols


def oldest_now(queue: QueueStats, since: float) -> float | None:
    """The oldest ready job's age ``since`` seconds after the snapshot measured it: it keeps
    growing between snapshots while the job waits."""
    if queue.oldest_wait is None:
        return None
    return queue.oldest_wait + (max(0.0, since) if queue.ready else 0.0)


def clear_text(queue: QueueStats) -> str:
    """The estimate to clear the backlog; "—" with no backlog (nothing to clear) or no estimate,
    "paused" for a paused queue (it clears nothing)."""
    if queue.paused:
        return "paused"
    if not queue.ready or queue.est_clear is None:
        return NULL
    return format_duration(queue.est_clear)


def procs_text(queue: QueueStats) -> str:
    if queue.busy is None:
        return format_count(queue.processes)
    return f"{queue.busy}/{format_count(queue.processes)}"


def queue_series(history: Sequence[HistoryEntry], queue: str, key: str) -> list[float | None]:
    if key == "jobs":

        def jobs(e: HistoryEntry) -> float | None:
            done, failed = e.of(queue, "completed"), e.of(queue, "failed")
            return None if done is None and failed is None else (done or 0) + (failed or 0)

        return minute_series(tuple(history), jobs)
    return minute_series(tuple(history), lambda e: e.of(queue, key))


def trend_text(history: Sequence[HistoryEntry], queue: str) -> str:
    return sparkline(queue_series(history, queue, "jobs")[-TREND_MINUTES:]) if history else ""


def workload_cells(
    queue: QueueStats, since: float, history: Sequence[HistoryEntry] = (), trend: str | None = None
) -> dict[str, Cell]:
    oldest = oldest_now(queue, since)
    late = oldest is not None and queue.long_wait is not None and oldest > queue.long_wait
    name = (PAUSED_MARK if queue.paused else "") + queue.name
    if trend is None:
        trend = trend_text(history, queue.name)
    return {
        "queue": Cell(name, "yellow" if queue.paused else ""),
        "ready": Cell(format_count(queue.ready), right=True),
        "delayed": Cell(format_count(queue.delayed), right=True),
        "running": Cell(format_count(queue.reserved), right=True),
        "oldest": Cell(format_duration(oldest), "bold red" if late else "", right=True),
        "clear": Cell(clear_text(queue), right=True),
        "procs": Cell(procs_text(queue), right=True),
        "jpm": Cell(format_rate(queue.jobs_per_minute), right=True),
        "failed": Cell(format_count(queue.failed_past_hour), "red" if queue.failed_past_hour else "", right=True),
        "fpm": Cell(format_rate(queue.failed_per_minute), right=True),
        "p50": Cell(format_duration(queue.runtime_p50), right=True),
        "p95": Cell(format_duration(queue.runtime_p95), right=True),
        "timeouts": Cell(format_count(queue.timeouts_past_hour), right=True),
        "releases": Cell(format_count(queue.releases_past_hour), right=True),
        "trend": Cell(trend, "cyan"),
        "paused": Cell("paused" if queue.paused else "", "yellow"),
        "threshold": Cell(format_duration(queue.long_wait), right=True),
    }


def stats_line(queue: QueueStats | None, width: int = 160) -> str:
    """The highlighted queue's past hour: `p50 2.1s p95 8.4s max 31s · timeouts 1h 5 · …`, after
    the ready jobs its batches' caps hold back (`40 held by batch caps`) when there are any, in
    shorter words where the full ones do not fit ``width``."""
    if queue is None:
        return "no queue highlighted"
    paused = ["PAUSED"] if queue.paused else []
    held, held_short = (
        ([f"{format_count(queue.held)} held by batch caps"], [f"{format_count(queue.held)} held"])
        if queue.held
        else ([], [])
    )
    runtimes = (
        f"p50 {format_duration(queue.runtime_p50)} p95 {format_duration(queue.runtime_p95)} "
        f"max {format_duration(queue.runtime_max)}"
    )
    timeouts, releases = format_count(queue.timeouts_past_hour), format_count(queue.releases_past_hour)
    hour = [f"timeouts 1h {timeouts}", f"429 releases 1h {releases}"]
    hour_short = [f"T/O 1h {timeouts}", f"429s 1h {releases}"]
    retries = f"retries 1h {format_count(queue.retries_past_hour)}"
    return first_fitting(
        [
            [*paused, *held, runtimes, *hour, retries],
            [*paused, *held, runtimes, *hour_short, retries],
            [*paused, *held_short, runtimes, *hour_short, retries],
            [*paused, *held_short, runtimes, *hour_short],
        ],
        width,
    )


def spark_lines(queue: QueueStats | None, history: Sequence[HistoryEntry], width: int) -> list[str]:
    """The highlighted queue's jobs/min and oldest wait over the recorded minutes, fitted to ``width``."""
    if queue is None:
        return ["", ""]
    jobs = history_line("Jobs/min", queue_series(history, queue.name, "jobs"), width, format_rate)
    wait = history_line("Oldest wait", queue_series(history, queue.name, "oldest_wait"), width, format_duration)
    return [jobs.text, wait.text]


def tall_spark(values: Sequence[float | None], rows: int, width: int) -> list[str]:
    """A block chart ``rows`` high of the newest ``width`` values, top row first; a missing value
    is blank."""
    shown = list(values)[-width:]
    known = [v for v in shown if v is not None]
    high = max(known) if known else 0.0
    steps = len(SPARK_BLOCKS)
    lines = []
    for row in range(rows - 1, -1, -1):
        out = []
        for v in shown:
            if v is None or high <= 0:
                out.append(" ")
                continue
            level = v / high * rows * steps  # in eighths of a row
            fill = level - row * steps
            out.append("█" if fill >= steps else (SPARK_BLOCKS[int(fill) - 1] if fill >= 1 else " "))
        lines.append("".join(out))
    return lines


def plot_lines(queue: QueueStats | None, history: Sequence[HistoryEntry], width: int, rows: int = 4) -> list[str]:
    """At 160 columns: the highlighted queue's oldest wait over its backlog, minute by minute."""
    if queue is None:
        return []
    out = []
    for title, key, fmt in (("Oldest wait", "oldest_wait", format_duration), ("Backlog", "ready", format_count_float)):
        values = queue_series(history, queue.name, key)
        known = [v for v in values if v is not None]
        top = fmt(max(known)) if known else NULL
        out.append(f"{title} · last {len(values)} min · max {top}")
        out.extend(tall_spark(values, rows, width) if values else ["collecting…"])
    return out


def format_count_float(value: float | None) -> str:
    return format_count(None if value is None else int(value))


def limiter_lines(limiters: Sequence[Limiter], queue: str | None = None) -> list[str]:
    """One line per limiter: name, kind, in flight against the limit, its floor and ceiling; those
    whose key names the highlighted queue first."""
    if not limiters:
        return ["no limiters in the telemetry"]
    ordered = sorted(limiters, key=lambda li: (not (queue and queue in li.key), li.name))

    def num(v: float | None) -> str:
        return NULL if v is None else f"{v:g}"

    lines = []
    for li in ordered:
        flight = NULL if li.in_flight is None else str(li.in_flight)
        lines.append(
            f"{li.name} ({li.kind}) {flight}/{num(li.limit)} · floor {num(li.floor)} · ceiling {num(li.ceiling)}"
        )
    return lines


def held_note(queue: QueueStats) -> str:
    """`` (40 of them held by their batch's max_running)`` after a count of every ready job."""
    return f" ({format_count(queue.held)} of them held by their batch's max_running)" if queue.held else ""


def pause_confirmation(queue: QueueStats) -> Confirmation:
    ready, running = queue.queued, queue.reserved or 0
    if queue.paused:
        # held jobs start only as their batch's running ones end, paused or not
        later = f" ({format_count(queue.held)} more wait for their batch's max_running)" if queue.held else ""
        return Confirmation(
            f"Continue queue {queue.name}?",
            f"Workers on every host take the jobs of {queue.name} again: "
            f"{plural(queue.ready or 0, 'ready job')} can start{later}.",
            "Continue queue",
        )
    return Confirmation(
        f"Pause queue {queue.name}?",
        f"Workers on every host stop taking the jobs of {queue.name}: {plural(ready, 'ready job')}{held_note(queue)} "
        "stay queued and "
        f"dispatches still land; {format_count(running)} running finish.",
        "Pause queue",
    )


def clear_confirmation(queue: QueueStats) -> Confirmation:
    ready = queue.queued
    return Confirmation(
        f"Clear queue {queue.name}?",
        f"Removes {plural(ready, 'ready job')}{held_note(queue)} of {queue.name}; "
        "a batch that loses jobs is cancelled. "
        f"{format_count(queue.delayed or 0)} delayed and {format_count(queue.reserved or 0)} running stay.",
        "Clear queue",
        typed=queue.name,
    )


def run_pause(node: Any, queue: QueueStats) -> None:
    async def go() -> None:
        admin = node.app.admin
        call = admin.continue_queue if queue.paused else admin.pause_queue
        what = f"{'Continue' if queue.paused else 'Pause'} {queue.name}"
        await confirm_and_run(node, what, pause_confirmation(queue), lambda: call(queue.name))

    node.run_worker(go(), group="action", exit_on_error=False)


def run_clear(node: Any, queue: QueueStats) -> None:
    async def go() -> None:
        admin = node.app.admin
        await confirm_and_run(
            node, f"Clear {queue.name}", clear_confirmation(queue), lambda: admin.clear_queue(queue.name)
        )

    node.run_worker(go(), group="action", exit_on_error=False)


@dataclass
class WorkloadModel:
    """The snapshot's queues, the history, and when the snapshot arrived (for Oldest's tick)."""

    snapshot: Snapshot | None = None
    received_at: float | None = None
    history: tuple[HistoryEntry, ...] = ()
    _trends: dict[str, str] = field(default_factory=dict)
    _trends_of: object = None

    def trend(self, queue: str) -> str:
        """The queue's trend sparkline, worked out once per history read (once a minute), not per draw."""
        if self._trends_of is not self.history:
            self._trends, self._trends_of = {}, self.history
        if queue not in self._trends:
            self._trends[queue] = trend_text(self.history, queue)
        return self._trends[queue]

    @property
    def queues(self) -> tuple[QueueStats, ...]:
        return self.snapshot.queues if self.snapshot is not None else ()

    def find(self, name: str | None) -> QueueStats | None:
        return self.snapshot.queue(name) if self.snapshot is not None else None

    def table_rows(self, now: float, wide: bool) -> list[Row]:
        since = 0.0 if self.received_at is None else now - self.received_at
        return [(q.name, workload_cells(q, since, trend=self.trend(q.name) if wide else "")) for q in self.queues]

    def title(self) -> str:
        if self.snapshot is None:
            return "waiting for the first snapshot…"
        paused = sum(1 for q in self.queues if q.paused)
        text = plural(len(self.queues), "queue")
        return text + (f" · {paused} paused" if paused else "")


class WorkloadView(Gated, Vertical):
    BINDING_GROUP_TITLE = "Workload"
    ACTIONS: ClassVar[frozenset[str]] = frozenset({"pause", "clear"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Jobs", show=False),
        Binding("p", "pause", "Pause/continue"),
        Binding("X", "clear", "Clear queue"),
        Binding("y", "copy", "Copy name", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = WorkloadModel()
        self.error: str | None = None
        self._pane: tuple[str, str] | None = None
        self._drawn_at = float("-inf")
        self._history_lines: tuple[object, ...] = ()
        self._history_text: list[str] = []

    def compose(self) -> ComposeResult:
        with Horizontal(classes="list-bar"):
            yield Static("Workload", classes="list-title", markup=False)
            yield Static("", id="workload-view-note", classes="list-note", markup=False)
        yield KeyedTable(id="workload-table")
        with Horizontal(id="workload-below"):
            yield Static("", id="workload-queue", markup=False)
            yield Static("", id="workload-limiters", classes="wide-pane", markup=False)

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#workload-table", KeyedTable)

    @property
    def highlighted(self) -> QueueStats | None:
        return self.model.find(self.table.cursor_key)

    def select_queue(self, name: str) -> None:
        """Put the cursor on queue ``name`` (the palette's and the Overview's way in)."""
        table = self.table
        if name in table.keys:
            table.move_cursor(row=table.get_row_index(name), animate=False)

    def fetch(self) -> None:
        """Nothing to fetch: the rows are the telemetry's (the app redraws on each snapshot)."""

    def tick(self) -> None:
        """The 1 s tick moves Oldest on; a snapshot drawn since did that already (both come about
        once a second: drawing for each would draw the table twice a second)."""
        if time.monotonic() - self._drawn_at >= TICK_SKIP:
            self.draw()

    def draw(self) -> None:
        self._drawn_at = time.monotonic()
        app: Any = self.app
        state = app.state
        self.model.snapshot = state.snapshot
        self.model.received_at = state.snapshot_received_at
        self.model.history = state.history or ()
        wide = bool(app.wide)
        now = app.clock()
        note, _ = state.workload_note(now)
        set_text(self.query_one("#workload-view-note", Static), note or self.model.title())
        self.set_class(state.connected is False and state.snapshot is not None, "-stale")
        self.table.show(workload_columns(wide), self.model.table_rows(now, wide))
        self._draw_pane()
        self.refresh_gates()

    def _draw_pane(self) -> None:
        app: Any = self.app
        queue = self.highlighted
        pane = self.query_one("#workload-queue", Static)
        if not pane.content_size.width:
            # just shown, not laid out yet: the lines are fitted to the pane once it has a width
            self.call_after_refresh(self._draw_pane)
            return
        width = max(20, pane.content_size.width)
        tall = bool(app.wide and app.size.height >= 36)
        key = (self.model.history, queue.name if queue else None, width, tall)
        if key != self._history_lines:
            # the history changes once a minute: its lines are not worked out again every second
            sparks = spark_lines(queue, self.model.history, width)
            # the plot shows the wait over the whole hour: the one-line wait is not repeated
            self._history_text = sparks[:1] + plot_lines(queue, self.model.history, width - 2) if tall else sparks
            self._history_lines = key
        lines = [stats_line(queue, width), *self._history_text]
        text = "\n".join(lines)
        limiters = self.model.snapshot.limiters if self.model.snapshot is not None else ()
        side = "\n".join(["Limiters", *limiter_lines(limiters, queue.name if queue else None)]) if app.wide else ""
        if (text, side) != self._pane:
            self.query_one("#workload-queue", Static).update(text, layout=False)
            self.query_one("#workload-limiters", Static).update(side, layout=False)
            self._pane = (text, side)

    @on(DataTable.RowHighlighted, "#workload-table")
    def _highlighted(self) -> None:
        self._draw_pane()
        self.refresh_gates()

    @on(DataTable.RowSelected, "#workload-table")
    def _selected(self) -> None:
        self.action_open()

    def can(self, action: str) -> bool | None:
        queue = self.highlighted
        if action in ("pause", "open", "copy"):
            return queue is not None or None
        if action == "clear":
            return (queue is not None and bool(queue.queued)) or None
        return True

    def action_open(self) -> None:
        queue = self.highlighted
        if queue is not None:
            from .queue_detail import QueueDetailScreen

            self.app.push_screen(QueueDetailScreen(queue.name))

    def action_copy(self) -> None:
        queue = self.highlighted
        if queue is not None:
            from .batches import copy_id

            copy_id(self, queue.name)

    def action_pause(self) -> None:
        queue = self.highlighted
        if queue is not None:
            run_pause(self, queue)

    def action_clear(self) -> None:
        queue = self.highlighted
        if queue is not None and queue.queued:
            run_clear(self, queue)
