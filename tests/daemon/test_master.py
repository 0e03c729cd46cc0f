"""evalharnessd with real worker processes and real signals: it keeps its pool full, backs off
a worker that cannot start, stops gracefully, and rejects bad flags with exit code 2."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.procs import Processes, alive, live_workers, wait_until

from evalharness.core.connection import async_client
from evalharness.core.jobs import JobOptions
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import Queue

K = QueueKeys("eh", "t")
MASTER = ("-m", "evalharness.daemon.master")


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


class Daemon:
    """A running evalharnessd whose log is collected line by line as it is written."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line))

    def log(self) -> str:
        return "".join(line for _, line in self.lines)

    def when(self, pattern: str) -> list[float]:
        """Times at which log lines matching ``pattern`` appeared."""
        return [t for t, line in self.lines if re.search(pattern, line)]

    def worker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"worker pid (\d+) serving", self.log())]

    def workers(self) -> set[int]:
        return children_of(self.proc.pid)

    def leftover_workers(self) -> list[int]:
        return [pid for pid in self.worker_pids() if alive(pid)]

    def finish(self) -> None:
        """Kill the master and every worker it started, whatever state the test left them in."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in self.leftover_workers():
            try:
                if b"evalharness.cli" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._reader.join(timeout=10)


class Daemons:
    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.started: list[Daemon] = []

    def start(self, *args: str, imports: tuple[str, ...] = ("support.testjobs",), **kwargs: Any) -> Daemon:
        argv = [*MASTER, "--log-level", "info", *args]
        for mod in imports:
            argv += ["--import", mod]
        daemon = Daemon(self.procs.start(*argv, **kwargs))
        self.started.append(daemon)
        return daemon


@pytest.fixture
def daemons(procs: Processes) -> Iterator[Daemons]:
    d = Daemons(procs)
    yield d
    for daemon in d.started:
        daemon.finish()


def dispatch(url: str, name: str, payload: Any, job_id: str) -> None:
    async def go() -> None:
        client = async_client(url)
        try:
            await Queue(client, "eh").dispatch(
                name, payload, queue="t", id=job_id, options=JobOptions(timeout=30), result_to=("s", job_id, 600)
            )
        finally:
            await client.aclose()

    asyncio.run(go())


def result(r: Any, job_id: str) -> Any:
    raw = r.hget(K.results("s"), job_id)
    return None if raw is None else json.loads(raw)


def heartbeat_pids(r: Any) -> set[int]:
    return {json.loads(v)["pid"] for v in r.hvals("eh:workers")}


def test_the_master_keeps_its_workers_running_and_replaces_one_killed(daemons: Daemons, r: Any, redis_url: str) -> None:
    d = daemons.start("--queue", "t=2")
    wait_until(lambda: live_workers(redis_url, "t") == 2, deadline=20, what="two workers")
    first = d.workers()
    assert len(first) == 2
    wait_until(lambda: heartbeat_pids(r) == first, deadline=10, what="both workers described in the worker list")
    victim, survivor = sorted(first)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int] | None:
        # one read of the children per poll: they change between two reads while the master works
        now = d.workers()
        return now if victim not in now and now - first else None

    after = wait_until(replaced, deadline=20, what="a replacement worker with a new pid")
    assert isinstance(after, set)
    assert survivor in after and len(after) == 2, after
    (replacement,) = after - first
    wait_until(lambda: replacement in heartbeat_pids(r), deadline=15, what="the replacement's heartbeat")
    assert re.search(rf"worker pid {victim} exited with code -9", d.log())
    # the replacement serves the queue
    dispatch(redis_url, "t.noop", None, "after")
    wait_until(lambda: result(r, "after"), deadline=10, what="a job run after the replacement")
    assert d.proc.poll() is None


@pytest.mark.slow
def test_a_worker_that_crashes_at_start_is_restarted_with_growing_delays(daemons: Daemons, procs: Processes) -> None:
    (procs.cwd / "crashy.py").write_text('raise RuntimeError("cannot reach the model gateway")\n')
    d = daemons.start("--queue", "t=1", imports=("crashy",))
    wait_until(lambda: len(d.when("exited with code")) >= 3, deadline=20, what="three crashes")
    crashes = d.when("exited with code")
    spawns = d.when(r"worker pid \d+ serving")
    # not a tight loop: 1 s then 2 s before the second and third start
    assert crashes[2] - crashes[0] >= 2.5
    assert len(spawns) <= 4
    log = d.log()
    assert "restarting in 1s" in log and "restarting in 2s" in log
    # the worker's own error reaches the operator through the master's output
    assert "cannot reach the model gateway" in log
    assert d.proc.poll() is None
    # a stop during the backoff is prompt and clean
    stopped = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=10) == 0
    assert time.monotonic() - stopped < 5
    assert d.leftover_workers() == []


@pytest.mark.parametrize("how", ["sigterm-to-master", "ctrl-c-to-the-terminal-group"])
def test_stopping_lets_in_flight_jobs_finish_then_the_master_exits_0(
    daemons: Daemons, r: Any, redis_url: str, how: str
) -> None:
    group = how.startswith("ctrl-c")
    d = daemons.start("--queue", "t=2", "--grace", "20", start_new_session=group)
    wait_until(lambda: live_workers(redis_url, "t") == 2, deadline=20, what="two workers")
    dispatch(redis_url, "t.sleep", {"seconds": 1.5}, "inflight")
    wait_until(lambda: r.zscore(K.reserved, "inflight"), deadline=10, what="the job to be reserved")
    assert result(r, "inflight") is None
    if group:
        # what a terminal does on Ctrl-C: SIGINT to the master and its workers at once
        os.killpg(d.proc.pid, signal.SIGINT)
    else:
        d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=30) == 0
    outcome = result(r, "inflight")
    assert outcome is not None, d.log()
    assert outcome["result"]["attempts"] == 1
    assert r.zcard(K.reserved) == 0
    assert d.leftover_workers() == []
    assert live_workers(redis_url, "t") == 0


def test_a_second_sigint_kills_the_workers_at_once_and_the_job_is_not_lost(
    daemons: Daemons, r: Any, redis_url: str
) -> None:
    d = daemons.start("--queue", "t=1", "--grace", "60")
    wait_until(lambda: live_workers(redis_url, "t") == 1, deadline=20, what="the worker")
    dispatch(redis_url, "t.sleep", {"seconds": 60}, "long")
    wait_until(lambda: r.zscore(K.reserved, "long"), deadline=10, what="the job to be reserved")
    d.proc.send_signal(signal.SIGINT)
    wait_until(lambda: d.when("SIGINT received"), deadline=10, what="the first SIGINT to be handled")
    assert d.proc.poll() is None
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(timeout=10) == 0
    assert d.leftover_workers() == []
    # the killed job still holds its lease and comes back when it lapses; it is neither done nor gone
    assert result(r, "long") is None
    assert r.zscore(K.reserved, "long") is not None


def test_supervisors_come_from_the_config_file_without_queue_flags(
    daemons: Daemons, procs: Processes, redis_url: str
) -> None:
    (procs.cwd / "evalharness.toml").write_text(
        'imports = ["support.testjobs"]\n\n[supervisors.tests]\nqueues = ["t"]\nprocesses = 2\nconcurrency = 3\n'
    )
    d = daemons.start(imports=())
    wait_until(lambda: live_workers(redis_url, "t") == 2, deadline=20, what="two workers from the config file")
    assert "supervisor tests" in d.log()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=30) == 0


def run_master(procs: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    proc = procs.start(*MASTER, *args)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        ("t=two", "expected NAME=PROCESSES, for example evals=2 ('two' is not a whole number)"),
        ("t=-1", "the process count must be >= 0"),
        ("my queue=2", "invalid queue name 'my queue': use letters, digits"),
        ("=2", "invalid queue name ''"),
    ],
)
def test_a_bad_queue_flag_exits_2_with_a_clear_message(procs: Processes, flag: str, words: str) -> None:
    done = run_master(procs, "--queue", flag)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: --queue {flag!r}: ")
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_nothing_to_run_exits_2(procs: Processes) -> None:
    done = run_master(procs)
    assert done.returncode == 2
    assert "nothing to run" in done.stderr and "--queue" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_config_file_exits_2_naming_the_file_and_key(procs: Processes) -> None:
    config = procs.cwd / "evalharness.toml"
    config.write_text('[supervisors.tests]\nqueues = ["t"]\nprocesses = -2\n')
    done = run_master(procs)
    assert done.returncode == 2
    assert str(config) in done.stderr and "[supervisors.tests]" in done.stderr and "'processes'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_the_idle_main_loop_leaves_no_tasks_behind() -> None:
    from evalharness.daemon.master import Master, MasterOptions

    master = Master([], MasterOptions(env={}, imports=(), grace=1.0))
    passes = 0
    reconcile = master._reconcile

    async def counted() -> None:
        nonlocal passes
        passes += 1
        await reconcile()

    master._reconcile = counted  # type: ignore[method-assign]

    async def until(n: int) -> None:
        deadline = time.monotonic() + 30
        while passes < n:
            assert time.monotonic() < deadline, f"only {passes} passes of the main loop"
            master._wake.set()  # what a command or a signal does: start the next pass now
            await asyncio.sleep(0)

    loop_task = asyncio.create_task(master.run())
    await until(20)
    before = len(asyncio.all_tasks())
    await until(2_020)
    after = len(asyncio.all_tasks())
    master.stopping.set()
    assert await asyncio.wait_for(loop_task, 10) == 0
    # the old loop left one waiter pending per pass: 2,000 more tasks here
    assert after <= before + 2, (before, after)
