"""What every metric is made of: the scorer protocol, the per-(sample, metric) error, and the
declaration of a metric (name, kind, arguments, provider) that the registry and plug-ins use."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..datasets import Sample

__all__ = [
    "ARGUMENT_TYPES",
    "PROVIDER_KINDS",
    "Argument",
    "MetricContext",
    "MetricDefinition",
    "ScoreError",
    "Scorer",
    "define_metric",
    "json_type",
    "require_text",
]

ARGUMENT_TYPES = ("int", "float", "bool", "str", "list")
# What a provider-backed metric needs from the configured providers.
PROVIDER_KINDS = ("embeddings", "chat")


class ScoreError(Exception):
    """One (sample, metric) pair could not be scored; ``kind`` is a stable, hyphenated name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@runtime_checkable
class Scorer(Protocol):
    """A metric: ``score`` returns a value in [0, 1] or raises :class:`ScoreError`."""

    @property
    def name(self) -> str: ...

    def score(self, output: str, expected: Any, sample: Sample) -> float: ...


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, as a user sees it in their dataset."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def require_text(metric: str, output: Any, expected: Any) -> tuple[str, str]:
    """Both sides as text; outputs come from arbitrary SUT code and expected values from JSON/YAML."""
    if not isinstance(output, str):
        raise ScoreError("invalid-output", f"output must be a string for {metric}; got {json_type(output)}")
    if not isinstance(expected, str):
        raise ScoreError(
            "invalid-expected", f"expected_output must be a string for {metric}; got {json_type(expected)}"
        )
    return output, expected


_DIGITS = re.compile(r"[0-9]+")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True, slots=True)
class Argument:
    """One argument a metric accepts, on the command line (``name:key=value``) or in the config file.

    ``type`` is one of int, float, bool, str or list (of non-empty strings; ``a|b|c`` on the command
    line, a TOML array in the config file). ``minimum`` bounds int and float values from below.
    """

    name: str
    type: str
    default: Any
    help: str
    minimum: float | None = None

    def __post_init__(self) -> None:
        if self.type not in ARGUMENT_TYPES:
            raise ValueError(f"argument {self.name!r}: type must be one of {', '.join(ARGUMENT_TYPES)}")

    def describe(self) -> str:
        """What a valid value looks like, for error messages and ``scorers list``."""
        if self.type == "int":
            if self.minimum == 1:
                return "a positive integer"
            return "an integer" if self.minimum is None else f"an integer >= {self.minimum:g}"
        if self.type == "float":
            return "a number" if self.minimum is None else f"a number >= {self.minimum:g}"
        if self.type == "bool":
            return "true or false"
        if self.type == "list":
            return "a list of distinct non-empty strings"
        return "a string"

    def from_text(self, raw: str) -> Any:
        """The value of a command-line ``key=raw``; raises ValueError with what was expected."""
        if self.type == "int":
            # Digits only: '+5', ' 5' and '5.0' are more likely mistakes than intentions.
            if not _DIGITS.fullmatch(raw):
                raise ValueError(self.describe())
            return self.check(int(raw))
        if self.type == "float":
            try:
                number = float(raw)
            except ValueError:
                raise ValueError(self.describe()) from None
            return self.check(number)
        if self.type == "bool":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError(self.describe())
        if self.type == "list":
            return self.check(raw.split("|"))
        return self.check(raw)

    def check(self, value: Any) -> Any:
        """A config-file (or already converted) value, normalised; raises ValueError when invalid."""
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(self.describe())
            if self.minimum is not None and value < self.minimum:
                raise ValueError(self.describe())
            return value
        if self.type == "float":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(self.describe())
            if self.minimum is not None and value < self.minimum:
                raise ValueError(self.describe())
            return float(value)
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ValueError(self.describe())
            return value
        if self.type == "list":
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(self.describe())
            items = tuple(value)
            if any(not isinstance(v, str) or v == "" for v in items) or len(set(items)) != len(items):
                raise ValueError(self.describe())
            return items
        if not isinstance(value, str):
            raise ValueError(self.describe())
        return value


@dataclass(frozen=True, slots=True)
class MetricContext:
    """What a metric may need beyond its arguments: provider clients by kind (``embeddings``, ``chat``).

    The provider-backed metrics refuse to start when the kind they need is absent.
    """

    providers: Mapping[str, Any] = field(default_factory=dict)


Factory = Callable[[Mapping[str, Any], MetricContext], Scorer]


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    """A metric as the registry knows it.

    ``factory(arguments, context)`` builds the scorer once per run, with every argument present
    (defaults filled in). ``kind`` groups metrics in ``evalharness scorers list`` (text, retrieval,
    classification, citation, trajectory, embedding, judge, or a plug-in's own word). ``provider`` is
    the provider kind the metric calls, or None for metrics computed locally.
    """

    name: str
    kind: str
    summary: str
    factory: Factory
    arguments: tuple[Argument, ...] = ()
    provider: str | None = None
    source: str = "built-in"

    def argument(self, name: str) -> Argument | None:
        for arg in self.arguments:
            if arg.name == name:
                return arg
        return None

    def defaults(self) -> dict[str, Any]:
        return {arg.name: arg.default for arg in self.arguments}


@dataclass(frozen=True, slots=True)
class _FunctionScorer:
    name: str
    func: Callable[..., float]
    arguments: Mapping[str, Any]

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        return self.func(output, expected, sample, **self.arguments)


def define_metric(
    name: str,
    *,
    kind: str = "custom",
    summary: str = "",
    arguments: Sequence[Argument] = (),
) -> Callable[[Callable[..., float]], MetricDefinition]:
    """Turn ``func(output, expected, sample, **arguments) -> float`` into a metric definition.

    The decorated name is the :class:`MetricDefinition` to point an ``evalharness.metrics`` entry
    point at; raise :class:`ScoreError` from ``func`` for a sample it cannot score.
    """

    def wrap(func: Callable[..., float]) -> MetricDefinition:
        def factory(args: Mapping[str, Any], context: MetricContext) -> Scorer:
            return _FunctionScorer(name, func, dict(args))

        doc = (func.__doc__ or "").strip().splitlines()
        return MetricDefinition(
            name=name,
            kind=kind,
            summary=summary or (doc[0] if doc else ""),
            factory=factory,
            arguments=tuple(arguments),
        )

    return wrap
