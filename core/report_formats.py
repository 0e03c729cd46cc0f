"""Reports people read: Markdown, a self-contained HTML page, CSV and JUnit XML, each rendered
from the same ``evalharness.report.v1`` dict as the JSON report (docs/report.md).

The renderers only read the report: keys they do not know are ignored, keys added later to the
schema never break them.  A sample *passes* when it has an output and every metric scored it at
least :data:`~evalharness.core.report.PASS_THRESHOLD` (the pass-rate threshold of METRICS.md §4).
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import os
import secrets
import tempfile
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import report_extras
from .repetitions import summary_lines, unstable_rows
from .report import PASS_THRESHOLD, failed_words, report_ok

Report = Mapping[str, Any]

CSV_COLUMNS: tuple[str, ...] = (
    "run_id",
    "sample_id",
    "index",
    "metric",
    "score",
    "passed",
    "metric_error",
    "error_kind",
    "error_message",
    "attempts",
    "output",
    "cost_usd",
    "cost_source",
    "cached",
)


# -- what every format shows --------------------------------------------------------------


def sample_problems(row: Mapping[str, Any]) -> list[str]:
    """Why a sample did not pass, one line per reason; empty when it passed."""
    error = row.get("error")
    if error is not None:
        return [f"{error.get('kind', 'error')}: {error.get('message', '')}"]
    problems = []
    for metric, err in (row.get("metric_errors") or {}).items():
        problems.append(f"{metric}: metric error {err.get('kind', '')}: {err.get('message', '')}")
    for metric, score in (row.get("scores") or {}).items():
        if score is not None and score < PASS_THRESHOLD:
            problems.append(f"{metric}: {score:.4g} is below the threshold {PASS_THRESHOLD:g}")
    stats = row.get("repetition_stats")
    if stats and stats.get("unstable"):
        problems.append(f"unstable: passed {stats['passed']} of {stats['repetitions']} repetitions")
    return problems


def _headline(report: Report) -> str:
    total, scored = report["total_samples"], report["scored_samples"]
    text = f"{scored}/{total} samples scored in {report['duration_seconds']:.1f}s"
    interrupted = report.get("interrupted")
    if interrupted:
        return text + f" — interrupted by {interrupted.get('signal', 'a signal')}"
    if report_ok(report):
        return text + " — all scored"
    return text + f" — {failed_words(report)}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _details(report: Report) -> list[tuple[str, str]]:
    rows = [
        ("run", str(report["run_id"])),
        ("dataset", f"{report['dataset']['name']} ({report['dataset']['path']})"),
        ("sut", str(report["sut"])),
        ("mode", str(report["mode"])),
        ("started", str(report["started_at"])),
        ("finished", str(report["finished_at"])),
    ]
    subset = report.get("subset")
    if subset:
        how = []
        if subset.get("sample_ids"):
            how.append(f"{len(subset['sample_ids'])} chosen by id")
        if subset.get("shuffle"):
            how.append(f"shuffled with seed {subset.get('seed')}")
        if subset.get("limit") is not None:
            how.append(f"limit {subset['limit']}")
        rows.append(("subset", f"{subset['samples']} of {subset['of']} samples ({', '.join(how)})"))
    return rows


# -- Markdown -----------------------------------------------------------------------------


def _md_cell(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = "".join("\ufffd" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)
    # a pipe ends a cell and a backslash or angle bracket would be read as markup
    return html.escape(text, quote=False).replace("|", "\\|").replace("`", "\\`")


def render_markdown(report: Report) -> str:
    """A Markdown page: headline, run details, metrics, failed samples, every sample's scores."""
    out = [f"# Evaluation report: {_md_cell(report['dataset']['name'])}", "", f"**{_md_cell(_headline(report))}**", ""]
    out += ["| | |", "| --- | --- |"] + [f"| {k} | {_md_cell(v)} |" for k, v in _details(report)] + [""]
    out += [
        "## Metrics",
        "",
        "| metric | mean | pass rate | p50 | p95 | count | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, stats in report["metrics"].items():
        out.append(
            f"| {_md_cell(name)} | {_num(stats['mean'])} | {_pct(stats['pass_rate'])} | {_num(stats['p50'])} "
            f"| {_num(stats['p95'])} | {stats['count']} | {stats['errors']} |"
        )
    out.append("")
    out += _md_repetitions(report)
    for line in report.get("diagnostics") or []:
        out.append(f"> {_md_cell(line, 500)}")
    if report.get("diagnostics"):
        out.append("")
    out += report_extras.markdown(report, _md_cell)
    failing = [(row, sample_problems(row)) for row in report["samples"]]
    failing = [(row, problems) for row, problems in failing if problems]
    out += [f"## Samples that did not pass ({len(failing)})", ""]
    if failing:
        out += ["| id | why |", "| --- | --- |"]
        out += [f"| {_md_cell(row['id'])} | {_md_cell('; '.join(problems), 300)} |" for row, problems in failing]
    else:
        out.append("Every sample passed every metric.")
    names = list(report["metrics"])
    out += [
        "",
        "## All samples",
        "",
        "| id | " + " | ".join(_md_cell(n) for n in names) + " | output |",
        "| --- | " + " | ".join("---:" for _ in names) + " | --- |",
    ]
    for row in report["samples"]:
        scores = row.get("scores") or {}
        cells = [_num(scores.get(n)) if scores.get(n) is not None else "–" for n in names]
        shown = (
            row["output"] if row.get("output") is not None else f"({row['error']['kind']})" if row.get("error") else ""
        )
        out.append(f"| {_md_cell(row['id'])} | " + " | ".join(cells) + f" | {_md_cell(shown, 120)} |")
    return "\n".join(out) + "\n"


def _md_repetitions(report: Report) -> list[str]:
    """A repeated run's section: precision, per-metric intervals, unstable samples."""
    lines = summary_lines(report)
    if not lines:
        return []
    out = ["## Repetitions", "", *(f"- {_md_cell(line, 500)}" for line in lines), ""]
    rows = unstable_rows(report)
    if rows:
        out += ["| unstable sample | passed | repetitions | pass rate | 95% CI |", "| --- | ---: | ---: | ---: | --- |"]
        out += [f"| {_md_cell(i)} | {p} | {n} | {_pct(r)} | {_pct(lo)} – {_pct(hi)} |" for i, p, n, r, lo, hi in rows]
        out.append("")
    return out


# -- HTML ---------------------------------------------------------------------------------

# No script, no font, no image from anywhere: the policy forbids every fetch, inline CSS is the
# only thing let in, so the page reads the same offline, in a mail client or a CI artefact viewer.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#f6f7f9;margin:0}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.headline{font-size:16px;font-weight:600;padding:10px 14px;border-radius:6px;margin:12px 0 18px}
.ok{background:#e3f4e8;color:#14532d}.bad{background:#fde8e8;color:#7f1d1d}.warn{background:#fff4d6;color:#713f12}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001;border-radius:6px;overflow:hidden}
th,td{padding:6px 10px;border-bottom:1px solid #e6e8ec;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.details td:first-child{color:#5b6475;width:90px}
.chart{background:#fff;box-shadow:0 1px 2px #0001;border-radius:6px;padding:10px 14px;display:inline-block}
.pass{color:#166534}.fail{color:#b91c1c;font-weight:600}.dim{color:#6b7280}
.out{max-width:420px;overflow-wrap:anywhere}
ul.diag{background:#fff4d6;border-radius:6px;padding:10px 28px}
"""


def _e(value: Any) -> str:
    # control characters are parse errors in HTML: show them as U+FFFD, as the terminal summary does
    text = "".join("\ufffd" if unicodedata.category(c) == "Cc" and c not in "\t\n" else c for c in str(value))
    return html.escape(text, quote=True)


def _bar_chart(report: Report) -> str:
    """Pass rate (bar) and mean score (tick) per metric, as inline SVG."""
    metrics = list(report["metrics"].items())
    if not metrics:
        return '<p class="dim">No metrics.</p>'
    label_w, bar_w, row_h, top = 170, 420, 30, 26
    width, height = label_w + bar_w + 90, top + row_h * len(metrics) + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="pass rate per metric">',
        f'<text x="{label_w}" y="16" font-size="12" fill="#5b6475">'
        "pass rate (bar) and mean score (line), 0–100 %</text>",
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + bar_w * tick
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 20}" stroke="#e6e8ec"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" font-size="11" fill="#6b7280" text-anchor="middle">'
            f"{int(tick * 100)}%</text>"
        )
    for i, (name, stats) in enumerate(metrics):
        y = top + i * row_h
        rate, mean = stats.get("pass_rate"), stats.get("mean")
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 18}" font-size="13" text-anchor="end" fill="#1d2330">{_e(name)}</text>'
        )
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{bar_w}" height="20" fill="#eef0f4" rx="3"/>')
        if rate is not None:
            colour = "#16a34a" if rate >= 0.9 else "#d97706" if rate >= PASS_THRESHOLD else "#dc2626"
            parts.append(
                f'<rect x="{label_w}" y="{y + 4}" width="{bar_w * rate:.1f}" height="20" fill="{colour}" rx="3">'
                f"<title>{_e(name)}: pass rate {_pct(rate)}</title></rect>"
            )
        if mean is not None:
            x = label_w + bar_w * mean
            parts.append(
                f'<line x1="{x:.1f}" y1="{y + 1}" x2="{x:.1f}" y2="{y + 27}" stroke="#1d2330" stroke-width="2">'
                f"<title>{_e(name)}: mean {_num(mean)}</title></line>"
            )
        parts.append(f'<text x="{label_w + bar_w + 8}" y="{y + 18}" font-size="13" fill="#1d2330">{_pct(rate)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _outcome_chart(report: Report) -> str:
    """One stacked bar: samples passed, below threshold, metric errors, failed to run."""
    counts = {"passed": 0, "below threshold": 0, "metric error": 0, "failed": 0}
    for row in report["samples"]:
        if row.get("error") is not None:
            counts["failed"] += 1
        elif row.get("metric_errors"):
            counts["metric error"] += 1
        elif sample_problems(row):
            counts["below threshold"] += 1
        else:
            counts["passed"] += 1
    colours = {"passed": "#16a34a", "below threshold": "#d97706", "metric error": "#7c3aed", "failed": "#dc2626"}
    total = max(1, sum(counts.values()))
    width, bar_w = 600, 580
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="64" viewBox="0 0 {width} 64" '
        'role="img" aria-label="sample outcomes">'
    ]
    x = 10.0
    for kind, n in counts.items():
        if n:
            w = bar_w * n / total
            parts.append(
                f'<rect x="{x:.1f}" y="6" width="{w:.1f}" height="22" fill="{colours[kind]}">'
                f"<title>{kind}: {n}</title></rect>"
            )
            x += w
    lx = 10
    for kind, n in counts.items():
        parts.append(
            f'<rect x="{lx}" y="42" width="11" height="11" fill="{colours[kind]}"/>'
            f'<text x="{lx + 15}" y="52" font-size="12" fill="#1d2330">{kind} {n}</text>'
        )
        lx += 145
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """One self-contained HTML page: inline CSS and SVG, no script, and a content security policy
    that forbids every request, so opening it never reaches the network."""
    ok = report_ok(report)
    state = "warn" if report.get("interrupted") else "ok" if ok else "bad"
    title = f"Evaluation report: {report['dataset']['name']}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="headline {state}">{_e(_headline(report))}</div>',
        '<table class="details">'
        + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in _details(report))
        + "</table>",
    ]
    if report.get("diagnostics"):
        out.append('<ul class="diag">' + "".join(f"<li>{_e(d)}</li>" for d in report["diagnostics"]) + "</ul>")
    out += [
        "<h2>Metrics</h2>",
        f'<div class="chart">{_bar_chart(report)}</div>',
        "<p></p>",
        "<table><tr><th>metric</th><th>mean</th><th>pass rate</th><th>p50</th><th>p95</th><th>stddev</th>"
        "<th>count</th><th>errors</th></tr>",
    ]
    for name, stats in report["metrics"].items():
        out.append(
            f"<tr><td>{_e(name)}</td><td class=n>{_num(stats['mean'])}</td><td class=n>{_pct(stats['pass_rate'])}</td>"
            f"<td class=n>{_num(stats['p50'])}</td><td class=n>{_num(stats['p95'])}</td>"
            f"<td class=n>{_num(stats.get('stddev'))}</td>"
            f"<td class=n>{stats['count']}</td><td class=n>{stats['errors']}</td></tr>"
        )
    out.append("</table>")
    repeated = summary_lines(report)
    if repeated:
        out += ["<h2>Repetitions</h2>", "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in repeated) + "</ul>"]
        rows = unstable_rows(report)
        if rows:
            out.append(
                "<table><tr><th>unstable sample</th><th>passed</th><th>repetitions</th><th>pass rate</th>"
                "<th>95% CI</th></tr>"
                + "".join(
                    f"<tr><td>{_e(i)}</td><td class=n>{p}</td><td class=n>{n}</td><td class=n>{_pct(r)}</td>"
                    f"<td class=n>{_pct(lo)} – {_pct(hi)}</td></tr>"
                    for i, p, n, r, lo, hi in rows
                )
                + "</table>"
            )
    out += report_extras.html_sections(report)
    out += ["<h2>Samples</h2>", f'<div class="chart">{_outcome_chart(report)}</div>', "<p></p>"]
    names = list(report["metrics"])
    out.append(
        "<table><tr><th>id</th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "<th>result</th><th>output</th></tr>"
    )
    for row in report["samples"]:
        problems = sample_problems(row)
        scores = row.get("scores") or {}
        cells = "".join(
            f'<td class="n {"fail" if (scores.get(n) is not None and scores[n] < PASS_THRESHOLD) else ""}">'
            f"{_num(scores.get(n)) if scores.get(n) is not None else '–'}</td>"
            for n in names
        )
        verdict = (
            '<span class="pass">pass</span>' if not problems else f'<span class="fail">{_e("; ".join(problems))}</span>'
        )
        output = row.get("output")
        shown = (
            _e(output if len(output) <= 300 else output[:299] + "…")
            if output is not None
            else '<span class="dim">–</span>'
        )
        out.append(f"<tr><td>{_e(row['id'])}</td>{cells}<td>{verdict}</td><td class=out>{shown}</td></tr>")
    out += [
        "</table>",
        f'<p class="dim">schema {_e(report.get("schema_version", ""))} · run {_e(report["run_id"])}</p>',
        "</main></body></html>",
    ]
    return "\n".join(out) + "\n"


# -- CSV ----------------------------------------------------------------------------------


def render_csv(report: Report) -> str:
    """One row per sample × metric (columns :data:`CSV_COLUMNS`); a failed sample has a row per
    metric with an empty score and its error."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    # a repeated run has a row per sample × repetition × metric, told apart by a last column
    repeated = isinstance(report.get("repetitions"), int) and report["repetitions"] > 1
    writer.writerow(CSV_COLUMNS + (("repetition",) if repeated else ()))
    names = list(report["metrics"])
    for sample in report["samples"]:
        executions = sample["repetitions"] if repeated else [sample]
        for row in executions:
            error = row.get("error") or {}
            scores = row.get("scores") or {}
            metric_errors = row.get("metric_errors") or {}
            cost = row.get("cost") or sample.get("cost") or {}
            for name in names:
                score = scores.get(name)
                merr = metric_errors.get(name)
                writer.writerow(
                    [
                        report["run_id"],
                        sample["id"],
                        sample["index"],
                        name,
                        "" if score is None else repr(float(score)),
                        "" if score is None else str(score >= PASS_THRESHOLD).lower(),
                        f"{merr.get('kind', '')}: {merr.get('message', '')}" if merr else "",
                        error.get("kind", ""),
                        error.get("message", ""),
                        "" if row.get("attempts") is None else row["attempts"],
                        "" if row.get("output") is None else row["output"],
                        "" if cost.get("usd") is None else repr(float(cost["usd"])),
                        cost.get("source", ""),
                        "true" if row.get("cached") else "",
                        *((row["repetition"],) if repeated else ()),
                    ]
                )
    return buffer.getvalue()


# -- JUnit XML ----------------------------------------------------------------------------


def _xml_clean(value: str) -> str:
    """Text XML 1.0 can carry: characters it forbids (most control characters) become U+FFFD."""
    return "".join(
        c if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c > "\uffff" else "\ufffd"
        for c in value
    )


def _xml_text(value: str) -> str:
    return html.escape(_xml_clean(value), quote=False)


_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
)


def _attr(value: Any) -> str:
    """``value`` as a double-quoted XML attribute; line breaks and tabs as character references,
    which a parser keeps (it turns literal ones into spaces)."""
    return '"' + _xml_clean(str(value)).translate(_ATTR_ESCAPES) + '"'


def gate_name(problem: str) -> str:
    """The JUnit testcase name of a failed gate (core/baselines.py gate_failures words it):
    ``fail-under:METRIC`` or ``max-regressions``, the same from run to run."""
    if problem.endswith("(--fail-under)"):
        return "fail-under:" + problem.split(" mean ", 1)[0]
    if " regressed sample(s) against baseline " in problem:
        return "max-regressions"
    return "gate"


def render_junit(report: Report) -> str:
    """JUnit XML: one testsuite for the run, one testcase per sample; a sample that errored, has a
    metric error or scored below the threshold on any metric is a ``<failure>``."""
    name = str(report["dataset"]["name"])
    cases = []
    failures = 0
    for row in report["samples"]:
        problems = sample_problems(row)
        body = ""
        if problems:
            failures += 1
            error = row.get("error")
            kind = (
                error.get("kind", "error")
                if error
                else "metric_error"
                if row.get("metric_errors")
                else "below_threshold"
            )
            body = (
                f"<failure message={_attr(problems[0])} type={_attr(kind)}>"
                f"{_xml_text(chr(10).join(problems))}</failure>"
            )
        # scores and output go to system-out: the one free-text place every JUnit reader shows
        scores = row.get("scores") or {}
        lines = [f"{m}: {_num(v) if v is not None else '-'}" for m, v in scores.items()]
        if row.get("output") is not None:
            lines.append(f"output: {row['output']}")
        if lines:
            body += f"<system-out>{_xml_text(chr(10).join(lines))}</system-out>"
        cases.append(
            f'    <testcase classname={_attr("evalharness." + name)} name={_attr(row["id"])} time="0">{body}</testcase>'
        )
    for problem in report_extras.gate_failures(report):
        # a failed gate is a failed test, so a CI system shows why the run failed
        failures += 1
        cases.append(
            f"    <testcase classname={_attr('evalharness.' + name + '.gates')} "
            f'name={_attr(gate_name(problem))} time="0">'
            f'<failure message={_attr(problem)} type="gate">{_xml_text(problem)}</failure></testcase>'
        )
    total = len(cases)
    props = (
        ("run_id", report["run_id"]),
        ("sut", report["sut"]),
        ("mode", report["mode"]),
        *report_extras.junit_properties(report),
    )
    suite_props = "".join(f"<property name={_attr(k)} value={_attr(v)}/>" for k, v in props)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuites name="evalharness" tests="{total}" failures="{failures}" errors="0" '
        f'time="{report["duration_seconds"]}">\n'
        f'  <testsuite name={_attr(name)} tests="{total}" failures="{failures}" errors="0" skipped="0" '
        f'time="{report["duration_seconds"]}" timestamp={_attr(str(report["started_at"]).removesuffix("Z"))}>\n'
        f"    <properties>{suite_props}</properties>\n" + "\n".join(cases) + "\n  </testsuite>\n</testsuites>\n"
    )


# -- writing ------------------------------------------------------------------------------

RENDERERS: dict[str, Callable[[Report], str]] = {
    "md": render_markdown,
    "html": render_html,
    "csv": render_csv,
    "junit": render_junit,
}


def write_text_atomically(text: str, path: str | Path) -> Path:
    """Write ``text`` as UTF-8, atomically: readers see the old file or the whole new one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def write_formats(report: Report, paths: Mapping[str, str | None]) -> list[tuple[str, Path]]:
    """Render and write each format in ``paths`` (format -> file, None: not asked for)."""
    written = []
    for fmt, path in paths.items():
        if path:
            written.append((fmt, write_text_atomically(RENDERERS[fmt](report), path)))
    return written


def check_output_paths(paths: Sequence[tuple[str, str | None]]) -> None:
    """Before a run: every report file must be writable where it is asked for (a directory, a
    parent that is a file, a directory that refuses a new file, or two flags naming one file is
    found now rather than after an hour of running)."""
    from .errors import EvalHarnessError

    seen: dict[str, str] = {}
    for flag, path in paths:
        if not path:
            continue
        p = Path(path)
        if p.is_dir():
            raise EvalHarnessError(f"{flag} {path}: is a directory, not a file")
        real = os.path.realpath(p)
        same = seen.get(real)
        if same is not None:
            raise EvalHarnessError(f"{flag} {path}: {same} writes the same file; give each report its own")
        seen[real] = flag
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise EvalHarnessError(f"{flag} {path}: {parent} is not a directory")
        if not os.access(parent, os.W_OK):
            raise EvalHarnessError(f"{flag} {path}: {parent} is not writable")
        # access() says yes to root everywhere: a file made and removed here is the real test
        try:
            fd, probe = tempfile.mkstemp(dir=parent, prefix=".evalharness-check-")
        except OSError as exc:
            raise EvalHarnessError(f"{flag} {path}: cannot write in {parent} ({exc.strerror or exc})") from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
