"""How many of some time spans were open at once (jobs, SUT calls)."""

from __future__ import annotations

from collections.abc import Iterable


def max_overlap(spans: Iterable[tuple[float, float]]) -> int:
    """The most spans open at one moment; an end at the same instant as a start closes first."""
    spans = list(spans)
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak
