"""Run profiles: named sets of `evalharness run` options (``--profile NAME``), built in (``ci``,
``smoke``, ``nightly``) or from ``[profiles.NAME]`` tables of the configuration file.

The order of precedence is: an explicit flag, then the profile, then the command's default.  The
value ``none`` (in a profile or as a flag's value) clears what a profile would give: the option
falls back to the command's default, which for the optional limits (``batch_timeout``,
``rate_limit``, ``limit``) means "no limit".  Resolution is a pure function of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, EvalHarnessError, MetricError
from .evaljobs import DEFAULT_EVAL_QUEUE

if TYPE_CHECKING:
    from .config import Config

NONE = "none"
"""The sentinel that clears an inherited value (compared case-insensitively, surrounding spaces ignored)."""

# option -> (kind, the command's default)
#   int1: an integer >= 1; int0: an integer >= 0; pos: a number > 0; mode; queue; metrics
OPTIONS: dict[str, tuple[str, Any]] = {
    "mode": ("mode", "lazy-parallel"),
    "concurrency": ("int1", 10),
    "queue": ("queue", DEFAULT_EVAL_QUEUE),
    "timeout": ("pos", 60.0),
    "tries": ("int1", 3),
    "batch_timeout": ("pos", None),
    "rate_limit": ("pos", None),
    "result_ttl": ("int1", 86_400),
    "repetitions": ("int1", 1),
    "metrics": ("metrics", ()),
    "limit": ("int1", None),
    "workers": ("int0", 0),
}
DEFAULTS: dict[str, Any] = {name: default for name, (_kind, default) in OPTIONS.items()}
# what only executing samples uses: a run of saved outputs (--outputs) applies none of it
SAMPLE_EXECUTION = frozenset(OPTIONS) - {"metrics", "limit"}
MODES = ("serial", "lazy-parallel")

BUILTIN: dict[str, dict[str, Any]] = {
    # CI: modest fan-out that shares runners well, a bounded run so a stuck provider fails the
    # job in half an hour instead of at the CI system's own limit, a try fewer than by default.
    "ci": {"concurrency": 8, "timeout": 30.0, "tries": 2, "batch_timeout": 1800.0},
    # smoke: does the SUT answer at all? Ten samples, in this process, no retries to hide a fault.
    "smoke": {"mode": "serial", "limit": 10, "tries": 1, "timeout": 30.0},
    # nightly: the whole dataset three times (so unstable samples show), patient with slow
    # providers, and outputs kept three days so Monday can still rebuild or resume Friday's run.
    "nightly": {"concurrency": 32, "timeout": 120.0, "tries": 5, "repetitions": 3, "result_ttl": 259_200},
}


def is_none(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() == NONE


def check_value(name: str, value: Any) -> Any:
    """``value`` of option ``name`` as the run uses it, or :data:`NONE`; ValueError says what is wrong."""
    kind, _default = OPTIONS[name]
    if is_none(value) and kind != "queue":  # a queue may be called "none"
        return NONE
    if kind in ("int1", "int0"):
        low = 1 if kind == "int1" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f'expected an integer >= {low} or "none", got {value!r}')
        return value
    if kind == "pos":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ValueError(f'expected a number > 0 or "none", got {value!r}')
        return float(value)
    if kind == "mode":
        if value not in MODES:
            raise ValueError(f'expected one of {", ".join(MODES)} or "none", got {value!r}')
        return value
    if kind == "queue":
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected a non-empty queue name, got {value!r}")
        return value
    # metrics: a list of metric specs, or one string of comma-separated specs
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(m, str) and m.strip() for m in items):
        raise ValueError(f'expected a list of metric names (or "none"), got {value!r}')
    return tuple(items)


def check_profile_tables(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    """The ``[profiles.NAME]`` tables of a configuration file, each value checked; an error names
    the file, the table and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: table [profiles]: expected a table of profile tables, got {type(raw).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for name, body in raw.items():
        table = f"{where}: table [profiles.{name}]"
        if not name.strip() or name != name.strip():
            raise ConfigError(f"{table}: a profile name must be non-empty, without surrounding spaces")
        if not isinstance(body, dict):
            raise ConfigError(f"{table}: expected a table of run options, got {type(body).__name__} {body!r}")
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key not in OPTIONS:
                from .config import _unknown  # the file's other tables word it the same way

                raise _unknown(key, set(OPTIONS), table)
            try:
                values[key] = check_value(key, value)
            except ValueError as exc:
                raise ConfigError(f"{table}: key {key!r}: {exc}") from None
        out[name] = values
    return out


def all_profiles(from_file: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every profile a run can name: the built-in ones with the file's keys laid over them, key
    by key, and the file's own."""
    merged = {name: dict(values) for name, values in BUILTIN.items()}
    for name, values in from_file.items():
        merged.setdefault(name, {}).update(values)
    return merged


@dataclass(frozen=True)
class Resolved:
    values: dict[str, Any]  # every option in OPTIONS, as the run uses it
    profile: str | None
    sources: dict[str, str]  # option -> "flag" | "profile" | "default"

    def to_json(self, unused: Collection[str] = ()) -> dict[str, Any]:
        """What the report records: the profile and the options it gave that no flag overrode,
        less the ``unused`` ones (the run had no use for them, as saved outputs call no SUT)."""
        given = {
            k: _jsonable(self.values[k]) for k, src in self.sources.items() if src == "profile" and k not in unused
        }
        return {"name": self.profile, "values": given}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def resolve(
    profile: str | None,
    from_file: Mapping[str, Mapping[str, Any]],
    flags: Mapping[str, Any],
    explicit: Collection[str],
    file_label: str | None = None,
) -> Resolved:
    """The run's options: ``flags`` named in ``explicit`` (given on the command line) win over the
    profile's values, which win over :data:`DEFAULTS`; :data:`NONE` anywhere falls back to the
    default.  ``flags`` values are already checked (by the command line's types)."""
    chosen: Mapping[str, Any] = {}
    if profile is not None:
        known = all_profiles(from_file)
        if not profile.strip():
            raise EvalHarnessError(
                "--profile needs a profile name (built in: ci, smoke, nightly); omit the flag for no profile"
            )
        if profile not in known:
            own = sorted(set(from_file) - set(BUILTIN))
            where = f"; in {file_label}: {', '.join(own)}" if own and file_label else ""
            hint = (
                ""
                if file_label
                else " (no configuration file was read: define it in a [profiles.NAME] table of --config)"
            )
            raise EvalHarnessError(
                f"--profile {profile!r}: no such profile (built in: {', '.join(sorted(BUILTIN))}{where}){hint}"
            )
        chosen = known[profile]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, default in DEFAULTS.items():
        if name in explicit and name in flags:
            value, source = flags[name], "flag"
        elif name in chosen:
            value, source = chosen[name], "profile"
        else:
            value, source = default, "default"
        if is_none(value) and OPTIONS[name][0] != "queue":
            value, source = default, "default"
        values[name] = value
        sources[name] = source
    return Resolved(values, profile, sources)


def profile_metrics_error(where: str, profile: str, exc: Exception) -> MetricError:
    """A metric a ``[profiles.NAME]`` table names is wrong: the error names the file, the table
    and the key, as the file's other errors do."""
    return MetricError(f"{where}: table [profiles.{profile}]: key 'metrics': {exc}")


def check_profile_metrics(config: Config) -> None:
    """Every [profiles.NAME] table's metrics name metrics this process knows (plug-ins too):
    loading the file checks their form only (`evalharness config check` checks the names)."""
    from .scorers import get_definition, parse_metric_specs

    for name, values in config.profiles.items():
        metrics = values.get("metrics")
        if not isinstance(metrics, tuple):
            continue  # none, or not given
        try:
            for spec in parse_metric_specs(list(metrics)):
                get_definition(spec.name)
        except MetricError as exc:
            raise profile_metrics_error(str(config.path), name, exc) from None
