"""The reports people read (Markdown, HTML, CSV, JUnit XML) rendered from the JSON report dict;
the HTML page is opened in headless Chromium, which must render it without any request."""

from __future__ import annotations

import csv
import io
import re
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from support.chromium import chromium_command, ensure_chromium, page_requests

from evalharness.core.datasets import Dataset, Sample
from evalharness.core.report import SampleOutcome, build_report
from evalharness.core.report_formats import (
    CSV_COLUMNS,
    render_csv,
    render_html,
    render_junit,
    render_markdown,
    write_formats,
)
from evalharness.core.scorers import resolve_metrics

STARTED = 1_700_000_000.25


def sample_report() -> dict[str, Any]:
    """Five samples: passes, below threshold on one metric, a metric error, a timeout, and one
    whose id and output carry markup, a pipe and a control character."""
    rows = [
        ("capital-fr", "Paris", "Paris", None),
        ("capital-de", "Berlin", "The capital is Bonn", None),
        ("empty-expected", "", "anything", None),
        ("slow", "x", None, {"kind": "timeout", "message": "the SUT call exceeded the timeout of 60s"}),
        ('<script>alert("x")</script>|a', "a|b", 'a|b <img src="https://example.com/t.png">\x07', None),
    ]
    samples = tuple(
        Sample(id=i, input=f"q {i}", expected_output=e, metadata={}, line=n + 1) for n, (i, e, _, _) in enumerate(rows)
    )
    data = Dataset(path=Path("data/capitals.jsonl"), name="capitals", samples=samples)
    outcomes = [SampleOutcome(n, samples[n], out, err, 3 if err else 1) for n, (_, _, out, err) in enumerate(rows)]
    report = build_report(
        run_id="01JD3Q8ZK7",
        dataset=data,
        sut="mybot.sut:answer",
        mode="lazy-parallel",
        options={"mode": "lazy-parallel"},
        started_at=STARTED,
        finished_at=STARTED + 61.5,
        outcomes=outcomes,
        scorers=resolve_metrics(["exact-match", "contains"]),
    )
    report["subset"] = {"of": 40, "samples": 5, "limit": 5, "sample_ids": None, "shuffle": True, "seed": 7}
    report["diagnostics"] = ["1 sample timed out"]
    return report


def test_markdown_lists_metrics_failures_and_the_subset() -> None:
    md = render_markdown(sample_report())
    assert md.startswith("# Evaluation report: capitals\n")
    assert "| exact-match | 0.2500 | 25.0% |" in md
    assert "| subset | 5 of 40 samples (shuffled with seed 7, limit 5) |" in md
    assert "## Samples that did not pass (4)" in md
    assert "| slow | timeout: the SUT call exceeded the timeout of 60s |" in md
    assert "| capital-de | exact-match: 0 is below the threshold 0.5; contains: 0 is below" in md
    assert "empty-expected | contains: metric error" in md
    # markup is escaped and a pipe cannot end a cell early
    assert "<script>" not in md and "&lt;script&gt;" in md
    for line in md.splitlines():
        if line.startswith("| &lt;script"):
            assert line.count(" | ") - line.count("\\|") <= 4


def test_csv_has_one_row_per_sample_and_metric() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(sample_report()))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 5 * 2
    by = {(r["sample_id"], r["metric"]): r for r in rows}
    assert (by[("capital-fr", "exact-match")]["score"], by[("capital-fr", "exact-match")]["passed"]) == ("1.0", "true")
    assert (by[("capital-de", "exact-match")]["score"], by[("capital-de", "exact-match")]["passed"]) == ("0.0", "false")
    assert by[("empty-expected", "contains")]["metric_error"].startswith("empty-expected")
    slow = by[("slow", "contains")]
    assert (slow["score"], slow["error_kind"], slow["attempts"]) == ("", "timeout", "3")
    odd = by[('<script>alert("x")</script>|a', "exact-match")]
    assert odd["output"] == 'a|b <img src="https://example.com/t.png">\x07'


def test_junit_has_a_testcase_per_sample_and_fails_the_right_ones() -> None:
    text = render_junit(sample_report())
    root = ET.fromstring(text.encode())  # parses: control characters were replaced
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "capital-fr",
        "capital-de",
        "empty-expected",
        "slow",
        '<script>alert("x")</script>|a',
    ]
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"capital-de", "empty-expected", "slow", '<script>alert("x")</script>|a'}
    assert failed["slow"] is not None and failed["slow"].get("type") == "timeout"
    assert failed["capital-de"] is not None and failed["capital-de"].get("type") == "below_threshold"
    assert failed["empty-expected"] is not None and failed["empty-expected"].get("type") == "metric_error"
    assert (root.get("tests"), root.get("failures"), suite.get("failures")) == ("5", "4", "4")
    assert suite.get("timestamp") == "2023-11-14T22:13:20.250"
    out = cases[0].find("system-out")
    assert out is not None and "exact-match: 1.0000" in (out.text or "")


def test_junit_attributes_keep_quotes_line_breaks_and_tabs() -> None:
    report = sample_report()
    odd = "a \"quoted\" 'id' <&>\nsecond line\tand a tab\r"
    report["samples"][0]["id"] = odd
    root = ET.fromstring(render_junit(report).encode())
    names = [c.get("name") for c in root.iter("testcase")]
    assert names[0] == odd  # a parser turns literal line breaks and tabs in an attribute into spaces


