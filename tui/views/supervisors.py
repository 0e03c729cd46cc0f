"""Screen 3 Supervisors: every master with its supervisors (and, for a supervisor with several
queues, its pools), grouped by master. A master silent past its heartbeat TTL is red "lost";
a supervisor the configuration names that no master runs is dim "inactive".

Actions go to the master under the cursor through its control list: ``p`` pause/continue the
supervisor (or the whole master on its line), ``+``/``-`` a temporary size override of the
highlighted pool and ``0`` to drop it, ``r`` restart its workers, ``T`` terminate it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from evalharness.core.admin import MasterRow, SupervisorRow
from evalharness.core.format import NULL, format_count, format_seconds

from ..messages import PageFailed, PageFetched
from .actions import confirm_and_run
from .common import Cell, Col, Gated, KeyedTable, Row, columns_for, plural, set_text
from .dialogs import Confirmation

COLUMNS: tuple[Col, ...] = (
    Col("name", "Supervisor", 14),
    Col("status", "Status", 8),
    Col("queues", "Queues", 15),
    Col("procs", "Procs", 5, right=True),
    Col("busy", "Busy", 4, right=True),
    Col("balance", "Bal", 10),
    Col("minmax", "Min/Max", 7, right=True),
    Col("per_queue", "Per queue", 23, wide_only=True),
    Col("memory", "Memory", 8, right=True, wide_only=True),
    Col("done", "Jobs done", 9, right=True, wide_only=True),
    Col("uptime", "Uptime", 8, right=True, wide_only=True),
    Col("decision", "Last balance", 18, wide_only=True),
)
"""A master's line puts its pid and heartbeat age under Queues and its environment under Bal."""

INACTIVE_GROUP = "(not running)"
"""The group of configured supervisors that no master runs."""


@dataclass(frozen=True, slots=True)
class Line:
    """One row: a master, one of its supervisors, or one pool of a supervisor."""

    kind: str  # "master" | "supervisor" | "pool"
    master: MasterRow | None
    supervisor: SupervisorRow | None = None
    pool: str | None = None

    @property
    def key(self) -> str:
        master = self.master.name if self.master is not None else INACTIVE_GROUP
        if self.kind == "master":
            return f"m:{master}"
        sup = self.supervisor.name if self.supervisor is not None else ""
        return f"s:{master}/{sup}" if self.kind == "supervisor" else f"p:{master}/{sup}/{self.pool}"


def is_lost(master: MasterRow, now: float) -> bool:
    """Lost when it said so when read, or its heartbeat has aged past its TTL since."""
    return master.lost or (master.heartbeat_at is not None and now - master.heartbeat_at > master.ttl)


def pools_of(sup: SupervisorRow) -> list[str]:
    return list(sup.targets or sup.per_queue) or list(sup.queues)


def pool_size(sup: SupervisorRow, pool: str) -> int:
    """What the pool runs now as far as the console can tell: its override, else its target, else
    its live processes."""
    if pool in sup.overrides:
        return sup.overrides[pool]
    if pool in sup.targets:
        return sup.targets[pool]
    return sup.per_queue.get(pool, 0)


def decision_text(decision: dict[str, Any] | None, now: float) -> str:
    """ "+2 judge 14s ago" from the master's last balance decision."""
    if not decision:
        return NULL
    try:
        change = int(decision["to"]) - int(decision["from"])
        at = float(decision["at"])
    except (KeyError, TypeError, ValueError):
        return NULL
    return f"{change:+d} {decision.get('pool', '?')} {format_seconds(max(0.0, now - at))} ago"


