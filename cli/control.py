"""Remote control of every ``evalharnessd`` on one Redis: pause, continue, terminate, restart,
scale, and the supervisors table; ``pause``/``continue --queue`` pause a queue itself."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

import click
from rich.table import Table

from evalharness.core.admin import add_action_event
from evalharness.core.config import validate_name
from evalharness.core.connection import async_client
from evalharness.core.errors import ConfigError, EvalHarnessError
from evalharness.core.queue import known_queues
from evalharness.core.queue_ops import QueueOps
from evalharness.core.telemetry import MASTER_STALE, masters_key
from evalharness.daemon.master import control_key

from .common import settings_from, table_console

COMMAND_TTL = 300  # a command waits this long for a master that is restarting


async def _masters(url: str, prefix: str) -> list[dict[str, Any]]:
    client = async_client(url)
    try:
        raw = await client.hgetall(masters_key(prefix))
    finally:
        await client.aclose()
    now = time.time()
    out = []
    for item in raw.values():
        try:
            m = json.loads(item)
        except ValueError:
            continue
        if now - float(m.get("heartbeat_at", 0)) <= MASTER_STALE:
            m["heartbeat_age"] = now - float(m["heartbeat_at"])
            out.append(m)
    return sorted(out, key=lambda m: str(m["name"]))


def _send(ctx: click.Context, action: str, master: str | None, supervisor: str | None, **extra: Any) -> None:
    settings = settings_from(ctx)

    async def main() -> list[str]:
        masters = await _masters(settings.redis_url, settings.prefix)
        targets = [m for m in masters if master in (None, m["name"])]
        if supervisor is not None:
            targets = [m for m in targets if any(s["name"] == supervisor for s in m.get("supervisors", []))]
        if not targets:
            what = f"master {master!r}" if master else "master"
            if supervisor:
                what += f" with a supervisor {supervisor!r}"
            raise EvalHarnessError(f"no running {what} on this Redis (evalharness supervisors lists them)")
        cmd = json.dumps(
            {
                "action": action,
                "supervisor": supervisor,
                "from": f"{socket.gethostname()}:{os.getpid()}",
                "at": time.time(),
                **extra,
            }
        )
        client = async_client(settings.redis_url)
        sender = json.loads(cmd)["from"]
        try:
            async with client.pipeline(transaction=False) as pipe:
                for m in targets:
                    pipe.rpush(control_key(settings.prefix, m["name"]), cmd)
                    pipe.expire(control_key(settings.prefix, m["name"]), COMMAND_TTL)
                    # the event the console's action leaves (core/admin.py master_command)
                    subject = f"{m['name']}/{supervisor}" if supervisor else m["name"]
                    message = f"{action} sent to {subject} by {sender}"
                    add_action_event(pipe, settings.prefix, f"master_{action}", subject, message, master=m["name"])
                await pipe.execute()
        finally:
            await client.aclose()
        return [m["name"] for m in targets]

    names = asyncio.run(main())
    click.echo(f"{action}: sent to {', '.join(names)}")


master_option = click.option("--master", help="Only this master (default: every master on this Redis).")
supervisor_option = click.option("--supervisor", help="Only this supervisor.")
queue_option = click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="QUEUE",
    help="Pause/continue this queue, for every worker on every host, instead of masters (repeatable).",
)


def _switch_queues(
    ctx: click.Context, action: str, queues: tuple[str, ...], master: str | None, supervisor: str | None
) -> None:
    """Pause or continue queues through their flag keys; prints one line per queue."""
    if master is not None or supervisor is not None:
        raise click.UsageError("--queue pauses a queue everywhere; it does not combine with --master or --supervisor")
    for name in queues:
        try:
            validate_name("queue", name)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--queue") from None
    settings = settings_from(ctx)
    by = f"{socket.gethostname()}:{os.getpid()}"

    async def main() -> list[str]:
        client = async_client(settings.redis_url)
        try:
            ops = QueueOps(client, settings.prefix)
            known = await known_queues(client, settings.prefix)
            states = await ops.states(list(queues))
            unknown = [q for q in queues if q not in known and not (action == "continue" and states[q].paused)]
            if unknown:
                names = ", ".join(known) if known else "none"
                raise EvalHarnessError(
                    f"--queue: no queue named {', '.join(map(repr, unknown))} (known queues: {names}); nothing was "
                    f"{action}d"
                )
            out = []
            for q in dict.fromkeys(queues):
                result = await (ops.pause(q, by) if action == "pause" else ops.resume(q, by))
                out.append(result.message)
            return out
        finally:
            await client.aclose()

    for line in asyncio.run(main()):
        click.echo(line)


@click.command()
@master_option
@supervisor_option
@queue_option
@click.pass_context
def pause(ctx: click.Context, master: str | None, supervisor: str | None, queues: tuple[str, ...]) -> None:
    """Pause workers: running jobs finish, no new job starts (like SIGUSR2 to evalharnessd).

    With --queue QUEUE: pause that queue instead, on every host at once (also for workers
    started later): dispatches still land, no worker takes its jobs, running ones finish;
    workers serving other queues too go on with those.  `evalharness continue --queue QUEUE`
    undoes it; `evalharness status` marks the queue "(paused)".

    \b
    Exit status with --queue: 0 done (also when already paused); 2 a queue not
    known on this Redis (nothing is paused) or a bad option.
    """
    if queues:
        _switch_queues(ctx, "pause", queues, master, supervisor)
        return
    _send(ctx, "pause", master, supervisor)


@click.command("continue")
@master_option
@supervisor_option
@queue_option
@click.pass_context
def continue_(ctx: click.Context, master: str | None, supervisor: str | None, queues: tuple[str, ...]) -> None:
    """Let paused workers take jobs again (like SIGCONT to evalharnessd).

    With --queue QUEUE: continue a queue paused with `pause --queue`; idle workers wake at once.
    """
    if queues:
        _switch_queues(ctx, "continue", queues, master, supervisor)
        return
    _send(ctx, "continue", master, supervisor)


@click.command()
@master_option
@click.pass_context
def terminate(ctx: click.Context, master: str | None) -> None:
    """Stop masters gracefully: in-flight jobs finish within their grace period (like SIGTERM)."""
    _send(ctx, "terminate", master, None)


@click.command()
@master_option
@click.pass_context
def restart(ctx: click.Context, master: str | None) -> None:
    """Replace every worker gracefully with a freshly read configuration (like SIGUSR1)."""
    _send(ctx, "restart", master, None)


@click.command()
@click.argument("supervisor")
@click.argument("queue")
@click.argument("processes", required=False, type=click.IntRange(min=0))
@click.option("--reset", is_flag=True, help="Drop the override: the balancer sizes the pool again.")
@master_option
@click.pass_context
def scale(
    ctx: click.Context, supervisor: str, queue: str, processes: int | None, reset: bool, master: str | None
) -> None:
    """Run PROCESSES workers for QUEUE in SUPERVISOR until --reset or a restart."""
    if (processes is None) != reset:
        raise click.UsageError("give PROCESSES, or --reset")
    _send(ctx, "scale", master, supervisor, queue=queue, processes=processes)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def supervisors(ctx: click.Context, as_json: bool) -> None:
    """Every master and supervisor on this Redis: pid, status, queues, processes, balance, and the
    pool sizes fixed by `evalharness scale` (override)."""
    settings = settings_from(ctx)
    masters = asyncio.run(_masters(settings.redis_url, settings.prefix))
    if as_json:
        click.echo(json.dumps(masters, indent=2))
        return
    if not masters:
        click.echo("no evalharnessd running on this Redis")
        raise SystemExit(2)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("master", "supervisor", "pid", "status", "queues", "processes", "balance", "override"):
        table.add_column(col, no_wrap=col != "queues")
    for m in masters:
        for s in m.get("supervisors", []):
            per = s.get("per_queue") or {}
            procs = ", ".join(f"{q}={n}" for q, n in per.items()) if per else str(s.get("processes", 0))
            # a pool `evalharness scale` (or the console's +/-) fixed: "judge=6", until --reset
            overrides = ", ".join(f"{q}={n}" for q, n in (s.get("overrides") or {}).items())
            table.add_row(
                m["name"],
                s["name"],
                str(m["pid"]),
                s.get("status", m["status"]),
                ",".join(s["queues"]),
                procs,
                str(s.get("balance", "off")),
                overrides,
            )
    table_console().print(table)
