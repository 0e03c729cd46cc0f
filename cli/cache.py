"""``evalharness cache``: what the response cache holds, and clearing it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from evalharness.core.cache import cache_clear, cache_stats
from evalharness.core.connection import async_client

from .common import settings_from

T = TypeVar("T")


def _with_client(ctx: click.Context, work: Callable[[Any, str], Awaitable[T]]) -> T:
    settings = settings_from(ctx)

    async def main() -> T:
        client = async_client(settings.redis_url)
        try:
            return await work(client, settings.prefix)
        finally:
            await client.aclose()

    return asyncio.run(main())


@click.group()
def cache() -> None:
    """The response cache of `evalharness run --cache`: SUT outputs by SUT fingerprint and input."""


@cache.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """How many outputs the cache holds and their size."""
    info = _with_client(ctx, cache_stats)
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"{info['entries']} cached output(s), {info['bytes']} bytes")


@cache.command("clear")
@click.pass_context
def clear(ctx: click.Context) -> None:
    """Delete every cached output (the next --cache run calls the SUT for every sample)."""
    removed = _with_client(ctx, cache_clear)
    click.echo(f"cleared {removed} cached output(s)")
