"""What the cost, cache, budget, comparison and gate blocks of a report look like in the Markdown,
HTML and JUnit renderings (``core/report_formats.py`` calls these; a report without the blocks
renders as before)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from .cost import usd

Report = Mapping[str, Any]


def _usd(value: Any) -> str:
    return "n/a" if value is None else usd(float(value))


def summary_lines(report: Report) -> list[tuple[str, str]]:
    """(title, text) lines for cost, budget, cache and gates; the comparison is a table."""
    lines: list[tuple[str, str]] = []
    budget = report.get("budget")
    if isinstance(budget, Mapping) and budget.get("halted"):
        never = budget.get("never_ran") or []
        lines.append(
            (
                "Halted on budget",
                f"{budget.get('reason')}; {len(never)} sample(s) never ran: {', '.join(map(str, never[:50]))}"
                + (" …" if len(never) > 50 else "")
                + ". Every figure in this report covers a partial run.",
            )
        )
    cost = report.get("cost")
    if isinstance(cost, Mapping):
        s = cost.get("samples") or {}
        text = (
            f"{_usd(cost.get('total_usd'))} in total: reported {_usd(cost.get('reported_usd'))}, "
            f"derived {_usd(cost.get('derived_usd'))} "
            f"({s.get('reported', 0)} reported, {s.get('derived', 0)} derived, "
            f"{s.get('unpriced', 0)} unpriced sample(s))"
        )
        if not cost.get("complete", True):
            text += f"; a floor, not a figure: no price for {', '.join(cost.get('unpriced_models') or [])}"
        lines.append(("Cost", text))
    if isinstance(budget, Mapping):
        lines.append(("Budget", f"{_usd(budget.get('spent_usd'))} of {_usd(budget.get('limit_usd'))} spent"))
    cache = report.get("cache")
    if isinstance(cache, Mapping):
        lines.append(
            (
                "Cache",
                f"{cache.get('hits')} cached output(s) reused, {cache.get('misses')} run, "
                f"{cache.get('stored')} stored (TTL {cache.get('ttl_seconds')}s)",
            )
        )
    gates = report.get("gates")
    if isinstance(gates, Mapping):
        lines.append(
            (
                "Gates",
                "passed" if gates.get("passed") else "failed: " + "; ".join(map(str, gates.get("failures") or [])),
            )
        )
    return lines


def comparison_rows(report: Report) -> tuple[str, list[list[str]]] | None:
    """The comparison's headline and its metric rows (metric, mean before → after, Δ with CI, flips)."""
    comparison = report.get("comparison")
    if not isinstance(comparison, Mapping):
        return None
    c = comparison.get("counts") or {}
    head = (
        f"against baseline {comparison.get('baseline', {}).get('name')}: {c.get('regressed', 0)} regressed "
        f"({c.get('regressed_confident', 0)} beyond the resolution of "
        f"{float(comparison.get('resolution') or 0) * 100:.1f} points), "
        f"{c.get('improved', 0)} improved, {c.get('added', 0)} added, {c.get('removed', 0)} removed, "
        f"{c.get('compared', 0)} compared"
    )
    rows = []
    for name, m in (comparison.get("metrics") or {}).items():
        mean = m.get("mean") or {}
        if mean.get("delta") is None:
            rows.append([str(name), "n/a", "n/a", "n/a"])
            continue
        rows.append(
            [
                str(name),
                f"{mean['before']:.4f} → {mean['after']:.4f}",
                f"{mean['delta']:+.4f} ({mean['low']:+.4f} … {mean['high']:+.4f})",
                f"{m.get('pass_to_fail', 0)} pass→fail, {m.get('fail_to_pass', 0)} fail→pass",
            ]
        )
    return head, rows


def changed_samples(report: Report, limit: int = 50) -> list[list[str]]:
    comparison = report.get("comparison")
    if not isinstance(comparison, Mapping):
        return []
    out = []
    for row in comparison.get("rows") or []:
        if row.get("status") == "stable":
            continue
        before, after = row.get("pass_rate_before"), row.get("pass_rate_after")
        rates = "" if before is None else f"{before:.2f} → {after:.2f}"
        out.append(
            [
                str(row.get("sample_id")),
                str(row.get("status")) + (" (confident)" if row.get("confident") else ""),
                rates,
            ]
        )
        if len(out) >= limit:
            break
    return out


def markdown(report: Report, cell: Any) -> list[str]:
    """Markdown sections; ``cell`` escapes one table cell."""
    out: list[str] = []
    for title, text in summary_lines(report):
        prefix = "> **⛔ " if title == "Halted on budget" else "**"
        out += [f"{prefix}{title}:** {cell(text, 800)}", ""]
    rows = comparison_rows(report)
    if rows is not None:
        head, metric_rows = rows
        out += [
            "## Comparison",
            "",
            cell(head, 400),
            "",
            "| metric | mean | Δ (95% CI) | flips |",
            "| --- | ---: | ---: | --- |",
        ]
        out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in metric_rows]
        changed = changed_samples(report)
        if changed:
            out += ["", "| sample | status | pass rate |", "| --- | --- | --- |"] + [
                "| " + " | ".join(cell(v) for v in r) + " |" for r in changed
            ]
        out.append("")
    return out


def html_sections(report: Report) -> list[str]:
    e = html.escape
    out: list[str] = []
    lines = summary_lines(report)
    if lines:
        out.append('<ul class="diag">' + "".join(f"<li><b>{e(t)}</b>: {e(x)}</li>" for t, x in lines) + "</ul>")
    rows = comparison_rows(report)
    if rows is not None:
        head, metric_rows = rows
        out += [
            "<h2>Comparison</h2>",
            f"<p>{e(head)}</p>",
            "<table><tr><th>metric</th><th>mean</th><th>Δ (95% CI)</th><th>flips</th></tr>",
        ]
        out += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>" for r in metric_rows]
        out.append("</table>")
        changed = changed_samples(report)
        if changed:
            out += ["<p></p><table><tr><th>sample</th><th>status</th><th>pass rate</th></tr>"]
            out += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>" for r in changed]
            out.append("</table>")
    return out


def junit_properties(report: Report) -> list[tuple[str, str]]:
    props = []
    cost = report.get("cost")
    if isinstance(cost, Mapping):
        props.append(("cost_usd", f"{float(cost.get('total_usd') or 0):.6f}"))
    budget = report.get("budget")
    if isinstance(budget, Mapping):
        props.append(("budget_halted", str(bool(budget.get("halted"))).lower()))
    comparison = report.get("comparison")
    if isinstance(comparison, Mapping):
        props.append(("regressions", str((comparison.get("counts") or {}).get("regressed", 0))))
    return props


def gate_failures(report: Report) -> list[str]:
    gates = report.get("gates")
    return [str(f) for f in (gates.get("failures") or [])] if isinstance(gates, Mapping) else []
