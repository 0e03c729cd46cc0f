"""Screen 7 Graphs: the recorded per-minute history (24 h) with the live snapshot as its last
point, plotted with plotext: ``m`` cycles the metric, ``q`` the queue, ``[`` ``]`` the window.

:func:`graph_series` turns history entries and a snapshot into plain series without Textual;
:class:`GraphsView` draws one plot at 80×24 and a 2×2 grid at 160×48.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from evalharness.core.format import format_count, format_duration, format_rate

from ..messages import PageFailed, PageFetched
from ..model import QueueStats, Snapshot
from .common import set_text

WINDOWS: tuple[tuple[str, int], ...] = (("15m", 15), ("1h", 60), ("6h", 360), ("24h", 1440))
"""The windows ``[`` and ``]`` step through, in minutes."""

HISTORY_FETCH_MINUTES = 1_440
"""The whole recorded history (the daemon keeps 24 h): read once on showing, then once a minute."""

HISTORY_REFETCH = 60.0
"""Seconds between two readings of the history while the screen is shown."""

REPLOT_INTERVAL = 2.0
"""A plot is rebuilt at most this often: each rebuild lays out every cell of it."""

COLLECTING_OF = 60
"""A plot needs this many points to be read at a glance; fewer says "collecting… (n of 60 points)"."""

ALL = "all queues"

Values = Mapping[str, Any]
"""One queue's numbers of one minute (history) or of now (snapshot)."""