def master_cells(m: MasterRow, now: float) -> dict[str, Cell]:
    lost = is_lost(m, now)
    age = NULL if m.heartbeat_at is None else format_seconds(max(0.0, now - m.heartbeat_at))
    where = f"pid {m.pid} hb {age}"
    status = "lost" if lost else m.status
    procs = sum(s.processes for s in m.supervisors)
    busy = [s.busy for s in m.supervisors if s.busy is not None]
    memory = [s.memory_mb for s in m.supervisors if s.memory_mb is not None]
    done = [s.jobs_done for s in m.supervisors if s.jobs_done is not None]
    return {
        "name": Cell(m.name, "bold red" if lost else "bold"),
        "status": Cell(status, "bold red" if lost else ("yellow" if status in ("paused", "stopping") else "green")),
        "queues": Cell(where, "red" if lost else ""),
        "procs": Cell(format_count(procs), right=True),
        "busy": Cell(format_count(sum(busy)) if busy else NULL, right=True),
        "balance": Cell(m.environment or NULL, "dim"),
        "minmax": Cell(""),
        "per_queue": Cell(m.host),
        "memory": Cell(f"{sum(memory):,.0f} MB" if memory else NULL, right=True),
        "done": Cell(format_count(sum(done)) if done else NULL, right=True),
        "uptime": Cell(NULL if m.started_at is None else format_seconds(max(0.0, now - m.started_at)), right=True),
        "decision": Cell(""),
    }


def supervisor_cells(m: MasterRow | None, s: SupervisorRow, now: float) -> dict[str, Cell]:
    inactive = s.status == "inactive"
    lost = m is not None and is_lost(m, now)
    dim = "dim" if inactive or lost else ""
    balance = s.balance + (" ·ovr" if s.overrides else "")
    per_queue = " · ".join(f"{q} {n}" + (" (override)" if q in s.overrides else "") for q, n in s.per_queue.items())
    low = NULL if s.min_processes is None else str(s.min_processes)
    high = NULL if s.max_processes is None else str(s.max_processes)
    return {
        "name": Cell(f"  {s.name}", dim),
        # a lost master's supervisors are in whatever state it was last heard in
        "status": Cell("lost" if lost else s.status, dim or ("yellow" if s.status == "paused" else "")),
        "queues": Cell(",".join(s.queues), dim),
        "procs": Cell(NULL if inactive else format_count(s.processes), dim, right=True),
        "busy": Cell(NULL if s.busy is None else format_count(s.busy), dim, right=True),
        "balance": Cell(NULL if inactive else balance, dim or ("yellow" if s.overrides else "")),
        "minmax": Cell(NULL if inactive else f"{low}/{high}", dim, right=True),
        "per_queue": Cell(per_queue or NULL, dim),
        "memory": Cell(NULL if s.memory_mb is None else f"{s.memory_mb:,.0f} MB", dim, right=True),
        "done": Cell(NULL if s.jobs_done is None else format_count(s.jobs_done), dim, right=True),
        "uptime": Cell(""),
        "decision": Cell(decision_text(s.last_balance, now), dim),
    }


def pool_cells(s: SupervisorRow, pool: str) -> dict[str, Cell]:
    override = s.overrides.get(pool)
    target = s.targets.get(pool)
    return {
        "name": Cell(f"    └ {pool}", "dim"),
        "status": Cell("override" if override is not None else "", "yellow"),
        "queues": Cell(pool, "dim"),
        "procs": Cell(format_count(s.per_queue.get(pool, 0)), right=True),
        "busy": Cell(""),
        "balance": Cell(
            f"→{override if override is not None else (NULL if target is None else target)}",
            "yellow" if override is not None else "dim",
        ),
        "minmax": Cell(""),
    }


def build_lines(masters: Sequence[MasterRow], configured: Sequence[str]) -> list[Line]:
    """Masters by name, each followed by its supervisors (and their pools when several); then the
    configured supervisors no master runs."""
    lines: list[Line] = []
    running: set[str] = set()
    for m in masters:
        lines.append(Line("master", m))
        for s in m.supervisors:
            running.add(s.name)
            lines.append(Line("supervisor", m, s))
            pools = pools_of(s)
            if len(pools) > 1:
                lines.extend(Line("pool", m, s, p) for p in pools)
    absent = [name for name in configured if name not in running]
    if absent:
        lines.append(Line("master", None))
        for name in absent:
            lines.append(
                Line("supervisor", None, SupervisorRow(name, "inactive", (), 0, None, {}, {}, {}, "", None, None))
            )
    return lines


