"""What the peer-comparison drivers share (``bench/peer_*.py``): process-tree CPU from /proc,
the server's CPU and command counts, round trips counted at the client, freezing workers while
draining a full queue, and the JSON reply each driver prints.  Needs only redis-py, so the drivers of
the other libraries import it from their own virtual environment."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

W1_JOBS = int(os.environ.get("PEERBENCH_W1_JOBS", "20000"))
SINGLE_JOBS = 2_000
BULK_JOBS = 20_000
W2_JOBS, W2_SECONDS, W2_CONCURRENCY = 2_000, 0.05, 20  # per process; 2 processes = 40
W3_JOBS, W3_GAP = int(os.environ.get("PEERBENCH_W3_JOBS", "500")), 0.005
PROCESSES, CONCURRENCY = 2, 10
LATENCY_KEY = "peerbench:latency"

_TICK = os.sysconf("SC_CLK_TCK")


def tree(pids: Sequence[int]) -> list[int]:
    """``pids`` and all their descendants alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of ``pids`` and their descendants."""
    total = 0
    for pid in tree(pids):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def rss_mb(pids: Sequence[int]) -> float:
    total = 0
    for pid in tree(pids):
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1])
        except OSError:
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 1_048_576


def server_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def command_calls(r: redis.Redis) -> int:
    info = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in info.items() if k not in ("cmdstat_info",))


class RoundTrips:
    """Counts the requests a client sends (a pipeline is one): the writes of redis-py's
    synchronous connections, and the writes to the asyncio streams, which every asyncio request
    makes once, whether redis-py or evalharness packed it."""

    def __init__(self) -> None:
        self.count = 0
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> RoundTrips:
        import asyncio

        import redis.connection as sconn

        counter = self
        original_send = sconn.AbstractConnection.send_packed_command

        def wrapped(self: Any, *a: Any, **kw: Any) -> Any:
            counter.count += 1
            return original_send(self, *a, **kw)

        original_writelines = asyncio.StreamWriter.writelines

        def wrapped_writelines(self: Any, data: Any) -> Any:
            counter.count += 1
            return original_writelines(self, data)

        sconn.AbstractConnection.send_packed_command = wrapped  # type: ignore[method-assign]
        asyncio.StreamWriter.writelines = wrapped_writelines  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(sconn.AbstractConnection, "send_packed_command", original_send))
        self._undo.append(lambda: setattr(asyncio.StreamWriter, "writelines", original_writelines))
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in self._undo:
            undo()


def start(cmd: list[str], env: dict[str, str] | None = None, n: int = PROCESSES) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    pids = tree([p.pid for p in procs])
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for pid in pids:  # children a library's supervisor left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_idle(procs: Sequence[subprocess.Popen[bytes]], ready: Callable[[], bool], within: float = 60) -> None:
    """Until the workers are up (``ready``) and their CPU has settled (imports done)."""
    deadline = time.monotonic() + within
    last = -1.0
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a worker exited with {[p.poll() for p in procs]}")
        now = cpu_seconds([p.pid for p in procs])
        if ready() and now - last < 0.02:
            return
        last = now
        time.sleep(0.4)
    raise SystemExit("the workers did not settle")


def startup_cpu(launch: Callable[[], list[subprocess.Popen[bytes]]], ready: Callable[[], bool]) -> float:
    """CPU seconds workers spend starting and settling on an empty queue: taken off the W1
    figure, whose workers start once the queue is full."""
    procs = launch()
    try:
        wait_idle(procs, ready)
        return cpu_seconds([p.pid for p in procs])
    finally:
        stop(procs)


def wait_until(done: Callable[[], bool], within: float, what: str) -> float:
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.002)
    return time.perf_counter()


def drain(
    r: redis.Redis,
    launch: Callable[[], list[subprocess.Popen[bytes]]],
    remaining: Callable[[], int],
    total: int,
    startup: float = 0.0,
    within: float = 900,
) -> dict[str, float]:
    """Start the workers over a full queue: the rate from the first completion to the last, and
    the worker CPU (less ``startup``) and the server's CPU per job."""
    srv0 = server_cpu(r)
    procs = launch()
    try:
        wait_until(lambda: remaining() < total, within, "the first job")
        t0 = time.perf_counter()
        left0 = remaining()
        t1 = wait_until(lambda: remaining() <= 0, within, "the last job")
        cpu1, srv1 = cpu_seconds([p.pid for p in procs]), server_cpu(r)
    finally:
        stop(procs)
    return {
        "seconds": t1 - t0,
        "jobs_per_s": max(1, left0) / (t1 - t0),
        "worker_cpu_ms": max(0.0, cpu1 - startup) * 1000 / total,
        "redis_cpu_us": (srv1 - srv0) * 1e6 / total,
    }


def finish(remaining: Callable[[], int], t0: float, within: float = 900) -> dict[str, float]:
    """W2: seconds from ``t0`` (the dispatch began, workers idle) until no job is left."""
    t1 = wait_until(lambda: remaining() <= 0, within, "the last job")
    return {"seconds": t1 - t0, "ratio": (t1 - t0) / (W2_JOBS * W2_SECONDS / (PROCESSES * W2_CONCURRENCY))}


def percentiles(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[int(0.99 * (len(values) - 1))]


def latencies(r: redis.Redis, n: int, within: float = 30) -> tuple[float, float]:
    wait_until(lambda: r.llen(LATENCY_KEY) >= n, within, "all W3 jobs to start")
    values = [float(v) * 1000 for v in r.lrange(LATENCY_KEY, 0, -1)]
    return percentiles(values)


def reply(result: dict[str, Any]) -> None:
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
