"""`failed` and `batch` at 80 columns: ids are shown as unique prefixes (never cut at the end,
where ids dispatched together differ), the message column stays, and every command that takes an
id takes such a prefix."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from support.procs import Processes

from evalharness.cli.failed import failed_table
from evalharness.core.batches import Batches
from evalharness.core.ids import abbreviate
from evalharness.core.queue import JobRequest, Queue

NARROW = {"COLUMNS": "80"}


async def fail_jobs(queue: Queue, name: str, n: int, ids: list[str] | None = None) -> list[str]:
    """``n`` jobs dispatched together (their ids share the millisecond they were made in), failed."""
    given = ids or [None] * n
    ids = await queue.dispatch_many(
        [JobRequest("evalharness.sample", {"i": i}, queue=name, id=given[i]) for i in range(n)]
    )
    for j in (await queue.pop(name, n, 30, "w1")).jobs:
        sample = j.payload["i"]
        failure = {
            "kind": "exception",
            "exception_type": "ValueError",
            "message": f"expected 'Paris', got 'Lyon' for sample {sample}",
        }
        assert await queue.fail(name, "w1", j.id, failure)
    return ids


def column_text(out: str, header: str, next_header: str) -> dict[str, str]:
    """The text of one column per row of a rich table without borders: row id -> the column's
    cell, wrapped lines joined."""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("id "))
    start, end = lines[head].index(header), lines[head].index(next_header)
    cells: dict[str, list[str]] = {}
    current = ""
    for line in lines[head + 1 :]:
        if line[:1].strip():
            current = line.split()[0]
        cells.setdefault(current, []).append(line[start:end].strip())
    return {k: " ".join(v) for k, v in cells.items()}


async def test_failed_list_at_80_columns_tells_ids_apart_and_keeps_the_message(aclient: Any, procs: Processes) -> None:
    ids = await fail_jobs(Queue(aclient, "eh"), "evals", 5)
    assert len({i[:12] for i in ids}) < 5, (
        "ids made together share their head, which is why cutting the tail hides them"
    )
    done = procs.cli_here("failed", "list", env=NARROW)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "failed evalharness.sample jobs on queue evals" in out
    short = abbreviate(ids)
    assert len(set(short.values())) == 5 and all(len(s) >= 8 for s in short.values())
    messages = column_text(out, "message", "tries")
    for job_id in ids:
        assert re.search(rf"^{short[job_id]}\s", out, re.M), f"{short[job_id]} not shown"
    shown = {messages[short[j]] for j in ids}
    assert shown == {f"ValueError: expected 'Paris', got 'Lyon' for sample {i}" for i in range(5)}


async def test_a_listed_prefix_works_for_show_retry_and_forget_and_an_ambiguous_one_is_refused(
    aclient: Any, procs: Processes
) -> None:
    # as made in one millisecond, the time part (12 characters) and more shared
    ids = await fail_jobs(
        Queue(aclient, "eh"),
        "evals",
        3,
        ["01a233a68ee36de144c01c20094f", "01a233a68ee36de1ffc01c20095a", "01a233a68ee36de1ee001c20096b"],
    )
    short = abbreviate(ids)
    first, second, third = (short[i] for i in ids)
    assert first == "01a233a68ee36de14"

    ambiguous = procs.cli_here("failed", "show", "01a233a68ee36de1")
    assert ambiguous.returncode == 2
    assert (
        "'01a233a68ee36de1' is the start of 3 failed job ids" in ambiguous.stderr
        and "give more characters" in ambiguous.stderr
    )
    assert all(job_id in ambiguous.stderr for job_id in ids)

    shown = procs.cli_here("failed", "show", first)
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^id\s+{ids[0]}$", shown.stdout, re.M)

    retried = procs.cli_here("failed", "retry", second)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"{ids[1]} -> ")

    forgot = procs.cli_here("failed", "forget", third)
    assert forgot.returncode == 0 and "forgot 1 job(s)" in forgot.stdout

    # a prefix the store does not hold is the same error as an unknown id
    unknown = procs.cli_here("failed", "show", "ffffffffffff")
    assert unknown.returncode == 2 and "no failed job 'ffffffffffff'" in unknown.stderr


def test_the_failed_table_keeps_ids_and_message_at_80_columns_with_several_queues_and_jobs() -> None:
    now = int(datetime(2026, 12, 1, 23, 0, tzinfo=UTC).timestamp() * 1000)
    ids = ["01a233a68ee36de144c01c20094f", "01a233a68ee36de144c01c20095a", "01a233a68ee36de144c01c20096b"]
    rows = [
        {
            "id": job_id,
            "queue": queue,
            "name": name,
            "kind": "timeout" if i == 2 else "exception",
            "exception_type": None if i == 2 else "ConnectionError",
            "message": f"upstream said no to request {i}",
            "attempts": 3,
            "releases": 0,
            "failed_at": now,
        }
        for i, (job_id, queue, name) in enumerate(
            zip(
                ids, ["evals", "judge", "evals"], ["evalharness.sample", "summarise", "evalharness.sample"], strict=True
            )
        )
    ]
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(failed_table(rows, abbreviate(ids), 80))
    out = console.export_text()
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    for header in ("id", "queue", "job", "message", "tries"):
        assert header in out.splitlines()[0]
    messages = column_text(out, "message", "tries")
    assert messages["01a233a68ee36de144c01c20094"] == "ConnectionError: upstream said no to request 0"
    assert messages["01a233a68ee36de144c01c20096"] == "timeout: upstream said no to request 2"


async def test_batch_list_at_80_columns_and_batch_commands_take_a_prefix(aclient: Any, procs: Processes) -> None:
    batches = Batches(aclient, "eh")
    # eval runs' batches: "run-" and a job id; runs started together share the time part
    given = ["run-01a233a68ee36de144c01c20094f", "run-01a233a68ee3aa0144c01c20095a", "run-01a233a68ee3ab0144c01c20096b"]
    made = [
        await batches.create(
            f"nightly summaries of the support tickets, part {i}",
            [JobRequest("noop", {"part": i})],
            queue="evals",
            batch_id=bid,
        )
        for i, bid in enumerate(given)
    ]
    short = abbreviate(made)
    listed = procs.cli_here("batch", "list", env=NARROW)
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout and max(len(line) for line in listed.stdout.splitlines()) <= 80
    for bid in made:
        assert re.search(rf"^{short[bid]}\s", listed.stdout, re.M)
    names = column_text(listed.stdout, "name", "state")
    assert {names[short[b]] for b in made} == {f"nightly summaries of the support tickets, part {i}" for i in range(3)}

    shown = procs.cli_here("batch", "show", short[made[0]])
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^id\s+{made[0]}$", shown.stdout, re.M)
    cancelled = procs.cli_here("batch", "cancel", short[made[1]])
    assert cancelled.returncode == 0 and cancelled.stdout.startswith(
        f"Cancelled {made[1]}: removed 1 queued job, 0 running told to stop"
    )
    retried = procs.cli_here("batch", "retry", short[made[1]])
    assert retried.returncode == 0 and f"of {made[1]}" in retried.stdout
    too_short = procs.cli_here("batch", "show", "run")
    assert too_short.returncode == 2 and "at least 4 characters" in too_short.stderr
    ambiguous = procs.cli_here("batch", "cancel", "run-01a233a68ee3a")
    assert ambiguous.returncode == 2 and "is the start of 2 batch ids" in ambiguous.stderr
    assert made[1] in ambiguous.stderr and made[2] in ambiguous.stderr
    untouched = await batches.info(made[2])
    assert untouched is not None and untouched.cancelled_at is None


def test_a_failure_without_a_message_shows_its_kind() -> None:
    rows = [
        {
            "id": job_id,
            "queue": "evals",
            "name": "evalharness.sample",
            "kind": "timeout",
            "exception_type": None,
            "message": message,
            "attempts": 1,
            "releases": 0,
            "failed_at": 0,
        }
        for job_id, message in (("01a233a68ee36de144c01c20094f", None), ("01a233a68ee36de144c01c20095a", "  \n"))
    ]
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(failed_table(rows, abbreviate([r["id"] for r in rows]), 80))
    assert set(column_text(console.export_text(), "message", "tries").values()) == {"timeout"}


async def test_failed_list_to_a_pipe_keeps_each_row_on_one_line_with_every_column(
    aclient: Any, procs: Processes
) -> None:
    ids = await fail_jobs(Queue(aclient, "eh"), "evals", 3)
    done = procs.cli_here("failed", "list", env={"COLUMNS": ""})  # stdout is no terminal here
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("id "))
    assert "failed at (UTC)" in lines[head] and "message" in lines[head]
    rows = [line for line in lines[head + 1 :] if line.strip()]
    assert len(rows) == 3 and all("evalharness.sample" in row and "expected 'Paris', got 'Lyon'" in row for row in rows)
    assert {row.split()[0] for row in rows} == set(abbreviate(ids).values())
