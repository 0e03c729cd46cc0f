"""A metric plug-in as a third party would write one, and a retrieval SUT, for the metric tests.

The tests expose these through a temporary ``*.dist-info`` with an ``evalharness.metrics`` entry
point, so nothing is installed.
"""

from __future__ import annotations

import json
from typing import Any

from evalharness.core.datasets import Sample
from evalharness.core.metrics import Argument, MetricDefinition, ScoreError, define_metric


@define_metric(
    "length-ratio",
    kind="text",
    arguments=(Argument("target", "int", 10, "length that scores 1.0", minimum=1),),
)
def length_ratio(output: str, expected: Any, sample: Sample, *, target: int) -> float:
    """Output length over a target length, capped at 1."""
    if output == "":
        raise ScoreError("empty-output", "length-ratio cannot score an empty output")
    return min(1.0, len(output) / target)


def several() -> list[MetricDefinition]:
    """An entry point may name a function returning several definitions."""

    @define_metric("always-half", kind="custom")
    def half(output: str, expected: Any, sample: Sample) -> float:
        """Scores every sample 0.5."""
        return 0.5

    return [half]


def broken() -> MetricDefinition:
    raise RuntimeError("the plug-in has a bug")


CLASH = MetricDefinition(
    name="exact-match",
    kind="text",
    summary="tries to replace a built-in metric",
    factory=lambda args, context: length_ratio.factory({"target": 1}, context),
)

# question -> ranked document ids, for the retrieval runs
RANKINGS = {
    "capital of France": ["d7", "d3", "d1", "d9", "d2"],
    "capital of Italy": ["d4", "d4", "d5"],
}


def retrieve(question: Any) -> str:
    return json.dumps(RANKINGS.get(str(question), []))
