"""Deterministic text metrics (exact-match, contains, rouge-l, regex) and their lookup by name.

Each definition follows ``METRICS.md`` §1–2 to the letter; a problem with one (sample, metric) pair
is a :class:`ScoreError` whose ``kind`` names it, so one bad row never stops a run.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .datasets import Sample
from .errors import MetricError

__all__ = [
    "METRIC_NAMES",
    "DEFAULT_ROUGE_MAX_TOKENS",
    "Contains",
    "ExactMatch",
    "Regex",
    "RougeL",
    "RougeLResult",
    "ScoreError",
    "Scorer",
    "get_scorer",
    "parse_delimited_pattern",
    "resolve_metrics",
    "rouge_l",
    "rouge_tokens",
]

DEFAULT_ROUGE_MAX_TOKENS = 1024


class ScoreError(Exception):
    """One (sample, metric) pair could not be scored; ``kind`` is a stable, hyphenated name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Scorer(Protocol):
    """A metric: ``score`` returns a value in [0, 1] or raises :class:`ScoreError`."""

    @property
    def name(self) -> str: ...

    def score(self, output: str, expected: Any, sample: Sample) -> float: ...


def _json_type(value: Any) -> str:
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


def _texts(metric: str, output: Any, expected: Any) -> tuple[str, str]:
    # Outputs come from arbitrary SUT code and expected values from JSON/YAML: check both at run time.
    if not isinstance(output, str):
        raise ScoreError("invalid-output", f"output must be a string for {metric}; got {_json_type(output)}")
    if not isinstance(expected, str):
        raise ScoreError(
            "invalid-expected", f"expected_output must be a string for {metric}; got {_json_type(expected)}"
        )
    return output, expected


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


_SCORERS: dict[str, Scorer] = {s.name: s for s in (ExactMatch(), Contains(), RougeL(), Regex())}

METRIC_NAMES: tuple[str, ...] = tuple(sorted(_SCORERS))


def _known() -> str:
    return ", ".join(METRIC_NAMES)


def _suggestion(name: str) -> str | None:
    close = difflib.get_close_matches(name.lower().replace("_", "-"), METRIC_NAMES, n=1, cutoff=0.6)
    return close[0] if close else None


def get_scorer(name: str) -> Scorer:
    """The scorer called ``name``; an unknown name is a :class:`MetricError` with a suggestion."""
    scorer = _SCORERS.get(name)
    if scorer is None:
        hint = _suggestion(name)
        tail = f"; did you mean '{hint}'?" if hint else ""
        raise MetricError(f"unknown metric {name!r}; known metrics: {_known()}{tail}")
    return scorer


def resolve_metrics(names: Sequence[str]) -> list[Scorer]:
    """Scorers for ``names``, checked all at once before any work starts.

    Each entry may hold several comma-separated names (``"exact-match,contains"``); surrounding
    whitespace is ignored and duplicates are dropped, keeping the first.
    """
    wanted: list[str] = []
    for entry in names:
        for part in entry.split(","):
            name = part.strip()
            if name and name not in wanted:
                wanted.append(name)
    if not wanted:
        raise MetricError(f"no metrics given; known metrics: {_known()}")
    unknown = [name for name in wanted if name not in _SCORERS]
    if len(unknown) == 1:
        get_scorer(unknown[0])  # raises, with the single-name message
    if unknown:
        hints = [f"'{hint}' for {name!r}" for name in unknown if (hint := _suggestion(name))]
        tail = f"; did you mean {', '.join(hints)}?" if hints else ""
        listed = ", ".join(repr(name) for name in unknown)
        raise MetricError(f"unknown metrics {listed}; known metrics: {_known()}{tail}")
    return [_SCORERS[name] for name in wanted]
