"""The evaluation report: scores every collected output, aggregates per metric, and renders or writes
the result as the ``evalharness.report.v1`` JSON contract (see ``docs/report.md``).

Scoring happens here, after execution, so every execution mode scores the same way.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
import statistics
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .datasets import Dataset, Sample
from .providers.usage import token_total
from .scorers import ScoreError, Scorer

__all__ = [
    "PASS_THRESHOLD",
    "SCHEMA_VERSION",
    "SampleOutcome",
    "WILSON_Z95",
    "aggregate",
    "build_report",
    "failed_words",
    "percentile",
    "render_report",
    "report_ok",
    "wilson_interval",
    "write_report",
]

SCHEMA_VERSION = "evalharness.report.v1"
PASS_THRESHOLD = 0.5
_SHOWN_FAILURES = 10


@dataclass(frozen=True, slots=True)
class SampleOutcome:
    """What execution produced for one sample: an output, or an error ``{"kind", "message", ...}``.

    ``index`` is the sample's position in the dataset; ``attempts`` is how many times the SUT was
    called (None when unknown or never called).
    """

    index: int
    sample: Sample
    output: str | None
    error: dict[str, Any] | None
    attempts: int | None
    usage: dict[str, Any] | None = None  # tokens and cost the provider replies reported


def usage_totals(outcomes: Sequence[SampleOutcome | None]) -> dict[str, Any] | None:
    """The run's usage: the sum of each sample's, over the samples that reported one (``None``
    when none did, as with a SUT that calls no provider)."""
    reported = [o.usage for o in outcomes if o is not None and o.usage]
    if not reported:
        return None
    totals: dict[str, Any] = {"samples": len(reported)}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cost", "calls"):
        if name == "total_tokens":
            # a sample that reported prompt and completion tokens but no total counts their sum
            values = [t for t in (token_total(u) for u in reported) if t is not None]
        else:
            values = [
                u[name] for u in reported if isinstance(u.get(name), int | float) and not isinstance(u.get(name), bool)
            ]
        if values or name != "cost":
            totals[name] = round(sum(values), 10) if name == "cost" else (int(sum(values)) if values else None)
    return totals


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Linear-interpolation percentile of already sorted values, as ``numpy.percentile``."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    rank = p / 100 * (n - 1)
    lo = math.floor(rank)
    hi = math.ceil(rank)
    a, b = sorted_values[lo], sorted_values[hi]
    t = rank - lo
    # numpy's lerp: from the nearer end, so an exact end point is returned unchanged.
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


WILSON_Z95 = statistics.NormalDist().inv_cdf(0.975)
"""Φ⁻¹(0.975) = 1.959963984540054…, exact rather than padosoft's truncated 1.959964 (METRICS.md §5)."""


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z95) -> tuple[float, float]:
    """Two-sided Wilson score interval of ``successes`` out of ``trials`` (METRICS.md §4), unrounded."""
    if trials <= 0:
        return 0.0, 1.0
    s = min(max(successes, 0), trials)
    n = trials
    p = s / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At the ends the bound is exact in theory; floating point would leave a 1e-17 residue.
    low = 0.0 if s == 0 else max(0.0, centre - half)
    high = 1.0 if s == n else min(1.0, centre + half)
    return low, high


