"""Locally computed metrics without a reference library: citation-groundedness, ordinal-distance and
the trajectory metrics, as defined in ``docs/metrics.md`` (after the padosoft feature inventory)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..datasets import Sample
from .base import Argument, MetricContext, MetricDefinition, ScoreError, Scorer, json_type

__all__ = ["DEFINITIONS", "Trajectory", "ToolCall", "parse_trajectory", "subset_match"]

_SPACES = re.compile(r"\s+")


# --- citation-groundedness ---------------------------------------------------------------------


def _quote_normal(text: str) -> str:
    return _SPACES.sub(" ", text.strip()).lower()


def _citation_list(metric: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ScoreError("invalid-metadata", f"metadata.citations must be a string or a list of strings for {metric}")
    wanted: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ScoreError(
                "invalid-metadata", f"metadata.citations entries must be strings for {metric}; got {json_type(item)}"
            )
        marker = item.strip()
        if marker and marker not in wanted:
            wanted.append(marker)
    return wanted


def _evidence(metric: str, value: Any) -> list[tuple[str, list[str]]]:
    if not isinstance(value, list) or not value:
        raise ScoreError(
            "invalid-metadata", f"metadata.citation_evidence must be a non-empty list of objects for {metric}"
        )
    spans: list[tuple[str, list[str]]] = []
    for i, entry in enumerate(value):
        where = f"metadata.citation_evidence[{i}]"
        if not isinstance(entry, dict):
            raise ScoreError("invalid-metadata", f"{where} must be an object with citation and quote for {metric}")
        citation = entry.get("citation")
        if not isinstance(citation, str) or not citation.strip():
            raise ScoreError("invalid-metadata", f"{where}.citation must be a non-empty string for {metric}")
        quotes = entry.get("quotes", entry.get("quote"))
        quote_list = [quotes] if isinstance(quotes, str) else quotes
        if not isinstance(quote_list, list) or not quote_list:
            raise ScoreError("invalid-metadata", f"{where} needs a 'quote' string or a 'quotes' list for {metric}")
        normal: list[str] = []
        for quote in quote_list:
            if not isinstance(quote, str) or not _quote_normal(quote):
                raise ScoreError("invalid-metadata", f"{where} quotes must be non-empty strings for {metric}")
            normal.append(_quote_normal(quote))
        spans.append((citation.strip(), normal))
    return spans


@dataclass(frozen=True, slots=True)
class CitationGroundedness:
    """Share of the required citations found in the output (marker mode), or of evidence spans whose
    citation and one of whose quotes both appear (evidence mode, when metadata.citation_evidence is set)."""

    name: str = "citation-groundedness"

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        if not isinstance(output, str):
            raise ScoreError("invalid-output", f"output must be a string for {self.name}; got {json_type(output)}")
        meta = sample.metadata
        if "citation_evidence" in meta:
            spans = _evidence(self.name, meta["citation_evidence"])
            text = _quote_normal(output)
            met = sum(1 for citation, quotes in spans if citation in output and any(q in text for q in quotes))
            return met / len(spans)
        wanted = _citation_list(self.name, meta.get("citations", []))
        if not wanted:
            raise ScoreError(
                "no-citations",
                f"{self.name} needs metadata.citations (markers such as [doc-1]) or metadata.citation_evidence",
            )
        return sum(1 for marker in wanted if marker in output) / len(wanted)


# --- ordinal-distance --------------------------------------------------------------------------


def _scale(metric: str, value: Any, where: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or any(not isinstance(v, str) or v == "" for v in value)
        or len(set(value)) != len(value)
    ):
        raise ScoreError(
            "invalid-scale", f"{where} must be a non-empty list of distinct non-empty strings for {metric}"
        )
    return tuple(value)


@dataclass(frozen=True, slots=True)
class OrdinalDistance:
    """1.0 for the expected label, 0.5 for a neighbour on the scale, 0.0 further away or off the scale."""

    name: str = "ordinal-distance"
    scale: tuple[str, ...] | None = None

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        if not isinstance(output, str):
            raise ScoreError("invalid-output", f"output must be a string for {self.name}; got {json_type(output)}")
        if "ordinal_scale" in sample.metadata:
            scale = _scale(self.name, sample.metadata["ordinal_scale"], "metadata.ordinal_scale")
        elif self.scale is not None:
            scale = self.scale
        else:
            raise ScoreError(
                "no-scale", f"{self.name} needs a scale: the argument scale=low|mid|high or metadata.ordinal_scale"
            )
        if not isinstance(expected, str) or expected not in scale:
            shown = repr(expected) if isinstance(expected, str) else json_type(expected)
            raise ScoreError(
                "invalid-expected", f"expected_output {shown} is not in the ordinal scale [{', '.join(scale)}]"
            )
        if output not in scale:
            return 0.0
        distance = abs(scale.index(output) - scale.index(expected))
        return 1.0 if distance == 0 else 0.5 if distance == 1 else 0.0


# --- trajectories ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Any = None


@dataclass(frozen=True, slots=True)
class Trajectory:
    """What an agent did: its tool calls in order, steps taken, approvals given and still pending."""

    tool_calls: tuple[ToolCall, ...]
    steps: int | None = None
    pending_approvals: int = 0
    approvals: tuple[str, ...] = field(default_factory=tuple)

    def step_count(self) -> int:
        return self.steps if self.steps is not None else len(self.tool_calls)

    def names(self) -> list[str]:
        return [call.name for call in self.tool_calls]


def _trajectory_error(metric: str, problem: str) -> ScoreError:
    return ScoreError(
        "no-trajectory",
        f"{metric} needs a trajectory: the output must be JSON with a 'trajectory' object "
        f"(or be the trajectory object, with 'tool_calls'); {problem}",
    )


def _int_field(metric: str, body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScoreError("invalid-trajectory", f"trajectory '{key}' must be an integer for {metric}; got {value!r}")
    return value


def parse_trajectory(metric: str, output: Any) -> Trajectory:
    """Read the trajectory a SUT reported in its JSON output."""
    if not isinstance(output, str):
        raise _trajectory_error(metric, f"got {json_type(output)}")
    try:
        value = json.loads(output)
    except (json.JSONDecodeError, RecursionError):
        raise _trajectory_error(metric, "the output is not valid JSON") from None
    if isinstance(value, dict) and isinstance(value.get("trajectory"), dict):
        body = value["trajectory"]
    elif isinstance(value, dict) and ("tool_calls" in value or "tools" in value):
        body = value
    else:
        raise _trajectory_error(metric, f"got {json_type(value)} without one")
    raw_calls = body.get("tool_calls", body.get("tools", []))
    if not isinstance(raw_calls, list):
        raise ScoreError("invalid-trajectory", f"trajectory 'tool_calls' must be a list for {metric}")
    calls: list[ToolCall] = []
    for i, entry in enumerate(raw_calls):
        name: Any
        args: Any
        if isinstance(entry, str):
            name, args = entry, None
        elif isinstance(entry, dict):
            name = entry.get("name", entry.get("tool"))
            args = entry.get("arguments", entry.get("args"))
        else:
            name, args = None, None
        if not isinstance(name, str) or name == "":
            raise ScoreError("invalid-trajectory", f"trajectory tool call {i} needs a non-empty 'name' for {metric}")
        # A call written without arguments had none: {} so that an empty expectation matches it.
        calls.append(ToolCall(name, {} if args is None else args))
    approvals = body.get("approvals", [])
    if not isinstance(approvals, list) or any(not isinstance(a, str) for a in approvals):
        raise ScoreError("invalid-trajectory", f"trajectory 'approvals' must be a list of strings for {metric}")
    pending = _int_field(metric, body, "pending_approvals") or 0
    return Trajectory(
        tool_calls=tuple(calls),
        steps=_int_field(metric, body, "steps"),
        pending_approvals=max(0, pending),
        approvals=tuple(approvals),
    )


_NUMERIC = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        return float(value)
    return None


def subset_match(expected: Any, actual: Any) -> bool:
    """``actual`` holds everything ``expected`` does: objects and lists key by key (recursively),
    numbers by value whether written as numbers or numeric strings (7 matches "7"), else equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and subset_match(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) >= len(expected)
            and all(subset_match(value, actual[i]) for i, value in enumerate(expected))
        )
    a, b = _as_number(expected), _as_number(actual)
    if a is not None and b is not None:
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(expected) is type(actual) and bool(expected == actual)


