"""What a run cost: each sample's usage priced by the ``[prices."MODEL-PREFIX"]`` tables of the
config file, the run's totals split into reported, derived and unpriced, and the ``--budget-usd``
that stops a run's dispatching once its spend reaches the limit.

A SUT's usage (``core/providers/usage.py``) is *reported* when the provider's reply carried a
cost, *derived* when it carried tokens and a price matches the model, and *unpriced* otherwise;
unpriced usage is counted in tokens but never in money, so it never counts toward a budget."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, EvalHarnessError
from .providers.usage import Usage, collecting_usage

PRICE_KEYS = ("input_per_mtok", "output_per_mtok")
UNNAMED_MODEL = "(unnamed model)"


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float


def usd(value: float) -> str:
    """An amount in USD as the reports print it: four decimals, and two significant digits for
    an amount too small for them (``$0.0000081`` rather than ``$0.0000``)."""
    if value != 0 and abs(value) < 0.00005:
        return f"${value:.{1 - math.floor(math.log10(abs(value)))}f}"
    return f"${value:.4f}"


def check_price_tables(raw: Any, path: str) -> dict[str, Price]:
    """``[prices."gpt-4o"] input_per_mtok = 2.5, output_per_mtok = 10`` -> {prefix: Price}; an
    error names the file, the table and the key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{path}: table [prices] must be a table of [prices."MODEL-PREFIX"] tables')
    prices: dict[str, Price] = {}
    for prefix, body in raw.items():
        where = f'{path}: table [prices."{prefix}"]'
        if not isinstance(body, Mapping):
            raise ConfigError(f"{where} must be a table with {' and '.join(PRICE_KEYS)}")
        for key in body:
            if key not in PRICE_KEYS:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(PRICE_KEYS)})")
        values = []
        for key in PRICE_KEYS:
            value = body.get(key)
            if value is None:
                raise ConfigError(f"{where}: key {key!r} is missing (USD per million tokens)")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{where}: key {key!r} must be a number >= 0 (USD per million tokens), got {value!r}")
            values.append(float(value))
        prices[normalise_model(str(prefix))] = Price(*values)
    return prices


def normalise_model(name: str) -> str:
    """Lowercase, trimmed, the part after the last ``/`` (``openai/gpt-4o`` prices as ``gpt-4o``)."""
    return name.strip().lower().rsplit("/", 1)[-1]


def price_for(model: str | None, prices: Mapping[str, Price]) -> Price | None:
    """The price of the longest declared prefix of ``model`` (None: no price matches)."""
    if not model:
        return None
    name = normalise_model(model)
    best = max((p for p in prices if name.startswith(p)), key=len, default=None)
    return None if best is None else prices[best]


def sut_model(sut: str | None) -> str | None:
    """The model an ``openai:MODEL`` SUT asks, used when its usage does not name one."""
    if sut and sut.startswith("openai:"):
        return sut.removeprefix("openai:") or None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def sample_cost(
    usage: Mapping[str, Any] | None, prices: Mapping[str, Price], default_model: str | None = None
) -> dict[str, Any] | None:
    """One sample's cost: ``{"usd", "source": reported|derived|unpriced, "model"}``, None when it
    has no usage.  A reported cost wins over one derived from tokens."""
    if not usage:
        return None
    model = usage.get("model") if isinstance(usage.get("model"), str) else default_model
    reported = _number(usage.get("cost"))
    if reported is not None:
        return {"usd": round(reported, 10), "source": "reported", "model": model}
    price = price_for(model, prices)
    prompt, completion = _number(usage.get("prompt_tokens")), _number(usage.get("completion_tokens"))
    if price is not None and (prompt is not None or completion is not None):
        usd = ((prompt or 0.0) * price.input_per_mtok + (completion or 0.0) * price.output_per_mtok) / 1e6
        return {"usd": round(usd, 10), "source": "derived", "model": model}
    return {"usd": None, "source": "unpriced", "model": model}


