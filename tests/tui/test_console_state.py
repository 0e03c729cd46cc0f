"""The console's view-model and the text it draws, without a terminal."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest

from evalharness.tui.app import PING_TIMEOUT, describe_check_error
from evalharness.tui.state import (
    SCHEMA,
    ConsoleState,
    Level,
    QueueStats,
    Snapshot,
    TelemetryError,
    format_count,
    format_duration,
    format_rate,
    format_seconds,
    overview_tiles,
    queue_cells,
    workload_columns,
)


@pytest.mark.parametrize(
    ("seconds", "round_up", "text"),
    [
        (0, False, "0s"),
        (-3, False, "0s"),
        (0.2, False, "0s"),
        (0.2, True, "1s"),
        (1.9, False, "1s"),
        (59.9, False, "59s"),
        (59.9, True, "1m 00s"),
        (100, False, "1m 40s"),
        (185.7, False, "3m 05s"),
        (3599, False, "59m 59s"),
        (3600, False, "1h 00m"),
        (3720, False, "1h 02m"),
        (90061, False, "25h 01m"),
    ],
)
def test_format_seconds(seconds: float, round_up: bool, text: str) -> None:
    assert format_seconds(seconds, round_up=round_up) == text


def state(**changes: object) -> ConsoleState:
    return ConsoleState("redis://localhost:6379/0", "eh", **changes)  # type: ignore[arg-type]


def test_before_the_first_check() -> None:
    s = state()
    assert s.level is Level.PENDING
    assert s.status_text() == "◌ redis: connecting…"
    assert s.status_rows() == [("Status", "connecting…")]
    assert s.stale_for() is None


def test_a_failure_after_replies_counts_the_time_without_one() -> None:
    s = state()
    s.mark_connected(100.0)
    s.mark_failed("ConnectionError: refused", 114.5, 2.0)
    assert s.level is Level.ERROR
    assert s.stale_for() == 14.5
    assert s.status_text() == "✕ redis: disconnected, retrying in 2s"
    assert s.status_rows() == [
        ("Status", "disconnected · no reply for 14s"),
        ("Error", "ConnectionError: refused"),
    ]


def test_a_failure_with_no_retry_planned() -> None:
    s = state()
    s.mark_failed("boom", 1.0, None)
    assert s.status_text() == "✕ redis: disconnected"
    assert s.connection_status() == "disconnected · never reached"


def test_a_good_check_clears_the_error() -> None:
    s = state()
    s.mark_failed("boom", 1.0, 2.0)
    s.mark_connected(3.0)
    assert s.level is Level.OK
    assert s.status_text() == "● redis ok"
    assert s.last_error is None and s.retry_in is None
    assert s.status_rows() == [("Status", "connected")]


def test_details_name_the_target_and_the_mode() -> None:
    assert state().details() == [("Redis", "redis://localhost:6379/0"), ("Prefix", "eh")]
    assert state(read_only=True).details()[-1] == ("Mode", "read-only")


@pytest.mark.parametrize(
    ("exc", "url", "text"),
    [
        (
            ConnectionError("Error 111 connecting to h:1.\n  Connection refused."),
            "redis://h:1/0",
            "ConnectionError: Error 111 connecting to h:1. Connection refused.",
        ),
        (TimeoutError(), "redis://h:1/0", f"no reply within {PING_TIMEOUT:g}s"),
        (
            ValueError("bad URL redis://:s3cret@h:1/0"),
            "redis://:s3cret@h:1/0",
            "ValueError: bad URL redis://:***@h:1/0",
        ),
        (ValueError("auth with p@ss failed"), "redis://:p%40ss@h:1/0", "ValueError: auth with *** failed"),
        # A one-letter password must not cut letters out of the message.
        (ConnectionError("Connection reset"), "redis://:e@h:1/0", "ConnectionError: Connection reset"),
    ],
    ids=["one-line", "timeout", "url", "quoted-password", "short-password"],
)
def test_describe_check_error(exc: BaseException, url: str, text: str) -> None:
    assert describe_check_error(exc, url) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (float("nan"), "—"),
        (0, "0s"),
        (-1.0, "0s"),
        (0.21, "0.21s"),
        (0.999, "1.0s"),
        (12.4, "12.4s"),
        (59.94, "59.9s"),
        (59.96, "1m 00s"),
        (185.7, "3m 05s"),
        (3599.9, "59m 59s"),
        (3720, "1h 02m"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"), [(None, "—"), (0, "0"), (37, "37"), (18234, "18,234"), (1482117, "1,482,117")]
)
def test_format_count(value: int | None, text: str) -> None:
    assert format_count(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (0.0, "0"), (4.0, "4"), (0.5, "0.5"), (3.45, "3.5"), (9.96, "10"), (412.0, "412"), (1010.5, "1,010")],
)
def test_format_rate(value: float | None, text: str) -> None:
    assert format_rate(value) == text


def test_the_contract_example_reads_as_typed_values(example: dict[str, Any]) -> None:
    snapshot = Snapshot.from_json(json.dumps(example))
    assert snapshot.at == 1795430000.0
    totals = snapshot.totals
    assert (totals.status, totals.jobs_per_minute, totals.jobs_past_hour, totals.failed_past_7_days) == (
        "running",
        412.0,
        18234,
        37,
    )
    assert (totals.processes, totals.masters, totals.max_wait_queue, totals.max_wait) == (6, 1, "evals", 12.4)
    evals, default = snapshot.queues
    assert evals == QueueStats(
        name="evals",
        ready=240,
        delayed=3,
        reserved=40,
        oldest_wait=12.4,
        est_clear=31.0,
        processes=4,
        jobs_per_minute=380.0,
        failed_per_minute=4.0,
        runtime_p50=0.21,
        runtime_p95=0.48,
        runtime_max=2.9,
    )
    assert default.oldest_wait is None and default.runtime_p50 is None and default.runtime_p95 is None


def test_fields_the_console_does_not_draw_are_ignored(example: dict[str, Any]) -> None:
    example["overview"]["something_new"] = {"nested": [1, 2]}
    example["queues"][0]["slots"] = 8
    example.pop("masters")
    assert len(Snapshot.from_dict(example).queues) == 2


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(schema="evalharness.telemetry.v2"), "telemetry schema 'evalharness.telemetry.v2' is not"),
        (lambda d: d.pop("schema"), "telemetry schema None is not"),
        (lambda d: d["overview"].update(jobs_past_hour="many"), "'overview.jobs_past_hour' is not a number"),
        (lambda d: d["queues"][1].update(ready=True), "'queues[1].ready' is not a number"),
        (lambda d: d["queues"][0]["runtime"].update(p95=[1]), "'queues[0].runtime.p95' is not a number"),
        (lambda d: d["queues"][0].pop("name"), "'queues[0].name' is missing"),
        (lambda d: d.update(queues={"evals": {}}), "'queues' is not a list"),
    ],
    ids=["other-schema", "no-schema", "text-count", "bool-count", "list-time", "no-name", "queues-object"],
)
def test_a_snapshot_the_console_cannot_read_names_the_problem(
    example: dict[str, Any], change: Any, problem: str
) -> None:
    change(example)
    with pytest.raises(TelemetryError, match=re.escape(problem)):
        Snapshot.from_dict(example)


def test_not_json_is_a_telemetry_error() -> None:
    with pytest.raises(TelemetryError, match="not JSON"):
        Snapshot.from_json("{")
    with pytest.raises(TelemetryError, match="not an object"):
        Snapshot.from_json("[1]")


def test_the_tiles_show_totals_and_the_queue_that_waits_longest(example: dict[str, Any]) -> None:
    tiles = {t.key: (t.label, t.value, t.level) for t in overview_tiles(Snapshot.from_dict(example))}
    assert tiles == {
        "jpm": ("Jobs/min", "412", None),
        "inflight": ("In-flight", "40", None),
        "backlog": ("Backlog", "240", None),
        "wait": ("Oldest wait", "12.4s · evals", None),
        "failed": ("Failed 1h", "12", Level.WARNING),
        "timeouts": ("Timeouts 1h", "—", None),  # an older daemon does not count them
        "procs": ("Procs busy/all", "6", None),
        "batches": ("Batches run·⚠", "—", None),  # a page, not the snapshot: not read yet
    }
    assert {t.value for t in overview_tiles(None)} == {"—"}


def test_busy_processes_timeouts_and_batches_read_as_specified(example: dict[str, Any]) -> None:
    example["overview"].update(busy=4, timeouts_past_hour=3)
    running = SimpleNamespace(state="running")
    tiles = {t.key: (t.value, t.level) for t in overview_tiles(Snapshot.from_dict(example), [running, running], 1)}
    assert tiles["procs"] == ("4/6", None)
    assert tiles["timeouts"] == ("3", Level.WARNING)
    assert tiles["batches"] == ("2 · ⚠ 1", Level.WARNING)
    assert overview_tiles(Snapshot.from_dict(example), [running], 0)[-1].value == "1"


def test_the_oldest_wait_tile_is_red_past_its_queues_threshold(example: dict[str, Any]) -> None:
    example["queues"][0]["long_wait"] = 10.0
    tile = next(t for t in overview_tiles(Snapshot.from_dict(example)) if t.key == "wait")
    assert tile.level is Level.ERROR
    example["queues"][0]["long_wait"] = 60.0
    tile = next(t for t in overview_tiles(Snapshot.from_dict(example)) if t.key == "wait")
    assert tile.level is None


def test_no_wait_anywhere_shows_a_dash_and_no_queue(example: dict[str, Any]) -> None:
    example["overview"]["max_wait"] = {"queue": None, "seconds": None}
    tile = next(t for t in overview_tiles(Snapshot.from_dict(example)) if t.key == "wait")
    assert tile.value == "—"


def test_workload_cells_at_80_and_at_160_columns(example: dict[str, Any]) -> None:
    evals, default = Snapshot.from_dict(example).queues
    assert queue_cells(evals, wide=False) == {
        "ready": "240",
        "running": "40",
        "delayed": "3",
        "oldest": "12.4s",
        "clear": "31.0s",
        "procs": "4",
        "jpm": "380",
    }
    assert queue_cells(evals, wide=True) == {
        "ready": "240",
        "delayed": "3",
        "running": "40",
        "oldest": "12.4s",
        "clear": "31.0s",
        "procs": "4",
        "jpm": "380",
        "fpm": "4",
        "p95": "0.48s",
    }
    # Nothing ready: no oldest wait and nothing to clear; no runtimes yet.
    assert queue_cells(default, wide=True) == {
        "ready": "0",
        "delayed": "0",
        "running": "0",
        "oldest": "—",
        "clear": "—",
        "procs": "2",
        "jpm": "32",
        "fpm": "0",
        "p95": "—",
    }
    narrow, wide = workload_columns(False), workload_columns(True)
    assert [c.label for c in narrow] == ["Backlog", "Run", "Delay", "Oldest", "Est.clear", "Procs", "Jobs/min"]
    assert {c.label for c in wide} - {c.label for c in narrow} == {"Fail/min", "p95"}


def test_every_cell_fits_its_column(busy: dict[str, Any]) -> None:
    for queue in Snapshot.from_dict(busy).queues:
        for column in workload_columns(True):
            assert len(column.cell(queue)) <= column.width, (queue.name, column.key)


def test_the_top_bar_tells_status_and_snapshot_age(example: dict[str, Any]) -> None:
    s = state()
    s.mark_connected(100.0)
    s.apply_snapshot(Snapshot.from_dict(example), 100.0)
    assert s.status_text(100.4) == "● running · redis ok · 0.4s"
    assert s.status_text(100.4, short=True) == "● running · 0.4s"  # beside the frozen mark at 80 columns
    assert s.status_level(100.4) is Level.OK
    assert s.workload_note(100.4) == ("", None)
    # Redis answers but nothing has produced a snapshot for a while.
    assert s.status_text(130.0) == "● running · redis ok · 30.0s"
    assert s.status_level(130.0) is Level.WARNING
    assert s.workload_note(130.0) == ("no snapshot for 30s", Level.WARNING)


@pytest.mark.parametrize(("status", "level"), [("paused", Level.WARNING), ("inactive", Level.ERROR)])
def test_a_master_that_is_not_running_colours_the_top_bar(example: dict[str, Any], status: str, level: Level) -> None:
    example["overview"]["status"] = status
    s = state()
    s.mark_connected(100.0)
    s.apply_snapshot(Snapshot.from_dict(example), 100.0)
    assert s.status_text(100.0) == f"● {status} · redis ok · 0.0s"
    assert s.status_level(100.0) is level


def test_disconnected_values_are_marked_stale(example: dict[str, Any]) -> None:
    s = state()
    s.mark_connected(100.0)
    s.apply_snapshot(Snapshot.from_dict(example), 100.0)
    s.mark_failed("boom", 114.0, 2.0)
    assert s.workload_note(114.0) == ("stale 14s", Level.WARNING)
    assert s.workload_note(120.0) == ("stale 20s", Level.WARNING)
    assert s.status_text(120.0) == "✕ redis: disconnected, retrying in 2s"
    assert s.status_level(120.0) is Level.ERROR


def test_a_problem_with_telemetry_is_shown_until_a_good_snapshot(example: dict[str, Any]) -> None:
    s = state()
    s.mark_connected(100.0)
    assert s.workload_note(100.0) == ("waiting for the first snapshot…", None)
    s.mark_telemetry_problem(f"telemetry schema 'x' is not {SCHEMA!r}")
    assert s.workload_note(100.0) == (f"telemetry schema 'x' is not {SCHEMA!r}", Level.ERROR)
    s.apply_snapshot(Snapshot.from_dict(example), 101.0)
    assert s.workload_note(101.0) == ("", None)
