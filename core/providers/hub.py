"""The providers a run's metrics call, from the configuration file and the environment: the
``MetricContext`` that ``cosine-embedding``, ``bertscore-like``, ``llm-as-judge`` and
``refusal-quality`` are built with.

A metric names its provider (``provider=``, default ``openai``) and model (``model=``, else the
provider table's ``model``).  Embeddings are fetched by the producer itself, many texts per
request, before the report is scored (:func:`prefetch_embeddings`): a run's embeddings are a few
batched requests, so a job per request would add a queue round trip and a worker holding the key
for nothing a retry here does not already give."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import MetricError
from ..metrics.base import MetricContext, ScoreError
from .calls import GaveUp, with_retries
from .settings import DEFAULT_PROVIDER, ENV_API_KEY, ENV_BASE_URL, ProviderSettings, resolve_provider

EMBED_BATCH = 64  # texts per embeddings request
EMBED_CONCURRENCY = 4  # embeddings requests in flight at once


def providers_configured(tables: Mapping[str, Any], env: Mapping[str, str] | None = None) -> bool:
    """Whether the user configured any provider: a ``[providers.NAME]`` table, or the conventional
    ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` variables.  Without one a provider-backed metric is
    refused before the run starts, rather than calling api.openai.com without a key."""
    env = os.environ if env is None else env
    return bool(tables) or bool(env.get(ENV_BASE_URL)) or bool(env.get(ENV_API_KEY))


@dataclass
class PrefetchEmbeddings:
    """An embeddings client for the synchronous scorers: :meth:`fetch` gets vectors ahead (in
    batches, with the job retry semantics) and :meth:`embed` answers from them."""

    settings: ProviderSettings
    model: str
    vectors: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, ScoreError] = field(default_factory=dict)

    async def fetch(self, texts: Sequence[str]) -> None:
        wanted = [t for t in dict.fromkeys(texts) if t not in self.vectors and t not in self.failures]
        from .client import OpenAIClient  # the HTTP client loads only when a provider is called

        client = OpenAIClient(self.settings)
        gate = asyncio.Semaphore(EMBED_CONCURRENCY)

        async def one(chunk: list[str]) -> None:
            async with gate:
                try:
                    reply = await with_retries(lambda: client.embed(chunk, model=self.model))
                except GaveUp as exc:
                    error = ScoreError("embedding-failed", f"the embeddings call failed ({exc.kind}): {exc}")
                    self.failures.update(dict.fromkeys(chunk, error))
                    return
            self.vectors.update(zip(chunk, reply.vectors, strict=True))

        await asyncio.gather(*(one(wanted[i : i + EMBED_BATCH]) for i in range(0, len(wanted), EMBED_BATCH)))

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in texts if t not in self.vectors and t not in self.failures]
        if missing:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(self.fetch(missing))
            else:
                raise ScoreError("not-embedded", "the embeddings were not fetched before scoring")
        for t in texts:
            if t in self.failures:
                raise self.failures[t]
        return [self.vectors[t] for t in texts]


@dataclass
class ProviderHub:
    """What ``MetricContext.providers["chat"]`` and ``["embeddings"]`` hold for a configured run."""

    tables: Mapping[str, Mapping[str, Any]]
    env: Mapping[str, str] | None = None

    def settings(self, metric: str, args: Mapping[str, Any]) -> tuple[ProviderSettings, str]:
        name = str(args.get("provider") or DEFAULT_PROVIDER)
        try:
            settings = resolve_provider(name, self.tables, self.env)
        except Exception as exc:
            raise MetricError(f"metric {metric!r} argument 'provider': {exc}") from None
        model = str(args.get("model") or settings.model or "")
        if not model:
            raise MetricError(
                f"metric {metric!r} needs a model: give it as {metric}:model=NAME, "
                f'in [metrics.{metric}] model = "NAME", '
                f"or as model in [providers.{name}] (docs/providers.md)"
            )
        return settings, model

    def embeddings_for(self, metric: str, args: Mapping[str, Any]) -> PrefetchEmbeddings:
        settings, model = self.settings(metric, args)
        return PrefetchEmbeddings(settings, model)

    def judge_scorer(self, metric: str, args: Mapping[str, Any]) -> Any:
        from ..judges import DEFAULT_JUDGE_QUEUE, JudgeScorer

        settings, model = self.settings(metric, args)
        queue = str(args.get("queue") or DEFAULT_JUDGE_QUEUE)
        from ..config import validate_name

        try:
            validate_name("queue", queue)
        except Exception as exc:
            raise MetricError(f"metric {metric!r} argument 'queue': {exc}") from None
        template = str(args.get("prompt_template") or "")
        return JudgeScorer(
            metric,
            "refusal" if metric == "refusal-quality" else "llm",
            settings,
            model,
            queue,
            template,
            str(args.get("rubric") or ""),
        )


def metric_context(tables: Mapping[str, Mapping[str, Any]], env: Mapping[str, str] | None = None) -> MetricContext:
    """The context a run's metrics are resolved with: the hub for both kinds when a provider is
    configured, else none (and provider-backed metrics are refused with exit code 2)."""
    if not providers_configured(tables, env):
        return MetricContext()
    hub = ProviderHub(tables, env)
    return MetricContext(providers={"chat": hub, "embeddings": hub})


async def prefetch_embeddings(scorers: Sequence[Any], pairs: Sequence[tuple[Any, Any]]) -> None:
    """Fetch every vector the embedding metrics among ``scorers`` will ask for when scoring the
    ``(sample, output)`` pairs; a failed request becomes that sample's metric error."""
    wanted: dict[int, tuple[PrefetchEmbeddings, list[str]]] = {}
    for s in scorers:
        inner = getattr(s, "scorer", s)
        client = getattr(inner, "client", None)
        texts_of = getattr(inner, "texts", None)
        if not isinstance(client, PrefetchEmbeddings) or texts_of is None:
            continue
        entry = wanted.setdefault(id(client), (client, []))
        for sample, output in pairs:
            entry[1].extend(texts_of(output, sample.expected_output))
    await asyncio.gather(*(client.fetch(texts) for client, texts in wanted.values()))
