"""Repetitions: each sample run N times as distinct jobs, and the report of such a run — the
per-sample mean and spread of every metric, per-metric Wilson intervals over all executions,
the samples whose repetitions disagree (unstable) and the precision the run can resolve.

A repeated run executes an *expanded* dataset whose unit ``u`` is repetition ``u % N`` of sample
``u // N``; the execution modes need to know nothing else (each unit is its own job with its own
id and idempotency key).  The report folds the units back into one row per sample.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .datasets import Dataset
from .report import (
    PASS_THRESHOLD,
    WILSON_Z95,
    SampleOutcome,
    _metric_entry,
    build_report,
    macro_f1,
    wilson_interval,
)
from .scorers import Scorer

TARGET_DELTA = 0.05  # the difference the precision note says how many repetitions would resolve
_SHOWN = 10


def expand(dataset: Dataset, repetitions: int) -> Dataset:
    """The units a repeated run executes: every sample ``repetitions`` times in a row."""
    if repetitions <= 1:
        return dataset
    units = tuple(s for s in dataset.samples for _ in range(repetitions))
    return replace(dataset, samples=units)


def samples_of(units: Dataset, repetitions: int) -> Dataset:
    """The samples whose units a repeated run executes (the inverse of :func:`expand`): a
    repeated run's record holds every unit, its report a row per sample."""
    if repetitions <= 1:
        return units
    return replace(units, samples=units.samples[::repetitions])


def build_run_report(*, repetitions: int = 1, **fields: Any) -> dict[str, Any]:
    """The report of a run: :func:`build_repeated_report` for a repeated one (``fields`` hold its
    units' outcomes and its samples' dataset), else :func:`~evalharness.core.report.build_report`."""
    if repetitions > 1:
        return build_repeated_report(**fields, repetitions=repetitions)
    return build_report(**fields)


def fold(outcomes: Sequence[SampleOutcome], repetitions: int, samples: int) -> list[list[SampleOutcome]]:
    """Per repetition, the outcomes of every sample, re-indexed by sample (unit ``u`` is
    repetition ``u % repetitions`` of sample ``u // repetitions``)."""
    per_rep: list[list[SampleOutcome]] = [[] for _ in range(repetitions)]
    for o in sorted(outcomes, key=lambda o: o.index):
        sample_index, rep = divmod(o.index, repetitions)
        if sample_index < samples:
            per_rep[rep].append(replace(o, index=sample_index))
    return per_rep


def _passed(row: Mapping[str, Any]) -> bool:
    """An execution passes when it has an output and every metric scored it at the threshold or above."""
    if row.get("error") is not None or row.get("metric_errors"):
        return False
    return all(v is not None and v >= PASS_THRESHOLD for v in (row.get("scores") or {}).values())


def _spread(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "stddev": None, "min": None, "max": None, "observations": 0}
    mean = math.fsum(values) / len(values)
    stddev = 0.0 if min(values) == max(values) else math.sqrt(math.fsum((x - mean) ** 2 for x in values) / len(values))
    return {"mean": mean, "stddev": stddev, "min": min(values), "max": max(values), "observations": len(values)}


def resolution(variance: float, n: int, z: float = WILSON_Z95) -> float:
    """The smallest difference in a pass rate that two measurements of ``n`` observations each,
    with per-observation variance ``variance``, tell apart at 95 %: ``z·sqrt(2v/n)``; the rule of
    three (``3/n``) when no variance was observed; 1.0 with fewer than two observations."""
    if n < 2:
        return 1.0
    if variance <= 0:
        return min(1.0, 3.0 / n)
    return min(1.0, z * math.sqrt(2.0 * variance / n))


def required(variance: float, delta: float, z: float = WILSON_Z95) -> int:
    """Observations needed for :func:`resolution` to reach ``delta``."""
    if not 0 < delta <= 1:
        return 0
    if variance <= 0:
        return math.ceil(3.0 / delta)
    return math.ceil(2.0 * z * z * variance / (delta * delta))


