"""``evalharnessd``: the master process.  It starts worker processes for each supervisor
(a fixed pool per supervisor for now), restarts any that exit, backs off a crash loop, and
on SIGTERM/SIGINT lets every worker finish its in-flight jobs before exiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
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
from evalharness.core.connection import async_client
from evalharness.core.errors import ConfigError, EvalHarnessError

from .common import child_env, fail, setup_logging, worker_command
from .publisher import REDIS_ERRORS, Publisher, add_event
from .worker import EXIT_REPLACE

log = logging.getLogger("evalharness.master")

RESTART_MIN = 1.0  # seconds before restarting a worker that crashed soon after start
RESTART_MAX = 60.0
STABLE_AFTER = 30.0  # a worker that ran this long resets its crash backoff


@dataclass
class Slot:
    """One worker process position in a supervisor's pool."""

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
    history: list[int] = field(default_factory=list)

    def command(self) -> list[str]:
        return worker_command(
            self.queues, self.concurrency, self.imports, ["--grace", f"{self.grace:g}", "--lease", f"{self.lease:g}", *self.extra]
        )


class Master:
    def __init__(
        self,
        supervisors: list[SupervisorConfig],
        env: dict[str, str],
        imports: tuple[str, ...],
        grace: float,
        lease: float = 30.0,
        worker_args: tuple[str, ...] = (),
        redis_url: str | None = None,
        prefix: str = "eh",
        long_waits: dict[str, float] | None = None,
        default_long_wait: float = 60.0,
        history_cap: int = 1440,
    ) -> None:
        self.name = f"{socket.gethostname()}-{os.urandom(2).hex()}"
        self.env = env
        self.grace = grace
        self.redis_url = redis_url
        self.prefix = prefix
        self.supervisors = supervisors
        self.long_waits = long_waits or {}
        self.default_long_wait = default_long_wait
        self.history_cap = history_cap
        self.started_at = time.time()
        self.slots = [
            Slot(sup.name, sup.queues, sup.concurrency, imports, grace, lease, worker_args) for sup in supervisors for _ in range(sup.processes)
        ]
        self.stopping = asyncio.Event()
        self.force = False
        self.client: Any = None

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self.request_stop, signal.SIGINT)

    def request_stop(self, sig: int) -> None:
        if self.stopping.is_set():
            if sig == signal.SIGINT:
                log.warning("second SIGINT: killing the workers now")
                self.force = True
                for slot in self.slots:
                    if slot.proc and slot.proc.returncode is None:
                        slot.proc.kill()
            return
        log.info("%s received: stopping; in-flight jobs get up to %.0fs", signal.Signals(sig).name, self.grace)
        self.stopping.set()

    def describe(self) -> dict[str, Any]:
        """What this master says about itself in its heartbeat (and so in telemetry)."""
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "status": "stopping" if self.stopping.is_set() else "running",
            "started_at": self.started_at,
            "supervisors": [
                {
                    "name": sup.name,
                    "queues": list(sup.queues),
                    "processes": sum(1 for s in self.slots if s.supervisor == sup.name and s.proc is not None and s.proc.returncode is None),
                    "configured": sup.processes,
                    "concurrency": sup.concurrency,
                }
                for sup in self.supervisors
            ],
        }

    async def run(self) -> int:
        log.info("evalharnessd %s: %d worker process(es)", self.name, len(self.slots))
        tasks = [asyncio.create_task(self._keep(slot)) for slot in self.slots]
        client = async_client(self.redis_url) if self.redis_url else None
        self.client = client
        publisher_stop = asyncio.Event()
        publisher = None
        if client is not None:
            pub = Publisher(client, self.prefix, self.name, self.describe, self.long_waits, self.default_long_wait, self.history_cap)
            publisher = asyncio.create_task(pub.run(publisher_stop), name="telemetry")
        await self.stopping.wait()
        await self._terminate()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        publisher_stop.set()
        if publisher is not None:
            await asyncio.wait({publisher}, timeout=5)
        if client is not None:
            await client.aclose()
        return 0

    async def _spawn(self, slot: Slot) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*slot.command(), env=self.env, start_new_session=False)
        slot.proc, slot.started = proc, time.monotonic()
        log.info("supervisor %s: worker pid %d serving %s", slot.supervisor, proc.pid, ",".join(slot.queues))
        return proc

    async def _keep(self, slot: Slot) -> None:
        """Keep one worker process alive until the master stops."""
        while not self.stopping.is_set():
            proc = await self._spawn(slot)
            code = await proc.wait()
            if self.stopping.is_set():
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
                slot.supervisor, proc.pid, code, ran, delay,
            )
            if slot.failures == 3 and self.client is not None:
                with contextlib.suppress(*REDIS_ERRORS):
                    await add_event(
                        self.client, self.prefix, "worker_crash_loop", supervisor=slot.supervisor,
                        queue=",".join(slot.queues), message=f"a worker of {slot.supervisor} crashed 3 times in a row (last exit code {code})",
                    )
            if delay:
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                    return
                except TimeoutError:
                    pass

    async def _terminate(self) -> None:
        live = [s.proc for s in self.slots if s.proc is not None and s.proc.returncode is None]
        for proc in live:
            try:
                proc.send_signal(signal.SIGTERM)
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
            raise ConfigError(f"--long-wait {flag!r}: expected SECONDS or QUEUE=SECONDS, for example evals=30") from None
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
            n = int(count)
        except (ConfigError, ValueError):
            raise ConfigError(f"--queue {flag!r}: expected NAME=PROCESSES, for example evals=2") from None
        if n < 0:
            raise ConfigError(f"--queue {flag!r}: the process count must be >= 0")
        sups.append(SupervisorConfig(name=name, queues=(name,), processes=n, concurrency=concurrency))
    return sups


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--queue", "queues", multiple=True, metavar="NAME=PROCESSES", help="Run PROCESSES workers on queue NAME; repeat for several. Overrides the config's supervisors.")
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True, help="Jobs each worker process runs at once (with --queue).")
@click.option("--import", "imports", multiple=True, metavar="MODULE", help="Module that registers jobs, imported by every worker.")
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True, help="Seconds in-flight jobs get to finish on SIGTERM/SIGINT.")
@click.option("--max-jobs", type=click.IntRange(min=0), default=0, help="Each worker exits after this many jobs and is replaced (0: no limit).")
@click.option("--max-time", type=click.FloatRange(min=0), default=0, help="Each worker exits after this many seconds and is replaced (0: no limit).")
@click.option("--memory", type=click.FloatRange(min=0), default=0, help="A worker over this many MB of resident memory exits after its jobs and is replaced (0: no limit).")
@click.option("--hard-timeout", type=click.FloatRange(min=0), default=0, help="No job may run longer than this, whatever its own timeout (0: off).")
@click.option("--long-wait", "long_waits", multiple=True, metavar="[QUEUE=]SECONDS", help="Emit a long_wait event when a queue's oldest job waits this long (default 60; QUEUE=SECONDS for one queue).")
@click.option("--history-minutes", type=click.IntRange(min=1), default=1440, show_default=True, help="Per-minute telemetry history kept in Redis.")
@click.option("--lease", type=click.FloatRange(min=1), default=30.0, show_default=True, help="Seconds a job's reservation lasts without renewal; a dead worker's jobs come back after this.")
@click.option("--redis-url", envvar=ENV_REDIS_URL, help=f"Redis URL. Env {ENV_REDIS_URL}; default: the embedded server.")
@click.option("--prefix", envvar=ENV_PREFIX, help="Key prefix (default eh).")
@click.option("--config", "config_path", envvar=ENV_CONFIG, type=click.Path(dir_okay=False), help="Config file (TOML) with [supervisors.NAME] tables.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def cli(queues: tuple[str, ...], concurrency: int, imports: tuple[str, ...], grace: float, max_jobs: int, max_time: float, memory: float, hard_timeout: float, long_waits: tuple[str, ...], history_minutes: int, lease: float, redis_url: str | None, prefix: str | None, config_path: str | None, log_level: str) -> None:
    """Start and supervise worker processes until SIGTERM or SIGINT.

    \b
    evalharnessd --queue evals=2 --concurrency 20
    evalharnessd --config evalharness.toml

    SIGTERM/SIGINT: workers stop taking jobs and finish in-flight ones within
    --grace seconds (a second SIGINT kills them). A worker that exits is
    restarted; one that keeps crashing is restarted with backoff up to 60s.
    """
    setup_logging(log_level)
    try:
        config = load_config(config_path)
        sups = parse_queue_flags(queues, concurrency) if queues else list(config.supervisors)
        if not sups:
            raise ConfigError("nothing to run: pass --queue NAME=PROCESSES or a config file with [supervisors.NAME] tables")
        settings = resolve_settings(redis_url, prefix, config, imports)
        default_wait, per_queue = parse_long_waits(long_waits)
    except EvalHarnessError as exc:
        fail(exc)
        return
    worker_args = ("--max-jobs", str(max_jobs), "--max-time", f"{max_time:g}", "--memory", f"{memory:g}", "--hard-timeout", f"{hard_timeout:g}")
    master = Master(
        sups, child_env(settings), settings.imports, grace, lease, worker_args,
        redis_url=settings.redis_url, prefix=settings.prefix, long_waits=per_queue,
        default_long_wait=default_wait, history_cap=history_minutes,
    )

    async def main() -> int:
        master.install_signal_handlers()
        return await master.run()

    raise SystemExit(asyncio.run(main()))


def main() -> None:
    cli(prog_name="evalharnessd")


if __name__ == "__main__":
    main()
