"""The console's cost: the Batches screen over 1,000 active and 10,000 finished batches, its page
fetched at 1 Hz for 60 s while jobs finish underneath, headless at 160x48 with the telemetry feed
on, as an operator would leave it open. Prints the console process's CPU seconds per wall second
(target <= 0.10); the Redis server and the job churn run in other processes.

Usage: python bench/console.py --url URL [--seconds 60] [--active 1000] [--finished 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

from evalharness.core.admin import Admin, BatchRow
from evalharness.core.batches import Batches
from evalharness.core.connection import async_client
from evalharness.core.queue import JobRequest, Queue

PREFIX = f"benchconsole{int(time.time())}"
"""A fresh prefix each run: the benchmark never touches another's keys."""
QUEUE = "judge"
OWNER = "bench-host:1:churn"
JOBS_PER_ACTIVE = 10
TARGET = 0.10


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def populate(url: str, active: int, finished: int) -> None:
    """``finished`` one-job batches run to success, then ``active`` batches of 10 jobs with one of
    each running, so every active row has counts that move."""
    client = async_client(url)
    queue = Queue(client, prefix=PREFIX)
    batches = Batches(client, PREFIX, queue)
    try:
        for start in range(0, finished, 50):
            await asyncio.gather(*(batches.create(f"done-{i}", [JobRequest("noop", {"i": i})], queue=QUEUE,
                                                  batch_id=f"done-{i}") for i in range(start, min(finished, start + 50))))
            jobs = (await queue.pop(QUEUE, 50, 300, OWNER)).jobs
            await queue.ack(QUEUE, OWNER, [(j.id, "") for j in jobs])
        for start in range(0, active, 50):
            await asyncio.gather(*(batches.create(f"run-{i}", [JobRequest("noop", {"i": i, "n": n})
                                                                for n in range(JOBS_PER_ACTIVE)],
                                                  queue=QUEUE, batch_id=f"run-{i}")
                                   for i in range(start, min(active, start + 50))))
        for _ in range(0, active, 100):
            await queue.pop(QUEUE, 100, 300, OWNER)
    finally:
        await client.aclose()


async def churn(url: str, prefix: str) -> None:
    """Finish and start jobs twice a second, as workers would: the batches' rows keep changing."""
    client = async_client(url)
    queue = Queue(client, prefix=prefix)
    held: list[str] = []
    while True:
        done, held = held[:40], held[40:]
        if done:
            await queue.ack(QUEUE, OWNER, [(i, "") for i in done])
        held += [j.id for j in (await queue.pop(QUEUE, 40, 300, OWNER)).jobs]
        await asyncio.sleep(0.5)


class MemoryPages(Admin):
    """The engine's first page, read once, then served from memory with ten rows' counts moving
    each call: what the console itself costs to draw, without the engine's page read."""

    def __init__(self, client: Any, prefix: str) -> None:
        super().__init__(client, prefix)
        self.rows: list[BatchRow] = []
        self.calls = 0

    async def batches_page(self, chip: str = "active", offset: int = 0, count: int = 50) -> list[BatchRow]:
        if not self.rows:
            self.rows = await super().batches_page(chip, offset, count)
        self.calls += 1
        for i in range(10):
            j = (self.calls * 10 + i) % len(self.rows)
            row = self.rows[j]
            if row.pending > 0:
                self.rows[j] = replace(row, succeeded=row.succeeded + 1, pending=row.pending - 1)
        return list(self.rows)


async def measure(url: str, seconds: float, pages: str = "engine") -> float:
    from evalharness.tui import app as console

    console.REFETCH_INTERVAL = 1.0  # the benchmark's 1 Hz refresh (5 s in normal use)
    admin = MemoryPages(async_client(url), PREFIX) if pages == "memory" else None
    app = console.ConsoleApp(url, PREFIX, admin=admin)
    app.animation_level = "none"
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("4")
        view = app._views["batches"]
        deadline = time.monotonic() + 60
        while not view.model.page:
            if time.monotonic() > deadline:
                raise SystemExit("the Batches page never arrived")
            await pilot.pause(0.1)
        cpu0, wall0, updates0 = cpu_seconds(), time.monotonic(), view.table.updates
        await asyncio.sleep(seconds)
        cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
        print(f"rows shown: {len(view.model.rows)}, cells rewritten: {view.table.updates - updates0:,} in {wall:.0f}s")
    return cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--active", type=int, default=1_000)
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--pages", choices=("engine", "memory", "both"), default="both",
                        help="where the Batches page comes from: the engine (the whole cost), memory (the "
                             "console's drawing alone), or both, one after the other")
    parser.add_argument("--churn", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.churn:
        asyncio.run(churn(args.url, args.churn))
        return
    started = time.monotonic()
    asyncio.run(populate(args.url, args.active, args.finished))
    print(f"console bench: {args.active:,} active and {args.finished:,} finished batches "
          f"(set up in {time.monotonic() - started:.0f}s); Batches at 160x48 fetched at 1 Hz for {args.seconds:g}s")
    churner = subprocess.Popen([sys.executable, __file__, "--url", args.url, "--churn", PREFIX])
    try:
        for pages in ("engine", "memory") if args.pages == "both" else (args.pages,):
            ratio = asyncio.run(measure(args.url, args.seconds, pages))
            verdict = "within" if ratio <= TARGET else "OVER"
            what = "with the engine's page reads" if pages == "engine" else "drawing alone (pages from memory)"
            print(f"console CPU, {what}: {ratio:.3f} s per wall second ({verdict} the {TARGET:.2f} target)")
    finally:
        churner.terminate()
        churner.wait(timeout=10)


if __name__ == "__main__":
    main()
