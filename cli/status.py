"""``evalharness status`` (the same snapshot the console shows, in any terminal) and
``evalharness metrics --serve`` (a Prometheus exposition of it)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from evalharness.core.connection import async_client
from evalharness.core.format import (
    format_count,
    format_duration,
    format_est_clear,
    format_rate,
    format_seconds,
)
from evalharness.core.telemetry import collect_snapshot

from .common import settings_from

STATUS_CODES = {"running": 0, "paused": 1, "inactive": 2}


async def _snapshot(url: str, prefix: str) -> dict[str, Any]:
    client = async_client(url)
    try:
        return await collect_snapshot(client, prefix)
    finally:
        await client.aclose()


@dataclass(frozen=True)
class StatusColumn:
    """One column of the queue table.  When the terminal is too narrow the columns with the
    highest ``drop`` go first; the queue name (0) never does, and is never shortened."""

    header: str
    drop: int
    cell: Callable[[dict[str, Any]], str]


def _failed_past_hour(q: dict[str, Any]) -> int | None:
    past = q.get("past_hour") or {}
    value = past.get("failed")
    return None if value is None else int(value)


PAUSED_MARK = " (paused)"  # after the queue's name, which is never left out on a narrow terminal

STATUS_COLUMNS: tuple[StatusColumn, ...] = (
    StatusColumn("queue", 0, lambda q: str(q["name"]) + (PAUSED_MARK if q.get("paused") else "")),
    StatusColumn("ready", 1, lambda q: format_count(q["ready"])),
    # ready jobs held back by their batch's max_running (not in ready); `status --json` output
    # saved by an older version has no count
    StatusColumn("held", 10, lambda q: format_count(q.get("held", 0))),
    StatusColumn("delayed", 8, lambda q: format_count(q["delayed"])),
    StatusColumn("running", 2, lambda q: format_count(q["reserved"])),
    StatusColumn("oldest wait", 3, lambda q: format_duration(q["oldest_wait"])),
    StatusColumn("est. clear", 5, lambda q: format_est_clear(q["ready"], q["est_clear"])),
    StatusColumn("procs", 6, lambda q: format_count(q["processes"])),
    StatusColumn("jobs/min", 4, lambda q: format_rate(q["jobs_per_minute"])),
    StatusColumn("p95", 9, lambda q: format_duration(q["runtime"]["p95"])),
    StatusColumn("failed 1h", 7, lambda q: format_count(_failed_past_hour(q))),
    StatusColumn("failed (total)", 11, lambda q: format_count(q.get("failed_total", q.get("failed")))),
)
COLUMN_GAP = 2  # rich's padding of one space on each side of a cell, without the outer edges


def fit_columns(widths: Sequence[int], drops: Sequence[int], width: int) -> list[int]:
    """Indexes of the columns to show in ``width`` characters: all of them when they fit, else
    without the most droppable ones first.  Column 0 always stays."""
    shown = list(range(len(widths)))

    def total() -> int:
        return sum(widths[i] for i in shown) + COLUMN_GAP * (len(shown) - 1)

    for i in sorted(range(1, len(widths)), key=lambda i: -drops[i]):
        if total() <= width:
            break
        shown.remove(i)
    return shown


def _lines(parts: Sequence[Text], width: int) -> Text:
    """``parts`` on as few lines as fit in ``width``, each part whole."""
    out = Text()
    used = 0
    for part in parts:
        gap = 3 if used else 0
        if used and used + gap + len(part) > width:
            out.append("\n")
            used, gap = 0, 0
        out.append(" " * gap)
        out.append_text(part)
        used += gap + len(part)
    return out


def render(snapshot: dict[str, Any], width: int = 80) -> Group:
    """The status screen for a terminal ``width`` characters wide."""
    o = snapshot["overview"]
    colour = {"running": "green", "paused": "yellow", "inactive": "red"}.get(o["status"], "white")
    wait = o["max_wait"]
    failed_hour = o.get("failed_past_hour")
    if failed_hour is None:
        failed_hour = sum(_failed_past_hour(q) or 0 for q in snapshot["queues"])
    head = _lines(
        [
            Text.assemble(("status ", "bold"), (o["status"], f"bold {colour}")),
            Text(f"jobs/min {format_rate(o['jobs_per_minute'])}"),
            Text(f"past hour {format_count(o['jobs_past_hour'])}"),
            Text(f"failed 1h {format_count(failed_hour)}"),
            Text(f"failed (store) {format_count(o['failed_past_7_days'])}"),
            Text(f"processes {format_count(o['processes'])}"),
            Text(f"masters {format_count(o['masters'])}"),
            Text(f"max wait {format_duration(wait['seconds'])}" + (f" ({wait['queue']})" if wait["queue"] else "")),
        ],
        width,
    )
    cells = [[c.cell(q) for c in STATUS_COLUMNS] for q in snapshot["queues"]]
    widths = [max([len(c.header), *(len(row[i]) for row in cells)]) for i, c in enumerate(STATUS_COLUMNS)]
    shown = fit_columns(widths, [c.drop for c in STATUS_COLUMNS], width)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i in shown:
        if i == 0:
            # a queue's name is what tells it apart: never cut it (fold it only if nothing else fits)
            table.add_column(
                STATUS_COLUMNS[i].header, justify="left", no_wrap=True, min_width=widths[0], overflow="fold"
            )
        else:
            table.add_column(STATUS_COLUMNS[i].header, justify="right", no_wrap=True)
    for row in cells:
        table.add_row(*(Text(row[i]) for i in shown))
    parts: list[Any] = [head, table]
    for m in snapshot["masters"]:
        sups = ", ".join(f"{s['name']}: {s['processes']} proc" for s in m.get("supervisors", []))
        parts.append(
            Text(
                f"master {m['name']} pid {m['pid']} {m['status']} (heartbeat {format_seconds(m['heartbeat_age'])} "
                f"ago) {sups}",
                style="dim",
            )
        )
    for lim in snapshot.get("limiters", []):
        parts.append(Text(limiter_line(lim), style="dim"))
    return Group(*parts)


def limiter_line(lim: dict[str, Any]) -> str:
    """One adaptive limiter: its limit now, its bounds, the calls holding slots and its past hour."""
    return (
        f"limiter {lim['name']} ({lim['key']}): limit {lim['limit']} ({lim['floor']}–{lim['ceiling']}), "
        f"{lim['in_flight']} in flight, {format_count(lim.get('throttled_1h', 0))} throttled 1h, "
        f"{format_count(lim.get('decreases_1h', 0))} decrease(s) 1h"
    )


@click.command()
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the telemetry snapshot as JSON (one line per refresh with --watch)."
)
@click.pass_context
def status(ctx: click.Context, watch: bool, interval: float, as_json: bool) -> None:
    """Queues, workers and masters at a glance.

    Every "failed" names its window: failed 1h, failed (store) (jobs in the failed
    stores now: failed for good in the last 7 days, not retried or forgotten), failed (total).
    "held" counts ready jobs a batch's max_running holds back (they start as its running
    jobs end; "ready" leaves them out). Queue names are shown whole, a paused queue's
    followed by "(paused)" (evalharness pause --queue); a narrow terminal leaves out the
    least needed columns first.

    Adaptive limiters in use follow, one line each: the limit now, its floor and ceiling,
    the calls holding a slot, and the 429s and decreases of the past hour.

    Exit status (without --watch): 0 running, 1 paused, 2 inactive (no daemon and no worker).
    """
    settings = settings_from(ctx)
    snap = asyncio.run(_snapshot(settings.redis_url, settings.prefix))
    if not watch:
        if as_json:
            click.echo(json.dumps(snap))
        else:
            console = Console()
            console.print(render(snap, console.width))
        raise SystemExit(STATUS_CODES.get(snap["overview"]["status"], 2))
    try:
        if as_json:
            while True:
                click.echo(json.dumps(snap), nl=True)
                time.sleep(interval)
                snap = asyncio.run(_snapshot(settings.redis_url, settings.prefix))
        console = Console()
        with Live(render(snap, console.width), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                snap = asyncio.run(_snapshot(settings.redis_url, settings.prefix))
                live.update(render(snap, console.width), refresh=True)
    except KeyboardInterrupt:
        pass


class SnapshotCollector:
    """A Prometheus collector that reads one telemetry snapshot per scrape."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = asyncio.run(_snapshot(self.url, self.prefix))
        gauges = {
            "ready": ("evalharness_queue_ready", "Jobs ready to run"),
            "held": ("evalharness_queue_held", "Ready jobs held back by their batch's max_running (not in ready)"),
            "delayed": ("evalharness_queue_delayed", "Jobs waiting for their delay or backoff"),
            "reserved": ("evalharness_queue_in_flight", "Jobs running (reserved under a lease)"),
            "oldest_wait": ("evalharness_queue_oldest_wait_seconds", "Age of the oldest ready job"),
            "est_clear": ("evalharness_queue_estimated_clear_seconds", "Backlog x mean runtime / worker slots"),
            "processes": ("evalharness_queue_processes", "Worker processes serving the queue"),
            "jobs_per_minute": ("evalharness_queue_jobs_per_minute", "Jobs finished in the last minute"),
        }
        counters = {
            "completed": ("evalharness_queue_completed", "Jobs completed"),
            "failed": ("evalharness_queue_failed", "Jobs failed for good"),
            "timeouts": ("evalharness_queue_timeouts", "Attempts that timed out"),
            "retries": ("evalharness_queue_retries", "Retries after an exception"),
            "rate_limited": ("evalharness_queue_rate_limited", "Releases after a rate-limit signal"),
        }
        for field, (name, doc) in gauges.items():
            g = GaugeMetricFamily(name, doc, labels=["queue"])
            for q in snap["queues"]:
                if q[field] is not None:
                    g.add_metric([q["name"]], float(q[field]))
            yield g
        for field, (name, doc) in counters.items():
            c = CounterMetricFamily(name, doc, labels=["queue"])
            for q in snap["queues"]:
                c.add_metric([q["name"]], float(q[field]))
            yield c
        rt = GaugeMetricFamily(
            "evalharness_queue_runtime_seconds",
            "Runtime quantiles over the last 5 minutes",
            labels=["queue", "quantile"],
        )
        for q in snap["queues"]:
            for quant, key in (("0.5", "p50"), ("0.95", "p95"), ("1", "max")):
                if q["runtime"][key] is not None:
                    rt.add_metric([q["name"], quant], float(q["runtime"][key]))
        yield rt
        paused = GaugeMetricFamily(
            "evalharness_queue_paused", "1 while the queue is paused (evalharness pause --queue)", labels=["queue"]
        )
        for q in snap["queues"]:
            paused.add_metric([q["name"]], 1.0 if q.get("paused") else 0.0)
        yield paused
        limiters = snap.get("limiters", [])
        for field, name, doc in (
            ("limit", "evalharness_limiter_limit", "Calls an adaptive limiter allows in flight now"),
            ("in_flight", "evalharness_limiter_in_flight", "Calls holding a slot of the limiter"),
            ("floor", "evalharness_limiter_floor", "The fewest slots the limiter goes down to"),
            ("ceiling", "evalharness_limiter_ceiling", "The most slots the limiter goes up to"),
            ("throttled_1h", "evalharness_limiter_throttled_past_hour", "Calls answered 429 in the last hour"),
            ("decreases_1h", "evalharness_limiter_decreases_past_hour", "Times the limit was lowered in the last hour"),
        ):
            g = GaugeMetricFamily(name, doc, labels=["name", "key", "kind"])
            for lim in limiters:
                g.add_metric([str(lim["name"]), str(lim["key"]), str(lim["kind"])], float(lim.get(field) or 0))
            yield g
        up = GaugeMetricFamily("evalharness_masters", "Live evalharnessd masters")
        up.add_metric([], float(snap["overview"]["masters"]))
        yield up


@click.command()
@click.option(
    "--serve",
    "port",
    type=click.IntRange(min=0, max=65535),
    required=True,
    help="Port for the HTTP exposition (0: any free port).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback unless you mean otherwise."
)
@click.pass_context
def metrics(ctx: click.Context, port: int, host: str) -> None:
    """Serve telemetry as Prometheus metrics on http://HOST:PORT/metrics until Ctrl-C."""
    from prometheus_client import start_http_server
    from prometheus_client.core import CollectorRegistry

    settings = settings_from(ctx)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(settings.redis_url, settings.prefix))  # type: ignore[arg-type]
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:  # the port is taken, the address is not this host's or does not resolve
        why = exc.strerror or str(exc)
        raise click.UsageError(f"--serve {port} --host {host}: cannot listen there ({why})") from None
    click.echo(f"serving http://{host}:{server.server_port}/metrics", err=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
