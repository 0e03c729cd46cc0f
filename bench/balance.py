"""Auto-balancing against a fixed pool at its maximum, on two loads, each served by evalharnessd
with balance "auto" and then by a fixed pool of the auto supervisor's maximum:

* burst: 2,000 jobs of 100 ms dispatched at once on two queues (1,500 + 500), 1..4 processes,
  strategy "time";
* day: a day compressed to 48 s (2 s an hour) on two queues with different runtimes, x (100 ms
  jobs) and y (1 s jobs): a night trickle, a morning eval run, steady daytime load with a batch
  of long judge jobs, an idle lunch gap, a bigger afternoon run, an evening trickle and a quiet
  end of the night; 1..8 processes.

The day is served by auto with each strategy ("time", then "size": what the supervisor weighs
queues by when they need more than max_processes), then by the fixed pool.

Prints the p95 queue wait (dispatch to start), the worker process-seconds (every worker process
the daemon runs, from its start to its exit, sampled from /proc every 50 ms) and auto / fixed
for both, and what the auto daemon said about its decisions on the event stream."""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from evalharness.core.connection import async_client
from evalharness.core.queue import JobRequest, Queue

HERE = Path(__file__).resolve().parent
PREFIX = "benchbal"
QUEUES = ("x", "y")
JOBS = {"x": "bench.sleep100", "y": "bench.sleep1000"}

BURST_AUTO = """
[supervisors.burst]
queues = ["x", "y"]
balance = "auto"
auto_scaling_strategy = "time"
min_processes = 1
max_processes = 4
balance_cooldown = 1
balance_max_shift = 1
concurrency = 5
"""

BURST_FIXED = """
[supervisors.burst]
queues = ["x", "y"]
balance = "off"
max_processes = 4
concurrency = 5
"""

DAY_AUTO = """
[supervisors.day]
queues = ["x", "y"]
balance = "auto"
auto_scaling_strategy = "time"
min_processes = 1
max_processes = 8
balance_cooldown = 1
balance_max_shift = 3
concurrency = 5
"""

DAY_FIXED = """
[supervisors.day]
queues = ["x", "y"]
balance = "off"
max_processes = 8
concurrency = 5
"""

DAY_LENGTH = 48.0  # 24 hours at 2 s an hour
# (from, to, jobs per second on x, on y): the steady parts of the day
DAY_RATES = (
    (0.0, 14.0, 1.0, 0.1),  # 00-07 h: night, a trickle
    (14.0, 18.0, 10.0, 1.0),  # 07-09 h: people arrive
    (18.0, 24.0, 20.0, 2.0),  # 09-12 h: daytime load
    # 12-13:30 h: lunch, nothing
    (27.0, 34.0, 20.0, 2.0),  # 13:30-17 h
    (34.0, 38.0, 5.0, 0.5),  # 17-19 h: evening
    (38.0, 44.0, 1.0, 0.0),  # 19-22 h: a trickle; 22-24 h nothing
)
# (at, jobs on x, jobs on y): eval runs and judge batches that people start
DAY_BURSTS = ((16.0, 600, 30), (20.0, 0, 80), (28.0, 900, 60))


@dataclass
class Result:
    p95: float
    p50: float
    process_seconds: float
    wall: float
    jobs: int
    events: list[dict[str, str]]
    startup: float  # seconds until the daemon's first workers served: what a scale-up waits for too


