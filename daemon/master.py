"""``evalharnessd``: the master process.  It runs supervisors, each owning a pool of worker
processes per queue (or one pool for all its queues with balance "off"); restarts workers that
exit and backs off a crash loop; balances pools on queue demand; and obeys signals and commands
sent through Redis:

* SIGTERM / SIGINT: stop taking work, let in-flight jobs finish within the grace period, exit 0
  (a second SIGINT kills the workers at once);
* SIGUSR2 pause, SIGCONT continue, SIGUSR1 (or SIGHUP) restart the workers with fresh config;
* ``evalharness pause|continue|terminate|restart|scale`` do the same from any host."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import click

from evalharness.core.config import (
    ENV_CONFIG,
    ENV_PREFIX,
    ENV_REDIS_URL,
    SupervisorConfig,
    load_config,
    resolve_settings,
    validate_name,
)
from evalharness.core.connection import REDIS_ERRORS, async_client
from evalharness.core.errors import ConfigError, EvalHarnessError
from evalharness.core.forget import DEFAULT_QUEUE_RETENTION
from evalharness.core.keys import GlobalKeys
from evalharness.core.telemetry import collect_snapshot

from .balance_demand import read_demand
from .balancer import PoolState, QueueDemand, explain, initial_sizes, plan, pool_queues
from .common import child_env, exit_with_error, setup_logging, worker_command
from .publisher import Publisher, add_event
from .reload import ENV_REPORT_MODULES, ModuleWatcher
from .worker import EXIT_REPLACE

log = logging.getLogger("evalharness.master")

RESTART_MIN = 1.0  # seconds before restarting a worker that crashed soon after start
RESTART_MAX = 60.0
STABLE_AFTER = 30.0  # a worker that ran this long resets its crash backoff
CRASH_LOOP_AFTER = 3  # crashes in a row (each soon after its start) that make a worker_crash_loop event, once
NO_PROCESS_CAP = 1 << 30  # a pool sized by an operator's scale, or with max_processes < 0: no supervisor cap
BALANCE_TICK = 0.25  # seconds between two passes with an auto supervisor: a burst waits at most this for a decision


@dataclass
class Slot:
    """One worker process position in a pool."""

    supervisor: str
    queues: tuple[str, ...]
    concurrency: int
    imports: tuple[str, ...]
    grace: float
    lease: float = 30.0
    extra: tuple[str, ...] = ()
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    failures: int = 0
    restarts: int = 0
    retiring: bool = False  # scaled down or reloaded: stop it gracefully, do not restart it
    told: bool = False  # its process was sent SIGTERM to retire it
    task: asyncio.Task[None] | None = None
    history: list[int] = field(default_factory=list)

    def command(self, paused: bool = False) -> list[str]:
        extra = [*self.extra, "--paused"] if paused else list(self.extra)
        return worker_command(
            self.queues,
            self.concurrency,
            self.imports,
            ["--grace", f"{self.grace:g}", "--lease", f"{self.lease:g}", *extra],
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class Pool:
    """The worker processes of one supervisor that serve one queue (or, with balance "off",
    all of the supervisor's queues in priority order)."""

    supervisor: SupervisorConfig
    name: str  # the balancer's pool name: the queue, or "a,b" for a pool serving several
    queues: tuple[str, ...]
    target: int
    slots: list[Slot] = field(default_factory=list)
    changed_at: float | None = None  # monotonic time of its last change
    surplus_since: float | None = None  # monotonic time since when it has had more processes than it needs
    override: int | None = None  # `evalharness scale`: a temporary fixed size

    @property
    def live(self) -> list[Slot]:
        return [s for s in self.slots if not s.retiring]


def balance_mode(sup: SupervisorConfig) -> str:
    return str(sup.balance)


def initial_pools(sup: SupervisorConfig) -> list[Pool]:
    sizes = initial_sizes(sup)
    return [Pool(sup, name, queues, sizes[name]) for name, queues in pool_queues(sup).items()]


@dataclass(frozen=True)
class MasterOptions:
    """How a master runs its workers and its telemetry; the supervisors are given beside it."""

    env: dict[str, str]  # the environment of every worker process
    imports: tuple[str, ...]
    grace: float  # seconds in-flight jobs get at a stop
    lease: float = 30.0
    worker_args: tuple[str, ...] = ()  # daemon-wide worker flags; a supervisor's own come after
    redis_url: str | None = None
    prefix: str = "eh"
    long_waits: dict[str, float] = field(default_factory=dict)  # queue -> seconds
    default_long_wait: float = 60.0
    history_cap: int = 1440  # minutes of telemetry history kept
    # reads the supervisors again for a restart (SIGUSR1); None: keep the ones given
    reload: Callable[[], list[SupervisorConfig]] | None = None
    queue_retention: float = DEFAULT_QUEUE_RETENTION
    watch_modules: bool = False  # --reload: restart workers when a module they imported changes
    environment: str = ""  # which [environments.NAME] of the config runs here


class Master:
    def __init__(self, supervisors: list[SupervisorConfig], options: MasterOptions) -> None:
        self.options = options
        self.name = f"{socket.gethostname()}-{os.urandom(2).hex()}"
        self.env = options.env
        self.imports = options.imports
        self.grace = options.grace
        self.lease = options.lease
        self.worker_args = options.worker_args
        self.redis_url = options.redis_url
        self.prefix = options.prefix
        self.long_waits = options.long_waits
        self.default_long_wait = options.default_long_wait
        self.history_cap = options.history_cap
        self.queue_retention = options.queue_retention
        self.reload = options.reload
        # --reload: workers report the modules they import; a watcher restarts them on a change
        self.watch_modules = options.watch_modules
        if options.watch_modules:
            self.env = {**options.env, ENV_REPORT_MODULES: "1"}
        self.started_at = time.time()
        self.environment = options.environment
        self.stopping = asyncio.Event()
        self.force = False
        self.client: Any = None
        self.publisher: Publisher | None = None
        self.paused: set[str] = set()  # supervisor names
        # supervisor -> its latest pool size change, for the console ("+2 judge 14s ago")
        self.last_balance: dict[str, dict[str, Any]] = {}
        self.supervisors: list[SupervisorConfig] = []
        self.pools: list[Pool] = []
        # workers of pools a restart replaced, finishing their jobs: waited for when the master
        # stops and killed by a second SIGINT; not counted against max_processes (their
        # replacements start at once, as a restart promises)
        self.retired: list[Slot] = []
        self._configure(supervisors)
        self._wake = asyncio.Event()

    def _configure(self, supervisors: list[SupervisorConfig]) -> None:
        self.supervisors = supervisors
        self.pools = [pool for sup in supervisors for pool in initial_pools(sup)]

    @property
    def slots(self) -> list[Slot]:
        return [s for p in self.pools for s in p.slots] + self.retired

    # -- signals and commands -------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self.request_stop, signal.SIGINT)
        loop.add_signal_handler(signal.SIGUSR2, self.pause)
        loop.add_signal_handler(signal.SIGCONT, self.resume)
        loop.add_signal_handler(signal.SIGUSR1, self.request_restart)
        loop.add_signal_handler(signal.SIGHUP, self.request_restart)

    def request_stop(self, sig: int, why: str | None = None) -> None:
        """Stop gracefully (``why``: what asked, when it was not the signal ``sig`` itself)."""
        if self.stopping.is_set():
            if sig == signal.SIGINT:
                log.warning("second SIGINT: killing the workers now")
                self.force = True
                for slot in self.slots:
                    if slot.alive:
                        slot.proc.kill()  # type: ignore[union-attr]
            return
        asked = why or f"{signal.Signals(sig).name} received"
        log.info("%s: stopping; in-flight jobs get up to %.0fs", asked, self.grace)
        self.stopping.set()

    def pause(self, supervisor: str | None = None) -> None:
        names = [s.name for s in self.supervisors if supervisor in (None, s.name)]
        self.paused.update(names)
        log.info("paused %s", ", ".join(names) or "nothing")
        for pool in self.pools:
            if pool.supervisor.name in names:
                self._signal_pool(pool, signal.SIGUSR2)

    def resume(self, supervisor: str | None = None) -> None:
        names = [s.name for s in self.supervisors if supervisor in (None, s.name)]
        self.paused.difference_update(names)
        log.info("continuing %s", ", ".join(names) or "nothing")
        for pool in self.pools:
            if pool.supervisor.name in names:
                self._signal_pool(pool, signal.SIGCONT)

    def request_restart(self) -> None:
        """SIGUSR1: read the configuration again and replace every worker gracefully."""
        if self.stopping.is_set():
            return
        log.info("restarting workers with a freshly read configuration")
        sups = self.supervisors
        if self.reload is not None:
            try:
                sups = self.reload()
            except EvalHarnessError as exc:
                log.error("configuration not reloaded, keeping the running one: %s", exc)
                return
        old = self.pools
        self._configure(sups)
        for pool in old:
            for slot in pool.slots:
                self._retire(slot)
                self.retired.append(slot)
        self._wake.set()

    def scale(self, supervisor: str, queue: str, n: int | None) -> bool:
        for pool in self.pools:
            if pool.supervisor.name == supervisor and queue in pool.queues:
                pool.override = n
                log.info(
                    "supervisor %s queue %s: %s",
                    supervisor,
                    queue,
                    "back to balancing" if n is None else f"scaled to {n}",
                )
                self._wake.set()
                return True
        return False

    def _signal_pool(self, pool: Pool, sig: int) -> None:
        for slot in pool.slots:
            if slot.alive:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)  # type: ignore[union-attr]

    async def _commands(self) -> None:
        """Commands sent through Redis (``evalharness pause|continue|terminate|scale``)."""
        if self.client is None:
            return
        key = control_key(self.prefix, self.name)
        for _ in range(20):
            raw = await self.client.lpop(key)
            if raw is None:
                return
            try:
                cmd = json.loads(raw)
            except ValueError:
                continue
            action, sup = cmd.get("action"), cmd.get("supervisor")
            log.info("command from %s: %s", cmd.get("from", "?"), raw)
            if action == "pause":
                self.pause(sup)
            elif action == "continue":
                self.resume(sup)
            elif action == "terminate":
                self.request_stop(signal.SIGTERM, f"terminate command from {cmd.get('from', '?')}")
            elif action == "restart":
                self.request_restart()
            elif action == "scale":
                self.scale(
                    str(sup), str(cmd.get("queue")), None if cmd.get("processes") is None else int(cmd["processes"])
                )

    # -- the pools ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What this master says about itself in its heartbeat (and so in telemetry)."""
        sups = []
        for sup in self.supervisors:
            per_queue: dict[str, int] = {}
            for pool in self.pools:
                if pool.supervisor is sup:
                    per_queue[pool.name] = sum(1 for s in pool.live if s.alive)
            sups.append(
                {
                    "name": sup.name,
                    "queues": list(sup.queues),
                    "balance": balance_mode(sup),
                    "processes": sum(per_queue.values()),
                    "per_queue": per_queue,
                    "targets": {p.name: p.target for p in self.pools if p.supervisor is sup},
                    "overrides": {
                        p.name: p.override for p in self.pools if p.supervisor is sup and p.override is not None
                    },
                    "min_processes": sup.min_processes,
                    "max_processes": sup.max_processes,
                    "concurrency": sup.concurrency,
                    "status": "paused" if sup.name in self.paused else "running",
                    # the console joins these with the workers' heartbeats for memory and jobs done
                    "pids": [
                        s.proc.pid
                        for p in self.pools
                        if p.supervisor is sup
                        for s in p.live
                        if s.alive and s.proc is not None
                    ],
                    "last_balance": self.last_balance.get(sup.name),
                }
            )
        if self.stopping.is_set():
            status = "stopping"
        elif self.supervisors and all(s.name in self.paused for s in self.supervisors):
            status = "paused"
        else:
            status = "running"
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "status": status,
            "started_at": self.started_at,
            "grace": self.grace,
            "environment": self.environment,
            "supervisors": sups,
        }

    def _new_slot(self, pool: Pool) -> Slot:
        sup = pool.supervisor
        slot = Slot(
            sup.name,
            pool.queues,
            sup.concurrency,
            self.imports,
            self.grace,
            self.lease,
            self.worker_args + supervisor_worker_args(sup),
        )
        pool.slots.append(slot)
        slot.task = asyncio.create_task(self._keep(pool, slot), name=f"slot:{sup.name}:{pool.name}")
        return slot

    def _retire(self, slot: Slot) -> None:
        slot.retiring = True
        self._tell_to_retire(slot)

    @staticmethod
    def _tell_to_retire(slot: Slot) -> None:
        """SIGTERM to a retiring slot's process, once (a slot retired while its process was being
        spawned is told as soon as the process exists: see _keep)."""
        if slot.alive and not slot.told:
            slot.told = True
            with contextlib.suppress(ProcessLookupError):
                slot.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    async def _reconcile(self) -> None:
        if self.stopping.is_set():
            return
        idle = await self._idle_pids()  # read once per pass: the balancer and scale-down both use it
        await self._balance(idle)
        running: dict[str, int] = {}
        # a restart's retired workers do not count: their replacements start at once
        for slot in (s for p in self.pools for s in p.slots):
            if slot.alive or not slot.retiring:
                running[slot.supervisor] = running.get(slot.supervisor, 0) + 1
        for pool in self.pools:
            want = pool.target
            live = pool.live
            if len(live) < want:
                # a retiring worker still finishing its jobs counts against max_processes
                sup = pool.supervisor
                cap = sup.max_processes if pool.override is None and sup.max_processes >= 0 else NO_PROCESS_CAP
                room = max(0, cap - running.get(sup.name, 0))
                for _ in range(min(want - len(live), room)):
                    self._new_slot(pool)
                    running[sup.name] = running.get(sup.name, 0) + 1
            elif len(live) > want:
                # scale down gracefully, idle workers first: a worker finishes its jobs before it exits
                ranked = sorted(live, key=lambda s: (0 if s.proc is not None and s.proc.pid in idle else 1, -s.started))
                for slot in ranked[: len(live) - want]:
                    self._retire(slot)
            pool.slots = [s for s in pool.slots if not (s.retiring and s.task is not None and s.task.done())]
        self.retired = [s for s in self.retired if not (s.task is not None and s.task.done())]

    async def _idle_pids(self) -> set[int]:
        if self.client is None:
            return set()
        try:
            raw = await self.client.hvals(GlobalKeys(self.prefix).workers)
        except REDIS_ERRORS:
            return set()
        idle = set()
        for item in raw:
            with contextlib.suppress(ValueError, TypeError):
                info = json.loads(item)
                if info.get("running") == 0:
                    idle.add(int(info["pid"]))
        return idle

    async def _balance(self, idle: set[int]) -> None:
        """Size every pool with the balancer (a pure function of pools, demand and config)."""
        sups = [s for s in self.supervisors if s.name not in self.paused]
        if not sups:
            return
        by_queue: dict[str, dict[str, Any]] = {}
        fresh: dict[str, QueueDemand] = {}
        if self.client is not None and any(balance_mode(s) == "auto" for s in sups):
            # the telemetry loop builds a snapshot each second: use it rather than read it again
            snapshot = self.publisher.last_snapshot if self.publisher is not None else None
            # only its runtimes are used (the counts are read fresh): they change slowly
            if snapshot is None or time.time() - snapshot["at"] > 10.0:
                try:
                    snapshot = await collect_snapshot(self.client, self.prefix)
                except REDIS_ERRORS:
                    return
            by_queue = {q["name"]: q for q in snapshot["queues"]}
            auto_queues = [q for s in sups if balance_mode(s) == "auto" for q in s.queues]
            try:
                fresh = await read_demand(self.client, self.prefix, auto_queues, snapshot, time.time())
            except REDIS_ERRORS:
                return
        now = time.monotonic()
        for sup in sups:
            pools = [p for p in self.pools if p.supervisor is sup]
            states = {}
            for p in pools:
                alive = [s for s in p.live if s.alive]
                n_idle = sum(1 for s in alive if s.proc is not None and s.proc.pid in idle)
                states[p.name] = PoolState(
                    processes=len(p.live),
                    idle=min(n_idle, len(p.live)),
                    changed_at=p.changed_at,
                    surplus_since=p.surplus_since,
                    stopping=sum(1 for s in p.slots if s.retiring and s.alive),
                )
            if balance_mode(sup) == "auto":
                demand = {q: fresh.get(q, QueueDemand()) for q in sup.queues}
            else:
                demand = {
                    q: QueueDemand.from_telemetry(by_queue[q]) if q in by_queue else QueueDemand() for q in sup.queues
                }
            overrides = {p.name: p.override for p in pools if p.override is not None}
            try:
                result = plan(sup, states, demand, now, overrides)
            except ValueError as exc:
                log.warning("supervisor %s: not balanced this time (%s)", sup.name, exc)
                continue
            for pp in result.pools:
                pool = next(p for p in pools if p.name == pp.name)
                pool.surplus_since = pp.surplus_since
                if pool.override is not None:
                    # an operator's `evalharness scale` wins, even above max_processes, until --reset
                    pp = replace(pp, target=pool.override)
                if pp.target != pool.target:
                    why = explain(
                        sup,
                        replace(pp, current=pool.target),
                        demand,
                        now,
                        states[pp.name],
                        pinned=pool.override is not None,
                    )
                    log.info("supervisor %s: %s", sup.name, why["message"])
                    await self._scale_event(sup.name, pool.name, why)
                    self.last_balance[sup.name] = {
                        "pool": pool.name,
                        "from": pool.target,
                        "to": pp.target,
                        "at": time.time(),
                    }
                    pool.target = pp.target
                    pool.changed_at = now

    async def _scale_event(self, supervisor: str, pool: str, why: dict[str, str]) -> None:
        """Every pool size change goes on the event stream, with its reason and the numbers behind it."""
        if self.client is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            await add_event(self.client, self.prefix, "supervisor_scaled", supervisor=supervisor, queue=pool, **why)

    def _tick(self) -> float:
        return BALANCE_TICK if any(balance_mode(s) == "auto" for s in self.supervisors) else 1.0

    async def run(self) -> int:
        log.info("evalharnessd %s: supervisors %s", self.name, ", ".join(s.name for s in self.supervisors))
        log.info(
            "stopping lets in-flight jobs run for up to %.0fs: "
            "use systemd TimeoutStopSec=%d or supervisord stopwaitsecs=%d",
            self.grace,
            int(self.grace + 15),
            int(self.grace + 15),
        )
        client = async_client(self.redis_url) if self.redis_url else None
        self.client = client
        publisher_stop = asyncio.Event()
        publisher = None
        if client is not None:
            self.publisher = Publisher(
                client,
                self.prefix,
                self.name,
                self.describe,
                self.long_waits,
                self.default_long_wait,
                self.history_cap,
                queue_retention=self.queue_retention,
            )
            publisher = asyncio.create_task(self.publisher.run(publisher_stop), name="telemetry")
        watcher = None
        if client is not None and self.watch_modules:
            watch = ModuleWatcher(client, self.prefix, self._serving_pids, self.request_restart)
            watcher = asyncio.create_task(watch.run(publisher_stop), name="reload")
        while not self.stopping.is_set():
            try:
                await self._commands()
                await self._reconcile()
            except REDIS_ERRORS as exc:
                log.warning("control: redis unavailable (%s)", exc)
            self._wake.clear()
            await self._idle(self._tick())
        await self._terminate()
        tasks = [s.task for s in self.slots if s.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        publisher_stop.set()
        if publisher is not None:
            await asyncio.wait({publisher}, timeout=5)
        if watcher is not None:
            await asyncio.wait({watcher}, timeout=5)
        if client is not None:
            await client.aclose()
        return 0

    async def _idle(self, seconds: float) -> None:
        """Wait until woken, told to stop, or ``seconds`` pass.  Both waiters are cancelled
        afterwards: the one that did not fire would otherwise stay pending for ever, and an idle
        master runs this every second."""
        waiters = {asyncio.ensure_future(self.stopping.wait()), asyncio.ensure_future(self._wake.wait())}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _serving_pids(self) -> set[int]:
        """Pids of the workers that are not being replaced."""
        return {s.proc.pid for s in self.slots if s.alive and not s.retiring and s.proc is not None}

    async def _spawn(self, slot: Slot) -> asyncio.subprocess.Process:
        paused = slot.supervisor in self.paused
        sup = next((s for s in self.supervisors if s.name == slot.supervisor), None)
        nice = sup.nice if sup is not None else 0  # its supervisor went with a reload
        proc = await asyncio.create_subprocess_exec(*slot.command(paused), env=self.env, preexec_fn=_child_setup(nice))
        slot.proc, slot.started = proc, time.monotonic()
        log.info("supervisor %s: worker pid %d serving %s", slot.supervisor, proc.pid, ",".join(slot.queues))
        return proc

    async def _keep(self, pool: Pool, slot: Slot) -> None:
        """Keep one worker process alive until the master stops or the slot is retired."""
        while not self.stopping.is_set() and not slot.retiring:
            proc = await self._spawn(slot)
            if slot.retiring:  # retired while it was being spawned
                self._tell_to_retire(slot)
            code = await proc.wait()
            if self.stopping.is_set() or slot.retiring:
                return
            ran = time.monotonic() - slot.started
            # 0: the worker recycled itself (--max-jobs/--max-time/--memory); 70: it ended itself
            # to stop a job it could not cancel.  Both are planned exits: replace it at once.
            planned = code in (0, EXIT_REPLACE)
            slot.failures = 0 if planned or ran >= STABLE_AFTER else slot.failures + 1
            delay = 0.0 if slot.failures == 0 else min(RESTART_MAX, RESTART_MIN * 2 ** (slot.failures - 1))
            slot.restarts += 1
            (log.info if planned else log.warning)(
                "supervisor %s: worker pid %d exited with code %s after %.1fs; restarting in %.0fs",
                slot.supervisor,
                proc.pid,
                code,
                ran,
                delay,
            )
            if slot.failures == CRASH_LOOP_AFTER and self.client is not None:
                with contextlib.suppress(*REDIS_ERRORS):
                    await add_event(
                        self.client,
                        self.prefix,
                        "worker_crash_loop",
                        supervisor=slot.supervisor,
                        queue=",".join(slot.queues),
                        message=f"a worker of {slot.supervisor} crashed {CRASH_LOOP_AFTER} times in a row "
                        f"(last exit code {code})",
                    )
            if delay:
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                    return
                except TimeoutError:
                    pass

    async def _terminate(self) -> None:
        """Stop every worker gracefully and wait for each, those a restart or a scale-down is
        already retiring included (they were told once; a second SIGTERM is not sent)."""
        slots = [s for s in self.slots if s.proc is not None and s.proc.returncode is None]
        live = [s.proc for s in slots if s.proc is not None]
        for slot in slots:
            if slot.told:
                continue
            slot.told = True
            try:
                slot.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            except ProcessLookupError:
                pass
        waits = [asyncio.create_task(p.wait()) for p in live]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=self.grace + 10)
        if pending:
            log.warning("%d worker(s) did not stop within the grace period; killing them", len(pending))
            for proc in live:
                if proc.returncode is None:
                    proc.kill()
            await asyncio.gather(*pending, return_exceptions=True)


