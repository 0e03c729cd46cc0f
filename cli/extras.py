"""The response cache, the cost budget and the gates of ``evalharness run``: their flags, checked
before anything is dispatched, and what they add to the run and its report."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from evalharness.core.baselines import (
    Gates,
    check_gates,
    compare,
    comparison_lines,
    gate_failures,
    summarise_report,
)
from evalharness.core.cache import CacheSettings, ResponseCache, cache_settings, cache_summary
from evalharness.core.config import Config
from evalharness.core.connection import async_client
from evalharness.core.cost import Budget, MeteredScorer, add_cost, check_budget, price_for, sut_model, usd
from evalharness.core.datasets import Dataset
from evalharness.core.errors import ConfigError
from evalharness.core.providers.usage import Usage
from evalharness.core.report import write_report
from evalharness.core.report_formats import check_output_paths

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option(
        "--cache/--no-cache",
        "cache",
        default=None,
        help=(
            "Reuse the SUT outputs kept in Redis for the same SUT fingerprint and input, and keep the new ones "
            "(failures never). Default: [run] cache in the config file, else off. See docs/runs.md."
        ),
    ),
    click.option(
        "--cache-ttl",
        type=click.IntRange(min=1),
        metavar="SECONDS",
        help="Seconds a cached output is kept (default: [run] cache_ttl, else 604800 = 7 days).",
    ),
    click.option(
        "--budget-usd",
        type=float,
        metavar="USD",
        help=(
            "Stop dispatching once the run's priced spend reaches USD: queued samples are removed, running ones "
            "finish, the partial report says 'halted on budget' (exit 1). Prices: [prices.\"MODEL-PREFIX\"] in the "
            "config file."
        ),
    ),
]
_GATE_OPTIONS = [
    click.option(
        "--compare",
        "compare_name",
        metavar="NAME",
        help="Compare per sample and per metric with the baseline NAME (evalharness baseline promote).",
    ),
    click.option(
        "--max-regressions", type=int, metavar="N", help="With --compare: exit 1 when more than N samples regressed."
    ),
    click.option(
        "--confident-only",
        is_flag=True,
        help=(
            "With --max-regressions: count only regressions larger than the resolution (--compare-epsilon, or what "
            "the repetitions resolve)."
        ),
    ),
    click.option(
        "--compare-epsilon",
        type=float,
        metavar="E",
        help="With --compare: the pass-rate or score change (0..1) below which a change is noise.",
    ),
    click.option(
        "--comparison-out",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="With --compare: write the comparison (JSON, evalharness.comparison.v1) here.",
    ),
    click.option(
        "--fail-under",
        "fail_under",
        multiple=True,
        metavar="METRIC=VALUE",
        help="Exit 1 when METRIC's mean is below VALUE; repeat for several metrics.",
    ),
]


_FORMAT_OPTIONS = [
    click.option(
        "--md", "md_path", type=click.Path(dir_okay=False), metavar="FILE", help="Also write the report as Markdown."
    ),
    click.option(
        "--html",
        "html_path",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Also write the report as one self-contained HTML file (no script, no network).",
    ),
    click.option(
        "--csv",
        "csv_path",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Also write one CSV row per sample and metric.",
    ),
    click.option(
        "--junit",
        "junit_path",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Also write JUnit XML for CI: a testcase per sample.",
    ),
]


def format_options(func: F) -> F:
    """The report-format flags that ``evalharness run`` and ``evalharness report`` share."""
    for option in reversed(_FORMAT_OPTIONS):
        func = option(func)
    return func


def run_extra_options(func: F) -> F:
    """The flags of ``evalharness run``: cache, budget and gates."""
    for option in reversed([*_OPTIONS, *_GATE_OPTIONS]):
        func = option(func)
    return func


def gate_options(func: F) -> F:
    """The gate flags alone, for ``evalharness report RUN_ID``."""
    for option in reversed(_GATE_OPTIONS):
        func = option(func)
    return func


@dataclass
class RunExtras:
    """What the run's cache, budget and gates need, and what they add to its report."""

    cache: CacheSettings
    budget_limit: float | None
    gates: Gates
    config: Config
    sut: str | None = None
    prefilled: dict[int, dict[str, Any]] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    budget: Budget | None = None
    stored: int = 0
    comparison: dict[str, Any] | None = None
    gate_problems: list[str] = field(default_factory=list)
    judge_usage: dict[str, Usage] = field(default_factory=dict)  # the metrics' provider calls, by sample id
    repetitions: int = 1  # the run's units are its samples, each this many times in a row
    # where and for which SUT code (set by prepare): the cache is read and written there
    url: str = ""
    prefix: str = ""
    fingerprint: str | None = None

    def metered(self, scorers: Any) -> list[Any]:
        """The scorers, gathering the usage of their own provider calls (judges, embeddings)."""
        return [MeteredScorer(s, self.judge_usage) for s in scorers]

    @property
    def needs_redis(self) -> bool:
        return self.cache.enabled or self.gates.compare is not None


