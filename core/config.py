"""Settings shared by every program, resolved in one place.

Precedence for each setting: command-line flag, then environment variable, then the
configuration file (``--config``, ``EVALHARNESS_CONFIG`` or ``./evalharness.toml``),
then the built-in default.  The Redis URL's default is the embedded server.  The file's
worker pools (supervisors) may differ per environment, chosen with ``--environment``,
``EVALHARNESS_ENV`` or the file's ``environment`` key (default ``production``).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .keys import DEFAULT_PREFIX

ENV_REDIS_URL = "EVALHARNESS_REDIS_URL"
ENV_CONFIG = "EVALHARNESS_CONFIG"
ENV_PREFIX = "EVALHARNESS_PREFIX"
ENV_STATE_DIR = "EVALHARNESS_STATE_DIR"
ENV_IMPORTS = "EVALHARNESS_IMPORTS"
ENV_ENVIRONMENT = "EVALHARNESS_ENV"
DEFAULT_ENVIRONMENT = "production"
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


class Balance(StrEnum):
    """How a supervisor shares its processes between its queues."""

    OFF = "off"  # one pool of max_processes serving every queue, in priority order
    SIMPLE = "simple"  # a pool per queue, max_processes split evenly, fixed
    AUTO = "auto"  # a pool per queue, resized to the demand between the minimum and max_processes


class ScalingStrategy(StrEnum):
    """What ``balance = "auto"`` weighs queues by."""

    TIME = "time"  # expected time to clear: (ready + running jobs) x mean runtime
    SIZE = "size"  # jobs: ready + running


class _Unset(int):
    """A distinct object, so a -1 read from a file is still seen as -1 and rejected."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: int = _Unset(-1)
"""Default of ``processes``, ``min_processes`` and ``max_processes``: derive it from the others."""

DEFAULT_BACKOFF = (1.0, 5.0, 30.0)


