"""Judge and embedding metrics in a real run: `evalharness run --workers 2` against the stub
provider on loopback.  The judge calls are jobs on the `judge` queue of the same workers; every
sample ends scored or with a metric error that says why; a 429 uses no try; the key never
reaches Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.openai_stub import OpenAIStub
from support.procs import Processes

KEY = "sk-judge-e2e-5a4b3c2d1e-never-stored"

ROWS = [
    ("right", "Paris", "Paris"),
    ("wrong", "Lyon", "Paris"),
    ("marked", "meh [judge:0.25]", "x"),
    ("limited", "Rome [stub:429-once]", "Rome"),
    ("flaky", "Oslo [stub:500-once]", "Oslo"),
    ("cut", "Bern [stub:cut-once]", "Bern"),
    ("nonsense", "z [judge:nonsense]", "z"),
    ("down", "w [stub:500]", "w"),
]


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=KEY, latency=(0.01, 0.05), retry_after=0.2) as s:
        yield s


@pytest.mark.slow
def test_judge_calls_run_as_jobs_and_every_sample_is_scored_or_explained(
    procs: Processes, tmp_path: Path, stub: OpenAIStub, redis_url: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": i, "input": q, "expected_output": a}) + "\n" for i, q, a in ROWS))
    (tmp_path / "evalharness.toml").write_text(
        f'[providers.openai]\nbase_url = "{stub.base_url}"\ntimeout = 5\n\n'
        '[metrics.llm-as-judge]\nmodel = "judge-m"\n\n[metrics.cosine-embedding]\nmodel = "emb-m"\n'
    )
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.suts:echo",
        "--metric",
        "llm-as-judge",
        "--metric",
        "cosine-embedding",
        "--workers",
        "2",
        "--json",
        "out.json",
        env={"OPENAI_API_KEY": KEY},
        timeout=180,
    )
    report = json.loads((tmp_path / "out.json").read_text())
    by_id = {s["id"]: s for s in report["samples"]}
    judged = {sid: by_id[sid]["scores"]["llm-as-judge"] for sid in by_id}
    assert judged["right"] == 1.0 and judged["wrong"] == 0.0 and judged["marked"] == 0.25
    # released (429) and retried (500, cut connection) judge jobs still end with a verdict
    assert judged["limited"] == 1.0 and judged["flaky"] == 1.0 and judged["cut"] == 1.0
    assert by_id["nonsense"]["metric_errors"]["llm-as-judge"]["kind"] == "judge-unparseable"
    assert by_id["down"]["metric_errors"]["llm-as-judge"]["kind"] == "judge-failed"
    assert "answered 500" in by_id["down"]["metric_errors"]["llm-as-judge"]["message"]
    assert all(by_id[s]["error"] is None for s in by_id)  # the SUT answered every sample
    assert all(by_id[s]["scores"]["cosine-embedding"] is not None for s in by_id)
    assert by_id["right"]["scores"]["cosine-embedding"] == pytest.approx(1.0)
    assert done.returncode == 1, done.stderr  # metric errors: the report lists them
    assert report["judges"]["jobs"] == len(ROWS) and report["judges"]["in_process"] == 0
    assert report["judges"]["batch"] == f"judge-{report['run_id']}"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    stats = r.hgetall("eh:{q:judge}:stats")
    assert int(stats["completed"]) == len(ROWS) - 2 and int(stats["failed"]) == 2
    assert int(stats["released"]) == 1  # the 429: released, no try used
    batch = r.hgetall(f"eh:{{q:judge}}:batch:{report['judges']['batch']}")
    assert batch["total"] == str(len(ROWS)) and batch["state"] == "finished_with_failures"
    for key in r.scan_iter(count=500):
        kind = r.type(key)
        dump = str(r.hgetall(key) if kind == "hash" else r.lrange(key, 0, -1) if kind == "list" else "")
        assert KEY not in dump
    r.close()
    assert KEY not in done.stdout + done.stderr


def test_judge_calibrate_reports_agreement_confusion_kappa_and_length_bias(
    procs: Processes, tmp_path: Path, stub: OpenAIStub
) -> None:
    cases = tmp_path / "cases.jsonl"
    rows = [
        ("a", "ok [judge:0.9]", "pass"),
        ("b", "ok, and a much longer answer [judge:0.8]", "pass"),
        ("c", "no [judge:0.1]", "fail"),
        ("d", "a long but wrong answer here [judge:0.7]", "fail"),
        ("e", "broken [judge:nonsense]", "pass"),
    ]
    cases.write_text(
        "".join(
            json.dumps({"id": i, "input": "q", "expected": "e", "output": o, "human": h}) + "\n" for i, o, h in rows
        )
    )
    env = {"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": KEY}
    done = procs.cli(
        "judge",
        "calibrate",
        str(cases),
        "--metric",
        "llm-as-judge:model=judge-m",
        "--min-agreement",
        "0.5",
        "--json",
        "-",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["n"] == 5 and doc["agreement"] == pytest.approx(3 / 5)
    assert doc["confusion"] == {
        "true_pass": 2,
        "true_fail": 1,
        "false_pass": 1,
        "false_fail": 0,
        "unscored_pass": 1,
        "unscored_fail": 0,
    }
    assert doc["errors"][0]["id"] == "e" and doc["errors"][0]["kind"] == "judge-unparseable"
    assert doc["kappa"] == pytest.approx(0.5)  # 3 of 4 scored agree; chance agreement 0.5
    assert -1.0 <= doc["length_bias"] <= 1.0 and doc["passed"] is True
    strict = procs.cli(
        "judge",
        "calibrate",
        str(cases),
        "--metric",
        "llm-as-judge:model=judge-m",
        "--model-under-test",
        "judge-m",
        env=env,
    )
    assert strict.returncode == 1 and "the judge is the model under test" in strict.stderr
    assert "agreement 0.600" in strict.stdout
    bad = procs.cli("judge", "calibrate", str(cases), "--metric", "exact-match", env=env)
    assert bad.returncode == 2 and "is not a judge metric" in bad.stderr


def test_saved_outputs_are_judged_in_process_and_a_self_judging_sut_is_warned(
    procs: Processes, tmp_path: Path, stub: OpenAIStub
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"id": "a", "input": "Capital of France?", "expected_output": "Paris"}\n'
        '{"id": "b", "input": "q", "expected_output": "x"}\n'
    )
    outputs = tmp_path / "o.jsonl"
    outputs.write_text('{"id": "a", "output": "Paris"}\n{"id": "b", "output": "meh [judge:nonsense]"}\n')
    env = {"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": KEY}
    done = procs.cli(
        "run",
        str(data),
        "--outputs",
        str(outputs),
        "--metric",
        "llm-as-judge:model=judge-m",
        "--json",
        "out.json",
        env=env,
    )
    report = json.loads((tmp_path / "out.json").read_text())
    assert done.returncode == 1, done.stderr
    assert report["samples"][0]["scores"]["llm-as-judge:model=judge-m"] == 1.0
    assert report["samples"][1]["metric_errors"]["llm-as-judge:model=judge-m"]["kind"] == "judge-unparseable"
    assert report["judges"]["in_process"] == 2 and report["judges"]["jobs"] == 0
    serial = procs.cli(
        "run",
        str(data),
        "--sut",
        "openai:judge-m",
        "--batch",
        "serial",
        "--metric",
        "llm-as-judge:model=judge-m",
        env=env,
    )
    assert "warning: metric 'llm-as-judge': the judge model 'judge-m' is the SUT's model" in serial.stderr
    missing = procs.cli("run", str(data), "--outputs", str(outputs), "--metric", "llm-as-judge", env=env)
    assert missing.returncode == 2 and "needs a model: give it as llm-as-judge:model=NAME" in missing.stderr
