"""The Overview by the name it had before it moved to ``tui/views/overview.py``, with the other
screens; new code imports it from there."""

from __future__ import annotations

from .fmt import two_columns
from .views.overview import (
    TILE_SERIES,
    HistorySpark,
    OverviewView,
    TileSpark,
    batch_line,
    event_line,
    supervisor_lines,
    top_queues,
)

__all__ = [
    "TILE_SERIES",
    "HistorySpark",
    "OverviewView",
    "TileSpark",
    "batch_line",
    "event_line",
    "supervisor_lines",
    "top_queues",
    "two_columns",
]
