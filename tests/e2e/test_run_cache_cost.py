"""`evalharness run --cache`, usage and cost, and `--budget-usd`, end to end: real CLI processes,
real Redis, real local workers.  The SUTs (support/paid_suts.py) note every call in a file, so the
tests count exactly how often the SUT ran."""

from __future__ import annotations

import json
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


def calls(marks: Path) -> int:
    return len(marks.read_text().splitlines()) if marks.exists() else 0


PRICES = """
[prices."gpt-4o-mini"]
input_per_mtok = 0.5
output_per_mtok = 1.0

[prices."gpt-4o"]
input_per_mtok = 100.0
output_per_mtok = 100.0
"""


@pytest.mark.slow
def test_a_cached_rerun_calls_the_sut_only_for_what_failed_and_the_report_counts_the_cached(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 30)
    marks, fixed = tmp_path / "marks", tmp_path / "fixed"
    env = {"EH_TEST_MARKS": str(marks), "EH_TEST_FIXED": str(fixed)}
    args = (
        "run",
        str(data),
        "--sut",
        "support.paid_suts:flaky_cached",
        "--metric",
        "exact-match",
        "--workers",
        "2",
        "--tries",
        "1",
        "--quiet",
    )

    first = procs.cli(*args, "--cache", "--json", "a.json", env=env)
    assert first.returncode == 1, first.stderr  # q030 (Japan) failed
    a = json.loads((tmp_path / "a.json").read_text())
    assert calls(marks) == 30
    assert a["cache"] == {"enabled": True, "ttl_seconds": 604800, "hits": 0, "misses": 30, "stored": 29}

    fixed.touch()
    second = procs.cli(*args, "--cache", "--json", "b.json", env=env)
    assert second.returncode == 0, second.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert calls(marks) == 31  # only the sample that failed ran again: failures are never cached
    assert b["cache"]["hits"] == 29 and b["cache"]["misses"] == 1 and b["cache"]["stored"] == 1
    cached = {s["id"] for s in b["samples"] if s.get("cached")}
    assert len(cached) == 29 and "q030" not in cached
    assert [s["output"] for s in b["samples"] if s["id"] != "q030"] == [
        s["output"] for s in a["samples"] if s["id"] != "q030"
    ]
    assert "29 cached output(s) reused" in second.stdout

    # the run's outputs in Redis include the cached ones: the rebuilt report scores them all
    rebuilt = procs.cli("report", b["run_id"], "--json", "c.json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads((tmp_path / "c.json").read_text())["scored_samples"] == 30

    # --no-cache calls the SUT for every sample
    third = procs.cli(*args, "--no-cache", "--json", "d.json", env=env)
    assert third.returncode == 0, third.stderr
    assert calls(marks) == 61 and "cache" not in json.loads((tmp_path / "d.json").read_text())

    stats = procs.cli("cache", "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["entries"] == 30
    cleared = procs.cli("cache", "clear")
    assert cleared.returncode == 0 and "cleared 30" in cleared.stdout
    assert json.loads(procs.cli("cache", "stats", "--json").stdout)["entries"] == 0


@pytest.mark.slow
def test_the_config_default_turns_the_cache_on_and_another_sut_fingerprint_misses(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 8)
    marks = tmp_path / "marks"
    (tmp_path / "evalharness.toml").write_text("[run]\ncache = true\ncache_ttl = 120\n")
    env = {"EH_TEST_MARKS": str(marks)}
    for _ in range(2):
        done = procs.cli(
            "run",
            str(data),
            "--sut",
            "support.paid_suts:tokens",
            "--metric",
            "exact-match",
            "--batch",
            "serial",
            "--quiet",
            "--json",
            "r.json",
            env=env,
        )
        assert done.returncode == 0, done.stderr
    assert calls(marks) == 8
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cache"]["hits"] == 8 and report["cache"]["ttl_seconds"] == 120
    # a cached sample keeps the usage it reported: its cost is still in the report
    assert report["usage"]["prompt_tokens"] == 8000
    r = redis.Redis.from_url(redis_url)
    try:
        ttls = [r.ttl(k) for k in r.scan_iter("eh:cache:*")]
    finally:
        r.close()
    assert len(ttls) == 8 and all(0 < t <= 120 for t in ttls)
    # another SUT (another fingerprint) has no cached outputs
    other = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.paid_suts:reported",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--quiet",
        "--json",
        "o.json",
        env=env,
    )
    assert other.returncode == 0, other.stderr
    assert calls(marks) == 16 and json.loads((tmp_path / "o.json").read_text())["cache"]["hits"] == 0


@pytest.mark.slow
def test_cost_is_reported_derived_or_unpriced_with_the_longest_price_prefix(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 6)
    (tmp_path / "evalharness.toml").write_text(PRICES)
    derived = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.paid_suts:tokens",
        "--metric",
        "exact-match",
        "--workers",
        "1",
        "--quiet",
        "--json",
        "d.json",
        "--md",
        "d.md",
        "--csv",
        "d.csv",
    )
    assert derived.returncode == 0, derived.stderr
    d = json.loads((tmp_path / "d.json").read_text())
    # gpt-4o-mini-2024: "gpt-4o-mini" is longer than "gpt-4o", so 1000 × 0.5 + 500 × 1.0 per million
    assert all(s["cost"] == {"usd": 0.001, "source": "derived", "model": "gpt-4o-mini-2024"} for s in d["samples"])
    assert d["cost"]["total_usd"] == pytest.approx(0.006) and d["cost"]["derived_usd"] == pytest.approx(0.006)
    assert d["cost"]["samples"] == {"reported": 0, "derived": 6, "unpriced": 0} and d["cost"]["complete"] is True
    assert "cost $0.0060" in derived.stdout
    assert "$0.006" in (tmp_path / "d.md").read_text()
    reported = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.paid_suts:reported",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--quiet",
        "--json",
        "r.json",
    )
    r = json.loads((tmp_path / "r.json").read_text())
    assert (
        reported.returncode == 0
        and r["cost"]["reported_usd"] == pytest.approx(0.06)
        and r["cost"]["samples"]["reported"] == 6
    )
    unpriced = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.paid_suts:unpriced",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--quiet",
        "--json",
        "u.json",
    )
    u = json.loads((tmp_path / "u.json").read_text())
    assert unpriced.returncode == 0 and u["cost"]["total_usd"] == 0 and u["cost"]["unpriced_models"] == ["mystery-1"]
    assert u["cost"]["complete"] is False and "a floor, not a figure" in unpriced.stdout


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lazy-parallel", "serial"])
def test_the_budget_halts_the_run_removes_what_is_queued_and_lists_what_never_ran(
    procs: Processes, tmp_path: Path, redis_url: str, mode: str
) -> None:
    data = dataset(tmp_path, 40)
    marks = tmp_path / "marks"
    (tmp_path / "evalharness.toml").write_text(PRICES)
    parallel = ("--workers", "2", "--concurrency", "4") if mode == "lazy-parallel" else ()
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.paid_suts:tokens",
        "--metric",
        "exact-match",
        "--batch",
        mode,
        *parallel,
        "--budget-usd",
        "0.005",
        "--quiet",
        "--json",
        "b.json",
        env={"EH_TEST_MARKS": str(marks), "EH_TEST_SLEEP": "0.15"},
    )
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    budget = report["budget"]
    ran = [s for s in report["samples"] if s["error"] is None]
    never = [s for s in report["samples"] if s["error"] is not None]
    assert budget["halted"] is True and budget["limit_usd"] == 0.005
    # every sample either ran or never ran; the SUT was called once per sample that ran
    assert all(s["error"]["kind"] == "not_dispatched" and "halted on budget" in s["error"]["message"] for s in never)
    assert calls(marks) == len(ran) and budget["never_ran"] == [s["id"] for s in never]
    # it stopped once the spend reached $0.005 (5 samples at $0.001); at most the samples in flight then finished after
    assert 5 <= len(ran) <= (5 + 4 if mode == "lazy-parallel" else 5)
    assert budget["spent_usd"] == pytest.approx(0.001 * len(ran))
    assert "halted on budget" in done.stdout
    if mode == "lazy-parallel":
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert r.zcard("eh:{q:evals}:ready") == 0  # nothing of the run is left queued
        finally:
            r.close()


