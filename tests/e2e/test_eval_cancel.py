"""Cancelling a running eval's batch end to end: real daemon, real workers, a real `evalharness
run` producer: the queued samples leave the queue, the running ones stop within a lease renewal,
the SUT is not called again, and the producer ends reporting the samples that did not run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from support.procs import Processes, live_workers, wait_until

from evalharness.core.examples import EXAMPLE_DATASET

LEASE = 3.0


@pytest.mark.slow
def test_cancelling_a_running_eval_stops_the_sut_within_a_renewal(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    calls = tmp_path / "calls.txt"
    # the SUT runs in the daemon's worker: it logs each call there and would take 30 s to answer
    env = {"EH_TEST_CALLS": str(calls), "EH_TEST_LATENCY": "30"}
    daemon = procs.start(
        "-m", "evalharness.daemon.master", "--queue", "evals=1", "--concurrency", "5", "--lease", str(LEASE), env=env
    )
    wait_until(lambda: live_workers(redis_url, "evals") == 1, deadline=30, what="the worker")
    rows = [json.loads(line) for line in EXAMPLE_DATASET.read_text().splitlines()[:40]]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        "support.suts:counted_slow",
        "--metric",
        "exact-match",
        "--concurrency",
        "10",
        "--json",
        "out.json",
        "--quiet",
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: calls.exists() and len(calls.read_text().splitlines()) >= 5, deadline=30, what="five SUT calls")
    (batch_id,) = [b for b in r.hkeys("eh:batch_queues") if b.startswith("run-")]
    out = procs.cli("batch", "cancel", batch_id)
    told_at = time.time()
    assert out.returncode == 0, out.stderr
    # 5 running (the worker's concurrency); queued: the other 5 of the run's concurrency of 10
    # and the 10 it keeps queued ahead of them
    assert out.stdout.strip() == f"Cancelled {batch_id}: removed 15 queued jobs, 5 running told to stop"
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 1, stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["scored_samples"] == 0
    assert report["failures"]["by_kind"]["cancelled"] == 5  # the five that were running
    assert report["failures"]["total"] == 40
    assert any(f"batch {batch_id} was cancelled" in d for d in report["diagnostics"])
    # the ones the cancel took out of the queue say so (the 15 queued then, and any the producer
    # dispatched before it noticed: the pop script takes those out too); the rest never went
    messages = [s["error"]["message"] for s in report["samples"] if s["error"]["kind"] == "not_dispatched"]
    taken = sum(m.startswith("never ran: queued, then taken out of the queue") for m in messages)
    never = sum(m.startswith("never dispatched:") for m in messages)
    assert taken >= 15 and taken + never == 35
    want = f"35 sample(s) never ran ({taken} of them queued, then taken out of the queue), 0 dispatched"
    assert any(want in d for d in report["diagnostics"]), report["diagnostics"]
    starts = [float(t) for t in calls.read_text().splitlines()]
    assert len(starts) == 5 and max(starts) < told_at  # no SUT call after the cancel
    assert r.zcard("eh:{q:evals}:reserved") == 0  # the five running samples stopped (their SUT sleeps 30 s)
    info = json.loads(procs.cli("batch", "show", batch_id, "--json").stdout)
    assert info["state"] == "cancelled" and info["pending"] == 0
    # the samples never dispatched will not come: said so beside `undispatched 0`
    never = info["declared"] - info["dispatched"]
    assert never > 0 and info["undispatched"] == 0
    shown = procs.cli("batch", "show", batch_id).stdout
    want = f"undispatched 0 ({never:,} of the declared {info['declared']:,} were never dispatched; none will come now)"
    assert want in " ".join(shown.split()), shown  # (the line folds at $COLUMNS when that is set)
    daemon.terminate()
    daemon.wait(timeout=30)
    r.close()
