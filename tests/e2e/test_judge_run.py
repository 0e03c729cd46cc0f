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
def test_judge_calls_run_as_jobs_and_every_sample_is_scored_or_explained(procs: Processes, tmp_path: Path, stub: OpenAIStub, redis_url: str) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": i, "input": q, "expected_output": a}) + "\n" for i, q, a in ROWS))
    (tmp_path / "evalharness.toml").write_text(
        f'[providers.openai]\nbase_url = "{stub.base_url}"\ntimeout = 5\n\n'
        '[metrics.llm-as-judge]\nmodel = "judge-m"\n\n[metrics.cosine-embedding]\nmodel = "emb-m"\n'
    )
    done = procs.cli("run", str(data), "--sut", "support.suts:echo", "--metric", "llm-as-judge", "--metric", "cosine-embedding",
                     "--workers", "2", "--json", "out.json", env={"OPENAI_API_KEY": KEY}, timeout=180)
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
