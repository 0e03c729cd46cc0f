"""Provider and adapter settings: the [providers.NAME] and [sut.*] tables (errors name the file,
table and key), OPENAI_BASE_URL / OPENAI_API_KEY, the adapters' fingerprints (the settings that
shape an output, never the key), and the adapters against the stub over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.openai_stub import OpenAIStub

from evalharness.core import config as config_module
from evalharness.core.config import load_config
from evalharness.core.errors import ConfigError, SutError
from evalharness.core.jobs import PermanentError, RateLimited
from evalharness.core.providers.client import ProviderError
from evalharness.core.providers.settings import resolve_provider
from evalharness.core.providers.usage import collecting_usage
from evalharness.core.sut import call_sut, load_sut_code

pytestmark = pytest.mark.usefixtures("clean_config_env")


@pytest.fixture(autouse=True)
def no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # an earlier test of this process may have loaded a --config file: the adapters would read it
    monkeypatch.setattr(config_module, "_explicit_path", None)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as s:
        yield s


def write_config(text: str) -> Path:
    path = Path.cwd() / "evalharness.toml"
    path.write_text(text)
    return path


def test_provider_tables_are_validated_naming_file_table_and_key() -> None:
    path = write_config('[providers.local]\nbase_url = "localhost:8000"\n')
    with pytest.raises(
        ConfigError, match=r"evalharness.toml: table \[providers.local\] key 'base_url': expected an http"
    ):
        load_config()
    write_config("[providers.local]\ntimeout = -1\n")
    with pytest.raises(ConfigError, match=r"\[providers.local\] key 'timeout': must be a number of seconds > 0"):
        load_config()
    write_config('[providers.local]\nbase_urll = "http://x"\n')
    with pytest.raises(ConfigError, match=r"\[providers.local\]: unknown key 'base_urll'; did you mean 'base_url'"):
        load_config()
    write_config('[sut.openai]\nprovider = "missing"\n')
    with pytest.raises(ConfigError, match=r"\[sut.openai\] key 'provider': no table \[providers.missing\]"):
        load_config()
    write_config("[sut.grpc]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'grpc'"):
        load_config()
    assert path.exists()


def test_openai_base_url_applies_to_the_default_provider_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = {"openai": {"base_url": "http://file:1/v1"}, "local": {"base_url": "http://local:2/v1/"}}
    assert resolve_provider("openai", tables, env={}).base_url == "http://file:1/v1"
    assert resolve_provider("openai", tables, env={"OPENAI_BASE_URL": "http://env:3/v1"}).base_url == "http://env:3/v1"
    assert resolve_provider("local", tables, env={"OPENAI_BASE_URL": "http://env:3/v1"}).base_url == "http://local:2/v1"
    assert resolve_provider("openai", {}, env={}).base_url == "https://api.openai.com/v1"
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        resolve_provider("openai", {}, env={"OPENAI_BASE_URL": "api.example"})


def test_the_fingerprint_covers_model_url_prompt_and_params_but_not_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-one")
    first = load_sut_code("openai:m1").fingerprint
    assert first.startswith("declared:openai:m1@") and "sk-one" not in first
    monkeypatch.setenv("OPENAI_API_KEY", "sk-two")
    assert load_sut_code("openai:m1").fingerprint == first
    assert load_sut_code("openai:m2").fingerprint != first
    write_config('[sut.openai]\nsystem_prompt = "Be brief."\n[sut.openai.params]\ntemperature = 0\n')
    with_prompt = load_sut_code("openai:m1").fingerprint
    assert with_prompt != first
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:10/v1")
    assert load_sut_code("openai:m1").fingerprint != with_prompt
    assert "sk-two" not in repr(load_sut_code("openai:m1").func)


def test_a_bad_adapter_spec_is_a_sut_error() -> None:
    with pytest.raises(SutError, match="name the model"):
        load_sut_code("openai:")
    with pytest.raises(SutError, match="http:URL"):
        load_sut_code("http:localhost:8080")


async def test_openai_adapter_sends_system_prompt_params_and_key(
    stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-adapter")
    write_config(
        "[providers.openai.params]\ntemperature = 0.5\n"
        '[sut.openai]\nsystem_prompt = "Answer in one word."\n'
        "[sut.openai.params]\nmax_tokens = 8\n"
    )
    func = load_sut_code("openai:m1").func
    with collecting_usage() as usage:
        assert await call_sut(func, "Paris", "run-1-0") == "Paris"
        messages = {
            "messages": [
                {"role": "user", "content": "earlier"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "Rome"},
            ]
        }
        assert await call_sut(func, messages, "run-1-1") == "Rome"
    first, second = stub.seen("/v1/chat/completions")
    assert first.body["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Paris"},
    ]
    assert first.body["temperature"] == 0.5 and first.body["max_tokens"] == 8 and first.body["model"] == "m1"
    assert first.headers["idempotency-key"] == "run-1-0" and first.headers["authorization"] == "Bearer sk-adapter"
    assert [m["role"] for m in second.body["messages"]] == ["system", "user", "assistant", "user"]
    assert usage.calls == 2 and usage.total_tokens is not None and usage.total_tokens > 0
    with pytest.raises(PermanentError, match="takes a text input or an object with 'messages'"):
        await call_sut(func, 42)


async def test_http_adapter_reads_output_field_or_text_body(stub: OpenAIStub) -> None:
    json_sut = load_sut_code(f"http:{stub.root}/answer").func
    text_sut = load_sut_code(f"{stub.root}/answer.txt").func  # a bare URL works too
    with collecting_usage() as usage:
        assert await call_sut(json_sut, "Tokyo", "k-1") == "Tokyo"
    assert usage.prompt_tokens == 1 and usage.calls == 1
    assert await call_sut(text_sut, "Oslo [stub:ok]") == "Oslo"
    seen = stub.seen("/answer")[0]
    assert seen.body == {"input": "Tokyo"} and seen.headers["idempotency-key"] == "k-1"
    stub.plan("429")
    with pytest.raises(RateLimited):
        await call_sut(json_sut, "x")
    stub.plan("malformed")
    with pytest.raises(ProviderError, match="not JSON"):
        await call_sut(json_sut, "x")
    missing = load_sut_code(f"http:{stub.root}/v1/embeddings").func
    with pytest.raises(ProviderError, match="no text 'output' field"):
        await call_sut(missing, "x")


def test_a_version_of_the_settings_a_run_started_with_is_kept_by_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    write_config('[sut.openai]\nsystem_prompt = "first"\n')
    first = load_sut_code("openai:m1")
    write_config('[sut.openai]\nsystem_prompt = "second, edited during the run"\n')
    now = load_sut_code("openai:m1")
    assert now.fingerprint != first.fingerprint
    # a sample of the run started before the edit still gets the settings it was fingerprinted with
    assert load_sut_code("openai:m1", first.fingerprint) is first
    assert first.func.__self__.system_prompt == "first"  # type: ignore[attr-defined]
    assert load_sut_code("openai:m1", "declared:openai:m1@0000000000000000").fingerprint == now.fingerprint
