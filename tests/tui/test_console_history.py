"""The recorded per-minute history on the Overview: a console that starts late shows it at once,
as each tile's sparkline of the past hour (jobs per minute, backlog, in flight, oldest wait…)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from evalharness.tui import app as console
from evalharness.tui.app import ConnectionChecked, ConsoleApp, HistoryReceived
from evalharness.tui.overview import TileSpark
from evalharness.tui.state import (
    HISTORY_SCHEMA,
    SPARK_BLOCKS,
    busiest_queue,
    format_rate,
    history_line,
    minute_series,
    read_history_entries,
    sparkline,
)

NOW = 1_700_000_000.0
MINUTE = int(NOW // 60) - 1

MakeApp = Callable[..., ConsoleApp]
Send = Callable[..., Awaitable[None]]
Wait = Callable[..., Awaitable[None]]


def entry(minute: int, jobs: float | None, **ready: int) -> dict[str, Any]:
    return {
        "schema": HISTORY_SCHEMA,
        "at": float((minute + 1) * 60),
        "minute": minute,
        "jobs_per_minute": jobs,
        "queues": {
            name: {
                "ready": n,
                "reserved": 0,
                "oldest_wait": None,
                "processes": 1,
                "completed": 0,
                "failed": 0,
                "runtime_p95": None,
            }
            for name, n in ready.items()
        },
    }


FIVE = [
    entry(MINUTE - 4, 12, evals=40, judge=3),
    entry(MINUTE - 3, 30, evals=35, judge=9),
    entry(MINUTE - 2, 25, evals=20, judge=30),
    entry(MINUTE - 1, 40, evals=10, judge=55),
    entry(MINUTE, 18, evals=5, judge=80),
]


def spark(app: ConsoleApp, which: str) -> TileSpark:
    return app.query_one(f"#spark-{which}", TileSpark)


def shown(app: ConsoleApp, which: str) -> str:
    return str(spark(app, which).render().plain)


# --- the view-model, without a terminal --------------------------------------------------------


def test_sparkline_scales_from_the_lowest_to_the_highest() -> None:
    assert sparkline([0, 7, 14]) == "▁▅█"
    assert sparkline([3, None, 3]) == f"{SPARK_BLOCKS[3]} {SPARK_BLOCKS[3]}"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([None]) == " "


def test_a_missing_minute_is_a_gap_and_unreadable_entries_are_left_out() -> None:
    entries = [FIVE[0], {"schema": "other"}, "junk", FIVE[2], FIVE[3]]
    history = read_history_entries(entries)
    assert [e.minute for e in history] == [MINUTE - 4, MINUTE - 2, MINUTE - 1]
    assert minute_series(history, lambda e: e.jobs_per_minute) == [12.0, None, 25.0, 40.0]


def test_the_line_keeps_the_newest_minutes_that_fit() -> None:
    values: list[float | None] = [float(i) for i in range(60)]
    wide = history_line("Jobs/min", values, 200, format_rate)
    assert (wide.points, wide.title, wide.range) == (60, "Jobs/min, last 60 min", "min 0 · max 59")
    narrow = history_line("Jobs/min", values, 76, format_rate)
    assert len(narrow.text) <= 76 and narrow.points == len(narrow.spark) < 60
    assert narrow.title == f"Jobs/min, last {narrow.points} min"
    assert narrow.range == f"min {60 - narrow.points} · max 59"
    assert history_line("Jobs/min", [], 80, format_rate).text == "Jobs/min  no history yet"


def test_the_busiest_queue_has_the_largest_backlog_now() -> None:
    assert busiest_queue(read_history_entries(FIVE)) == "judge"
    assert busiest_queue(()) is None


# --- on screen ---------------------------------------------------------------------------------


async def test_recorded_history_shows_as_a_five_minute_series(make_app: MakeApp, send: Send) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        assert spark(app, "jpm").render().plain == "no history yet"
        await send(pilot, ConnectionChecked.connected(NOW), HistoryReceived.from_entries(FIVE))
        assert spark(app, "jpm").values == [12, 30, 25, 40, 18]
        assert spark(app, "jpm").render().plain == sparkline([12, 30, 25, 40, 18])
        # the backlog tile sums every queue's backlog, minute by minute
        assert spark(app, "backlog").values == [43, 44, 50, 65, 85]
        assert spark(app, "procs").values == [2, 2, 2, 2, 2]

        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert spark(app, "jpm").spark == sparkline([12, 30, 25, 40, 18])


async def test_an_empty_history_says_so(make_app: MakeApp, send: Send) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), HistoryReceived.from_entries([]))
        assert app.state.history == ()
        assert spark(app, "jpm").render().plain == "no history yet"


async def test_a_late_console_shows_the_history_recorded_in_redis(
    make_app: MakeApp, wait: Wait, redis_url: str, aclient: Redis
) -> None:
    await aclient.rpush("eh:telemetry:history", *(json.dumps(e) for e in FIVE))
    app = make_app(redis_url, feed=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait(pilot, lambda: len(spark(app, "jpm").values) == 5, "the 5-minute history")
        assert spark(app, "jpm").values == [12, 30, 25, 40, 18]
        assert spark(app, "backlog").values == [43, 44, 50, 65, 85]


async def test_the_history_is_read_again_every_interval(
    make_app: MakeApp, wait: Wait, redis_url: str, aclient: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "HISTORY_INTERVAL", 0.2)
    monkeypatch.setattr(console, "PING_INTERVAL", 0.1)
    await aclient.rpush("eh:telemetry:history", *(json.dumps(e) for e in FIVE[:3]))
    app = make_app(redis_url, feed=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot, lambda: len(spark(app, "jpm").values) == 3, "the 3-minute history")
        await aclient.rpush("eh:telemetry:history", *(json.dumps(e) for e in FIVE[3:]))
        await wait(pilot, lambda: len(spark(app, "jpm").values) == 5, "the minutes recorded since")
    assert await aclient.llen("eh:telemetry:history") == 5  # the console appends nothing


async def test_at_80x24_the_tiles_leave_room_for_five_queues_and_the_events(
    make_app: MakeApp, send: Send, busy: dict[str, Any], busy_history: list[dict[str, Any]]
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(
            pilot,
            ConnectionChecked.connected(NOW),
            console.TelemetryReceived.from_dict(busy),
            HistoryReceived.from_entries(busy_history),
        )
        table = app.query_one("#queues")
        assert table.size.height - 1 == 5  # below the header row
        assert app.query_one("#overview-events").size.height >= 3
        jobs = spark(app, "jpm")
        assert 1 < len(jobs.values) <= jobs.content_size.width
        assert len(jobs.spark) == len(jobs.values)
