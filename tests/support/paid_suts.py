"""SUTs that report usage, for the cost, budget and cache tests.  Each call is noted in the file
EH_TEST_MARKS (one line per call), so a test can count the SUT calls."""

from __future__ import annotations

import asyncio
import os

from evalharness.core.examples.sim import respond
from evalharness.core.providers.usage import Usage, record_usage


def _mark(question: object) -> None:
    path = os.environ.get("EH_TEST_MARKS")
    if path:
        with open(path, "a") as marks:
            marks.write(f"{question}\n")


async def tokens(question: object) -> str:
    """Reports 1000 prompt and 500 completion tokens of model ``gpt-4o-mini-2024`` (priced by the
    test's config), after EH_TEST_SLEEP seconds (0.02 by default)."""
    _mark(question)
    await asyncio.sleep(float(os.environ.get("EH_TEST_SLEEP", "0.02")))
    record_usage(Usage(prompt_tokens=1000, completion_tokens=500, total_tokens=1500, calls=1, model="gpt-4o-mini-2024"))
    return respond(str(question))


async def reported(question: object) -> str:
    """Reports a cost of $0.01 per call, as a gateway that prices its calls does."""
    _mark(question)
    await asyncio.sleep(float(os.environ.get("EH_TEST_SLEEP", "0.02")))
    record_usage(Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cost=0.01, calls=1))
    return respond(str(question))


async def unpriced(question: object) -> str:
    """Reports tokens of a model no price names."""
    _mark(question)
    record_usage(Usage(prompt_tokens=7, completion_tokens=3, total_tokens=10, calls=1, model="mystery-1"))
    return respond(str(question))


def flaky_cached(question: object) -> str:
    """Fails for good on questions containing 'Japan' until EH_TEST_FIXED exists, else answers."""
    from pathlib import Path

    from evalharness.core import PermanentError

    _mark(question)
    if "Japan" in str(question) and not Path(os.environ["EH_TEST_FIXED"]).exists():
        raise PermanentError("not fixed yet")
    return respond(str(question))


def worse(question: object) -> str:
    """The example's answers, except a wrong one for every question about a capital."""
    if "capital" in str(question):
        return "I do not know"
    return respond(str(question))
