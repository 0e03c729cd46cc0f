"""A simulated LLM for the demo and the tests: answers arithmetic and capital-city questions
with real latency, occasional 429s and transient errors, and a deterministic mix of exact,
verbose and wrong answers.

Tune it with environment variables (read at each call):

* ``EVALHARNESS_SIM_LATENCY`` – ``"min,max"`` seconds (default ``0.05,0.5``)
* ``EVALHARNESS_SIM_RATE_LIMIT`` – probability of a 429 (default ``0.03``)
* ``EVALHARNESS_SIM_ERRORS`` – probability of a transient error (default ``0.02``)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
from typing import Any

from ..jobs import RateLimited

CAPITALS = {
    "France": "Paris",
    "Italy": "Rome",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Canada": "Ottawa",
    "Egypt": "Cairo",
    "Norway": "Oslo",
    "Chile": "Santiago",
    "Vietnam": "Hanoi",
}

_ARITH = re.compile(r"What is (-?\d+) ([+\-*]) (-?\d+)\?")
_CAPITAL = re.compile(r"What is the capital of (\w+)\?")


class UpstreamError(RuntimeError):
    """A transient provider failure (HTTP 5xx)."""


def _bucket(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100


def solve(question: str) -> str:
    """The right answer to a question from the example dataset."""
    m = _ARITH.fullmatch(question)
    if m:
        a, op, b = int(m[1]), m[2], int(m[3])
        return str(a + b if op == "+" else a - b if op == "-" else a * b)
    m = _CAPITAL.fullmatch(question)
    if m and m[1] in CAPITALS:
        return CAPITALS[m[1]]
    return "I don't know."


def respond(question: str) -> str:
    """Deterministic for a question: 70% exact, 20% verbose (right but wrapped), 10% wrong."""
    answer = solve(question)
    bucket = _bucket(question)
    if bucket < 70:
        return answer
    if bucket < 90:
        return f"The answer is {answer}."
    return answer + "0" if answer[-1:].isdigit() else "Atlantis"


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def _latency() -> tuple[float, float]:
    raw = os.environ.get("EVALHARNESS_SIM_LATENCY", "0.05,0.5")
    low, _, high = raw.partition(",")
    return float(low), float(high or low)


async def answer(question: Any) -> str:
    """The async SUT: ``evalharness.core.examples.sim:answer``."""
    low, high = _latency()
    await asyncio.sleep(random.uniform(low, high))
    roll = random.random()
    limited = _float_env("EVALHARNESS_SIM_RATE_LIMIT", 0.03)
    if roll < limited:
        raise RateLimited(retry_after=0.5, message="429 Too Many Requests (simulated)")
    if roll < limited + _float_env("EVALHARNESS_SIM_ERRORS", 0.02):
        raise UpstreamError("503 Service Unavailable (simulated)")
    return respond(str(question))


def answer_sync(question: Any) -> str:
    """The same SUT as a blocking function (runs in a worker's thread pool)."""
    return asyncio.run(answer(question))
