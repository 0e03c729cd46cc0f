"""Settings shared by every program, resolved in one place.

Precedence for each setting: command-line flag, then environment variable, then the
configuration file (``--config``, ``EVALHARNESS_CONFIG`` or ``./evalharness.toml``),
then the built-in default.  The Redis URL's default is the embedded server.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .keys import DEFAULT_PREFIX

ENV_REDIS_URL = "EVALHARNESS_REDIS_URL"
ENV_CONFIG = "EVALHARNESS_CONFIG"
ENV_PREFIX = "EVALHARNESS_PREFIX"
ENV_STATE_DIR = "EVALHARNESS_STATE_DIR"
ENV_IMPORTS = "EVALHARNESS_IMPORTS"
DEFAULT_CONFIG_NAME = "evalharness.toml"

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def default_state_dir() -> Path:
    """``$EVALHARNESS_STATE_DIR``, else ``$XDG_STATE_HOME/evalharness``, else ``~/.local/state/evalharness``."""
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "evalharness"


def validate_name(kind: str, value: str) -> str:
    """Queue, lane and supervisor names end up inside Redis keys: keep them plain."""
    # fullmatch: with match, '$' also matches before a trailing newline
    if not value or not _NAME_RE.fullmatch(value):
        raise ConfigError(f"invalid {kind} name {value!r}: use letters, digits, '_', '-' and '.'")
    return value


@dataclass(frozen=True)
class SupervisorConfig:
    """A fixed pool of worker processes serving some queues (balancing comes with the supervisors)."""

    name: str
    queues: tuple[str, ...]
    processes: int = 1
    concurrency: int = 10


@dataclass(frozen=True)
class Config:
    """The configuration file's contents, validated."""

    path: Path | None = None
    redis_url: str | None = None
    prefix: str | None = None
    state_dir: Path | None = None
    imports: tuple[str, ...] = ()
    supervisors: tuple[SupervisorConfig, ...] = field(default_factory=tuple)


_TOP_KEYS = {"redis_url", "prefix", "state_dir", "imports", "supervisors"}
_SUP_KEYS = {"queues", "processes", "concurrency"}


def _expect(value: Any, typ: type | tuple[type, ...], where: str, what: str) -> Any:
    if isinstance(value, bool) and typ in (int, (int, float)):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    if not isinstance(value, typ):
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} {value!r}")
    return value


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate a decoded TOML document; every error names the file, table and key."""
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    redis_url = data.get("redis_url")
    if redis_url is not None:
        _expect(redis_url, str, f"{path}: key 'redis_url'", "a string")
    prefix = data.get("prefix")
    if prefix is not None:
        _expect(prefix, str, f"{path}: key 'prefix'", "a string")
        try:
            validate_name("prefix", prefix)
        except ConfigError as exc:
            raise ConfigError(f"{path}: key 'prefix': {exc}") from None
    state_dir = data.get("state_dir")
    if state_dir is not None:
        _expect(state_dir, str, f"{path}: key 'state_dir'", "a string")
    imports = data.get("imports", [])
    _expect(imports, list, f"{path}: key 'imports'", "a list of module names")
    for i, mod in enumerate(imports):
        _expect(mod, str, f"{path}: key 'imports'[{i}]", "a module name")
    sups = []
    raw_sups = data.get("supervisors", {})
    _expect(raw_sups, dict, f"{path}: table [supervisors]", "a table of supervisor tables")
    for name, body in raw_sups.items():
        where = f"{path}: table [supervisors.{name}]"
        _expect(body, dict, where, "a table")
        try:
            validate_name("supervisor", name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for key in body:
            if key not in _SUP_KEYS:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_SUP_KEYS))})")
        queues = _expect(body.get("queues", ["default"]), list, f"{where} key 'queues'", "a list of queue names")
        if not queues:
            raise ConfigError(f"{where} key 'queues': needs at least one queue")
        for q in queues:
            _expect(q, str, f"{where} key 'queues'", "queue names (strings)")
            try:
                validate_name("queue", q)
            except ConfigError as exc:
                raise ConfigError(f"{where} key 'queues': {exc}") from None
        processes = _expect(body.get("processes", 1), int, f"{where} key 'processes'", "an integer")
        concurrency = _expect(body.get("concurrency", 10), int, f"{where} key 'concurrency'", "an integer")
        if processes < 0:
            raise ConfigError(f"{where} key 'processes': must be >= 0, got {processes}")
        if concurrency < 1:
            raise ConfigError(f"{where} key 'concurrency': must be >= 1, got {concurrency}")
        sups.append(SupervisorConfig(name, tuple(queues), processes, concurrency))
    return Config(
        path=path,
        redis_url=redis_url,
        prefix=prefix,
        state_dir=Path(state_dir).expanduser() if state_dir else None,
        imports=tuple(imports),
        supervisors=tuple(sups),
    )


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration file if one is given or present; an absent default file is no error."""
    if explicit is not None:
        path = Path(explicit)
    elif os.environ.get(ENV_CONFIG):
        path = Path(os.environ[ENV_CONFIG])
    else:
        path = Path.cwd() / DEFAULT_CONFIG_NAME
        if not path.exists():
            return Config()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path)


@dataclass(frozen=True)
class Settings:
    """What every program needs to reach the shared state."""

    redis_url: str
    prefix: str
    state_dir: Path
    embedded: bool
    imports: tuple[str, ...] = ()


def resolve_state_dir(config: Config) -> Path:
    """``$EVALHARNESS_STATE_DIR``, then the config file's ``state_dir``, then the XDG default."""
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    return config.state_dir or default_state_dir()


def resolve_prefix(flag: str | None, config: Config) -> str:
    prefix = flag or os.environ.get(ENV_PREFIX) or config.prefix or DEFAULT_PREFIX
    return validate_name("prefix", prefix)


def resolve_imports(flag: tuple[str, ...], config: Config) -> tuple[str, ...]:
    env = tuple(m for m in os.environ.get(ENV_IMPORTS, "").split(",") if m.strip())
    seen: dict[str, None] = {}
    for mod in (*config.imports, *env, *flag):
        seen.setdefault(mod.strip(), None)
    return tuple(seen)


def resolve_settings(
    redis_url: str | None = None,
    prefix: str | None = None,
    config: Config | None = None,
    imports: tuple[str, ...] = (),
    start_embedded: bool = True,
) -> Settings:
    """Resolve the Redis URL (flag, env, config file, embedded default) and the key prefix."""
    config = config if config is not None else load_config()
    state_dir = resolve_state_dir(config)
    url = redis_url or os.environ.get(ENV_REDIS_URL) or config.redis_url
    embedded = False
    if not url:
        from .embedded import EmbeddedServer

        server = EmbeddedServer(state_dir)
        url = server.ensure() if start_embedded else server.url
        embedded = True
    return Settings(
        redis_url=url,
        prefix=resolve_prefix(prefix, config),
        state_dir=state_dir,
        embedded=embedded,
        imports=resolve_imports(imports, config),
    )