def macro_f1(metrics: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Mean of the per-metric pass rates over metrics with at least one score (padosoft's name)."""
    rates = [stats["pass_rate"] for stats in metrics.values() if stats.get("pass_rate") is not None]
    return math.fsum(rates) / len(rates) if rates else None


def _metric_entry(scorer: Scorer, scores: Sequence[float], errors: int) -> dict[str, Any]:
    entry = aggregate(scores, errors)
    passed = sum(1 for x in scores if x >= PASS_THRESHOLD)
    low, high = wilson_interval(passed, len(scores))
    entry["pass_rate_ci"] = {"low": low, "high": high, "confidence": 0.95}
    entry["metric"] = str(getattr(scorer, "metric", scorer.name))
    entry["arguments"] = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dict(getattr(scorer, "arguments", None) or {}).items()
    }
    return entry


def aggregate(scores: Sequence[float], errors: int = 0) -> dict[str, Any]:
    """Per-metric aggregates (METRICS.md §4); the statistics are None when there are no scores."""
    n = len(scores)
    if n == 0:
        return {
            "mean": None,
            "pass_rate": None,
            "p50": None,
            "p95": None,
            "stddev": None,
            "count": 0,
            "errors": errors,
        }
    ordered = sorted(scores)
    if ordered[0] == ordered[-1]:
        mean, stddev = ordered[0], 0.0
    else:
        mean = math.fsum(ordered) / n
        stddev = math.sqrt(math.fsum((x - mean) ** 2 for x in ordered) / n)
    return {
        "mean": mean,
        "pass_rate": sum(1 for x in ordered if x >= PASS_THRESHOLD) / n,
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "stddev": stddev,
        "count": n,
        "errors": errors,
    }


def _iso_utc(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sample_error(outcome: SampleOutcome | None) -> dict[str, Any] | None:
    """The outcome's error as a dict with string ``kind`` and ``message``, or None when it has an output."""
    if outcome is None:
        return {"kind": "not_collected", "message": "no result was recorded for this sample"}
    if outcome.error is not None:
        error = dict(outcome.error)
        error["kind"] = str(error.get("kind") or "exception")
        error["message"] = str(error.get("message") or "")
        return error
    if outcome.output is None:
        # Neither output nor error: count it as a failure so a report never claims it was scored.
        return {"kind": "missing_output", "message": "no output and no error were recorded for this sample"}
    return None


def _score_one(scorer: Scorer, output: str, sample: Sample) -> float:
    try:
        value = scorer.score(output, sample.expected_output, sample)
    except ScoreError:
        raise
    except Exception as exc:
        # A faulty metric must not lose the report of a run that may have taken hours.
        raise ScoreError("scorer-exception", f"{type(exc).__name__}: {exc}") from exc
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScoreError("invalid-score", f"{scorer.name} returned {value!r}, not a finite number")
    return float(value)


def _index_outcomes(dataset: Dataset, outcomes: Sequence[SampleOutcome]) -> list[SampleOutcome | None]:
    by_index: list[SampleOutcome | None] = [None] * len(dataset.samples)
    for outcome in outcomes:
        if not 0 <= outcome.index < len(by_index):
            raise ValueError(f"outcome index {outcome.index} is outside the dataset (0..{len(by_index) - 1})")
        if by_index[outcome.index] is not None:
            raise ValueError(f"two outcomes for sample index {outcome.index}")
        if outcome.sample.id != dataset.samples[outcome.index].id:
            raise ValueError(
                f"outcome {outcome.index} is for sample {outcome.sample.id!r}, "
                f"but the dataset has {dataset.samples[outcome.index].id!r} there"
            )
        by_index[outcome.index] = outcome
    return by_index


def build_report(
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
) -> dict[str, Any]:
    """Score each collected output with each scorer and assemble the ``evalharness.report.v1`` dict.

    A sample without an outcome counts as a ``not_collected`` failure. Outcomes must name their
    sample by its dataset index; a mismatch is a programming error (ValueError).
    """
    names = [scorer.name for scorer in scorers]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate metric names: {names}")
    values: dict[str, list[float]] = {name: [] for name in names}
    metric_error_counts: Counter[str] = Counter()
    failure_kinds: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    scored = 0
    indexed = _index_outcomes(dataset, outcomes)
    for index, (sample, outcome) in enumerate(zip(dataset.samples, indexed, strict=True)):
        error = _sample_error(outcome)
        output = outcome.output if outcome is not None else None
        scores: dict[str, float | None] = dict.fromkeys(names)
        metric_errors: dict[str, dict[str, str]] = {}
        if error is not None:
            failure_kinds[error["kind"]] += 1
        else:
            assert output is not None  # _sample_error returns an error when there is no output
            scored += 1
            for scorer in scorers:
                try:
                    value = _score_one(scorer, output, sample)
                except ScoreError as exc:
                    metric_errors[scorer.name] = {"kind": exc.kind, "message": exc.message}
                    metric_error_counts[scorer.name] += 1
                else:
                    scores[scorer.name] = value
                    values[scorer.name].append(value)
        rows.append(
            {
                "id": sample.id,
                "index": index,
                "output": output,
                "scores": scores,
                "metric_errors": metric_errors,
                "error": error,
                "attempts": outcome.attempts if outcome is not None else None,
            }
        )
    metrics = {
        scorer.name: _metric_entry(scorer, values[scorer.name], metric_error_counts[scorer.name]) for scorer in scorers
    }
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "dataset": {"name": dataset.name, "path": str(dataset.path), "samples": len(dataset.samples)},
        "sut": sut,
        "mode": mode,
        "options": dict(options),
        "started_at": _iso_utc(started_at),
        "finished_at": _iso_utc(finished_at),
        "duration_seconds": round(max(0.0, finished_at - started_at), 6),
        "total_samples": len(dataset.samples),
        "scored_samples": scored,
        "metrics": metrics,
        "samples": rows,
        "failures": {
            "total": sum(failure_kinds.values()),
            "by_kind": dict(sorted(failure_kinds.items())),
            "metric_errors": sum(metric_error_counts.values()),
        },
        "macro_f1": macro_f1(metrics),
    }
    usage = usage_totals(indexed)
    if usage is not None:
        # Only when a provider reported usage: reports of other SUTs keep their exact shape.
        for row, outcome in zip(rows, indexed, strict=True):
            row["usage"] = outcome.usage if outcome is not None else None
        report["usage"] = usage
    return report


def report_ok(report: Mapping[str, Any]) -> bool:
    """True only when every sample produced an output and every metric scored it."""
    failures = report["failures"]
    return bool(
        failures["total"] == 0
        and failures.get("metric_errors", 0) == 0
        and report["scored_samples"] == report["total_samples"]
    )


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write the report as JSON, atomically: readers see the old file or the whole new one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as for any file the user writes.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


# --- rendering -------------------------------------------------------------------------------


def _plain(value: Any, limit: int = 200) -> str:
    """One line of displayable text: whitespace runs collapsed, control characters made visible."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "".join("\ufffd" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _headline(report: Mapping[str, Any]) -> Text:
    total = report["total_samples"]
    scored = report["scored_samples"]
    ok = report_ok(report)
    line = Text()
    line.append(_plain(report["dataset"]["name"], 40), style="bold")
    line.append(f": {scored}/{total} samples scored in {_duration(report['duration_seconds'])}")
    failed = report["failures"]["total"]
    interrupted = report.get("interrupted")
    if interrupted:
        line.append(f" — interrupted by {_plain(interrupted.get('signal', 'a signal'), 20)}", style="bold yellow")
        line.append(f", {failed} not scored", style="bold red")
    elif ok:
        line.append(" — all scored", style="green")
    else:
        line.append(f" — {failed_words(report)}", style="bold red")
    return line


def failed_words(report: Mapping[str, Any]) -> str:
    """What went wrong, counted in the run's own units: samples, or for a repeated run the
    executions and the samples they belong to; metric errors apart from failures."""
    failures = report["failures"]
    parts = []
    if failures["total"]:
        if report.get("repetitions", 1) > 1:
            samples = sum(1 for row in report["samples"] if row["error"] is not None)
            parts.append(f"{_count(failures['total'], 'execution')} failed ({_count(samples, 'sample')})")
        else:
            parts.append(f"{failures['total']} failed")
    if failures.get("metric_errors"):
        parts.append(_count(failures["metric_errors"], "metric error"))
    missing = report["total_samples"] - report["scored_samples"]
    if not parts and missing:
        parts.append(f"{missing} not scored")
    return ", ".join(parts) or "not all scored"


def _unfinished(report: Mapping[str, Any]) -> list[Text]:
    """For an interrupted run: which samples never ran and which were not collected, by id."""
    lines = []
    for kind, words in (
        ("not_dispatched", "never ran"),
        ("interrupted", "stopped while running"),
        ("not_collected", "not collected"),
    ):
        ids = [row["id"] for row in report["samples"] if row["error"] is not None and row["error"]["kind"] == kind]
        if ids:
            shown = ", ".join(_plain(i, 40) for i in ids[:_SHOWN_FAILURES])
            more = f" … and {len(ids) - _SHOWN_FAILURES} more" if len(ids) > _SHOWN_FAILURES else ""
            lines.append(Text(f"{_count(len(ids), 'sample')} {words}: {shown}{more}", style="yellow"))
    return lines


def _details(report: Mapping[str, Any]) -> Text:
    line = f"run {_plain(report['run_id'], 40)} · sut {_plain(report['sut'], 40)} · mode {_plain(report['mode'], 20)}"
    usage = report.get("usage")
    if isinstance(usage, Mapping):
        tokens, calls = usage.get("total_tokens"), usage.get("calls", 0)
        if tokens is None:
            line += f" · {calls} provider call(s), no token counts reported"
        else:
            line += f" · {tokens} tokens over {calls} provider call(s)"
        if usage.get("cost") is not None:
            line += f", cost {usage['cost']:g}"
    return Text(line, style="dim")


def _metrics_table(report: Mapping[str, Any]) -> Table:
    table = Table(title="Metrics", title_justify="left", expand=False)
    table.add_column("metric", no_wrap=True)
    for header in ("mean", "pass rate", "p50", "p95", "count", "errors"):
        table.add_column(header, justify="right", no_wrap=True)
    for name, stats in report["metrics"].items():
        errors = stats["errors"]
        table.add_row(
            Text(_plain(name, 30)),
            _number(stats["mean"]),
            _percent(stats["pass_rate"]),
            _number(stats["p50"]),
            _number(stats["p95"]),
            str(stats["count"]),
            Text(str(errors), style="red" if errors else ""),
        )
    if not report["metrics"]:
        table.add_row(Text("(no metrics)", style="dim"), "", "", "", "", "", "")
    return table


def _problem_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], more: int) -> Table:
    """Ids and kinds are kept short; the message (last column) takes the rest of the line and is cut."""
    caption = f"… and {more} more in the JSON report" if more > 0 else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    last = len(headers) - 1
    for i, header in enumerate(headers):
        # Rich narrows wrappable columns first, so only the message column is left wrappable;
        # its cells are still drawn on one line, cut with an ellipsis.
        table.add_column(header, no_wrap=i != last, overflow="ellipsis", max_width=None if i == last else 20)
    for row in rows:
        table.add_row(*(Text(cell, no_wrap=True, overflow="ellipsis") for cell in row))
    return table


def render_report(report: Mapping[str, Any], console: Console) -> None:
    """Print a summary for people: headline, per-metric table, and the first failed samples."""
    parts: list[Any] = [_headline(report), _details(report), Text(), _metrics_table(report)]
    from .repetitions import summary_lines  # imports this module

    repeated = summary_lines(report)
    if repeated:
        parts += [Text(), *(Text(_plain(line, 400), style="bold" if i == 0 else "") for i, line in enumerate(repeated))]
    if report.get("interrupted"):
        parts += [Text(), *_unfinished(report)]
    failures = report["failures"]
    failed = [row for row in report["samples"] if row["error"] is not None]
    if failed:
        kinds = ", ".join(f"{_plain(kind, 30)} {count}" for kind, count in failures["by_kind"].items())
        if report.get("repetitions", 1) > 1:
            what = f"{_count(failures['total'], 'execution')} of {_count(len(failed), 'sample')} failed"
        else:
            what = f"{_count(failures['total'], 'sample')} failed"
        parts += [Text(), Text(f"{what}: {kinds}", style="bold red")]
        rows = [
            (_plain(row["id"], 60), _plain(row["error"]["kind"], 30), _plain(row["error"]["message"]))
            for row in failed[:_SHOWN_FAILURES]
        ]
        parts.append(_problem_table("Failed samples", ("id", "kind", "message"), rows, len(failed) - _SHOWN_FAILURES))
    metric_error_total = failures["metric_errors"]
    if metric_error_total:
        first = itertools.islice(
            (
                (_plain(row["id"], 60), _plain(metric, 30), _plain(err["kind"], 30), _plain(err["message"]))
                for row in report["samples"]
                for metric, err in row["metric_errors"].items()
            ),
            _SHOWN_FAILURES,
        )
        parts += [
            Text(),
            Text(
                f"{_count(metric_error_total, 'metric error')}: those scores are left out of the aggregates",
                style="yellow",
            ),
            _problem_table(
                "Metric errors",
                ("id", "metric", "kind", "message"),
                list(first),
                metric_error_total - _SHOWN_FAILURES,
            ),
        ]
    console.print(Group(*parts))
