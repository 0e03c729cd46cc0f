"""The bundled example: a 200-question dataset and a simulated LLM to evaluate against it."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_DATASET = Path(__file__).with_name("example.jsonl")
EXAMPLE_SUT = "evalharness.core.examples.sim:answer"
EXAMPLE_HTTP_SUT = "evalharness.core.examples.http_sut:answer"
