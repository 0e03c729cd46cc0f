"""The operator console (``evalharness-tui``): a top bar of modes and connection status, a body, keys.

The screens themselves arrive with the telemetry feed; for now the body says what they will
show and the feed worker only checks that Redis answers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import ClassVar
from urllib.parse import unquote, urlsplit

import click
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Footer, Header, HelpPanel, Static

from evalharness.core.config import load_config, resolve_settings
from evalharness.core.connection import async_client, redact_url
from evalharness.core.errors import EvalHarnessError

from .state import ConsoleState, Level, format_seconds

PING_INTERVAL = 2.0
"""Seconds between two PINGs, and so the retry delay after a failed one."""
PING_TIMEOUT = 1.5
"""A PING slower than this counts as a failure: a stuck connection must not freeze the status."""

# (key, short name for 80 columns, full name, what the screen will show)
MODES: tuple[tuple[str, str, str, str], ...] = (
    ("1", "Ovr", "Overview", "totals, the busiest queues and the latest events"),
    ("2", "Wrk", "Workload", "per queue: ready, delayed, running, oldest wait, est. clear"),
    ("3", "Sup", "Supervisors", "masters, supervisors and their worker processes"),
    ("4", "Bat", "Batches", "progress, counts, rate and ETA; cancel and retry"),
    ("5", "Fail", "Failed", "failed jobs by exception, full tracebacks; retry, forget"),
    ("6", "Run", "Running", "jobs running now: worker, elapsed, time to timeout"),
    ("7", "Grf", "Graphs", "per-minute history: throughput, wait, backlog, runtime"),
    ("8", "Evt", "Events", "the live event stream: failures, retries, scaling"),
)


class ConnectionChecked(Message):
    """The result of one PING, posted by the feed worker and rendered by the app's handler."""

    def __init__(self, ok: bool, at: float, *, error: str | None = None, retry_in: float | None = None) -> None:
        super().__init__()
        self.ok = ok
        self.at = at
        self.error = error
        self.retry_in = retry_in

    @classmethod
    def connected(cls, at: float) -> ConnectionChecked:
        return cls(True, at)

    @classmethod
    def failed(cls, error: str, at: float, retry_in: float | None = PING_INTERVAL) -> ConnectionChecked:
        return cls(False, at, error=error, retry_in=retry_in)


