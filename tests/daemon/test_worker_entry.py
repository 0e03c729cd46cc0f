"""The thin worker entry (``python -m evalharness.daemon.worker``) the daemon and ``run --workers``
start: the flags of ``evalharness work``, none of the CLI's weight."""

from __future__ import annotations

import json
import subprocess
import sys

from evalharness.cli.work import work
from evalharness.daemon.worker import entry_parser

PROBE = """
import json, sys
from evalharness.daemon import worker
try:
    worker.main(["--queue", "bad name!"])
except SystemExit as exc:
    print(json.dumps({"code": exc.code, "modules": sorted(sys.modules)}))
"""


def test_the_entry_takes_exactly_the_flags_of_evalharness_work_and_the_connection_flags() -> None:

    click_flags = {o for p in work.params for o in (*p.opts, *p.secondary_opts)} - {"--help"}
    group_flags = {"--redis-url", "--prefix", "--config", "--log-level"}
    entry_flags = {o for a in entry_parser()._actions for o in a.option_strings} - {"-h", "--help"}
    assert entry_flags == click_flags | group_flags


def test_the_entry_loads_no_cli_report_scorer_or_console_code_and_names_a_bad_queue() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    out = json.loads(done.stdout)
    assert out["code"] == 2 and "queue" in done.stderr and "bad name!" in done.stderr
    heavy = [
        m
        for m in out["modules"]
        if m.split(".")[0] in ("click", "rich", "textual", "httpx")
        or m.startswith(
            (
                "evalharness.cli",
                "evalharness.core.report",
                "evalharness.core.scorers",
                "evalharness.core.metrics",
                "evalharness.core.evalrun",
                "evalharness.tui",
            )
        )
    ]
    assert heavy == []


READY_PROBE = """
import json, sys
from evalharness.daemon import worker
worker.import_job_modules([])  # what a worker imports before its first heartbeat, the built-in jobs
print(json.dumps(sorted(sys.modules)))
"""


def test_a_worker_with_its_built_in_jobs_loaded_has_no_cli_console_report_scorer_or_http_client_code() -> None:
    # the judge job's HTTP client is imported when a judge job runs: httpx brings click and rich along
    done = subprocess.run([sys.executable, "-c", READY_PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    assert "evalharness.core.judges" in modules and "evalharness.core.evaljobs" in modules
    heavy = [
        m
        for m in modules
        if m.split(".")[0] in ("click", "rich", "textual", "httpx")
        or m.startswith(("evalharness.cli", "evalharness.core.report", "evalharness.core.scorers", "evalharness.tui"))
    ]
    assert heavy == []


def test_a_bad_flag_value_exits_2_naming_the_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "evalharness.daemon.worker", "--queue", "q", "--concurrency", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--concurrency" in done.stderr and "below 1" in done.stderr
