"""The metric families beyond the four text metrics, and the API a metric plug-in is written against.

A plug-in package declares an entry point in the ``evalharness.metrics`` group that names a
:class:`MetricDefinition` (or a list of them, or a function returning either); see
``docs/metrics.md``. The registry itself lives in :mod:`evalharness.core.scorers`.
"""

from __future__ import annotations

from .base import (
    ARGUMENT_TYPES,
    PROVIDER_KINDS,
    Argument,
    MetricContext,
    MetricDefinition,
    ScoreError,
    Scorer,
    define_metric,
)

ENTRY_POINT_GROUP = "evalharness.metrics"

__all__ = [
    "ARGUMENT_TYPES",
    "ENTRY_POINT_GROUP",
    "PROVIDER_KINDS",
    "Argument",
    "MetricContext",
    "MetricDefinition",
    "ScoreError",
    "Scorer",
    "define_metric",
]