def line_cells(line: Line, now: float) -> dict[str, Cell]:
    if line.kind == "master":
        if line.master is None:
            return {
                "name": Cell(INACTIVE_GROUP, "dim"),
                "status": Cell("inactive", "dim"),
                "queues": Cell("in config only", "dim"),  # fits the column at 80 (its 15)
            }
        return master_cells(line.master, now)
    assert line.supervisor is not None
    if line.kind == "pool":
        return pool_cells(line.supervisor, line.pool or "")
    return supervisor_cells(line.master, line.supervisor, now)


def pause_confirmation(line: Line) -> Confirmation:
    assert line.master is not None
    m = line.master
    if line.kind == "master":
        paused = m.status == "paused"
        verb = "Continue" if paused else "Pause"
        workers = sum(s.processes for s in m.supervisors)
        body = (
            f"{plural(workers, 'worker')} of {m.name} take jobs again."
            if paused
            else f"{plural(workers, 'worker')} of {m.name} finish their running jobs and take no more; "
            "queued jobs stay queued."
        )
        return Confirmation(f"{verb} master {m.name}?", body, f"{verb} master")
    s = line.supervisor
    assert s is not None
    paused = s.status == "paused"
    verb = "Continue" if paused else "Pause"
    body = (
        f"The {plural(s.processes, 'worker')} of {s.name} on {m.name} take jobs again."
        if paused
        else f"The {plural(s.processes, 'worker')} of {s.name} on {m.name} finish their running jobs and take no "
        f"more from {', '.join(s.queues)}; other supervisors keep serving those queues."
    )
    return Confirmation(f"{verb} supervisor {s.name}?", body, f"{verb} supervisor")


def restart_confirmation(m: MasterRow) -> Confirmation:
    workers = sum(s.processes for s in m.supervisors)
    return Confirmation(
        f"Restart the workers of {m.name}?",
        f"The configuration is read again and each of its {plural(workers, 'worker')} finishes its running jobs, "
        "then a new one takes its place (as SIGUSR1 does).",
        "Restart workers",
    )


def terminate_confirmation(m: MasterRow) -> Confirmation:
    workers = sum(s.processes for s in m.supervisors)
    grace = "its grace period" if m.grace is None else format_seconds(m.grace)
    return Confirmation(
        f"Terminate master {m.name}?",
        f"{m.name} stops: its {plural(workers, 'worker')} get up to {grace} to finish their running jobs, then "
        "are killed. Nothing restarts it unless a service manager does.",
        "Terminate",
    )


def scale_confirmation(m: MasterRow, s: SupervisorRow, pool: str, new: int | None) -> Confirmation:
    """``+``/``-`` (``new`` processes) or ``0`` (``new`` None): the pool, its size now and after."""
    now = pool_size(s, pool)
    where = f"Pool {pool} of supervisor {s.name} on {m.name}"
    if new is None:
        size = f"{plural(now, 'process', 'processes')} now, by its override"
        return Confirmation(
            f"Drop the override of {pool}?",
            f"{where}: {size}; then the balancer ({s.balance}) sizes it again.",
            "Drop override",
        )
    body = (
        f"{where}: {plural(now, 'process', 'processes')} now, {plural(new, 'process', 'processes')} after. "
        "The balancer keeps that size until 0 drops the override; processes are stopped only once idle."
    )
    if s.min_processes is not None and new < s.min_processes:
        body += f" The master keeps at least {s.min_processes} (min_processes)."
    return Confirmation(f"Scale {pool} of {s.name} from {now} to {new}?", body, "Scale")


