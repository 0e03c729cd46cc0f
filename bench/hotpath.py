"""Where the time goes: a cProfile of one worker process and of the producer under W1 (20,000
no-op jobs dispatched first, then processed) and of one-by-one dispatch, plus the server's
``INFO commandstats`` for each phase.

Usage: python bench/hotpath.py --url URL [--jobs N] [--top N]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from evalharness.core.connection import async_client
from evalharness.core.queue import JobRequest, Queue

HERE = Path(__file__).resolve().parent
PREFIX = "bench"


def env(url: str) -> dict[str, str]:
    e = dict(os.environ)
    e["EVALHARNESS_REDIS_URL"] = url
    e["EVALHARNESS_PREFIX"] = PREFIX
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")])
    return e


def start_worker(cmd: list[str], url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env(url))


async def commandstats(client: Any) -> dict[str, int]:
    info = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> list[tuple[str, int]]:
    out = [(k, after[k] - before.get(k, 0)) for k in after]
    return sorted(((k, n) for k, n in out if n > 0), key=lambda kv: -kv[1])


def top(stats: pstats.Stats, n: int, sort: str) -> str:
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(n)
    return buf.getvalue()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--single", type=int, default=2_000, help="one-by-one dispatches profiled")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    client = async_client(args.url)
    await client.flushdb()
    q = Queue(client, PREFIX)

    # one-by-one dispatch, producer profile
    await q.dispatch("bench.noop", 0, queue="single")
    before = await commandstats(client)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(args.single):
        await q.dispatch("bench.noop", i, queue="single")
    prof.disable()
    wall = time.perf_counter() - t0
    cmds = delta(before, await commandstats(client))
    total = sum(n for k, n in cmds if k != "info")
    print(f"== one-by-one dispatch: {args.single / wall:,.0f} jobs/s; commands per dispatch {total / args.single:.2f}")
    for k, n in cmds:
        print(f"   {k:24} {n / args.single:6.2f} per dispatch")
    print(top(pstats.Stats(prof), args.top, "tottime"))

    # W1: dispatch first (producer profile), then one worker processes them under cProfile
    await client.flushdb()
    before = await commandstats(client)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for start in range(0, args.jobs, 5000):
        await q.dispatch_many(
            JobRequest("bench.noop", i, queue="bench") for i in range(start, min(args.jobs, start + 5000))
        )
    prof.disable()
    wall = time.perf_counter() - t0
    cmds = delta(before, await commandstats(client))
    print(f"== bulk dispatch of {args.jobs}: {args.jobs / wall:,.0f} jobs/s")
    for k, n in cmds:
        print(f"   {k:24} {n / args.jobs:6.2f} per job")
    print(top(pstats.Stats(prof), args.top, "tottime"))

    out = Path(tempfile.mkdtemp()) / "worker.prof"
    before = await commandstats(client)
    cmd = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(out),
        "-m",
        "evalharness.daemon.worker",  # the entry workers start through (the CLI skips the exit a profile is written at)
        "--queue",
        "bench",
        "--concurrency",
        "10",
        "--import",
        "benchjobs",
    ]
    worker = start_worker(cmd, args.url)
    t0 = time.perf_counter()
    deadline = time.monotonic() + 300
    while int(await client.hget(q.keys("bench").stats, "completed") or 0) < args.jobs:
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not finish")
        await asyncio.sleep(0.01)
    wall = time.perf_counter() - t0
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    cmds = delta(before, await commandstats(client))
    print(f"== one worker (concurrency 10) processing {args.jobs}: {args.jobs / wall:,.0f} jobs/s (incl. start-up)")
    for k, n in cmds[:15]:
        print(f"   {k:24} {n / args.jobs:6.2f} per job")
    stats = pstats.Stats(str(out))
    print(top(stats, args.top, "tottime"))
    print(top(stats, args.top, "cumulative"))
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
