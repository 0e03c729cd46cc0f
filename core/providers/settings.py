"""Provider settings: the ``[providers.NAME]`` and ``[sut.openai]`` / ``[sut.http]`` tables of the
configuration file, and the conventional ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` variables.

A key is never a setting: a provider names the *environment variable* that holds it
(``api_key_env``), and the key is read from the environment of the process that makes the call.
So a key never reaches the configuration file, a job's payload, Redis or a fingerprint."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..adaptive import AdaptiveParams, parse_adaptive
from ..errors import ConfigError

ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_API_KEY = "OPENAI_API_KEY"
DEFAULT_PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 60.0

# key -> what its TOML value must be
PROVIDER_KEYS = {
    "base_url": "str",
    "model": "str",
    "api_key_env": "str",
    "timeout": "number",
    "params": "table",
    "adaptive": "adaptive",
}
OPENAI_SUT_KEYS = {"provider": "str", "system_prompt": "str", "params": "table"}
HTTP_SUT_KEYS = {"timeout": "number", "api_key_env": "str", "adaptive": "adaptive"}
SUT_TABLES = {"openai": OPENAI_SUT_KEYS, "http": HTTP_SUT_KEYS}


@dataclass(frozen=True)
class ProviderSettings:
    """One OpenAI-compatible endpoint.  ``params`` are sent with every request (``temperature``,
    ``max_tokens``, ``seed``, ... passed through as given); a request's own parameters win."""

    name: str = DEFAULT_PROVIDER
    base_url: str = DEFAULT_BASE_URL
    model: str | None = None
    api_key_env: str = ENV_API_KEY
    timeout: float = DEFAULT_TIMEOUT
    params: dict[str, Any] = field(default_factory=dict)
    adaptive: AdaptiveParams | None = None  # shared adaptive concurrency (core/adaptive.py), when configured

    def api_key(self) -> str | None:
        """The key, read now from ``api_key_env``; ``None`` when the variable is unset or empty
        (local servers such as Ollama or vLLM need none)."""
        return os.environ.get(self.api_key_env) or None

    def public(self) -> dict[str, Any]:
        """What may be shown and hashed: everything but the key (whose variable name is fine)."""
        return {
            "name": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "params": dict(self.params),
        }


def _check(body: Mapping[str, Any], known: Mapping[str, str], where: str) -> dict[str, Any]:
    from ..config import _expect, _unknown

    out: dict[str, Any] = {}
    for key, value in body.items():
        kind = known.get(key)
        at = f"{where} key '{key}'"
        if kind is None:
            raise _unknown(key, set(known), where)
        if kind == "str":
            _expect(value, str, at, "a string")
            if not value.strip():
                raise ConfigError(f"{at}: must not be empty")
        elif kind == "adaptive":
            parse_adaptive(value, where)  # validated here, turned into AdaptiveParams where it is used
        elif kind == "number":
            _expect(value, (int, float), at, "a number of seconds")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{at}: must be a number of seconds > 0, got {value!r}")
            value = float(value)
        else:
            _expect(value, dict, at, "a table of request parameters")
            value = dict(value)
        out[key] = value
    if "base_url" in out and not str(out["base_url"]).startswith(("http://", "https://")):
        raise ConfigError(f"{where} key 'base_url': expected an http:// or https:// URL, got {out['base_url']!r}")
    return out


def check_provider_tables(raw: Any, path: str) -> dict[str, dict[str, Any]]:
    """Validate ``[providers.NAME]`` tables; every error names the file, table and key."""
    from ..config import _expect, validate_name

    _expect(raw, dict, f"{path}: table [providers]", "a table of provider tables")
    out: dict[str, dict[str, Any]] = {}
    for name, body in raw.items():
        where = f"{path}: table [providers.{name}]"
        _expect(body, dict, where, "a table")
        try:
            validate_name("provider", name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out[name] = _check(body, PROVIDER_KEYS, where)
    return out


def check_sut_tables(raw: Any, path: str, providers: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate the ``[sut.openai]`` and ``[sut.http]`` tables (the adapters' settings)."""
    from ..config import _expect, _unknown

    _expect(raw, dict, f"{path}: table [sut]", "a table of adapter tables")
    out: dict[str, dict[str, Any]] = {}
    for name, body in raw.items():
        where = f"{path}: table [sut.{name}]"
        if name not in SUT_TABLES:
            raise _unknown(name, set(SUT_TABLES), f"{path}: table [sut]")
        _expect(body, dict, where, "a table")
        out[name] = _check(body, SUT_TABLES[name], where)
    wanted = out.get("openai", {}).get("provider")
    if wanted is not None and wanted != DEFAULT_PROVIDER and wanted not in providers:
        defined = ", ".join(sorted(providers)) or "none"
        raise ConfigError(
            f"{path}: table [sut.openai] key 'provider': no table [providers.{wanted}] (defined: {defined})"
        )
    return out


def resolve_provider(
    name: str, tables: Mapping[str, Mapping[str, Any]], env: Mapping[str, str] | None = None
) -> ProviderSettings:
    """The settings of provider ``name``: its table, over the defaults.  For the default provider
    ``openai`` the conventional variables apply too, with the project's precedence (environment
    over file): ``OPENAI_BASE_URL`` replaces the table's ``base_url``.  Other tables are named
    endpoints and take their ``base_url`` from the file only."""
    env = os.environ if env is None else env
    table = dict(tables.get(name, {}))
    if name != DEFAULT_PROVIDER and name not in tables:
        raise ConfigError(f"no provider {name!r}: define a table [providers.{name}] in the configuration file")
    base_url = table.get("base_url", DEFAULT_BASE_URL)
    if name == DEFAULT_PROVIDER and env.get(ENV_BASE_URL):
        base_url = env[ENV_BASE_URL]
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"environment variable {ENV_BASE_URL}: expected an http:// or https:// URL, got {base_url!r}"
            )
    return ProviderSettings(
        name=name,
        base_url=base_url.rstrip("/"),
        model=table.get("model"),
        api_key_env=table.get("api_key_env", ENV_API_KEY),
        timeout=table.get("timeout", DEFAULT_TIMEOUT),
        params=dict(table.get("params", {})),
        adaptive=parse_adaptive(table["adaptive"], f"table [providers.{name}]") if "adaptive" in table else None,
    )
