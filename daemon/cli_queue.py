"""``evalharness queue``: the queues a prefix knows; ``forget`` drops one nobody uses."""

from __future__ import annotations

import asyncio

import click

from evalharness.core.config import validate_name
from evalharness.core.connection import async_client
from evalharness.core.errors import ConfigError, EvalHarnessError
from evalharness.core.forget import ForgetOutcome, QueueForgetter, QueueUse
from evalharness.core.queue import known_queues

from .common import settings_from

EXIT_IN_USE = 1


@click.group()
def queue() -> None:
    """Queues: forget one that is no longer used."""


@queue.command()
@click.argument("name")
@click.pass_context
def forget(ctx: click.Context, name: str) -> None:
    """Forget queue NAME now: it leaves `status` and the console, and its counters are dropped.

    A queue with no jobs (ready, delayed, running or failed), no batches and no live workers
    is forgotten by the daemon by itself once unused for 24 hours (evalharnessd
    --forget-queues-after). Dispatching to it again lists it again.

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
        click.echo(f"forgot queue {name}")
        return
    click.echo(
        f"error: queue {name!r} is still in use ({outcome.holding()}); nothing was forgotten. "
        f"Let its jobs finish (or `evalharness failed flush --queue {name}`, `evalharness batch prune`) "
        "and stop its workers first.",
        err=True,
    )
    raise SystemExit(EXIT_IN_USE)