def check_run_extras(
    extra: Mapping[str, Any], config: Config, metrics: list[str], sut: str | None, *, rebuilt: bool = False
) -> RunExtras:
    """Every flag of this module, checked (a bad value names its flag; exit 2, nothing queued).
    ``rebuilt``: for a report rebuilt from Redis, which runs nothing (no cache, no budget)."""
    settings = cache_settings({} if rebuilt else config.run, extra.get("cache"), extra.get("cache_ttl"))
    limit = check_budget(extra.get("budget_usd"))
    gates = check_gates(
        compare=extra.get("compare_name"),
        max_regressions=extra.get("max_regressions"),
        confident_only=bool(extra.get("confident_only")),
        epsilon=extra.get("compare_epsilon"),
        comparison_out=extra.get("comparison_out"),
        fail_under=tuple(extra.get("fail_under") or ()),
        metrics=metrics,
    )
    check_output_paths([("--comparison-out", gates.comparison_out)])
    if sut is None and not rebuilt and (settings.enabled and extra.get("cache") or limit is not None):
        flag = "--budget-usd" if limit is not None else "--cache"
        raise ConfigError(f"{flag} does not apply with --outputs: saved outputs call no SUT")
    if sut is None or rebuilt:
        settings = CacheSettings(False, settings.ttl)
    if limit is not None and not rebuilt and sut is not None:
        model = sut_model(sut)
        if not config.prices:
            click.echo(
                "warning: --budget-usd: the configuration has no [prices] tables, so only the costs the SUT "
                "reports itself count towards the budget",
                err=True,
            )
        elif model is not None and price_for(model, config.prices) is None:
            click.echo(
                f"warning: --budget-usd: no [prices] table matches the SUT's model {model!r}; its calls count "
                "only where the provider reports their cost",
                err=True,
            )
    return RunExtras(settings, limit, gates, config, sut)


def prepare(
    extras: RunExtras,
    url: str,
    prefix: str,
    data: Dataset,
    fingerprint: str | None,
    on_spend: Callable[[float], None] | None = None,
) -> None:
    """Before dispatch: load the baseline (a missing one is an error now, not after the run) and
    look up the cached outputs."""
    extras.url, extras.prefix, extras.fingerprint = url, prefix, fingerprint
    if extras.sut is not None:
        # without --budget-usd the tracker only counts the spend, for the live progress line
        limit = extras.budget_limit if extras.budget_limit is not None else math.inf
        extras.budget = Budget(limit, extras.config.prices, sut_model(extras.sut), on_spend)
    if not extras.needs_redis:
        return

    async def load() -> None:
        from evalharness.core.baselines import BaselineStore

        client = async_client(url)
        try:
            if extras.gates.compare is not None:
                extras.baseline = await BaselineStore(client, prefix).require(extras.gates.compare)
            if extras.cache.enabled and extras.sut is not None:
                cache = ResponseCache(client, prefix, extras.sut, fingerprint, extras.cache.ttl, extras.repetitions)
                extras.prefilled = await cache.lookup(data)
        finally:
            await client.aclose()

    asyncio.run(load())


def store_outputs(extras: RunExtras, outcomes: Any) -> None:
    """After the run: keep its fresh outputs (failures never) for the next run, where
    :func:`prepare` looked them up."""
    if not extras.cache.enabled or extras.sut is None:
        return

    async def store() -> int:
        client = async_client(extras.url)
        try:
            return await ResponseCache(
                client, extras.prefix, str(extras.sut), extras.fingerprint, extras.cache.ttl, extras.repetitions
            ).store(outcomes, extras.prefilled)
        finally:
            await client.aclose()

    extras.stored = asyncio.run(store())


