"""The report of a repeated run: one row per sample with each execution, the mean and the
population spread per metric, Wilson intervals over all executions exactly as METRICS.md §4
(checked against statsmodels), the unstable samples, and the precision the run resolves; and how
the Markdown, HTML, CSV and JUnit pages show it."""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path

import pytest
from rich.console import Console
from statsmodels.stats.proportion import proportion_confint

from evalharness.core.datasets import Dataset, Sample
from evalharness.core.repetitions import build_repeated_report, expand, fold, precision, required, resolution
from evalharness.core.report import SampleOutcome, render_report, report_ok
from evalharness.core.report_formats import render_csv, render_html, render_junit, render_markdown
from evalharness.core.scorers import resolve_metrics

DS = Dataset(
    path=Path("qa.jsonl"),
    name="qa",
    samples=(
        Sample("a", "qa", "yes", {}, 1),  # always right
        Sample("b", "qb", "yes", {}, 2),  # right twice of three: unstable
        Sample("c", "qc", "yes", {}, 3),  # never right
    ),
)
# per sample, per repetition: the SUT's output (None: that execution failed)
OUTPUTS = {"a": ["yes", "yes", "yes"], "b": ["yes", "no", "yes"], "c": ["no", "no", None]}


def outcomes(reps: int = 3) -> list[SampleOutcome]:
    units = expand(DS, reps)
    out = []
    for u, sample in enumerate(units.samples):
        text = OUTPUTS[sample.id][u % reps]
        error = None if text is not None else {"kind": "exception", "message": "boom"}
        out.append(SampleOutcome(u, sample, text, error, 1))
    return out


def report(reps: int = 3) -> dict:
    return build_repeated_report(
        run_id="r1",
        dataset=DS,
        sut="m:f",
        mode="lazy-parallel",
        options={"repetitions": reps},
        started_at=1.0,
        finished_at=2.0,
        outcomes=outcomes(reps),
        scorers=resolve_metrics(["exact-match", "contains"]),
        repetitions=reps,
    )


def test_units_are_each_sample_n_times_in_a_row_and_fold_back() -> None:
    units = expand(DS, 3)
    assert [s.id for s in units.samples] == ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    per_rep = fold(outcomes(), 3, 3)
    assert [[o.index for o in rep] for rep in per_rep] == [[0, 1, 2]] * 3
    assert [o.output for o in per_rep[1]] == ["yes", "no", "no"]
    assert expand(DS, 1) is DS


def test_each_sample_has_its_executions_the_mean_and_the_population_spread() -> None:
    r = report()
    b = r["samples"][1]
    assert [e["output"] for e in b["repetitions"]] == ["yes", "no", "yes"]
    assert [e["repetition"] for e in b["repetitions"]] == [0, 1, 2]
    assert b["scores"]["exact-match"] == pytest.approx(2 / 3, abs=1e-12)
    spread = b["repetition_stats"]["metrics"]["exact-match"]
    assert spread["stddev"] == pytest.approx(statistics.pstdev([1.0, 0.0, 1.0]), abs=1e-12)
    assert (spread["min"], spread["max"], spread["observations"]) == (0.0, 1.0, 3)
    # the failed execution of c is not a score: c's mean is over its two scored executions
    c = r["samples"][2]
    assert c["repetition_stats"]["metrics"]["exact-match"]["observations"] == 2
    assert c["error"]["message"].startswith("1 of 3 repetitions failed")
    assert r["total_executions"] == 9 and r["scored_executions"] == 8 and r["repetitions"] == 3


def test_metric_pass_rates_have_wilson_intervals_over_all_executions_as_statsmodels() -> None:
    r = report()
    em = r["metrics"]["exact-match"]
    assert em["count"] == 8 and em["pass_rate"] == pytest.approx(5 / 8)
    low, high = proportion_confint(5, 8, alpha=0.05, method="wilson")
    assert em["pass_rate_ci"]["low"] == pytest.approx(low, abs=1e-9)
    assert em["pass_rate_ci"]["high"] == pytest.approx(high, abs=1e-9)
    # a sample's own interval over its repetitions: 2 of 3
    ci = r["samples"][1]["repetition_stats"]["pass_rate_ci"]
    assert (ci["low"], ci["high"]) == pytest.approx(proportion_confint(2, 3, alpha=0.05, method="wilson"), abs=1e-9)
    assert (round(ci["low"], 4), round(ci["high"], 4)) == (0.2077, 0.9385)


