"""Token usage and cost that provider replies report, gathered per sample.

A SUT call runs inside :func:`collecting_usage`; every provider call it makes (through
:class:`~evalharness.core.providers.client.OpenAIClient` or the HTTP adapter) adds what its reply
carried.  A context variable, not a return value, carries it, so a user's own SUT that calls the
client gets its usage recorded too, and the SUT's signature stays ``input -> text``."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass
class Usage:
    """What one or more replies said they cost.  ``None`` fields were never reported."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    calls: int = 0
    model: str | None = None  # the model that answered, when the SUT says so (prices are per model)

    def add(self, other: Usage) -> None:
        """Add ``other``'s counts; its total is its prompt plus completion tokens when it gave
        those and no total (as a SUT's own ``record_usage(Usage(...))`` does)."""
        for name in (*TOKEN_FIELDS, "cost"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "total_tokens" and theirs is None:
                theirs = token_total(other.as_dict())
            if theirs is not None:
                setattr(self, name, theirs if mine is None else mine + theirs)
        self.calls += other.calls
        if other.model is not None:
            self.model = other.model

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in TOKEN_FIELDS}
        if self.cost is not None:
            out["cost"] = round(self.cost, 10)
        out["calls"] = self.calls
        if self.model is not None:
            out["model"] = self.model
        return out


def token_total(usage: Mapping[str, Any]) -> int | None:
    """A usage's total tokens: ``total_tokens``, else its prompt plus completion tokens when it
    reported both, else None."""
    prompt, completion, total = (_whole(usage.get(name)) for name in TOKEN_FIELDS)
    if total is not None:
        return total
    if prompt is not None and completion is not None:
        return prompt + completion
    return None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


def parse_usage(body: Mapping[str, Any]) -> Usage:
    """The usage of one reply: OpenAI's ``usage`` object (``prompt_tokens``, ``completion_tokens``,
    ``total_tokens``) and a ``cost`` in it or beside it, as gateways that price calls add it.
    Values that are not non-negative numbers are ignored rather than trusted."""
    raw = body.get("usage")
    usage = Usage(calls=1)
    if isinstance(raw, Mapping):
        for name in TOKEN_FIELDS:
            setattr(usage, name, _whole(raw.get(name)))
        if usage.total_tokens is None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
            usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    if isinstance(body.get("model"), str) and body["model"]:
        usage.model = body["model"]  # the model that answered prices the call (core/cost.py)
    cost = raw.get("cost") if isinstance(raw, Mapping) and "cost" in raw else body.get("cost")
    if not isinstance(cost, bool) and isinstance(cost, int | float) and math.isfinite(cost) and cost >= 0:
        usage.cost = float(cost)
    return usage


_SINK: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("evalharness_usage", default=None)


def record_usage(usage: Usage) -> None:
    """Add one reply's usage to the sample being evaluated (nothing happens outside one)."""
    sink = _SINK.get()
    if sink is not None:
        sink.add(usage)


@contextlib.contextmanager
def collecting_usage() -> Iterator[Usage]:
    """Gather the usage of every provider call made inside the block (in this task, and in
    threads started with a copy of its context, as ``asyncio.to_thread`` does)."""
    sink = Usage()
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)
