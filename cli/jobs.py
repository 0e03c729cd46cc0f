"""``evalharness job cancel`` and ``evalharness jobs running``: act on one job, see the leased ones."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from rich.table import Table
from rich.text import Text

from evalharness.core.admin import ActionResult, Admin, RunningRow
from evalharness.core.config import validate_name
from evalharness.core.connection import async_client

from .common import settings_from, table_console

T = TypeVar("T")


def run_admin(ctx: click.Context, body: Callable[[Admin], Awaitable[T]]) -> T:
    settings = settings_from(ctx)

    async def main() -> T:
        client = async_client(settings.redis_url)
        try:
            return await body(Admin(client, settings.prefix))
        finally:
            await client.aclose()

    return asyncio.run(main())


def report(result: ActionResult, as_json: bool) -> None:
    """Print what an action did (the same sentence the console shows); exit 1 when it changed nothing."""
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        click.echo(result.message)
    if not result.ok:
        raise SystemExit(1)


@click.group()
def job() -> None:
    """Act on one job by id."""


@job.command("cancel")
@click.argument("job_id")
@click.option("--queue", help="The job's queue (default: look in every known queue).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def job_cancel(ctx: click.Context, job_id: str, queue: str | None, as_json: bool) -> None:
    """Cancel a job.  A running job is told to stop at its worker's next lease renewal (within
    lease/3, 10 s by default): an async job is cancelled at once, a sync one when it returns or,
    after the worker's --cancel-grace, by replacing the worker process.  A queued or delayed job
    leaves the queue now.  Either way it is recorded in the failed store as `cancelled` (with its
    checkpoint) and not retried.  Exit status 1 when nothing changed (finished, unknown id)."""
    if queue:
        validate_name("queue", queue)
    report(run_admin(ctx, lambda a: a.cancel_job(job_id, queue)), as_json)


@click.group()
def jobs() -> None:
    """Jobs across queues."""


def _age(now: float, ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0.0, now - ts)
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.1f}h"


def _row_json(row: RunningRow) -> dict[str, object]:
    return dataclasses.asdict(row)


@jobs.command("running")
@click.option("--queue", help="Only this queue.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def jobs_running(ctx: click.Context, queue: str | None, as_json: bool) -> None:
    """Every leased job, longest-running first: worker host:pid, running for, attempt, time to
    its timeout, lease deadline, last renewal and the progress the job reported
    (ctx.progress(...), carried with the lease renewals)."""
    if queue:
        validate_name("queue", queue)
    rows = run_admin(ctx, lambda a: a.running(queue))
    if as_json:
        for row in rows:
            click.echo(json.dumps(_row_json(row)))
        return
    if not rows:
        click.echo("no running jobs")
        return
    now = time.time()
    console = table_console()
    # What every row shares (a run's samples: one job name, queue and batch) goes to the title
    # line, so at 80 columns the ids and the worker, age and progress stay whole.
    shared = {
        col: values.pop()
        for col, values in (
            ("job", {r.name for r in rows}),
            ("queue", {r.queue for r in rows}),
            ("batch", {r.batch or "-" for r in rows}),
        )
        if len(values) == 1 and len(rows) > 1
    }
    cells = []
    for r in rows:
        timeout_in = (
            "-" if r.timeout is None or r.started_at is None else f"{max(0.0, r.started_at + r.timeout - now):.0f}s"
        )
        overdue = (
            r.renewed_at is not None and r.lease_seconds is not None and now - r.renewed_at > r.lease_seconds / 3 * 2
        )
        progress = "-" if r.progress is None else f"{r.progress:.0%} {r.progress_note or ''}".strip()
        if r.cancel_requested:
            progress = f"cancelling · {progress}"
        attempt = f"{r.attempt}/{r.tries}" if r.tries else str(r.attempt)
        cells.append(
            {
                "job": Text(r.name),
                "id": Text(r.id),
                "queue": Text(r.queue),
                "batch": Text(r.batch or "-"),
                "worker": Text(r.worker),
                "running": Text(_age(now, r.started_at)),
                "attempt": Text(attempt),
                "t/o in": Text(timeout_in),
                "renewed": Text(_age(now, r.renewed_at) + " ago", style="red" if overdue else ""),
                "progress": Text(progress),
            }
        )
    columns = [
        c
        for c in ("job", "id", "queue", "batch", "worker", "running", "attempt", "t/o in", "renewed", "progress")
        if c not in shared
    ]

    def width(cols: list[str]) -> int:
        return sum(max(len(c), *(len(row[c].plain) for row in cells)) + 1 for c in cols)

    # narrow terminals lose the least telling columns first; the id is never cut
    for drop in ("renewed", "attempt", "queue", "batch", "job", "t/o in"):
        if width(columns) <= console.width:
            break
        if drop in columns:
            columns.remove(drop)
    if shared:
        console.print(Text("  ".join(f"{k} {v}" for k, v in shared.items()), style="bold"))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in columns:
        overflow = "fold" if col in ("id", "worker") else "ellipsis"
        table.add_column(
            col,
            no_wrap=col != "progress",
            overflow=overflow,
            min_width=width([col]) - 1 if col in ("id", "worker", "running") else None,
        )
    for row in cells:
        table.add_row(*(row[c] for c in columns))
    console.print(table)