def _expectation(metric: str, sample: Sample, key: str, default: Sequence[str]) -> list[str]:
    block = sample.metadata.get("trajectory")
    raw = block.get(key) if isinstance(block, dict) else None
    if raw is None:
        return list(default)
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ScoreError(
            "invalid-metadata", f"metadata.trajectory.{key} must be a string or a list of strings for {metric}"
        )
    kept = [item for item in items if isinstance(item, str) and item != ""]
    return kept if kept else list(default)


def _fraction(met: int, total: int) -> float:
    return 1.0 if total == 0 else met / total


Rule = Callable[["TrajectoryMetric", Trajectory, Sample], float]


@dataclass(frozen=True, slots=True)
class TrajectoryMetric:
    """One trajectory metric; ``rule`` computes it and ``expected`` is the argument default list."""

    name: str
    rule: Rule
    expected: tuple[str, ...] = ()
    key: str = ""
    max_steps: int = 0

    def score(self, output: str, expected: Any, sample: Sample) -> float:
        return self.rule(self, parse_trajectory(self.name, output), sample)


def _tool_called(m: TrajectoryMetric, t: Trajectory, s: Sample) -> float:
    wanted, called = _expectation(m.name, s, m.key, m.expected), set(t.names())
    return _fraction(sum(1 for name in wanted if name in called), len(wanted))


