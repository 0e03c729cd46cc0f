"""The console's leaf widgets redraw only what changed, and what a screen shows is worked out by
modules that load without the terminal toolkit."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from textual.widgets import Static

from evalharness.tui.app import ConnectionChecked, ConsoleApp, TelemetryReceived

NOW = 1_700_000_000.0

MakeApp = Callable[..., ConsoleApp]
Send = Callable[..., Awaitable[None]]

VALUE_MODULES = ("evalharness.tui.model", "evalharness.tui.history", "evalharness.tui.viewmodel", "evalharness.tui.fmt")


def tile(app: ConsoleApp, key: str) -> Static:
    return app.query_one(f"#value-{key}", Static)


async def test_a_snapshot_rewrites_only_the_tiles_and_the_status_that_changed(
    make_app: MakeApp, send: Send, example: dict[str, Any]
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, ConnectionChecked.connected(NOW), TelemetryReceived.from_dict(example))
        status = app.query_one("#status", Static)
        assert str(tile(app, "jpm").content) == "412"
        assert tile(app, "failed").has_class("-warning")
        assert status.has_class("-ok")
        backlog, procs, status_text = tile(app, "backlog").content, tile(app, "procs").content, status.content

        later = copy.deepcopy(example)
        later["overview"]["jobs_per_minute"] = 433.0
        later["overview"]["failed_past_hour"] = 0
        await send(pilot, TelemetryReceived.from_dict(later))

        assert str(tile(app, "jpm").content) == "433"
        assert str(tile(app, "failed").content) == "0"
        assert not tile(app, "failed").has_class("-warning")  # the colour goes with what caused it
        # The same text is not written again (the clock is fixed: the status reads the same).
        assert tile(app, "backlog").content is backlog
        assert tile(app, "procs").content is procs
        assert status.content is status_text and status.has_class("-ok")

        later["overview"]["status"] = "paused"
        await send(pilot, TelemetryReceived.from_dict(later))
        assert str(status.content).startswith("● paused")
        assert status.has_class("-warning") and not status.has_class("-ok")


def test_what_the_screens_show_is_worked_out_without_textual() -> None:
    probe = (
        "import importlib, json, sys\n"
        "[importlib.import_module(m) for m in sys.argv[1:]]\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe, *VALUE_MODULES], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert set(VALUE_MODULES) <= loaded
    assert sorted(m for m in loaded if m == "textual" or m.startswith("textual.")) == []
