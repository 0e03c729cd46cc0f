"""The acting screens' view-models without Textual: cells, colours, countdowns, ETAs, the dialog
texts with their counts (a queue's held jobs among them), the lines fitted to a width, and which
filter an "all matching" action uses."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from fake_admin import NOW, batches, failed_rows, running_rows

from evalharness.core.admin import FailedFilter, FailedGroup, FailedPage
from evalharness.tui.model import QueueStats
from evalharness.tui.views import batches as b
from evalharness.tui.views import failed as f
from evalharness.tui.views import queue_detail as qd
from evalharness.tui.views import running as r
from evalharness.tui.views import workload as w
from evalharness.tui.views.common import text_bar


def test_text_bar() -> None:
    assert text_bar(0.0) == "░░░░░░░░░░   0%"
    assert text_bar(0.63) == "██████░░░░  63%"
    assert text_bar(1.0) == "██████████ 100%"
    assert text_bar(float("nan")) == "░░░░░░░░░░   0%"


def test_batch_cells_keep_counts_apart() -> None:
    run42 = batches()[0]
    cells = b.batch_cells(run42)
    assert cells["counts"].text == "1,262/12/2,000" and cells["counts"].style == "red"
    assert cells["pending"].text == "700" and cells["running"].text == "38"
    assert cells["rate"].text == "41/m"
    assert cells["eta"].text == "18m 00s"  # 738 not finished at 41 a minute
    assert b.counts_line(run42) == ("total 2,000 · pending 700 · running 38 · succeeded 1,250 · failed 12 · removed 0")


@pytest.mark.parametrize(
    ("state", "rate", "eta"),
    [("running", None, None), ("succeeded", 41.0, None), ("running", 0.0, None), ("pending", 60.0, 738.0)],
)
def test_eta_only_when_it_can_be_told(state: str, rate: float | None, eta: float | None) -> None:
    assert b.eta_seconds(replace(batches()[0], state=state, rate_per_min=rate)) == eta


def test_the_eta_of_an_eval_run_counts_the_samples_not_dispatched_yet() -> None:
    # 80 declared, 7 done, 4 running and 4 queued (the producer keeps 8 in flight) at 7 a minute
    row = replace(batches()[0], total=80, succeeded=7, failed=0, pending=8, running=4, rate_per_min=7.0)
    assert b.eta_seconds(row) == 73 / 7 * 60
    assert b.batch_cells(row)["eta"].text == "10m 26s"


def test_the_list_sorts_running_first_then_newest() -> None:
    model = b.BatchesModel()
    model.take(list(reversed(batches())), NOW)
    assert [row.state for row in model.rows][:3] == ["running", "running", "pending"]
    assert [row.name for row in model.rows][:2] == ["run-42", "nightly-rag-eval"]


def test_the_batches_filter_uses_the_facets() -> None:
    model = b.BatchesModel(filter_text="queue:sut-openai")
    model.take(batches(), NOW)
    assert {row.name for row in model.rows} == {"nightly-rag-eval", "smoke-openai"}
    model.filter_text = "run-4"
    assert {row.name for row in model.rows} == {"run-42", "run-41", "run-40"}


def test_chips_cycle() -> None:
    model = b.BatchesModel()
    assert [model.next_chip() for _ in range(4)] == ["all", "failed", "cancelled", "active"]


def test_cancel_confirmation_states_the_consequence_and_types_past_a_thousand() -> None:
    run42 = batches()[0]
    small = b.cancel_confirmation(run42, 688, 38)
    assert small.body.startswith("Removes 688 queued jobs; 38 running will be told to stop; `finally` runs once.")
    assert small.typed is None and small.title == "Cancel batch run-42?"
    assert b.cancel_confirmation(run42, 963, 38).typed == "run-42"  # 1,001 jobs touched
    assert b.cancel_confirmation(run42, 962, 38).typed is None


def test_failed_cells_and_header() -> None:
    rows = failed_rows()
    cells = f.failed_cells(rows[3], NOW)
    assert cells["retried"].text == "↻ succeeded" and cells["timeout"].text == "yes"
    assert cells["failed"].text == "2m 10s"
    assert f.header_line(rows[0]).startswith("judge_sample  …9e3779b1  FAILED (timeout)  attempt 3/3  queue judge")
    assert f.failed_cells(rows[9], NOW)["batch"].text == "—"


def test_all_matching_uses_the_filter_or_the_highlighted_group() -> None:
    model = f.FailedModel(
        filter_text="queue:judge", grouped=True, groups=(FailedGroup("TimeoutError", 3), FailedGroup("ValueError", 1))
    )
    assert model.filter_for("exc:ValueError") == FailedFilter(queue="judge", exception="ValueError")
    model.grouped = False
    assert model.filter_for("exc:ValueError") == FailedFilter(queue="judge")


def test_typed_target_of_an_all_matching_action() -> None:
    assert f.matching_target(FailedFilter(batch="run-42", queue="judge")) == "run-42"
    assert f.matching_target(FailedFilter(queue="judge")) == "judge"
    assert f.matching_target(FailedFilter(exception="TimeoutError")) == "TimeoutError"
    assert f.matching_target(FailedFilter()) == "all"
    assert f.forget_all_confirmation(FailedFilter(queue="judge"), 3).typed == "judge"  # always typed
    assert f.retry_all_confirmation(FailedFilter(queue="judge"), 3).typed is None
    assert f.retry_all_confirmation(FailedFilter(queue="judge"), 1_001).typed == "judge"
    assert (
        "Queues 3 failed jobs again, matching queue:judge"
        in f.retry_all_confirmation(FailedFilter(queue="judge"), 3).body
    )


def test_failed_paging() -> None:
    model = f.FailedModel(page=FailedPage(120, 0, tuple(failed_rows())))
    assert model.page_by(-1) is False
    assert model.page_by(1) and model.offset == 50
    assert model.page_by(1) and model.offset == 100
    assert model.page_by(1) is False


def test_running_cells_colours() -> None:
    slow = running_rows()[2]  # 54 s of 60
    cells = r.running_cells(slow, NOW, p95=20.0)
    assert cells["running"].text == "54s" and cells["running"].style == "yellow"
    assert cells["timeout"].text == "6s" and "red" in cells["timeout"].style
    assert r.running_cells(slow, NOW, p95=None)["running"].style == ""
    stuck = running_rows()[4]  # renewed 22 s ago on a 30 s lease
    assert r.lease_overdue(stuck, NOW) and "red" in r.running_cells(stuck, NOW, None)["lease"].style
    assert not r.lease_overdue(running_rows()[0], NOW)
    assert r.running_cells(running_rows()[5], NOW, None)["timeout"].text == "—"
    # Ticking is arithmetic on the clock: a second later, a second more.
    assert r.running_cells(slow, NOW + 1, None)["running"].text == "55s"


def test_running_sorts_longest_first() -> None:
    model = r.RunningModel(page=tuple(running_rows()))
    started = [row.started_at for row in model.rows]
    assert started == sorted(started)  # type: ignore[type-var]


def test_the_interface_the_console_uses_imports_no_textual() -> None:
    """The console builds on core.admin, and core stays free of the screen."""
    code = "import sys, evalharness.core.admin; assert 'textual' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- a queue's ready jobs and the ones its batches' max_running holds back ---------------------

QUEUE = QueueStats(
    "judge",
    ready=12_480,
    delayed=120,
    reserved=64,
    runtime_p50=0.92,
    runtime_p95=3.8,
    runtime_max=15.2,
    timeouts_past_hour=9,
    releases_past_hour=0,
    retries_past_hour=31,
    failed_past_hour=120,
)


@pytest.mark.parametrize(
    ("held", "paused", "width", "line"),
    [
        (0, False, 160, "p50 0.92s p95 3.8s max 15.2s · timeouts 1h 9 · 429 releases 1h 0 · retries 1h 31"),
        (
            360,
            False,
            160,
            "360 held by batch caps · p50 0.92s p95 3.8s max 15.2s · timeouts 1h 9 · 429 releases 1h 0 · retries 1h 31",
        ),
        (360, False, 78, "360 held · p50 0.92s p95 3.8s max 15.2s · T/O 1h 9 · 429s 1h 0 · retries 1h 31"),
        # paused too: the retries go rather than wrap into the sparklines below
        (360, True, 78, "PAUSED · 360 held · p50 0.92s p95 3.8s max 15.2s · T/O 1h 9 · 429s 1h 0"),
        (0, True, 78, "PAUSED · p50 0.92s p95 3.8s max 15.2s · T/O 1h 9 · 429s 1h 0 · retries 1h 31"),
    ],
)
def test_the_workload_line_counts_held_jobs_and_fits_its_width(held: int, paused: bool, width: int, line: str) -> None:
    got = w.stats_line(replace(QUEUE, held=held, paused=paused), width)
    assert got == line and len(got) <= width


@pytest.mark.parametrize(
    ("held", "paused", "width", "header"),
    [
        (0, False, 78, "Queue judge · ready 12,480 · delayed 120 · running 64 · failed 1h 120"),
        (360, False, 160, "Queue judge · ready 12,480 · held 360 · delayed 120 · running 64 · failed 1h 120"),
        (360, False, 78, "Queue judge · ready 12,480 · held 360 · delay 120 · run 64 · failed 1h 120"),
        # PAUSED leads, so a narrow terminal never cuts it off: the failed count goes first
        (360, True, 78, "Queue judge · PAUSED · ready 12,480 · held 360 · delay 120 · run 64"),
    ],
)
def test_the_queue_detail_header_adds_held_to_ready_and_fits_its_width(
    held: int, paused: bool, width: int, header: str
) -> None:
    got = qd.header_text("judge", replace(QUEUE, held=held, paused=paused), width)
    assert got == header and len(got) <= width


@pytest.mark.parametrize(
    ("held", "paused", "body"),
    [
        (0, False, "Workers on every host stop taking the jobs of judge: 12,480 ready jobs stay queued"),
        (
            360,
            False,
            "stop taking the jobs of judge: 12,840 ready jobs (360 of them held by their batch's max_running) stay",
        ),
        # continuing starts the ready ones; the held ones still wait for their batch
        (
            360,
            True,
            "take the jobs of judge again: 12,480 ready jobs can start (360 more wait for their batch's max_running).",
        ),
        (0, True, "take the jobs of judge again: 12,480 ready jobs can start."),
    ],
)
def test_pause_and_continue_say_which_ready_jobs_they_concern(held: int, paused: bool, body: str) -> None:
    assert body in w.pause_confirmation(replace(QUEUE, held=held, paused=paused)).body


def test_a_clear_counts_the_held_jobs_it_removes() -> None:
    body = w.clear_confirmation(replace(QUEUE, held=360)).body
    assert body.startswith("Removes 12,840 ready jobs (360 of them held by their batch's max_running) of judge;")
    assert w.clear_confirmation(QUEUE).body.startswith("Removes 12,480 ready jobs of judge;")


def test_a_detail_line_breaks_between_its_parts_never_inside_one() -> None:
    from evalharness.tui.views.common import wrap_parts

    run42 = batches()[0]
    text = wrap_parts(b.counts_parts(run42), 78)
    assert text.splitlines() == [
        "total 2,000 · pending 700 · running 38 · succeeded 1,250 · failed 12",
        "removed 0",
    ]
    assert wrap_parts(b.counts_parts(run42), 160) == b.counts_line(run42)
    assert wrap_parts(["a-very-long-part", "b"], 5) == "a-very-long-part\nb"