def precision(pass_rates: Sequence[float], passed: int, executions: int, repetitions: int) -> dict[str, Any]:
    """What the run can resolve.  ``pass_rates`` are the samples' own pass rates over their
    repetitions; ``passed`` of ``executions`` passed in all."""
    low, high = wilson_interval(passed, executions)
    rate = passed / executions if executions else None
    within = math.fsum(p * (1 - p) for p in pass_rates) / len(pass_rates) if pass_rates else 0.0
    run_var = rate * (1 - rate) if rate is not None else 0.0
    run_res = resolution(run_var, executions)
    sample_res = resolution(within, repetitions)
    needed = required(within, TARGET_DELTA)
    points = f"{run_res * 100:.1f}".rstrip("0").rstrip(".")
    summary = (
        f"{executions} executions ({repetitions} per sample): "
        f"the pass rate is known to ±{(high - low) * 50:.1f} points "
        f"(95 % Wilson), and a difference of {points} points or more from a run of the same size is beyond noise. "
        f"Per sample, {repetitions} repetitions tell apart pass rates {sample_res * 100:.1f} points apart"
    )
    summary += (
        "."
        if sample_res <= TARGET_DELTA
        else f"; resolving {TARGET_DELTA * 100:g} points per sample needs --repetitions {needed}."
    )
    return {
        "confidence": 0.95,
        "repetitions": repetitions,
        "executions": executions,
        "pass_rate": rate,
        "pass_rate_ci": {"low": low, "high": high, "confidence": 0.95},
        "half_width": (high - low) / 2,
        "min_detectable_difference": run_res,
        "within_sample_variance": within,
        "sample_resolution": sample_res,
        "target_delta": TARGET_DELTA,
        "required_repetitions": needed,
        "summary": summary,
    }


def build_repeated_report(
    *,
    run_id: str,
    dataset: Dataset,
    sut: str,
    mode: str,
    options: dict[str, Any],
    started_at: float,
    finished_at: float,
    outcomes: Sequence[SampleOutcome],
    scorers: Sequence[Scorer],
    repetitions: int,
) -> dict[str, Any]:
    """The ``evalharness.report.v1`` report of a run that executed each sample ``repetitions``
    times (``outcomes`` are the units').  Each repetition is scored exactly as a plain run is;
    ``samples[i]["scores"]`` is the mean over repetitions, ``samples[i]["repetitions"]`` holds
    each execution, and the metrics aggregate over every execution."""
    per_rep = fold(outcomes, repetitions, len(dataset.samples))
    kwargs: dict[str, Any] = {
        "run_id": run_id,
        "dataset": dataset,
        "sut": sut,
        "mode": mode,
        "options": options,
        "started_at": started_at,
        "finished_at": finished_at,
        "scorers": scorers,
    }
    reports = [build_report(outcomes=per_rep[r], **kwargs) for r in range(repetitions)]
    report = reports[0]
    names = [s.name for s in scorers]
    values: dict[str, list[float]] = {n: [] for n in names}
    metric_errors: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    unstable: list[str] = []
    pass_rates: list[float] = []
    passed_total = scored_executions = scored_samples = 0
    for index, sample in enumerate(dataset.samples):
        execs = [reports[r]["samples"][index] for r in range(repetitions)]
        reps: list[dict[str, Any]] = []
        per_metric: dict[str, list[float]] = {n: [] for n in names}
        for r, e in enumerate(execs):
            reps.append(
                {"repetition": r, **{k: e[k] for k in ("output", "scores", "metric_errors", "error", "attempts")}}
            )
            if e.get("usage") is not None:
                reps[-1]["usage"] = e["usage"]
            if e["error"] is not None:
                kinds[e["error"]["kind"]] += 1
                continue
            scored_executions += 1
            for n in names:
                if e["scores"].get(n) is not None:
                    per_metric[n].append(e["scores"][n])
                    values[n].append(e["scores"][n])
            for n in e["metric_errors"]:
                metric_errors[n] += 1
        passed = sum(1 for e in execs if _passed(e))
        errored = sum(1 for e in execs if e["error"] is not None)
        passed_total += passed
        pass_rates.append(passed / repetitions)
        is_unstable = repetitions > 1 and 0 < passed < repetitions
        if is_unstable:
            unstable.append(sample.id)
        if errored < repetitions:
            scored_samples += 1
        low, high = wilson_interval(passed, repetitions)
        failed = [e for e in execs if e["error"] is not None]
        error = None
        if failed:
            first = failed[0]["error"]
            error = {
                **first,
                "message": f"{len(failed)} of {repetitions} repetitions failed; the first: {first['message']}",
                "repetitions_failed": len(failed),
            }
        first_errors: dict[str, Any] = {}
        for e in execs:
            for n, err in e["metric_errors"].items():
                first_errors.setdefault(n, err)
        attempts = [e["attempts"] for e in execs if e["attempts"] is not None]
        rows.append(
            {
                "id": sample.id,
                "index": index,
                "output": next((e["output"] for e in execs if e["output"] is not None), None),
                "scores": {n: _spread(per_metric[n])["mean"] for n in names},
                "metric_errors": first_errors,
                "error": error,
                "attempts": sum(attempts) if attempts else None,
                "repetitions": reps,
                "repetition_stats": {
                    "repetitions": repetitions,
                    "passed": passed,
                    "errored": errored,
                    "pass_rate": passed / repetitions,
                    "pass_rate_ci": {"low": low, "high": high, "confidence": 0.95},
                    "unstable": is_unstable,
                    "metrics": {n: _spread(per_metric[n]) for n in names},
                },
            }
        )
    metrics = {s.name: _metric_entry(s, values[s.name], metric_errors[s.name]) for s in scorers}
    executions = repetitions * len(dataset.samples)
    report.update(
        {
            "scored_samples": scored_samples,
            "metrics": metrics,
            "samples": rows,
            "failures": {
                "total": sum(kinds.values()),
                "by_kind": dict(sorted(kinds.items())),
                "metric_errors": sum(metric_errors.values()),
            },
            "macro_f1": macro_f1(metrics),
            "repetitions": repetitions,
            "total_executions": executions,
            "scored_executions": scored_executions,
            "unstable_samples": unstable,
            "precision": precision(pass_rates, passed_total, executions, repetitions),
        }
    )
    usages = [rep["usage"] for row in rows for rep in row["repetitions"] if rep.get("usage")]
    if any(r.get("usage") for r in reports):
        total = report.get("usage") or {}
        for name in ("prompt_tokens", "completion_tokens", "total_tokens", "calls", "cost"):
            nums = [u.get(name) for u in usages if isinstance(u.get(name), int | float)]
            if nums:
                total[name] = round(sum(nums), 10) if name == "cost" else int(sum(nums))
        total["samples"] = len(usages)
        report["usage"] = total
    return report


