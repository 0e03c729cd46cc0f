"""The report contract: aggregates per METRICS.md §4, per-sample rows in dataset order, failures,
report_ok, the atomic JSON file, and the summary printed for people."""

from __future__ import annotations

import io
import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from evalharness.core.datasets import Dataset, Sample
from evalharness.core.report import (
    SCHEMA_VERSION,
    SampleOutcome,
    aggregate,
    build_report,
    percentile,
    render_report,
    report_ok,
    wilson_interval,
    write_report,
)
from evalharness.core.scorers import Scorer, resolve_metrics

STARTED = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z
FINISHED = STARTED + 83.5


def make_dataset(*expected: Any, name: str = "qa", ids: list[str] | None = None) -> Dataset:
    ids = ids or [f"s{i}" for i in range(len(expected))]
    samples = tuple(
        Sample(id=sid, input=f"question {i}", expected_output=exp, metadata={}, line=i + 1)
        for i, (sid, exp) in enumerate(zip(ids, expected, strict=True))
    )
    return Dataset(path=Path("data") / f"{name}.jsonl", name=name, samples=samples)


def ok(dataset: Dataset, index: int, output: str, attempts: int | None = 1) -> SampleOutcome:
    return SampleOutcome(index, dataset.samples[index], output, None, attempts)


def failed(dataset: Dataset, index: int, kind: str, message: str = "boom") -> SampleOutcome:
    error = {"kind": kind, "message": message}
    return SampleOutcome(index, dataset.samples[index], None, error, 3)


def report_for(
    dataset: Dataset, outcomes: list[SampleOutcome], metrics: list[str] | None = None, **overrides: Any
) -> dict[str, Any]:
    scorers = resolve_metrics(metrics if metrics is not None else ["exact-match", "contains"])
    kwargs: dict[str, Any] = {
        "run_id": "run-1",
        "dataset": dataset,
        "sut": "mypkg.sut:answer",
        "mode": "in-process",
        "options": {"concurrency": 4},
        "started_at": STARTED,
        "finished_at": FINISHED,
        "outcomes": outcomes,
        "scorers": scorers,
    }
    kwargs.update(overrides)
    return build_report(**kwargs)


# --- statistics --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "p", "want"),
    [
        # Hand-computed with numpy's "linear" method: r = p/100·(n−1), interpolate v[floor r]..v[ceil r].
        ([7.0], 50, 7.0),
        ([7.0], 95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # r = 1.5
        ([1.0, 2.0, 3.0, 4.0], 95, 3.85),  # r = 2.85
        ([0.0, 0.5, 1.0], 50, 0.5),  # r = 1 exactly
        ([0.0, 0.5, 1.0], 95, 0.95),  # r = 1.9
        ([0.1, 0.3, 0.5, 0.7, 0.9], 95, 0.86),  # r = 3.8
        ([0.0, 1.0], 95, 0.95),
        ([0.0, 0.0, 0.0, 1.0], 50, 0.0),
        ([0.0] * 19 + [1.0], 95, 0.05),  # r = 18.05
        ([0.2, 0.2, 0.2], 95, 0.2),
    ],
)
def test_percentile_is_numpy_linear(values: list[float], p: float, want: float) -> None:
    assert percentile(values, p) == pytest.approx(want, abs=1e-12)


def test_percentile_returns_end_points_exactly() -> None:
    assert percentile([0.1, 0.7], 0) == 0.1
    assert percentile([0.1, 0.7], 100) == 0.7
    with pytest.raises(ValueError):
        percentile([], 50)


def test_aggregate_hand_computed() -> None:
    stats = aggregate([0.9, 0.1, 0.5, 0.7, 0.3], errors=2)  # unsorted on purpose
    assert stats["mean"] == pytest.approx(0.5, abs=1e-12)
    assert stats["pass_rate"] == pytest.approx(3 / 5)  # 0.5, 0.7, 0.9
    assert stats["p50"] == pytest.approx(0.5, abs=1e-12)
    assert stats["p95"] == pytest.approx(0.86, abs=1e-12)
    assert stats["stddev"] == pytest.approx(math.sqrt(0.08), abs=1e-12)  # population, not sample
    assert stats["count"] == 5
    assert stats["errors"] == 2


