"""Baselines and gates end to end: a run promoted as a baseline (kept in Redis without expiry,
exported and imported as a file), a later run compared with it per sample and per metric, and the
exit status CI depends on (--max-regressions, --confident-only, --compare-epsilon, --fail-under)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import redis
from support.procs import Processes

from evalharness.core.examples import EXAMPLE_DATASET


def dataset(tmp_path: Path, n: int = 30) -> Path:
    lines = EXAMPLE_DATASET.read_text().splitlines()[:n]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.slow
def test_a_worse_run_fails_the_regression_gate_against_the_promoted_baseline(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path)
    good = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.suts:steady_sync",
        "--metric",
        "exact-match",
        "--workers",
        "1",
        "--quiet",
        "--json",
        "a.json",
    )
    assert good.returncode == 0, good.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    promoted = procs.cli("baseline", "promote", a["run_id"], "--name", "main")
    assert promoted.returncode == 0, promoted.stderr
    listed = json.loads(procs.cli("baseline", "list", "--json").stdout)
    assert [(b["name"], b["run_id"], b["samples"]) for b in listed] == [("main", a["run_id"], 30)]
    r = redis.Redis.from_url(redis_url)
    try:
        assert r.ttl("eh:baseline:main") == -1  # a baseline does not expire with its run
    finally:
        r.close()

    # the worse SUT answers every capital question wrongly: those that passed before regress
    expected = sorted(
        s["id"] for s in a["samples"] if s["scores"]["exact-match"] == 1.0 and s["id"] in ("q010", "q020", "q030")
    )
    assert expected, "the dataset must have a capital question that passed"
    worse = (
        "run",
        str(data),
        "--sut",
        "support.paid_suts:worse",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--quiet",
        "--compare",
        "main",
    )
    gated = procs.cli(
        *worse,
        "--max-regressions",
        "0",
        "--comparison-out",
        "cmp.json",
        "--json",
        "b.json",
        "--junit",
        "b.xml",
        "--md",
        "b.md",
    )
    assert gated.returncode == 1, gated.stderr  # every sample scored, but the gate failed
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert cmp["schema_version"] == "evalharness.comparison.v1" and cmp["joined_by"] == "row_hash"
    assert cmp["counts"]["regressed"] == len(expected) and cmp["counts"]["compared"] == 30
    assert cmp["counts"]["added"] == cmp["counts"]["removed"] == 0
    regressed = sorted(row["sample_id"] for row in cmp["rows"] if row["status"] == "regressed")
    assert regressed == expected
    assert all(
        row["flips"] == {"exact-match": "pass→fail"} and row["newly_failing"]
        for row in cmp["rows"]
        if row["status"] == "regressed"
    )
    em = cmp["metrics"]["exact-match"]
    assert em["pass_to_fail"] == len(expected) and em["mean"]["delta"] == pytest.approx(-len(expected) / 30)
    assert em["mean"]["low"] < em["mean"]["delta"] < em["mean"]["high"]
    assert em["pass_rate"]["low"] <= em["pass_rate"]["delta"] <= em["pass_rate"]["high"]
    # with one execution per sample nothing is told from noise unless an epsilon is given
    assert cmp["resolution"] == 1.0 and cmp["counts"]["regressed_confident"] == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["comparison"] == cmp and b["gates"]["passed"] is False
    assert f"{len(expected)} regressed" in gated.stdout and "gate failed" in gated.stdout
    suite = ET.parse(tmp_path / "b.xml").getroot().find("testsuite")
    assert suite is not None
    gate_cases = [c for c in suite.findall("testcase") if str(c.get("classname")).endswith(".gates")]
    assert len(gate_cases) == 1 and gate_cases[0].find("failure") is not None
    assert gate_cases[0].get("name") == "max-regressions"  # a name a CI system tracks run to run
    assert "## Comparison" in (tmp_path / "b.md").read_text()

    allowed = procs.cli(*worse, "--max-regressions", str(len(expected)))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    confident = procs.cli(*worse, "--max-regressions", "0", "--confident-only")
    assert confident.returncode == 0, confident.stdout  # none is beyond a resolution of 100 points
    with_epsilon = procs.cli(*worse, "--max-regressions", "0", "--confident-only", "--compare-epsilon", "0.5")
    assert with_epsilon.returncode == 1 and "confidently regressed" in with_epsilon.stdout

    # the rebuilt report of the good run compares with its own baseline: nothing changed
    same = procs.cli(
        "report", a["run_id"], "--compare", "main", "--max-regressions", "0", "--comparison-out", "same.json"
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert json.loads((tmp_path / "same.json").read_text())["counts"]["stable"] == 30


@pytest.mark.slow
def test_a_repeated_run_is_promoted_as_one_row_per_sample_and_compares_with_itself_unchanged(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 10)
    args = ("run", str(data), "--sut", "support.suts:steady_sync", "--metric", "exact-match", "--workers", "1")
    args += ("--repetitions", "3", "--quiet")
    first = procs.cli(*args, "--json", "a.json")
    assert first.returncode == 0, first.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    promoted = procs.cli("baseline", "promote", a["run_id"], "--name", "rep")
    assert promoted.returncode == 0, promoted.stderr
    assert ", 10 sample(s), macro-F1 " in promoted.stdout  # the samples, not their 30 executions
    listed = json.loads(procs.cli("baseline", "list", "--json").stdout)
    assert [(b["name"], b["samples"]) for b in listed] == [("rep", 10)]
    again = procs.cli(*args, "--compare", "rep", "--max-regressions", "0", "--comparison-out", "c.json")
    assert again.returncode == 0, again.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["counts"]["compared"] == 10 and c["counts"]["regressed"] == c["counts"]["added"] == 0
    mean = c["metrics"]["exact-match"]["mean"]
    assert mean["before"] == mean["after"] == a["metrics"]["exact-match"]["mean"], mean


def test_fail_under_is_a_plain_threshold_on_a_metric_mean(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    data = dataset(tmp_path, 20)
    base = (
        "run",
        str(data),
        "--sut",
        "support.suts:steady_sync",
        "--metric",
        "exact-match,contains",
        "--batch",
        "serial",
        "--quiet",
        "--json",
        "r.json",
    )
    low = procs.cli(*base, "--fail-under", "exact-match=0.1", "--fail-under", "contains=0.1")
    assert low.returncode == 0, low.stdout + low.stderr
    assert "gates passed" in low.stdout
    high = procs.cli(*base, "--fail-under", "exact-match=0.999")
    assert high.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failures"]["total"] == 0 and report["gates"]["passed"] is False
    assert (
        report["gates"]["failures"][0].startswith("exact-match mean ")
        and "below the minimum 0.9990" in report["gates"]["failures"][0]
    )


def test_baselines_export_import_show_and_clear(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    data = dataset(tmp_path, 5)
    run = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.suts:steady_sync",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--quiet",
        "--json",
        "r.json",
    )
    assert run.returncode == 0, run.stderr
    # a serial run keeps no outputs in Redis: its JSON report is promoted
    assert procs.cli("baseline", "promote", "--report", "r.json", "--name", "nightly").returncode == 0
    shown = procs.cli("baseline", "show", "nightly")
    assert shown.returncode == 0 and "exact-match: mean" in shown.stdout
    assert procs.cli("baseline", "export", "nightly", "nightly.json").returncode == 0
    doc = json.loads((tmp_path / "nightly.json").read_text())
    assert doc["schema_version"] == "evalharness.baseline.v1" and len(doc["rows"]) == 5
    cleared = procs.cli("baseline", "clear", "nightly")
    assert cleared.returncode == 0
    again = procs.cli("baseline", "clear", "nightly")
    assert again.returncode == 1 and "no baseline named 'nightly'" in again.stderr
    missing = procs.cli("baseline", "show", "nightly")
    assert missing.returncode == 2 and "no baseline named 'nightly'" in missing.stderr
    imported = procs.cli("baseline", "import", "nightly.json", "--name", "restored")
    assert imported.returncode == 0, imported.stderr
    compared = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.suts:steady_sync",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--quiet",
        "--compare",
        "restored",
        "--max-regressions",
        "0",
        "--comparison-out",
        "c.json",
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    assert (
        c["joined_by"] == "id" and c["counts"]["stable"] == 5 and c["warnings"]
    )  # a report file has no content hashes
    (tmp_path / "bad.json").write_text('{"schema_version": "something else"}')
    bad = procs.cli("baseline", "import", "bad.json")
    assert bad.returncode == 2 and "bad.json is not a baseline" in bad.stderr
    unknown = procs.cli("baseline", "promote", "nope", "--name", "x")
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr
