"""Editing the SUT while workers run: every run scores the code its producer sees, retries after
a fix run the fixed code, workers on other files stop the run, `evalharnessd --reload` restarts
workers on a change; and a worker warns about busy threads only when a call really is running."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
from support.procs import Processes, live_workers, wait_until

CITIES = ["paris", "rome", "tokyo", "lima", "oslo", "cairo"]
SUT = "mybot:answer"


def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "cities.jsonl"
    path.write_text("".join(json.dumps({"id": c, "input": c, "expected_output": c.upper()}) + "\n" for c in CITIES))
    return path


def write_sut(folder: Path, body: str) -> Path:
    path = folder / "mybot.py"
    path.write_text(f"def answer(city):\n    {body}\n")
    return path


def run(procs: Processes, data: Path, name: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    done = procs.cli(
        "run", str(data), "--sut", SUT, "--metric", "exact-match", "--tries", "1", "--json", name, *extra, timeout=90
    )
    path = procs.cwd / name
    report = json.loads(path.read_text()) if path.exists() else {}
    return done.returncode, report, done.stderr


def worker_pids(url: str) -> set[int]:
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {int(json.loads(v)["pid"]) for v in r.hvals("eh:workers")}
    finally:
        r.close()


def sink(url: str, batch: str) -> dict[str, dict[str, Any]]:
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {k: json.loads(v) for k, v in r.hgetall(f"eh:{{q:evals}}:results:{batch}").items()}
    finally:
        r.close()


def stop(proc: Any) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return str(err)


@pytest.mark.slow
def test_a_daemon_worker_scores_the_edited_sut_in_the_next_run_without_a_restart(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    write_sut(tmp_path, "return city")
    data = dataset(tmp_path)
    daemon = procs.start("-m", "evalharness.daemon.master", "--queue", "evals=1", "--log-level", "info")
    wait_until(lambda: live_workers(redis_url, "evals") == 1, deadline=30, what="the worker")
    (pid,) = worker_pids(redis_url)

    code, first, err = run(procs, data, "first.json")
    assert code == 0, err
    assert first["metrics"]["exact-match"]["mean"] == 0.0

    write_sut(tmp_path, "return city.upper()")
    code, second, err = run(procs, data, "second.json")
    assert code == 0, err
    # the same worker process, with the new code, and no try used for it
    assert worker_pids(redis_url) == {pid}
    assert second["metrics"]["exact-match"]["mean"] == 1.0
    assert [s["attempts"] for s in second["samples"]] == [1] * len(CITIES)
    assert second["sut_fingerprint"] != first["sut_fingerprint"]
    assert second["sut_fingerprint"].startswith("sha256:")
    # every outcome names the code it ran with: the producer's
    outcomes = sink(redis_url, second["batch"])
    assert {o["result"]["sut_fingerprint"] for o in outcomes.values()} == {second["sut_fingerprint"]}

    code, serial, err = run(procs, data, "serial.json", "--batch", "serial")
    assert code == 0, err
    assert serial["metrics"] == second["metrics"]
    assert serial["sut_fingerprint"] == second["sut_fingerprint"]
    # the sync SUT's idle pool threads are not "busy" when the workers restart or stop
    daemon.send_signal(signal.SIGUSR1)
    wait_until(lambda: (pids := worker_pids(redis_url)) and pid not in pids, deadline=30, what="the restarted worker")
    err = stop(daemon)
    assert "restarting workers with a freshly read configuration" in err
    assert "still running at exit" not in err and "still busy" not in err, err


@pytest.mark.slow
def test_batch_retry_and_failed_retry_after_a_fix_run_the_fixed_code(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    write_sut(tmp_path, "raise RuntimeError('not written yet')")
    data = dataset(tmp_path)
    worker = procs.worker("evals", imports=())
    wait_until(lambda: live_workers(redis_url, "evals") == 1, what="the worker")

    code, broken, err = run(procs, data, "broken.json")
    assert code == 1, err
    assert broken["failures"]["by_kind"] == {"exception": len(CITIES)}

    write_sut(tmp_path, "return city.upper()")
    done = procs.cli("batch", "retry", broken["batch"])
    assert done.returncode == 0, done.stderr
    assert f"retrying {len(CITIES)} job(s)" in done.stdout

    def retried() -> dict[str, dict[str, Any]] | None:
        got = sink(redis_url, broken["batch"])
        return got if len(got) == len(CITIES) else None

    outcomes = wait_until(retried, deadline=30, what="the retried samples")
    assert isinstance(outcomes, dict)
    assert all("error" not in o for o in outcomes.values()), outcomes
    assert {o["result"]["output"] for o in outcomes.values()} == {c.upper() for c in CITIES}
    fixed = {o["result"]["sut_fingerprint"] for o in outcomes.values()}
    assert len(fixed) == 1 and fixed != {broken["sut_fingerprint"]}

    # the same for one failed job retried on its own, after another edit
    write_sut(tmp_path, "raise RuntimeError('broken again')")
    code, again, err = run(procs, data, "again.json")
    assert code == 1, err
    write_sut(tmp_path, "return city.upper() + '!'")
    failed_id = f"{again['run_id']}-0"
    done = procs.cli("failed", "retry", failed_id)
    assert done.returncode == 0, done.stderr

    def one_retried() -> dict[str, Any] | None:
        return sink(redis_url, again["batch"]).get("0")

    outcome = wait_until(one_retried, deadline=30, what="the retried sample")
    assert isinstance(outcome, dict)
    assert outcome["result"]["output"] == "PARIS!", outcome
    stop(worker)


@pytest.mark.slow
def test_a_worker_with_other_sut_files_stops_the_run_naming_both_fingerprints(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    # the worker runs in its own folder, as on another host with another checkout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_sut(elsewhere, "return city")
    procs.cwd = elsewhere
    procs.worker("evals", imports=())
    procs.cwd = tmp_path
    wait_until(lambda: live_workers(redis_url, "evals") == 1, what="the worker")
    write_sut(tmp_path, "return city.upper()")
    data = dataset(tmp_path)

    done = procs.cli("run", str(data), "--sut", SUT, "--metric", "exact-match", "--concurrency", "2", timeout=60)
    assert done.returncode == 3, done.stderr
    assert "other SUT code" in done.stderr and "Traceback" not in done.stderr
    ours = procs.cli(
        "run", str(data), "--sut", SUT, "--metric", "exact-match", "--batch", "serial", "--json", "ours.json"
    )
    named = set(re.findall(r"sha256:[0-9a-f]{16}", done.stderr))
    ours_fp = json.loads((tmp_path / "ours.json").read_text())["sut_fingerprint"]
    assert ours.returncode == 0
    # the message names the worker's fingerprint, the producer's and the worker's host
    assert ours_fp in named and len(named) == 2
    assert "on host" in done.stderr


@pytest.mark.slow
def test_evalharnessd_reload_restarts_the_workers_when_an_imported_module_changes(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    jobs = tmp_path / "myjobs.py"
    jobs.write_text(
        "from evalharness.core import job\n\n\n"
        "@job('greet', queue='evals')\ndef greet(name):\n    return 'hello ' + name\n"
    )
    daemon = procs.start(
        "-m", "evalharness.daemon.master", "--queue", "evals=2", "--import", "myjobs", "--reload", "--log-level", "info"
    )
    wait_until(lambda: live_workers(redis_url, "evals") == 2, deadline=30, what="two workers")
    first = worker_pids(redis_url)

    def reported() -> bool:
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            infos = [json.loads(v) for v in r.hvals("eh:workers")]
        finally:
            r.close()
        return len(infos) == 2 and all(str(jobs) in i.get("modules", {}) for i in infos)

    wait_until(reported, deadline=20, what="the workers' module reports")
    jobs.write_text(jobs.read_text().replace("'hello '", "'hi '"))

    def replaced() -> bool:
        pids = worker_pids(redis_url)
        return len(pids) == 2 and not pids & first and live_workers(redis_url, "evals") == 2

    wait_until(replaced, deadline=40, what="two new workers")
    err = stop(daemon)
    assert "reload: myjobs.py changed; restarting the workers" in err
    assert "restarting workers with a freshly read configuration" in err


def test_no_busy_thread_warning_after_a_normal_run_with_a_sync_sut(procs: Processes, tmp_path: Path) -> None:
    write_sut(tmp_path, "return city.upper()")
    data = dataset(tmp_path)
    code, report, err = run(procs, data, "sync.json", "--workers", "1")
    assert code == 0, err
    assert report["scored_samples"] == len(CITIES)
    assert "still running at exit" not in err and "still busy" not in err, err


@pytest.mark.slow
def test_a_worker_stopped_during_a_sync_sut_call_warns_and_exits_at_once(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    (tmp_path / "mybot.py").write_text("import time\n\n\ndef answer(city):\n    time.sleep(60)\n    return city\n")
    data = dataset(tmp_path)
    worker = procs.worker("evals", grace=0.5, imports=())
    wait_until(lambda: live_workers(redis_url, "evals") == 1, what="the worker")
    producer = procs.start(
        "-m", "evalharness.cli", "run", str(data), "--sut", SUT, "--metric", "exact-match", "--concurrency", "1"
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: r.zcard("eh:{q:evals}:reserved") == 1, deadline=20, what="the sample running")
    r.close()
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=20)  # not the 60 s the call would take
    assert worker.returncode == 0, err
    assert "1 sync call(s) still running at exit; not waiting for them" in err
    producer.kill()
