"""``evalharness online status | trend``: what the online monitors recorded (docs/online.md)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from evalharness.core import online as online_core
from evalharness.core.connection import async_client

from .common import settings_from


@click.group()
def online() -> None:
    """Online monitoring: judged samples of a live application, their trend and drift alerts."""


def _when(at: float | None) -> str:
    return "—" if at is None else datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


@online.command("status")
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="MONITOR",
    help="A monitor ([online] name); repeat for several. Default: every monitor that recorded a score.",
)
@click.option(
    "--recent", type=click.IntRange(min=0, max=1000), default=5, show_default=True, help="Newest score entries to show."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document: {monitors: [...]}.")
@click.pass_context
def online_status(ctx: click.Context, names: tuple[str, ...], recent: int, as_json: bool) -> None:
    """Each monitor's rolling mean, alert state and counters.

    scored / passed: judged captures (passed: score >= pass_threshold);
    failed: judge calls that gave no score; dropped: captures the application
    could not hand over (Redis down), as reported once Redis was back; kept:
    score entries kept in Redis (capped at [online] keep).  The rolling mean
    is over the newest [online] window scores.

    \b
    Exit status: 0, or 1 when a monitor is alerting (its mean is below the
    threshold); 3 when Redis is unavailable.
    """
    settings = settings_from(ctx)

    async def load() -> list[dict[str, Any]]:
        client = async_client(settings.redis_url)
        try:
            chosen = list(names) or await online_core.monitors(client, settings.prefix)
            return [await online_core.status(client, settings.prefix, n, max(recent, 1)) for n in chosen]
        finally:
            await client.aclose()

    rows = asyncio.run(load())
    for row in rows:
        row["recent"] = row["recent"][:recent]
    if as_json:
        click.echo(json.dumps({"monitors": rows}, indent=2, ensure_ascii=False))
    else:
        console = Console()
        if not rows:
            console.print("no online monitor has recorded a score yet (docs/online.md)")
        table = Table(title="Online monitors", title_justify="left")
        for header in (
            "monitor",
            "mean",
            "window",
            "alert",
            "scored",
            "passed",
            "failed",
            "dropped",
            "kept",
            "last score",
        ):
            table.add_column(header)
        for r in rows:
            table.add_row(
                r["monitor"],
                _num(r["mean"]),
                str(r["samples"]),
                "ALERT" if r["alerting"] else "ok",
                str(r["scored"]),
                str(r["passed"]),
                str(r["failed"]),
                str(r["dropped"]),
                str(r["kept"]),
                _when(r["last_at"]),
            )
        if rows:
            console.print(table)
        for r in rows:
            for e in r["recent"]:
                what = (
                    _num(e.get("score"))
                    if e.get("score") is not None
                    else f"no score ({(e.get('error') or {}).get('kind', '?')})"
                )
                console.print(
                    f"  {r['monitor']}  {_when(e.get('at'))}  {what}  {e.get('reason') or ''}",
                    markup=False,
                    highlight=False,
                )
    raise SystemExit(1 if any(r["alerting"] for r in rows) else 0)


@online.command("trend")
@click.option("--name", default="default", show_default=True, metavar="MONITOR", help="The monitor ([online] name).")
@click.option(
    "--days", type=click.IntRange(min=1, max=365), default=30, show_default=True, help="Most recent days with scores."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document: {monitor, days: [...]}.")
@click.pass_context
def online_trend(ctx: click.Context, name: str, days: int, as_json: bool) -> None:
    """Per UTC day: judged captures, mean score and pass rate, oldest first."""
    settings = settings_from(ctx)

    async def load() -> list[dict[str, Any]]:
        client = async_client(settings.redis_url)
        try:
            return await online_core.trend(client, settings.prefix, name, days)
        finally:
            await client.aclose()

    rows = asyncio.run(load())
    if as_json:
        click.echo(json.dumps({"monitor": name, "days": rows}, indent=2))
        return
    table = Table(title=f"Online trend: {name}", title_justify="left")
    for header in ("date", "judged", "passed", "pass rate", "mean"):
        table.add_column(header)
    for r in rows:
        table.add_row(r["date"], str(r["total"]), str(r["passed"]), _num(r["pass_rate"]), _num(r["mean"]))
    Console().print(table if rows else f"no scores recorded for monitor {name!r}")