def children(pid: int) -> int:
    """Worker processes of the daemon now, starting and stopping ones included."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return len(fh.read().split())
    except OSError:
        return 0


def start_daemon(url: str, config_path: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, EVALHARNESS_REDIS_URL=url, EVALHARNESS_PREFIX=PREFIX, PYTHONPATH=str(HERE))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evalharness.daemon.master",
            "--config",
            config_path,
            "--import",
            "benchjobs",
            "--log-level",
            "warning",
        ],
        env=env,
    )


async def live(client, queues: tuple[str, ...]) -> int:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    ids: set[str] = set()
    for q in queues:
        ids.update(await client.zrangebyscore(f"{PREFIX}:{{q:{q}}}:workers", now, "+inf"))
    return len(ids)


def burst_schedule() -> list[tuple[float, str, int]]:
    return [(0.0, "x", 1500), (0.0, "y", 500)]


def day_schedule() -> list[tuple[float, str, int]]:
    """(at, queue, jobs) in dispatch order: the steady rates in 100 ms ticks, then the bursts."""
    out: list[tuple[float, str, int]] = []
    owed = dict.fromkeys(QUEUES, 0.0)
    tick = 0.1
    for i in range(int(DAY_LENGTH / tick)):
        at = i * tick
        for start, end, *rates in DAY_RATES:
            if start <= at < end:
                for q, rate in zip(QUEUES, rates, strict=True):
                    owed[q] += rate * tick
                    if owed[q] >= 1:
                        n = int(owed[q])
                        owed[q] -= n
                        out.append((at, q, n))
    for at, nx, ny in DAY_BURSTS:
        out += [(at, "x", nx), (at, "y", ny)]
    return sorted((e for e in out if e[2] > 0), key=lambda e: e[0])


async def serve(
    url: str,
    config: str,
    label: str,
    schedule: list[tuple[float, str, int]],
    jobs: dict[str, str],
    length: float,
    start: int,
) -> Result:
    """Start a daemon with ``config``, wait for its ``start`` workers, run ``schedule`` and wait
    until every job is done and ``length`` seconds have passed."""
    client = async_client(url)
    await client.flushdb()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(config)
    daemon = start_daemon(url, fh.name)
    try:
        began = time.monotonic()
        deadline = began + 120  # a loaded machine starts Python processes slowly
        while await live(client, QUEUES) < start:
            if time.monotonic() > deadline:
                raise SystemExit(f"{label}: workers did not start")
            await asyncio.sleep(0.1)
        startup = time.monotonic() - began
        q = Queue(client, PREFIX)
        total = sum(n for _, _, n in schedule)
        counter = collections.Counter[str]()
        process_seconds = 0.0
        t0 = time.monotonic()
        last = t0
        done = 0
        pending = list(schedule)

        async def sample() -> None:
            nonlocal process_seconds, last
            while True:
                n = children(daemon.pid)
                now = time.monotonic()
                process_seconds += n * (now - last)
                last = now
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        try:
            while True:
                now = time.monotonic() - t0
                due = [e for e in pending if e[0] <= now]
                if due:
                    pending = pending[len(due) :]
                    reqs = []
                    for _, qn, n in due:
                        for _ in range(n):
                            i = counter[qn]
                            counter[qn] += 1
                            reqs.append(JobRequest(jobs[qn], i, queue=qn, result_to=("w", f"{qn}{i}", 600)))
                    await q.dispatch_many(reqs)
                if not pending:
                    done = sum([int(await client.hlen(f"{PREFIX}:{{q:{qn}}}:results:w")) for qn in QUEUES])
                    if done >= total and now >= length:
                        break
                if now > length + 300:
                    raise SystemExit(f"{label}: not done")
                await asyncio.sleep(0.02 if pending else 0.1)
        finally:
            sampler.cancel()
        wall = time.monotonic() - t0
        waits = []
        for qn in QUEUES:
            for v in (await client.hgetall(f"{PREFIX}:{{q:{qn}}}:results:w")).values():
                waits.append(float(v.split(":", 1)[1].rstrip("}")))
        waits.sort()
        raw = await client.xrange(f"{PREFIX}:events")
        events = [dict(fields) for _, fields in raw if fields.get("kind") == "supervisor_scaled"]
        return Result(
            waits[int(0.95 * (len(waits) - 1))],
            statistics.median(waits),
            process_seconds,
            wall,
            len(waits),
            events,
            startup,
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        os.unlink(fh.name)
        await client.aclose()


def report(title: str, autos: dict[str, Result], fixed: Result, fixed_label: str) -> None:
    """``autos``: label -> result of an auto daemon, each compared with ``fixed``."""
    print(title)
    for label, r in (*autos.items(), (fixed_label, fixed)):
        print(
            f"  {label:<27}p95 wait {r.p95:6.2f} s   p50 {r.p50:5.2f} s   "
            f"process-seconds {r.process_seconds:7.1f}   wall {r.wall:5.1f} s   workers up in {r.startup:4.1f} s"
        )
    for label, auto in autos.items():
        strategy = label.split(" ")[0].removeprefix("auto/")
        print(
            f"  {f'auto/fixed ({strategy})':<27}p95 wait {auto.p95 / fixed.p95:6.2f}x   "
            f"process-seconds {auto.process_seconds / fixed.process_seconds:6.2f}x"
        )
    for label, auto in autos.items():
        reasons = collections.Counter(e.get("reason", "?") for e in auto.events)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        print(f"  {label.split(' ')[0]} scaled {len(auto.events)} times: {counts}")
        for e in auto.events[:2]:
            print(f"    e.g. {e.get('message')}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--load", choices=["burst", "day", "both"], default="both")
    args = ap.parse_args()
    burst_jobs = {"x": "bench.sleep100", "y": "bench.sleep100"}
    if args.load in ("burst", "both"):
        auto = await serve(args.url, BURST_AUTO, "burst auto", burst_schedule(), burst_jobs, 0.0, 2)
        fixed = await serve(args.url, BURST_FIXED, "burst fixed", burst_schedule(), burst_jobs, 0.0, 4)
        report(
            "burst of 2,000 x 100 ms jobs on two queues (1,500 + 500), concurrency 5 per process",
            {"auto/time 1..4 processes": auto},
            fixed,
            "fixed 4 processes",
        )
    if args.load in ("day", "both"):
        schedule = day_schedule()
        autos = {}
        for strategy in ("time", "size"):
            config = DAY_AUTO.replace('"time"', f'"{strategy}"')
            autos[f"auto/{strategy} 1..8 processes"] = await serve(
                args.url, config, f"day auto/{strategy}", schedule, JOBS, DAY_LENGTH, 2
            )
        fixed = await serve(args.url, DAY_FIXED, "day fixed", schedule, JOBS, DAY_LENGTH, 8)
        n = sum(e[2] for e in schedule)
        report(
            f"a day in {DAY_LENGTH:g} s: {n:,} jobs, x 100 ms and y 1 s, bursts and idle gaps, concurrency 5",
            autos,
            fixed,
            "fixed 8 processes",
        )


if __name__ == "__main__":
    asyncio.run(main())
