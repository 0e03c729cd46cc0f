"""``evalharness status`` (the same snapshot the console shows, in any terminal) and
``evalharness metrics --serve`` (a Prometheus exposition of it)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from evalharness.core.connection import async_client
from evalharness.core.telemetry import collect_snapshot, format_seconds

from .common import settings_from

STATUS_CODES = {"running": 0, "paused": 1, "inactive": 2}


async def _snapshot(url: str, prefix: str) -> dict[str, Any]:
    client = async_client(url)
    try:
        return await collect_snapshot(client, prefix)
    finally:
        await client.aclose()


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


def render(snapshot: dict[str, Any]) -> Group:
    o = snapshot["overview"]
    colour = {"running": "green", "paused": "yellow", "inactive": "red"}.get(o["status"], "white")
    wait = o["max_wait"]
    head = Text.assemble(
        ("status ", "bold"), (o["status"], f"bold {colour}"),
        f"   jobs/min {o['jobs_per_minute']:,.0f}   past hour {o['jobs_past_hour']:,}"
        f"   failed 7d {o['failed_past_7_days']:,}   processes {o['processes']}   masters {o['masters']}",
        f"   max wait {format_seconds(wait['seconds'])}" + (f" ({wait['queue']})" if wait["queue"] else ""),
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("queue", "ready", "delayed", "running", "oldest wait", "est. clear", "procs", "jobs/min", "p95", "failed"):
        table.add_column(col, justify="left" if col == "queue" else "right", no_wrap=True)
    for q in snapshot["queues"]:
        table.add_row(
            q["name"], _n(q["ready"]), _n(q["delayed"]), _n(q["reserved"]), format_seconds(q["oldest_wait"]),
            format_seconds(q["est_clear"]), str(q["processes"]), f"{q['jobs_per_minute']:,.1f}",
            format_seconds(q["runtime"]["p95"]), _n(q["failed"]),
        )
    parts: list[Any] = [head, table]
    for m in snapshot["masters"]:
        sups = ", ".join(f"{s['name']}: {s['processes']} proc" for s in m.get("supervisors", []))
        parts.append(Text(f"master {m['name']} pid {m['pid']} {m['status']} (heartbeat {m['heartbeat_age']:.0f}s ago) {sups}", style="dim"))
    return Group(*parts)


@click.command()
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the telemetry snapshot as JSON (one line per refresh with --watch).")
@click.pass_context
def status(ctx: click.Context, watch: bool, interval: float, as_json: bool) -> None:
    """Queues, workers and masters at a glance.

    Exit status (without --watch): 0 running, 1 paused, 2 inactive (no daemon and no worker).
    """
    settings = settings_from(ctx)
    snap = asyncio.run(_snapshot(settings.redis_url, settings.prefix))
    if not watch:
        if as_json:
            click.echo(json.dumps(snap))
        else:
            Console().print(render(snap))
        raise SystemExit(STATUS_CODES.get(snap["overview"]["status"], 2))
    try:
        if as_json:
            while True:
                click.echo(json.dumps(snap), nl=True)
                time.sleep(interval)
                snap = asyncio.run(_snapshot(settings.redis_url, settings.prefix))
        with Live(render(snap), auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                snap = asyncio.run(_snapshot(settings.redis_url, settings.prefix))
                live.update(render(snap), refresh=True)
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
        rt = GaugeMetricFamily("evalharness_queue_runtime_seconds", "Runtime quantiles over the last 5 minutes", labels=["queue", "quantile"])
        for q in snap["queues"]:
            for quant, key in (("0.5", "p50"), ("0.95", "p95"), ("1", "max")):
                if q["runtime"][key] is not None:
                    rt.add_metric([q["name"], quant], float(q["runtime"][key]))
        yield rt
        up = GaugeMetricFamily("evalharness_masters", "Live evalharnessd masters")
        up.add_metric([], float(snap["overview"]["masters"]))
        yield up


@click.command()
@click.option("--serve", "port", type=click.IntRange(min=0, max=65535), required=True, help="Port for the HTTP exposition (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback unless you mean otherwise.")
@click.pass_context
def metrics(ctx: click.Context, port: int, host: str) -> None:
    """Serve telemetry as Prometheus metrics on http://HOST:PORT/metrics until Ctrl-C."""
    from prometheus_client import start_http_server
    from prometheus_client.core import CollectorRegistry

    settings = settings_from(ctx)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(settings.redis_url, settings.prefix))  # type: ignore[arg-type]
    server, thread = start_http_server(port, addr=host, registry=registry)
    click.echo(f"serving http://{host}:{server.server_port}/metrics", err=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
