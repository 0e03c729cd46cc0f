"""``evalharness failed``: the failed-job store — list, show, retry, forget, flush."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from evalharness.core.admin import ActionResult, Admin, FailedFilter
from evalharness.core.config import validate_name
from evalharness.core.connection import async_client
from evalharness.core.ids import abbreviate, failed_job_ids, resolve_failed_job
from evalharness.core.queue import Queue

from .common import settings_from, table_console

T = TypeVar("T")


def _run(ctx: click.Context, body: Callable[[Queue], Awaitable[T]]) -> T:
    settings = settings_from(ctx)

    async def main() -> T:
        client = async_client(settings.redis_url)
        try:
            return await body(Queue(client, settings.prefix))
        finally:
            await client.aclose()

    return asyncio.run(main())


def _when(ms: Any) -> str:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return "-"


async def _records(q: Queue, queues: tuple[str, ...], tags: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
    names = list(queues) or await q.known_queues()
    out: list[dict[str, Any]] = []
    for name in names:
        ids = await q.failed_ids(name)
        if not ids:
            continue
        keys = q.keys(name)
        async with q.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(keys.job(job_id))
            rows = await pipe.execute()
        for job_id, rec in zip(ids, rows, strict=True):
            if not rec:
                continue
            out.append(_record(name, job_id, rec))
    if tags:
        out = [r for r in out if set(tags) <= set(r["tags"])]
    out.sort(key=lambda r: -int(r["failed_at"] or 0))
    return out[:limit] if limit else out


def _record(queue: str, job_id: str, rec: dict[str, str]) -> dict[str, Any]:
    env = json.loads(rec.get("data") or "{}")
    failure = json.loads(rec.get("failure") or "{}")
    return {
        "id": job_id,
        "queue": queue,
        "name": env.get("name"),
        # the failure record carries the payload with the job's redacted keys masked
        "payload": failure.get("payload", env.get("payload")),
        "tags": env.get("tags") or [],
        "batch": env.get("batch"),
        "tenant": env.get("tenant"),
        "kind": failure.get("kind"),
        "exception_type": failure.get("exception_type"),
        "message": failure.get("message"),
        "reason": failure.get("reason"),
        "traceback": failure.get("traceback"),
        "attempts": int(rec.get("attempts") or 0),
        "releases": int(rec.get("releases") or 0),
        "exceptions": int(rec.get("exceptions") or 0),
        "enqueued_at": env.get("enqueued_at"),
        "failed_at": int(rec.get("failed_at") or 0),
        "checkpoint": json.loads(rec["checkpoint"]) if rec.get("checkpoint") else None,
        "retry_of": env.get("retry_of"),
        "retried_by": rec.get("retried_by"),
    }


async def _find(q: Queue, job_id: str, queues: tuple[str, ...]) -> tuple[str, str]:
    """(queue, full id) of the failed job named by ``job_id``: the id or a unique prefix of it."""
    return await resolve_failed_job(q.client, q.prefix, job_id, queues)


def _check_queues(queues: tuple[str, ...]) -> None:
    for name in queues:
        validate_name("queue", name)


queue_option = click.option("--queue", "queues", multiple=True, help="Only this queue; repeat for several.")
tag_option = click.option("--tag", "tags", multiple=True, help="Only jobs with this tag; repeat to require several.")


def facet_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--exception / --batch / --name: exact filters served by the failed-job indexes (no scan)."""
    func = click.option("--name", "job_name", help="Only jobs with this job name (indexed).")(func)
    func = click.option("--batch", "batch_id", help="Only jobs of this batch (indexed).")(func)
    func = click.option(
        "--exception",
        "exception",
        help=(
            "Only jobs that failed with this exception class, e.g. TimeoutError (indexed; the failure kind for "
            "failures without one, e.g. lost)."
        ),
    )(func)
    return func


def _facet_filter(
    queues: tuple[str, ...], exception: str | None, batch_id: str | None, job_name: str | None
) -> FailedFilter:
    if len(queues) > 1:
        raise click.UsageError("--exception/--batch/--name/--all-matching take at most one --queue")
    return FailedFilter(queue=queues[0] if queues else None, batch=batch_id, exception=exception, name=job_name)


