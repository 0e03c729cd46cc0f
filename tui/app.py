"""The operator console (``evalharness-tui``): a top bar of modes and connection status, a body, keys.

The feed worker follows the daemon's telemetry on Redis pub/sub (and reads a snapshot itself when
none is published) and reads the recorded per-minute history on connecting and once a minute; its
messages update a :class:`~evalharness.tui.viewmodel.ConsoleState`, which the screen draws at most a
few times a second. The other screens (``tui/views``) fetch pages through the engine's
:class:`~evalharness.core.admin.Admin` and act through it.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, is_dataclass
from functools import partial
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import click
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Footer, Header, HelpPanel, Static

from evalharness.core.admin import ActionResult, Admin
from evalharness.core.config import load_config, resolve_settings
from evalharness.core.connection import async_client, redact_url
from evalharness.core.errors import EvalHarnessError
from evalharness.core.telemetry import channel as telemetry_channel
from evalharness.core.telemetry import collect_snapshot, read_history

from .history import HISTORY_MINUTES
from .messages import (
    PING_INTERVAL,
    ActionDone,
    ConnectionChecked,
    HistoryReceived,
    TelemetryReceived,
    TelemetryUnreadable,
)
from .model import HistoryEntry, Snapshot, TelemetryError
from .serve import DEFAULT_HOST, DEFAULT_PORT, serve
from .viewmodel import ConsoleState
from .views.batches import BatchesView
from .views.common import REFETCH_INTERVAL
from .views.events import EventsView
from .views.failed import FailedView
from .views.frame import BarText, FrameMixin
from .views.graphs import GraphsView
from .views.overview import OverviewView
from .views.palette import GoToProvider
from .views.running import RunningView
from .views.supervisors import SupervisorsView
from .views.workload import WorkloadView

CollectSnapshot = Callable[[Redis, str], Awaitable[Mapping[str, Any]]]
ReadHistory = Callable[[Redis, str, int], Awaitable[list[Any]]]

DEFAULT_COLLECT: CollectSnapshot | None = collect_snapshot
"""How the console reads a snapshot itself when none is published."""
DEFAULT_HISTORY: ReadHistory | None = read_history
"""How the console reads the recorded per-minute history."""

PING_TIMEOUT = 1.5
"""A PING slower than this counts as a failure: a stuck connection must not freeze the status."""
TELEMETRY_SILENCE = 3.0
"""Seconds without a published snapshot before the console reads one itself (no daemon publishing)."""
POLL_INTERVAL = 2.0
"""Seconds between two snapshots the console reads itself while nothing is published."""
POLL_TIMEOUT = 5.0
"""Reading a whole snapshot takes a few round trips; slower than this counts as a failure."""
HISTORY_INTERVAL = 60.0
"""Seconds between two readings of the history: the daemon appends one entry a minute."""
REDRAW_INTERVAL = 0.5
"""The screen is redrawn at most this often (2 Hz), however fast snapshots arrive."""
TICK_INTERVAL = 1.0
"""Ages on screen (snapshot age, time without a reply) move on this often."""
TICKED = frozenset({"running", "workload", "supervisors", "batches"})
"""The screens told of every tick: their ages move on, and Batches reads its active batches again."""
WIDE_AT = 120
"""Columns from which the wide layout (Header, full names, more table columns) is used."""


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


BUILT = frozenset({"overview", "workload", "supervisors", "batches", "failed", "running", "graphs", "events"})
"""The modes whose screen exists; only these are offered in the key panel and the palette."""


def mode_id(name: str) -> str:
    return name.lower()


def built_modes() -> tuple[tuple[str, str, str, str], ...]:
    return tuple(m for m in MODES if mode_id(m[2]) in BUILT)


def describe_check_error(exc: BaseException, redis_url: str) -> str:
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


def _modes_text(full: bool, active: str) -> Text:
    """The mode list of the top bar, the active mode reversed."""
    text = Text(no_wrap=True)
    for i, (key, short, name, _) in enumerate(MODES):
        if i:
            text.append("  " if full else " ")
        label = f"{key} {name}" if full else f"{key}{short}"
        text.append(label, style="reverse not dim" if mode_id(name) == active else "")
    return text


def _as_dict(data: object) -> object:
    """A collected snapshot as the dict that is published, whichever form the engine returns."""
    if is_dataclass(data) and not isinstance(data, type):
        return asdict(data)
    return data


class ConsoleApp(FrameMixin, App[None]):
    """The console: the feed worker fetches, messages carry, handlers update the state, a throttled
    redraw renders it."""

    CSS_PATH = "app.tcss"
    TITLE = "evalharness console"
    COMMANDS = App.COMMANDS | {GoToProvider}
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (WIDE_AT, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-short"), (36, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "toggle_keys", "Keys", key_display="?"),
        *FrameMixin.FRAME_BINDINGS,
        *(Binding(key, f"show_mode('{mode_id(name)}')", name, show=False) for key, _, name, _ in built_modes()),
    ]

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        *,
        feed: bool = True,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
        collect: CollectSnapshot | None = DEFAULT_COLLECT,
        history: ReadHistory | None = DEFAULT_HISTORY,
        admin: Admin | None = None,
    ) -> None:
        super().__init__()
        self.admin: Admin | None = admin
        """The engine's pages and actions; made on mount from the URL unless given (tests give a fake)."""
        self.results: list[ActionResult] = []
        """Every action's result, in order, as the engine returned it (the toasts show their messages)."""
        self._redis_url = redis_url
        self._feed_enabled = feed
        self._clock = clock
        self._collect = collect
        self._history = history
        self.read_only = read_only
        self.state = ConsoleState(redact_url(redis_url), prefix, read_only=read_only)
        self.sub_title = self.state.redis_url_display
        self.mode_shown = mode_id(MODES[0][2])
        self.drawn_snapshot: Snapshot | None = None
        """The snapshot on screen now (the newest may wait for the next redraw)."""
        self.drawn_history: tuple[HistoryEntry, ...] | None = None
        """The history on screen now."""
        self._redraw_timer: Timer | None = None
        self._last_redraw = float("-inf")
        # Kept by reference: drawing must not depend on which screen (help, palette) is on top.
        self._modes_short = Static(_modes_text(False, self.mode_shown), id="modes-short", classes="modes", markup=False)
        self._modes_full = Static(_modes_text(True, self.mode_shown), id="modes-full", classes="modes", markup=False)
        self._status = BarText(self.state.status_text(), id="status")
        self._switcher = ContentSwitcher(id="body", initial=self.mode_shown)
        self._overview = OverviewView(id="overview")
        self.configured_supervisors: tuple[str, ...] = ()
        """The supervisors the configuration file names: those no master runs show as inactive."""
        self._views: dict[str, Any] = {
            "workload": WorkloadView(id="workload"),
            "supervisors": SupervisorsView(id="supervisors"),
            "batches": BatchesView(id="batches"),
            "failed": FailedView(id="failed"),
            "running": RunningView(id="running"),
            "graphs": GraphsView(id="graphs"),
            "events": EventsView(id="events"),
        }
        self.frozen = False
        """``space``: live updates are held (the lists count what is new) until pressed again."""
        self._frozen_mark = BarText("", id="frozen", sized=True)  # its width follows its text

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        with Horizontal(id="topbar"):
            yield self._modes_short
            yield self._modes_full
            yield Static(" │ ", id="separator", markup=False)
            yield self._frozen_mark
            yield self._status
        with self._switcher:
            # The acting screens are mounted the first time they are shown: a console left on the
            # Overview never builds them.
            yield self._overview
        yield Footer()

    def on_mount(self) -> None:
        if self.admin is None and self._feed_enabled:
            # Its own connection: a slow page must not hold up the telemetry, nor the reverse.
            client = async_client(
                self._redis_url,
                socket_connect_timeout=PING_TIMEOUT,
                socket_timeout=POLL_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            self.admin = Admin(client, self.state.prefix)
        self._redraw()
        self._overview.fetch()
        self.set_interval(TICK_INTERVAL, self._tick)
        self.set_interval(REFETCH_INTERVAL, self._refetch_visible)
        if self._feed_enabled:
            self.run_feed()

    def clock(self) -> float:
        """The console's clock (fixed in tests), for every age and countdown drawn."""
        return self._clock()

    @property
    def wide(self) -> bool:
        return self.size.width >= WIDE_AT

    async def on_unmount(self) -> None:
        if self.admin is not None and self._feed_enabled:
            await self.admin.client.aclose()

    # --- the feed ------------------------------------------------------------------------------

    @work(exclusive=True, group="feed", exit_on_error=False)
    async def run_feed(self) -> None:
        """Follow the telemetry until the app closes; after any failure, show it and start over."""
        while True:
            try:
                await self._follow_telemetry()
            except Exception as exc:  # whatever the failure, the console shows it and retries
                error = describe_check_error(exc, self._redis_url)
                self.post_message(ConnectionChecked.failed(error, self._clock(), retry_in=PING_INTERVAL))
            await asyncio.sleep(PING_INTERVAL)

    async def _follow_telemetry(self) -> None:
        """One connection: subscribe, read the full state, then apply what is published; read a
        snapshot every POLL_INTERVAL while nothing is. Returns only by raising."""
        loop = asyncio.get_running_loop()
        # No client-side retries: a failure should show now, and run_feed retries anyway.
        client = async_client(
            self._redis_url,
            socket_connect_timeout=PING_TIMEOUT,
            socket_timeout=POLL_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await client.ping()
                await pubsub.subscribe(telemetry_channel(self.state.prefix))
            self.post_message(ConnectionChecked.connected(self._clock()))
            # Published snapshots are fire-and-forget: what happened before we listened is read directly.
            if self._collect is not None:
                await self._poll(client)
            await self._read_history_now(client)
            next_history = loop.time() + HISTORY_INTERVAL
            next_poll = loop.time() + TELEMETRY_SILENCE
            confirmed = loop.time()
            while True:
                wait = min(max(0.0, next_poll - loop.time()), PING_INTERVAL)
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                if message is not None and message.get("type") == "message":
                    self._post_telemetry(message.get("data"))
                    next_poll = loop.time() + TELEMETRY_SILENCE
                    if loop.time() - confirmed >= PING_INTERVAL:
                        self.post_message(ConnectionChecked.connected(self._clock()))
                        confirmed = loop.time()
                elif loop.time() >= next_poll:
                    await self._poll(client)
                    confirmed = loop.time()
                    next_poll = confirmed + POLL_INTERVAL
                if loop.time() >= next_history:
                    await self._read_history_now(client)
                    next_history = loop.time() + HISTORY_INTERVAL
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def _poll(self, client: Redis) -> None:
        """Read a snapshot; where the engine has no way to (or its reader fails), only check that
        Redis answers."""
        if self._collect is not None:
            try:
                async with asyncio.timeout(POLL_TIMEOUT):
                    data = await self._collect(client, self.state.prefix)
            except TimeoutError:
                raise TimeoutError(f"no snapshot within {POLL_TIMEOUT:g}s") from None
            except (RedisError, OSError):
                raise
            except Exception as exc:  # a reader that fails is a telemetry problem, not a lost Redis
                problem = f"reading a snapshot failed: {describe_check_error(exc, self._redis_url)}"
                self.post_message(TelemetryUnreadable(problem))
            else:
                self._post_snapshot(_as_dict(data))
                self.post_message(ConnectionChecked.connected(self._clock()))
                return
        async with asyncio.timeout(PING_TIMEOUT):
            await client.ping()
        self.post_message(ConnectionChecked.connected(self._clock()))

    async def _read_history_now(self, client: Redis) -> None:
        """Read the last HISTORY_MINUTES entries of the history, where the engine records one."""
        if self._history is None:
            return
        try:
            async with asyncio.timeout(POLL_TIMEOUT):
                entries = await self._history(client, self.state.prefix, HISTORY_MINUTES)
            message = HistoryReceived.from_entries(entries)
        except TimeoutError:
            raise TimeoutError(f"no history within {POLL_TIMEOUT:g}s") from None
        except (RedisError, OSError):
            raise
        except Exception as exc:  # a history that cannot be read is a telemetry problem, not a lost Redis
            self.post_message(
                TelemetryUnreadable(f"reading the history failed: {describe_check_error(exc, self._redis_url)}")
            )
        else:
            self.post_message(message)

    def _post_telemetry(self, raw: object) -> None:
        if not isinstance(raw, str | bytes):
            self.post_message(TelemetryUnreadable(f"telemetry message is a {type(raw).__name__}"))
            return
        try:
            snapshot = Snapshot.from_json(raw)
        except TelemetryError as exc:
            self.post_message(TelemetryUnreadable(str(exc)))
        else:
            self.post_message(TelemetryReceived(snapshot))

    def _post_snapshot(self, data: object) -> None:
        try:
            snapshot = Snapshot.from_dict(data)
        except TelemetryError as exc:
            self.post_message(TelemetryUnreadable(str(exc)))
        else:
            self.post_message(TelemetryReceived(snapshot))

    # --- handlers: update the state, ask for a redraw ------------------------------------------

    @on(ConnectionChecked)
    def _on_connection_checked(self, message: ConnectionChecked) -> None:
        if message.ok:
            self.state.mark_connected(message.at)
        else:
            self.state.mark_failed(message.error or "unknown error", message.at, message.retry_in)
        # The connection shows at once: a failure must never wait for the next redraw.
        self._redraw()

    @on(TelemetryReceived)
    def _on_telemetry(self, message: TelemetryReceived) -> None:
        self.state.apply_snapshot(message.snapshot, self._clock())
        self.request_redraw()

    @on(HistoryReceived)
    def _on_history(self, message: HistoryReceived) -> None:
        self.state.apply_history(message.history)
        self.request_redraw()

    @on(TelemetryUnreadable)
    def _on_telemetry_unreadable(self, message: TelemetryUnreadable) -> None:
        self.log.warning("telemetry:", message.problem)
        self.state.mark_telemetry_problem(message.problem)
        self.request_redraw()

    # --- drawing -------------------------------------------------------------------------------

    def request_redraw(self) -> None:
        """Redraw now if the last redraw is old enough, else once the interval has passed."""
        if self._redraw_timer is not None:
            return
        wait = self._last_redraw + REDRAW_INTERVAL - time.monotonic()
        if wait <= 0:
            self._redraw()
        else:
            self._redraw_timer = self.set_timer(wait, self._redraw)

    def _redraw(self) -> None:
        if self._redraw_timer is not None:
            self._redraw_timer.stop()
            self._redraw_timer = None
        if not self.is_running:  # shutting down: the feed may still post while widgets go away
            return
        self._last_redraw = time.monotonic()
        now = self._clock()
        with self.batch_update():
            self._draw_status(now)
            self.draw_frame(now)
            if self.frozen:
                return  # the screen holds still; the top bar alone moves
            if self.mode_shown == "overview":
                self._overview.draw(self.state, now, wide=self.size.width >= WIDE_AT)
                self.drawn_snapshot = self.state.snapshot
                self.drawn_history = self.state.history
            elif self.mode_shown in ("running", "workload"):
                # Workload is the snapshot's rows; Running's colours follow the queues' p95 in it.
                if self._views[self.mode_shown].is_mounted:
                    self._views[self.mode_shown].draw()
                self.drawn_snapshot = self.state.snapshot
                self.drawn_history = self.state.history
            elif self.mode_shown == "graphs" and self._views["graphs"].is_mounted:
                self._views["graphs"].draw()  # its last point is the live snapshot
                self.drawn_snapshot = self.state.snapshot

    def _draw_status(self, now: float) -> None:
        # at 80 columns the marks (frozen, new rows, stale) leave no room for "redis ok"
        marked = self.frozen or (self.state.connected is False and self.state.snapshot is not None)
        self._status.text = self.state.status_text(now, short=marked and self.size.width < 120)
        self._status.level = self.state.status_level(now)

    def _tick(self) -> None:
        if not self.is_running:
            return
        now = self._clock()
        with self.batch_update():
            self._draw_status(now)
            self.draw_frame(now)
            if self.frozen:
                return
            if self.mode_shown == "overview":
                self._overview.draw_ages(self.state, now)
            elif self.mode_shown in TICKED and self.screen is self.screen_stack[0]:
                view = self._views[self.mode_shown]
                getattr(view, "tick", view.draw)()

    def _refetch_visible(self) -> None:
        """Every few seconds, the page on screen is fetched again; nothing is fetched for what is
        hidden, nor while a dialog is open over it."""
        if not self.is_running or isinstance(self.screen, ModalScreen):
            return
        if self.mode_shown == "overview" and self.screen is self.screen_stack[0]:
            self._overview.fetch()
        view = self._views.get(self.mode_shown)
        if view is not None and view.is_mounted and self.screen is self.screen_stack[0]:
            view.fetch()

    @on(ActionDone)
    def _on_action_done(self, message: ActionDone) -> None:
        view = self._views.get(self.mode_shown)
        if view is not None:
            view.fetch()
        for screen in self.screen_stack[1:]:
            fetch = getattr(screen, "fetch", None)
            if callable(fetch):
                fetch()

    def on_resize(self) -> None:
        # Crossing the wide breakpoint changes the table's columns.
        self.call_after_refresh(self._redraw_all)

    def _redraw_all(self) -> None:
        self._redraw()
        view = self._views.get(self.mode_shown)
        if view is not None and view.is_mounted:
            view.draw()

    # --- actions -------------------------------------------------------------------------------

    async def action_show_mode(self, mode: str) -> None:
        view = self._views.get(mode)
        if view is not None and not view.is_mounted:
            view.display = False  # the switcher shows it below, not before
            await self._switcher.mount(view)
        while len(self.screen_stack) > 1 and not isinstance(self.screen, ModalScreen):
            self.pop_screen()  # a mode key from a detail goes back to the list first
        if mode == self.mode_shown:
            return
        self.mode_shown = mode
        self._switcher.current = mode
        self._modes_short.update(_modes_text(False, mode))
        self._modes_full.update(_modes_text(True, mode))
        self._redraw()
        if view is not None:
            view.draw()
            view.table.focus()
            view.fetch()
        elif mode == "overview":
            self._overview.query_one("#queues").focus()
            self._overview.fetch()

    def action_toggle_keys(self) -> None:
        try:
            self.screen.query_one(HelpPanel)
        except NoMatches:
            self.action_show_help_panel()
        else:
            self.action_hide_help_panel()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key, _, name, what in built_modes():
            yield SystemCommand(f"Show {name} ({key})", what, partial(self.action_show_mode, mode_id(name)))
        yield from self.frame_commands()
        # Every action the screen offers now, and only those: what read-only or the highlighted
        # row hides from the keys is not in the palette either.
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            namespace, binding = active.node, active.binding
            if namespace is self or not active.enabled or binding.action in seen or binding.system:
                continue
            if not binding.description or binding.action in ("back",):
                continue
            seen.add(binding.action)
            title = getattr(namespace, "BINDING_GROUP_TITLE", None) or ""
            label = f"{title}: {binding.description}" if title else binding.description
            yield SystemCommand(
                f"{label} ({binding.key_display or key})",
                f"the key {binding.key_display or key}",
                partial(self._run_binding, namespace, binding.action),
            )

    def _run_binding(self, namespace: Any, action: str) -> None:
        self.call_later(self.run_action, action, namespace)


EXIT_CODES_HELP = """\b
Exit codes:
  0  the console was closed
  2  invalid configuration (file, flag or environment variable)
  3  the embedded Redis server could not be started
"""


def hang_up_with_the_terminal() -> None:
    """End this process when its terminal goes away (the pty closed, SIGHUP: a dropped SSH session),
    also when it was started from a shell or program that ignores or blocks hangups (``nohup``, some
    job runners): both are inherited across exec, and a console left running with no terminal is a
    process nobody sees."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.option(
    "--redis-url",
    metavar="URL",
    help="Redis URL (default: $EVALHARNESS_REDIS_URL, the config file, or the embedded server).",
)
@click.option("--prefix", metavar="NAME", help="Key prefix (default: $EVALHARNESS_PREFIX, the config file, or 'eh').")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Configuration file (default: $EVALHARNESS_CONFIG or ./evalharness.toml).",
)
@click.option("--read-only", is_flag=True, help="Hide every action that changes anything.")
@click.option(
    "--serve", "serve_web", is_flag=True, help="Serve the console to a web browser instead (one console per open page)."
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    metavar="ADDR",
    help="With --serve: the address to listen on. Anything but loopback prints a warning: "
    "whoever opens the page has the console's full control unless --read-only.",
)
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="With --serve: the port to listen on.",
)
def main(
    redis_url: str | None,
    prefix: str | None,
    config_path: str | None,
    read_only: bool,
    serve_web: bool,
    host: str,
    port: int,
) -> None:
    """Watch evalharness live: queues, workers, batches, failures and events."""
    try:
        config = load_config(config_path)
        settings = resolve_settings(redis_url, prefix, config=config)
    except EvalHarnessError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    if serve_web:
        serve(settings.redis_url, settings.prefix, host=host, port=port, read_only=read_only)
        return
    if host != DEFAULT_HOST or port != DEFAULT_PORT:
        click.echo("error: --host and --port go with --serve", err=True)
        raise SystemExit(2)
    app = ConsoleApp(settings.redis_url, settings.prefix, read_only=read_only)
    app.configured_supervisors = tuple(s.name for s in config.supervisors)
    hang_up_with_the_terminal()
    app.run()
    if app.return_code:
        raise SystemExit(app.return_code)
