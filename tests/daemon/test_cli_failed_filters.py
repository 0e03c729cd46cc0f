"""`evalharness failed list --exception/--batch/--name` and `failed retry|forget --all-matching`
against a recorded failed store on a real Redis: the CLI lists what the indexes say, and the
counts it prints are the counts it acted on."""

from __future__ import annotations

import json
from typing import Any

from support.procs import Processes

from evalharness.core.batches import Batches
from evalharness.core.queue import JobRequest, Queue


async def record(aclient: Any) -> None:
    q = Queue(aclient)
    await Batches(aclient).create("nightly", [], queue="t", batch_id="nightly", allow_failures=True)
    reqs = [
        JobRequest("judge" if i % 2 else "answer", {"i": i}, queue="t", batch="nightly" if i < 6 else None)
        for i in range(10)
    ]
    await q.dispatch_many(reqs)
    for job in (await q.pop("t", 10, 30, "w:1:x")).jobs:
        exc = "TimeoutError" if job.payload["i"] % 3 == 0 else "ValueError"
        await q.fail(
            "t",
            "w:1:x",
            job.id,
            {"kind": "exception", "message": f"boom {job.payload['i']}", "exception_type": exc, "job": job.name},
        )


def lines(out: Any) -> list[dict[str, Any]]:
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


async def test_failed_list_filters_and_retry_all_matching_prints_the_count(procs: Processes, aclient: Any) -> None:
    await record(aclient)
    rows = lines(procs.cli_here("failed", "list", "--json", "--exception", "TimeoutError"))
    assert sorted(r["payload"]["i"] for r in rows) == [0, 3, 6, 9]
    rows = lines(procs.cli_here("failed", "list", "--json", "--batch", "nightly", "--name", "judge"))
    assert sorted(r["payload"]["i"] for r in rows) == [1, 3, 5]
    rows = lines(
        procs.cli_here("failed", "list", "--json", "--exception", "ValueError", "--batch", "nightly", "--limit", "3")
    )
    assert [r["payload"]["i"] for r in rows] == [5, 4, 2]  # newest first
    out = procs.cli_here("failed", "retry", "--all-matching", "--exception", "TimeoutError", "--name", "judge")
    assert out.returncode == 0 and out.stdout.strip() == "Retried 2 failed jobs matching exc:TimeoutError name:judge"
    assert lines(procs.cli_here("failed", "list", "--json", "--exception", "TimeoutError", "--name", "judge")) == []
    res = lines(procs.cli_here("failed", "forget", "--all-matching", "--batch", "nightly", "--json"))
    assert res[0]["forgotten"] == 5 and res[0]["ok"]  # 6 of the batch, less the one retried (3)
    nothing = procs.cli_here("failed", "forget", "--all-matching", "--batch", "nightly")
    assert nothing.returncode == 0 and nothing.stdout.startswith("No failed jobs matching batch:nightly")
    before_unfiltered = len(lines(procs.cli_here("failed", "list", "--json")))
    bad = procs.cli_here("failed", "retry", "--all-matching", "--tag", "x")
    assert bad.returncode == 2 and "--tag" in bad.stderr
    both = procs.cli_here("failed", "retry", "--all", "--all-matching")
    assert both.returncode == 2
    # no filter: nothing retried, and the message says which flag retries everything
    unfiltered = procs.cli_here("failed", "retry", "--all-matching")
    assert unfiltered.returncode == 2 and "`--all` retries every failed job" in unfiltered.stderr
    assert len(lines(procs.cli_here("failed", "list", "--json"))) == before_unfiltered