def describe_failure(exc: BaseException, redis_url: str) -> str:
    """A failed check as one line, with the URL's password kept out of it."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    if isinstance(exc, TimeoutError) and not str(exc):
        text = f"no reply within {PING_TIMEOUT:g}s"
    text = text.replace(redis_url, redact_url(redis_url))
    try:
        password = urlsplit(redis_url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password)} if password else ():
        # Only where the password stands alone: a short one must not cut letters out of words.
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


def _modes_text(full: bool) -> str:
    if full:
        return "  ".join(f"{key} {name}" for key, _, name, _ in MODES)
    return " ".join(f"{key}{short}" for key, short, _, _ in MODES)


def _screens_text() -> Table:
    return _two_columns([(f"{key} {name}", what) for key, _, name, what in MODES])


def _two_columns(rows: list[tuple[str, str]], *, label_width: int | None = None) -> Table:
    """Bold labels beside their values; a long value wraps within its own column.

    Values are data and are never parsed as markup; a word too long for the column (a socket
    path, a URL) is folded rather than cut off.
    """
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, min_width=label_width)
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(Text(label), Text(value))
    return table


class ConsoleApp(App[None]):
    """The console: the feed worker fetches, :class:`ConnectionChecked` carries, handlers render."""

    CSS_PATH = "app.tcss"
    TITLE = "evalharness console"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-short"), (36, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "toggle_keys", "Keys", key_display="?"),
    ]

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        *,
        feed: bool = True,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self._redis_url = redis_url
        self._feed_enabled = feed
        self._clock = clock
        self.read_only = read_only
        self.state = ConsoleState(redact_url(redis_url), prefix, read_only=read_only)
        self.sub_title = self.state.redis_url_display

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        with Horizontal(id="topbar"):
            yield Static(_modes_text(full=False), id="modes-short", classes="modes", markup=False)
            yield Static(_modes_text(full=True), id="modes-full", classes="modes", markup=False)
            yield Static(" │ ", id="separator", markup=False)
            yield Static(self.state.status_text(), id="status", markup=False)
        with VerticalScroll(id="body"):
            with Horizontal(id="panels"):
                with Vertical(id="about", classes="panel") as about:
                    about.border_title = "What this console will show"
                    yield Static(_screens_text(), id="screens")
                    yield Static(
                        "Keys 1-8 will switch between these screens. Live panels arrive with the "
                        f"telemetry feed; until then the console checks that Redis answers every "
                        f"{format_seconds(PING_INTERVAL)}.",
                        id="note",
                        markup=False,
                    )
                with Vertical(id="connection", classes="panel") as connection:
                    connection.border_title = "Connection"
                    yield Static(id="conn-details")
                    yield Static(id="conn-status")
        yield Footer()

    def on_mount(self) -> None:
        self._render_state()
        if self._feed_enabled:
            self.run_feed()

    @work(exclusive=True, group="feed", exit_on_error=False)
    async def run_feed(self) -> None:
        """PING Redis every PING_INTERVAL seconds and post each result; never gives up."""
        client: Redis | None = None
        try:
            while True:
                try:
                    if client is None:
                        # No client-side retries: a failure should show now, and the loop retries anyway.
                        client = async_client(
                            self._redis_url,
                            socket_connect_timeout=PING_TIMEOUT,
                            socket_timeout=PING_TIMEOUT,
                            retry=Retry(NoBackoff(), 0),
                        )
                    async with asyncio.timeout(PING_TIMEOUT):
                        await client.ping()
                except Exception as exc:  # whatever the failure, the console shows it and retries
                    error = describe_failure(exc, self._redis_url)
                    self.post_message(ConnectionChecked.failed(error, self._clock()))
                else:
                    self.post_message(ConnectionChecked.connected(self._clock()))
                await asyncio.sleep(PING_INTERVAL)
        finally:
            if client is not None:
                await client.aclose()

    @on(ConnectionChecked)
    def _on_connection_checked(self, message: ConnectionChecked) -> None:
        if message.ok:
            self.state.mark_connected(message.at)
        else:
            self.state.mark_failed(message.error or "unknown error", message.at, message.retry_in)
        self._render_state()

    def _render_state(self) -> None:
        state = self.state
        with self.batch_update():
            status = self.query_one("#status", Static)
            status.update(state.status_text())
            for level in Level:
                status.set_class(state.level is level, f"-{level.value}")
            self.query_one("#connection").set_class(state.level is Level.ERROR, "-stale")
            details, status_rows = state.details(), state.status_rows()
            # Both parts share one label width so their values line up as one list.
            width = max(len(label) for label, _ in details + status_rows)
            self.query_one("#conn-details", Static).update(_two_columns(details, label_width=width))
            conn_status = self.query_one("#conn-status", Static)
            conn_status.update(_two_columns(status_rows, label_width=width))
            for level in Level:
                conn_status.set_class(state.level is level, f"-{level.value}")

    def action_toggle_keys(self) -> None:
        try:
            self.screen.query_one(HelpPanel)
        except NoMatches:
            self.action_show_help_panel()
        else:
            self.action_hide_help_panel()


EXIT_CODES_HELP = """\b
Exit codes:
  0  the console was closed
  2  invalid configuration (file, flag or environment variable)
  3  the embedded Redis server could not be started
"""


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.option("--redis-url", metavar="URL", help="Redis URL (default: $EVALHARNESS_REDIS_URL, the config file, or the embedded server).")
@click.option("--prefix", metavar="NAME", help="Key prefix (default: $EVALHARNESS_PREFIX, the config file, or 'eh').")
@click.option("--config", "config_path", metavar="FILE", help="Configuration file (default: $EVALHARNESS_CONFIG or ./evalharness.toml).")
@click.option("--read-only", is_flag=True, help="Hide every action that changes anything.")
def main(redis_url: str | None, prefix: str | None, config_path: str | None, read_only: bool) -> None:
    """Watch evalharness live: queues, workers, batches, failures and events."""
    try:
        config = load_config(config_path)
        settings = resolve_settings(redis_url, prefix, config=config)
    except EvalHarnessError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    app = ConsoleApp(settings.redis_url, settings.prefix, read_only=read_only)
    app.run()
    if app.return_code:
        raise SystemExit(app.return_code)