@dataclass
class SupervisorsModel:
    masters: tuple[MasterRow, ...] = ()
    configured: tuple[str, ...] = ()
    error: str | None = None
    loaded: bool = False

    @property
    def lines(self) -> list[Line]:
        # the configured ones are told apart from the running ones only once the masters are read
        return build_lines(self.masters, self.configured if self.loaded else ())

    def find(self, key: str | None) -> Line | None:
        return next((line for line in self.lines if line.key == key), None)

    def table_rows(self, now: float) -> list[Row]:
        return [(line.key, line_cells(line, now)) for line in self.lines]

    def title(self, now: float) -> str:
        if not self.loaded:
            return "loading…"
        lost = sum(1 for m in self.masters if is_lost(m, now))
        text = plural(len(self.masters), "master")
        sups = sum(len(m.supervisors) for m in self.masters)
        text += f" · {plural(sups, 'supervisor')}"
        if lost:
            text += f" · {lost} lost"
        return text


def target_pool(line: Line | None) -> tuple[MasterRow, SupervisorRow, str] | None:
    """The pool ``+``/``-``/``0`` act on: the highlighted pool, or a one-pool supervisor's only one."""
    if line is None or line.master is None or line.supervisor is None:
        return None
    if line.kind == "pool" and line.pool:
        return line.master, line.supervisor, line.pool
    pools = pools_of(line.supervisor)
    if line.kind == "supervisor" and len(pools) == 1:
        return line.master, line.supervisor, pools[0]
    return None


