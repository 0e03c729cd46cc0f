"""The console's own formatting, which ``evalharness status`` does not share: sparklines, label and
value grids. The formatters both share (counts, rates, durations) are in ``core/format.py``."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    """One block per value, from ▁ (the smallest) to █ (the largest); a missing value is a space."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    top = len(SPARK_BLOCKS) - 1
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif high == low:
            out.append(SPARK_BLOCKS[top // 2] if high else SPARK_BLOCKS[0])
        else:
            out.append(SPARK_BLOCKS[round((v - low) / (high - low) * top)])
    return "".join(out)


def two_columns(rows: list[tuple[str, str]], *, label_width: int | None = None) -> Table:
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