def _tool_not_called(m: TrajectoryMetric, t: Trajectory, s: Sample) -> float:
    forbidden, called = _expectation(m.name, s, m.key, m.expected), set(t.names())
    return _fraction(sum(1 for name in forbidden if name not in called), len(forbidden))


def _tool_call_order(m: TrajectoryMetric, t: Trajectory, s: Sample) -> float:
    order = _expectation(m.name, s, m.key, m.expected)
    names = iter(t.names())
    # A subsequence test: each expected name must be found after the previous one.
    return 1.0 if all(any(n == want for n in names) for want in order) else 0.0


def _approval_gated(m: TrajectoryMetric, t: Trajectory, s: Sample) -> float:
    required, given = _expectation(m.name, s, m.key, m.expected), set(t.approvals)
    return _fraction(sum(1 for name in required if name in given), len(required))


def _no_pending(m: TrajectoryMetric, t: Trajectory, s: Sample) -> float:
    return 1.0 if t.pending_approvals == 0 else 0.0


def _steps_below(m: TrajectoryMetric, t: Trajectory, s: Sample) -> float:
    block = s.metadata.get("trajectory")
    raw = block.get("max_steps") if isinstance(block, dict) else None
    if raw is None:
        limit = m.max_steps
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit():
        limit = int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        limit = raw
    else:
        raise ScoreError("invalid-metadata", f"metadata.trajectory.max_steps must be an integer for {m.name}")
    if limit < 1:
        return 1.0  # no step budget
    return 1.0 if t.step_count() <= limit else 0.0


