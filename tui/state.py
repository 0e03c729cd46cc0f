"""The console's values by the name they had before they were split by role; new code imports
them from their own module:

- ``tui/model.py``: the telemetry as typed values (the snapshot, the history entries);
- ``tui/history.py``: history maths (a value a minute, the busiest queue, history lines);
- ``tui/viewmodel.py``: the console's state and what the top bar and the Overview draw from it;
- ``tui/fmt.py`` and ``core/format.py``: text from numbers.
"""

from __future__ import annotations

from evalharness.core.format import (
    NULL,
    format_count,
    format_duration,
    format_est_clear,
    format_rate,
    format_seconds,
)

from .fmt import SPARK_BLOCKS, sparkline
from .history import (
    HISTORY_MINUTES,
    HistoryLine,
    backlog_history_line,
    busiest_queue,
    history_line,
    jobs_history_line,
    minute_series,
)
from .model import (
    HISTORY_FIELDS,
    HISTORY_SCHEMA,
    SCHEMA,
    HistoryEntry,
    Limiter,
    QueueStats,
    Snapshot,
    TelemetryError,
    Totals,
    read_history_entries,
)
from .viewmodel import (
    STALE_AFTER,
    TILES,
    WORKLOAD_COLUMNS,
    Column,
    ConsoleState,
    Level,
    Tile,
    overview_tiles,
    queue_cells,
    status_level,
    workload_columns,
)

__all__ = [
    "HISTORY_FIELDS",
    "HISTORY_MINUTES",
    "HISTORY_SCHEMA",
    "NULL",
    "SCHEMA",
    "SPARK_BLOCKS",
    "STALE_AFTER",
    "TILES",
    "WORKLOAD_COLUMNS",
    "Column",
    "ConsoleState",
    "HistoryEntry",
    "HistoryLine",
    "Level",
    "Limiter",
    "QueueStats",
    "Snapshot",
    "TelemetryError",
    "Tile",
    "Totals",
    "backlog_history_line",
    "busiest_queue",
    "format_count",
    "format_duration",
    "format_est_clear",
    "format_rate",
    "format_seconds",
    "history_line",
    "jobs_history_line",
    "minute_series",
    "overview_tiles",
    "queue_cells",
    "read_history_entries",
    "sparkline",
    "status_level",
    "workload_columns",
]
