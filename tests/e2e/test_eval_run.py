"""`evalharness run` end to end: real CLI processes, real workers and daemon, real signals."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
from support.overlap import max_overlap
from support.procs import Processes, live_workers, wait_until

from evalharness.core.examples import EXAMPLE_DATASET
from evalharness.core.examples.sim import respond

SUT = "support.suts:steady"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def small_dataset(tmp_path: Path, n: int = 30) -> Path:
    rows = [json.loads(line) for line in EXAMPLE_DATASET.read_text().splitlines()[:n]]
    return write(tmp_path / "small.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def test_serial_and_lazy_parallel_give_the_same_scores(procs: Processes, tmp_path: Path) -> None:
    data = small_dataset(tmp_path, 40)
    serial = procs.cli(
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--metric",
        "contains",
        "--batch",
        "serial",
        "--json",
        "serial.json",
    )
    assert serial.returncode == 0, serial.stderr
    parallel = procs.cli(
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--metric",
        "contains",
        "--workers",
        "2",
        "--concurrency",
        "8",
        "--json",
        "parallel.json",
    )
    assert parallel.returncode == 0, parallel.stderr
    a = json.loads((tmp_path / "serial.json").read_text())
    b = json.loads((tmp_path / "parallel.json").read_text())
    assert a["schema_version"] == b["schema_version"] == "evalharness.report.v1"
    assert a["metrics"] == b["metrics"]
    assert [(s["id"], s["output"], s["scores"]) for s in a["samples"]] == [
        (s["id"], s["output"], s["scores"]) for s in b["samples"]
    ]
    assert [s["id"] for s in b["samples"]] == [json.loads(line)["id"] for line in data.read_text().splitlines()]
    assert b["failures"]["total"] == 0 and b["scored_samples"] == 40
    assert "exact-match" in parallel.stdout


def test_a_run_keeps_its_concurrency_when_the_workers_have_more_slots(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    """The run queues samples ahead of its concurrency (so a worker starts the next one the moment
    one ends), and its batch holds the limit: never more SUT calls at once than --concurrency."""
    spans = tmp_path / "spans.txt"
    procs.worker("evals", concurrency=10, env={"EH_TEST_SPANS": str(spans), "EH_TEST_LATENCY": "0.2"})
    wait_until(lambda: live_workers(redis_url, "evals") == 1, deadline=20, what="the worker")
    data = small_dataset(tmp_path, 24)
    run = procs.start(
        "-m", "evalharness.cli", "run", str(data), "--sut", "support.suts:spans", "--metric", "exact-match",
        "--concurrency", "3", "--quiet", "--json", "out.json",
    )  # fmt: skip
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    def queued_ahead() -> bool:
        batch = next((b for b in r.hkeys("eh:batch_queues") if b.startswith("run-")), None)
        rec = r.hgetall(f"eh:{{q:evals}}:batch:{batch}") if batch else {}
        # three running and three more dispatched behind them
        return bool(rec) and int(rec.get("dispatched", 0)) - int(rec.get("processed", 0)) == 6

    wait_until(queued_ahead, deadline=20, what="three samples queued behind the three running")
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["scored_samples"] == 24 and report["failures"]["total"] == 0
    calls = [tuple(map(float, line.split())) for line in spans.read_text().splitlines()]
    assert len(calls) == 24  # each sample's SUT ran once
    assert max_overlap(calls) == 3  # the limit held, and the run used all of it
    (batch,) = [b for b in r.hkeys("eh:batch_queues") if b.startswith("run-")]
    rec = r.hgetall(f"eh:{{q:evals}}:batch:{batch}")
    assert rec["max_running"] == "3"
    # the producer scored each outcome as it came: the batch's running mean (what the console's
    # Batches shows during the run) ends where the report's mean is
    from evalharness.core.admin import running_means

    assert rec["mean_n:exact-match"] == "24"
    assert running_means(rec) == {"exact-match": pytest.approx(report["metrics"]["exact-match"]["mean"])}
    r.close()


@pytest.mark.slow
def test_a_run_survives_a_worker_killed_mid_job_and_scores_every_sample_once(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    daemon = procs.start(
        "-m",
        "evalharness.daemon.master",
        "--queue",
        "evals=2",
        "--concurrency",
        "10",
        "--lease",
        "1.5",
        "--log-level",
        "info",
    )
    wait_until(lambda: live_workers(redis_url, "evals") == 2, deadline=20, what="two workers")
    data = small_dataset(tmp_path, 120)
    run = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--concurrency",
        "20",
        "--json",
        "out.json",
        env={"EH_TEST_LATENCY": "0.2,0.4"},
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    # kill one worker while it holds jobs
    wait_until(lambda: r.zcard("eh:{q:evals}:reserved") >= 10, what="jobs in flight")
    workers = [json.loads(v) for v in r.hvals("eh:workers")]
    victim = max(workers, key=lambda w: w["running"])
    os.kill(victim["pid"], signal.SIGKILL)
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["failures"]["total"] == 0
    assert report["scored_samples"] == 120
    ids = [s["id"] for s in report["samples"]]
    assert len(ids) == len(set(ids)) == 120
    # some samples were re-delivered after the kill, none was lost
    assert any((s["attempts"] or 0) >= 2 for s in report["samples"])
    # the daemon replaced the killed worker
    wait_until(lambda: live_workers(redis_url, "evals") == 2, deadline=20, what="the replacement worker")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    r.close()


def test_a_malformed_dataset_row_names_the_file_and_line(procs: Processes, tmp_path: Path) -> None:
    data = write(
        tmp_path / "bad.jsonl", '{"id": "a", "input": "x", "expected_output": "y"}\n{"id": "b", "input": "x"\n'
    )
    done = procs.cli("run", str(data), "--sut", SUT, "--metric", "exact-match")
    assert done.returncode == 2
    assert f"{data}:2" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_sut_is_a_clear_error(procs: Processes, tmp_path: Path) -> None:
    data = small_dataset(tmp_path, 3)
    done = procs.cli("run", str(data), "--sut", "nosuchmodule:answer", "--metric", "exact-match")
    assert done.returncode == 2
    assert "nosuchmodule" in done.stderr and "Traceback" not in done.stderr
    done = procs.cli("run", str(data), "--sut", "support.suts:nope", "--metric", "exact-match")
    assert done.returncode == 2 and "has no attribute 'nope'" in done.stderr


def test_an_unknown_metric_is_a_clear_error(procs: Processes, tmp_path: Path) -> None:
    data = small_dataset(tmp_path, 3)
    done = procs.cli("run", str(data), "--sut", SUT, "--metric", "exact-macth")
    assert done.returncode == 2
    assert "exact-macth" in done.stderr and "exact-match" in done.stderr


def test_a_lazy_parallel_run_without_workers_fails_at_once_saying_how_to_start_one(
    procs: Processes, tmp_path: Path
) -> None:
    data = small_dataset(tmp_path, 3)
    done = procs.cli("run", str(data), "--sut", SUT, "--metric", "exact-match", timeout=20)
    assert done.returncode == 3
    assert "evalharness work --queue evals" in done.stderr and "--workers" in done.stderr


def test_a_sut_the_workers_cannot_import_fails_the_run_with_that_message(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    procs.worker("evals", env={"EH_BREAK_IMPORT": "1"}, imports=())
    wait_until(lambda: live_workers(redis_url, "evals") == 1, what="the worker")
    data = small_dataset(tmp_path, 50)
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.worker_only_broken:answer",
        "--metric",
        "exact-match",
        "--concurrency",
        "5",
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "secret_sdk" in done.stderr and "PYTHONPATH" in done.stderr


def test_failed_samples_are_reported_and_the_exit_code_says_so(procs: Processes, tmp_path: Path) -> None:
    data = small_dataset(tmp_path, 3)
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.suts:not_text",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--json",
        "r.json",
    )
    assert done.returncode == 1
    report: dict[str, Any] = json.loads((tmp_path / "r.json").read_text())
    assert report["failures"]["total"] == 3
    assert {s["error"]["kind"] for s in report["samples"]} == {"invalid_output"}
    assert report["metrics"]["exact-match"]["mean"] is None


@pytest.mark.parametrize("mode", ["serial", "lazy-parallel"])
def test_every_mode_refuses_a_missing_or_invalid_configuration_file(
    procs: Processes, tmp_path: Path, mode: str
) -> None:
    data = small_dataset(tmp_path, 3)
    done = procs.cli(
        "--config",
        "nonexist.toml",
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--batch",
        mode,
        "--json",
        "r.json",
    )
    assert done.returncode == 2, done.stderr
    assert "nonexist.toml: configuration file not found" in done.stderr
    bad = write(tmp_path / "bad.toml", "prefx = 'x'\n")
    done = procs.cli(
        "--config",
        str(bad),
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--batch",
        mode,
        "--json",
        "r.json",
    )
    assert done.returncode == 2, done.stderr
    assert "bad.toml" in done.stderr and "prefx" in done.stderr
    assert not (tmp_path / "r.json").exists()


def _run_batch(r: redis.Redis, queue: str = "evals") -> dict[str, str]:
    bids = [b for b in r.hkeys("eh:batch_queues") if b.startswith("run-")]
    return {"id": bids[0], **r.hgetall(f"eh:{{q:{queue}}}:batch:{bids[0]}")} if bids else {}


@pytest.mark.slow
def test_a_runs_batch_counts_the_whole_dataset_from_the_start(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    procs.worker("evals", concurrency=2, env={"EH_TEST_LATENCY": "0.2,0.3"})
    wait_until(lambda: live_workers(redis_url, "evals") == 1, what="the worker")
    data = small_dataset(tmp_path, 60)
    run = procs.start(
        "-m", "evalharness.cli", "run", str(data), "--sut", SUT, "--metric", "exact-match", "--concurrency", "2"
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: int(_run_batch(r).get("processed", 0)) >= 4, deadline=30, what="four samples done")
    shown = procs.cli("batch", "list", "--json")
    (row,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert row["total"] == 60 and row["state"] == "running"
    assert row["progress"] < 1.0 and row["progress"] == row["processed"] / 60
    assert row["dispatched"] < 60
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err
    shown = procs.cli("batch", "show", "--json", row["id"])
    info = json.loads(shown.stdout)
    assert (info["state"], info["total"], info["processed"], info["dispatched"], info["progress"]) == (
        "succeeded",
        60,
        60,
        60,
        1.0,
    )
    r.close()


@pytest.mark.slow
def test_a_run_stopped_by_its_batch_timeout_seals_its_batch(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    procs.worker("evals", concurrency=2, env={"EH_TEST_LATENCY": "0.2,0.3"})
    wait_until(lambda: live_workers(redis_url, "evals") == 1, what="the worker")
    data = small_dataset(tmp_path, 40)
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--concurrency",
        "2",
        "--batch-timeout",
        "1.5",
        "--json",
        "r.json",
    )
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failures"]["by_kind"].get("not_dispatched", 0) > 0
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    # the samples still in flight finish; the ones never dispatched do not hold the batch open
    wait_until(lambda: _run_batch(r).get("state") == "succeeded", deadline=30, what="the batch to finish")
    batch = _run_batch(r)
    assert batch["total"] == "40" and int(batch["dispatched"]) < 40 and batch["sealed"] == "1"
    r.close()


def _batch_jobs_queued(r: redis.Redis, bid: str, queue: str = "evals") -> int:
    ready = r.zrange(f"eh:{{q:{queue}}}:ready", 0, -1)
    return sum(1 for j in ready if j.startswith(bid.removeprefix("run-") + "-")) + r.llen(
        f"eh:{{q:{queue}}}:lane:{bid}"
    )


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_cancels_the_runs_batch_and_writes_the_partial_report(
    procs: Processes, tmp_path: Path, redis_url: str, sig: signal.Signals, code: int
) -> None:
    procs.worker("evals", concurrency=4, env={"EH_TEST_LATENCY": "0.2,0.4"})
    wait_until(lambda: live_workers(redis_url, "evals") == 1, what="the worker")
    data = small_dataset(tmp_path, 200)
    run = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--concurrency",
        "8",
        "--json",
        "r.json",
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: int(_run_batch(r).get("processed", 0)) >= 6, deadline=30, what="six samples done")
    bid = _run_batch(r)["id"]
    assert _batch_jobs_queued(r, bid) > 0  # some samples wait in the queue when the signal comes
    run.send_signal(sig)
    out, err = run.communicate(timeout=30)
    assert run.returncode == code, err
    assert "Aborted" not in err and "Traceback" not in err
    name = sig.name
    assert f"interrupted by {name}" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] == {"signal": name, "exit_code": code}
    kinds = report["failures"]["by_kind"]
    assert kinds.get("not_dispatched", 0) > 100
    assert report["scored_samples"] >= 6
    assert report["scored_samples"] + report["failures"]["total"] == 200
    assert all(s["error"]["kind"] in ("not_dispatched", "not_collected") for s in report["samples"] if s["error"])
    assert any(f"interrupted by {name}" in d and "cancelled" in d for d in report["diagnostics"])
    # the samples the cancel took out of the queue say so (a batch retry queues them again); the
    # rest were never dispatched, and the diagnostic counts both
    messages = [s["error"]["message"] for s in report["samples"] if s["error"]]
    taken = [m for m in messages if m.startswith("never ran: queued, then taken out of the queue")]
    never = [m for m in messages if m.startswith("never dispatched:")]
    assert taken and never and len(taken) + len(never) == kinds["not_dispatched"]
    assert any(f"({len(taken)} of them queued, then taken out of the queue)" in d for d in report["diagnostics"])
    batch = _run_batch(r)
    assert batch["state"] == "cancelled" and batch["cancelled_at"]
    assert _batch_jobs_queued(r, bid) == 0
    shown = json.loads(procs.cli("batch", "show", "--json", bid).stdout)
    assert shown["state"] == "cancelled" and shown["total"] == 200 and shown["processed"] < 200
    # the run's record says how it ended; its report can be rebuilt until the record goes
    again = procs.cli("report", report["run_id"], "--json", "again.json")
    assert again.returncode == 1, again.stderr
    rebuilt = json.loads((tmp_path / "again.json").read_text())
    assert rebuilt["run_state"] == "interrupted" and rebuilt["interrupted"]["signal"] == name
    assert rebuilt["failures"]["by_kind"]["not_dispatched"] == kinds["not_dispatched"]
    assert [s["error"]["message"].startswith("never ran: queued") for s in rebuilt["samples"] if s["error"]] == [
        m.startswith("never ran: queued") for m in messages
    ]
    assert r.delete(f"eh:run:{report['run_id']}") == 1
    gone = procs.cli("report", report["run_id"])
    assert gone.returncode == 2 and "no run" in gone.stderr
    r.close()


@pytest.mark.slow
def test_ctrl_c_stops_a_serial_run_with_a_blocking_sut_and_writes_the_partial_report(
    procs: Processes, tmp_path: Path
) -> None:
    data = small_dataset(tmp_path, 50)
    marks = tmp_path / "marks"
    marks.touch()
    run = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        "support.suts:marking",
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--json",
        "r.json",
        env={"EH_TEST_MARKS": str(marks), "EH_TEST_SLEEP": "0.5"},
    )
    wait_until(lambda: len(marks.read_text().splitlines()) >= 3, deadline=30, what="three SUT calls")
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=10)
    assert run.returncode == 130, err
    assert "Aborted" not in err and "interrupted by SIGINT" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"]["signal"] == "SIGINT"
    kinds = report["failures"]["by_kind"]
    # the signal nearly always comes while the SUT is called (0.5 s a sample); in the instant
    # between two samples no sample is cut and the next one simply never runs
    assert set(kinds) <= {"interrupted", "not_dispatched"} and kinds.get("interrupted", 1) == 1
    assert kinds["not_dispatched"] + kinds.get("interrupted", 0) >= 40
    assert report["scored_samples"] >= 2
    unscored = [s for s in report["samples"] if s["error"]]
    assert all(s["error"]["kind"] == "not_dispatched" and s["attempts"] == 0 for s in unscored[1:])
    assert unscored[0]["error"]["kind"] in kinds
    assert [s["id"] for s in report["samples"] if not s["error"]] == [
        s["id"] for s in report["samples"][: report["scored_samples"]]
    ]


@pytest.mark.slow
def test_a_second_ctrl_c_ends_the_clean_up_at_once(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    data = small_dataset(tmp_path, 20)
    marks = tmp_path / "marks"
    marks.touch()
    # a local worker whose samples block for a minute: stopping it gracefully would take that long
    run = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        "support.suts:marking",
        "--metric",
        "exact-match",
        "--workers",
        "1",
        "--concurrency",
        "2",
        "--json",
        "r.json",
        env={"EH_TEST_MARKS": str(marks), "EH_TEST_SLEEP": "60"},
    )
    wait_until(lambda: len(marks.read_text().splitlines()) >= 2, deadline=30, what="two samples running")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    (worker,) = [json.loads(v) for v in r.hvals("eh:workers")]
    run.send_signal(signal.SIGINT)
    wait_until(lambda: _run_batch(r).get("state") == "cancelled", deadline=15, what="the batch cancelled")
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=10)
    assert run.returncode == 130, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"]["signal"] == "SIGINT"
    assert report["failures"]["by_kind"] == {"not_collected": 2, "not_dispatched": 18}

    def gone() -> bool:
        try:
            os.kill(worker["pid"], 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, deadline=5, what="the local worker killed")
    r.close()


@pytest.mark.slow
def test_report_rebuilds_a_run_after_its_failed_samples_were_retried(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    fixed = tmp_path / "fixed"
    procs.worker("evals", env={"EH_TEST_FIXED": str(fixed)})
    wait_until(lambda: live_workers(redis_url, "evals") == 1, what="the worker")
    data = small_dataset(tmp_path, 24)
    first = procs.cli(
        "run",
        str(data),
        "--sut",
        "support.suts:broken_until_fixed",
        "--metric",
        "exact-match",
        "--tries",
        "1",
        "--json",
        "first.json",
    )
    assert first.returncode == 1, first.stderr
    before = json.loads((tmp_path / "first.json").read_text())
    run_id = before["run_id"]
    broken = [s for s in before["samples"] if s["error"]]
    assert broken and {s["error"]["kind"] for s in broken} == {"exception"}
    # the same report, rebuilt from Redis
    again = procs.cli("report", run_id, "--json", "again.json")
    assert again.returncode == 1, again.stderr
    rebuilt = json.loads((tmp_path / "again.json").read_text())
    assert rebuilt["run_state"] == "finished" and rebuilt["rebuilt_at"]
    for key in (
        "run_id",
        "dataset",
        "sut",
        "mode",
        "options",
        "started_at",
        "finished_at",
        "metrics",
        "failures",
        "batch",
        "sut_fingerprint",
    ):
        assert rebuilt[key] == before[key], key
    assert [(s["id"], s["output"], s["scores"]) for s in rebuilt["samples"]] == [
        (s["id"], s["output"], s["scores"]) for s in before["samples"]
    ]
    # fix the SUT; retry one failed sample from the failed store and the rest as the batch
    fixed.touch()
    one = f"{run_id}-{broken[0]['index']}"
    assert procs.cli("failed", "retry", one).returncode == 0
    retried = procs.cli("batch", "retry", f"run-{run_id}")
    assert retried.returncode == 0 and f"retrying {len(broken) - 1} job(s)" in retried.stdout

    def succeeded() -> bool:
        shown = procs.cli("batch", "show", "--json", f"run-{run_id}")
        return bool(json.loads(shown.stdout)["state"] == "succeeded")

    wait_until(succeeded, deadline=30, what="the retried batch to succeed")
    after = procs.cli("report", f"run-{run_id}", "--json", "after.json")
    assert after.returncode == 0, after.stderr
    report = json.loads((tmp_path / "after.json").read_text())
    assert report["failures"]["total"] == 0 and report["scored_samples"] == 24
    inputs = [json.loads(line)["input"] for line in data.read_text().splitlines()]
    assert all(report["samples"][s["index"]]["output"] == respond(str(inputs[s["index"]])) for s in broken)
    assert report["metrics"]["exact-match"]["count"] == 24 > before["metrics"]["exact-match"]["count"]
    assert "24/24 samples scored" in after.stdout
    # outputs gone before the record: a clear error, not a report of 24 missing samples
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    assert r.delete(f"eh:{{q:evals}}:results:run-{run_id}") == 1
    expired = procs.cli("report", run_id)
    assert expired.returncode == 2 and "have expired" in expired.stderr
    r.close()


def test_report_of_an_unknown_or_expired_run_is_a_clear_error(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    done = procs.cli("report", "01nosuchrun")
    assert done.returncode == 2
    assert "no run '01nosuchrun' in Redis" in done.stderr and "--result-ttl" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_run_waits_for_the_workers_of_a_live_daemon_that_is_replacing_them(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    """A run started while evalharnessd replaces its workers (a restart, `--reload` after an edit)
    waits for them instead of failing with "no worker is serving"; with no daemon it still
    fails at once."""
    import time

    data = small_dataset(tmp_path, 10)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    alone = procs.cli("run", str(data), "--sut", SUT, "--metric", "exact-match", "--queue", "late")
    assert alone.returncode == 3 and "no worker is serving queue 'late'" in alone.stderr
    # a live master supervises the queue, but its workers are not up yet
    r.hset(
        "eh:masters",
        "host-beef",
        json.dumps(
            {
                "name": "host-beef",
                "host": "host",
                "pid": 1,
                "status": "running",
                "started_at": time.time(),
                "heartbeat_at": time.time(),
                "supervisors": [{"name": "s", "queues": ["late"]}],
            }
        ),
    )
    run = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--queue",
        "late",
        "--json",
        "out.json",
    )
    procs.worker("late", imports=())
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert json.loads((tmp_path / "out.json").read_text())["scored_samples"] == 10


@pytest.mark.slow
def test_the_demo_runs_beside_a_daemon_that_serves_evals(procs: Processes, tmp_path: Path) -> None:
    """`bash scripts/demo` (`evalharness demo`) on a Redis where workers already serve `evals`: the
    demo's samples go to its own queue and its own workers, which know its simulated provider, so
    every sample is scored; the report is written under ./reports/."""
    procs.worker("evals", concurrency=10)
    done = procs.cli("demo", "--processes", "1", "--concurrency", "20", timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "EVALHARNESS_PROVIDER_URL" not in done.stdout + done.stderr
    assert "200/200 samples scored" in done.stdout and "on queue 'demo'" in done.stderr
    (report,) = (tmp_path / "reports").glob("demo-*.json")
    assert json.loads(report.read_text())["scored_samples"] == 200
