"""Metrics that call a model provider: ``cosine-embedding`` and ``bertscore-like`` (embeddings),
``llm-as-judge`` and ``refusal-quality`` (a judge model).

Their arithmetic is here and deterministic given the vectors; the vectors and verdicts come from a
provider client in the :class:`MetricContext`. Selecting one when no provider of its kind is
configured is a bad-input error before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..datasets import Sample
from ..errors import MetricError
from .base import Argument, MetricContext, MetricDefinition, ScoreError, Scorer, require_text

__all__ = [
    "DEFAULT_BERTSCORE_MAX_TOKENS",
    "DEFINITIONS",
    "Embeddings",
    "bertscore_like",
    "clamped_cosine",
]

DEFAULT_BERTSCORE_MAX_TOKENS = 128


class Embeddings(Protocol):
    """An embeddings client: one vector per text, in order."""

    def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]: ...


def clamped_cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity clamped to [0, 1]: negative similarity scores 0; a zero vector scores 0."""
    if len(a) != len(b):
        raise ScoreError(
            "invalid-embedding",
            f"cannot compare vectors of different dimensionality ({len(a)} vs {len(b)})",
        )
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    if norm == 0:
        return 0.0
    return min(1.0, max(0.0, dot / norm))


def _vectors(client: Embeddings, texts: Sequence[str]) -> list[Sequence[float]]:
    vectors = list(client.embed(texts))
    if len(vectors) != len(texts):
        raise ScoreError(
            "invalid-embedding", f"the embeddings provider returned {len(vectors)} vector(s); expected {len(texts)}"
        )
    for vector in vectors:
        if any(isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) for x in vector):
            raise ScoreError("invalid-embedding", "the embeddings provider returned a non-finite component")
    return vectors


def bertscore_like(
    output_tokens: Sequence[str], expected_tokens: Sequence[str], vectors: Mapping[str, Sequence[float]]
) -> tuple[float, float, float]:
    """Greedy token matching: (F, P, R) with P over the output's tokens and R over the expected ones."""
    if not output_tokens and not expected_tokens:
        return 1.0, 1.0, 1.0
    if not output_tokens or not expected_tokens:
        return 0.0, 0.0, 0.0
    sims = {(a, e): clamped_cosine(vectors[a], vectors[e]) for a in set(output_tokens) for e in set(expected_tokens)}
    precision = math.fsum(max(sims[a, e] for e in expected_tokens) for a in output_tokens) / len(output_tokens)
    recall = math.fsum(max(sims[a, e] for a in output_tokens) for e in expected_tokens) / len(expected_tokens)
    total = precision + recall
    f = 0.0 if total == 0 else 2 * precision * recall / total
    return min(1.0, max(0.0, f)), precision, recall


@dataclass(frozen=True, slots=True)
class CosineEmbedding:
    name: str
    client: Embeddings

    def texts(self, output: Any, expected: Any) -> list[str]:
        """What :meth:`score` will embed (fetched ahead of scoring by the run)."""
        return [expected, output] if isinstance(output, str) and isinstance(expected, str) else []

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        out, exp = require_text(self.name, output, expected)
        e, a = _vectors(self.client, [exp, out])
        return clamped_cosine(e, a)


@dataclass(frozen=True, slots=True)
class BertScoreLike:
    name: str
    client: Embeddings
    max_tokens: int = DEFAULT_BERTSCORE_MAX_TOKENS

    def texts(self, output: Any, expected: Any) -> list[str]:
        from ..scorers import rouge_tokens

        if not isinstance(output, str) or not isinstance(expected, str):
            return []
        out, exp = rouge_tokens(output), rouge_tokens(expected)
        if len(out) > self.max_tokens or len(exp) > self.max_tokens or not out or not exp:
            return []
        return list(dict.fromkeys([*exp, *out]))

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        from ..scorers import rouge_tokens  # the same tokens as rouge-l (METRICS.md §1)

        out, exp = require_text(self.name, output, expected)
        out_tokens, exp_tokens = rouge_tokens(out), rouge_tokens(exp)
        for side, tokens in (("output", out_tokens), ("expected_output", exp_tokens)):
            if len(tokens) > self.max_tokens:
                raise ScoreError(
                    "too-many-tokens",
                    f"{side} has {len(tokens)} tokens; {self.name} supports at most {self.max_tokens} per field",
                )
        if not out_tokens or not exp_tokens:
            return bertscore_like(out_tokens, exp_tokens, {})[0]
        unique = list(dict.fromkeys([*exp_tokens, *out_tokens]))
        vectors = dict(zip(unique, _vectors(self.client, unique), strict=True))
        return bertscore_like(out_tokens, exp_tokens, vectors)[0]