def test_aggregate_pass_threshold_is_inclusive() -> None:
    assert aggregate([0.5, 0.4999999, 1.0])["pass_rate"] == pytest.approx(2 / 3)


def test_aggregate_constant_scores() -> None:
    stats = aggregate([1.0, 1.0, 1.0])
    assert (stats["mean"], stats["stddev"], stats["p50"], stats["p95"], stats["pass_rate"]) == (
        1.0,
        0.0,
        1.0,
        1.0,
        1.0,
    )
    assert aggregate([0.1] * 7)["mean"] == 0.1


def test_aggregate_of_no_scores_is_null_not_zero() -> None:
    assert aggregate([], errors=3) == {
        "mean": None,
        "pass_rate": None,
        "p50": None,
        "p95": None,
        "stddev": None,
        "count": 0,
        "errors": 3,
    }


# --- build_report ------------------------------------------------------------------------------


def test_report_top_level_contract() -> None:
    ds = make_dataset("Paris", "Rome")
    report = report_for(ds, [ok(ds, 0, "Paris"), ok(ds, 1, "It is Rome")])
    assert list(report) == [
        "schema_version",
        "run_id",
        "dataset",
        "sut",
        "mode",
        "options",
        "started_at",
        "finished_at",
        "duration_seconds",
        "total_samples",
        "scored_samples",
        "metrics",
        "samples",
        "failures",
        "macro_f1",
    ]
    assert report["schema_version"] == SCHEMA_VERSION == "evalharness.report.v1"
    assert report["run_id"] == "run-1"
    assert report["dataset"] == {"name": "qa", "path": str(Path("data/qa.jsonl")), "samples": 2}
    assert (report["sut"], report["mode"], report["options"]) == (
        "mypkg.sut:answer",
        "in-process",
        {"concurrency": 4},
    )
    assert report["started_at"] == "2023-11-14T22:13:20.250Z"
    assert report["finished_at"] == "2023-11-14T22:14:43.750Z"
    assert datetime.fromisoformat(report["started_at"]).timestamp() == STARTED
    assert report["duration_seconds"] == 83.5
    assert (report["total_samples"], report["scored_samples"]) == (2, 2)
    assert report["metrics"]["exact-match"] == {
        "mean": 0.5,
        "pass_rate": 0.5,
        "p50": 0.5,
        "p95": 0.95,
        "stddev": 0.5,
        "count": 2,
        "errors": 0,
        "pass_rate_ci": {"low": wilson_interval(1, 2)[0], "high": wilson_interval(1, 2)[1], "confidence": 0.95},
        "metric": "exact-match",
        "arguments": {},
    }
    assert report["metrics"]["contains"]["mean"] == 1.0
    assert report["macro_f1"] == 0.75
    assert report["failures"] == {"total": 0, "by_kind": {}, "metric_errors": 0}
    assert report_ok(report)
    # The report is plain JSON: it survives a strict round trip unchanged.
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_metric_order_follows_the_scorers() -> None:
    ds = make_dataset("a")
    report = report_for(ds, [ok(ds, 0, "a")], metrics=["rouge-l", "exact-match", "regex"])
    assert list(report["metrics"]) == ["rouge-l", "exact-match", "regex"]
    assert list(report["samples"][0]["scores"]) == ["rouge-l", "exact-match", "regex"]


