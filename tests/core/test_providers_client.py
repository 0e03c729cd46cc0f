"""The OpenAI-compatible client against the local stub over real sockets: answers, usage, and
how each failure maps to job semantics (429 -> release without a try, 5xx / timeout / cut /
malformed -> an exception that uses a try, other 4xx -> permanent)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from support.openai_stub import OpenAIStub

from evalharness.core.jobs import PermanentError, RateLimited, rate_limit_signal
from evalharness.core.providers.client import OpenAIClient, ProviderError, ProviderRejected
from evalharness.core.providers.settings import ProviderSettings
from evalharness.core.providers.usage import Usage, collecting_usage, parse_usage

KEY = "sk-test-0123456789abcdef-secret"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=KEY, models={"m1", "emb"}, cost_per_token=0.001) as s:
        yield s


@pytest.fixture
def client(stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> OpenAIClient:
    monkeypatch.setenv("STUB_KEY", KEY)
    return OpenAIClient(
        ProviderSettings(
            name="stub",
            base_url=stub.base_url,
            model="m1",
            api_key_env="STUB_KEY",
            timeout=2.0,
            params={"temperature": 0},
        )
    )


async def test_a_chat_completion_returns_the_content_and_records_usage(client: OpenAIClient, stub: OpenAIStub) -> None:
    with collecting_usage() as usage:
        reply = await client.chat(
            [{"role": "user", "content": "Paris is the answer"}], params={"max_tokens": 5}, idempotency_key="job-1"
        )
    assert reply.content == "Paris is the answer"
    assert reply.usage.prompt_tokens == 4 and reply.usage.completion_tokens == 4 and reply.usage.total_tokens == 8
    assert usage.as_dict() == {
        "prompt_tokens": 4,
        "completion_tokens": 4,
        "total_tokens": 8,
        "cost": 0.008,
        "calls": 1,
        "model": "m1",
    }
    (seen,) = stub.seen("/v1/chat/completions")
    # the provider's params and the call's are both passed through; the job's key deduplicates
    assert seen.body["temperature"] == 0 and seen.body["max_tokens"] == 5 and seen.body["model"] == "m1"
    assert seen.headers["idempotency-key"] == "job-1"
    assert seen.headers["authorization"] == f"Bearer {KEY}"


async def test_embeddings_come_back_in_input_order(client: OpenAIClient) -> None:
    reply = await client.embed(["a", "b", "a"], model="emb")
    assert len(reply.vectors) == 3 and reply.vectors[0] == reply.vectors[2] != reply.vectors[1]
    assert reply.usage.prompt_tokens == 3


async def test_a_429_is_rate_limited_with_its_retry_after(client: OpenAIClient, stub: OpenAIStub) -> None:
    stub.retry_after = 1.5
    stub.plan("429")
    with pytest.raises(RateLimited) as caught:
        await client.chat([{"role": "user", "content": "hi"}])
    assert caught.value.retry_after == 1.5
    assert rate_limit_signal(caught.value) == (True, 1.5)
    assert "429" in str(caught.value) and "Rate limit reached" in str(caught.value)


async def test_a_503_with_retry_after_is_a_release_too(client: OpenAIClient, stub: OpenAIStub) -> None:
    stub.plan("503-retry-after")
    with pytest.raises(RateLimited) as caught:
        await client.chat([{"role": "user", "content": "hi"}])
    assert caught.value.retry_after == pytest.approx(0.2)


async def test_a_500_is_an_exception_naming_the_status_and_body(client: OpenAIClient, stub: OpenAIStub) -> None:
    stub.plan("500")
    with pytest.raises(ProviderError) as caught:
        await client.chat([{"role": "user", "content": "hi"}])
    message = str(caught.value)
    assert "answered 500" in message and "internal error in the stub" in message and stub.base_url in message
    assert not isinstance(caught.value, PermanentError) and rate_limit_signal(caught.value) == (False, None)


async def test_a_hang_times_out_with_a_clear_message(client: OpenAIClient, stub: OpenAIStub) -> None:
    stub.plan("hang")
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"timed out after 2s"):
        await client.chat([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 10


async def test_a_cut_connection_says_so(client: OpenAIClient, stub: OpenAIStub) -> None:
    stub.plan("cut")
    with pytest.raises(ProviderError, match="connection was cut"):
        await client.chat([{"role": "user", "content": "hi"}])


async def test_malformed_json_is_an_exception_quoting_the_body(client: OpenAIClient, stub: OpenAIStub) -> None:
    stub.plan("malformed")
    with pytest.raises(ProviderError, match=r'answered 200 with a body that is not JSON: \{"choices"'):
        await client.chat([{"role": "user", "content": "hi"}])


async def test_a_bad_key_is_permanent_and_the_key_never_shows(
    stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-key-that-must-not-leak"
    monkeypatch.setenv("STUB_KEY", wrong)
    client = OpenAIClient(
        ProviderSettings(name="stub", base_url=stub.base_url, model="m1", api_key_env="STUB_KEY", timeout=2.0)
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderRejected) as caught:
        await client.chat([{"role": "user", "content": "hi"}])
    assert caught.value.kind == "provider_rejected" and caught.value.status == 401
    assert "401" in str(caught.value) and "check the API key" in str(caught.value)
    # the stub quotes the key it was sent; the message does not
    assert stub.seen()[0].headers["authorization"] == f"Bearer {wrong}"
    for text in (str(caught.value), repr(client), str(client), caplog.text):
        assert wrong not in text
    assert "STUB_KEY" in repr(client)


async def test_an_unknown_model_is_permanent_and_named(client: OpenAIClient) -> None:
    with pytest.raises(ProviderRejected, match=r"404.*The model `nope` does not exist"):
        await client.chat([{"role": "user", "content": "hi"}], model="nope")


async def test_no_key_sends_no_authorization(stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUB_KEY", raising=False)
    stub.api_key = None
    client = OpenAIClient(ProviderSettings(name="local", base_url=stub.base_url, model="m1", api_key_env="STUB_KEY"))
    assert (await client.chat([{"role": "user", "content": "x"}])).content == "x"
    assert "authorization" not in stub.seen()[0].headers


def test_usage_takes_what_a_reply_reports_and_ignores_nonsense() -> None:
    assert parse_usage({"usage": {"prompt_tokens": 3, "completion_tokens": 2}}).total_tokens == 5
    gateway = parse_usage({"usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost": 0.5}})
    assert gateway.cost == 0.5
    assert parse_usage({"usage": {"total_tokens": 4}, "cost": 0.25}).cost == 0.25
    odd = parse_usage(
        {"usage": {"prompt_tokens": True, "completion_tokens": -1, "total_tokens": "7", "cost": float("nan")}}
    )
    assert (odd.prompt_tokens, odd.completion_tokens, odd.total_tokens, odd.cost) == (None, None, None, None)
    assert parse_usage({}).as_dict() == {
        "prompt_tokens": None,
        "completion_tokens": None,
        "total_tokens": None,
        "calls": 1,
    }
    total = Usage()
    total.add(parse_usage({"usage": {"prompt_tokens": 2, "completion_tokens": 1}}))
    total.add(parse_usage({}))
    assert total.as_dict() == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3, "calls": 2}