_WHAT = {"embeddings": "an embeddings provider", "chat": "a judge model provider (chat completions)"}


def missing_provider(name: str, kind: str) -> MetricError:
    return MetricError(
        f"metric {name!r} needs {_WHAT.get(kind, kind)} and none is configured; configure a provider "
        f"of kind {kind!r} (docs/metrics.md, 'Metrics that need a provider') or choose another metric"
    )


def _client(name: str, kind: str, context: MetricContext) -> Any:
    client = context.providers.get(kind)
    if client is None:
        raise missing_provider(name, kind)
    return client


def _embeddings(name: str, args: Mapping[str, Any], context: MetricContext) -> Any:
    client = _client(name, "embeddings", context)
    # The configured providers give a client per metric (its provider and model); a bare client
    # (a plug-in's or a test's) is used as it is.
    per_metric = getattr(client, "embeddings_for", None)
    return per_metric(name, args) if per_metric is not None else client


def _cosine(args: Mapping[str, Any], context: MetricContext) -> Scorer:
    return CosineEmbedding("cosine-embedding", _embeddings("cosine-embedding", args, context))


def _bertscore(args: Mapping[str, Any], context: MetricContext) -> Scorer:
    client = _embeddings("bertscore-like", args, context)
    return BertScoreLike("bertscore-like", client, int(args["max_tokens"]))


def _judge(name: str) -> Any:
    def factory(args: Mapping[str, Any], context: MetricContext) -> Scorer:
        client = _client(name, "chat", context)
        judge = getattr(client, "judge_scorer", None)
        if judge is None:
            raise MetricError(f"metric {name!r}: the configured chat provider cannot act as a judge")
        scorer: Scorer = judge(name, dict(args))
        return scorer

    return factory


_PROVIDER_ARGS = (
    Argument(
        "provider", "str", "", "the [providers.NAME] table to call; empty: openai (OPENAI_BASE_URL, OPENAI_API_KEY)"
    ),
    Argument("model", "str", "", "the model to ask; empty: the provider table's model"),
)
_JUDGE_ARGS = (
    *_PROVIDER_ARGS,
    Argument("queue", "str", "judge", "the queue the judge calls go to as jobs (workers must serve it)"),
)

DEFINITIONS: tuple[MetricDefinition, ...] = (
    MetricDefinition(
        name="cosine-embedding",
        kind="embedding",
        summary="cosine similarity of the output's and the expected text's embeddings, clamped to [0, 1]",
        factory=_cosine,
        arguments=_PROVIDER_ARGS,
        provider="embeddings",
    ),
    MetricDefinition(
        name="bertscore-like",
        kind="embedding",
        summary="greedy token matching on token embeddings (F1); not contextual BERTScore",
        factory=_bertscore,
        arguments=(
            Argument(
                "max_tokens", "int", DEFAULT_BERTSCORE_MAX_TOKENS, "most tokens per side; more is an error", minimum=1
            ),
            *_PROVIDER_ARGS,
        ),
        provider="embeddings",
    ),
    MetricDefinition(
        name="llm-as-judge",
        kind="judge",
        summary="a judge model's score in [0, 1] for the output against the expected text",
        factory=_judge("llm-as-judge"),
        arguments=(
            Argument(
                "prompt_template",
                "str",
                "",
                "judge prompt with {question}, {expected}, {actual} (and {rubric}); empty: the built-in prompt",
            ),
            Argument("rubric", "str", "", "what a good answer is, added to the built-in prompt as 'Rubric: ...'"),
            *_JUDGE_ARGS,
        ),
        provider="chat",
    ),
    MetricDefinition(
        name="refusal-quality",
        kind="judge",
        summary="a judge model's verdict on whether the output refused when metadata.refusal_expected says so",
        factory=_judge("refusal-quality"),
        arguments=_JUDGE_ARGS,
        provider="chat",
    ),
)