def _num(row: Values, key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class Line:
    """One plotted line: its label, how it reads from a history row and from a live queue row, and
    how its values are combined over every queue (sum or max)."""

    label: str
    history: Callable[[Values], float | None]
    live: Callable[[QueueStats], float | None] | None
    combine: str = "sum"


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    title: str
    lines: tuple[Line, ...]
    fmt: Callable[[float | None], str]


def _completed_live(q: QueueStats) -> float | None:
    if q.jobs_per_minute is None:
        return None
    return q.jobs_per_minute - (q.failed_per_minute or 0.0)


def _count_fmt(v: float | None) -> str:
    return format_count(None if v is None else int(v))


METRICS: tuple[Metric, ...] = (
    Metric(
        "throughput",
        "Throughput (jobs/min)",
        (
            Line("completed", lambda r: _num(r, "completed"), _completed_live),
            Line("failed", lambda r: _num(r, "failed"), lambda q: q.failed_per_minute),
        ),
        format_rate,
    ),
    Metric(
        "wait",
        "Oldest wait vs est. clear (s)",
        (
            Line("oldest wait", lambda r: _num(r, "oldest_wait"), lambda q: q.oldest_wait, "max"),
            Line("est. clear", lambda r: _num(r, "est_clear"), lambda q: q.est_clear, "max"),
        ),
        format_duration,
    ),
    Metric(
        "backlog",
        "Backlog, delayed, running (jobs)",
        (
            Line("backlog", lambda r: _num(r, "ready"), lambda q: q.ready),
            Line("delayed", lambda r: _num(r, "delayed"), lambda q: q.delayed),
            Line("running", lambda r: _num(r, "reserved"), lambda q: q.reserved),
        ),
        _count_fmt,
    ),
    Metric(
        "runtime",
        "Runtime p50 / p95 (s)",
        (
            Line("p50", lambda r: _num(r, "runtime_p50"), lambda q: q.runtime_p50, "max"),
            Line("p95", lambda r: _num(r, "runtime_p95"), lambda q: q.runtime_p95, "max"),
        ),
        format_duration,
    ),
    Metric(
        "procs",
        "Processes: busy / total",
        (
            Line("busy", lambda r: _num(r, "reserved"), lambda q: q.reserved),
            Line("processes", lambda r: _num(r, "processes"), lambda q: q.processes),
        ),
        _count_fmt,
    ),
    Metric(
        "releases",
        "429 releases (per minute)",
        (Line("429 releases", lambda r: _num(r, "rate_limited"), None),),
        _count_fmt,
    ),
)
"""What ``m`` cycles through; at 160×48 the grid shows the chosen one and the three after it."""


@dataclass(frozen=True, slots=True)
class Series:
    """A metric over a window: x is minutes before now (0 = the live point), one list per line,
    None where a minute has no entry."""

    metric: Metric
    queue: str
    window: str
    xs: tuple[float, ...]
    ys: tuple[tuple[float | None, ...], ...]

    @property
    def points(self) -> int:
        """Minutes with at least one value."""
        return sum(1 for i in range(len(self.xs)) if any(y[i] is not None for y in self.ys))

    @property
    def title(self) -> str:
        return f"{self.metric.title} · {self.queue} · {self.window}"

    def latest(self) -> list[str]:
        """Each line's newest value, as text, for the legend."""
        out = []
        for line, ys in zip(self.metric.lines, self.ys, strict=True):
            known = [y for y in ys if y is not None]
            out.append(f"{line.label} {self.metric.fmt(known[-1]) if known else '—'}")
        return out


def _combine(values: Sequence[float | None], how: str) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return max(known) if how == "max" else sum(known)


def _queue_rows(entry: Values) -> Mapping[str, Values]:
    queues = entry.get("queues")
    return queues if isinstance(queues, Mapping) else {}


def graph_series(
    history: Sequence[Values],
    snapshot: Snapshot | None,
    metric: Metric,
    queue: str,
    window: tuple[str, int],
    now: float,
) -> Series:
    """``metric`` for ``queue`` (or :data:`ALL`) over the last ``window`` minutes of ``history``
    (entries as recorded, any order), with the snapshot's values as the point at 0."""
    name, minutes = window
    current = int(now // 60)
    first = current - minutes
    by_minute: dict[int, Values] = {}
    for entry in history:
        minute = entry.get("minute")
        if isinstance(minute, int) and first <= minute < current:
            by_minute[minute] = entry
    xs: list[float] = []
    ys: list[list[float | None]] = [[] for _ in metric.lines]
    for minute in range(first, current):
        entry = by_minute.get(minute)
        xs.append(float(minute - current + 1) - 1.0)
        rows = _queue_rows(entry) if entry is not None else {}
        for i, line in enumerate(metric.lines):
            if entry is None:
                ys[i].append(None)
            elif queue == ALL:
                ys[i].append(_combine([line.history(r) for r in rows.values() if isinstance(r, Mapping)], line.combine))
            else:
                row = rows.get(queue)
                ys[i].append(line.history(row) if isinstance(row, Mapping) else None)
    if snapshot is not None:
        xs.append(0.0)
        live_rows = [q for q in snapshot.queues if queue in (ALL, q.name)]
        for i, line in enumerate(metric.lines):
            ys[i].append(
                None
                if line.live is None or not live_rows
                else _combine([line.live(q) for q in live_rows], line.combine)
            )
    return Series(metric, queue, name, tuple(xs), tuple(tuple(y) for y in ys))


def queue_names(history: Sequence[Values], snapshot: Snapshot | None) -> list[str]:
    """What ``q`` cycles through: every queue, then each queue by name."""
    names: set[str] = set()
    for entry in history[-60:]:
        names.update(str(n) for n in _queue_rows(entry))
    if snapshot is not None:
        names.update(q.name for q in snapshot.queues)
    return [ALL, *sorted(names)]


def collecting_text(series: Series) -> str | None:
    """What stands in for a plot with too little to draw (never an empty frame), or None."""
    if series.points >= 2:
        return None
    need = min(COLLECTING_OF, len(series.xs))
    return f"collecting… ({series.points} of {need} points)"


@dataclass
class GraphsModel:
    """What the screen draws: the fetched history and the choices of metric, queue and window."""

    history: tuple[Values, ...] = ()
    metric: int = 0
    queue: str = ALL
    window: int = 1
    error: str | None = None
    fetched: bool = False

    def metrics_shown(self, count: int) -> list[Metric]:
        return [METRICS[(self.metric + i) % len(METRICS)] for i in range(count)]

    def cycle_queue(self, names: Sequence[str]) -> None:
        index = names.index(self.queue) if self.queue in names else -1
        self.queue = names[(index + 1) % len(names)]

    def step_window(self, step: int) -> None:
        self.window = min(len(WINDOWS) - 1, max(0, self.window + step))


class GraphPanel(Vertical):
    """One plot with its title and legend line; the note replaces the plot while collecting."""

    DEFAULT_CSS: ClassVar[str] = """
    GraphPanel { height: 1fr; }
    GraphPanel > .graph-title { height: 1; text-style: bold; color: $primary; }
    GraphPanel > .graph-legend { height: 1; color: $text-muted; }
    GraphPanel > .graph-note { height: 1fr; content-align: center middle; color: $text-muted; display: none; }
    GraphPanel.-collecting > .graph-note { display: block; }
    GraphPanel.-collecting > PlotextPlot { display: none; }
    """

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, classes="graph-panel")
        self.drawn: tuple[Any, ...] | None = None
        self.plots = 0
        """Times the plot was rebuilt (the costly part)."""

    def compose(self) -> ComposeResult:
        yield Static("", classes="graph-title", markup=False)
        yield Static("", classes="graph-legend", markup=False)
        yield Static("", classes="graph-note", markup=False)
        yield PlotextPlot()

    def show(self, series: Series) -> None:
        key = (series.title, series.xs, series.ys)
        if key == self.drawn:
            return
        self.drawn = key
        set_text(self.query_one(".graph-title", Static), series.title)
        set_text(self.query_one(".graph-legend", Static), " · ".join(series.latest()))
        note = collecting_text(series)
        self.set_class(note is not None, "-collecting")
        plot = self.query_one(PlotextPlot)
        if note is not None:
            set_text(self.query_one(".graph-note", Static), note)
            return
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        hours = len(series.xs) > 120
        xs = [x / 60.0 for x in series.xs] if hours else list(series.xs)
        for line, ys in zip(series.metric.lines, series.ys, strict=True):
            pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            if pairs:
                plt.plot([p[0] for p in pairs], [p[1] for p in pairs], label=line.label, marker="braille")
        plt.xlabel("hours ago" if hours else "minutes ago")
        plt.xlim(xs[0], 0)
        self.plots += 1
        plot.refresh()


class GraphsView(Vertical):
    BINDING_GROUP_TITLE = "Graphs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "metric", "Metric"),
        Binding("q", "queue", "Queue"),
        Binding("left_square_bracket", "window(-1)", "Shorter", key_display="["),
        Binding("right_square_bracket", "window(1)", "Longer", key_display="]"),
    ]
    can_focus = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = GraphsModel()
        self._last_plot = float("-inf")
        self._fetched_at = float("-inf")

    def compose(self) -> ComposeResult:
        with Horizontal(classes="list-bar"):
            yield Static("Graphs", classes="list-title", markup=False)
            yield Static("", id="graphs-note", classes="list-note", markup=False)
        with Grid(id="graphs-grid"):
            for i in range(4):
                yield GraphPanel(id=f"graph-{i}")

    @property
    def table(self) -> GraphsView:
        """What takes the focus when the screen is shown (the lists focus their table)."""
        return self

    @property
    def panels(self) -> list[GraphPanel]:
        return list(self.query(GraphPanel).results(GraphPanel))

    def fetch(self) -> None:
        app: Any = self.app
        if app.admin is not None and time.monotonic() - self._fetched_at >= HISTORY_REFETCH:
            self._fetched_at = time.monotonic()
            self._fetch()

    @work(group="fetch-graphs", exclusive=True, exit_on_error=False)
    async def _fetch(self) -> None:
        app: Any = self.app
        try:
            rows = await app.admin.history(HISTORY_FETCH_MINUTES)
        except Exception as exc:  # keep what is drawn, say why it is old
            self._fetched_at = float("-inf")
            self.post_message(PageFailed("graphs", f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(PageFetched("graphs", tuple(r for r in rows if isinstance(r, Mapping)), app.clock()))

    @on(PageFetched)
    def _fetched(self, message: PageFetched) -> None:
        if message.view != "graphs":
            return
        message.stop()
        self.model.history = message.data
        self.model.error = None
        self.model.fetched = True
        self.draw(force=True)

    @on(PageFailed)
    def _failed(self, message: PageFailed) -> None:
        if message.view != "graphs":
            return
        message.stop()
        self.model.error = message.error
        self.draw(force=True)

    def series(self) -> list[Series]:
        app: Any = self.app
        count = 4 if app.wide and app.size.height >= 36 else 1
        now = app.clock()
        window = WINDOWS[self.model.window]
        return [
            graph_series(self.model.history, app.state.snapshot, m, self.model.queue, window, now)
            for m in self.model.metrics_shown(count)
        ]

    def draw(self, force: bool = False) -> None:
        """Called on every redraw; a plot is rebuilt at most every REPLOT_INTERVAL unless a key
        changed what it shows."""
        app: Any = self.app
        if getattr(app, "frozen", False) and not force:
            return
        if not force and time.monotonic() - self._last_plot < REPLOT_INTERVAL:
            return
        self._last_plot = time.monotonic()
        note = (
            f"not refreshed: {self.model.error}"
            if self.model.error
            else (f"m metric · q queue · [ ] window {WINDOWS[self.model.window][0]}")
        )
        if not self.model.fetched and not self.model.error:
            note = "reading the history…"
        widget = self.query_one("#graphs-note", Static)
        set_text(widget, note)
        widget.set_class(self.model.error is not None, "-error")
        shown = self.series()
        for panel, series in zip(self.panels, shown, strict=False):
            panel.show(series)

    def select_queue(self, name: str) -> None:
        """Show ``name``'s graphs (the palette's "go to queue")."""
        self.model.queue = name
        self.draw(force=True)

    def action_metric(self) -> None:
        self.model.metric = (self.model.metric + 1) % len(METRICS)
        self.draw(force=True)

    def action_queue(self) -> None:
        app: Any = self.app
        self.model.cycle_queue(queue_names(self.model.history, app.state.snapshot))
        self.draw(force=True)

    def action_window(self, step: int) -> None:
        self.model.step_window(step)
        self.draw(force=True)
