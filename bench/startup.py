"""Start-up cost of the programs: a worker process from spawn to its first heartbeat (through the
thin entry and through ``evalharness work``), and ``evalharness --help`` / ``evalharness status``
from spawn to exit; wall time and resident memory, the median of ``--rounds`` tries.

Usage: python bench/startup.py --url URL [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from evalharness.core.connection import async_client
from evalharness.core.queue import Queue

PREFIX = "benchstartup"
QUEUE = "startup"
CLI = str(Path(sys.executable).with_name("evalharness"))


def env(url: str) -> dict[str, str]:
    return {**os.environ, "EVALHARNESS_REDIS_URL": url, "EVALHARNESS_PREFIX": PREFIX}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    # CPU seconds (user + system) so far: less disturbed than wall time by other load on the machine
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def live_workers(url: str, clear: bool = False) -> int:
    client = async_client(url)
    try:
        q = Queue(client, PREFIX)
        if clear:  # the next try must see its own heartbeat, not the last one's
            await client.delete(q.keys(QUEUE).workers)
        return await q.live_workers(QUEUE)
    finally:
        await client.aclose()


def worker_ready(url: str, cmd: list[str]) -> tuple[float, float, float]:
    """Seconds from spawn to the worker's first heartbeat, its CPU seconds and resident MB then."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env(url))
    try:
        deadline = started + 60
        while asyncio.run(live_workers(url)) < 1:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"{cmd} did not start (exit {proc.returncode})")
            time.sleep(0.005)  # polling the heartbeat, with a deadline
        return time.perf_counter() - started, cpu_s(proc.pid), rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        asyncio.run(live_workers(url, clear=True))


def command(url: str, args: list[str]) -> tuple[float, float, float]:
    """Seconds from spawn to exit of ``evalharness ARGS``, its CPU seconds and peak resident MB."""
    started = time.perf_counter()
    pid = os.posix_spawn(
        CLI, [CLI, *args], env(url), file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    )
    _, _, usage = os.wait4(pid, 0)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases = {
        "worker (python -m evalharness.daemon.worker)": lambda: worker_ready(
            args.url, [sys.executable, "-m", "evalharness.daemon.worker", "--queue", QUEUE]
        ),
        "worker (evalharness work)": lambda: worker_ready(args.url, [CLI, "work", "--queue", QUEUE]),
        "evalharness --help": lambda: command(args.url, ["--help"]),
        "evalharness status": lambda: command(args.url, ["status"]),
    }
    for name, case in cases.items():
        runs = [case() for _ in range(args.rounds)]
        wall, cpu, mem = (statistics.median(r[i] for r in runs) for i in range(3))
        each = ", ".join(f"{r[0]:.3f}" for r in runs)
        print(
            f"{name:46} wall {wall:6.3f} s  cpu {cpu:6.3f} s  rss {mem:5.1f} MB  (median of {args.rounds}; wall {each})"
        )


if __name__ == "__main__":
    main()
