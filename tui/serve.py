"""``evalharness-tui --serve``: the same console in a browser, through textual-serve. Each page
that connects gets its own console process, started with the settings this command resolved;
the Redis URL goes to it in the environment, never on a command line others can read."""

from __future__ import annotations

import os
import shlex
import sys

import click

from evalharness.core.config import ENV_PREFIX, ENV_REDIS_URL

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8566
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def exposure_warning(host: str, port: int, read_only: bool) -> str | None:
    """What to say when the page can be opened from other machines, or None on loopback."""
    if is_loopback(host):
        return None
    if read_only:
        return (
            f"warning: serving the console on {host}:{port}: anyone who can reach it sees every queue, "
            "batch and failed job (read-only: it cannot act)"
        )
    return (
        f"warning: serving the console on {host}:{port}: anyone who can open the page has the console's "
        "full control (cancel, retry, forget, clear); add --read-only to only look"
    )


def console_command(read_only: bool) -> str:
    """The command each page runs: this console, without --serve."""
    args = [sys.executable, "-m", "evalharness.tui"]
    if read_only:
        args.append("--read-only")
    return shlex.join(args)


def serve(redis_url: str, prefix: str, *, host: str, port: int, read_only: bool) -> None:
    from textual_serve.server import Server

    warning = exposure_warning(host, port, read_only)
    if warning:
        click.echo(warning, err=True)
    os.environ[ENV_REDIS_URL] = redis_url
    os.environ[ENV_PREFIX] = prefix
    click.echo(f"serving the console on http://{host}:{port} (ctrl+c stops)", err=True)
    Server(console_command(read_only), host=host, port=port, title="evalharness console").serve()
