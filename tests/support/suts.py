"""SUTs for eval-run tests."""

from __future__ import annotations

import asyncio
import os
import random

from evalharness.core.examples.sim import respond


async def steady(question: object) -> str:
    """The example's answers with latency from EH_TEST_LATENCY ("min,max"), no errors."""
    low, _, high = os.environ.get("EH_TEST_LATENCY", "0.01,0.03").partition(",")
    await asyncio.sleep(random.uniform(float(low), float(high or low)))
    return respond(str(question))


def steady_sync(question: object) -> str:
    return respond(str(question))


def not_text(question: object) -> int:
    return 42