def test_the_report_formats_load_no_xml_or_http_library() -> None:
    # they are imported by every `evalharness run`, which writes a JUnit file only when asked
    code = (
        "import sys, evalharness.core.report_formats; "
        "print(sorted(m for m in sys.modules if m.startswith(('xml', 'urllib.request', 'http'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_html_is_self_contained() -> None:
    page = render_html(sample_report())
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<script" not in page.lower()  # the sample's <script> id is escaped text
    assert "&lt;script&gt;" in page
    # nothing is fetched: no element has a src/href (or any URL) attribute, the CSS has no url()
    tags = Tags()
    tags.feed(page)
    assert {"html", "head", "body", "style", "svg", "table", "rect", "text"} <= {t for t, _ in tags.seen}
    assert tags.seen.count(("svg", "")) == 2
    urls = [
        (t, a)
        for t, attrs in tags.attrs
        for a, v in attrs
        if a in ("src", "href", "xlink:href", "action", "srcset", "poster", "data")
        or "://" in (v or "")
        and a != "xmlns"
    ]
    assert urls == []
    assert "url(" not in page and "@import" not in page
    assert "\x07" not in page


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []
        self.attrs: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, ""))
        self.attrs.append((tag, attrs))


def test_write_formats_writes_each_asked_file(tmp_path: Path) -> None:
    written = write_formats(
        sample_report(),
        {"md": str(tmp_path / "a" / "r.md"), "html": None, "csv": str(tmp_path / "r.csv"), "junit": None},
    )
    assert [fmt for fmt, _ in written] == ["md", "csv"]
    assert (tmp_path / "a" / "r.md").read_text().startswith("# Evaluation report")
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / "a").glob(".*.tmp"))


# -- in a browser --------------------------------------------------------------------------


class LoopbackProxy:
    """An HTTP proxy on 127.0.0.1 that answers nothing and records every request line: the
    browser is pointed at it for every host, loopback included, so any fetch shows up here."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
                except OSError:
                    first = "(no request line)"
                self.requests.append(first)
                try:
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture
def proxy() -> Iterator[LoopbackProxy]:
    p = LoopbackProxy()
    yield p
    p.close()


def open_in_chromium(
    binary: str, page: Path, profile: Path, proxy: LoopbackProxy, *action: str
) -> subprocess.CompletedProcess[str]:
    cmd = chromium_command(
        binary,
        profile,
        f"--proxy-server=http://127.0.0.1:{proxy.port}",
        "--proxy-bypass-list=<-loopback>",
        "--window-size=1200,1500",
        *action,
        page.as_uri(),
    )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_the_html_report_renders_in_chromium_without_any_request(
    chromium: str, proxy: LoopbackProxy, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(sample_report()), encoding="utf-8")
    shot = tmp_path / "report.png"
    done = open_in_chromium(chromium, page, tmp_path / "profile-1", proxy, f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a rendered page, not a blank one
    dom = open_in_chromium(chromium, page, tmp_path / "profile-2", proxy, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for text in ("exact-match", "contains", "capital-de", "pass rate", "<svg"):
        assert text in dom.stdout
    assert page_requests(proxy.requests) == []


@pytest.mark.slow
def test_the_request_check_sees_a_page_that_fetches(chromium: str, proxy: LoopbackProxy, tmp_path: Path) -> None:
    """The check above is not vacuous: the same browser and proxy catch a page with an external image."""
    page = tmp_path / "fetching.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/pixel.png">hello</body></html>')
    done = open_in_chromium(chromium, page, tmp_path / "profile", proxy, "--dump-dom", "--virtual-time-budget=3000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert any("example.invalid" in r for r in page_requests(proxy.requests)), proxy.requests


def test_a_failed_gate_is_a_testcase_named_after_its_gate() -> None:
    from evalharness.core.report_formats import gate_name

    assert gate_name("rouge-l:max_tokens=100 mean 0.4000 is below the minimum 0.5000 (--fail-under)") == (
        "fail-under:rouge-l:max_tokens=100"
    )
    assert gate_name("2 regressed sample(s) against baseline 'main' (allowed: 0)") == "max-regressions"
    assert gate_name("3 confidently regressed sample(s) against baseline 'main' (allowed: 1)") == "max-regressions"


def test_report_paths_are_checked_before_a_run(tmp_path: Path) -> None:
    """Every refusal names the flag and the file; a writable path (parents made later) passes and
    leaves nothing behind."""
    from evalharness.core.errors import EvalHarnessError
    from evalharness.core.report_formats import check_output_paths

    (tmp_path / "afile").write_text("x")
    check_output_paths([("--json", str(tmp_path / "new" / "dir" / "r.json")), ("--md", str(tmp_path / "r.md"))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    for paths, words in (
        ([("--html", str(tmp_path))], "is a directory, not a file"),
        ([("--csv", str(tmp_path / "afile" / "r.csv"))], "afile is not a directory"),
        # /proc refuses new files even to root, for whom access() says every directory is writable
        ([("--junit", "/proc/r.xml")], "--junit /proc/r.xml: cannot write in /proc"),
        (
            [("--json", str(tmp_path / "same.json")), ("--md", str(tmp_path / "." / "same.json"))],
            "--md " + str(tmp_path / "." / "same.json") + ": --json writes the same file",
        ),
    ):
        with pytest.raises(EvalHarnessError, match=re.escape(words)):
            check_output_paths(paths)
