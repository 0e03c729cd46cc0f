"""Auto-balancing against a fixed pool: a burst of 2,000 jobs of 100 ms on two queues (1,500 on
one, 500 on the other), served by evalharnessd with balance "auto" (strategy "time", 1..4
processes) and then by a fixed pool of the maximum (4 processes).  Prints the p95 queue wait
and the worker process-seconds each used."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evalharness.core.connection import async_client
from evalharness.core.queue import JobRequest, Queue

HERE = Path(__file__).resolve().parent
PREFIX = "benchbal"

AUTO = """
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

FIXED = """
[supervisors.burst]
queues = ["x", "y"]
balance = "off"
max_processes = 4
concurrency = 5
"""


async def live(client, queues: tuple[str, ...]) -> int:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    ids: set[str] = set()
    for q in queues:
        ids.update(await client.zrangebyscore(f"{PREFIX}:{{q:{q}}}:workers", now, "+inf"))
    return len(ids)


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


async def burst(url: str, config: str, label: str) -> tuple[float, float, float]:
    client = async_client(url)
    await client.flushdb()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(config)
    daemon = start_daemon(url, fh.name)
    try:
        deadline = time.monotonic() + 30
        while await live(client, ("x", "y")) < 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"{label}: workers did not start")
            await asyncio.sleep(0.1)
        q = Queue(client, PREFIX)
        reqs = [JobRequest("bench.sleep100", i, queue="x", result_to=("w", f"x{i}", 600)) for i in range(1500)]
        reqs += [JobRequest("bench.sleep100", i, queue="y", result_to=("w", f"y{i}", 600)) for i in range(500)]
        t0 = time.monotonic()
        await q.dispatch_many(reqs)
        process_seconds = 0.0
        last = t0
        while True:
            n = await live(client, ("x", "y"))
            now = time.monotonic()
            process_seconds += n * (now - last)
            last = now
            done = sum([int(await client.hlen(f"{PREFIX}:{{q:{qn}}}:results:w")) for qn in ("x", "y")])
            if done >= 2000:
                break
            if now - t0 > 300:
                raise SystemExit(f"{label}: burst not done")
            await asyncio.sleep(0.1)
        wall = time.monotonic() - t0
        waits = []
        for qn in ("x", "y"):
            for v in (await client.hgetall(f"{PREFIX}:{{q:{qn}}}:results:w")).values():
                waits.append(float(v.split(":", 1)[1].rstrip("}")))
        waits.sort()
        p95 = waits[int(0.95 * (len(waits) - 1))]
        return p95, process_seconds, wall
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        os.unlink(fh.name)
        await client.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    args = ap.parse_args()
    auto = await burst(args.url, AUTO, "auto")
    fixed = await burst(args.url, FIXED, "fixed")
    print("burst of 2,000 x 100 ms jobs on two queues (1,500 + 500), concurrency 5 per process")
    print(
        f"  auto/time 1..4 processes   p95 wait {auto[0]:6.2f} s   process-seconds {auto[1]:7.1f}   "
        f"wall {auto[2]:5.1f} s"
    )
    print(
        f"  fixed 4 processes          p95 wait {fixed[0]:6.2f} s   process-seconds {fixed[1]:7.1f}   "
        f"wall {fixed[2]:5.1f} s"
    )
    print(
        f"  auto/fixed                 p95 wait {auto[0] / fixed[0]:6.2f}x   process-seconds {auto[1] / fixed[1]:6.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
