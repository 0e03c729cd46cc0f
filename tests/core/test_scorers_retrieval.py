"""The retrieval metrics (METRICS.md §3) against trec_eval (pytrec_eval) and scikit-learn's
``ndcg_score`` on generated rankings with duplicates, short lists, gain-0 judgements and Unicode ids."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest
import pytrec_eval
from sklearn.metrics import ndcg_score

from evalharness.core.datasets import Sample
from evalharness.core.scorers import ScoreError, Scorer, resolve_metrics

NAMES = {
    "hit": "retrieval-hit-at-k",
    "recall": "retrieval-recall-at-k",
    "precision": "retrieval-precision-at-k",
    "ndcg": "retrieval-ndcg-at-k",
    "mrr": "retrieval-mrr",
}


def sample(expected: Any, **metadata: Any) -> Sample:
    return Sample(id="q1", input="query", expected_output=expected, metadata=metadata, line=1)


def scorer(spec: str) -> Scorer:
    return resolve_metrics([spec])[0]


def score(spec: str, retrieved: Any, expected: Any, **metadata: Any) -> float:
    output = retrieved if isinstance(retrieved, str) else json.dumps(retrieved)
    return scorer(spec).score(output, expected, sample(expected, **metadata))


def error(spec: str, output: Any, expected: Any, **metadata: Any) -> ScoreError:
    with pytest.raises(ScoreError) as info:
        scorer(spec).score(output, expected, sample(expected, **metadata))
    return info.value


def test_the_documented_example() -> None:
    ranking, relevant = ["7", "3", "1", "9", "2"], ["3", "9"]
    assert score("retrieval-hit-at-k", ranking, relevant) == 1.0
    assert score("retrieval-recall-at-k", ranking, relevant) == 1.0
    assert score("retrieval-precision-at-k", ranking, relevant) == 0.4
    assert score("retrieval-mrr", ranking, relevant) == 0.5
    want = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert score("retrieval-ndcg-at-k", ranking, relevant) == pytest.approx(want, abs=1e-15)
    assert round(want, 2) == 0.65


@pytest.mark.parametrize(
    "output",
    [
        ["a", "b"],
        [{"id": "a", "text": "x"}, {"id": "b"}],
        {"retrieved": ["a", {"id": "b", "text": "y"}]},
        '  ["a", "b"]\n',
    ],
)
def test_output_shapes(output: Any) -> None:
    text = output if isinstance(output, str) else json.dumps(output)
    assert score("retrieval-recall-at-k", text, ["b", "c"]) == 0.5


def test_duplicates_are_removed_before_the_cut_off() -> None:
    # Without removal the top 2 would be [x, x] and the relevant r would fall outside.
    assert score("retrieval-hit-at-k:k=2", ["x", "x", "r"], ["r"]) == 1.0
    assert score("retrieval-precision-at-k:k=2", ["r", "r", "r"], ["r"]) == 0.5
    assert score("retrieval-mrr", ["x", "x", "x", "r"], ["r"]) == 0.5
    assert score("retrieval-hit-at-k:k=2", [{"id": "x"}, "x", {"id": "r"}], ["r"]) == 1.0


def test_ids_are_exact_strings() -> None:
    assert score("retrieval-hit-at-k", ["03", "A", "e\u0301"], ["3", "a", "\u00e9"]) == 0.0
    assert score("retrieval-hit-at-k", ["東京"], ["東京"]) == 1.0


def test_precision_divides_by_k_even_for_short_lists() -> None:
    assert score("retrieval-precision-at-k:k=10", ["a"], ["a"]) == 0.1
    assert score("retrieval-recall-at-k:k=10", ["a"], ["a", "b"]) == 0.5


def test_metadata_k_wins_over_the_argument() -> None:
    ranking = ["x", "y", "r"]
    assert score("retrieval-hit-at-k:k=2", ranking, ["r"]) == 0.0
    assert score("retrieval-hit-at-k:k=2", ranking, ["r"], k=3) == 1.0
    assert score("retrieval-hit-at-k", ranking, ["r"], k=1) == 0.0
    # MRR ignores k, even an invalid one.
    assert score("retrieval-mrr", ranking, ["r"], k=1) == pytest.approx(1 / 3)


@pytest.mark.parametrize("k", ["5", 0, -1, 2.0, True, [5]])
def test_metadata_k_must_be_a_positive_integer(k: Any) -> None:
    err = error("retrieval-ndcg-at-k", '["a"]', ["a"], k=k)
    assert err.kind == "invalid-k"
    assert "metadata.k" in err.message


def test_gain_zero_is_judged_non_relevant() -> None:
    gains = {"z": 0, "r": 2}
    assert score("retrieval-hit-at-k:k=1", ["z", "r"], gains) == 0.0
    assert score("retrieval-recall-at-k:k=1", ["z", "r"], gains) == 0.0
    assert score("retrieval-mrr", ["z", "r"], gains) == 0.5
    assert score("retrieval-ndcg-at-k:k=1", ["z", "r"], gains) == 0.0


def test_ndcg_uses_linear_gains_and_ideal_over_all_relevant() -> None:
    gains = {"a": 3, "b": 1, "c": 2}
    got = score("retrieval-ndcg-at-k:k=2", ["b", "x", "a"], gains)
    assert got == pytest.approx((1 / 1) / (3 + 2 / math.log2(3)), abs=1e-15)


def test_expected_as_a_json_string() -> None:
    assert score("retrieval-hit-at-k", ["a"], '["a", "b"]') == 1.0


def test_empty_retrieved_list_scores_zero_everywhere() -> None:
    for name in NAMES.values():
        assert score(name, [], ["a"]) == 0.0
        assert score(name, {"retrieved": []}, ["a"]) == 0.0


@pytest.mark.parametrize("expected", [[], {}, {"a": 0, "b": 0.0}, "[]"])
def test_no_relevant_id_is_an_error(expected: Any) -> None:
    for name in NAMES.values():
        assert error(name, '["a"]', expected).kind == "no-relevant-id"


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        ("not json", "not valid JSON"),
        ('{"docs": ["a"]}', "'retrieved' list"),
        ('"a"', "got string"),
        ('["a", 3]', "rank 2"),
        ('["a", ""]', "empty id"),
        ('[{"id": 7}]', "rank 1"),
        ('[{"text": "no id"}]', "rank 1"),
        ('[{"id": "a", "text": 5}]', "'text'"),
    ],
)
def test_bad_output_is_an_invalid_output_error(output: str, needle: str) -> None:
    err = error("retrieval-recall-at-k", output, ["a"])
    assert err.kind == "invalid-output"
    assert needle in err.message


@pytest.mark.parametrize("expected", [[3, 9], ["a", ""], {"a": -1}, {"a": "1"}, {"a": True}, 42, None, "a", '{"a": 1}'])
def test_bad_expected_is_an_invalid_expected_error(expected: Any) -> None:
    assert error("retrieval-ndcg-at-k", '["a"]', expected).kind == "invalid-expected"


# --- against the references --------------------------------------------------------------------

# Ids that trip naive implementations: case, leading zeros, NFC vs NFD, CJK, spaces, emoji.
ID_POOL = ["3", "03", "A", "a", "\u00e9", "e\u0301", "東京", "doc 1", "doc-1", "👍", "x", "y", "z", "q"]


def _dedup(ranking: list[str]) -> list[str]:
    return list(dict.fromkeys(ranking))


def _generated(rng: random.Random) -> tuple[list[str], dict[str, int]]:
    ranking = [rng.choice(ID_POOL) for _ in range(rng.randint(1, 12))]
    judged = rng.sample(ID_POOL, rng.randint(1, 8))
    gains = {doc: rng.choice([0, 1, 1, 2, 3]) for doc in judged}
    if not any(gains.values()):
        gains[judged[0]] = 1
    return ranking, gains


def test_retrieval_metrics_agree_with_trec_eval() -> None:
    rng = random.Random(16)
    ks = (1, 2, 3, 5, 10)
    measures = {f"P.{','.join(map(str, ks))}", f"recall.{','.join(map(str, ks))}"}
    measures |= {f"ndcg_cut.{','.join(map(str, ks))}", f"success.{','.join(map(str, ks))}", "recip_rank"}
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    cases: dict[str, tuple[list[str], dict[str, int]]] = {}
    for i in range(400):
        ranking, gains = _generated(rng)
        qid = f"q{i}"
        cases[qid] = (ranking, gains)
        qrels[qid] = gains
        unique = _dedup(ranking)
        # trec_eval ranks by score, so give rank r the score n - r.
        run[qid] = {doc: float(len(unique) - r) for r, doc in enumerate(unique)}
    results = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    assert len(results) == len(cases)
    scorers = {(m, k): scorer(f"{NAMES[m]}:k={k}") for m in ("hit", "recall", "precision", "ndcg") for k in ks}
    mrr = scorer("retrieval-mrr")
    for qid, (ranking, gains) in cases.items():
        out, s = json.dumps(ranking), sample(gains)
        ref = results[qid]
        for k in ks:
            assert scorers["hit", k].score(out, gains, s) == pytest.approx(ref[f"success_{k}"], abs=1e-9)
            assert scorers["recall", k].score(out, gains, s) == pytest.approx(ref[f"recall_{k}"], abs=1e-9)
            assert scorers["precision", k].score(out, gains, s) == pytest.approx(ref[f"P_{k}"], abs=1e-9)
            assert scorers["ndcg", k].score(out, gains, s) == pytest.approx(ref[f"ndcg_cut_{k}"], abs=1e-9)
        assert mrr.score(out, gains, s) == pytest.approx(ref["recip_rank"], abs=1e-9)


def _sklearn_ndcg(ranking: list[str], gains: dict[str, float], k: int) -> float:
    unique = _dedup(ranking)
    top = unique[:k]
    # Pad the list up to k with non-relevant filler, then the unretrieved relevant documents ranked
    # last, so they count in the ideal ordering but never in the DCG of the top k.
    filler = [f"\0filler{i}" for i in range(k - len(top))]
    missing = [doc for doc in gains if doc not in unique]
    docs = [*unique, *filler, *missing]
    y_true = np.array([[gains.get(doc, 0.0) for doc in docs]])
    y_score = np.array([[float(len(docs) - i) for i in range(len(docs))]])
    if len(docs) == 1:  # sklearn needs at least two documents per query
        y_true = np.append(y_true, [[0.0]], axis=1)
        y_score = np.append(y_score, [[0.0]], axis=1)
    return float(ndcg_score(y_true, y_score, k=k))


def test_ndcg_agrees_with_scikit_learn_on_fractional_gains() -> None:
    rng = random.Random(1616)
    for _ in range(300):
        ranking = [rng.choice(ID_POOL) for _ in range(rng.randint(1, 12))]
        judged = rng.sample(ID_POOL, rng.randint(1, 8))
        gains: dict[str, float] = {doc: rng.choice([0.0, 0.25, 0.5, 1.0, 1.75, 3.5]) for doc in judged}
        if not any(gains.values()):
            gains[judged[0]] = 0.1
        k = rng.choice([1, 2, 3, 5, 8, 20])
        got = score(f"retrieval-ndcg-at-k:k={k}", ranking, gains)
        assert got == pytest.approx(_sklearn_ndcg(ranking, gains, k), abs=1e-9)
