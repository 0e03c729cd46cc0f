"""The console's cost on the Overview, Workload and Supervisors screens: a snapshot of 20 queues
(every number moving) arrives once a second, headless at 160x48, with the recorded hour of
history and the fixed rows of tests/tui/fake_admin.py for the pages (no Redis: only drawing is
measured). Prints each screen's CPU seconds per wall second (target <= 0.10).

Usage: python bench/console_screens.py [--seconds 20] [--queues 20] [--size 160x48]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "tui"))

from fake_admin import NOW, FakeAdmin  # noqa: E402

from evalharness.tui.app import ConnectionChecked, ConsoleApp, HistoryReceived, TelemetryReceived  # noqa: E402

TARGET = 0.10
DATA = ROOT / "tests" / "tui" / "data"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def snapshot(base: dict[str, Any], queues: int, tick: int) -> dict[str, Any]:
    data = copy.deepcopy(base)
    rows = []
    for i in range(queues):
        row = copy.deepcopy(base["queues"][i % len(base["queues"])])
        row["name"] = f"{row['name']}-{i}"
        row["ready"] = (row["ready"] or 0) + tick * (i + 1)
        row["reserved"] = (row["reserved"] or 0) + tick % 3
        row["oldest_wait"] = (row["oldest_wait"] or 0.0) + tick
        row["jobs_per_minute"] = (row["jobs_per_minute"] or 0.0) + tick % 7
        rows.append(row)
    data["queues"] = rows
    return data


async def measure(mode: str, seconds: float, queues: int, size: tuple[int, int] = (160, 48)) -> float:
    base = json.loads((DATA / "telemetry-busy.json").read_text())
    history = HistoryReceived.from_entries(json.loads((DATA / "history-busy.json").read_text()))
    app = ConsoleApp("redis://127.0.0.1:6379/0", "eh", feed=False, clock=lambda: NOW, admin=FakeAdmin())
    app.animation_level = "none"
    async with app.run_test(size=size) as pilot:
        app.post_message(ConnectionChecked.connected(NOW))
        app.post_message(TelemetryReceived.from_dict(snapshot(base, queues, 0)))
        app.post_message(history)
        await pilot.press({"overview": "1", "workload": "2", "supervisors": "3"}[mode])
        await pilot.pause(1.0)
        start_cpu, start = cpu_seconds(), time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            tick += 1
            app.post_message(TelemetryReceived.from_dict(snapshot(base, queues, tick)))
            await asyncio.sleep(1.0)  # the feed's cadence, not a synchronisation
        used, wall = cpu_seconds() - start_cpu, time.monotonic() - start
    return used / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--size", default="160x48", help="COLSxROWS (default 160x48)")
    args = parser.parse_args()
    cols, rows = (int(v) for v in args.size.split("x"))
    for mode in ("overview", "workload", "supervisors"):
        ratio = asyncio.run(measure(mode, args.seconds, args.queues, (cols, rows)))
        verdict = "ok" if ratio <= TARGET else "OVER"
        print(
            f"console {mode:<11} {args.queues} queues at 1 Hz, {args.size}: {ratio:.3f} CPU s per wall s "
            f"(target <= {TARGET:.2f}) {verdict}"
        )


if __name__ == "__main__":
    main()
