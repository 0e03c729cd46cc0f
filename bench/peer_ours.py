"""evalharness in the peer comparison: one workload per call, a ``RESULT {json}`` line out.
Usage: python bench/peer_ours.py WORKLOAD --url URL   (see bench/peers_bench.py)"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import peer_common as pc
import redis

from evalharness.core.connection import async_client
from evalharness.core.queue import JobRequest, Queue

HERE = Path(__file__).resolve().parent
PREFIX = "bench"


def workers(url: str, concurrency: int) -> list:  # type: ignore[type-arg]
    env = dict(os.environ, EVALHARNESS_REDIS_URL=url, EVALHARNESS_PREFIX=PREFIX)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    cmd = [
        sys.executable,
        "-m",
        "evalharness.daemon.worker",
        "--queue",
        "bench",
        "--concurrency",
        str(concurrency),
        "--import",
        "benchjobs",
    ]
    return pc.start(cmd, env)


async def run(workload: str, url: str) -> dict[str, object]:
    r = redis.Redis.from_url(url)
    r.flushdb()
    client = async_client(url)
    q = Queue(client, PREFIX)
    stats = q.keys("bench").stats

    def remaining(total: int) -> int:
        return total - int(r.hget(stats, "completed") or 0)

    try:
        if workload == "w1":
            n = pc.W1_JOBS
            ready = lambda: r.zcard(q.keys("bench").workers) >= pc.PROCESSES  # noqa: E731
            startup = pc.startup_cpu(lambda: workers(url, pc.CONCURRENCY), ready)
            for start in range(0, n, 5000):
                await q.dispatch_many(
                    JobRequest("bench.noop", i, queue="bench") for i in range(start, min(n, start + 5000))
                )
            return pc.drain(r, lambda: workers(url, pc.CONCURRENCY), lambda: remaining(n), n, startup)
        if workload == "w2":
            procs = workers(url, pc.W2_CONCURRENCY)
            try:
                pc.wait_idle(procs, lambda: r.zcard(q.keys("bench").workers) >= pc.PROCESSES)
                t0 = time.perf_counter()
                await q.dispatch_many(JobRequest("bench.sleep50", i, queue="bench") for i in range(pc.W2_JOBS))
                return pc.finish(lambda: remaining(pc.W2_JOBS), t0)
            finally:
                pc.stop(procs)
        if workload == "single":
            for i in range(10):
                await q.dispatch("bench.noop", i, queue="bench")
            c0 = pc.command_calls(r)
            with pc.RoundTrips() as trips:
                for i in range(200):
                    await q.dispatch("bench.noop", i, queue="bench")
            commands = (pc.command_calls(r) - c0) / 200
            t0 = time.perf_counter()
            for i in range(pc.SINGLE_JOBS):
                await q.dispatch("bench.noop", i, queue="bench")
            return {
                "jobs_per_s": pc.SINGLE_JOBS / (time.perf_counter() - t0),
                "commands": commands,
                "round_trips": trips.count / 200,
            }
        if workload == "bulk":
            t0 = time.perf_counter()
            await q.dispatch_many(JobRequest("bench.noop", i, queue="bench") for i in range(pc.BULK_JOBS))
            return {"jobs_per_s": pc.BULK_JOBS / (time.perf_counter() - t0)}
        if workload == "w3":
            procs = workers(url, pc.CONCURRENCY)
            try:
                pc.wait_idle(procs, lambda: r.zcard(q.keys("bench").workers) >= pc.PROCESSES)
                for _ in range(pc.W3_JOBS):
                    await asyncio.sleep(pc.W3_GAP)
                    await q.dispatch("bench.latency", time.time(), queue="bench")
                p50, p99 = pc.latencies(r, pc.W3_JOBS)
                return {"p50_ms": p50, "p99_ms": p99}
            finally:
                pc.stop(procs)
        if workload == "memory":
            return await memory(url, r, q)
        if workload == "eval":
            sys.path.insert(0, str(HERE))
            from bench import lazy_parallel  # the eval run of bash bench/run

            wall = await lazy_parallel(url, 2000, 40)
            return {"ratio": wall / (2000 * 0.05 / 40)}
        raise SystemExit(f"unknown workload {workload}")
    finally:
        await client.aclose()


async def memory(url: str, r: redis.Redis, q: Queue) -> dict[str, object]:
    """RSS (MB) of an idle worker, of a worker holding 1,000 jobs, of the daemon, of the console."""
    import soak

    env = dict(os.environ, EVALHARNESS_REDIS_URL=url, EVALHARNESS_PREFIX=PREFIX, EVALHARNESS_LOG_LEVEL="warning")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    daemon = pc.start(
        [sys.executable, "-m", "evalharness.daemon.master", "--queue", "idle=1", "--log-level", "warning"], env, 1
    )
    console = pc.start([sys.executable, "-c", soak.CONSOLE, url, PREFIX], env, 1)
    busy = pc.start(
        [
            sys.executable,
            "-m",
            "evalharness.daemon.worker",
            "--queue",
            "bench",
            "--concurrency",
            "1000",
            "--grace",
            "1",
            "--import",
            "benchjobs",
        ],
        env,
        1,
    )
    try:
        (worker,) = soak.wait_for("the daemon's worker", lambda: soak.children_of(daemon[0].pid), 60)
        pc.wait_until(lambda: r.zcard(q.keys("bench").workers) >= 1, 60, "the busy worker")
        await q.dispatch_many(JobRequest("bench.hold", 120, queue="bench") for _ in range(1000))
        pc.wait_until(lambda: r.zcard(q.keys("bench").reserved) >= 1000, 120, "1,000 jobs in flight")
        pc.wait_idle(daemon + console, lambda: True)
        mb = 1 / 1024
        return {
            "idle_worker_mb": (soak.rss_kb(worker) or 0) * mb,
            "busy_worker_mb": (soak.rss_kb(busy[0].pid) or 0) * mb,
            "daemon_mb": (soak.rss_kb(daemon[0].pid) or 0) * mb,
            "console_mb": (soak.rss_kb(console[0].pid) or 0) * mb,
        }
    finally:
        for group in (busy, console, daemon):
            pc.stop(group)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--url", required=True)
    args = ap.parse_args()
    pc.reply(asyncio.run(run(args.workload, args.url)))


if __name__ == "__main__":
    main()
