"""`evalharness run --resume RUN_ID` end to end: a real producer SIGKILLed at half way (or stopped
by Ctrl-C), real worker processes, real Redis.  The resumed run scores every sample exactly once,
calls the SUT at most (samples + jobs in flight at the kill) times and writes the report an
uninterrupted run would have; a changed dataset or SUT, or a producer still alive, is refused."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import redis
from support.procs import Processes, live_workers, wait_until

from evalharness.core.examples import EXAMPLE_DATASET
from evalharness.core.examples.sim import respond

SUT_SOURCE = '''
import asyncio, os, time
from evalharness.core.examples.sim import respond


async def answer(question):
    """Notes each call in EH_TEST_CALLS, then answers after EH_TEST_LATENCY seconds."""
    with open(os.environ["EH_TEST_CALLS"], "a") as fh:
        fh.write(f"{question}\\n")
    await asyncio.sleep(float(os.environ.get("EH_TEST_LATENCY", "0.1")))
    return respond(str(question))
'''
N = 120
SINK = "eh:{{q:evals}}:results:run-{}"


def setup(tmp_path: Path, n: int = N) -> tuple[Path, list[dict[str, object]]]:
    (tmp_path / "resumesut.py").write_text(SUT_SOURCE)
    rows = [json.loads(line) for line in EXAMPLE_DATASET.read_text().splitlines()[:n]]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, rows


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def the_run(r: redis.Redis) -> str:
    ids = wait_until(lambda: r.zrange("eh:runs", 0, -1), deadline=60, what="the run's record")
    assert isinstance(ids, list) and len(ids) == 1
    return str(ids[0])


def start_workers(procs: Processes, redis_url: str, env: dict[str, str]) -> None:
    for _ in range(2):
        procs.worker("evals", concurrency=5, imports=(), env=env)
    wait_until(lambda: live_workers(redis_url, "evals") == 2, deadline=60, what="two workers")


@pytest.mark.slow
def test_a_run_resumed_after_its_producer_was_killed_scores_each_sample_once(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data, rows = setup(tmp_path)
    env = {"EH_TEST_CALLS": str(tmp_path / "calls.txt"), "EH_TEST_LATENCY": "0.1"}
    start_workers(procs, redis_url, env)
    producer = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        "resumesut:answer",
        "--metric",
        "exact-match",
        "--concurrency",
        "10",
        "--json",
        "report.json",
        "--quiet",
        env=env,
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    rid = the_run(r)
    wait_until(lambda: r.hlen(SINK.format(rid)) >= N // 2, deadline=120, what="half the outcomes")
    producer.send_signal(signal.SIGKILL)
    producer.wait(timeout=30)
    # what was dispatched and not finished when the producer died: the most calls a resume may repeat
    in_flight = r.zcard("eh:{q:evals}:reserved") + r.zcard("eh:{q:evals}:ready")
    assert 0 < r.hlen(SINK.format(rid)) < N

    def state() -> str:
        shown = procs.cli("runs", "list", "--json")
        assert shown.returncode == 0, shown.stderr
        return str(json.loads(shown.stdout)[0]["state"])

    wait_until(lambda: state() == "abandoned", deadline=30, what="the dead producer's claim to lapse")

    # a changed dataset is refused, naming the sample and the field; nothing is dispatched
    edited = [dict(row) for row in rows]
    edited[4]["input"] = "What is 1 + 1?"
    data.write_text("".join(json.dumps(row) + "\n" for row in edited))
    dispatched = r.hget(f"eh:{{q:evals}}:batch:run-{rid}", "dispatched")
    refused = procs.cli("run", "--resume", rid, "--quiet", env=env)
    assert refused.returncode == 2, refused.stderr
    assert f"the dataset changed since run '{rid}' started" in refused.stderr
    assert f"1 sample(s) changed: {rows[4]['id']} (input)" in refused.stderr and "--allow-changes" in refused.stderr
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    # so is a changed SUT
    sut = tmp_path / "resumesut.py"
    sut.write_text(SUT_SOURCE + "\n# tuned\n")
    refused = procs.cli("run", "--resume", rid, "--quiet", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "the SUT resumesut:answer changed since run" in refused.stderr
    sut.write_text(SUT_SOURCE)
    assert r.hget(f"eh:{{q:evals}}:batch:run-{rid}", "dispatched") == dispatched

    done = procs.cli("run", "--resume", rid, "--quiet", env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"resuming run {rid}:" in done.stderr
    # the report goes where the run was told to write it, and is the whole run's
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["run_id"] == rid and report["total_samples"] == N and report["scored_samples"] == N
    assert report["failures"]["total"] == 0
    assert [s["id"] for s in report["samples"]] == [row["id"] for row in rows]
    assert [s["output"] for s in report["samples"]] == [respond(str(row["input"])) for row in rows]
    assert report["resumed"][0]["collected"] >= N // 2
    made = calls(tmp_path)
    assert sorted(set(made)) == sorted({str(row["input"]) for row in rows})  # every sample was called
    assert len(made) <= N + in_flight, (len(made), in_flight)
    assert r.hlen(SINK.format(rid)) == N
    shown = json.loads(procs.cli("runs", "show", rid, "--json").stdout)
    assert shown["state"] == "finished" and shown["resumes"] == 1 and shown["outcomes"] == N
    # the report rebuilt from Redis says what the resumed run's own report says of its code and resumes
    assert procs.cli("report", rid, "--json", "rebuilt.json", env=env).returncode == 0
    rebuilt = json.loads((tmp_path / "rebuilt.json").read_text())
    assert rebuilt["sut_fingerprint"] == report["sut_fingerprint"] and rebuilt["sut_fingerprint"]
    assert rebuilt["resumed"] == report["resumed"]
    # a finished run resumed again only writes its report: no SUT call
    again = procs.cli("run", "--resume", rid, "--json", "again.json", "--quiet", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["scored_samples"] == N and len(calls(tmp_path)) == len(
        made
    )
    r.close()


@pytest.mark.slow
def test_samples_still_running_at_the_kill_are_collected_not_run_again(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data, rows = setup(tmp_path, 20)
    # two waves of 10 samples, 12 s each: the kill comes as the second wave starts, and the resume
    # finds those 10 still running
    env = {"EH_TEST_CALLS": str(tmp_path / "calls.txt"), "EH_TEST_LATENCY": "12"}
    start_workers(procs, redis_url, env)
    producer = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        "resumesut:answer",
        "--metric",
        "exact-match",
        "--concurrency",
        "10",
        "--json",
        "report.json",
        "--quiet",
        env=env,
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    rid = the_run(r)
    wait_until(lambda: len(calls(tmp_path)) >= 20, deadline=120, what="the second wave to start")
    producer.send_signal(signal.SIGKILL)
    producer.wait(timeout=30)
    # the gates judge the resumed run's report as they would the whole run's: a perfect mean, which
    # these 20 answers do not reach (17 match), fails the resumed run, with the report written
    done = procs.cli("run", "--resume", rid, "--quiet", "--fail-under", "exact-match=1", env=env, timeout=180)
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["gates"]["passed"] is False and "--fail-under" in " ".join(report["gates"]["failures"])
    resumed = report["resumed"][0]
    assert resumed["collected"] == 10 and resumed["live"] == 10 and resumed["dispatched"] == 0, resumed
    assert report["scored_samples"] == 20 and [s["output"] for s in report["samples"]] == [
        respond(str(row["input"])) for row in rows
    ]
    assert len(calls(tmp_path)) == 20  # the running ones were awaited, not called again
    r.close()


@pytest.mark.slow
def test_a_live_producer_is_not_resumed_and_an_interrupted_run_is(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data, rows = setup(tmp_path, 60)
    # slow enough that the run is still going when the signal comes (60 × 1 s at 4 in flight)
    env = {"EH_TEST_CALLS": str(tmp_path / "calls.txt"), "EH_TEST_LATENCY": "1.0"}
    start_workers(procs, redis_url, env)
    producer = procs.start(
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        "resumesut:answer",
        "--metric",
        "exact-match",
        "--concurrency",
        "4",
        "--json",
        "report.json",
        "--quiet",
        env=env,
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    rid = the_run(r)
    wait_until(lambda: r.hlen(SINK.format(rid)) >= 4, deadline=120, what="some outcomes")
    refused = procs.cli("run", "--resume", rid, "--quiet", env=env)
    assert refused.returncode == 2, refused.stderr
    assert f"run '{rid}' is still being run by pid {producer.pid}" in refused.stderr
    # Ctrl-C: the producer cancels its batch and writes a partial report
    producer.send_signal(signal.SIGINT)
    _out, err = producer.communicate(timeout=60)
    assert producer.returncode == 130, err
    assert json.loads((tmp_path / "report.json").read_text())["interrupted"]["signal"] == "SIGINT"
    # how fast the rest runs may change on resume
    done = procs.cli("run", "--resume", rid, "--concurrency", "10", "--quiet", env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["options"]["concurrency"] == 10
    assert report["scored_samples"] == 60 and report["failures"]["total"] == 0 and "interrupted" not in report
    assert [s["output"] for s in report["samples"]] == [respond(str(row["input"])) for row in rows]
    # the cancelled batch stays cancelled: the rest ran in a batch of its own
    assert report["resumed"][0]["batch"] == f"run-{rid}.r1"
    assert "was cancelled" in " ".join(report["resumed"][0]["notes"])
    # the batch id the report gives names the run as well as its id does
    shown = procs.cli("runs", "show", f"run-{rid}.r1", "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == rid, shown.stderr
    rebuilt = procs.cli("report", f"run-{rid}.r1", "--json", "rebuilt.json", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads((tmp_path / "rebuilt.json").read_text())["scored_samples"] == 60
    r.close()


def test_resume_of_an_unknown_run_or_with_fixed_flags_exits_2(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    out = procs.cli("run", "--resume", "0123abc")
    assert out.returncode == 2 and "no run '0123abc' in Redis" in out.stderr
    out = procs.cli("run", "--resume", "0123abc", "--metric", "contains", "--repetitions", "2")
    assert out.returncode == 2 and "--metric, --repetitions: do not apply with --resume" in out.stderr
    out = procs.cli("run", "--resume", "0123abc", "--cache-ttl", "60", "--cache")
    assert out.returncode == 2 and "--cache/--no-cache, --cache-ttl: do not apply with --resume" in out.stderr
    out = procs.cli("run", "x.jsonl", "--sut", "m:f", "--metric", "contains", "--allow-changes")
    assert out.returncode == 2 and "--allow-changes only applies with --resume" in out.stderr
    out = procs.cli("runs", "show", "0123abc")
    assert out.returncode == 2
    r = redis.Redis.from_url(redis_url)
    assert r.dbsize() == 0
    r.close()
