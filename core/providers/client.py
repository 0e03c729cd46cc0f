"""An OpenAI-compatible HTTP client (chat completions and embeddings), async, on httpx.

It speaks only the wire format, so it reaches OpenAI itself and the servers and gateways that
copy it (vLLM, Ollama, LiteLLM, ...).  Its errors are shaped for jobs (see ``docs/jobs.md``):

* a 429, or any answer with a ``Retry-After`` header, raises :class:`RateLimited` — the job is
  released and no try is used;
* a 5xx, a timeout, a cut connection or a body that is not the JSON expected raises
  :class:`ProviderError` — an exception, which uses a try;
* any other 4xx (bad key, unknown model, bad request) raises :class:`ProviderRejected`, a
  :class:`PermanentError`: retrying cannot fix it.

Messages say what happened (method, URL, status, a short excerpt of the body) and never contain
the key, which is only ever put into the ``Authorization`` header."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .. import adaptive
from ..jobs import PermanentError, RateLimited, _retry_after
from .settings import ProviderSettings
from .usage import Usage, parse_usage, record_usage

log = logging.getLogger(__name__)

EXCERPT = 200  # characters of a body quoted in an error
PROVIDER_REJECTED = "provider_rejected"


class ProviderError(Exception):
    """A provider call failed in a way a retry may fix (5xx, timeout, cut connection, bad body)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProviderRejected(PermanentError):
    """The provider refused the request (a 4xx other than 429): the key, model or request is
    wrong, and retrying the same request cannot succeed."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, kind=PROVIDER_REJECTED)
        self.status = status


def excerpt(text: str, limit: int = EXCERPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` replaced, for any message that quotes what a server sent back
    (some echo the Authorization header they rejected)."""
    return text.replace(secret, "***") if secret else text


@dataclass(frozen=True)
class ChatReply:
    content: str
    usage: Usage
    model: str | None = None
    finish_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class EmbeddingReply:
    vectors: list[list[float]]
    usage: Usage
    model: str | None = None


# One connection pool per event loop: an httpx client must not be shared across loops, and a
# serial run, a worker and a test each run their own.
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def shared_http() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None or pool.is_closed:
        pool = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        _POOLS[loop] = pool
    return pool


async def post_json(
    url: str,
    body: Any,
    *,
    seconds: float,
    headers: Mapping[str, str],
    secret: str | None = None,
    what: str = "provider",
) -> httpx.Response:
    """POST ``body`` as JSON and map every failure to the job semantics above.  Returns the
    response when its status is 2xx."""
    where = f"POST {url}"
    try:
        response = await shared_http().post(url, json=body, headers=dict(headers), timeout=httpx.Timeout(seconds))
    except httpx.TimeoutException as exc:
        raise ProviderError(f"{what}: {where} timed out after {seconds:g}s ({type(exc).__name__})") from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise ProviderError(
            f"{what}: {where}: the connection was cut before a full answer arrived "
            f"({type(exc).__name__}: {redact(str(exc), secret) or 'no detail'})"
        ) from None
    except httpx.ConnectError as exc:
        raise ProviderError(
            f"{what}: {where}: cannot connect ({redact(str(exc), secret) or type(exc).__name__})"
        ) from None
    except httpx.HTTPError as exc:
        raise ProviderError(f"{what}: {where} failed: {type(exc).__name__}: {redact(str(exc), secret)}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    text = excerpt(redact(response.text, secret))
    retry_after = _retry_after(response.headers)
    if status == 429 or "retry-after" in response.headers:
        shown = f", Retry-After {response.headers.get('retry-after')}" if "retry-after" in response.headers else ""
        raise RateLimited(retry_after, f"{what}: {where} answered {status} (rate limited{shown}): {text}")
    if status >= 500 or status == 408:
        raise ProviderError(f"{what}: {where} answered {status} {response.reason_phrase}: {text}", status)
    hint = ""
    if status in (401, 403):
        hint = " — check the API key"
    raise ProviderRejected(f"{what}: {where} answered {status} {response.reason_phrase}{hint}: {text}", status)


def json_body(response: httpx.Response, what: str, secret: str | None = None) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        raise ProviderError(
            f"{what}: POST {response.request.url} answered {response.status_code} with a body that is not JSON: "
            f"{excerpt(redact(response.text, secret)) or '(empty)'}",
            response.status_code,
        ) from None


class OpenAIClient:
    """Chat completions and embeddings against one :class:`ProviderSettings`.

    The key is read from the provider's ``api_key_env`` variable at each call and kept nowhere;
    ``repr`` shows the variable's name only."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"OpenAIClient(provider={s.name!r}, base_url={s.base_url!r}, model={s.model!r}, "
            f"api_key=${s.api_key_env} (redacted))"
        )

    __str__ = __repr__

    @property
    def _what(self) -> str:
        return f"provider {self.settings.name!r}"

    def _headers(self, key: str | None, idempotency_key: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _model(self, model: str | None) -> str:
        chosen = model or self.settings.model
        if not chosen:
            raise PermanentError(
                f"{self._what}: no model given (set 'model' in [providers.{self.settings.name}])", kind="config"
            )
        return chosen

    async def _post(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> Any:
        key = self.settings.api_key()
        url = f"{self.settings.base_url}/{path}"
        s = self.settings
        scope = adaptive.provider_scope(s.base_url, s.api_key_env, s.adaptive.key if s.adaptive else None)
        async with adaptive.slot(adaptive.PROVIDER_LIMITER, scope, s.adaptive, shown=s.name):
            response = await post_json(
                url, body, seconds=s.timeout, headers=self._headers(key, idempotency_key), secret=key, what=self._what
            )
        data = json_body(response, self._what, key)
        if not isinstance(data, dict):
            raise ProviderError(
                f"{self._what}: POST {url} answered a JSON {type(data).__name__}, not an object: "
                f"{excerpt(redact(response.text, key))}"
            )
        return data

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> ChatReply:
        """One chat completion: ``POST {base_url}/chat/completions``.  The provider's ``params``,
        then ``params``, are merged into the request (``temperature``, ``max_tokens``, ...)."""
        body: dict[str, Any] = {**self.settings.params, **(params or {})}
        body["model"] = self._model(model)
        body["messages"] = [dict(m) for m in messages]
        data = await self._post("chat/completions", body, idempotency_key)
        usage = parse_usage(data)
        record_usage(usage)
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ProviderError(
                f"{self._what}: the chat reply has no choices[0].message.content: {excerpt(json.dumps(data))}"
            ) from None
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ProviderError(f"{self._what}: choices[0].message.content is a {type(content).__name__}, not text")
        return ChatReply(content, usage, data.get("model"), choice.get("finish_reason"), data)

    async def embed(
        self, inputs: Sequence[str], *, model: str | None = None, params: Mapping[str, Any] | None = None
    ) -> EmbeddingReply:
        """Embeddings of ``inputs``, in their order: ``POST {base_url}/embeddings``."""
        body: dict[str, Any] = {**(params or {}), "model": self._model(model), "input": list(inputs)}
        data = await self._post("embeddings", body, None)
        usage = parse_usage(data)
        record_usage(usage)
        try:
            items = sorted(data["data"], key=lambda d: d.get("index", 0))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProviderError(
                f"{self._what}: the embeddings reply has no data[].embedding lists of numbers: "
                f"{excerpt(json.dumps(data))}"
            ) from None
        if len(vectors) != len(inputs):
            raise ProviderError(f"{self._what}: asked for {len(inputs)} embeddings, the reply has {len(vectors)}")
        return EmbeddingReply(vectors, usage, data.get("model"))
