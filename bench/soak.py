"""Soak: resident memory of an idle system over time.

Starts ``evalharnessd --queue soak-idle=1`` (a master and one worker) and the console
(``evalharness-tui`` headless, 80x24, subscribed to telemetry so the daemon publishes every
second), then samples VmRSS from /proc/PID/status of the master, its worker and the console.
An idle system should stay flat: growth here is a leak (tasks, buffers, history).

Usage: bash bench/run soak [--duration 600] [--every 30] [--warmup 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evalharness.core.connection import sync_client
from evalharness.core.telemetry import channel

CONSOLE = """
import sys
from evalharness.tui.app import ConsoleApp
ConsoleApp(sys.argv[1], sys.argv[2]).run(headless=True, size=(80, 24))
"""


def rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in kB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def wait_for(what: str, predicate, deadline: float = 60.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise SystemExit(f"soak: {what} not reached within {deadline:g}s")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="Redis URL (bench/run passes its private server)")
    parser.add_argument("--prefix", default="soak")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to sample for (default 600)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before the baseline sample (default 20)")
    args = parser.parse_args()

    env = {
        **os.environ,
        "EVALHARNESS_REDIS_URL": args.url,
        "EVALHARNESS_PREFIX": args.prefix,
        "EVALHARNESS_LOG_LEVEL": "warning",
    }
    master = subprocess.Popen(
        [sys.executable, "-m", "evalharness.daemon.master", "--queue", "soak-idle=1", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    console = subprocess.Popen(
        [sys.executable, "-c", CONSOLE, args.url, args.prefix],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (worker,) = wait_for("the daemon's worker", lambda: children_of(master.pid), 60)
        redis = sync_client(args.url)
        # the console is live once it listens: the daemon then publishes a snapshot every second
        wait_for(
            "the console's telemetry subscription", lambda: redis.pubsub_numsub(channel(args.prefix))[0][1] >= 1, 60
        )
        redis.close()
        procs = {"evalharnessd": master.pid, "worker": worker, "console": console.pid}
        print(
            f"soak: idle daemon pid {master.pid}, its worker pid {worker}, console pid {console.pid} (headless 80x24)"
        )
        print(
            f"soak: {args.duration:g}s, a sample every {args.every:g}s after {args.warmup:g}s of warm-up; VmRSS in kB"
        )
        time.sleep(args.warmup)
        start = time.monotonic()
        baseline: dict[str, int] = {}
        print(f"{'t (s)':>7}  " + "  ".join(f"{name:>12}" for name in procs))
        while True:
            elapsed = time.monotonic() - start
            sample = {name: rss_kb(pid) for name, pid in procs.items()}
            gone = [name for name, v in sample.items() if v is None]
            if gone:
                raise SystemExit(f"soak: {', '.join(gone)} exited during the soak")
            if not baseline:
                baseline = {k: v for k, v in sample.items() if v is not None}
            print(f"{elapsed:7.0f}  " + "  ".join(f"{sample[name]:>12,}" for name in procs), flush=True)
            if elapsed >= args.duration:
                break
            time.sleep(min(args.every, max(0.0, args.duration - elapsed)))
        hours = max(elapsed, 1.0) / 3600.0
        print("soak: growth over the run (kB, and kB per hour at that rate)")
        for name in procs:
            grown = (sample[name] or 0) - baseline[name]
            print(f"  {name:>12}: {baseline[name]:,} -> {sample[name]:,}  {grown:+,} kB  ({grown / hours:+,.0f} kB/h)")
    finally:
        for proc in (console, master):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (console, master):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