def test_a_repeated_run_counts_its_cache_in_executions(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    data = dataset(tmp_path, 5)
    marks = tmp_path / "marks"
    env = {"EH_TEST_MARKS": str(marks), "EH_TEST_FIXED": str(tmp_path)}
    args = ("run", str(data), "--sut", "support.paid_suts:flaky_cached", "--metric", "exact-match")
    args += ("--workers", "1", "--repetitions", "3", "--cache", "--quiet")
    assert procs.cli(*args, "--json", "a.json", env=env).returncode == 0
    a = json.loads((tmp_path / "a.json").read_text())["cache"]
    assert (a["hits"], a["misses"], a["stored"]) == (0, 15, 15) and calls(marks) == 15
    second = procs.cli(*args, "--json", "b.json", env=env)
    b = json.loads((tmp_path / "b.json").read_text())["cache"]
    assert (b["hits"], b["misses"], b["stored"]) == (15, 0, 0) and calls(marks) == 15
    assert "cache: 15 cached output(s) reused, 0 run, 0 stored" in second.stdout


@pytest.mark.slow
def test_a_resumed_run_keeps_the_budget_and_the_cache_it_began_with(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 40)
    marks = tmp_path / "marks"
    (tmp_path / "evalharness.toml").write_text(PRICES)
    env = {"EH_TEST_MARKS": str(marks), "EH_TEST_SLEEP": "0.15"}
    base = ("--sut", "support.paid_suts:tokens", "--metric", "exact-match", "--workers", "2", "--concurrency", "4")
    budget = ("--budget-usd", "0.005", "--cache", "--quiet", "--json", "a.json")
    first = procs.cli("run", str(data), *base, *budget, env=env)
    assert first.returncode == 1, first.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    rid, ran = a["run_id"], calls(marks)
    assert a["budget"]["halted"] is True and ran < 40
    shown = json.loads(procs.cli("runs", "show", rid, "--json").stdout)
    assert shown["budget_usd"] == 0.005 and shown["cache"]["enabled"] is True
    # resumed as it began: the spend so far reached the budget, so it halts again at once
    again = procs.cli("run", "--resume", rid, "--workers", "2", "--quiet", "--json", "b.json", env=env)
    assert again.returncode == 1, again.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["budget"]["halted"] is True and b["budget"]["limit_usd"] == 0.005 and calls(marks) == ran
    assert b["budget"]["spent_usd"] == pytest.approx(0.001 * ran)
    # a new budget for the whole run lets it finish, still caching what it runs
    more = procs.cli(
        "run", "--resume", rid, "--workers", "2", "--budget-usd", "1", "--quiet", "--json", "c.json", env=env
    )
    assert more.returncode == 0, more.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["scored_samples"] == 40 and calls(marks) == 40
    assert c["budget"] == {"limit_usd": 1.0, "spent_usd": pytest.approx(0.04), "halted": False, "reason": None}
    # the report is the whole run's: none of its 40 outputs came from the cache, all are in it now
    assert c["cache"]["enabled"] is True and (c["cache"]["hits"], c["cache"]["misses"], c["cache"]["stored"]) == (
        0,
        40,
        40,
    )
    # every output went to the cache: a new run calls the SUT for none
    cached = procs.cli("run", str(data), *base, "--cache", "--quiet", "--json", "d.json", env=env)
    assert cached.returncode == 0, cached.stderr
    assert calls(marks) == 40 and json.loads((tmp_path / "d.json").read_text())["cache"]["hits"] == 40


def test_bad_cost_cache_and_gate_flags_name_the_flag_and_queue_nothing(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 4)
    base = ("run", str(data), "--sut", "support.suts:steady", "--metric", "exact-match")
    for flags, words in (
        (("--budget-usd", "0"), "--budget-usd must be a positive amount"),
        (("--budget-usd", "nan"), "--budget-usd"),
        (("--max-regressions", "2"), "--max-regressions needs --compare"),
        (("--compare", "main", "--compare-epsilon", "2"), "--compare-epsilon must be between 0 and 1"),
        (("--compare", "main", "--max-regressions", "-1"), "--max-regressions must be >= 0"),
        (("--fail-under", "exact-match"), "--fail-under must be METRIC=VALUE"),
        (("--fail-under", "bleu=0.3"), "the run has no metric 'bleu'"),
        (("--fail-under", "exact-match=high"), "is not a number"),
        (("--fail-under", "exact-match=1.5"), "the threshold must be between 0 and 1"),
        (("--compare", "nope"), "--compare: no baseline named 'nope'"),
        (("--compare", "bad name!"), "invalid --compare baseline name"),
        (("--cache-ttl", "0"), "--cache-ttl"),
    ):
        done = procs.cli(*base, *flags)
        assert done.returncode == 2, (flags, done.stdout, done.stderr)
        assert words in done.stderr, (flags, done.stderr)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert [k for k in r.scan_iter("eh:*") if ":job:" in k or ":batch" in k or ":run" in k] == []
    finally:
        r.close()
    (tmp_path / "evalharness.toml").write_text('[prices."gpt-4o"]\ninput_per_mtok = 1\n')
    bad = procs.cli(*base)
    assert bad.returncode == 2 and "[prices.\"gpt-4o\"]: key 'output_per_mtok' is missing" in bad.stderr
    (tmp_path / "evalharness.toml").write_text("[run]\ncache = 'yes'\n")
    bad = procs.cli(*base)
    assert bad.returncode == 2 and "table [run]: key 'cache' must be true or false" in bad.stderr


@pytest.mark.slow
def test_an_openai_sut_hits_the_cache_until_its_parameters_change_and_reported_cost_is_kept(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    from support.openai_stub import OpenAIStub

    key = "sk-cache-test-never-stored"
    rows = [{"id": f"s{i}", "input": f"answer{i}", "expected_output": f"answer{i}"} for i in range(5)]
    data = tmp_path / "simple.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with OpenAIStub(api_key=key, cost_per_token=0.001) as stub:
        env = {"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": key}
        args = (
            "run",
            str(data),
            "--sut",
            "openai:m1",
            "--metric",
            "exact-match",
            "--batch",
            "serial",
            "--cache",
            "--quiet",
        )
        (tmp_path / "evalharness.toml").write_text('[sut.openai]\nsystem_prompt = "One word."\n')
        first = procs.cli(*args, "--json", "a.json", env=env)
        assert first.returncode == 0, first.stderr
        assert len(stub.seen("/v1/chat/completions")) == 5
        again = procs.cli(*args, "--json", "b.json", env=env)
        assert again.returncode == 0, again.stderr
        assert len(stub.seen("/v1/chat/completions")) == 5  # every output came from the cache
        a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
        assert b["cache"]["hits"] == 5
        # the provider's reported cost and the model that answered travel with the cached output
        assert b["cost"]["reported_usd"] == pytest.approx(a["cost"]["reported_usd"]) and a["cost"]["reported_usd"] > 0
        assert all(s["usage"]["model"] == "m1" for s in b["samples"])
        # another system prompt is another SUT: every sample misses
        (tmp_path / "evalharness.toml").write_text('[sut.openai]\nsystem_prompt = "Be exact."\n')
        changed = procs.cli(*args, "--json", "c.json", env=env)
        assert changed.returncode == 0, changed.stderr
        assert len(stub.seen("/v1/chat/completions")) == 10
        assert json.loads((tmp_path / "c.json").read_text())["cache"]["hits"] == 0


def test_a_budget_without_prices_says_what_counts_towards_it(procs: Processes, tmp_path: Path) -> None:
    data = dataset(tmp_path, 2)
    args = ("run", str(data), "--sut", "support.paid_suts:tokens", "--metric", "exact-match", "--batch", "serial")
    bare = procs.cli(*args, "--budget-usd", "1", "--quiet")
    assert bare.returncode == 0, bare.stderr
    assert "warning: --budget-usd: the configuration has no [prices] tables" in bare.stderr
    (tmp_path / "evalharness.toml").write_text(PRICES)
    priced = procs.cli(*args, "--budget-usd", "1", "--quiet")
    assert priced.returncode == 0 and "warning: --budget-usd" not in priced.stderr
