"""``evalharness queue``: the queues a prefix knows; ``forget`` drops one nobody uses, ``clear``
removes a queue's ready jobs."""

from __future__ import annotations

import asyncio
import sys

import click

from evalharness.core.config import validate_name
from evalharness.core.connection import async_client
from evalharness.core.errors import ConfigError, EvalHarnessError
from evalharness.core.forget import ForgetOutcome, QueueForgetter, QueueUse
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import known_queues, pipe_ready_state
from evalharness.core.queue_ops import QueueOps

from .common import settings_from

EXIT_IN_USE = 1
EXIT_NOT_CONFIRMED = 1


@click.group()
def queue() -> None:
    """Queues: clear one's ready jobs, forget one that is no longer used."""


@queue.command()
@click.argument("name")
@click.pass_context
def forget(ctx: click.Context, name: str) -> None:
    """Forget queue NAME now: it leaves `status` and the console, and its counters are dropped.

    A queue with no jobs (ready, delayed, running or failed), no unfinished batch and no live
    workers is forgotten by the daemon by itself once unused for 24 hours (evalharnessd
    --forget-queues-after). Its finished batch records go with it. Dispatching to it again
    lists it again.

    \b
    Exit status: 0 forgotten; 1 still in use (jobs, batches or workers; nothing is changed);
    2 no such queue.
    """
    try:
        validate_name("queue", name)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    settings = settings_from(ctx)

    async def main() -> ForgetOutcome | list[str]:
        client = async_client(settings.redis_url)
        try:
            forgetter = QueueForgetter(client, settings.prefix)
            if not await forgetter.known(name):
                return await known_queues(client, settings.prefix)
            return await forgetter.forget(name)
        finally:
            await client.aclose()

    outcome = asyncio.run(main())
    if isinstance(outcome, list):
        known = ", ".join(outcome) if outcome else "none"
        raise EvalHarnessError(f"no queue named {name!r} (known queues: {known})")
    if outcome.use is QueueUse.FORGOTTEN:
        pruned = outcome.pruned_batches
        click.echo(
            f"forgot queue {name}"
            + (f" (and {pruned} finished batch record{'s' if pruned != 1 else ''})" if pruned else "")
        )
        return
    click.echo(
        f"error: queue {name!r} is still in use ({outcome.holding()}); nothing was forgotten. "
        f"Let its jobs and batches finish (or `evalharness failed flush --queue {name}`, "
        "`evalharness batch cancel`) and stop its workers first.",
        err=True,
    )
    raise SystemExit(EXIT_IN_USE)


@queue.command()
@click.argument("name")
@click.option(
    "--batch", metavar="BATCH", help="Only the ready jobs of this batch (and its delayed ones with --delayed)."
)
@click.option("--delayed", is_flag=True, help="Also remove delayed jobs (a delay or a retry backoff not yet due).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required when not on a terminal).")
@click.pass_context
def clear(ctx: click.Context, name: str, batch: str | None, delayed: bool, yes: bool) -> None:
    """Remove the ready jobs of queue NAME (only batch BATCH's with --batch) and print how many.

    One engine step, so no job is half removed. Running jobs finish; failed jobs stay (see
    `evalharness failed`); delayed jobs stay unless --delayed; batch callbacks stay. A removed
    job of a batch counts as cancelled and its batch is cancelled, as `evalharness batch cancel`
    does: its `finally` callback runs once nothing is pending and `evalharness batch retry` can
    queue the removed jobs again. Other jobs removed are gone. Writes a `queue_cleared` event.

    Asks for confirmation on a terminal; elsewhere it needs --yes.

    \b
    Exit status: 0 cleared (also when nothing was queued); 1 not confirmed;
    2 no such queue or batch.
    """
    try:
        validate_name("queue", name)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    settings = settings_from(ctx)

    async def counts() -> tuple[list[str], int, int, int]:
        client = async_client(settings.redis_url)
        try:
            k = QueueKeys(settings.prefix, name)
            async with client.pipeline(transaction=False) as pipe:
                pipe_ready_state(pipe, k)
                pipe.zcard(k.delayed)
                (startable, _, held), later = await pipe.execute()
            return await known_queues(client, settings.prefix), int(startable) + int(held), int(later), int(held)
        finally:
            await client.aclose()

    # every ready job, those a batch's max_running holds back (`held` in status) among them
    known, ready, later, held = asyncio.run(counts())
    if name not in known:
        raise EvalHarnessError(f"no queue named {name!r} (known queues: {', '.join(known) if known else 'none'})")
    if not yes:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            click.echo(
                f"error: `queue clear {name}` removes queued jobs; not on a terminal, so give --yes to confirm. "
                "Nothing was removed.",
                err=True,
            )
            raise SystemExit(EXIT_NOT_CONFIRMED)
        of_them = f" ({held} of them held by their batch's max_running)" if held else ""
        what = f"the ready jobs of batch {batch}" if batch else f"{ready} ready job(s){of_them}"
        if delayed:
            what += f" and {'its' if batch else str(later)} delayed job(s)"
        if not click.confirm(f"Remove {what} from queue {name}?", default=False):
            click.echo("nothing was removed", err=True)
            raise SystemExit(EXIT_NOT_CONFIRMED)

    async def main() -> str:
        client = async_client(settings.redis_url)
        try:
            return (await QueueOps(client, settings.prefix).clear(name, batch, delayed=delayed)).message
        finally:
            await client.aclose()

    click.echo(asyncio.run(main()))