def _child_setup(nice: int) -> Callable[[], None]:
    """Runs in each worker before it starts: its niceness, and (on Linux) a SIGTERM when the
    master dies, so a killed master never leaves workers running unsupervised."""

    def setup() -> None:
        if nice > 0:
            os.nice(nice)
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


def default_grace(sups: list[SupervisorConfig], hard_timeout: float = 0.0) -> float:
    """Long enough for the longest job to finish: its hard limit when one is set, else the
    larger of the supervisor's timeout and the default job timeout (60 s); plus 30 s."""
    limits = [float(s.hard_timeout or hard_timeout or max(float(s.timeout or 60), 60.0)) for s in sups]
    return max(limits or [60.0]) + 30.0


def supervisor_worker_args(sup: SupervisorConfig) -> tuple[str, ...]:
    """A supervisor's own worker limits, given after the daemon-wide flags so they win."""
    args: list[str] = []
    limits: tuple[tuple[float | int, str], ...] = (
        (sup.memory, "--memory"),
        (sup.max_jobs, "--max-jobs"),
        (sup.max_time, "--max-time"),
        (sup.hard_timeout, "--hard-timeout"),
    )
    for value, flag in limits:
        if value:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if sup.sleep and sup.sleep != 1.0:
        args += ["--sleep", f"{sup.sleep:g}"]
    return tuple(args)


