"""``evalharness batch``: list, show, cancel, retry and prune batches."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import click
from rich.markup import escape
from rich.table import Table

from evalharness.core.batches import Batches, BatchInfo
from evalharness.core.connection import async_client
from evalharness.core.errors import EvalHarnessError
from evalharness.core.ids import abbreviate, batch_ids, resolve_batch

from .common import settings_from, table_console

T = TypeVar("T")
STATE_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "succeeded": "green",
    "finished_with_failures": "yellow",
    "failed": "red",
    "cancelled": "magenta",
}


def _run(ctx: click.Context, body: Callable[[Batches], Awaitable[T]]) -> T:
    settings = settings_from(ctx)

    async def main() -> T:
        client = async_client(settings.redis_url)
        try:
            return await body(Batches(client, settings.prefix))
        finally:
            await client.aclose()

    return asyncio.run(main())


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``24h``, ``7d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 15m, 24h or 7d")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


@click.group()
def batch() -> None:
    """Batches: progress, counts and state; cancel, retry, prune."""


@batch.command("list")
@click.option("--queue", help="Only batches on this queue.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def batch_list(ctx: click.Context, queue: str | None, limit: int, as_json: bool) -> None:
    """List batches, newest first.  Ids are shown as their shortest unique prefix (at least 8
    characters), which show, cancel and retry accept."""

    async def body(b: Batches) -> tuple[list[BatchInfo], list[str]]:
        return await b.list(queue, limit), await batch_ids(b.client, b.prefix)

    rows, every_id = _run(ctx, body)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.to_json()))
        return
    if not rows:
        click.echo("no batches")
        return
    console = table_console()
    console.print(batch_table(rows, abbreviate([b.id for b in rows], among=every_id), console.width))


def batch_table(rows: list[BatchInfo], short: dict[str, str], width: int) -> Table:
    """The ``batch list`` table: ids as unique prefixes, never cut; names wrap instead of being
    cut; queue, pending and creation time only from 120 columns."""
    wide = width >= 120
    table = Table(box=None, header_style="bold", pad_edge=False)
    cols = ["id", "name", "state", "done", "failed"] + (["queue", "pending", "created (UTC)"] if wide else [])
    for col in cols:
        table.add_column(
            col,
            no_wrap=col != "name",
            overflow="fold" if col == "name" else "ellipsis",
            min_width=max(len(v) for v in short.values()) if col == "id" else None,
            justify="right" if col in ("done", "failed", "pending") else "left",
        )
    for b in rows:
        cells = [
            short.get(b.id, b.id),
            escape(b.name),
            f"[{STATE_STYLE.get(b.state, '')}]{b.state}[/]",
            f"{b.processed:,}/{b.total:,} {b.progress:.0%}",
            f"{b.failed:,}",
        ]
        if wide:
            cells += [b.queue, f"{b.pending:,}", _when(b.created_at)]
        table.add_row(*cells)
    return table


def _show(info: BatchInfo) -> None:
    console = table_console()
    for key, value in info.to_json().items():
        if key == "failed_job_ids":
            value = ", ".join(value[:20]) + (f" … and {len(value) - 20} more" if len(value) > 20 else "")
        elif key.endswith("_at"):
            value = _when(value)
        elif key == "progress":
            value = f"{value:.1%}"
        elif key == "undispatched" and info.declared is not None and value == 0 and info.dispatched < info.declared:
            # sealed, cancelled or failed: the rest of the declared total will not come
            never = info.declared - info.dispatched
            value = f"0 ({never:,} of the declared {info.declared:,} were never dispatched; none will come now)"
        console.print(f"[bold]{key:15}[/] {escape(str(value))}", highlight=False)


@batch.command("show")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def batch_show(ctx: click.Context, batch_id: str, as_json: bool) -> None:
    """Everything about one batch.  BATCH_ID is the id or a unique prefix of it."""

    async def body(b: Batches) -> BatchInfo | None:
        return await b.info(await resolve_batch(b.client, b.prefix, batch_id))

    info = _run(ctx, body)
    if info is None:
        raise EvalHarnessError(f"no batch {batch_id!r}")
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
    else:
        _show(info)


@batch.command("cancel")
@click.argument("batch_id")
@click.pass_context
def batch_cancel(ctx: click.Context, batch_id: str) -> None:
    """Cancel a batch: its queued jobs leave the queue now, its running jobs are told to stop at
    their workers' next lease renewal (recorded as cancelled, not retried), `finally` runs.
    Prints how many were removed and told to stop; a batch already finished is left as it is.
    BATCH_ID is the id or a unique prefix of it."""
    from evalharness.core.admin import ActionResult, Admin

    async def body(b: Batches) -> ActionResult:
        full_id = await resolve_batch(b.client, b.prefix, batch_id)
        return await Admin(b.client, b.prefix).cancel_batch(full_id)

    result = _run(ctx, body)
    if not result.ok and not result.skipped:
        raise EvalHarnessError(result.message)
    click.echo(result.message)


@batch.command("retry")
@click.argument("batch_id")
@click.pass_context
def batch_retry(ctx: click.Context, batch_id: str) -> None:
    """Queue a batch's failed and cancelled jobs again and reopen it.  BATCH_ID is the id or a
    unique prefix of it."""

    async def body(b: Batches) -> tuple[str, int]:
        full_id = await resolve_batch(b.client, b.prefix, batch_id)
        return full_id, await b.retry(full_id)

    full_id, n = _run(ctx, body)
    click.echo(f"retrying {n} job(s) of {full_id}")


@batch.command("prune")
@click.option(
    "--finished-older-than", "older", default="24h", show_default=True, help="Age of the finish (90s, 15m, 24h, 7d)."
)
@click.pass_context
def batch_prune(ctx: click.Context, older: str) -> None:
    """Delete the records of batches that finished longer ago than the given age."""
    seconds = parse_duration(older)
    n = _run(ctx, lambda b: b.prune(seconds))
    click.echo(f"pruned {n} batch(es)")
