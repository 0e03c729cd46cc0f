"""``evalharness status`` as people read it: full queue names at 80 columns, every "failed"
named by its window, and the same text as the console for the same value."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
from rich.console import Console

from evalharness.cli.status import STATUS_COLUMNS, render
from evalharness.tui.state import QueueStats, Snapshot, workload_columns


def queue_row(name: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "ready": 1_240,
        "delayed": 3,
        "reserved": 40,
        "oldest_wait": 12.4,
        "est_clear": 31.0,
        "processes": 4,
        "slots": 80,
        "jobs_per_minute": 380.0,
        "completed_per_minute": 376.0,
        "failed_per_minute": 4.0,
        "runtime": {"mean": 0.24, "p50": 0.21, "p95": 0.48, "max": 2.9},
        "completed": 10_234,
        "failed": 43,
        "failed_total": 43,
        "failed_stored": 2,
        "timeouts": 2,
        "retries": 30,
        "rate_limited": 55,
        "lost": 0,
        "dispatched": 10_560,
        "past_hour": {"completed": 9_000, "failed": 7},
    }
    row.update(changes)
    return row


def snapshot(*queues: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "evalharness.telemetry.v1",
        "at": 1795430000.0,
        "prefix": "eh",
        "overview": {
            "status": "running",
            "jobs_per_minute": 412.0,
            "jobs_past_hour": 18_234,
            "failed_past_hour": 7,
            "failed_past_7_days": 2,
            "processes": 6,
            "masters": 1,
            "max_wait": {"queue": queues[0]["name"], "seconds": 12.4},
        },
        "queues": list(queues),
        "masters": [
            {
                "name": "vm-1a2b",
                "pid": 4242,
                "status": "running",
                "heartbeat_age": 0.8,
                "supervisors": [{"name": "llm", "processes": 4}],
            }
        ],
    }


def shown(snap: dict[str, Any], width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(render(snap, width))
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def test_at_80_columns_queue_names_are_whole_and_low_value_columns_go_first() -> None:
    names = ["evals-production-nightly-2026-a", "evals-production-nightly-2026-b"]
    text = shown(snapshot(*(queue_row(n) for n in names)), 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    for name in names:
        assert any(line.startswith(name + " ") for line in lines), text
    assert "…" not in text
    header = next(line for line in lines if line.startswith("queue"))
    # what an operator needs stays; the total since the queue began goes first
    for kept in ("ready", "running", "oldest wait"):
        assert kept in header
    assert "failed (total)" not in header


def test_ready_jobs_a_batch_cap_holds_back_have_their_own_column_left_out_early() -> None:
    text = shown(snapshot(queue_row("evals", ready=0, held=40)), 200)
    header = next(line for line in text.splitlines() if line.startswith("queue"))
    row = next(line for line in text.splitlines() if line.startswith("evals"))
    assert header.split()[:3] == ["queue", "ready", "held"] and row.split()[:3] == ["evals", "0", "40"]
    # `status --json` output saved by an older version has no held key: nothing is held
    text = shown(snapshot(queue_row("evals", ready=5)), 200)
    assert next(line for line in text.splitlines() if line.startswith("evals")).split()[:3] == ["evals", "5", "0"]
    # a terminal one column too narrow for them all leaves out the total since the queue began,
    # and held only when that is not enough
    full = len(header)
    for width, gone in (
        (full - 1, {"failed (total)"}),
        (full - len("  failed (total)") - 1, {"failed (total)", "held"}),
    ):
        text = shown(snapshot(queue_row("evals", ready=0, held=40)), width)
        narrow = next(line for line in text.splitlines() if line.startswith("queue"))
        shown_headers = {c.header for c in STATUS_COLUMNS if f" {c.header}" in f" {narrow} "}
        assert {c.header for c in STATUS_COLUMNS} - shown_headers == gone, (width, narrow)


def test_a_wide_terminal_shows_every_column() -> None:
    text = shown(snapshot(queue_row("evals")), 200)
    header = next(line for line in text.splitlines() if line.startswith("queue"))
    for column in STATUS_COLUMNS:
        assert column.header in header


def test_every_failed_count_is_named_by_its_window() -> None:
    text = shown(snapshot(queue_row("evals")), 200)
    head = text.splitlines()[0]
    assert "failed 1h 7" in head and "failed (store) 2" in head
    header = next(line for line in text.splitlines() if line.startswith("queue"))
    assert "failed 1h" in header and "failed (total)" in header
    assert "failed" not in header.replace("failed 1h", "").replace("failed (total)", "")
    row = next(line for line in text.splitlines() if line.startswith("evals"))
    assert row.split()[-2:] == ["7", "43"]


@pytest.mark.parametrize(
    ("ready", "est_clear", "p95"), [(0, 0.0, None), (5, 0.5, 0.48), (1_240, 31.0, 4.2), (3, None, 75.0)]
)
def test_status_and_the_console_show_a_value_the_same_way(
    ready: int, est_clear: float | None, p95: float | None
) -> None:
    row = queue_row(
        "evals", ready=ready, est_clear=est_clear, runtime={"mean": None, "p50": None, "p95": p95, "max": None}
    )
    snap = snapshot(row)
    console = {c.key: c.cell for c in workload_columns(wide=True)}
    queue: QueueStats = Snapshot.from_dict(copy.deepcopy(snap)).queues[0]
    status = {c.header: c.cell for c in STATUS_COLUMNS}
    assert status["est. clear"](row) == console["clear"](queue)
    assert status["p95"](row) == console["p95"](queue)
    assert status["oldest wait"](row) == console["oldest"](queue)
    assert status["jobs/min"](row) == console["jpm"](queue)
    assert status["ready"](row) == console["ready"](queue)
    if ready == 0:
        assert status["est. clear"](row) == "—"
