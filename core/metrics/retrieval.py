"""Retrieval metrics (METRICS.md §3): hit, recall, precision and nDCG at k, and MRR, over the ranked
ids a SUT returns as JSON; plus answer-containment-at-k over the same list's texts."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..datasets import Sample
from .base import Argument, MetricContext, MetricDefinition, ScoreError, Scorer, json_type

__all__ = [
    "DEFAULT_K",
    "DEFINITIONS",
    "Relevance",
    "Retrieved",
    "parse_relevance",
    "parse_retrieved",
    "retrieval_scores",
    "sample_k",
]

DEFAULT_K = 5


@dataclass(frozen=True, slots=True)
class Retrieved:
    """The SUT's ranking, rank 1 first, duplicates removed keeping the first occurrence.

    ``texts[i]`` is the ``"text"`` of entry ``ids[i]`` when the SUT gave one (from its first occurrence).
    """

    ids: tuple[str, ...]
    texts: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Relevance:
    """Judged ids and their gains; ``relevant`` are those with gain > 0."""

    gains: Mapping[str, float]
    relevant: frozenset[str]


def parse_retrieved(metric: str, output: Any) -> Retrieved:
    """Read a list of ids, ``{"id", "text"}`` objects, or ``{"retrieved": [...]}`` from JSON text."""
    if not isinstance(output, str):
        raise ScoreError("invalid-output", f"output must be JSON text for {metric}; got {json_type(output)}")
    try:
        value = json.loads(output)
    except json.JSONDecodeError as exc:
        raise ScoreError(
            "invalid-output", f"output is not valid JSON for {metric}: {exc.msg} (column {exc.colno})"
        ) from None
    except RecursionError:
        raise ScoreError("invalid-output", f"output JSON is nested too deeply for {metric}") from None
    if isinstance(value, dict) and isinstance(value.get("retrieved"), list):
        entries = value["retrieved"]
    elif isinstance(value, list):
        entries = value
    else:
        raise ScoreError(
            "invalid-output",
            f"output must be a JSON list of ids or an object with a 'retrieved' list for {metric}; "
            f"got {json_type(value)}",
        )
    ids: list[str] = []
    texts: list[str | None] = []
    seen: set[str] = set()
    for rank, entry in enumerate(entries, start=1):
        text: str | None = None
        if isinstance(entry, str):
            doc = entry
        elif isinstance(entry, dict) and isinstance(entry.get("id"), str):
            doc = entry["id"]
            raw_text = entry.get("text")
            if raw_text is not None and not isinstance(raw_text, str):
                raise ScoreError(
                    "invalid-output", f"retrieved entry at rank {rank} has a 'text' that is {json_type(raw_text)}"
                )
            text = raw_text
        else:
            raise ScoreError(
                "invalid-output",
                f"retrieved entry at rank {rank} must be a non-empty id string or an object with a "
                f"non-empty string 'id'; got {json_type(entry)}",
            )
        if doc == "":
            raise ScoreError("invalid-output", f"retrieved entry at rank {rank} has an empty id")
        # Duplicates go before the cut-off: a SUT must not gain by repeating a relevant id.
        if doc in seen:
            continue
        seen.add(doc)
        ids.append(doc)
        texts.append(text)
    return Retrieved(tuple(ids), tuple(texts))


def _id_list(metric: str, items: list[Any]) -> dict[str, float]:
    gains: dict[str, float] = {}
    for item in items:
        if not isinstance(item, str) or item == "":
            shown = "an empty string" if item == "" else json_type(item)
            raise ScoreError(
                "invalid-expected", f"expected_output ids must be non-empty strings for {metric}; got {shown}"
            )
        gains[item] = 1.0
    return gains


def parse_relevance(metric: str, expected: Any) -> Relevance:
    """A list of ids (gain 1 each), a JSON string holding one, or an object id -> gain >= 0."""
    if isinstance(expected, str):
        try:
            decoded = json.loads(expected)
        except (json.JSONDecodeError, RecursionError):
            decoded = None
        if not isinstance(decoded, list):
            raise ScoreError(
                "invalid-expected",
                f"expected_output must be a list of relevant ids (or a JSON string holding one) for {metric}",
            )
        expected = decoded
    if isinstance(expected, list):
        gains = _id_list(metric, expected)
    elif isinstance(expected, dict):
        gains = {}
        for doc, gain in expected.items():
            if doc == "":
                raise ScoreError("invalid-expected", f"expected_output has an empty id for {metric}")
            if isinstance(gain, bool) or not isinstance(gain, int | float) or not math.isfinite(gain) or gain < 0:
                raise ScoreError(
                    "invalid-expected",
                    f"expected_output gain of id {doc!r} must be a non-negative number for {metric}; got {gain!r}",
                )
            gains[doc] = float(gain)
    else:
        raise ScoreError(
            "invalid-expected",
            f"expected_output must be a list of ids or an object id -> gain for {metric}; got {json_type(expected)}",
        )
    relevant = frozenset(doc for doc, gain in gains.items() if gain > 0)
    if not relevant:
        raise ScoreError(
            "no-relevant-id",
            f"expected_output lists no relevant id (gain > 0) for {metric}; every query needs at least one",
        )
    return Relevance(gains, relevant)


def sample_k(metric: str, sample: Sample, default: int) -> int:
    """``metadata.k`` when given (a positive integer), else the metric's configured k."""
    k = sample.metadata.get("k")
    if k is None:
        return default
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        # A "5" from a CSV export silently falling back to the default would skew a whole run.
        raise ScoreError("invalid-k", f"metadata.k must be a positive integer for {metric}; got {k!r}")
    return k


