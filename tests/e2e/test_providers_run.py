"""`evalharness run --sut openai:MODEL` and `--sut http:URL` end to end: the CLI, real worker
processes and the stub provider on loopback.  Every sample ends scored or failed for the reason
the provider gave; a 429 uses no try; the usage lands in the report; the key never reaches
Redis or the output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from support.openai_stub import OpenAIStub
from support.procs import Processes, live_workers, wait_until

KEY = "sk-e2e-9f8e7d6c5b4a-never-stored"

ROWS = [
    ("ok-1", "Paris", "Paris"),
    ("ok-2", "Rome", "Rome"),
    ("limited-1", "Oslo [stub:429-once]", "Oslo"),
    ("limited-2", "Lima [stub:429-once]", "Lima"),
    ("limited-3", "Bern [stub:429-once]", "Bern"),
    ("server-error", "x [stub:500]", "x"),
    ("malformed", "y [stub:malformed]", "y"),
    ("cut", "z [stub:cut]", "z"),
    ("hang", "w [stub:hang]", "w"),
    ("bad-key", "v [stub:401]", "v"),
]


def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"id": i, "input": q, "expected_output": a}) + "\n" for i, q, a in ROWS))
    return path


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=KEY, latency=(0.05, 0.2), retry_after=0.3, cost_per_token=0.0001) as s:
        yield s


def everything_in(url: str) -> str:
    """Every value of every key in the database, as text."""
    r = redis.Redis.from_url(url)
    out: list[str] = []
    try:
        for key in r.scan_iter(count=500):
            kind = r.type(key).decode()
            value: Any
            if kind == "string":
                value = r.get(key)
            elif kind == "hash":
                value = r.hgetall(key)
            elif kind == "list":
                value = r.lrange(key, 0, -1)
            elif kind == "set":
                value = r.smembers(key)
            elif kind == "zset":
                value = r.zrange(key, 0, -1)
            elif kind == "stream":
                value = r.xrange(key)
            else:
                value = None
            out.append(f"{key!r} {value!r}")
    finally:
        r.close()
    return "\n".join(out)


def check_report(report: dict[str, Any], *, expect_tokens: bool = True) -> dict[str, dict[str, Any]]:
    by_id = {s["id"]: s for s in report["samples"]}
    assert set(by_id) == {i for i, _, _ in ROWS}
    for sid in ("ok-1", "ok-2", "limited-1", "limited-2", "limited-3"):
        assert by_id[sid]["error"] is None, by_id[sid]
        assert by_id[sid]["scores"]["exact-match"] == 1.0
    # --tries 1: a 429 that used a try would have failed the sample; it was released instead
    for sid in ("limited-1", "limited-2", "limited-3"):
        assert by_id[sid]["attempts"] == 2
    assert by_id["server-error"]["error"]["kind"] == "exception"
    assert "answered 500" in by_id["server-error"]["error"]["message"]
    assert "not JSON" in by_id["malformed"]["error"]["message"]
    assert "connection was cut" in by_id["cut"]["error"]["message"]
    assert by_id["hang"]["error"]["kind"] == "timeout"
    assert by_id["bad-key"]["error"]["kind"] == "provider_rejected"
    assert "401" in by_id["bad-key"]["error"]["message"]
    assert report["scored_samples"] == 5 and report["failures"]["total"] == 5
    if expect_tokens:
        assert by_id["ok-1"]["usage"]["total_tokens"] == 2
        assert by_id["server-error"]["usage"] is None
        usage = report["usage"]
        assert usage["samples"] == 5 and usage["calls"] == 5
        assert usage["total_tokens"] == sum(by_id[s]["usage"]["total_tokens"] for s in by_id if by_id[s]["usage"])
        assert usage["cost"] == pytest.approx(usage["total_tokens"] * 0.0001)
    return by_id


@pytest.mark.slow
def test_openai_sut_with_workers_scores_or_fails_each_sample_for_its_reason(
    procs: Processes, tmp_path: Path, stub: OpenAIStub, redis_url: str
) -> None:
    data = dataset(tmp_path)
    env = {"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": KEY}
    # debug logging everywhere (the workers log to the same stderr): the key still shows nowhere
    done = procs.cli(
        "--log-level",
        "debug",
        "run",
        str(data),
        "--sut",
        "openai:m1",
        "--metric",
        "exact-match",
        "--workers",
        "2",
        "--concurrency",
        "8",
        "--tries",
        "1",
        "--timeout",
        "3",
        "--json",
        "out.json",
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # some samples failed, and the report says which
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["sut"] == "openai:m1"
    check_report(report)
    assert stub.by_behaviour["429"] == 3
    assert "HTTP Request: POST" in done.stderr  # the workers' debug log did reach the output
    assert all(s.headers.get("idempotency-key") for s in stub.seen())
    for text in (done.stdout, done.stderr, (tmp_path / "out.json").read_text(), everything_in(redis_url)):
        assert KEY not in text
    # the report rebuilt from Redis has the same usage
    again = procs.cli("report", report["run_id"], "--json", "again.json", timeout=60)
    assert again.returncode == 1, again.stderr
    rebuilt = json.loads((tmp_path / "again.json").read_text())
    assert rebuilt["usage"] == report["usage"]
    assert [s.get("usage") for s in rebuilt["samples"]] == [s["usage"] for s in report["samples"]]


@pytest.mark.slow
def test_openai_sut_serial_records_usage_and_releases(procs: Processes, tmp_path: Path, stub: OpenAIStub) -> None:
    data = dataset(tmp_path)
    (tmp_path / "evalharness.toml").write_text('[sut.openai]\nsystem_prompt = "One word."\n')
    env = {"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": KEY}
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        "openai:m1",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--tries",
        "1",
        "--timeout",
        "3",
        "--json",
        "out.json",
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    by_id = {s["id"]: s for s in report["samples"]}
    for sid in ("limited-1", "limited-2", "limited-3"):
        assert by_id[sid]["error"] is None and by_id[sid]["attempts"] == 2
    assert report["usage"]["samples"] == 5
    assert stub.seen()[0].body["messages"][0] == {"role": "system", "content": "One word."}


@pytest.mark.slow
def test_http_sut_with_a_worker(procs: Processes, tmp_path: Path, stub: OpenAIStub, redis_url: str) -> None:
    stub.api_key = None
    data = dataset(tmp_path)
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        f"http:{stub.root}/answer",
        "--metric",
        "exact-match",
        "--workers",
        "1",
        "--concurrency",
        "8",
        "--tries",
        "1",
        "--timeout",
        "3",
        "--json",
        "out.json",
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    by_id = {s["id"]: s for s in report["samples"]}
    for sid in ("ok-1", "ok-2", "limited-1", "limited-2", "limited-3"):
        assert by_id[sid]["error"] is None and by_id[sid]["scores"]["exact-match"] == 1.0
    for sid in ("limited-1", "limited-2", "limited-3"):
        assert by_id[sid]["attempts"] == 2
    assert by_id["bad-key"]["error"]["kind"] == "provider_rejected"
    assert by_id["hang"]["error"]["kind"] == "timeout"
    assert report["usage"]["samples"] == 5
    assert [s.body for s in stub.seen("/answer")][:1] != []
    assert all(s.headers.get("idempotency-key") for s in stub.seen("/answer"))


def simple_dataset(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "simple.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "input": f"answer{i}", "expected_output": f"answer{i}"}) + "\n" for i in range(n)
        )
    )
    return path


@pytest.mark.slow
def test_run_hands_its_config_file_to_the_workers_it_starts(procs: Processes, tmp_path: Path, stub: OpenAIStub) -> None:
    # the file is not ./evalharness.toml and no variable names it: only --config does
    conf = tmp_path / "conf" / "eval.toml"
    conf.parent.mkdir()
    conf.write_text(
        f'[providers.openai]\nbase_url = "{stub.base_url}"\napi_key_env = "STUB_KEY"\n'
        '[sut.openai]\nsystem_prompt = "Be exact."\n'
    )
    done = procs.cli(
        "--config",
        str(conf),
        "run",
        str(simple_dataset(tmp_path)),
        "--sut",
        "openai:m1",
        "--metric",
        "exact-match",
        "--workers",
        "1",
        "--json",
        "out.json",
        env={"STUB_KEY": KEY, "OPENAI_BASE_URL": ""},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["scored_samples"] == 6 and report["usage"]["calls"] == 6
    assert all(s.body["messages"][0] == {"role": "system", "content": "Be exact."} for s in stub.seen())


@pytest.mark.slow
def test_a_worker_configured_for_another_endpoint_is_a_sut_mismatch(
    procs: Processes, tmp_path: Path, stub: OpenAIStub, redis_url: str
) -> None:
    stub.api_key = None
    worker = procs.worker("evals", imports=(), env={"OPENAI_BASE_URL": stub.base_url.replace("/v1", "/other/v1")})
    wait_until(lambda: live_workers(redis_url, "evals") == 1, deadline=30, what="the worker")
    done = procs.cli(
        "run",
        str(simple_dataset(tmp_path, 3)),
        "--sut",
        "openai:m1",
        "--metric",
        "exact-match",
        "--json",
        "out.json",
        env={"OPENAI_BASE_URL": stub.base_url},
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "sut_mismatch" in done.stderr or "fingerprint" in done.stderr
    assert stub.seen() == []  # the worker never called the endpoint it was not meant to
    worker.terminate()
    worker.wait(timeout=30)


@pytest.mark.slow
def test_the_daemon_hands_its_config_file_to_its_workers(
    procs: Processes, tmp_path: Path, stub: OpenAIStub, redis_url: str
) -> None:
    conf = tmp_path / "conf" / "eval.toml"
    conf.parent.mkdir()
    conf.write_text(
        f'[providers.openai]\nbase_url = "{stub.base_url}"\napi_key_env = "STUB_KEY"\n'
        "[sut.openai.params]\ntemperature = 0\n"
    )
    env = {"STUB_KEY": KEY, "OPENAI_BASE_URL": ""}
    daemon = procs.start("-m", "evalharness.daemon.master", "--config", str(conf), "--queue", "evals=1", env=env)
    wait_until(lambda: live_workers(redis_url, "evals") == 1, deadline=30, what="the daemon's worker")
    done = procs.cli(
        "--config",
        str(conf),
        "run",
        str(simple_dataset(tmp_path)),
        "--sut",
        "openai:m1",
        "--metric",
        "exact-match",
        "--json",
        "out.json",
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out.json").read_text())["scored_samples"] == 6
    assert all(s.body["temperature"] == 0 for s in stub.seen())
    daemon.terminate()
    assert daemon.wait(timeout=60) == 0
