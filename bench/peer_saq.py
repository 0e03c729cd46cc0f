"""SAQ 0.26 in the peer comparison (run by the virtual environment under bench/)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import peer_common as pc
import redis

HERE = Path(__file__).resolve().parent


async def run(workload: str, url: str) -> dict[str, object]:
    import redis.asyncio as aioredis
    from saq.queue.redis import RedisQueue

    r = redis.Redis.from_url(url)
    r.flushdb()
    queue = RedisQueue(aioredis.Redis.from_url(url))
    incomplete = "saq:default:incomplete"
    conc = pc.W2_CONCURRENCY if workload == "w2" else pc.CONCURRENCY
    env = dict(os.environ, PYTHONPATH=str(HERE), PEERBENCH_URL=url, PEERBENCH_CONCURRENCY=str(conc))
    cmd = [sys.executable, "-m", "saq", "peer_saq_jobs.settings", "--workers", str(pc.PROCESSES), "--quiet"]
    try:
        if workload == "w1":
            n = pc.W1_JOBS
            startup = pc.startup_cpu(lambda: pc.start(cmd, env, n=1), lambda: True)
            for start in range(0, n, 1000):
                await asyncio.gather(*(queue.enqueue("noop", payload=i) for i in range(start, min(n, start + 1000))))
            return pc.drain(r, lambda: pc.start(cmd, env, n=1), lambda: int(r.zcard(incomplete)), n, startup)
        if workload == "w2":
            procs = pc.start(cmd, env, n=1)
            try:
                pc.wait_idle(procs, lambda: True)
                t0 = time.perf_counter()
                for start in range(0, pc.W2_JOBS, 1000):
                    await asyncio.gather(*(queue.enqueue("sleep50", payload=i) for i in range(start, start + 1000)))
                return pc.finish(lambda: int(r.zcard(incomplete)), t0)
            finally:
                pc.stop(procs)
        if workload == "single":
            for i in range(10):
                await queue.enqueue("noop", payload=i)
            c0 = pc.command_calls(r)
            with pc.RoundTrips() as trips:
                for i in range(200):
                    await queue.enqueue("noop", payload=i)
            commands = (pc.command_calls(r) - c0) / 200
            t0 = time.perf_counter()
            for i in range(pc.SINGLE_JOBS):
                await queue.enqueue("noop", payload=i)
            return {
                "jobs_per_s": pc.SINGLE_JOBS / (time.perf_counter() - t0),
                "commands": commands,
                "round_trips": trips.count / 200,
            }
        if workload == "bulk":
            # SAQ has no bulk enqueue: its own Queue.map enqueues concurrently like this
            t0 = time.perf_counter()
            for start in range(0, pc.BULK_JOBS, 1000):
                await asyncio.gather(*(queue.enqueue("noop", payload=i) for i in range(start, start + 1000)))
            return {"jobs_per_s": pc.BULK_JOBS / (time.perf_counter() - t0)}
        if workload == "w3":
            procs = pc.start(cmd, env, n=1)
            try:
                pc.wait_idle(procs, lambda: True)
                for _ in range(pc.W3_JOBS):
                    await asyncio.sleep(pc.W3_GAP)
                    await queue.enqueue("latency", sent=time.time())
                p50, p99 = pc.latencies(r, pc.W3_JOBS)
                return {"p50_ms": p50, "p99_ms": p99}
            finally:
                pc.stop(procs)
        return {}
    finally:
        await queue.disconnect()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--url", required=True)
    args = ap.parse_args()
    pc.reply(asyncio.run(run(args.workload, args.url)))


if __name__ == "__main__":
    main()
