"""SUT adapters: evaluate a deployed model or service without writing Python.

* ``openai:MODEL`` — each sample is one chat completion of ``MODEL`` on the provider that
  ``[sut.openai] provider`` names (default ``openai``: ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``).
  A text input is the user message, after the ``system_prompt`` when one is set; a dict input
  with ``messages`` is sent as those messages.  The reply's message content is the output.
* ``http:URL`` (or just an ``http://`` / ``https://`` URL) — each sample is ``POST URL`` with the
  JSON body ``{"input": <the sample's input>}``.  A JSON reply gives the output as its ``output``
  field (or is the output, when it is a JSON string); any other reply's text body is the output.

Both send the job's idempotency key as the ``Idempotency-Key`` header.  Their fingerprint is
``declared:`` with the adapter spec and a hash of the settings that shape the output (model,
URL, system prompt, parameters — never the key), so a worker configured differently from the
producer is caught as ``sut_mismatch``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import adaptive as adaptive_limits
from ..errors import ConfigError, SutError
from ..jobs import PermanentError
from .client import OpenAIClient, ProviderError, excerpt, json_body, post_json
from .settings import DEFAULT_PROVIDER, DEFAULT_TIMEOUT, ProviderSettings, resolve_provider
from .usage import parse_usage, record_usage

OPENAI_PREFIX = "openai:"
HTTP_PREFIX = "http:"


def is_adapter(spec: str) -> bool:
    """Whether ``spec`` names an adapter rather than a ``module:callable``."""
    return spec.startswith((OPENAI_PREFIX, "http://", "https://")) or (
        spec.startswith(HTTP_PREFIX) and not spec.startswith("http:/")
    )


def _fingerprint(spec: str, settings: Mapping[str, Any]) -> str:
    canon = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return f"declared:{spec}@{hashlib.sha256(canon.encode()).hexdigest()[:16]}"


@dataclass(frozen=True, eq=False)  # hashed by identity: the SUT loader caches by callable
class OpenAISut:
    """``openai:MODEL`` as a SUT callable."""

    model: str
    provider: ProviderSettings
    system_prompt: str | None
    params: dict[str, Any]

    def messages(self, sample_input: Any) -> list[dict[str, Any]]:
        if isinstance(sample_input, str):
            messages: list[dict[str, Any]] = []
            if self.system_prompt:
                messages.append({"role": "system", "content": self.system_prompt})
            return [*messages, {"role": "user", "content": sample_input}]
        if isinstance(sample_input, Mapping) and isinstance(sample_input.get("messages"), list):
            given = sample_input["messages"]
            if not all(isinstance(m, Mapping) and "role" in m for m in given):
                raise PermanentError(
                    "the sample's input.messages must be a list of {role, content} objects", kind="invalid_input"
                )
            has_system = any(m.get("role") == "system" for m in given)
            lead = [{"role": "system", "content": self.system_prompt}] if self.system_prompt and not has_system else []
            return [*lead, *(dict(m) for m in given)]
        raise PermanentError(
            f"openai:{self.model} takes a text input or an object with 'messages', got {type(sample_input).__name__}",
            kind="invalid_input",
        )

    async def __call__(self, sample_input: Any, idempotency_key: str | None = None) -> str:
        client = OpenAIClient(self.provider)
        reply = await client.chat(
            self.messages(sample_input), model=self.model, params=self.params, idempotency_key=idempotency_key
        )
        return reply.content

    def __repr__(self) -> str:
        return f"OpenAISut(model={self.model!r}, provider={self.provider.name!r}, base_url={self.provider.base_url!r})"


@dataclass(frozen=True, eq=False)
class HttpSut:
    """``http:URL`` as a SUT callable."""

    url: str
    timeout: float
    api_key_env: str | None
    adaptive: adaptive_limits.AdaptiveParams | None = None  # [sut.http] adaptive

    async def __call__(self, sample_input: Any, idempotency_key: str | None = None) -> str:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        what = f"SUT http:{self.url}"
        scope = adaptive_limits.provider_scope(self.url, self.api_key_env, self.adaptive.key if self.adaptive else None)
        async with adaptive_limits.slot(adaptive_limits.PROVIDER_LIMITER, scope, self.adaptive, shown="http"):
            response = await post_json(
                self.url, {"input": sample_input}, seconds=self.timeout, headers=headers, secret=key, what=what
            )
        if "json" not in response.headers.get("content-type", ""):
            record_usage(parse_usage({}))
            return response.text
        data = json_body(response, what, key)
        if isinstance(data, str):
            record_usage(parse_usage({}))
            return data
        if isinstance(data, dict) and isinstance(data.get("output"), str):
            record_usage(parse_usage(data))
            return str(data["output"])
        raise ProviderError(f"{what}: the JSON reply has no text 'output' field: {excerpt(json.dumps(data))}")

    def __repr__(self) -> str:
        return f"HttpSut(url={self.url!r})"


def adapter(spec: str, config: Any) -> tuple[Any, str]:
    """The callable and fingerprint for an adapter spec, with the settings of ``config`` (a
    :class:`~evalharness.core.config.Config`).  Raises :class:`SutError` naming what is wrong."""
    sut_tables: Mapping[str, Mapping[str, Any]] = getattr(config, "sut", {}) or {}
    providers: Mapping[str, Mapping[str, Any]] = getattr(config, "providers", {}) or {}
    where = f" ({config.path})" if getattr(config, "path", None) else ""
    if spec.startswith(OPENAI_PREFIX):
        model = spec[len(OPENAI_PREFIX) :].strip()
        if not model:
            raise SutError(f"SUT {spec!r}: name the model after 'openai:' (for example openai:gpt-4o-mini)")
        table = dict(sut_tables.get("openai", {}))
        try:
            provider = resolve_provider(table.get("provider", DEFAULT_PROVIDER), providers)
        except ConfigError as exc:
            raise SutError(f"SUT {spec!r}: {exc}{where}") from None
        system_prompt = table.get("system_prompt")
        params = {**provider.params, **table.get("params", {})}
        func = OpenAISut(model, provider, system_prompt, params)
        shaping = {"model": model, "base_url": provider.base_url, "system_prompt": system_prompt, "params": params}
        # the bound method, not the instance: it is what inspect sees as a coroutine function
        return func.__call__, _fingerprint(spec, shaping)
    url = spec[len(HTTP_PREFIX) :] if spec.startswith(HTTP_PREFIX) and not spec.startswith("http:/") else spec
    if not url.startswith(("http://", "https://")):
        raise SutError(
            f"SUT {spec!r}: expected http:URL with an http:// or https:// URL (for example http:http://localhost:8080/answer)"
        )
    table = dict(sut_tables.get("http", {}))
    limits = adaptive_limits.parse_adaptive(table["adaptive"], "table [sut.http]") if "adaptive" in table else None
    func2 = HttpSut(url, float(table.get("timeout", DEFAULT_TIMEOUT)), table.get("api_key_env"), limits)
    return func2.__call__, _fingerprint(f"http:{url}", {"url": url})
