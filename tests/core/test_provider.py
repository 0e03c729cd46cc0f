"""The simulated LLM provider and the async HTTP SUT that calls it, over real sockets on
127.0.0.1: answers, 429 with Retry-After, 503s, hangs, latency, stats, malformed requests, and
the errors the SUT raises for workers to read."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from evalharness.core.examples.http_sut import ENV_PROVIDER_URL, HTTPStatusError, answer, post_json
from evalharness.core.examples.provider import ProviderConfig, SimulatedProvider
from evalharness.core.examples.sim import respond
from evalharness.core.jobs import rate_limit_signal

# No randomness unless a test asks for it: no latency, no 429s, no 503s, no hangs.
QUIET = {"latency": (0.0, 0.0), "rate_limit": 0.0, "errors": 0.0, "hang": 0.0}

Start = Callable[..., SimulatedProvider]


@pytest.fixture(scope="module")
def providers() -> Iterator[list[SimulatedProvider]]:
    """Every provider the module's tests start, stopped together at the end: a stop waits for
    the server's half-second poll, so stopping them one test at a time adds up."""
    started: list[SimulatedProvider] = []
    yield started
    stoppers = [threading.Thread(target=p.stop, daemon=True) for p in started]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in stoppers), "a provider did not stop"


@pytest.fixture
def start_provider(providers: list[SimulatedProvider]) -> Start:
    """Starts a provider with ``QUIET`` settings overridden by keyword."""

    def start(**overrides: Any) -> SimulatedProvider:
        provider = SimulatedProvider(ProviderConfig(**{**QUIET, **overrides})).start()
        providers.append(provider)
        return provider

    return start


async def ask(
    provider: SimulatedProvider, question: str = "What is 2 + 2?", key: str | None = None, within: float = 5.0
) -> tuple[int, dict[str, str], str]:
    headers = {"Idempotency-Key": key} if key else {}
    return await asyncio.wait_for(post_json(provider.url + "/v1/answer", {"question": question}, headers), within)


def raw_request(
    provider: SimulatedProvider,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    host, port = provider.server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


async def test_a_question_gets_200_with_the_simulated_models_answer(start_provider: Start) -> None:
    provider = start_provider()
    assert provider.url.startswith("http://127.0.0.1:")
    status, headers, body = await ask(provider, "What is 2 + 2?")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"answer": "The answer is 4."}
    for question in ("What is the capital of Japan?", "What is 7 * 6?", "Who wrote Hamlet?"):
        status, _, body = await ask(provider, question)
        assert (status, json.loads(body)["answer"]) == (200, respond(question))


async def test_fail_first_gives_429_with_retry_after_for_the_first_n_calls_of_a_key_then_200(
    start_provider: Start,
) -> None:
    provider = start_provider(fail_first={"k1": 3}, retry_after=1.5)
    for _ in range(3):
        status, headers, _ = await ask(provider, key="k1")
        assert status == 429
        assert headers["retry-after"] == "1.5"
    status, headers, body = await ask(provider, key="k1")
    assert status == 200 and "retry-after" not in headers
    assert json.loads(body) == {"answer": "The answer is 4."}
    # the count is per key: another key, and a request without one, are answered at once
    assert (await ask(provider, key="k2"))[0] == 200
    assert (await ask(provider))[0] == 200


async def test_errors_one_gives_503_every_time(start_provider: Start) -> None:
    provider = start_provider(errors=1.0)
    for _ in range(3):
        status, headers, body = await ask(provider)
        assert status == 503 and "retry-after" not in headers
        assert json.loads(body) == {"error": "upstream unavailable"}


async def test_rate_limit_one_gives_429_every_time(start_provider: Start) -> None:
    provider = start_provider(rate_limit=1.0, retry_after=0.25)
    for _ in range(3):
        status, headers, _ = await ask(provider)
        assert (status, headers["retry-after"]) == (429, "0.25")


