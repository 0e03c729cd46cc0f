"""The text metrics and the report's statistics against their reference libraries (METRICS.md §1, §4):
rouge-score with our tokeniser, scikit-learn's accuracy, numpy's percentiles and standard deviation,
and statsmodels' Wilson interval, on generated data with Unicode, empty strings and ties."""

from __future__ import annotations

import random

import numpy as np
import pytest
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score
from statsmodels.stats.proportion import proportion_confint

from evalharness.core.datasets import Sample
from evalharness.core.report import WILSON_Z95, aggregate, macro_f1, wilson_interval
from evalharness.core.scorers import get_scorer, rouge_tokens

WORDS = ["a", "b", "Ab", "É", "é", "e\u0301", "東京", "ß", "SS", "ΟΔΟΣ", "x²", "٣", "_", "!!", "👍", "İ", "\u212a"]
SEPARATORS = [" ", ", ", "\u00a0", "\u200b", "-", "\n", "", "_"]


class _Tokenizer:
    """The METRICS.md tokeniser in the shape rouge-score expects."""

    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text)


def _text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 12)):
        parts.append(rng.choice(WORDS))
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts)


def _sample(expected: str) -> Sample:
    return Sample(id="s", input="q", expected_output=expected, metadata={}, line=1)


def test_rouge_l_agrees_with_rouge_score_using_the_metrics_md_tokeniser() -> None:
    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=_Tokenizer())
    rouge = get_scorer("rouge-l")
    rng = random.Random(2024)
    compared = 0
    for _ in range(1500):
        output, expected = _text(rng), _text(rng)
        got = rouge.score(output, expected, _sample(expected))
        out_tokens, exp_tokens = rouge_tokens(output), rouge_tokens(expected)
        if not out_tokens and not exp_tokens:
            # METRICS.md §5: both sides without tokens score 1.0 where rouge-score says 0.0.
            assert got == 1.0
            assert reference.score(target=expected, prediction=output)["rougeL"].fmeasure == 0.0
            continue
        want = reference.score(target=expected, prediction=output)["rougeL"].fmeasure
        assert got == pytest.approx(want, abs=1e-9)
        compared += 1
    assert compared > 1000


def test_exact_match_mean_is_sklearn_accuracy() -> None:
    rng = random.Random(5)
    pool = ["", " ", "Paris", "paris", "\u00e9", "e\u0301", "東京"]
    expected = [rng.choice(pool) for _ in range(500)]
    outputs = [rng.choice(pool) for _ in range(500)]
    em = get_scorer("exact-match")
    scores = [em.score(o, e, _sample(e)) for o, e in zip(outputs, expected, strict=True)]
    assert aggregate(scores)["mean"] == pytest.approx(accuracy_score(expected, outputs), abs=1e-12)


def test_aggregates_agree_with_numpy() -> None:
    rng = random.Random(11)
    for _ in range(300):
        n = rng.randint(1, 40)
        scores = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(n)]
        stats = aggregate(scores)
        values = np.array(scores)
        assert stats["mean"] == pytest.approx(float(np.mean(values)), abs=1e-12)
        assert stats["p50"] == pytest.approx(float(np.percentile(values, 50, method="linear")), abs=1e-12)
        assert stats["p95"] == pytest.approx(float(np.percentile(values, 95, method="linear")), abs=1e-12)
        assert stats["stddev"] == pytest.approx(float(np.std(values, ddof=0)), abs=1e-12)
        assert stats["pass_rate"] == pytest.approx(float(np.mean(values >= 0.5)), abs=1e-12)


def test_wilson_z_is_the_exact_normal_quantile() -> None:
    assert WILSON_Z95 == pytest.approx(1.959963984540054, abs=1e-15)


def test_wilson_interval_agrees_with_statsmodels() -> None:
    for n in [*range(1, 60), 99, 100, 101, 1000, 12345]:
        for s in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            low, high = wilson_interval(s, n)
            ref_low, ref_high = proportion_confint(s, n, alpha=0.05, method="wilson")
            assert low == pytest.approx(ref_low, abs=1e-9)
            assert high == pytest.approx(ref_high, abs=1e-9)
            assert 0.0 <= low <= s / n <= high <= 1.0


def test_wilson_ends_are_exact_and_no_trials_means_no_knowledge() -> None:
    for n in (1, 7, 1000):
        assert wilson_interval(0, n)[0] == 0.0
        assert wilson_interval(n, n)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # 2 of 3, worked by hand
    low, high = wilson_interval(2, 3)
    assert (round(low, 4), round(high, 4)) == (0.2077, 0.9385)


def test_macro_f1_is_the_mean_of_the_pass_rates_with_scores() -> None:
    metrics = {"a": {"pass_rate": 1.0}, "b": {"pass_rate": 0.25}, "c": {"pass_rate": None}}
    assert macro_f1(metrics) == 0.625
    assert macro_f1({"c": {"pass_rate": None}}) is None
