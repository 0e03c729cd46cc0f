"""citation-groundedness, ordinal-distance, answer-containment-at-k, the trajectory metrics, and the
arithmetic of the embedding metrics with a fake embeddings client (docs/metrics.md)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from evalharness.core.datasets import Sample
from evalharness.core.errors import MetricError
from evalharness.core.metrics import MetricContext
from evalharness.core.metrics.offline import subset_match
from evalharness.core.metrics.provider import clamped_cosine
from evalharness.core.scorers import ScoreError, Scorer, resolve_metrics, rouge_tokens


def sample(expected: Any = "", **metadata: Any) -> Sample:
    return Sample(id="s1", input="q", expected_output=expected, metadata=metadata, line=1)


def scorer(spec: str, context: MetricContext | None = None) -> Scorer:
    return resolve_metrics([spec], context=context)[0]


def score(spec: str, output: str, expected: Any = "", **metadata: Any) -> float:
    return scorer(spec).score(output, expected, sample(expected, **metadata))


def error(spec: str, output: Any, expected: Any = "", **metadata: Any) -> ScoreError:
    with pytest.raises(ScoreError) as info:
        scorer(spec).score(output, expected, sample(expected, **metadata))
    return info.value


# --- citation-groundedness ---------------------------------------------------------------------


def test_citation_markers_are_case_sensitive_substrings() -> None:
    out = "Paris is the capital [doc-1]. It is large [DOC-3]."
    assert score("citation-groundedness", out, citations=["[doc-1]", "[doc-2]"]) == 0.5
    assert score("citation-groundedness", out, citations="[doc-1]") == 1.0
    assert score("citation-groundedness", out, citations=["[doc-3]"]) == 0.0
    # trimmed and de-duplicated, blank entries dropped
    assert score("citation-groundedness", out, citations=[" [doc-1] ", "[doc-1]", "", "[x]"]) == 0.5


def test_citations_are_required() -> None:
    assert error("citation-groundedness", "x").kind == "no-citations"
    assert error("citation-groundedness", "x", citations=["  "]).kind == "no-citations"
    assert error("citation-groundedness", "x", citations=[3]).kind == "invalid-metadata"


def test_citation_evidence_needs_the_marker_and_a_normalised_quote() -> None:
    out = "The  Eiffel\nTower is 330 m tall [d1]. Built in 1889 [d2]."
    evidence = [
        {"citation": "[d1]", "quote": "eiffel tower IS 330 M"},
        {"citation": "[d2]", "quotes": ["opened in 1889", "built in 1889"]},
        {"citation": "[d3]", "quote": "built in 1889"},  # quote present, marker absent
        {"citation": "[d2]", "quote": "demolished"},  # marker present, quote absent
    ]
    assert score("citation-groundedness", out, citation_evidence=evidence, citations=["[d1]"]) == 0.5


@pytest.mark.parametrize(
    "evidence",
    [
        [],
        "x",
        [{"quote": "q"}],
        [{"citation": "[a]"}],
        [{"citation": "[a]", "quotes": []}],
        [{"citation": "[a]", "quote": " "}],
    ],
)
def test_bad_citation_evidence_is_an_error(evidence: Any) -> None:
    assert error("citation-groundedness", "[a] q", citation_evidence=evidence).kind == "invalid-metadata"


# --- ordinal-distance --------------------------------------------------------------------------


def test_ordinal_distance_on_a_scale_argument() -> None:
    spec = "ordinal-distance:scale=low|medium|high|critical"
    assert score(spec, "high", "high") == 1.0
    assert score(spec, "medium", "high") == 0.5
    assert score(spec, "critical", "high") == 0.5
    assert score(spec, "low", "high") == 0.0
    assert score(spec, "High", "high") == 0.0  # exact lookup
    assert score(spec, "unknown", "high") == 0.0


def test_metadata_scale_overrides_the_argument() -> None:
    assert score("ordinal-distance:scale=a|b|c", "y", "x", ordinal_scale=["x", "y"]) == 0.5
    assert score("ordinal-distance", "no", "yes", ordinal_scale=["no", "maybe", "yes"]) == 0.0


def test_ordinal_errors() -> None:
    assert error("ordinal-distance", "a", "a").kind == "no-scale"
    assert error("ordinal-distance:scale=a|b", "a", "c").kind == "invalid-expected"
    assert error("ordinal-distance:scale=a|b", "a", 1).kind == "invalid-expected"
    assert error("ordinal-distance", "a", "a", ordinal_scale=["a", "a"]).kind == "invalid-scale"
    assert error("ordinal-distance", "a", "a", ordinal_scale="a").kind == "invalid-scale"


# --- answer-containment-at-k -------------------------------------------------------------------


def test_answer_containment_normalises_whitespace_and_case() -> None:
    docs = [{"id": "1", "text": "Rome is old"}, {"id": "2", "text": "The capital\n of  FRANCE is Paris."}]
    out = json.dumps(docs)
    assert score("answer-containment-at-k", out, "capital of france") == 1.0
    assert score("answer-containment-at-k:case_sensitive=true", out, "capital of france") == 0.0
    assert score("answer-containment-at-k:k=1", out, "capital of france") == 0.0
    assert score("answer-containment-at-k", out, "capital of france", k=1) == 0.0
    assert score("answer-containment-at-k", out, "  Paris ") == 1.0


def test_answer_containment_ignores_entries_without_text_and_duplicates() -> None:
    out = json.dumps(
        ["a", {"id": "a", "text": "the answer"}, {"id": "b", "text": "   "}, {"id": "c", "text": "answer"}]
    )
    # 'a' keeps its first occurrence (no text); 'b' is blank; 'c' holds the span at rank 3
    assert score("answer-containment-at-k:k=2", out, "answer") == 0.0
    assert score("answer-containment-at-k:k=3", out, "answer") == 1.0


def test_answer_containment_needs_a_span() -> None:
    assert error("answer-containment-at-k", '["a"]', "  ").kind == "invalid-expected"
    assert error("answer-containment-at-k", '["a"]', ["x"]).kind == "invalid-expected"
    assert error("answer-containment-at-k", "nope", "x").kind == "invalid-output"


# --- trajectories ------------------------------------------------------------------------------

TRAJECTORY = {
    "tool_calls": [
        {"name": "search", "arguments": {"query": "paris", "limit": 7, "filters": {"lang": "fr", "year": 2024}}},
        "fetch",
        {"tool": "search", "args": {"query": "rome"}},
        {"name": "answer", "arguments": {"ids": ["a", "b", "c"]}},
    ],
    "steps": 6,
    "pending_approvals": 0,
    "approvals": ["send-email"],
}


def run_trajectory(spec: str, trajectory: Any = None, wrapped: bool = True, **expect: Any) -> float:
    body = TRAJECTORY if trajectory is None else trajectory
    output = json.dumps({"answer": "x", "trajectory": body} if wrapped else body)
    return score(spec, output, "", trajectory=expect)


def test_tool_called_and_not_called() -> None:
    assert run_trajectory("tool-called", tools=["search", "fetch"]) == 1.0
    assert run_trajectory("tool-called", tools=["search", "delete", "email", "fetch"]) == 0.5
    assert run_trajectory("tool-called", tools="delete") == 0.0
    assert run_trajectory("tool-called") == 1.0  # nothing declared
    assert run_trajectory("tool-called:tools=fetch|delete") == 0.5  # the argument is the default
    assert run_trajectory("tool-called:tools=delete", tools=["fetch"]) == 1.0
    assert run_trajectory("tool-not-called", forbidden_tools=["delete", "search"]) == 0.5
    assert run_trajectory("tool-not-called", wrapped=False, forbidden_tools=["delete"]) == 1.0


def test_tool_call_order_is_a_subsequence() -> None:
    assert run_trajectory("tool-call-order", order=["search", "answer"]) == 1.0
    assert run_trajectory("tool-call-order", order=["search", "fetch", "search", "answer"]) == 1.0
    assert run_trajectory("tool-call-order", order=["fetch", "fetch"]) == 0.0
    assert run_trajectory("tool-call-order", order=["answer", "search"]) == 0.0


def test_tool_called_with_matches_argument_subsets() -> None:
    expect = [
        {"tool": "search", "arguments": {"query": "paris", "limit": "7", "filters": {"lang": "fr"}}},
        {"name": "search", "args": {"query": "rome"}},
        {"tool": "answer", "arguments": {"ids": ["a", "b"]}},
        {"tool": "search", "arguments": {"query": "berlin"}},
    ]
    assert run_trajectory("tool-called-with", tool_arguments=expect) == 0.75
    assert run_trajectory("tool-called-with", tool_arguments=[{"tool": "fetch"}]) == 1.0


@pytest.mark.parametrize(
    ("expected", "actual", "match"),
    [
        (7, "7", True),
        ("7.0", 7, True),
        (True, 1, False),
        (None, None, True),
        ({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}, 4], "d": 0}, True),
        ({"a": [1, 2]}, {"a": [1]}, False),
        ({"a": 1}, [1], False),
        ("x", "X", False),
    ],
)
def test_subset_match(expected: Any, actual: Any, match: bool) -> None:
    assert subset_match(expected, actual) is match


def test_steps_and_approvals() -> None:
    assert run_trajectory("steps-below", max_steps=6) == 1.0
    assert run_trajectory("steps-below", max_steps="5") == 0.0
    assert run_trajectory("steps-below") == 1.0  # no budget
    assert run_trajectory("steps-below:max_steps=3") == 0.0
    assert run_trajectory("steps-below", {"tool_calls": ["a", "b"]}, max_steps=2) == 1.0  # steps = calls
    assert run_trajectory("no-pending-approvals") == 1.0
    assert run_trajectory("no-pending-approvals", {**TRAJECTORY, "pending_approvals": 2}) == 0.0
    assert run_trajectory("approval-gated", requires_approval=["send-email", "pay"]) == 0.5


def test_a_missing_trajectory_is_an_error() -> None:
    for output in ("plain text", "[1, 2]", '{"answer": "x"}'):
        err = error("tool-called", output)
        assert err.kind == "no-trajectory"
        assert "'trajectory' object" in err.message
    assert error("tool-called", '{"tool_calls": [{"args": {}}]}').kind == "invalid-trajectory"
    assert error("tool-called", '{"tool_calls": [], "steps": "3"}').kind == "invalid-trajectory"


# --- embeddings --------------------------------------------------------------------------------


class FakeEmbeddings:
    """Deterministic vectors per text; records every call so tests can check batching."""

    def __init__(self, dim: int = 6, seed: int = 0) -> None:
        self.dim = dim
        self.seed = seed
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> list[float]:
        rng = random.Random(f"{self.seed}:{text}")
        return [rng.uniform(-1, 1) for _ in range(self.dim)]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.vector(t) for t in texts]


def test_embedding_metrics_need_an_embeddings_provider() -> None:
    for name in ("cosine-embedding", "bertscore-like"):
        with pytest.raises(MetricError) as info:
            resolve_metrics([name])
        assert f"metric {name!r} needs an embeddings provider and none is configured" in str(info.value)
        assert info.value.exit_code == 2


def test_judge_metrics_need_a_chat_provider() -> None:
    for name in ("llm-as-judge", "refusal-quality", "llm-as-judge:prompt_template=Rate: {actual}"):
        with pytest.raises(MetricError) as info:
            resolve_metrics([name])
        assert "needs a judge model provider" in str(info.value)
        assert name.split(":")[0] in str(info.value)


def test_cosine_embedding_is_clamped_cosine() -> None:
    fake = FakeEmbeddings()
    metric = scorer("cosine-embedding", MetricContext(providers={"embeddings": fake}))
    for output, expected in [("a", "b"), ("Paris", "Paris"), ("東京", "Tokyo"), ("", "x")]:
        got = metric.score(output, expected, sample(expected))
        e, a = np.array(fake.vector(expected)), np.array(fake.vector(output))
        want = float(np.dot(e, a) / (np.linalg.norm(e) * np.linalg.norm(a)))
        assert got == pytest.approx(min(1.0, max(0.0, want)), abs=1e-12)
        assert fake.calls[-1] == [expected, output]  # one call, expected first
    assert clamped_cosine([0.0, 0.0], [1.0, 2.0]) == 0.0
    assert clamped_cosine([1.0, 0.0], [-1.0, 0.0]) == 0.0
    with pytest.raises(ScoreError) as info:
        clamped_cosine([1.0], [1.0, 2.0])
    assert info.value.kind == "invalid-embedding"


def _bertscore_reference(output: str, expected: str, fake: FakeEmbeddings) -> float:
    out, exp = rouge_tokens(output), rouge_tokens(expected)
    if not out and not exp:
        return 1.0
    if not out or not exp:
        return 0.0
    a = np.array([fake.vector(t) for t in out])
    e = np.array([fake.vector(t) for t in exp])
    sims = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (e / np.linalg.norm(e, axis=1, keepdims=True)).T
    sims = np.clip(sims, 0.0, 1.0)
    p, r = sims.max(axis=1).mean(), sims.max(axis=0).mean()
    return 0.0 if p + r == 0 else float(2 * p * r / (p + r))


def test_bertscore_like_agrees_with_a_matrix_computation() -> None:
    fake = FakeEmbeddings(dim=4, seed=3)
    metric = scorer("bertscore-like", MetricContext(providers={"embeddings": fake}))
    rng = random.Random(9)
    words = ["the", "cat", "sat", "Mat", "mat", "東京", "é", "e\u0301"]
    for _ in range(200):
        output = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        expected = ", ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        got = metric.score(output, expected, sample(expected))
        assert got == pytest.approx(_bertscore_reference(output, expected, fake), abs=1e-9)


def test_bertscore_like_embeds_each_unique_token_once_in_one_call() -> None:
    fake = FakeEmbeddings()
    metric = scorer("bertscore-like", MetricContext(providers={"embeddings": fake}))
    metric.score("b a b", "a c a", sample("a c a"))
    assert fake.calls == [["a", "c", "b"]]
    assert metric.score("!!!", "", sample("")) == 1.0 and len(fake.calls) == 1  # no call needed


def test_bertscore_like_token_cap_and_bad_vectors() -> None:
    fake = FakeEmbeddings()
    capped = scorer("bertscore-like:max_tokens=2", MetricContext(providers={"embeddings": fake}))
    with pytest.raises(ScoreError) as info:
        capped.score("a b c", "a", sample("a"))
    assert info.value.kind == "too-many-tokens"

    class Short:
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            return [[1.0]]

    class NotFinite:
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            return [[math.nan] for _ in texts]

    for client in (Short(), NotFinite()):
        metric = scorer("cosine-embedding", MetricContext(providers={"embeddings": client}))
        with pytest.raises(ScoreError) as info:
            metric.score("a", "b", sample("b"))
        assert info.value.kind == "invalid-embedding"