def test_samples_are_in_dataset_order_whatever_order_outcomes_arrive_in() -> None:
    ids = ["zeta", "alpha", "Ωmega", "東京"]
    ds = make_dataset("z", "a", "w", "t", ids=ids)
    outcomes = [ok(ds, 3, "t"), ok(ds, 0, "z"), ok(ds, 2, "w"), ok(ds, 1, "nope", attempts=2)]
    report = report_for(ds, outcomes)
    assert [row["id"] for row in report["samples"]] == ids
    assert [row["index"] for row in report["samples"]] == [0, 1, 2, 3]
    row = report["samples"][1]
    assert row == {
        "id": "alpha",
        "index": 1,
        "output": "nope",
        "scores": {"exact-match": 0.0, "contains": 0.0},
        "metric_errors": {},
        "error": None,
        "attempts": 2,
    }


def test_failed_samples_are_not_scored_and_are_counted_by_kind() -> None:
    ds = make_dataset("a", "b", "c", "d", "e")
    outcomes = [
        ok(ds, 0, "a"),
        failed(ds, 1, "timeout", "took longer than 30s"),
        failed(ds, 2, "exception", "ValueError: bad"),
        failed(ds, 3, "timeout"),
        ok(ds, 4, "x"),
    ]
    report = report_for(ds, outcomes)
    assert report["scored_samples"] == 2
    assert report["failures"] == {"total": 3, "by_kind": {"exception": 1, "timeout": 2}, "metric_errors": 0}
    row = report["samples"][1]
    assert row["error"] == {"kind": "timeout", "message": "took longer than 30s"}
    assert row["scores"] == {"exact-match": None, "contains": None}
    assert row["metric_errors"] == {}
    assert row["output"] is None
    assert row["attempts"] == 3
    # Failed samples are left out of the aggregates, not counted as zeros.
    assert report["metrics"]["exact-match"]["count"] == 2
    assert report["metrics"]["exact-match"]["mean"] == 0.5
    assert report["metrics"]["exact-match"]["errors"] == 0
    assert not report_ok(report)


def test_extra_error_fields_are_kept() -> None:
    ds = make_dataset("a")
    error = {"kind": "rate_limited", "message": "429 until deadline", "retry_after": 30}
    report = report_for(ds, [SampleOutcome(0, ds.samples[0], None, error, 5)])
    assert report["samples"][0]["error"] == error
    assert report["samples"][0]["attempts"] == 5


def test_an_output_with_an_error_is_kept_but_not_scored() -> None:
    ds = make_dataset("a")
    error = {"kind": "invalid_output", "message": "expected a string"}
    report = report_for(ds, [SampleOutcome(0, ds.samples[0], "a", error, 1)])
    assert report["scored_samples"] == 0
    assert report["samples"][0]["output"] == "a"
    assert report["samples"][0]["scores"] == {"exact-match": None, "contains": None}
    assert report["metrics"]["exact-match"]["mean"] is None


def test_samples_without_an_outcome_are_not_collected_failures() -> None:
    ds = make_dataset("a", "b", "c")
    report = report_for(ds, [ok(ds, 1, "b")])
    assert report["scored_samples"] == 1
    assert report["failures"]["by_kind"] == {"not_collected": 2}
    assert report["samples"][0]["error"]["kind"] == "not_collected"
    assert report["samples"][0]["attempts"] is None
    assert not report_ok(report)


def test_no_output_and_no_error_is_a_failure_not_a_silent_skip() -> None:
    ds = make_dataset("a")
    report = report_for(ds, [SampleOutcome(0, ds.samples[0], None, None, 1)])
    assert report["failures"]["by_kind"] == {"missing_output": 1}
    assert not report_ok(report)