class FieldError(ConfigError):
    """One supervisor setting is invalid; ``key`` names it so a file error can name its table."""

    def __init__(self, supervisor: str, key: str, problem: str) -> None:
        super().__init__(f"supervisor {supervisor!r} key '{key}': {problem}")
        self.supervisor = supervisor
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class SupervisorConfig:
    """A group of worker processes serving some queues, and how it scales.

    ``processes`` is where the supervisor starts: the fixed total with ``balance = "off"`` or
    ``"simple"`` (then equal to ``max_processes``), the sum of the per-queue minimums with
    ``"auto"``.  Leave ``processes``, ``min_processes`` and ``max_processes`` at ``UNSET`` to
    have them derived; an inconsistent combination raises ``FieldError`` naming the key.
    The job settings (``timeout``, ``tries``, ``backoff``) are validated but not applied to jobs
    yet (``timeout`` counts in the daemon's default grace); ``hard_timeout``, ``memory``,
    ``max_jobs``, ``max_time`` and ``sleep`` go to the supervisor's workers.
    """

    name: str
    queues: tuple[str, ...]
    processes: int = UNSET
    concurrency: int = 10
    balance: Balance = Balance.OFF
    auto_scaling_strategy: ScalingStrategy = ScalingStrategy.TIME
    min_processes: int = UNSET  # per queue
    max_processes: int = UNSET  # the whole supervisor
    balance_max_shift: int = 1  # processes a pool may gain or lose per cooldown
    balance_cooldown: float = 3.0  # seconds between two changes of one pool
    timeout: float = 60.0  # seconds per attempt; 0 = none
    hard_timeout: float = 0.0  # no job may run longer, whatever its own timeout; 0 = off
    tries: int = 3  # attempts in all; 0 = unlimited
    backoff: tuple[float, ...] = DEFAULT_BACKOFF  # seconds before retry n; the last repeats
    memory: float = 0.0  # MB of resident memory after which a worker is replaced; 0 = no limit
    max_jobs: int = 0  # jobs after which a worker is replaced; 0 = no limit
    max_time: float = 0.0  # seconds after which a worker is replaced; 0 = no limit
    sleep: float = 1.0  # longest idle wait of a worker before its housekeeping
    nice: int = 0  # niceness added to worker processes (0-19)

    def __post_init__(self) -> None:
        validate_name("supervisor", self.name)
        self._check_queues()
        balance = self._choice("balance", self.balance, Balance)
        self._choice("auto_scaling_strategy", self.auto_scaling_strategy, ScalingStrategy)
        self._derive_processes(balance)
        self._whole("concurrency", 1)
        self._whole("balance_max_shift", 1)
        self._whole("tries", 0)
        self._whole("max_jobs", 0)
        for key in ("balance_cooldown", "timeout", "hard_timeout", "memory", "max_time"):
            self._number(key)
        self._number("sleep", positive=True)
        if not isinstance(self.nice, int) or isinstance(self.nice, bool) or not 0 <= self.nice <= 19:
            raise FieldError(self.name, "nice", f"must be between 0 and 19, got {self.nice!r}")
        self._check_backoff()
        if self.hard_timeout and (self.timeout == 0 or self.timeout >= self.hard_timeout):
            shown = "0 (no timeout)" if self.timeout == 0 else f"{self.timeout:g}"
            raise FieldError(
                self.name,
                "timeout",
                f"{shown} is not below hard_timeout {self.hard_timeout:g}: a job would be killed "
                "before its own timeout could stop it; lower timeout or raise hard_timeout",
            )

    @property
    def pool_names(self) -> tuple[str, ...]:
        """The supervisor's process pools: one per queue when balancing, else one for all."""
        return (",".join(self.queues),) if self.balance is Balance.OFF else self.queues

    def _set(self, key: str, value: object) -> None:
        object.__setattr__(self, key, value)

    def _check_queues(self) -> None:
        queues = tuple(self.queues)
        if not queues:
            raise FieldError(self.name, "queues", "needs at least one queue")
        for q in queues:
            try:
                validate_name("queue", q)
            except ConfigError as exc:
                raise FieldError(self.name, "queues", str(exc)) from None
        dupes = sorted({q for q in queues if queues.count(q) > 1})
        if dupes:
            raise FieldError(self.name, "queues", f"lists {', '.join(map(repr, dupes))} more than once")
        self._set("queues", queues)

    def _choice(self, key: str, value: object, enum: type[StrEnum]) -> StrEnum:
        try:
            chosen = enum(value) if isinstance(value, str) else None
        except ValueError:
            chosen = None
        if chosen is None:
            choices = ", ".join(repr(m.value) for m in enum)
            raise FieldError(self.name, key, f"expected one of {choices}, got {value!r}") from None
        self._set(key, chosen)
        return chosen

    def _whole(self, key: str, low: int) -> int:
        value = getattr(self, key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise FieldError(self.name, key, f"expected an integer, got {value!r}")
        if value < low:
            raise FieldError(self.name, key, f"must be >= {low}, got {value}")
        return value

    def _number(self, key: str, positive: bool = False) -> None:
        value = getattr(self, key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise FieldError(self.name, key, f"expected a finite number, got {value!r}")
        if value < 0 or (positive and value == 0):
            raise FieldError(self.name, key, f"must be {'> 0' if positive else '>= 0'}, got {value:g}")
        self._set(key, float(value))

    def _check_backoff(self) -> None:
        delays = tuple(self.backoff)
        if not delays:
            raise FieldError(self.name, "backoff", "needs at least one delay")
        for d in delays:
            if not isinstance(d, int | float) or isinstance(d, bool) or not math.isfinite(d) or d < 0:
                raise FieldError(self.name, "backoff", f"delays must be finite numbers >= 0, got {d!r}")
        self._set("backoff", tuple(float(d) for d in delays))

    def _derive_processes(self, balance: StrEnum) -> None:
        n = len(self.queues)
        for key in ("processes", "min_processes", "max_processes"):
            if getattr(self, key) is not UNSET:
                self._whole(key, 0)
        processes, low, high = self.processes, self.min_processes, self.max_processes
        if balance is Balance.AUTO:
            if processes is not UNSET:
                raise FieldError(
                    self.name,
                    "processes",
                    "is the size of a fixed pool; with balance = 'auto' set min_processes "
                    "(per queue) and max_processes (in all) instead",
                )
        elif processes is not UNSET and high is not UNSET and processes != high:
            raise FieldError(
                self.name,
                "processes",
                f"is shorthand for max_processes: give one of them, not both ({processes} and {high})",
            )
        elif high is UNSET:
            high = processes
        low_defaulted = low is UNSET
        if low_defaulted:
            low = 0 if high == 0 else 1
        if high is UNSET:
            high = 1 if balance is Balance.OFF else low * n
        floor = low if balance is Balance.OFF else low * n
        if floor > high:
            given = "the default" if low_defaulted else "given"
            per = "" if balance is Balance.OFF else f" per queue x {n} queue{'s' if n > 1 else ''} = {floor}"
            raise FieldError(
                self.name,
                "min_processes",
                f"{low} ({given}){per} is more than max_processes {high}; raise max_processes or lower min_processes",
            )
        self._set("min_processes", low)
        self._set("max_processes", high)
        self._set("processes", floor if balance is Balance.AUTO else high)


@dataclass(frozen=True)
class Config:
    """The configuration file's contents, validated, with the chosen environment's supervisors."""

    path: Path | None = None
    redis_url: str | None = None
    prefix: str | None = None
    state_dir: Path | None = None
    imports: tuple[str, ...] = ()
    supervisors: tuple[SupervisorConfig, ...] = field(default_factory=tuple)
    environment: str = DEFAULT_ENVIRONMENT
    environments: tuple[str, ...] = ()
    # [metrics.NAME] tables: argument values a metric gets unless its --metric spec says otherwise
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    # [providers.NAME] tables (OpenAI-compatible endpoints) and [sut.openai] / [sut.http] (the
    # SUT adapters' settings), validated; see core/providers/settings.py
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sut: dict[str, dict[str, Any]] = field(default_factory=dict)
    # [profiles.NAME] tables: named sets of run options (see core/profiles.py), values checked
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # [run] (defaults of `evalharness run`: cache, cache_ttl; see core/cache.py) and
    # [prices."MODEL-PREFIX"] (USD per million tokens; see core/cost.py)
    run: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, Any] = field(default_factory=dict)
    # [online]: the online monitor's settings, validated (core/online.py)
    online: dict[str, Any] = field(default_factory=dict)


_TOP_KEYS = {
    "redis_url",
    "prefix",
    "state_dir",
    "imports",
    "supervisors",
    "environment",
    "environments",
    "metrics",
    "providers",
    "sut",
    "profiles",
    "run",
    "prices",
    "online",
}
_ENV_KEYS = {"supervisors"}
# key -> what its TOML value must be
_SUP_KEYS = {
    "queues": "queues",
    "processes": "int",
    "concurrency": "int",
    "balance": "str",
    "auto_scaling_strategy": "str",
    "min_processes": "int",
    "max_processes": "int",
    "balance_max_shift": "int",
    "balance_cooldown": "number",
    "timeout": "number",
    "hard_timeout": "number",
    "tries": "int",
    "backoff": "backoff",
    "memory": "number",
    "max_jobs": "int",
    "max_time": "number",
    "sleep": "number",
    "nice": "int",
}
# one setting under two names: setting either in an environment replaces both from the shared table
_ALIASES = {"processes": "max_processes", "max_processes": "processes"}


def _expect(value: Any, typ: type | tuple[type, ...], where: str, what: str) -> Any:
    if isinstance(value, bool) and typ in (int, (int, float)):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    if not isinstance(value, typ):
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} {value!r}")
    return value