async def _indexed_records(q: Queue, flt: FailedFilter, tags: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
    """Records of the failed jobs matching ``flt``, newest first, read through the indexes."""
    admin = Admin(q.client, q.prefix)
    total = await admin.failed_count(flt)
    page = await admin.failed_page(flt, 0, total if not limit or tags else limit)
    out: list[dict[str, Any]] = []
    for row in page.rows:
        rec = _record(row.queue, row.id, await q.client.hgetall(q.keys(row.queue).job(row.id)))
        if set(tags) <= set(rec["tags"]):
            out.append(rec)
    return out[:limit] if limit else out


@click.group()
def failed() -> None:
    """The failed-job store: jobs that used up their tries (kept 7 days).

    A JOB_ID is a whole id or a unique prefix of one (at least 4 characters), as `failed list`
    shows them; a prefix that several ids start with is refused (exit 2), listing them."""


@failed.command("list")
@queue_option
@tag_option
@facet_options
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="Newest N (0: all).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_context
def failed_list(
    ctx: click.Context,
    queues: tuple[str, ...],
    tags: tuple[str, ...],
    exception: str | None,
    batch_id: str | None,
    job_name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List failed jobs, newest first.  --exception, --batch and --name combine (and with
    --queue and --tag)."""
    _check_queues(queues)
    flt = _facet_filter(queues, exception, batch_id, job_name) if exception or batch_id or job_name else None

    async def body(q: Queue) -> tuple[list[dict[str, Any]], list[str]]:
        found = await (_records(q, queues, tags, limit) if flt is None else _indexed_records(q, flt, tags, limit))
        return found, list(await failed_job_ids(q.client, q.prefix))

    rows, every_id = _run(ctx, body)
    if as_json:
        for row in rows:
            click.echo(json.dumps({k: v for k, v in row.items() if k != "traceback"}))
        return
    if not rows:
        click.echo("no failed jobs")
        return
    console = table_console()
    console.print(failed_table(rows, abbreviate([r["id"] for r in rows], among=every_id), console.width))


def failed_table(rows: list[dict[str, Any]], short: dict[str, str], width: int) -> Table:
    """The ``failed list`` table.  Ids are unique prefixes (any command takes them), never cut.
    Below 120 columns the message keeps the room: a queue or job name that every row shares moves
    to the title, the failure kind joins the message, and the time loses its year and seconds."""
    wide = width >= 120
    queues = {r["queue"] for r in rows}
    names = {str(r["name"]) for r in rows}
    show_queue = wide or len(queues) > 1
    show_name = wide or len(names) > 1
    title = None
    if not (show_queue and show_name):
        title = (
            "failed "
            + ("jobs" if show_name else f"{next(iter(names))} jobs")
            + ("" if show_queue else f" on queue {next(iter(queues))}")
        )
    table = Table(box=None, header_style="bold", pad_edge=False, title=title, title_justify="left")
    table.add_column("id", no_wrap=True, min_width=max(len(v) for v in short.values()))
    if show_queue:
        table.add_column("queue", overflow="fold")
    if show_name:
        table.add_column("job", overflow="fold", max_width=None if wide else 24)
    if wide:
        table.add_column("kind", no_wrap=True)
    table.add_column("message", overflow="fold", ratio=1, min_width=20)
    table.add_column("tries", no_wrap=True, justify="right")
    table.add_column("failed at (UTC)" if wide else "failed (UTC)", no_wrap=True)
    for r in rows:
        lines = str(r["message"] or "").strip().splitlines()
        message = lines[0][:200] if lines else ""
        if not wide:
            what = r["exception_type"] or r["kind"]
            message = f"{what}: {message}" if what and message else (what or message)
        cells = [short.get(r["id"], r["id"])]
        if show_queue:
            cells.append(r["queue"])
        if show_name:
            cells.append(str(r["name"]))
        if wide:
            cells.append(str(r["kind"]))
        cells += [
            message,
            str(r["attempts"] - r["releases"]),
            _when(r["failed_at"]) if wide else _when(r["failed_at"])[5:16],
        ]
        table.add_row(*(Text(c) for c in cells))
    return table


@failed.command("show")
@click.argument("job_id")
@queue_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def failed_show(ctx: click.Context, job_id: str, queues: tuple[str, ...], as_json: bool) -> None:
    """Everything recorded about one failed job: payload, error, traceback, checkpoint."""
    _check_queues(queues)

    async def body(q: Queue) -> dict[str, Any]:
        name, full_id = await _find(q, job_id, queues)
        return _record(name, full_id, await q.client.hgetall(q.keys(name).job(full_id)))

    rec = _run(ctx, body)
    if as_json:
        click.echo(json.dumps(rec, indent=2))
        return
    console = table_console()
    for key in (
        "id",
        "queue",
        "name",
        "kind",
        "exception_type",
        "message",
        "reason",
        "attempts",
        "releases",
        "tags",
        "batch",
        "tenant",
        "retry_of",
    ):
        console.print(f"[bold]{key:15}[/] {rec[key]}", markup=True, highlight=False)
    console.print(f"[bold]{'failed at':15}[/] {_when(rec['failed_at'])} UTC")
    console.print(f"[bold]{'payload':15}[/] {json.dumps(rec['payload'])}", highlight=False)
    console.print(f"[bold]{'checkpoint':15}[/] {json.dumps(rec['checkpoint'])}", highlight=False)
    if rec["traceback"]:
        console.print("[bold]traceback[/]")
        console.print(rec["traceback"], markup=False, highlight=False)


def _act_on_matching(
    ctx: click.Context,
    retry: bool,
    queues: tuple[str, ...],
    tags: tuple[str, ...],
    exception: str | None,
    batch_id: str | None,
    job_name: str | None,
    as_json: bool,
) -> None:
    if tags:
        raise click.UsageError(
            "--tag is not an index: use --all --tag, or --all-matching with --exception/--batch/--name/--queue"
        )
    flt = _facet_filter(queues, exception, batch_id, job_name)

    async def body(q: Queue) -> ActionResult:
        admin = Admin(q.client, q.prefix)
        return await (admin.retry_matching(flt) if retry else admin.forget_matching(flt))

    result = _run(ctx, body)
    click.echo(json.dumps(result.to_json()) if as_json else result.message)


@failed.command("retry")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed job (with --queue/--tag: those).")
@click.option(
    "--all-matching",
    "all_matching",
    is_flag=True,
    help="Retry every failed job matching --exception/--batch/--name/--queue, through the indexes; prints the count.",
)
@queue_option
@tag_option
@facet_options
@click.option("--json", "as_json", is_flag=True, help="With --all-matching: print the result as JSON.")
@click.pass_context
def failed_retry(
    ctx: click.Context,
    job_ids: tuple[str, ...],
    retry_all: bool,
    all_matching: bool,
    queues: tuple[str, ...],
    tags: tuple[str, ...],
    exception: str | None,
    batch_id: str | None,
    job_name: str | None,
    as_json: bool,
) -> None:
    """Dispatch failed jobs again under new ids (the new job records which one it retries)."""
    _check_queues(queues)
    if sum((bool(job_ids), retry_all, all_matching)) != 1:
        raise click.UsageError("give job ids, or --all, or --all-matching")
    if all_matching:
        if not (queues or tags or exception or batch_id or job_name):
            raise click.UsageError(
                "--all-matching needs --exception, --batch, --name or --queue (`--all` retries every failed job)"
            )
        _act_on_matching(ctx, True, queues, tags, exception, batch_id, job_name, as_json)
        return
    if exception or batch_id or job_name:
        raise click.UsageError("--exception/--batch/--name go with --all-matching")

    async def body(q: Queue) -> list[tuple[str, str | None]]:
        if retry_all:
            targets = [(r["queue"], r["id"]) for r in await _records(q, queues, tags, 0)]
        else:
            targets = [await _find(q, job_id, queues) for job_id in job_ids]
        return [(old, await q.retry_failed(name, old)) for name, old in targets]

    results = _run(ctx, body)
    for old, new in results:
        click.echo(f"{old} -> {new}" if new else f"{old}: no longer in the failed store")
    if not results:
        click.echo("no failed jobs to retry")


@failed.command("forget")
@click.argument("job_ids", nargs=-1)
@click.option(
    "--all-matching",
    "all_matching",
    is_flag=True,
    help="Forget every failed job matching --exception/--batch/--name/--queue, through the indexes; prints the count.",
)
@queue_option
@facet_options
@click.option("--json", "as_json", is_flag=True, help="With --all-matching: print the result as JSON.")
@click.pass_context
def failed_forget(
    ctx: click.Context,
    job_ids: tuple[str, ...],
    all_matching: bool,
    queues: tuple[str, ...],
    exception: str | None,
    batch_id: str | None,
    job_name: str | None,
    as_json: bool,
) -> None:
    """Delete failed jobs from the store."""
    _check_queues(queues)
    if bool(job_ids) == all_matching:
        raise click.UsageError("give job ids, or --all-matching")
    if all_matching:
        if not (queues or exception or batch_id or job_name):
            raise click.UsageError(
                "--all-matching needs --exception, --batch, --name or --queue (`failed flush` deletes everything)"
            )
        _act_on_matching(ctx, False, queues, (), exception, batch_id, job_name, as_json)
        return

    async def body(q: Queue) -> int:
        n = 0
        for job_id in job_ids:
            n += await q.forget_failed(*await _find(q, job_id, queues))
        return n

    click.echo(f"forgot {_run(ctx, body)} job(s)")


@failed.command("flush")
@queue_option
@tag_option
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def failed_flush(ctx: click.Context, queues: tuple[str, ...], tags: tuple[str, ...], yes: bool) -> None:
    """Delete every failed job (with --queue/--tag: those)."""
    _check_queues(queues)
    if not yes:
        click.confirm("Delete these failed jobs for good?", abort=True)

    async def body(q: Queue) -> int:
        n = 0
        for r in await _records(q, queues, tags, 0):
            n += await q.forget_failed(r["queue"], r["id"])
        return n

    click.echo(f"flushed {_run(ctx, body)} failed job(s)")
