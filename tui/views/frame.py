"""The frame every screen shares: ``space`` freezes live updates (❄ in the top bar, the lists
hold and count what is new, the cursor stays), the disconnected state (values stay, dimmed,
"stale 14s"), and going to a queue or master named in the palette or an event.

Mixed into the console's App, so ``app.py`` only lists it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import var
from textual.widgets import Static

from evalharness.core.format import format_count, format_seconds

from ..viewmodel import Level
from .common import KeyedTable


class BarText(Static):
    """A part of the top bar (the status, the frame's marks): setting :attr:`text` or
    :attr:`level` to what is shown already touches nothing, so the 1 Hz tick costs no redraw."""

    text: var[str] = var("", init=False)
    level: var[Level | None] = var(None, init=False)
    """Colours the text (``-ok``, ``-warning``… classes); None: the text's own colour."""

    def __init__(self, text: str = "", *, id: str | None = None, sized: bool = False) -> None:
        super().__init__(text, id=id, markup=False)
        self._sized = sized
        self.set_reactive(BarText.text, text)

    def watch_text(self, text: str) -> None:
        # Only a part whose width follows its text needs a layout pass; the status has a fixed size.
        self.update(text, layout=self._sized)

    def watch_level(self, level: Level | None) -> None:
        for each in Level:
            self.set_class(level is each, f"-{each.value}")


def frame_mark(frozen: bool, held: int, stale: float | None) -> str:
    """The top bar's marks before the status: "❄ frozen · 3 new │ ", "stale 14s │ "."""
    parts = []
    if frozen:
        parts.append("❄ frozen" + (f" · {format_count(held)} new" if held else ""))
    if stale is not None:
        parts.append(f"stale {format_seconds(stale)}")
    return " · ".join(parts) + " │ " if parts else ""


class FrameMixin:
    """What the App gets from the frame; it expects ``frozen``, ``state``, ``_frozen_mark``,
    ``_switcher``, ``_views`` and ``mode_shown`` on the app."""

    FRAME_BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "freeze", "Freeze", key_display="space", show=False),
    ]

    def draw_frame(self, now: float) -> None:
        app: Any = self
        held = 0
        if app.frozen:
            held = sum(t.held_new for t in app.screen.query(KeyedTable).results(KeyedTable) if t.display)
            events = app._views.get("events")
            if app.mode_shown == "events" and events is not None and events.is_mounted:
                held = max(held, events.table.held_new)
        stale = None
        if app.state.connected is False and app.state.snapshot is not None:
            stale = app.state.stale_for(now)
        mark: BarText = app._frozen_mark
        mark.text = frame_mark(app.frozen, held, stale)
        mark.set_class(app.frozen, "-frozen")
        mark.set_class(stale is not None, "-stale")
        app._switcher.set_class(stale is not None, "-stale")

    def action_freeze(self) -> None:
        app: Any = self
        app.frozen = not app.frozen
        if not app.frozen:
            for table in app.query(KeyedTable).results(KeyedTable):
                table.thaw()
            for screen in app.screen_stack[1:]:
                for table in screen.query(KeyedTable).results(KeyedTable):
                    table.thaw()
            app._redraw_all()
            events = app._views.get("events")
            if events is not None and events.is_mounted:
                events.draw()
        else:
            app._redraw()
        # No toast: the top bar's ❄ says it for as long as it lasts, and a timed toast would make
        # the frozen screen itself change.

    def frame_commands(self) -> Iterable[SystemCommand]:
        """The frame's own keys in the palette (the App's bindings are not listed from the screen)."""
        app: Any = self
        yield SystemCommand(
            "Resume live updates (space)" if app.frozen else "Freeze (space)",
            "hold the screen still while you read; space again resumes",
            app.action_freeze,
        )

    async def open_named(self, kind: str, name: str) -> None:
        """Go to a queue or a master/supervisor by name: its own screen where one is built, else
        the Graphs of that queue, or say where to look."""
        app: Any = self
        from ..app import BUILT

        if kind == "queue":
            mode = "workload" if "workload" in BUILT else "graphs"
            await app.action_show_mode(mode)
            view = app._views.get(mode)
            select = getattr(view, "select_queue", None)
            if callable(select):
                select(name)
            return
        if "supervisors" in BUILT:
            await app.action_show_mode("supervisors")
            view = app._views.get("supervisors")
            select = getattr(view, "select_name", None)
            if callable(select):
                select(name)
            return
        app.notify(f"{kind} {name}: see `evalharness supervisors`", timeout=6, markup=False)