def _unknown(key: str, known: set[str], where: str) -> ConfigError:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
    close = [snake] if snake in known else difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint} (known: {', '.join(sorted(known))})")


def _supervisor_values(body: dict[str, Any], where: str) -> dict[str, Any]:
    """Check the TOML types of one supervisor table; values are converted for SupervisorConfig."""
    values: dict[str, Any] = {}
    for key, value in body.items():
        kind = _SUP_KEYS.get(key)
        at = f"{where} key '{key}'"
        if kind is None:
            raise _unknown(key, set(_SUP_KEYS), where)
        if kind == "queues":
            _expect(value, list, at, "a list of queue names")
            for q in value:
                _expect(q, str, at, "queue names (strings)")
            value = tuple(value)
        elif kind == "int":
            _expect(value, int, at, "an integer")
        elif kind == "str":
            _expect(value, str, at, "a string")
        elif kind == "number":
            _expect(value, (int, float), at, "a number")
        else:
            if isinstance(value, list):
                for d in value:
                    _expect(d, (int, float), at, "a number of seconds or a list of them")
                value = tuple(value)
            else:
                value = (_expect(value, (int, float), at, "a number of seconds or a list of them"),)
        values[key] = value
    return values


def _build(name: str, values: dict[str, Any], origin: dict[str, str], where: str) -> SupervisorConfig:
    """Construct one supervisor; an error names the table that set the offending key."""
    kwargs = dict(values)
    kwargs.setdefault("queues", ("default",))
    try:
        return SupervisorConfig(name=name, **kwargs)
    except FieldError as exc:
        raise ConfigError(f"{origin.get(exc.key, where)} key '{exc.key}': {exc.problem}") from None