async def test_a_hanging_provider_never_answers_and_still_stops_promptly(start_provider: Start) -> None:
    provider = start_provider(hang=1.0)
    with pytest.raises(TimeoutError):
        await ask(provider, within=0.3)
    assert provider.stats()["requests"] == 1
    assert provider.stats()["by_status"] == {}
    started = time.monotonic()
    await asyncio.to_thread(provider.stop)
    assert time.monotonic() - started < 2.0


async def test_a_client_still_waiting_on_a_hang_is_cut_off_when_the_provider_stops(start_provider: Start) -> None:
    provider = start_provider(hang=1.0)
    pending = asyncio.create_task(ask(provider, within=10))
    deadline = time.monotonic() + 5
    while provider.stats()["requests"] < 1:
        assert time.monotonic() < deadline, "the request never reached the provider"
        await asyncio.sleep(0.01)
    assert not pending.done()
    started = time.monotonic()
    await asyncio.to_thread(provider.stop)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(pending, 2.0)
    assert time.monotonic() - started < 2.5


async def test_latency_is_respected(start_provider: Start) -> None:
    provider = start_provider(latency=(0.2, 0.2))
    for _ in range(2):
        started = time.monotonic()
        status, _, _ = await ask(provider)
        elapsed = time.monotonic() - started
        assert status == 200
        assert 0.2 <= elapsed < 2.0


async def test_latency_applies_to_answers_only_not_to_429s_and_503s(start_provider: Start) -> None:
    provider = start_provider(latency=(1.0, 1.0), errors=1.0, fail_first={"k": 1})
    started = time.monotonic()
    assert (await ask(provider, key="k"))[0] == 429
    assert (await ask(provider))[0] == 503
    assert time.monotonic() - started < 0.8


async def test_stats_count_requests_by_status_and_by_key(start_provider: Start) -> None:
    provider = start_provider(fail_first={"a": 2, "b": 1})
    for key in ("a", "a", "a", "b", "b", "c", None, None):
        await ask(provider, key=key)
    assert provider.stats() == {
        "requests": 8,
        "by_status": {"200": 5, "429": 3},
        "keys": {"a": 3, "b": 2, "c": 1},  # requests without a key are not counted by key
    }


async def test_stats_over_http_match_stats_in_process(start_provider: Start) -> None:
    provider = start_provider(errors=1.0)
    await ask(provider, key="x")
    status, body = await asyncio.to_thread(raw_request, provider, "GET", "/v1/stats")
    assert status == 200
    assert body == {"requests": 1, "by_status": {"503": 1}, "keys": {"x": 1}}


async def test_reading_stats_over_http_does_not_change_them(start_provider: Start) -> None:
    provider = start_provider(errors=1.0)
    await ask(provider)
    for _ in range(3):
        await asyncio.to_thread(raw_request, provider, "GET", "/v1/stats")
    status, body = await asyncio.to_thread(raw_request, provider, "GET", "/v1/stats")
    assert status == 200 and body["by_status"] == {"503": 1}
    assert provider.stats()["by_status"] == {"503": 1}