def control_key(prefix: str, master: str) -> str:
    """LIST of JSON commands for one master (pause, continue, terminate, restart, scale)."""
    return GlobalKeys(prefix).control(master)


def parse_long_waits(flags: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    default, per_queue = 60.0, {}
    for flag in flags:
        name, sep, value = flag.rpartition("=")
        try:
            seconds = float(value)
            if seconds <= 0:
                raise ValueError
            if sep:
                validate_name("queue", name)
        except (ValueError, ConfigError):
            raise ConfigError(
                f"--long-wait {flag!r}: expected SECONDS or QUEUE=SECONDS, for example evals=30"
            ) from None
        if sep:
            per_queue[name] = seconds
        else:
            default = seconds
    return default, per_queue


def parse_queue_flags(flags: tuple[str, ...], concurrency: int) -> list[SupervisorConfig]:
    sups = []
    for flag in flags:
        name, sep, count = flag.partition("=")
        if not sep:
            name, count = flag, "1"
        try:
            validate_name("queue", name)
        except ConfigError as exc:
            raise ConfigError(f"--queue {flag!r}: {exc}") from None
        try:
            n = int(count)
        except ValueError:
            raise ConfigError(
                f"--queue {flag!r}: expected NAME=PROCESSES, for example evals=2 ({count!r} is not a whole number)"
            ) from None
        if n < 0:
            raise ConfigError(f"--queue {flag!r}: the process count must be >= 0")
        sups.append(SupervisorConfig(name=name, queues=(name,), processes=n, concurrency=concurrency))
    return sups


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME=PROCESSES",
    help="Run PROCESSES workers on queue NAME; repeat for several. Overrides the config's supervisors.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Jobs each worker process runs at once (with --queue).",
)
@click.option(
    "--import", "imports", multiple=True, metavar="MODULE", help="Module that registers jobs, imported by every worker."
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds in-flight jobs get to finish on SIGTERM/SIGINT. Default: the longest job limit + 30 s, "
    "where a supervisor's limit is its hard_timeout, else --hard-timeout, else the larger of its timeout "
    "and 60 s (so 90 s with no limits set).",
)
@click.option(
    "--max-jobs",
    type=click.IntRange(min=0),
    default=0,
    help="Each worker exits after this many jobs and is replaced (0: no limit).",
)
@click.option(
    "--max-time",
    type=click.FloatRange(min=0),
    default=0,
    help="Each worker exits after this many seconds and is replaced (0: no limit).",
)
@click.option(
    "--memory",
    type=click.FloatRange(min=0),
    default=0,
    help="A worker over this many MB of resident memory exits after its jobs and is replaced (0: no limit).",
)
@click.option(
    "--hard-timeout",
    type=click.FloatRange(min=0),
    default=0,
    help="No job may run longer than this, whatever its own timeout (0: off).",
)
@click.option(
    "--long-wait",
    "long_waits",
    multiple=True,
    metavar="[QUEUE=]SECONDS",
    help="Emit a long_wait event when a queue's oldest job waits this long (default 60; QUEUE=SECONDS for one queue).",
)
@click.option(
    "--history-minutes",
    type=click.IntRange(min=1),
    default=1440,
    show_default=True,
    help="Per-minute telemetry history kept in Redis.",
)
@click.option(
    "--forget-queues-after",
    "queue_retention",
    type=click.FloatRange(min=0),
    default=DEFAULT_QUEUE_RETENTION,
    show_default=True,
    metavar="SECONDS",
    help="Forget a queue (from status and the console) once it has had no jobs, batches or workers "
    "this long; 0: never. `evalharness queue forget` does it at once.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds a job's reservation lasts without renewal; a dead worker's jobs come back after this.",
)
@click.option(
    "--redis-url", envvar=ENV_REDIS_URL, help=f"Redis URL. Env {ENV_REDIS_URL}; default: the embedded server."
)
@click.option("--prefix", envvar=ENV_PREFIX, help="Key prefix (default eh).")
@click.option(
    "--config",
    "config_path",
    envvar=ENV_CONFIG,
    type=click.Path(dir_okay=False),
    help="Config file (TOML) with [supervisors.NAME] tables.",
)
@click.option(
    "--environment",
    envvar="EVALHARNESS_ENV",
    help="Which [environments.NAME] of the config file to run (env EVALHARNESS_ENV; default production).",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option(
    "--reload",
    "reload_modules",
    is_flag=True,
    help="Development: restart the workers gracefully when a module they imported from under the "
    "current directory changes (checked every second).",
)
def cli(
    queues: tuple[str, ...],
    concurrency: int,
    imports: tuple[str, ...],
    grace: float | None,
    max_jobs: int,
    max_time: float,
    memory: float,
    hard_timeout: float,
    long_waits: tuple[str, ...],
    history_minutes: int,
    queue_retention: float,
    lease: float,
    redis_url: str | None,
    prefix: str | None,
    config_path: str | None,
    environment: str | None,
    log_level: str,
    reload_modules: bool,
) -> None:
    """Start and supervise worker processes until SIGTERM or SIGINT.

    \b
    evalharnessd --queue evals=2 --concurrency 20
    evalharnessd --config evalharness.toml

    SIGTERM/SIGINT: workers stop taking jobs and finish in-flight ones within
    --grace seconds (a second SIGINT kills them). A worker that exits is
    restarted; one that keeps crashing is restarted with backoff up to 60s.

    Workers load the SUT again when its source changes, so runs always use
    the code on disk. With --reload (development) they are also restarted, as
    SIGUSR1 does, when a module they imported from under the current
    directory changes.
    """
    setup_logging(log_level)
    try:
        config = load_config(config_path, environment=environment)
        sups = parse_queue_flags(queues, concurrency) if queues else list(config.supervisors)
        if not sups:
            raise ConfigError(
                "nothing to run: pass --queue NAME=PROCESSES or a config file with [supervisors.NAME] tables"
            )
        settings = resolve_settings(redis_url, prefix, config, imports)
        default_wait, per_queue = parse_long_waits(long_waits)
        if grace is None:
            grace = default_grace(sups, hard_timeout)
    except EvalHarnessError as exc:
        exit_with_error(exc)
        return
    worker_args = (
        "--max-jobs",
        str(max_jobs),
        "--max-time",
        f"{max_time:g}",
        "--memory",
        f"{memory:g}",
        "--hard-timeout",
        f"{hard_timeout:g}",
    )

    def reload() -> list[SupervisorConfig]:
        fresh = load_config(config_path, environment=environment)
        return parse_queue_flags(queues, concurrency) if queues else list(fresh.supervisors)

    env = child_env(settings)
    if config.path is not None:
        # workers read the same file: an adapter SUT (openai:MODEL) takes its settings from it
        env[ENV_CONFIG] = str(config.path.resolve())
    master = Master(
        sups,
        MasterOptions(
            env,
            settings.imports,
            grace,
            lease,
            worker_args,
            redis_url=settings.redis_url,
            prefix=settings.prefix,
            long_waits=per_queue,
            default_long_wait=default_wait,
            history_cap=history_minutes,
            reload=reload,
            queue_retention=queue_retention,
            watch_modules=reload_modules,
            environment=config.environment,
        ),
    )

    async def main() -> int:
        master.install_signal_handlers()
        return await master.run()

    raise SystemExit(asyncio.run(main()))


def main() -> None:
    cli(prog_name="evalharnessd")


if __name__ == "__main__":
    main()