def decorate(extras: RunExtras, report: dict[str, Any], data: Dataset | None = None) -> None:
    """Add cost, cache, budget and comparison to the report (additively) and check the gates."""
    add_cost(report, extras.config.prices, extras.sut, extras.judge_usage)
    if extras.cache.enabled:
        for row in report["samples"]:
            if row["index"] in extras.prefilled:
                row["cached"] = True
        # hits and stores count executions: a repeated run runs (and caches) each sample N times
        executions = report.get("total_executions", report["total_samples"])
        report["cache"] = cache_summary(extras.cache, executions, len(extras.prefilled), extras.stored)
    if extras.budget is not None and extras.budget_limit is not None:
        budget = extras.budget
        completed = sum(1 for row in report["samples"] if row["error"] is None)
        report["budget"] = budget.to_json(completed)
        if budget.halted:
            never = [
                row["id"]
                for row in report["samples"]
                if row["error"] is not None and row["error"]["kind"] == "not_dispatched"
            ]
            for row in report["samples"]:
                if row["error"] is not None and row["error"]["kind"] == "not_dispatched":
                    row["error"]["message"] = f"never ran: halted on budget ({budget.reason(completed)})"
            report["budget"]["never_ran"] = never
    if extras.baseline is not None:
        extras.comparison = compare(summarise_report(report, data), extras.baseline, epsilon=extras.gates.epsilon)
        report["comparison"] = extras.comparison
        if extras.gates.comparison_out:
            write_report(extras.comparison, Path(extras.gates.comparison_out))
    extras.gate_problems = gate_failures(report, extras.comparison, extras.gates)
    if extras.gates.any:
        report["gates"] = {"passed": not extras.gate_problems, "failures": list(extras.gate_problems)}


def render(extras: RunExtras, report: Mapping[str, Any], console: Console) -> None:
    """The sections the terminal report gets from this module: budget, cost, cache, comparison, gates."""
    budget = report.get("budget")
    if isinstance(budget, Mapping) and budget.get("halted"):
        never = budget.get("never_ran") or []
        shown = ", ".join(str(i) for i in never[:10]) + (f" … and {len(never) - 10} more" if len(never) > 10 else "")
        console.print(
            Text(
                f"halted on budget: {budget['reason']}; {len(never)} sample(s) never ran"
                + (f": {shown}" if never else ""),
                style="bold yellow",
            )
        )
    cost = report.get("cost")
    if isinstance(cost, Mapping):
        s = cost["samples"]
        line = (
            f"cost {usd(cost['total_usd'])} (reported {usd(cost['reported_usd'])}, derived "
            f"{usd(cost['derived_usd'])}; {s['reported']} reported, {s['derived']} derived, {s['unpriced']} unpriced "
            "sample(s))"
        )
        if isinstance(budget, Mapping):
            line += f" · budget {usd(budget['limit_usd'])}"
        console.print(Text(line))
        if not cost["complete"]:
            console.print(
                Text(
                    f"  a floor, not a figure: no price for {', '.join(cost['unpriced_models'])}; declare it under "
                    '[prices."MODEL-PREFIX"]',
                    style="yellow",
                )
            )
    cache = report.get("cache")
    if isinstance(cache, Mapping):
        console.print(
            Text(
                f"cache: {cache['hits']} cached output(s) reused, {cache['misses']} run, {cache['stored']} stored "
                f"(TTL {cache['ttl_seconds']}s)",
                style="dim",
            )
        )
    comparison = report.get("comparison")
    if isinstance(comparison, Mapping):
        console.print(Text())
        console.print(Text("\n".join(comparison_lines(comparison))))
    gates = report.get("gates")
    if isinstance(gates, Mapping):
        for problem in gates["failures"]:
            console.print(Text(f"gate failed: {problem}", style="bold red"))
        if gates["passed"]:
            console.print(Text("gates passed", style="green"))


def exit_code(extras: RunExtras, code: int) -> int:
    """A run that passed every sample still exits 1 when it fails a gate."""
    return 1 if code == 0 and extras.gate_problems else code
