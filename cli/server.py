"""``evalharness server``: the embedded Redis server."""

from __future__ import annotations

import click

from evalharness.core.config import load_config, resolve_state_dir
from evalharness.core.embedded import EmbeddedServer
from evalharness.core.errors import EvalHarnessError

from .common import handle_errors

# -- server -------------------------------------------------------------------------------


@click.group()
def server() -> None:
    """The embedded Redis server (a private Valkey/Redis on a unix socket)."""


def _embedded(ctx: click.Context) -> EmbeddedServer:
    config = load_config(ctx.find_root().obj.get("config"))
    return EmbeddedServer(resolve_state_dir(config))


@server.command("start")
@click.pass_context
@handle_errors
def server_start(ctx: click.Context) -> None:
    """Start the embedded server (or reuse the running one) and print its URL."""
    srv = _embedded(ctx)
    url = srv.ensure()
    click.echo(url)


@server.command("stop")
@click.pass_context
@handle_errors
def server_stop(ctx: click.Context) -> None:
    """Stop the embedded server; its data stays on disk (append-only file)."""
    srv = _embedded(ctx)
    if not srv.is_running():
        click.echo("the embedded server is not running")
        return
    srv.stop()
    click.echo("stopped")


@server.command("status")
@click.pass_context
@handle_errors
def server_status(ctx: click.Context) -> None:
    """Say whether the embedded server runs, which server binary wrote its data (the one later
    starts keep using) and which binary the next start uses; exit 0 when it runs, 1 when not."""
    srv = _embedded(ctx)
    running = srv.is_running()
    try:
        recorded = srv.recorded_binary()
        written_by = recorded.describe() if recorded else "none yet (the first start records it)"
    except EvalHarnessError as exc:
        written_by = f"unreadable ({exc})"
    try:
        binary = srv.resolve_binary().describe()
    except EvalHarnessError as exc:
        binary = f"none usable ({exc})"
    click.echo(f"state directory: {srv.state_dir}\ndata written by: {written_by}\nbinary: {binary}")
    click.echo(f"running: pid {srv.pid()}, {srv.url}" if running else "not running")
    raise SystemExit(0 if running else 1)