class SupervisorsView(Gated, Vertical):
    BINDING_GROUP_TITLE = "Supervisors"
    ACTIONS: ClassVar[frozenset[str]] = frozenset(
        {"pause", "scale_up", "scale_down", "scale_reset", "restart", "terminate"}
    )
    GATED: ClassVar[tuple[str, ...]] = ("copy",)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause/continue"),
        Binding("plus", "scale_up", "Scale +", key_display="+"),
        Binding("minus", "scale_down", "Scale −", key_display="-"),
        Binding("0", "scale_reset", "Drop override", show=False),
        Binding("r", "restart", "Restart workers", show=False),
        Binding("T", "terminate", "Terminate", show=False),
        Binding("y", "copy", "Copy name", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = SupervisorsModel()

    def compose(self) -> ComposeResult:
        with Horizontal(classes="list-bar"):
            yield Static("Supervisors", classes="list-title", markup=False)
            yield Static("", id="supervisors-note", classes="list-note", markup=False)
        yield KeyedTable(id="supervisors-table")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#supervisors-table", KeyedTable)

    @property
    def highlighted(self) -> Line | None:
        return self.model.find(self.table.cursor_key)

    def select_name(self, name: str) -> None:
        """Put the cursor on master ``name`` (the palette's way in); its rows may come with the
        next fetch, so a name not listed yet leaves the cursor where it is."""
        table = self.table
        key = f"m:{name}"
        if key in table.keys:
            table.move_cursor(row=table.get_row_index(key), animate=False)

    def fetch(self) -> None:
        app: Any = self.app
        if app.admin is not None:
            self._fetch()

    @work(group="fetch-supervisors", exclusive=True, exit_on_error=False)
    async def _fetch(self) -> None:
        app: Any = self.app
        try:
            rows = await app.admin.masters()
        except Exception as exc:  # keep the rows, say why they are old
            self.post_message(PageFailed("supervisors", f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(PageFetched("supervisors", tuple(rows), app.clock()))

    @on(PageFetched)
    def _fetched(self, message: PageFetched) -> None:
        if message.view != "supervisors":
            return
        message.stop()
        self.model.masters, self.model.error, self.model.loaded = message.data, None, True
        self.draw()

    @on(PageFailed)
    def _failed(self, message: PageFailed) -> None:
        if message.view != "supervisors":
            return
        message.stop()
        self.model.error = message.error
        self.draw()

    def draw(self) -> None:
        """Also the 1 s tick: heartbeat ages move, a master may turn lost."""
        app: Any = self.app
        self.model.configured = tuple(getattr(app, "configured_supervisors", ()))
        now = app.clock()
        note = f"not refreshed: {self.model.error}" if self.model.error else self.model.title(now)
        widget = self.query_one("#supervisors-note", Static)
        set_text(widget, note)
        widget.set_class(self.model.error is not None, "-error")
        self.table.show(columns_for(COLUMNS, bool(app.wide)), self.model.table_rows(now))
        self.refresh_gates()

    @on(DataTable.RowHighlighted, "#supervisors-table")
    def _highlighted(self) -> None:
        self.refresh_gates()

    def _live_master(self) -> MasterRow | None:
        line = self.highlighted
        app: Any = self.app
        if line is None or line.master is None or is_lost(line.master, app.clock()):
            return None
        return line.master

    def can(self, action: str) -> bool | None:
        line = self.highlighted
        master = self._live_master()
        if action == "copy":
            return line is not None or None
        if action in ("restart", "terminate"):
            return master is not None or None
        if action == "pause":
            return (master is not None and line is not None and line.kind in ("master", "supervisor")) or None
        if action in ("scale_up", "scale_down", "scale_reset"):
            target = target_pool(line) if master is not None else None
            if target is None:
                return None
            _, sup, pool = target
            if action == "scale_reset":
                return pool in sup.overrides or None
            if action == "scale_down":
                return pool_size(sup, pool) > 0 or None
            return True
        return True

    def action_copy(self) -> None:
        line = self.highlighted
        if line is not None:
            from .batches import copy_id

            name = line.supervisor.name if line.supervisor is not None else (line.master.name if line.master else "")
            copy_id(self, name)

    def _send(self, what: str, confirmation: Confirmation | None, call: Any) -> None:
        async def go() -> None:
            await confirm_and_run(self, what, confirmation, call)

        self.run_worker(go(), group="action", exit_on_error=False)

    def action_pause(self) -> None:
        line, master = self.highlighted, self._live_master()
        if line is None or master is None or line.kind == "pool":
            return
        admin: Any = self.app.admin  # type: ignore[attr-defined]
        sup = line.supervisor.name if line.kind == "supervisor" and line.supervisor is not None else None
        paused = (line.supervisor.status if sup and line.supervisor else master.status) == "paused"
        action = "continue" if paused else "pause"
        self._send(
            f"{action} {sup or master.name}",
            pause_confirmation(line),
            lambda: admin.master_command(master.name, action, sup),
        )

    def _scale(self, step: int | None) -> None:
        target = target_pool(self.highlighted) if self._live_master() is not None else None
        if target is None:
            return
        master, sup, pool = target
        admin: Any = self.app.admin  # type: ignore[attr-defined]
        size = None if step is None else max(0, pool_size(sup, pool) + step)
        self._send(
            f"Scale {sup.name} {pool}",
            scale_confirmation(master, sup, pool, size),
            lambda: admin.scale(master.name, sup.name, pool, size),
        )

    def action_scale_up(self) -> None:
        self._scale(1)

    def action_scale_down(self) -> None:
        self._scale(-1)

    def action_scale_reset(self) -> None:
        self._scale(None)

    def action_restart(self) -> None:
        master = self._live_master()
        if master is not None:
            admin: Any = self.app.admin  # type: ignore[attr-defined]
            self._send(
                f"Restart {master.name}",
                restart_confirmation(master),
                lambda: admin.master_command(master.name, "restart"),
            )

    def action_terminate(self) -> None:
        master = self._live_master()
        if master is not None:
            admin: Any = self.app.admin  # type: ignore[attr-defined]
            self._send(
                f"Terminate {master.name}",
                terminate_confirmation(master),
                lambda: admin.master_command(master.name, "terminate"),
            )