def test_metric_errors_are_per_metric_and_left_out_of_that_metric_only() -> None:
    ds = make_dataset("", " ", "b", 42)
    outcomes = [ok(ds, 0, ""), ok(ds, 1, "a b"), ok(ds, 2, "b"), ok(ds, 3, "42")]
    report = report_for(ds, outcomes)
    rows = report["samples"]
    # "" is an exact match of "" but an error for contains; whitespace-only expected is not empty.
    assert rows[0]["scores"] == {"exact-match": 1.0, "contains": None}
    assert rows[0]["metric_errors"] == {
        "contains": {"kind": "empty-expected", "message": "expected_output must not be empty for contains"}
    }
    assert rows[1]["scores"] == {"exact-match": 0.0, "contains": 1.0}
    assert rows[1]["metric_errors"] == {}
    assert rows[3]["metric_errors"]["exact-match"]["kind"] == "invalid-expected"
    assert "number" in rows[3]["metric_errors"]["exact-match"]["message"]
    assert report["metrics"]["exact-match"]["count"] == 3
    assert report["metrics"]["exact-match"]["errors"] == 1
    assert report["metrics"]["contains"]["count"] == 2
    assert report["metrics"]["contains"]["errors"] == 2
    assert report["failures"] == {"total": 0, "by_kind": {}, "metric_errors": 3}
    # Every sample was executed, but not every score exists: the run does not pass.
    assert report["scored_samples"] == 4
    assert not report_ok(report)


def test_a_metric_that_errors_on_every_sample_has_null_aggregates() -> None:
    ds = make_dataset("", "")
    report = report_for(ds, [ok(ds, 0, "x"), ok(ds, 1, "y")], metrics=["contains"])
    assert report["metrics"]["contains"] == {
        "mean": None,
        "pass_rate": None,
        "p50": None,
        "p95": None,
        "stddev": None,
        "count": 0,
        "errors": 2,
        # No scores: the interval says nothing is known (METRICS.md §4, n = 0 -> [0, 1]).
        "pass_rate_ci": {"low": 0.0, "high": 1.0, "confidence": 0.95},
        "metric": "contains",
        "arguments": {},
    }
    assert report["macro_f1"] is None


class _Broken:
    name = "broken"

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        raise RuntimeError("division by zero somewhere")


class _NotANumber:
    name = "nan"

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        return math.nan


def test_a_faulty_scorer_becomes_a_metric_error_and_the_report_is_still_built() -> None:
    ds = make_dataset("a")
    scorers: list[Scorer] = [_Broken(), _NotANumber(), *resolve_metrics(["exact-match"])]
    report = report_for(ds, [ok(ds, 0, "a")], scorers=scorers)
    errors = report["samples"][0]["metric_errors"]
    assert errors["broken"] == {
        "kind": "scorer-exception",
        "message": "RuntimeError: division by zero somewhere",
    }
    assert errors["nan"]["kind"] == "invalid-score"
    assert report["samples"][0]["scores"]["exact-match"] == 1.0
    json.dumps(report, allow_nan=False)


def test_unicode_and_markup_survive_in_outputs_and_ids() -> None:
    ds = make_dataset("東京 🗼", "[bold]x[/bold]", ids=["ü-1", "[red]id[/red]"])
    report = report_for(ds, [ok(ds, 0, "東京 🗼"), ok(ds, 1, "[bold]x[/bold]")])
    assert report["samples"][0]["output"] == "東京 🗼"
    assert report["metrics"]["exact-match"]["mean"] == 1.0


def test_negative_clock_skew_gives_zero_duration() -> None:
    ds = make_dataset("a")
    report = report_for(ds, [ok(ds, 0, "a")], finished_at=STARTED - 1)
    assert report["duration_seconds"] == 0.0


@pytest.mark.parametrize(
    ("index", "message"),
    [(5, "outside the dataset"), (-1, "outside the dataset")],
)
def test_outcomes_with_a_bad_index_are_rejected(index: int, message: str) -> None:
    ds = make_dataset("a", "b")
    with pytest.raises(ValueError, match=message):
        report_for(ds, [SampleOutcome(index, ds.samples[0], "a", None, 1)])


def test_outcomes_must_match_their_dataset_sample() -> None:
    ds = make_dataset("a", "b")
    with pytest.raises(ValueError, match="two outcomes"):
        report_for(ds, [ok(ds, 0, "a"), ok(ds, 0, "a")])
    with pytest.raises(ValueError, match="'s1'"):
        report_for(ds, [SampleOutcome(0, ds.samples[1], "a", None, 1)])


# --- write_report ------------------------------------------------------------------------------