def _tool_called_with(m: TrajectoryMetric, t: Trajectory, s: Sample) -> float:
    block = s.metadata.get("trajectory")
    raw = block.get("tool_arguments") if isinstance(block, dict) else None
    if raw is None:
        return 1.0
    if not isinstance(raw, list):
        raise ScoreError("invalid-metadata", f"metadata.trajectory.tool_arguments must be a list for {m.name}")
    met = 0
    for i, entry in enumerate(raw):
        tool = entry.get("tool", entry.get("name")) if isinstance(entry, dict) else None
        if not isinstance(tool, str) or tool == "":
            raise ScoreError(
                "invalid-metadata", f"metadata.trajectory.tool_arguments[{i}] needs a 'tool' name for {m.name}"
            )
        args = entry.get("arguments", entry.get("args", {}))
        if any(call.name == tool and subset_match(args, call.arguments) for call in t.tool_calls):
            met += 1
    return _fraction(met, len(raw))


def _list_arg(name: str, help_text: str) -> Argument:
    return Argument(name, "list", None, help_text)


def _trajectory(
    name: str, summary: str, rule: Rule, key: str = "", argument: Argument | None = None
) -> MetricDefinition:
    def factory(args: Mapping[str, Any], context: MetricContext) -> Scorer:
        values = args.get(argument.name) if argument is not None else None
        if argument is not None and argument.type == "int":
            return TrajectoryMetric(name=name, rule=rule, key=key, max_steps=int(values or 0))
        return TrajectoryMetric(name=name, rule=rule, key=key, expected=tuple(values or ()))

    return MetricDefinition(
        name=name,
        kind="trajectory",
        summary=summary,
        factory=factory,
        arguments=(argument,) if argument is not None else (),
    )


def _citation(args: Mapping[str, Any], context: MetricContext) -> Scorer:
    return CitationGroundedness()


def _ordinal(args: Mapping[str, Any], context: MetricContext) -> Scorer:
    scale = args.get("scale")
    return OrdinalDistance(scale=tuple(scale) if scale else None)


DEFINITIONS: tuple[MetricDefinition, ...] = (
    MetricDefinition(
        name="citation-groundedness",
        kind="citation",
        summary="share of metadata.citations (or citation_evidence spans) the output cites",
        factory=_citation,
    ),
    MetricDefinition(
        name="ordinal-distance",
        kind="classification",
        summary="1 for the expected label, 0.5 for a neighbour on the scale, else 0",
        factory=_ordinal,
        arguments=(_list_arg("scale", "the ordered labels; metadata.ordinal_scale overrides it per sample"),),
    ),
    _trajectory(
        "tool-called",
        "share of the expected tools the agent called",
        _tool_called,
        "tools",
        _list_arg("tools", "tools that must be called when a sample has no metadata.trajectory.tools"),
    ),
    _trajectory(
        "tool-not-called",
        "share of the forbidden tools the agent did not call",
        _tool_not_called,
        "forbidden_tools",
        _list_arg("forbidden_tools", "tools that must not be called (default for metadata.trajectory.forbidden_tools)"),
    ),
    _trajectory(
        "tool-called-with",
        "share of metadata.trajectory.tool_arguments matched by a call with those arguments",
        _tool_called_with,
    ),
    _trajectory(
        "tool-call-order",
        "1 when the expected tools were called in this order (a subsequence)",
        _tool_call_order,
        "order",
        _list_arg("order", "the expected order (default for metadata.trajectory.order)"),
    ),
    _trajectory(
        "steps-below",
        "1 when the agent took at most max_steps steps",
        _steps_below,
        "max_steps",
        Argument(
            "max_steps", "int", 0, "step budget when a sample has no metadata.trajectory.max_steps (0: none)", minimum=0
        ),
    ),
    _trajectory("no-pending-approvals", "1 when no approval is left pending", _no_pending),
    _trajectory(
        "approval-gated",
        "share of the required approvals that were given",
        _approval_gated,
        "requires_approval",
        _list_arg(
            "requires_approval", "approvals that must be given (default for metadata.trajectory.requires_approval)"
        ),
    ),
)