# -- what the other formats show ----------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """Plain lines about a repeated run (empty for a plain run): for the terminal and the pages."""
    reps = report.get("repetitions")
    if not isinstance(reps, int) or reps < 2:
        return []
    prec = report["precision"]
    ci = prec["pass_rate_ci"]
    lines = [
        f"{reps} repetitions per sample, {report['total_executions']} executions: pass rate {_pct(prec['pass_rate'])} "
        f"(95 % CI {_pct(ci['low'])} – {_pct(ci['high'])})",
        prec["summary"],
    ]
    for name, stats in report["metrics"].items():
        mci = stats.get("pass_rate_ci") or {}
        lines.append(
            f"{name}: pass rate {_pct(stats['pass_rate'])} over {stats['count']} executions, "
            f"95 % CI {_pct(mci.get('low'))} – {_pct(mci.get('high'))}"
        )
    unstable = report.get("unstable_samples") or []
    if unstable:
        shown = ", ".join(str(i) for i in unstable[:_SHOWN]) + (
            f" … and {len(unstable) - _SHOWN} more" if len(unstable) > _SHOWN else ""
        )
        lines.append(f"{len(unstable)} unstable sample(s) (their repetitions disagree on pass/fail): {shown}")
    else:
        lines.append("no unstable sample: every sample's repetitions agree on pass/fail")
    return lines


def unstable_rows(report: Mapping[str, Any]) -> list[tuple[str, int, int, float, float, float]]:
    """id, passed, repetitions, pass rate, CI low, CI high of each unstable sample."""
    out = []
    for row in report.get("samples") or []:
        st = row.get("repetition_stats")
        if st and st.get("unstable"):
            ci = st["pass_rate_ci"]
            out.append((str(row["id"]), st["passed"], st["repetitions"], st["pass_rate"], ci["low"], ci["high"]))
    return out