def test_write_report_creates_parents_and_replaces_atomically(tmp_path: Path) -> None:
    ds = make_dataset("東京")
    report = report_for(ds, [ok(ds, 0, "東京")])
    target = tmp_path / "reports" / "nested" / "run.json"
    assert write_report(report, target) == target
    text = target.read_text(encoding="utf-8")
    assert "東京" in text  # written as UTF-8, not \u escapes
    assert json.loads(text) == report

    report2 = report_for(ds, [ok(ds, 0, "x")])
    write_report(report2, str(target))
    assert json.loads(target.read_text(encoding="utf-8")) == report2
    assert os.listdir(target.parent) == ["run.json"]  # no temp files left behind


def test_write_report_leaves_the_old_file_when_the_report_cannot_be_encoded(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(ValueError):
        write_report({"bad": math.inf}, target)
    assert target.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["run.json"]


# --- render_report -----------------------------------------------------------------------------


def render(report: dict[str, Any], width: int = 80) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    render_report(report, console)
    output = console.file.getvalue()
    assert isinstance(output, str)
    return output


def test_render_at_80_columns_shows_headline_and_every_metric() -> None:
    ds = make_dataset("Paris", "Rome", "", name="capitals")
    report = report_for(
        ds,
        [ok(ds, 0, "Paris"), ok(ds, 1, "Rome!"), ok(ds, 2, "x")],
        metrics=["exact-match", "contains", "rouge-l", "regex"],
    )
    text = render(report)
    assert all(len(line) <= 80 for line in text.splitlines())
    for name in ("exact-match", "contains", "rouge-l", "regex"):
        assert name in text
    assert "capitals: 3/3 samples scored in 1m 24s" in text
    assert "pass rate" in text
    assert "n/a" in text  # regex errors on every sample here: no aggregates
    assert "Metric errors" in text
    # every sample ran: the headline names the metric errors, not "0 failed"
    assert "— 4 metric errors" in text and "0 failed" not in text  # regex on all three, contains on the empty one


def test_render_lists_at_most_ten_failed_samples() -> None:
    ds = make_dataset(*["a"] * 25, ids=[f"sample-{i:02d}-" + "x" * 40 for i in range(25)])
    outcomes = [failed(ds, i, "timeout", "took longer than 30s\n" + "detail " * 40) for i in range(12)]
    outcomes += [ok(ds, i, "a") for i in range(12, 25)]
    text = render(report_for(ds, outcomes))
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "13/25 samples scored" in text
    assert "12 samples failed: timeout 12" in text
    assert "sample-09-" in text
    assert "sample-10-" not in text
    assert "… and 2 more in the JSON report" in text


def test_render_shows_data_as_text_not_markup_or_terminal_codes() -> None:
    ds = make_dataset("a", "b", ids=["[red]id[/red]", "esc"])
    outcomes = [
        failed(ds, 0, "exception", "[bold]boom[/bold]"),
        failed(ds, 1, "exception", "\x1b[31mred\x1b[0m"),
    ]
    text = render(report_for(ds, outcomes))
    assert "[red]id[/red]" in text
    assert "[bold]boom[/bold]" in text
    assert "\x1b" not in text


@pytest.mark.parametrize("width", [40, 60, 120])
def test_render_does_not_crash_at_other_widths(width: int) -> None:
    ds = make_dataset("a", "")
    report = report_for(ds, [ok(ds, 0, "a"), failed(ds, 1, "lost", "worker died")], metrics=["exact-match"])
    text = render(report, width)
    assert "exact" in text


def test_render_with_no_metrics() -> None:
    ds = make_dataset("a")
    text = render(report_for(ds, [ok(ds, 0, "a")], scorers=[]))
    assert "qa: 1/1 samples scored" in text


def test_render_of_an_interrupted_run_says_by_which_signal_and_lists_what_did_not_finish() -> None:
    ds = make_dataset(*["a"] * 16)
    outcomes = [ok(ds, 0, "a"), ok(ds, 1, "a"), failed(ds, 2, "not_collected", "dispatched, but no result arrived")]
    outcomes += [failed(ds, i, "not_dispatched", "never dispatched") for i in range(3, 16)]
    report = report_for(ds, outcomes)
    report["interrupted"] = {"signal": "SIGTERM", "exit_code": 143}
    text = render(report)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "qa: 2/16 samples scored" in text and "interrupted by SIGTERM, 14 not scored" in text
    assert "1 sample not collected: s2" in text
    assert "13 samples never ran: s3, s4, s5, s6, s7, s8, s9, s10, s11, s12 … and 3 more" in text


def test_usage_is_reported_per_sample_and_in_total_only_when_a_provider_reported_it() -> None:
    ds = make_dataset("a", "b", "c")
    plain = report_for(ds, [ok(ds, 0, "a"), ok(ds, 1, "b"), ok(ds, 2, "c")])
    assert "usage" not in plain and all("usage" not in row for row in plain["samples"])
    outcomes = [
        SampleOutcome(
            0,
            ds.samples[0],
            "a",
            None,
            1,
            {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cost": 0.25, "calls": 1},
        ),
        SampleOutcome(
            1, ds.samples[1], "b", None, 2, {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "calls": 1}
        ),
        failed(ds, 2, "exception", "provider answered 500"),
    ]
    report = report_for(ds, outcomes)
    assert report["usage"] == {
        "samples": 2,
        "prompt_tokens": 8,
        "completion_tokens": 3,
        "total_tokens": 11,
        "cost": 0.25,
        "calls": 2,
    }
    assert [row["usage"] for row in report["samples"]] == [outcomes[0].usage, outcomes[1].usage, None]
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_the_rendered_report_shows_the_usage_when_there_is_one() -> None:
    ds = make_dataset("a")
    report = report_for(
        ds,
        [
            SampleOutcome(
                0,
                ds.samples[0],
                "a",
                None,
                1,
                {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cost": 0.25, "calls": 1},
            )
        ],
    )
    buffer = io.StringIO()
    render_report(report, Console(file=buffer, width=200))
    assert "4 tokens over 1 provider call(s), cost 0.25" in buffer.getvalue()

    report = report_for(
        ds,
        [
            SampleOutcome(
                0,
                ds.samples[0],
                "a",
                None,
                1,
                {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None, "calls": 2},
            )
        ],
    )
    buffer = io.StringIO()
    render_report(report, Console(file=buffer, width=200))
    assert "2 provider call(s), no token counts reported" in buffer.getvalue()


def test_prompt_and_completion_tokens_without_a_total_count_as_their_sum() -> None:
    """A SUT's own ``record_usage(Usage(prompt_tokens=..., completion_tokens=...))`` (the way
    docs/runs.md shows) gives no total: the sample's and the run's totals are the sum, and the
    summary counts the tokens rather than saying none were reported."""
    from evalharness.core.providers.usage import Usage, collecting_usage, record_usage

    with collecting_usage() as usage:
        record_usage(Usage(prompt_tokens=1000, completion_tokens=500, calls=1, model="gpt-4o-mini"))
        record_usage(Usage(prompt_tokens=10, completion_tokens=5, total_tokens=20, calls=1))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1010, 505, 1520)

    ds = make_dataset("a", "b")
    report = report_for(
        ds,
        [
            SampleOutcome(0, ds.samples[0], "a", None, 1, usage.as_dict()),
            # a result recorded without a total (as stored by earlier versions) is summed too
            SampleOutcome(1, ds.samples[1], "b", None, 1, {"prompt_tokens": 7, "completion_tokens": 3, "calls": 1}),
        ],
    )
    assert (report["usage"]["total_tokens"], report["usage"]["calls"]) == (1530, 3)
    buffer = io.StringIO()
    render_report(report, Console(file=buffer, width=200))
    assert "1530 tokens over 3 provider call(s)" in buffer.getvalue()