def cost_summary(costs: Sequence[dict[str, Any] | None], usages: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """The run's totals over its samples' costs (see :func:`sample_cost`)."""
    reported = derived = 0.0
    counts = {"reported": 0, "derived": 0, "unpriced": 0}
    unpriced_models: set[str] = set()
    per_model: dict[str, dict[str, Any]] = {}
    for cost, usage in zip(costs, usages, strict=True):
        if cost is None:
            continue
        source = cost["source"]
        counts[source] += 1
        model = cost.get("model") or UNNAMED_MODEL
        entry = per_model.setdefault(
            model,
            {"model": model, "samples": 0, "prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0, "priced": True},
        )
        entry["samples"] += 1
        for name in ("prompt_tokens", "completion_tokens"):
            value = _number((usage or {}).get(name))
            entry[name] += int(value or 0)
        if source == "unpriced":
            entry["priced"] = False
            unpriced_models.add(model)
        else:
            entry["usd"] = round(entry["usd"] + cost["usd"], 10)
            if source == "reported":
                reported += cost["usd"]
            else:
                derived += cost["usd"]
    return {
        "total_usd": round(reported + derived, 10),
        "reported_usd": round(reported, 10),
        "derived_usd": round(derived, 10),
        "samples": counts,
        "complete": counts["unpriced"] == 0,
        "unpriced_models": sorted(unpriced_models),
        "models": sorted(per_model.values(), key=lambda e: (-e["usd"], e["model"])),
    }


def check_budget(value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise EvalHarnessError(f"--budget-usd must be a positive amount in USD, got {value:g}")
    return value


@dataclass
class Budget:
    """The spend of a running run against ``--budget-usd``: the run feeds it each outcome as it
    arrives and stops dispatching once :attr:`exhausted` (spend >= limit)."""

    limit_usd: float
    prices: Mapping[str, Price] = field(default_factory=dict)
    default_model: str | None = None
    on_change: Callable[[float], None] | None = None
    spent_usd: float = 0.0
    counted: int = 0  # outcomes whose cost was counted
    halted: bool = False  # set by the run when it stopped dispatching because of this budget

    def observe(self, value: Mapping[str, Any] | None) -> None:
        """Count one sample's outcome as the result store holds it (``{"result": {...}}``)."""
        if not value or "result" not in value:
            return
        cost = sample_cost((value.get("result") or {}).get("usage"), self.prices, self.default_model)
        if cost is None or cost["usd"] is None:
            return
        self.spent_usd += cost["usd"]
        self.counted += 1
        if self.on_change is not None:
            self.on_change(self.spent_usd)

    @property
    def exhausted(self) -> bool:
        return self.spent_usd >= self.limit_usd

    def reason(self, completed: int) -> str:
        return f"spent {usd(self.spent_usd)} of a {usd(self.limit_usd)} budget after {completed} sample(s)"

    def to_json(self, completed: int) -> dict[str, Any]:
        return {
            "limit_usd": self.limit_usd,
            "spent_usd": round(self.spent_usd, 10),
            "halted": self.halted,
            "reason": self.reason(completed) if self.halted else None,
        }


class MeteredScorer:
    """A scorer whose provider calls (an LLM judge, an embedding model) are gathered per sample id
    into ``sink``, so the report can price the judges too; everything else is the scorer's."""

    def __init__(self, inner: Any, sink: dict[str, Usage]) -> None:
        self._inner = inner
        self._sink = sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def score(self, output: str, expected: Any, sample: Any) -> Any:
        # the value is passed on as it is: the report checks that it is a finite number
        with collecting_usage() as usage:
            try:
                return self._inner.score(output, expected, sample)
            finally:
                if usage.calls:
                    self._sink.setdefault(str(sample.id), Usage()).add(usage)


def add_cost(
    report: dict[str, Any], prices: Mapping[str, Price], sut: str | None, judge_usage: Mapping[str, Usage] | None = None
) -> dict[str, Any] | None:
    """Price the report's samples in place (``samples[i]["cost"]``, and ``judge_usage`` /
    ``judge_cost`` for the metrics' own provider calls) and add ``report["cost"]``; nothing changes
    in a report without usage, so other reports keep their exact shape."""
    rows = report.get("samples") or []
    usages = [row.get("usage") for row in rows]
    judged = [
        judge_usage[str(row["id"])].as_dict() if judge_usage and str(row.get("id")) in judge_usage else None
        for row in rows
    ]
    if not any(usages) and not any(judged):
        return None
    model = sut_model(sut)
    costs = [sample_cost(u, prices, model) for u in usages]
    for row, cost in zip(rows, costs, strict=True):
        row["cost"] = cost
    summary = cost_summary(costs, usages)
    if any(judged):
        judge_costs = [sample_cost(u, prices) for u in judged]
        for row, usage, cost in zip(rows, judged, judge_costs, strict=True):
            row["judge_usage"], row["judge_cost"] = usage, cost
        judges = cost_summary(judge_costs, judged)
        summary["sut_usd"] = summary["total_usd"]
        summary["judges"] = judges
        summary["total_usd"] = round(summary["total_usd"] + judges["total_usd"], 10)
        summary["complete"] = summary["complete"] and judges["complete"]
    report["cost"] = summary
    return summary