def test_unstable_samples_are_those_whose_repetitions_disagree_on_pass_or_fail() -> None:
    r = report()
    # c never passes (its failed execution does not pass either): not unstable
    assert r["unstable_samples"] == ["b"]
    assert [s["repetition_stats"]["unstable"] for s in r["samples"]] == [False, True, False]
    assert not report_ok(r)  # an execution failed


def test_the_precision_the_run_resolves() -> None:
    r = report()
    p = r["precision"]
    # 3 + 2 + 0 executions passed of 9
    assert p["executions"] == 9 and p["pass_rate"] == pytest.approx(5 / 9)
    low, high = proportion_confint(5, 9, alpha=0.05, method="wilson")
    assert p["half_width"] == pytest.approx((high - low) / 2, abs=1e-9)
    z = statistics.NormalDist().inv_cdf(0.975)
    assert p["min_detectable_difference"] == pytest.approx(z * math.sqrt(2 * (5 / 9) * (4 / 9) / 9))
    v = ((2 / 3) * (1 / 3)) / 3  # only b varies within itself
    assert p["within_sample_variance"] == pytest.approx(v)
    assert p["sample_resolution"] == pytest.approx(min(1.0, z * math.sqrt(2 * v / 3)))
    assert p["required_repetitions"] == math.ceil(2 * z * z * v / 0.05**2)
    assert "9 executions (3 per sample)" in p["summary"]


@pytest.mark.parametrize(
    ("variance", "n", "want"),
    [
        (0.0, 1, 1.0),
        (0.0, 30, 0.1),
        (0.25, 200, 1.959963984540054 * math.sqrt(0.5 / 200)),
        (0.5, 2, 1.0),
    ],  # capped at 1
)
def test_resolution_rule_of_three_and_normal_approximation(variance: float, n: int, want: float) -> None:
    assert resolution(variance, n) == pytest.approx(want)


def test_required_repetitions() -> None:
    assert required(0.0, 0.05) == 60
    assert required(0.25, 0.05) == math.ceil(2 * 1.959963984540054**2 * 0.25 / 0.0025)
    assert required(0.1, 0.0) == 0
    assert precision([1.0, 1.0], 4, 4, 2)["pass_rate_ci"]["high"] == 1.0


def test_the_terminal_and_the_pages_show_the_repetitions() -> None:
    r = report()
    buf = io.StringIO()
    render_report(r, Console(file=buf, width=120, color_system=None))
    text = buf.getvalue()
    assert "3 repetitions per sample, 9 executions" in text
    assert "1 unstable sample(s) (their repetitions disagree on pass/fail): b" in text
    # c failed once in three: counted as an execution, of one sample
    assert "3/3 samples scored in 1.0s — 1 execution failed (1 sample)" in text
    assert "1 execution of 1 sample failed: exception 1" in text
    md = render_markdown(r)
    assert "## Repetitions" in md and "| b | 2 | 3 | 66.7% | 20.8% – 93.9% |" in md
    assert "— 1 execution failed (1 sample)" in md
    assert "<h2>Repetitions</h2>" in render_html(r)
    rows = list(csv.DictReader(io.StringIO(render_csv(r))))
    assert len(rows) == 3 * 3 * 2  # sample × repetition × metric
    assert [(x["sample_id"], x["repetition"], x["score"]) for x in rows if x["metric"] == "exact-match"][3:6] == [
        ("b", "0", "1.0"),
        ("b", "1", "0.0"),
        ("b", "2", "1.0"),
    ]
    junit = render_junit(r)
    assert "unstable: passed 2 of 3 repetitions" in junit


def test_a_plain_run_keeps_its_csv_columns() -> None:
    from evalharness.core.report import build_report

    plain = build_report(
        run_id="r",
        dataset=DS,
        sut="m:f",
        mode="serial",
        options={},
        started_at=1.0,
        finished_at=2.0,
        outcomes=[SampleOutcome(i, s, "yes", None, 1) for i, s in enumerate(DS.samples)],
        scorers=resolve_metrics(["exact-match"]),
    )
    assert "repetition" not in render_csv(plain).splitlines()[0]
    assert "repetitions" not in plain
