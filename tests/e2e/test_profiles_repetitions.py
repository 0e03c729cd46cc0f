"""`evalharness run --profile` and `--repetitions` end to end: real CLI processes, real Redis,
real local workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from support.procs import Processes

from evalharness.core.examples import EXAMPLE_DATASET

SUT = "support.suts:steady"


def dataset(tmp_path: Path, n: int = 12) -> Path:
    path = tmp_path / "small.jsonl"
    path.write_text("".join(line + "\n" for line in EXAMPLE_DATASET.read_text().splitlines()[:n]))
    return path


def nothing_queued(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert [k for k in r.scan_iter("eh:*") if ":job:" in k or ":batch" in k or ":run" in k] == []
    finally:
        r.close()


def test_a_profile_from_the_file_gives_options_and_flags_win(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    data = dataset(tmp_path, 12)
    (tmp_path / "eh.toml").write_text(
        '[profiles.quick]\nmode = "serial"\nlimit = 5\ntries = 1\nmetrics = ["exact-match"]\n'
    )
    out = procs.cli(
        "--config",
        "eh.toml",
        "run",
        str(data),
        "--sut",
        SUT,
        "--profile",
        "quick",
        "--limit",
        "3",
        "--json",
        "r.json",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mode"] == "serial" and report["total_samples"] == 3  # --limit 3 beat the profile's 5
    assert report["options"]["tries"] == 1 and list(report["metrics"]) == ["exact-match"]
    assert report["profile"] == {"name": "quick", "values": {"mode": "serial", "tries": 1, "metrics": ["exact-match"]}}
    # none clears the profile's limit: every sample runs
    out = procs.cli(
        "--config",
        "eh.toml",
        "run",
        str(data),
        "--sut",
        SUT,
        "--profile",
        "quick",
        "--limit",
        "none",
        "--json",
        "r.json",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["total_samples"] == 12
    nothing_queued(redis_url)  # serial: nothing ever went to Redis


@pytest.mark.parametrize(
    ("toml", "args", "message"),
    [
        ("", ("--profile", "weekly"), "error: --profile 'weekly': no such profile (built in: ci, nightly, smoke)"),
        (
            "[profiles.ci]\nconcurrency = -1\n",
            ("--profile", "ci"),
            "error: {path}: table [profiles.ci]: key 'concurrency': expected an integer >= 1",
        ),
        (
            "[profiles.ci]\nretries = 2\n",
            ("--profile", "ci"),
            "error: {path}: table [profiles.ci]: unknown key 'retries'",
        ),
        ("", ("--repetitions", "0"), "Invalid value for '--repetitions'"),
        ("", ("--concurrency", "lots"), "Invalid value for '--concurrency'"),
    ],
)
def test_bad_profiles_and_flags_exit_2_naming_them_with_nothing_queued(
    procs: Processes, tmp_path: Path, redis_url: str, toml: str, args: tuple[str, ...], message: str
) -> None:
    data = dataset(tmp_path, 3)
    path = tmp_path / "eh.toml"
    path.write_text(toml)
    out = procs.cli(
        "--config", str(path), "run", str(data), "--sut", SUT, "--metric", "exact-match", "--workers", "1", *args
    )
    assert out.returncode == 2, out.stderr
    assert message.format(path=path) in out.stderr
    nothing_queued(redis_url)


def test_an_unknown_metric_in_a_profile_names_the_file_table_and_key(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 3)
    path = tmp_path / "eh.toml"
    path.write_text('[profiles.rag]\nmetrics = ["bleu"]\n')
    out = procs.cli("--config", str(path), "run", str(data), "--sut", SUT, "--profile", "rag", "--workers", "1")
    assert out.returncode == 2, out.stderr
    assert f"error: {path}: table [profiles.rag]: key 'metrics': unknown metric 'bleu'" in out.stderr
    nothing_queued(redis_url)
    checked = procs.cli("config", "check", str(path))
    assert checked.returncode == 2
    assert f"error: {path}: table [profiles.rag]: key 'metrics': unknown metric 'bleu'" in checked.stderr


def test_config_check_shows_the_profiles(procs: Processes, tmp_path: Path) -> None:
    (tmp_path / "eh.toml").write_text(
        '[profiles.nightly]\nconcurrency = 8\nrate_limit = "none"\n\n[profiles.team]\nrepetitions = 5\n'
    )
    out = procs.cli("config", "check", "eh.toml", "--json")
    assert out.returncode == 0, out.stderr
    profiles = json.loads(out.stdout)["profiles"]
    assert set(profiles) == {"ci", "smoke", "nightly", "team"}
    assert profiles["nightly"]["from"] == "built in, changed in the file"
    assert profiles["nightly"]["values"]["concurrency"] == 8 and profiles["nightly"]["values"]["repetitions"] == 3
    assert profiles["team"] == {"from": "the file", "values": {"repetitions": 5}}
    shown = procs.cli("config", "check", "eh.toml")
    assert "profiles (run --profile NAME)" in shown.stdout and "repetitions=5" in shown.stdout


@pytest.mark.slow
def test_repetitions_run_each_sample_as_distinct_jobs_and_report_each_execution(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 8)
    out = procs.cli(
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--repetitions",
        "3",
        "--workers",
        "2",
        "--concurrency",
        "6",
        "--json",
        "r.json",
        "--md",
        "r.md",
    )
    assert out.returncode == 0, out.stderr
    # the progress line (plain at the end, stderr being no terminal) counts executions and says so
    assert "(lazy-parallel, 8 samples × 3 repetitions): 24/24 done" in out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["total_samples"] == 8 and report["total_executions"] == 24 and report["repetitions"] == 3
    assert all(len(s["repetitions"]) == 3 for s in report["samples"])
    assert report["metrics"]["exact-match"]["count"] == 24
    assert report["unstable_samples"] == []  # the example SUT is deterministic
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        run_id = report["run_id"]
        # 24 jobs, each its own idempotency key: none was merged into another
        assert r.hlen(f"eh:{{q:evals}}:results:run-{run_id}") == 24
        assert int(r.hget("eh:{q:evals}:stats", "deduplicated") or 0) == 0
    finally:
        r.close()
    assert "## Repetitions" in (tmp_path / "r.md").read_text()
    # the rebuilt report folds the executions the same way
    again = procs.cli("report", report["run_id"], "--json", "again.json")
    assert again.returncode == 0, again.stderr
    rebuilt = json.loads((tmp_path / "again.json").read_text())
    assert rebuilt["metrics"] == report["metrics"] and rebuilt["total_executions"] == 24


def test_saved_outputs_take_a_profile_but_refuse_repetitions(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    data = dataset(tmp_path, 4)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    (tmp_path / "outs.jsonl").write_text(
        "".join(json.dumps({"id": r["id"], "output": r["expected_output"]}) + "\n" for r in rows)
    )
    # nightly repeats samples: that is about calling a SUT, so saved outputs are scored once
    out = procs.cli(
        "run",
        str(data),
        "--outputs",
        "outs.jsonl",
        "--metric",
        "exact-match",
        "--profile",
        "nightly",
        "--json",
        "r.json",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert "repetitions" not in report
    # the report records what the profile gave that applied: nothing about executing samples
    assert report["profile"] == {"name": "nightly", "values": {}}
    out = procs.cli("run", str(data), "--outputs", "outs.jsonl", "--metric", "exact-match", "--repetitions", "2")
    assert out.returncode == 2 and "--repetitions does not apply with --outputs" in out.stderr
    for flag in (("--cache",), ("--budget-usd", "1")):
        out = procs.cli("run", str(data), "--outputs", "outs.jsonl", "--metric", "exact-match", *flag)
        # one error line, as for every other bad flag (not click's usage block)
        assert out.returncode == 2 and out.stderr.strip() == (
            f"error: {flag[0]} does not apply with --outputs: saved outputs call no SUT"
        ), out.stderr
    nothing_queued(redis_url)