def _dcg(gains: list[float]) -> float:
    return math.fsum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1))


def retrieval_scores(retrieved: tuple[str, ...], relevance: Relevance, k: int) -> dict[str, float]:
    """Every retrieval metric of one query, by its short name (hit, recall, precision, ndcg, mrr)."""
    rel = relevance.relevant
    top = retrieved[:k]
    found = sum(1 for doc in top if doc in rel)
    first = next((rank for rank, doc in enumerate(retrieved, start=1) if doc in rel), None)
    ideal = sorted((g for g in relevance.gains.values() if g > 0), reverse=True)[:k]
    dcg = _dcg([relevance.gains.get(doc, 0.0) for doc in top])
    idcg = _dcg(ideal)
    return {
        "hit": 1.0 if found else 0.0,
        "recall": found / len(rel),
        "precision": found / k,
        "ndcg": dcg / idcg if idcg > 0 else 0.0,
        "mrr": 0.0 if first is None else 1.0 / first,
    }


@dataclass(frozen=True, slots=True)
class RetrievalMetric:
    """One retrieval metric; ``measure`` picks the formula and ``k`` is the default cut-off."""

    name: str
    measure: str
    k: int = DEFAULT_K

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        relevance = parse_relevance(self.name, expected)
        k = self.k if self.measure == "mrr" else sample_k(self.name, sample, self.k)
        retrieved = parse_retrieved(self.name, output)
        return retrieval_scores(retrieved.ids, relevance, k)[self.measure]


_SPACES = re.compile(r"\s+")


def _normalise(text: str, case_sensitive: bool) -> str:
    text = _SPACES.sub(" ", text).strip()
    return text if case_sensitive else text.lower()


@dataclass(frozen=True, slots=True)
class AnswerContainmentAtK:
    """1.0 when the expected answer span occurs in the text of one of the first k retrieved entries."""

    name: str = "answer-containment-at-k"
    k: int = DEFAULT_K
    case_sensitive: bool = False

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        if not isinstance(expected, str) or not expected.strip():
            raise ScoreError(
                "invalid-expected",
                f"expected_output must be a non-empty string (the answer span) for {self.name}; "
                f"got {'a blank string' if isinstance(expected, str) else json_type(expected)}",
            )
        span = _normalise(expected, self.case_sensitive)
        k = sample_k(self.name, sample, self.k)
        retrieved = parse_retrieved(self.name, output)
        for text in retrieved.texts[:k]:
            if text is None:
                continue
            normal = _normalise(text, self.case_sensitive)
            if normal and span in normal:
                return 1.0
        return 0.0


_K = Argument("k", "int", DEFAULT_K, "cut-off rank, used when a sample has no metadata.k", minimum=1)


def _retrieval(name: str, measure: str, summary: str, with_k: bool = True) -> MetricDefinition:
    def factory(args: Mapping[str, Any], context: MetricContext) -> Scorer:
        return RetrievalMetric(name=name, measure=measure, k=int(args.get("k", DEFAULT_K)))

    return MetricDefinition(
        name=name, kind="retrieval", summary=summary, factory=factory, arguments=(_K,) if with_k else ()
    )


def _containment(args: Mapping[str, Any], context: MetricContext) -> Scorer:
    return AnswerContainmentAtK(k=int(args["k"]), case_sensitive=bool(args["case_sensitive"]))


DEFINITIONS: tuple[MetricDefinition, ...] = (
    _retrieval("retrieval-hit-at-k", "hit", "1 when a relevant id is among the first k retrieved"),
    _retrieval("retrieval-recall-at-k", "recall", "relevant ids in the first k, over all relevant ids"),
    _retrieval("retrieval-precision-at-k", "precision", "relevant ids in the first k, over k"),
    _retrieval("retrieval-ndcg-at-k", "ndcg", "nDCG at k with linear gains"),
    _retrieval("retrieval-mrr", "mrr", "1/rank of the first relevant id in the whole list", with_k=False),
    MetricDefinition(
        name="answer-containment-at-k",
        kind="retrieval",
        summary="1 when the answer span occurs in the text of one of the first k retrieved entries",
        factory=_containment,
        arguments=(
            _K,
            Argument("case_sensitive", "bool", False, "compare without lower-casing both sides"),
        ),
    ),
)
