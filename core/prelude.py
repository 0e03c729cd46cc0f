"""The constants the Lua scripts and the Python readers share, and the Lua prelude rendered from them:
every script starts with the prelude (``script_source`` in ``core/queue.py``), so a number here is changed once."""

from __future__ import annotations

from functools import cache
from importlib import resources

# Wake-up tokens a queue's wake list holds at most: each idle worker blocked on it takes one, and
# a worker that fills its request while work remains passes the word on, so a few suffice.
WAKE_CAP = 16
# Seconds a queue's per-minute telemetry hash (``QueueKeys.minute``) is kept: the past hour the
# snapshot reads (``telemetry.MINUTES_READ``) and the closed minute the history takes, with room.
MINUTE_TTL_S = 90_000  # 25 hours
# Entries the prefix-wide event stream keeps (approximately: ``XADD ... MAXLEN ~``).
EVENTS_MAXLEN = 10_000
# Upper bounds (ms) of the runtime histogram buckets ack.lua counts (``rt:1`` .. ``rt:16``);
# bucket 17 is "above".  ``telemetry.histogram_quantile`` reads them back with the same bounds.
BUCKET_BOUNDS_MS: tuple[int, ...] = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    120000,
    300000,
    600000,
)


def prelude_constants() -> str:
    """The Lua lines that declare the shared constants, from the values above (one paragraph
    each: a script is loaded with the ones it uses, see ``queue.link``)."""
    return (
        "-- rendered from core/prelude.py\n"
        f"local WAKE_CAP = {WAKE_CAP}\n\n"
        f"local MINUTE_TTL = {MINUTE_TTL_S}\n\n"
        f"local EVENTS_MAXLEN = {EVENTS_MAXLEN}\n\n"
        f"local RT_BOUNDS = {{{', '.join(str(b) for b in BUCKET_BOUNDS_MS)}}}\n\n"
    )


@cache
def prelude_source() -> str:
    """The prelude every script is loaded with: the constants, then ``lua/_prelude.lua``."""
    body = resources.files("evalharness.core").joinpath("lua", "_prelude.lua").read_text()
    return prelude_constants() + body
