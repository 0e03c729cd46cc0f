"""The console's own formatting: text drawn from numbers that ``evalharness status`` does not
print. The formatters both share (counts, rates, durations) are in ``core/format.py``."""

from __future__ import annotations

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
