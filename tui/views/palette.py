"""The command palette's "go to": a batch, job, queue or master found by id prefix or name.

The screens and every action the keys offer come from the app's system commands (with the
theme); this provider adds what the engine finds for the text typed (``core/lookup.py``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from evalharness.core.lookup import Found

from .events import open_target

MIN_CHARS = 2
"""Fewer characters than this find too much to be useful: nothing is looked up."""

KIND_LABEL = {"batch": "batch", "job": "job", "queue": "queue", "master": "master"}


def hit_text(item: Found) -> str:
    """How a found thing reads in the palette: "batch run-42 (judge)", "job 8f2c1d… failed (judge)"."""
    where = f" ({item.queue})" if item.queue else ""
    state = f" {item.state}" if item.state else ""
    label = item.label if item.label == item.id else f"{item.label} · {item.id}"
    return f"Go to {KIND_LABEL.get(item.kind, item.kind)} {label}{state}{where}"


class GoToProvider(Provider):
    """Finds batches, jobs, queues and masters as the text is typed."""

    async def discover(self) -> Hits:
        yield DiscoveryHit("Go to…", lambda: None, help="type a batch, job, queue or master: an id prefix or a name")

    async def search(self, query: str) -> Hits:
        app: Any = self.app
        text = query.strip()
        admin = getattr(app, "admin", None)
        if admin is None or len(text) < MIN_CHARS:
            return
        try:
            found = await admin.lookup(text)
        except Exception as exc:  # Redis lost while typing: say so in the list, carry on
            yield Hit(0.1, f"Go to: lookup failed ({type(exc).__name__})", lambda: None, text=f"lookup failed {text}")
            return
        matcher = self.matcher(text)
        for item in found:
            display = hit_text(item)
            score = matcher.match(display) or 0.5
            yield Hit(
                score, matcher.highlight(display), partial(self._go, item), text=display, help=f"{item.kind} {item.id}"
            )

    def _go(self, item: Found) -> None:
        app: Any = self.app
        if item.kind in ("batch", "job"):
            open_target(app, item.kind, item.id, item.queue)
        else:
            app.call_later(app.open_named, item.kind, item.id)
