"""The decisions behind cost, budget, cache keys and baselines, as tables of cases: prices by the
longest model prefix, reported vs derived vs unpriced, the budget's halting point, per-sample and
per-metric comparison (with repetitions and Wilson intervals), and the gates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from evalharness.cli.progress import Counts, progress_line
from evalharness.core.baselines import (
    _rate_delta,
    baseline_document,
    check_gates,
    compare,
    gate_failures,
    resolution,
    row_hash,
    row_summary,
    summarise_report,
)
from evalharness.core.cache import cache_digest, cache_settings, check_run_table
from evalharness.core.cost import Budget, Price, check_price_tables, cost_summary, price_for, sample_cost
from evalharness.core.datasets import Dataset, Sample
from evalharness.core.errors import ConfigError
from evalharness.core.report import wilson_interval

PRICES = {"gpt-4o": Price(2.5, 10.0), "gpt-4o-mini": Price(0.15, 0.6), "claude": Price(3.0, 15.0)}


@pytest.mark.parametrize(
    ("model", "want"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest declared prefix wins
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/GPT-4o-mini", "gpt-4o-mini"),  # lowercase, the part after the last '/'
        ("  claude-3-5-sonnet ", "claude"),
        ("llama-3", None),
        (None, None),
    ],
)
def test_prices_by_the_longest_model_prefix(model: str | None, want: str | None) -> None:
    assert price_for(model, PRICES) == (None if want is None else PRICES[want])


def test_a_reported_cost_wins_then_tokens_are_priced_else_the_usage_is_unpriced() -> None:
    tokens = {"prompt_tokens": 1_000_000, "completion_tokens": 100_000, "model": "gpt-4o-mini"}
    assert sample_cost(tokens, PRICES) == {
        "usd": pytest.approx(0.15 + 0.06),
        "source": "derived",
        "model": "gpt-4o-mini",
    }
    assert sample_cost({**tokens, "cost": 0.5}, PRICES)["source"] == "reported"
    assert sample_cost({**tokens, "model": "mystery"}, PRICES) == {
        "usd": None,
        "source": "unpriced",
        "model": "mystery",
    }
    # the SUT's model (openai:MODEL) prices usage that names none
    assert sample_cost({"prompt_tokens": 10, "completion_tokens": 0}, PRICES, "gpt-4o")["source"] == "derived"
    assert sample_cost(None, PRICES) is None


def test_the_summary_splits_reported_derived_and_unpriced() -> None:
    usages: list[dict[str, Any] | None] = [
        {"prompt_tokens": 1000, "completion_tokens": 0, "model": "gpt-4o"},
        {"cost": 0.25, "prompt_tokens": 1, "completion_tokens": 1},
        {"prompt_tokens": 5, "completion_tokens": 5, "model": "mystery"},
        None,
    ]
    summary = cost_summary([sample_cost(u, PRICES) for u in usages], usages)
    assert summary["derived_usd"] == pytest.approx(0.0025) and summary["reported_usd"] == 0.25
    assert summary["total_usd"] == pytest.approx(0.2525)
    assert summary["samples"] == {"reported": 1, "derived": 1, "unpriced": 1}
    assert summary["complete"] is False and summary["unpriced_models"] == ["mystery"]
    assert [m["model"] for m in summary["models"]][0] == "(unnamed model)"  # the costliest first


def test_the_budget_is_exhausted_when_the_spend_reaches_the_limit_and_unpriced_never_counts() -> None:
    spent: list[float] = []
    budget = Budget(0.003, {"m": Price(1.0, 0.0)}, on_change=spent.append)
    one = {"result": {"usage": {"prompt_tokens": 1000, "completion_tokens": 0, "model": "m"}}}
    budget.observe({"result": {"usage": {"prompt_tokens": 10**9, "model": "free-model"}}})
    budget.observe({"error": {"kind": "exception"}})
    assert not budget.exhausted and spent == []
    budget.observe(one)
    budget.observe(one)
    assert not budget.exhausted
    budget.observe(one)
    assert budget.exhausted and spent == pytest.approx([0.001, 0.002, 0.003])
    assert budget.reason(3) == "spent $0.0030 of a $0.0030 budget after 3 sample(s)"


def test_price_tables_and_the_run_table_name_the_key_that_is_wrong() -> None:
    assert check_price_tables({"GPT-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10}}, "f.toml") == {
        "gpt-4o": Price(2.5, 10.0)
    }
    for raw, words in (
        ({"x": {"input_per_mtok": 1}}, "f.toml: table [prices.\"x\"]: key 'output_per_mtok' is missing"),
        ({"x": {"input_per_mtok": -1, "output_per_mtok": 1}}, "key 'input_per_mtok' must be a number >= 0"),
        ({"x": {"input_per_mtok": 1, "output_per_mtok": 1, "cached": 2}}, "unknown key 'cached'"),
        ({"x": 3}, "must be a table"),
    ):
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
            check_price_tables(raw, "f.toml")
    assert check_run_table({"cache": True, "cache_ttl": 60}, "f.toml") == {"cache": True, "cache_ttl": 60}
    with pytest.raises(ConfigError, match="key 'cache_ttl' must be a whole number"):
        check_run_table({"cache_ttl": 0}, "f.toml")
    # flags win over the table; the default is off, for 7 days
    assert cache_settings({}, None, None).enabled is False and cache_settings({}, None, None).ttl == 604800
    assert cache_settings({"cache": True}, False, None).enabled is False
    assert cache_settings({"cache": False, "cache_ttl": 5}, True, 9).ttl == 9


def test_the_cache_key_covers_the_sut_its_fingerprint_and_the_input_in_any_key_order() -> None:
    a = cache_digest("m:f", "sha256:1", {"q": "x", "k": [1, 2]})
    assert a == cache_digest("m:f", "sha256:1", {"k": [1, 2], "q": "x"})
    assert a != cache_digest("m:f", "sha256:2", {"q": "x", "k": [1, 2]})
    assert a != cache_digest("m:g", "sha256:1", {"q": "x", "k": [1, 2]})
    assert a != cache_digest("m:f", "sha256:1", {"q": "x", "k": [2, 1]})
    # repetitions of one sample do not share an output
    assert (
        cache_digest("m:f", "sha256:1", "q", "rep:1")
        != cache_digest("m:f", "sha256:1", "q", "rep:2")
        != cache_digest("m:f", "sha256:1", "q")
    )


def test_the_progress_line_shows_the_spend_and_the_budget() -> None:
    assert "· $0.0420 spent ·" in progress_line("qa", Counts(total=5, done=2, spent_usd=0.042), 1.0)
    assert "· $0.0000 of $1.0000 ·" in progress_line("qa", Counts(total=5, budget_usd=1.0), 1.0)
    assert "$" not in progress_line("qa", Counts(total=5), 1.0)


# -- baselines ------------------------------------------------------------------------------


def _report(
    scores: dict[str, float | None], errors: frozenset[str] = frozenset(), reps: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    rows = []
    for i, (sid, score) in enumerate(scores.items()):
        row: dict[str, Any] = {
            "id": sid,
            "index": i,
            "scores": {"m": score},
            "error": {"kind": "exception"} if sid in errors else None,
        }
        if reps and sid in reps:
            row["repetitions"] = [{"output": "x", "scores": {"m": v}} for v in reps[sid]]
            row["scores"] = {"m": sum(reps[sid]) / len(reps[sid])}
        rows.append(row)
    values = [s for s in scores.values() if s is not None]
    mean = sum(values) / len(values) if values else None
    return {
        "run_id": "r",
        "metrics": {"m": {"mean": mean, "pass_rate": None, "count": len(values)}},
        "samples": rows,
        "dataset": {"name": "d"},
        "macro_f1": None,
        "failures": {"total": len(errors)},
    }


def test_a_flip_from_pass_to_fail_is_a_regression_confident_only_beyond_epsilon() -> None:
    before = baseline_document("main", _report({"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.6}), now=0)
    after = summarise_report(_report({"a": 0.0, "b": 1.0, "c": 1.0, "d": 0.5}, errors=frozenset()))
    cmp = compare(after, before)
    status = {r["sample_id"]: (r["status"], r["confident"]) for r in cmp["rows"]}
    # one execution per sample: the resolution is 1.0, nothing is confident
    assert cmp["resolution"] == 1.0 and status == {
        "a": ("regressed", False),
        "b": ("stable", False),
        "c": ("improved", False),
        "d": ("stable", False),
    }
    cmp = compare(after, before, epsilon=0.05)
    status = {r["sample_id"]: (r["status"], r["confident"]) for r in cmp["rows"]}
    # d still passes, but its score fell by 0.1 > epsilon: a confident regression
    assert status == {
        "a": ("regressed", True),
        "b": ("stable", False),
        "c": ("improved", True),
        "d": ("regressed", True),
    }
    assert (
        cmp["counts"]["regressed"] == 2
        and cmp["counts"]["regressed_confident"] == 2
        and cmp["counts"]["newly_failing"] == 1
    )
    assert cmp["metrics"]["m"]["pass_to_fail"] == 1 and cmp["metrics"]["m"]["fail_to_pass"] == 1
    assert cmp["joined_by"] == "id" and cmp["warnings"]


def test_rows_join_by_content_hash_so_a_renamed_sample_still_compares() -> None:
    ds_before = Dataset(Path("d.jsonl"), "d", (Sample("old-id", "q?", "a", {}, 1), Sample("gone", "z?", "z", {}, 2)))
    ds_after = Dataset(Path("d.jsonl"), "d", (Sample("new-id", "q?", "a", {}, 1), Sample("fresh", "y?", "y", {}, 2)))
    before = baseline_document("main", _report({"old-id": 1.0, "gone": 1.0}), ds_before)
    after = summarise_report(_report({"new-id": 0.0, "fresh": 1.0}), ds_after)
    cmp = compare(after, before)
    assert cmp["joined_by"] == "row_hash" and not cmp["warnings"]
    assert {(r["sample_id"], r["status"]) for r in cmp["rows"]} == {
        ("new-id", "regressed"),
        ("fresh", "added"),
        ("gone", "removed"),
    }
    assert row_hash(Sample("x", {"b": 1, "a": 2}, "e", {}, 1)) == row_hash(
        Sample("y", {"a": 2, "b": 1}, "e", {"t": 1}, 9)
    )


def test_rows_with_the_same_content_are_each_compared_by_their_id() -> None:
    # one question asked twice (two ids, same input and expected output): neither hides the other
    samples = (Sample("a1", "q?", "a", {}, 1), Sample("a2", "q?", "a", {}, 2), Sample("b", "z?", "z", {}, 3))
    ds = Dataset(Path("d.jsonl"), "d", samples)
    before = baseline_document("main", _report({"a1": 1.0, "a2": 1.0, "b": 1.0}), ds)
    after = summarise_report(_report({"a1": 0.0, "a2": 0.0, "b": 1.0}), ds)
    cmp = compare(after, before)
    assert cmp["joined_by"] == "row_hash" and cmp["counts"]["compared"] == 3
    assert cmp["counts"]["regressed"] == 2 and cmp["counts"]["added"] == cmp["counts"]["removed"] == 0
    assert {(r["sample_id"], r["baseline_id"]) for r in cmp["rows"]} == {("a1", "a1"), ("a2", "a2"), ("b", "b")}
    assert cmp["warnings"] == [
        "2 row(s) of this run share their input and expected output with another row: "
        "those are joined by content and sample id"
    ]
    # a sample renamed within such a pair reads as removed and added; one with unique content still joins
    renamed = Dataset(
        Path("d.jsonl"), "d", (samples[0], Sample("a3", "q?", "a", {}, 2), Sample("b2", "z?", "z", {}, 3))
    )
    cmp = compare(summarise_report(_report({"a1": 1.0, "a3": 1.0, "b2": 1.0}), renamed), before)
    assert (cmp["counts"]["compared"], cmp["counts"]["added"], cmp["counts"]["removed"]) == (2, 1, 1)


def test_repetitions_give_pass_rates_a_resolution_and_wilson_intervals() -> None:
    reps_before = {"a": [1.0] * 10, "b": [1.0] * 5 + [0.0] * 5}
    reps_after = {"a": [1.0] * 3 + [0.0] * 7, "b": [1.0] * 5 + [0.0] * 5}
    before = baseline_document("main", _report({"a": 1.0, "b": 0.5}, reps=reps_before))
    after = summarise_report(_report({"a": 0.3, "b": 0.5}, reps=reps_after))
    assert row_summary(_report({"a": 1.0}, reps={"a": [1.0, 0.0, 1.0]})["samples"][0], ["m"])[
        "pass_rate"
    ] == pytest.approx(2 / 3)
    cmp = compare(after, before)
    # within-row variance (0.21 + 0.25) / 2 over 10 executions
    assert cmp["resolution"] == pytest.approx(resolution(0.23, 10)) and cmp["resolution"] == pytest.approx(
        1.959963984540054 * math.sqrt(0.046)
    )
    a = next(r for r in cmp["rows"] if r["sample_id"] == "a")
    assert a["status"] == "regressed" and a["confident"] and a["pass_rate_delta"] == pytest.approx(-0.7)
    rate = cmp["metrics"]["m"]["pass_rate"]
    assert (rate["before_ci"]["low"], rate["before_ci"]["high"]) == wilson_interval(15, 20)
    assert (rate["after_ci"]["low"], rate["after_ci"]["high"]) == wilson_interval(8, 20)
    assert rate["delta"] == pytest.approx(-0.35)
    assert rate["low"] < rate["delta"] < rate["high"] < 0
    # the rule of three when every row agreed with itself, and no resolution below two executions
    assert resolution(0.0, 60) == pytest.approx(0.05) and resolution(0.2, 1) == 1.0


def test_newcombe_interval_of_equal_rates_straddles_zero() -> None:
    d = _rate_delta(5, 10, 5, 10)
    assert d["delta"] == 0 and d["low"] < 0 < d["high"] and d["low"] == pytest.approx(-d["high"])


def test_the_gates() -> None:
    gates = check_gates(
        compare="main",
        max_regressions=1,
        confident_only=False,
        epsilon=None,
        comparison_out=None,
        fail_under=("m=0.8",),
        metrics=["m"],
    )
    report = {"metrics": {"m": {"mean": 0.75}}}
    comparison = {"counts": {"regressed": 2, "regressed_confident": 1}, "resolution": 0.1, "baseline": {"name": "main"}}
    problems = gate_failures(report, comparison, gates)
    assert problems[0] == "m mean 0.7500 is below the minimum 0.8000 (--fail-under)"
    assert problems[1].startswith(
        "2 regressed sample(s) against baseline 'main' (allowed: 1); 1 of 2 exceed the resolution of 10.0 points"
    )
    confident = check_gates(
        compare="main",
        max_regressions=1,
        confident_only=True,
        epsilon=None,
        comparison_out=None,
        fail_under=(),
        metrics=["m"],
    )
    assert gate_failures(report, comparison, confident) == []
    for kwargs, words in (
        ({"compare": None, "confident_only": True}, "--confident-only needs --compare"),
        ({"compare": None, "comparison_out": "x.json"}, "--comparison-out needs --compare"),
        ({"compare": "main", "epsilon": -0.1}, "--compare-epsilon must be between 0 and 1"),
        ({"compare": "main", "fail_under": ("m=",)}, "is not a number"),
        ({"compare": "main", "fail_under": ("m=inf",)}, "between 0 and 1"),
        ({"compare": "main", "fail_under": ("m=nan",)}, "between 0 and 1"),
        ({"compare": "main", "fail_under": ("m=-0.1",)}, "between 0 and 1"),
        ({"compare": "main", "fail_under": ("m=80",)}, r"mean is \(for 80%, write 0\.8\)$"),
        ({"compare": "main", "fail_under": ("m=1.5",)}, r"between 0 and 1, as every metric's mean is$"),  # no hint
    ):
        args: dict[str, Any] = {
            "compare": None,
            "max_regressions": None,
            "confident_only": False,
            "epsilon": None,
            "comparison_out": None,
            "fail_under": (),
            "metrics": ["m"],
        }
        args.update(kwargs)
        with pytest.raises(ConfigError, match=words):
            check_gates(**args)


def test_fail_under_names_a_metric_with_arguments_in_full_or_by_its_bare_name() -> None:
    from evalharness.core.baselines import parse_fail_under

    metrics = ["rouge-l:max_tokens=100", "retrieval-ndcg-at-k:k=5", "retrieval-ndcg-at-k:k=10"]
    assert parse_fail_under(["rouge-l:max_tokens=100=0.5", "rouge-l=0.25"], metrics) == (
        ("rouge-l:max_tokens=100", 0.5),
        ("rouge-l:max_tokens=100", 0.25),
    )
    assert parse_fail_under(["retrieval-ndcg-at-k:k=10=0.6"], metrics) == (("retrieval-ndcg-at-k:k=10", 0.6),)
    with pytest.raises(ConfigError, match=r"2 metrics named 'retrieval-ndcg-at-k' \(retrieval-ndcg-at-k:k=5, "):
        parse_fail_under(["retrieval-ndcg-at-k=0.6"], metrics)
    with pytest.raises(ConfigError, match="the run has no metric 'bleu'"):
        parse_fail_under(["bleu=0.3"], metrics)


class _Judge:
    """A judge metric whose provider call reports usage, as the provider client does."""

    name = "judge"
    metric = "llm-as-judge"
    arguments: dict[str, Any] = {}

    def score(self, output: str, expected: Any, sample: Sample) -> Any:
        from evalharness.core.providers.usage import Usage, record_usage

        record_usage(Usage(prompt_tokens=2000, completion_tokens=0, calls=1, model="gpt-4o"))
        return True if sample.id == "bad" else 1.0


def test_judge_calls_are_priced_apart_from_the_sut_and_a_wrapped_scorer_still_checks_its_values() -> None:
    from evalharness.core.cost import MeteredScorer, add_cost
    from evalharness.core.providers.usage import Usage
    from evalharness.core.report import SampleOutcome, build_report

    samples = (Sample("a", "q", "x", {}, 1), Sample("bad", "q2", "x", {}, 2))
    data = Dataset(Path("d.jsonl"), "d", samples)
    sink: dict[str, Usage] = {}
    outcomes = [
        SampleOutcome(i, s, "x", None, 1, {"prompt_tokens": 1000, "completion_tokens": 0, "calls": 1})
        for i, s in enumerate(samples)
    ]
    report = build_report(
        run_id="r",
        dataset=data,
        sut="openai:gpt-4o-mini",
        mode="serial",
        options={},
        started_at=0,
        finished_at=1,
        outcomes=outcomes,
        scorers=[MeteredScorer(_Judge(), sink)],
    )  # type: ignore[list-item]
    assert report["metrics"]["judge"]["metric"] == "llm-as-judge"
    assert report["samples"][1]["metric_errors"]["judge"]["kind"] == "invalid-score"  # True is not a score
    cost = add_cost(report, PRICES, "openai:gpt-4o-mini", sink)
    assert cost is not None
    assert cost["sut_usd"] == pytest.approx(2 * 0.00015) and cost["judges"]["derived_usd"] == pytest.approx(2 * 0.005)
    assert cost["total_usd"] == pytest.approx(2 * 0.00015 + 2 * 0.005)
    assert report["samples"][0]["judge_cost"] == {"usd": 0.005, "source": "derived", "model": "gpt-4o"}


def test_amounts_too_small_for_four_decimals_keep_two_significant_digits() -> None:
    from evalharness.core.cost import usd

    assert [usd(v) for v in (0.0, 8.1e-06, 0.0135, 12.5)] == ["$0.0000", "$0.0000081", "$0.0135", "$12.5000"]