def _supervisor_tables(raw: Any, where: str) -> dict[str, tuple[dict[str, Any], str]]:
    """``[...supervisors]`` -> {name: (checked values, table label)}."""
    _expect(raw, dict, f"{where}", "a table of supervisor tables")
    tables: dict[str, tuple[dict[str, Any], str]] = {}
    base = where.removesuffix("]")
    for name, body in raw.items():
        label = f"{base}.{name}]"
        _expect(body, dict, label, "a table")
        try:
            validate_name("supervisor", name)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        tables[name] = (_supervisor_values(body, label), label)
    return tables


def resolve_environment(flag: str | None = None, in_file: str | None = None) -> tuple[str, str | None]:
    """The environment whose supervisors run, and what chose it (``None``: the default).

    ``--environment``, then ``EVALHARNESS_ENV``, then the file's ``environment`` key, then
    ``production``.
    """
    for value, source in ((flag, "--environment"), (os.environ.get(ENV_ENVIRONMENT), ENV_ENVIRONMENT)):
        if value:
            return validate_name("environment", value), source
    if in_file:
        return in_file, "the file's key 'environment'"
    return DEFAULT_ENVIRONMENT, None


def parse_config(data: dict[str, Any], path: Path, environment: str | None = None) -> Config:
    """Validate a decoded TOML document; every error names the file, table and key.

    Every environment is validated, not only the chosen one, so a mistake in one that is
    deployed elsewhere is found where the file is checked.
    """
    for key in data:
        if key not in _TOP_KEYS:
            raise _unknown(key, _TOP_KEYS, str(path))
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
    in_file = data.get("environment")
    if in_file is not None:
        _expect(in_file, str, f"{path}: key 'environment'", "a string")
        try:
            validate_name("environment", in_file)
        except ConfigError as exc:
            raise ConfigError(f"{path}: key 'environment': {exc}") from None

    metrics: dict[str, dict[str, Any]] = {}
    if "metrics" in data:
        # Imported here: the metric registry (and its plug-ins) is only needed when the file has metrics.
        from .errors import MetricError
        from .scorers import check_metric_config

        try:
            metrics = check_metric_config(data["metrics"], str(path))
        except MetricError as exc:
            raise ConfigError(str(exc)) from None

    from .providers.settings import check_provider_tables, check_sut_tables

    providers = check_provider_tables(data.get("providers", {}), str(path))
    sut_tables = check_sut_tables(data.get("sut", {}), str(path), providers)
    from .profiles import check_profile_tables

    profiles = check_profile_tables(data.get("profiles", {}), str(path))
    from .cache import check_run_table
    from .cost import check_price_tables

    run_table = check_run_table(data.get("run", {}), str(path))
    prices = check_price_tables(data.get("prices", {}), str(path))
    from .online import check_online_table

    online = check_online_table(data["online"], str(path)) if "online" in data else {}

    shared = _supervisor_tables(data.get("supervisors", {}), f"{path}: table [supervisors]")
    raw_envs = _expect(
        data.get("environments", {}), dict, f"{path}: table [environments]", "a table of environment tables"
    )
    env_tables: dict[str, dict[str, tuple[dict[str, Any], str]]] = {}
    for env_name, env_body in raw_envs.items():
        where = f"{path}: table [environments.{env_name}]"
        _expect(env_body, dict, where, "a table")
        try:
            validate_name("environment", env_name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for key in env_body:
            if key not in _ENV_KEYS:
                raise _unknown(key, _ENV_KEYS, where)
        env_tables[env_name] = _supervisor_tables(
            env_body.get("supervisors", {}), f"{path}: table [environments.{env_name}.supervisors]"
        )

    # shared supervisors run in every environment, so each must be valid on its own
    base = tuple(_build(name, values, dict.fromkeys(values, label), label) for name, (values, label) in shared.items())
    resolved: dict[str, tuple[SupervisorConfig, ...]] = {}
    for env_name, tables in env_tables.items():
        sups = []
        for name in [*shared, *(n for n in tables if n not in shared)]:
            values, origin, where = {}, {}, ""
            if name in shared:
                values, where = dict(shared[name][0]), shared[name][1]
                origin = dict.fromkeys(values, where)
            if name in tables:
                env_values, where = tables[name]
                for key, value in env_values.items():
                    alias = _ALIASES.get(key)
                    if alias and alias not in env_values:
                        values.pop(alias, None)
                    values[key] = value
                    origin[key] = where
            sups.append(_build(name, values, origin, where))
        resolved[env_name] = tuple(sups)

    chosen, source = resolve_environment(environment, in_file)
    if chosen not in resolved and source is not None and (resolved or source.startswith("the file")):
        defined = ", ".join(sorted(resolved)) or "none"
        raise ConfigError(
            f"{path}: environment {chosen!r} (from {source}) is not defined in the file (defined: {defined})"
        )
    return Config(
        path=path,
        redis_url=redis_url,
        prefix=prefix,
        state_dir=Path(state_dir).expanduser() if state_dir else None,
        imports=tuple(imports),
        supervisors=resolved.get(chosen, base),
        environment=chosen,
        environments=tuple(resolved),
        metrics=metrics,
        providers=providers,
        sut=sut_tables,
        profiles=profiles,
        run=run_table,
        prices=prices,
        online=online,
    )


# The file a program was told to use (--config): code that reads settings later, in the same
# process (a SUT adapter loaded in a worker), reads the same file.
_explicit_path: Path | None = None


def process_config_path() -> Path:
    """The file :func:`process_config` reads (which may not exist)."""
    if _explicit_path is not None:
        return _explicit_path
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    return Path.cwd() / DEFAULT_CONFIG_NAME


def process_config() -> Config:
    """The configuration this process was started with: the ``--config`` file it loaded, else
    ``EVALHARNESS_CONFIG``, else ``./evalharness.toml`` when present."""
    return load_config(_explicit_path)


def load_config(explicit: str | os.PathLike[str] | None = None, environment: str | None = None) -> Config:
    """Load the configuration file if one is given or present; an absent default file is no error.

    ``environment`` (the ``--environment`` flag) chooses whose supervisors ``Config.supervisors``
    holds; see ``resolve_environment``.
    """
    global _explicit_path
    if explicit is not None:
        path = Path(explicit)
        _explicit_path = path
    elif os.environ.get(ENV_CONFIG):
        path = Path(os.environ[ENV_CONFIG])
    else:
        path = Path.cwd() / DEFAULT_CONFIG_NAME
        if not path.exists():
            return Config(environment=resolve_environment(environment)[0])
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
    return parse_config(data, path, environment)


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
