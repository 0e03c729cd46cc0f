"""The metric registry: the four text metrics (exact-match, contains, rouge-l, regex), the families
in :mod:`evalharness.core.metrics`, plug-ins from the ``evalharness.metrics`` entry-point group, and
the parsing of metric specs (``retrieval-ndcg-at-k:k=10``) with their arguments.

Each definition follows ``METRICS.md`` to the letter; a problem with one (sample, metric) pair
is a :class:`ScoreError` whose ``kind`` names it, so one bad row never stops a run. A problem with
a metric's name, arguments or provider is a :class:`MetricError` raised before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .datasets import Sample
from .errors import MetricError
from .metrics import ENTRY_POINT_GROUP
from .metrics import offline as _offline
from .metrics import provider as _provider
from .metrics import retrieval as _retrieval
from .metrics.base import (
    Argument,
    MetricContext,
    MetricDefinition,
    ScoreError,
    Scorer,
    json_type,
    require_text,
)

__all__ = [
    "METRIC_NAMES",
    "DEFAULT_ROUGE_MAX_TOKENS",
    "Contains",
    "ExactMatch",
    "MetricSpec",
    "Regex",
    "ResolvedScorer",
    "RougeL",
    "RougeLResult",
    "ScoreError",
    "Scorer",
    "check_metric_config",
    "get_definition",
    "get_scorer",
    "load_plugins",
    "metric_definitions",
    "parse_delimited_pattern",
    "parse_metric_specs",
    "plugin_errors",
    "register_metric",
    "resolve_metrics",
    "rouge_l",
    "rouge_tokens",
]

DEFAULT_ROUGE_MAX_TOKENS = 1024

_json_type = json_type
_texts = require_text


@dataclass(frozen=True, slots=True)
class ExactMatch:
    """1.0 when the output equals the expected text code point for code point; no normalisation."""

    name: str = "exact-match"

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        out, exp = _texts(self.name, output, expected)
        return 1.0 if out == exp else 0.0


@dataclass(frozen=True, slots=True)
class Contains:
    """1.0 when the expected text occurs in the output (case-sensitive); an empty expected is an error."""

    name: str = "contains"

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        out, exp = _texts(self.name, output, expected)
        if exp == "":
            # '' is in every string: a score of 1.0 would hide a dataset mistake.
            raise ScoreError("empty-expected", "expected_output must not be empty for contains")
        return 1.0 if exp in out else 0.0


@functools.lru_cache(maxsize=65536)
def _is_token_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN"


def rouge_tokens(text: str) -> list[str]:
    """ROUGE-L tokens: maximal runs of Unicode letters and numbers after ``str.lower()``."""
    tokens: list[str] = []
    start = -1
    lowered = text.lower()
    for i, char in enumerate(lowered):
        if _is_token_char(char):
            if start < 0:
                start = i
        elif start >= 0:
            tokens.append(lowered[start:i])
            start = -1
    if start >= 0:
        tokens.append(lowered[start:])
    return tokens


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel over ``a`` (Hyyrö 2004).

    Equal to the O(nm) dynamic programme but about a hundred times faster at the 1024-token cap.
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


@dataclass(frozen=True, slots=True)
class RougeLResult:
    """ROUGE-L F1 with its parts: ``lcs`` tokens in common, ``precision`` over the output's tokens,
    ``recall`` over the expected tokens."""

    fmeasure: float
    precision: float
    recall: float
    lcs: int


def rouge_l(output: str, expected: str, max_tokens: int = DEFAULT_ROUGE_MAX_TOKENS) -> RougeLResult:
    """ROUGE-L (β = 1) of ``output`` against ``expected`` as defined in METRICS.md §1."""
    out_tokens = rouge_tokens(output)
    exp_tokens = rouge_tokens(expected)
    for side, tokens in (("output", out_tokens), ("expected_output", exp_tokens)):
        if len(tokens) > max_tokens:
            raise ScoreError(
                "too-many-tokens",
                f"{side} has {len(tokens)} tokens; rouge-l supports at most {max_tokens} tokens per field",
            )
    if not out_tokens and not exp_tokens:
        return RougeLResult(fmeasure=1.0, precision=1.0, recall=1.0, lcs=0)
    if not out_tokens or not exp_tokens:
        return RougeLResult(fmeasure=0.0, precision=0.0, recall=0.0, lcs=0)
    lcs = _lcs_length(exp_tokens, out_tokens)
    precision = lcs / len(out_tokens)
    recall = lcs / len(exp_tokens)
    total = precision + recall
    f = 0.0 if total == 0 else 2 * precision * recall / total
    return RougeLResult(fmeasure=f, precision=precision, recall=recall, lcs=lcs)


@dataclass(frozen=True, slots=True)
class RougeL:
    """ROUGE-L F1 over Unicode letter/number tokens; more than ``max_tokens`` on a side is an error."""

    name: str = "rouge-l"
    max_tokens: int = DEFAULT_ROUGE_MAX_TOKENS

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        out, exp = _texts(self.name, output, expected)
        return rouge_l(out, exp, self.max_tokens).fmeasure


_CLOSING = {"(": ")", "[": "]", "{": "}", "<": ">"}
_FLAGS: dict[str, re.RegexFlag] = {
    "i": re.IGNORECASE,
    "m": re.MULTILINE,
    "s": re.DOTALL,
    "x": re.VERBOSE,
    "u": re.NOFLAG,  # str patterns are always Unicode-aware in Python
}


@functools.lru_cache(maxsize=1024)
def parse_delimited_pattern(text: str) -> re.Pattern[str]:
    """Compile a delimited pattern such as ``/order #[0-9]+/i`` (METRICS.md §2)."""
    if text == "":
        raise ScoreError("empty-pattern", "expected_output is empty; regex needs a pattern such as /text/i")
    delimiter = text[0]
    if delimiter.isalnum() or delimiter == "\\" or delimiter.isspace():
        raise ScoreError(
            "bad-delimiter",
            f"pattern must start with a delimiter such as '/', not {delimiter!r} (write /pattern/flags)",
        )
    closing = _CLOSING.get(delimiter, delimiter)
    end = text.rfind(closing)
    if end < 1:
        raise ScoreError("missing-closing-delimiter", f"pattern has no closing delimiter {closing!r}")
    body, flag_text = text[1:end], text[end + 1 :]
    flags = re.NOFLAG
    for char in flag_text:
        if char not in _FLAGS:
            raise ScoreError(
                "unknown-flag", f"unknown regex flag {char!r} after the pattern; allowed flags: i, m, s, x, u"
            )
        flags |= _FLAGS[char]
    try:
        return re.compile(body, flags)
    except re.error as exc:
        raise ScoreError("invalid-pattern", f"invalid regular expression {body!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Regex:
    """1.0 when the delimited pattern in expected_output matches anywhere in the output."""

    name: str = "regex"

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        out, exp = _texts(self.name, output, expected)
        return 1.0 if parse_delimited_pattern(exp).search(out) is not None else 0.0


# --- the registry ------------------------------------------------------------------------------


def _fixed(scorer: Scorer) -> Any:
    def factory(args: Mapping[str, Any], context: MetricContext) -> Scorer:
        return scorer

    return factory


def _rouge(args: Mapping[str, Any], context: MetricContext) -> Scorer:
    return RougeL(max_tokens=int(args["max_tokens"]))


_TEXT_DEFINITIONS: tuple[MetricDefinition, ...] = (
    MetricDefinition("exact-match", "text", "1 when the output equals the expected text exactly", _fixed(ExactMatch())),
    MetricDefinition("contains", "text", "1 when the expected text occurs in the output", _fixed(Contains())),
    MetricDefinition(
        "rouge-l",
        "text",
        "ROUGE-L F1 over Unicode letter/number tokens",
        _rouge,
        (Argument("max_tokens", "int", DEFAULT_ROUGE_MAX_TOKENS, "most tokens per side; more is an error", minimum=1),),
    ),
    MetricDefinition("regex", "text", "1 when the delimited pattern in expected_output matches", _fixed(Regex())),
)

_BUILTINS: dict[str, MetricDefinition] = {
    d.name: d for d in (*_TEXT_DEFINITIONS, *_retrieval.DEFINITIONS, *_offline.DEFINITIONS, *_provider.DEFINITIONS)
}

METRIC_NAMES: tuple[str, ...] = tuple(sorted(_BUILTINS))
"""The built-in metrics; plug-ins add to :func:`metric_definitions`."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_lock = threading.Lock()
_registered: dict[str, MetricDefinition] = {}
_plugins: dict[str, MetricDefinition] | None = None
_plugin_errors: list[str] = []


def _check_definition(definition: Any, origin: str) -> MetricDefinition:
    if not isinstance(definition, MetricDefinition):
        raise TypeError(f"{origin} gave {type(definition).__name__}, not a MetricDefinition")
    if not _NAME.fullmatch(definition.name):
        raise ValueError(
            f"{origin}: metric name {definition.name!r} must be letters, digits, '-', '_' and '.' "
            "(no ':', ',' or '=', which metric specs use)"
        )
    for arg in definition.arguments:
        if not _ARG_NAME.fullmatch(arg.name):
            raise ValueError(f"{origin}: metric {definition.name!r} argument name {arg.name!r} is not an identifier")
    return definition


def register_metric(definition: MetricDefinition) -> None:
    """Add a metric for this process (a module named by ``imports`` or a test can call this).

    A name that is already taken, by a built-in, a plug-in or an earlier call, is a ValueError.
    """
    _check_definition(definition, "register_metric")
    with _lock:
        if definition.name in _BUILTINS or definition.name in _registered or definition.name in (_plugins or {}):
            raise ValueError(f"a metric called {definition.name!r} is already registered")
        _registered[definition.name] = definition


def unregister_metric(name: str) -> None:
    """Remove a metric added with :func:`register_metric` (tests use this to clean up)."""
    with _lock:
        _registered.pop(name, None)


def _expand(loaded: Any, origin: str) -> list[Any]:
    if callable(loaded) and not isinstance(loaded, MetricDefinition):
        loaded = loaded()
    if isinstance(loaded, MetricDefinition):
        return [loaded]
    if isinstance(loaded, Iterable) and not isinstance(loaded, str | bytes):
        return list(loaded)
    raise TypeError(f"{origin} gave {type(loaded).__name__}, not a MetricDefinition or a list of them")


def load_plugins(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> None:
    """(Re)load the ``evalharness.metrics`` entry points; a broken plug-in is recorded, not raised.

    Each entry point names a :class:`MetricDefinition`, a list of them, or a function returning
    either. A plug-in cannot replace a built-in metric or another plug-in's.
    """
    global _plugins
    found: dict[str, MetricDefinition] = {}
    errors: list[str] = []
    points = entry_points if entry_points is not None else importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for point in points:
        dist = getattr(point, "dist", None)
        origin = f"metric plug-in {point.name!r} ({point.value}" + (f", from {dist.name})" if dist else ")")
        try:
            definitions = [_check_definition(d, origin) for d in _expand(point.load(), origin)]
        except Exception as exc:
            errors.append(f"{origin} could not be loaded: {type(exc).__name__}: {exc}")
            continue
        source = f"plug-in {dist.name}" if dist else f"plug-in {point.value}"
        for definition in definitions:
            if definition.name in _BUILTINS or definition.name in found or definition.name in _registered:
                errors.append(f"{origin} registers {definition.name!r}, which is already taken; ignored")
                continue
            found[definition.name] = dataclasses.replace(definition, source=source)
    with _lock:
        _plugins = found
        _plugin_errors[:] = errors


def _all() -> dict[str, MetricDefinition]:
    if _plugins is None:
        load_plugins()
    with _lock:
        return {**_BUILTINS, **(_plugins or {}), **_registered}


def metric_definitions() -> tuple[MetricDefinition, ...]:
    """Every metric this process knows (built-in, plug-ins, registered), sorted by name."""
    table = _all()
    return tuple(table[name] for name in sorted(table))


def plugin_errors() -> tuple[str, ...]:
    """What went wrong loading plug-ins, one sentence each."""
    _all()
    with _lock:
        return tuple(_plugin_errors)


def _known() -> str:
    return ", ".join(sorted(_all()))


def _suggestion(name: str) -> str | None:
    close = difflib.get_close_matches(name.lower().replace("_", "-"), sorted(_all()), n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown_tail() -> str:
    errors = plugin_errors()
    return f" ({len(errors)} metric plug-in(s) failed to load: {'; '.join(errors)})" if errors else ""


def get_definition(name: str) -> MetricDefinition:
    """The definition called ``name``; an unknown name is a :class:`MetricError` with a suggestion."""
    definition = _all().get(name)
    if definition is None:
        hint = _suggestion(name)
        tail = f"; did you mean '{hint}'?" if hint else ""
        raise MetricError(f"unknown metric {name!r}; known metrics: {_known()}{tail}{_unknown_tail()}")
    return definition


def get_scorer(name: str, context: MetricContext | None = None) -> Scorer:
    """The scorer called ``name`` with its default arguments."""
    return _build(get_definition(name), get_definition(name).defaults(), context or MetricContext())


# --- specs and arguments -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One ``--metric`` value: a name and the ``key=value`` arguments given with it, in order."""

    name: str
    arguments: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        """The canonical spec, which is also the metric's name in the report."""
        if not self.arguments:
            return self.name
        return self.name + ":" + ",".join(f"{key}={value}" for key, value in self.arguments)


def _add_argument(spec: MetricSpec, part: str) -> MetricSpec:
    key, _, value = part.partition("=")
    key, value = key.strip(), value.strip()
    if not key:
        raise MetricError(f"metric {spec.name!r}: argument {part.strip()!r} has no name (write key=value)")
    if any(key == k for k, _ in spec.arguments):
        raise MetricError(f"metric {spec.name!r}: argument {key!r} is given twice")
    return MetricSpec(spec.name, (*spec.arguments, (key, value)))


def parse_metric_specs(entries: Sequence[str]) -> list[MetricSpec]:
    """Parse ``--metric`` values: ``NAME``, ``NAME:key=value,key=value``, several comma-separated.

    A comma-separated part with ``=`` (and no ``:`` before it) continues the previous metric's
    arguments; any other part starts a new metric. Duplicates are dropped, keeping the first.
    """
    specs: list[MetricSpec] = []
    for entry in entries:
        current: MetricSpec | None = None
        for part in entry.split(","):
            if not part.strip():
                continue
            colon, equals = part.find(":"), part.find("=")
            if colon >= 0 and (equals < 0 or colon < equals):
                name, rest = part[:colon].strip(), part[colon + 1 :]
                if not name:
                    raise MetricError(f"metric spec {part.strip()!r} has no metric name before ':'")
                current = MetricSpec(name)
                if not rest.strip():
                    raise MetricError(f"metric {name!r}: nothing after ':' (write {name}:key=value)")
                if "=" not in rest:
                    raise MetricError(
                        f"metric {name!r}: argument {rest.strip()!r} needs a value (write {rest.strip()}=VALUE)"
                    )
                current = _add_argument(current, rest)
            elif equals >= 0:
                if current is None:
                    raise MetricError(f"argument {part.strip()!r} has no metric before it (write NAME:{part.strip()})")
                current = _add_argument(current, part)
                specs[-1] = current
                continue
            else:
                current = MetricSpec(part.strip())
            specs.append(current)
    unique: dict[str, MetricSpec] = {}
    for spec in specs:
        unique.setdefault(spec.text, spec)
    return list(unique.values())


def _argument_of(definition: MetricDefinition, key: str) -> Argument | None:
    return definition.argument(key)


def _unknown_argument(definition: MetricDefinition, key: str) -> str:
    names = [arg.name for arg in definition.arguments]
    if not names:
        return f"metric {definition.name!r} takes no arguments, got {key!r}"
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"metric {definition.name!r} has no argument {key!r}{hint}; its arguments: {', '.join(names)}"


def check_metric_config(table: Any, where: str) -> dict[str, dict[str, Any]]:
    """Validate a config file's ``[metrics]`` table: ``[metrics.NAME]`` tables of argument values.

    ``where`` is the file's path; errors name it, the table and the key.
    """
    if not isinstance(table, dict):
        raise MetricError(f"{where}: key 'metrics': expected a table of [metrics.NAME] tables")
    checked: dict[str, dict[str, Any]] = {}
    for name, body in table.items():
        label = f"{where}: table [metrics.{name}]"
        if name not in _all():
            hint = _suggestion(name)
            tail = f"; did you mean {hint!r}?" if hint else ""
            raise MetricError(f"{where}: table [metrics] key {name!r}: unknown metric{tail} (known: {_known()})")
        if not isinstance(body, dict):
            raise MetricError(f"{where}: table [metrics] key {name!r}: expected a table of the metric's arguments")
        definition = _all()[name]
        values: dict[str, Any] = {}
        for key, value in body.items():
            arg = _argument_of(definition, key)
            if arg is None:
                raise MetricError(f"{label} key {key!r}: {_unknown_argument(definition, key)}")
            try:
                values[key] = arg.check(value)
            except ValueError as exc:
                raise MetricError(f"{label} key {key!r}: expected {exc}, got {value!r}") from None
        checked[name] = values
    return checked


@dataclass(frozen=True, slots=True)
class ResolvedScorer:
    """A scorer as a run uses it: ``name`` is the spec as written (the report's key), ``metric`` the
    registered metric and ``arguments`` every argument's effective value."""

    name: str
    metric: str
    arguments: Mapping[str, Any]
    scorer: Scorer

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        return self.scorer.score(output, expected, sample)


def computed_here(scorers: Sequence[Any]) -> list[Any]:
    """The resolved scorers whose metric calls no provider (judges and embeddings do): cheap
    enough to score each outcome as it arrives, for an eval run's running means."""
    return [s for s in scorers if isinstance(s, ResolvedScorer) and get_definition(s.metric).provider is None]


def _build(definition: MetricDefinition, args: Mapping[str, Any], context: MetricContext) -> Scorer:
    if definition.provider is not None and definition.provider not in context.providers:
        raise _provider.missing_provider(definition.name, definition.provider)
    try:
        scorer = definition.factory(args, context)
    except MetricError:
        raise
    except Exception as exc:
        raise MetricError(
            f"metric {definition.name!r} ({definition.source}) could not be set up: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(getattr(scorer, "score", None)):
        raise MetricError(
            f"metric {definition.name!r} ({definition.source}) built {type(scorer).__name__}, not a scorer"
        )
    return scorer


def resolve_metrics(
    names: Sequence[str],
    *,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    context: MetricContext | None = None,
) -> list[Scorer]:
    """Scorers for ``--metric`` values, every name, argument and provider checked before returning.

    Arguments come from the spec (``k=10``), then the config file's ``[metrics.NAME]`` table
    (``config``, already checked by :func:`check_metric_config`), then the metric's defaults.
    """
    specs = parse_metric_specs(names)
    if not specs:
        raise MetricError(f"no metrics given; known metrics: {_known()}")
    table = _all()
    unknown = list(dict.fromkeys(spec.name for spec in specs if spec.name not in table))
    if len(unknown) == 1:
        get_definition(unknown[0])  # raises, with the single-name message
    if unknown:
        hints = [f"'{hint}' for {name!r}" for name in unknown if (hint := _suggestion(name))]
        tail = f"; did you mean {', '.join(hints)}?" if hints else ""
        listed = ", ".join(repr(name) for name in unknown)
        raise MetricError(f"unknown metrics {listed}; known metrics: {_known()}{tail}{_unknown_tail()}")
    context = context or MetricContext()
    built: list[Scorer] = []
    for spec in specs:
        definition = table[spec.name]
        args = definition.defaults()
        for key, value in (config or {}).get(spec.name, {}).items():
            # Checked again here: a programmatic caller's table did not pass through the config file.
            arg = _argument_of(definition, key)
            if arg is None:
                raise MetricError(_unknown_argument(definition, key) + " (in the config file's [metrics] table)")
            try:
                args[key] = arg.check(value)
            except ValueError as exc:
                raise MetricError(
                    f"metric {spec.name!r} argument {key!r} in the config: expected {exc}, got {value!r}"
                ) from None
        for key, raw in spec.arguments:
            arg = _argument_of(definition, key)
            if arg is None:
                raise MetricError(_unknown_argument(definition, key))
            try:
                args[key] = arg.from_text(raw)
            except ValueError as exc:
                raise MetricError(f"metric {spec.name!r} argument {key!r}: expected {exc}, got {raw!r}") from None
        built.append(ResolvedScorer(spec.text, spec.name, args, _build(definition, args, context)))
    return built