class _SlowForHandlerThreads:
    """Stands in for the provider's lock: acquisitions from the server's handler threads are
    delayed, as when the OS deschedules a handler thread right after it wrote its response."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.2)
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


async def test_stats_include_a_response_as_soon_as_the_client_has_it(start_provider: Start) -> None:
    provider = start_provider()
    provider.lock = _SlowForHandlerThreads()  # type: ignore[assignment]
    assert (await ask(provider))[0] == 200
    assert provider.stats()["by_status"] == {"200": 1}


def test_stopping_a_provider_that_was_never_started_returns_at_once() -> None:
    provider = SimulatedProvider(ProviderConfig(**QUIET))
    stopper = threading.Thread(target=provider.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=2)
    stuck = stopper.is_alive()
    if stuck:  # a serve loop that starts now sees the pending shutdown and lets stop() finish
        provider.start()
        stopper.join(timeout=5)
    assert not stuck


def test_a_malformed_request_gets_400_and_is_not_counted_as_a_question(start_provider: Start) -> None:
    provider = start_provider(fail_first={"k": 1})
    key = {"Idempotency-Key": "k", "Content-Type": "application/json"}
    assert raw_request(provider, "POST", "/v1/answer", b"{not json", key) == (400, {"error": "body is not JSON"})
    status, body = raw_request(provider, "POST", "/v1/answer", b'{"prompt": "What is 2 + 2?"}', key)
    assert status == 400 and "question" in body["error"]
    status, _ = raw_request(provider, "POST", "/v1/answer", b'["What is 2 + 2?"]', key)
    assert status == 400
    status, _ = raw_request(provider, "POST", "/v1/elsewhere", b'{"question": "What is 2 + 2?"}', key)
    assert status == 400
    assert raw_request(provider, "GET", "/v1/nothing")[0] == 404
    # none of them used up the key's 429: the next well-formed call gets it
    assert provider.stats()["requests"] == 0 and provider.stats()["keys"] == {}
    assert raw_request(provider, "POST", "/v1/answer", b'{"question": "What is 2 + 2?"}', key)[0] == 429
    assert raw_request(provider, "POST", "/v1/answer", b'{"question": "What is 2 + 2?"}', key) == (
        200,
        {"answer": "The answer is 4."},
    )


async def test_answer_returns_the_text(start_provider: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = start_provider()
    monkeypatch.setenv(ENV_PROVIDER_URL, provider.url + "/")
    assert await asyncio.wait_for(answer("What is 2 + 2?"), 5) == "The answer is 4."
    assert await asyncio.wait_for(answer("What is the capital of Peru?", "run-1-3"), 5) == respond(
        "What is the capital of Peru?"
    )
    assert provider.stats()["keys"] == {"run-1-3": 1}


async def test_answer_raises_a_429_the_worker_reads_as_a_rate_limit_with_its_retry_after(
    start_provider: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = start_provider(fail_first={"run-1-0": 1}, retry_after=2.0)
    monkeypatch.setenv(ENV_PROVIDER_URL, provider.url)
    with pytest.raises(HTTPStatusError) as caught:
        await asyncio.wait_for(answer("What is 2 + 2?", "run-1-0"), 5)
    assert caught.value.status_code == 429
    assert caught.value.headers == {"Retry-After": "2"}
    assert "429" in str(caught.value)
    assert rate_limit_signal(caught.value) == (True, 2.0)
    # the retry with the same key is answered
    assert await asyncio.wait_for(answer("What is 2 + 2?", "run-1-0"), 5) == "The answer is 4."


async def test_answer_raises_a_503_the_worker_treats_as_an_ordinary_error(
    start_provider: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = start_provider(errors=1.0)
    monkeypatch.setenv(ENV_PROVIDER_URL, provider.url)
    with pytest.raises(HTTPStatusError) as caught:
        await asyncio.wait_for(answer("What is 2 + 2?"), 5)
    assert caught.value.status_code == 503
    assert caught.value.headers == {}
    assert rate_limit_signal(caught.value) == (False, None)


async def test_answer_from_a_hanging_provider_can_be_timed_out(
    start_provider: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = start_provider(hang=1.0)
    monkeypatch.setenv(ENV_PROVIDER_URL, provider.url)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(answer("What is 2 + 2?"), 0.3)


@pytest.mark.parametrize("value", [None, ""])
async def test_answer_without_a_provider_url_says_which_variable_to_set(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(ENV_PROVIDER_URL, raising=False)
    else:
        monkeypatch.setenv(ENV_PROVIDER_URL, value)
    with pytest.raises(RuntimeError, match=f"{ENV_PROVIDER_URL} is not set"):
        await answer("What is 2 + 2?")


async def test_answer_from_a_stopped_provider_is_a_connection_error(
    start_provider: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = start_provider()
    monkeypatch.setenv(ENV_PROVIDER_URL, provider.url)
    provider.stop()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(answer("What is 2 + 2?"), 5)
