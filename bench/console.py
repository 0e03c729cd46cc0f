"""The console's cost: the real console headless at 160x48, its telemetry feed on, while a
recorded 20-queue snapshot is published at 1 Hz (as a daemon would), with 24 h of recorded
history, 1,000 active and 10,000 finished batches whose jobs finish underneath, and events
arriving. Each screen (Overview, Batches, Graphs, Events; Workload with ``--screens 2``) is left
open for ``--seconds``, as an operator would leave it; the Batches page is fetched at 1 Hz. Prints
the time to first paint and the console process's CPU seconds per wall second for each (target
<= 0.10); the Redis server, the publisher and the job churn run in other processes.

Usage: python bench/console.py --url URL [--seconds 60] [--active 1000] [--finished 10000]
                               [--queues 20] [--screens 1,4,7,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from evalharness.core.admin import Admin, BatchRow
from evalharness.core.batches import Batches
from evalharness.core.connection import async_client
from evalharness.core.queue import JobRequest, Queue
from evalharness.core.telemetry import channel, events_key, history_key

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
            await asyncio.gather(
                *(
                    batches.create(f"done-{i}", [JobRequest("noop", {"i": i})], queue=QUEUE, batch_id=f"done-{i}")
                    for i in range(start, min(finished, start + 50))
                )
            )
            jobs = (await queue.pop(QUEUE, 50, 300, OWNER)).jobs
            await queue.ack(QUEUE, OWNER, [(j.id, "") for j in jobs])
        for start in range(0, active, 50):
            await asyncio.gather(
                *(
                    batches.create(
                        f"run-{i}",
                        [JobRequest("noop", {"i": i, "n": n}) for n in range(JOBS_PER_ACTIVE)],
                        queue=QUEUE,
                        batch_id=f"run-{i}",
                    )
                    for i in range(start, min(active, start + 50))
                )
            )
        for _ in range(0, active, 100):
            await queue.pop(QUEUE, 100, 300, OWNER)
    finally:
        await client.aclose()


RECORDED = Path(__file__).resolve().parents[1] / "tests" / "tui" / "data" / "telemetry-busy.json"


def recorded_snapshot(queues: int, at: float) -> dict[str, Any]:
    """The recorded busy snapshot widened to ``queues`` queues (copies of its rows, renamed)."""
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    rows = data["queues"]
    data["queues"] = [{**rows[i % len(rows)], "name": f"{rows[i % len(rows)]['name']}-{i}"} for i in range(queues)]
    data["at"] = at
    data["prefix"] = PREFIX
    return data


def recorded_history(queues: int, now: float, minutes: int = 1_440) -> list[str]:
    """A day of per-minute history entries for the widened snapshot's queues."""
    rows = recorded_snapshot(queues, now)["queues"]
    last = int(now // 60) - 1
    out = []
    for m in range(last - minutes + 1, last + 1):
        f = 0.7 + 0.3 * math.cos((m - last) / 120.0)
        out.append(
            json.dumps(
                {
                    "schema": "evalharness.telemetry.history.v1",
                    "at": (m + 1) * 60.0,
                    "minute": m,
                    "jobs_per_minute": sum(int((q.get("jobs_per_minute") or 0) * f) for q in rows),
                    "queues": {
                        q["name"]: {
                            "ready": int(q["ready"] * f),
                            "delayed": q.get("delayed"),
                            "reserved": q["reserved"],
                            "oldest_wait": q["oldest_wait"],
                            "est_clear": q["est_clear"],
                            "processes": q["processes"],
                            "completed": int((q.get("completed_per_minute") or 0) * f),
                            "failed": int(q.get("failed_per_minute") or 0),
                            "rate_limited": 3,
                            "runtime_p50": q["runtime"]["p50"],
                            "runtime_p95": q["runtime"]["p95"],
                        }
                        for q in rows
                    },
                }
            )
        )
    return out


async def record_history(url: str, queues: int) -> None:
    client = async_client(url)
    try:
        await client.delete(history_key(PREFIX))
        await client.rpush(history_key(PREFIX), *recorded_history(queues, time.time()))
    finally:
        await client.aclose()


async def publish(url: str, prefix: str, queues: int) -> None:
    """Publish the recorded snapshot once a second and add an event every other second, as a
    daemon and its workers would."""
    client = async_client(url)
    n = 0
    while True:
        snapshot = recorded_snapshot(queues, time.time())
        snapshot["prefix"] = prefix
        await client.publish(channel(prefix), json.dumps(snapshot))
        if n % 2 == 0:
            await client.xadd(
                events_key(prefix),
                {
                    "kind": "job_failed",
                    "queue": snapshot["queues"][n % queues]["name"],
                    "job": "judge_sample",
                    "id": f"bench-{n}",
                    "message": "TimeoutError: job exceeded its 60s limit",
                    "at": f"{time.time():.3f}",
                },
                maxlen=10_000,
                approximate=True,
            )
        n += 1
        await asyncio.sleep(1.0)


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


SCREENS = {"1": "overview", "2": "workload", "4": "batches", "7": "graphs", "8": "events"}


async def measure(url: str, seconds: float, pages: str = "engine", key: str = "4") -> tuple[float, float]:
    """(CPU seconds per wall second, seconds to the first paint with a snapshot) of one screen."""
    from evalharness.tui import app as console

    console.REFETCH_INTERVAL = 1.0  # the benchmark's 1 Hz refresh (5 s in normal use)
    admin = MemoryPages(async_client(url), PREFIX) if pages == "memory" else None
    started = time.monotonic()
    app = console.ConsoleApp(url, PREFIX, admin=admin)
    app.animation_level = "none"
    async with app.run_test(size=(160, 48)) as pilot:
        deadline = time.monotonic() + 60
        while app.drawn_snapshot is None:
            if time.monotonic() > deadline:
                raise SystemExit("the console never drew a snapshot")
            await pilot.pause(0.01)
        first_paint = time.monotonic() - started
        if key != "1":
            await pilot.press(key)
        mode = SCREENS[key]
        view = app._views.get(mode)

        def ready() -> bool:
            if view is None:  # the Overview: its pages (events, batches, supervisors) read once
                return bool(app._overview.fetched)
            model = view.model
            if mode == "workload":  # its rows are the telemetry's: drawn with the first snapshot
                return model.snapshot is not None
            return bool(getattr(model, "page", None) or getattr(model, "fetched", False))

        while not ready():
            if time.monotonic() > deadline:
                raise SystemExit(f"the {mode} screen never had its data")
            await pilot.pause(0.1)
        table = getattr(view, "table", None) if mode in ("workload", "batches", "events") else None
        cpu0, wall0, updates0 = cpu_seconds(), time.monotonic(), table.updates if table is not None else 0
        await asyncio.sleep(seconds)
        cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
        extra = ""
        if table is not None:
            extra = f"rows shown: {table.row_count:,}, cells rewritten: {table.updates - updates0:,}"
        elif mode == "graphs":
            extra = f"plots rebuilt: {sum(p.plots for p in view.panels)}"  # type: ignore[union-attr]
        print(f"  {mode}: {extra} in {wall:.0f}s")
    return cpu / wall, first_paint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each screen is watched (default 60)")
    parser.add_argument("--active", type=int, default=1_000)
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--queues", type=int, default=20, help="queues in the published snapshot (default 20)")
    parser.add_argument("--screens", default="1,4,7,8", help="the screens to watch, by key (default 1,4,7,8)")
    parser.add_argument(
        "--pages",
        choices=("engine", "memory", "both"),
        default="engine",
        help="where the Batches page comes from: the engine (the whole cost), memory (the "
        "console's drawing alone), or both, one after the other",
    )
    parser.add_argument("--churn", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument("--publish", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.churn:
        asyncio.run(churn(args.url, args.churn))
        return
    if args.publish:
        asyncio.run(publish(args.url, args.publish, args.queues))
        return
    screens = [k for k in args.screens.split(",") if k]
    unknown = [k for k in screens if k not in SCREENS]
    if unknown:
        parser.error(f"--screens: no screen {', '.join(unknown)} (choose from {', '.join(SCREENS)})")
    started = time.monotonic()
    asyncio.run(populate(args.url, args.active, args.finished))
    asyncio.run(record_history(args.url, args.queues))
    print(
        f"console bench: {args.active:,} active and {args.finished:,} finished batches, {args.queues} queues "
        f"published at 1 Hz, 24 h of history (set up in {time.monotonic() - started:.0f}s); "
        f"160x48, each screen for {args.seconds:g}s"
    )
    helpers = [
        subprocess.Popen([sys.executable, __file__, "--url", args.url, "--churn", PREFIX]),
        subprocess.Popen(
            [sys.executable, __file__, "--url", args.url, "--publish", PREFIX, "--queues", str(args.queues)]
        ),
    ]
    worst = 0.0
    try:
        for key in screens:
            runs = (
                ("engine", "memory")
                if key == "4" and args.pages == "both"
                else (args.pages if key == "4" else "engine",)
            )
            for pages in runs:
                ratio, first_paint = asyncio.run(measure(args.url, args.seconds, pages, key))
                worst = max(worst, ratio)
                verdict = "within" if ratio <= TARGET else "OVER"
                what = SCREENS[key] + (" (pages from memory)" if pages == "memory" else "")
                print(
                    f"console CPU, {what}: {ratio:.3f} s per wall second ({verdict} the {TARGET:.2f} target); "
                    f"first paint {first_paint:.2f}s"
                )
    finally:
        for helper in helpers:
            helper.terminate()
            helper.wait(timeout=10)
    print(
        f"worst screen: {worst:.3f} s per wall second "
        f"({'within' if worst <= TARGET else 'OVER'} the {TARGET:.2f} target)"
    )


if __name__ == "__main__":
    main()
