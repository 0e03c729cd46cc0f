"""`evalharness run` subsets, CSV datasets, saved outputs, report files and progress, end to end:
real CLI processes, real Redis, real local workers."""

from __future__ import annotations

import csv
import json
import os
import pty
import select
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import redis
from support.procs import PYTHON, Processes

from evalharness.core.examples import EXAMPLE_DATASET
from evalharness.core.examples.sim import respond

SUT = "support.suts:steady"


def dataset(tmp_path: Path, n: int = 30) -> Path:
    lines = EXAMPLE_DATASET.read_text().splitlines()[:n]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def ids_of(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def nothing_queued(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # no batch, no job, no run record: the run stopped before dispatching anything
        assert [k for k in r.scan_iter("eh:*") if ":job:" in k or ":batch" in k or ":run" in k] == []
    finally:
        r.close()


@pytest.mark.slow
def test_a_subset_runs_only_those_samples_and_its_batch_declares_the_subset(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 40)
    all_ids = ids_of(data)
    chosen = all_ids[3:15]
    flags = [a for i in chosen for a in ("--sample", i)]
    args = (
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--workers",
        "2",
        "--concurrency",
        "6",
        *flags,
        "--shuffle",
        "--seed",
        "11",
        "--limit",
        "7",
    )
    first = procs.cli(*args, "--json", "a.json")
    assert first.returncode == 0, first.stderr
    again = procs.cli(*args, "--json", "b.json")
    assert again.returncode == 0, again.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    order = [s["id"] for s in a["samples"]]
    assert order == [s["id"] for s in b["samples"]]  # the same seed, the same order
    assert len(order) == 7 and set(order) <= set(chosen) and order != sorted(order, key=all_ids.index)
    assert a["total_samples"] == a["scored_samples"] == a["dataset"]["samples"] == 7
    assert a["subset"] == {"of": 40, "samples": 7, "limit": 7, "sample_ids": chosen, "shuffle": True, "seed": 11}
    # the run's batch declared the subset's size, not the dataset's
    shown = procs.cli("batch", "show", a["batch"], "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert (info["total"], info["declared"], info["processed"]) == (7, 7, 7)
    # the rebuilt report records the subset too, and writes the other formats
    rebuilt = procs.cli(
        "report",
        a["run_id"],
        "--json",
        "c.json",
        "--junit",
        "c.xml",
        "--csv",
        "c.csv",
        "--md",
        "c.md",
        "--html",
        "c.html",
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["subset"] == a["subset"] and [s["id"] for s in c["samples"]] == order
    cases = ET.parse(tmp_path / "c.xml").getroot().findall("testsuite/testcase")
    assert [case.get("name") for case in cases] == order
    assert len(list(csv.DictReader((tmp_path / "c.csv").open()))) == 7
    assert "7 of 40 samples" in (tmp_path / "c.md").read_text()
    assert "<svg" in (tmp_path / "c.html").read_text()


def test_bad_subset_and_report_flags_exit_2_naming_the_flag_with_nothing_queued(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    data = dataset(tmp_path, 5)
    (tmp_path / "adir").mkdir()
    cases = [
        (("--sample", "q001", "--sample", "nope"), "--sample 'nope': no sample with this id"),
        (("--seed", "4"), "--seed only applies with --shuffle"),
        (("--limit", "0"), "--limit"),
        (("--seed", "x", "--shuffle"), "--seed"),
        (("--html", "adir"), "Invalid value for '--html': File 'adir' is a directory"),
        (("--junit", "small.jsonl/x.xml"), "--junit small.jsonl/x.xml"),
        (("--progress-interval", "0"), "--progress-interval"),
        (("--input-col", "question"), "--input-col applies to CSV datasets only"),
    ]
    for extra, words in cases:
        done = procs.cli("run", str(data), "--sut", SUT, "--metric", "exact-match", "--workers", "1", *extra)
        assert done.returncode == 2, (extra, done.stderr)
        assert words in done.stderr, (extra, done.stderr)
        assert "Traceback" not in done.stderr
    nothing_queued(redis_url)


def test_a_csv_dataset_with_named_columns(procs: Processes, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in EXAMPLE_DATASET.read_text().splitlines()[:12]]
    with (tmp_path / "qa.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "answer", "source"])
        for r in rows:
            w.writerow([r["id"], r["input"], r["expected_output"], "example"])
    done = procs.cli(
        "run",
        "qa.csv",
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--batch",
        "serial",
        "--input-col",
        "question",
        "--expected-col",
        "answer",
        "--json",
        "r.json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [s["id"] for s in report["samples"]] == [r["id"] for r in rows]
    assert report["scored_samples"] == 12
    assert report["metrics"]["exact-match"]["mean"] > 0


def test_a_malformed_csv_row_names_file_line_and_field_and_queues_nothing(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    (tmp_path / "bad.csv").write_text("id,input,expected_output\na,What is 2+2?,4\nb,What is 3+3?\n")
    done = procs.cli("run", "bad.csv", "--sut", SUT, "--metric", "exact-match", "--workers", "1")
    assert done.returncode == 2
    assert "bad.csv:3: row has 2 field(s)" in done.stderr and "missing 'expected_output'" in done.stderr
    (tmp_path / "cols.csv").write_text("id,prompt,expected_output\na,x,y\n")
    done = procs.cli("run", "cols.csv", "--sut", SUT, "--metric", "exact-match", "--workers", "1")
    assert done.returncode == 2
    assert "cols.csv:1: missing column 'input' (choose the column with --input-col)" in done.stderr
    nothing_queued(redis_url)


def test_saved_outputs_are_scored_without_a_sut_or_workers(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    data = dataset(tmp_path, 10)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    with (tmp_path / "outputs.jsonl").open("w") as f:
        for i, r in enumerate(rows[:9]):  # the last sample has no saved output
            key = {"index": i} if i % 2 else {"id": r["id"]}
            f.write(json.dumps({**key, "output": respond(str(r["input"]))}) + "\n")
    done = procs.cli(
        "run",
        str(data),
        "--outputs",
        "outputs.jsonl",
        "--metric",
        "exact-match",
        "--json",
        "r.json",
        "--junit",
        "r.xml",
    )
    assert done.returncode == 1, done.stderr  # one sample has no output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mode"] == "outputs" and report["scored_samples"] == 9
    assert report["outputs"] == {"path": "outputs.jsonl", "lines": 9, "matched": 9, "missing": 1}
    assert report["samples"][9]["error"]["kind"] == "no_output"
    # the same scores a run with the SUT gives
    serial = procs.cli(
        "run", str(data), "--sut", SUT, "--metric", "exact-match", "--batch", "serial", "--json", "s.json"
    )
    s = json.loads((tmp_path / "s.json").read_text())
    assert [x["scores"] for x in report["samples"][:9]] == [x["scores"] for x in s["samples"][:9]], serial.stderr
    failures = [
        c.get("name") for c in ET.parse(tmp_path / "r.xml").getroot().iter("testcase") if c.find("failure") is not None
    ]
    assert rows[9]["id"] in failures
    nothing_queued(redis_url)


def test_saved_outputs_of_a_subset_are_matched_by_file_position_not_run_position(
    procs: Processes, tmp_path: Path
) -> None:
    data = dataset(tmp_path, 12)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    # every output names its sample, so a mix-up of positions shows in the report
    with (tmp_path / "outputs.jsonl").open("w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"index": i, "output": f"answer of {r['id']}"}) + "\n")
    done = procs.cli(
        "run",
        str(data),
        "--outputs",
        "outputs.jsonl",
        "--metric",
        "contains",
        "--shuffle",
        "--seed",
        "5",
        "--limit",
        "6",
        "--json",
        "r.json",
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["total_samples"] == 6 and report["subset"]["seed"] == 5, done.stderr
    assert [s["index"] for s in report["samples"]] == list(range(6))
    assert all(s["output"] == f"answer of {s['id']}" for s in report["samples"])


def test_saved_outputs_that_do_not_match_name_file_and_line(procs: Processes, tmp_path: Path, redis_url: str) -> None:
    data = dataset(tmp_path, 3)
    (tmp_path / "o.jsonl").write_text('{"id": "q001", "output": "x"}\n{"id": "q999", "output": "y"}\n')
    done = procs.cli("run", str(data), "--outputs", "o.jsonl", "--metric", "exact-match", "--json", "r.json")
    assert done.returncode == 2
    assert "o.jsonl:2: key 'id': no sample 'q999'" in done.stderr
    assert not (tmp_path / "r.json").exists()
    both = procs.cli("run", str(data), "--outputs", "o.jsonl", "--sut", SUT, "--metric", "exact-match")
    assert both.returncode == 2 and "--sut and --outputs exclude each other" in both.stderr
    neither = procs.cli("run", str(data), "--metric", "exact-match")
    assert neither.returncode == 2 and "--sut" in neither.stderr and "--outputs" in neither.stderr


@pytest.mark.slow
def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(procs: Processes, tmp_path: Path) -> None:
    data = dataset(tmp_path, 40)
    done = procs.cli(
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--workers",
        "2",
        "--concurrency",
        "4",
        "--progress-interval",
        "0.3",
        env={"EH_TEST_LATENCY": "0.1,0.15"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("small (lazy-parallel): ")]
    assert len(lines) >= 2, done.stderr
    assert "\x1b[" not in done.stderr  # no terminal control codes in a log
    assert (
        "in flight" in lines[0]
        and "failed" in lines[0]
        and "retrying" in lines[0]
        and "rate-limited" in lines[0]
        and "ETA" in lines[0]
    )
    assert lines[-1].startswith("small (lazy-parallel): 40/40 done · 0 failed") and "ETA" not in lines[-1]
    quiet = procs.cli(
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--workers",
        "1",
        "--quiet",
        "--progress-interval",
        "0.3",
    )
    assert quiet.returncode == 0 and "lazy-parallel): " not in quiet.stderr


@pytest.mark.slow
def test_progress_is_one_live_line_on_a_terminal(procs: Processes, tmp_path: Path) -> None:
    data = dataset(tmp_path, 40)
    main, child = pty.openpty()
    cmd = [
        PYTHON,
        "-m",
        "evalharness.cli",
        "run",
        str(data),
        "--sut",
        SUT,
        "--metric",
        "exact-match",
        "--workers",
        "2",
        "--concurrency",
        "4",
    ]
    proc = subprocess.Popen(
        cmd,
        env={**procs.env, "EH_TEST_LATENCY": "0.1,0.15", "COLUMNS": "160", "TERM": "xterm"},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=child,
        start_new_session=True,
    )
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert proc.returncode == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    assert "small (lazy-parallel): " in text and " in flight" in text and "ETA" in text and "/s" in text
    assert "\x1b[" in text  # drawn and redrawn in place
    assert b"exact-match" in out  # the report itself goes to stdout
