"""Dramatiq 2.2 in the peer comparison (run by the virtual environment under bench/)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import peer_common as pc
import redis

HERE = Path(__file__).resolve().parent


def run(workload: str, url: str) -> dict[str, object]:
    os.environ["PEERBENCH_URL"] = url
    sys.path.insert(0, str(HERE))
    import peer_dramatiq_jobs as jobs

    r = redis.Redis.from_url(url)
    r.flushdb()
    msgs = "dramatiq:default.msgs"
    env = dict(os.environ, PYTHONPATH=str(HERE))
    threads = pc.W2_CONCURRENCY if workload == "w2" else pc.CONCURRENCY
    cmd = [
        sys.executable,
        "-m",
        "dramatiq",
        "peer_dramatiq_jobs",
        "--processes",
        str(pc.PROCESSES),
        "--threads",
        str(threads),
    ]
    if workload == "w1":
        n = pc.W1_JOBS
        startup = pc.startup_cpu(lambda: pc.start(cmd, env, n=1), lambda: True)
        for i in range(n):
            jobs.noop.send(i)
        return pc.drain(r, lambda: pc.start(cmd, env, n=1), lambda: int(r.hlen(msgs)), n, startup)
    if workload == "w2":
        procs = pc.start(cmd, env, n=1)
        try:
            pc.wait_idle(procs, lambda: True)
            t0 = time.perf_counter()
            for i in range(pc.W2_JOBS):
                jobs.sleep50.send(i)
            return pc.finish(lambda: int(r.hlen(msgs)), t0)
        finally:
            pc.stop(procs)
    if workload == "single":
        for i in range(10):
            jobs.noop.send(i)
        c0 = pc.command_calls(r)
        with pc.RoundTrips() as trips:
            for i in range(200):
                jobs.noop.send(i)
        commands = (pc.command_calls(r) - c0) / 200
        t0 = time.perf_counter()
        for i in range(pc.SINGLE_JOBS):
            jobs.noop.send(i)
        return {
            "jobs_per_s": pc.SINGLE_JOBS / (time.perf_counter() - t0),
            "commands": commands,
            "round_trips": trips.count / 200,
        }
    if workload == "bulk":
        return {}  # Dramatiq has no bulk enqueue
    if workload == "w3":
        procs = pc.start(cmd, env, n=1)
        try:
            pc.wait_idle(procs, lambda: True)
            for _ in range(pc.W3_JOBS):
                time.sleep(pc.W3_GAP)
                jobs.latency.send(time.time())
            p50, p99 = pc.latencies(r, pc.W3_JOBS)
            return {"p50_ms": p50, "p99_ms": p99}
        finally:
            pc.stop(procs)
    return {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--url", required=True)
    args = ap.parse_args()
    pc.reply(run(args.workload, args.url))


if __name__ == "__main__":
    main()
