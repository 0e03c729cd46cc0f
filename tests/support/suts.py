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


def marking(question: object) -> str:
    """Notes each call in the file EH_TEST_MARKS (so a test can see progress), then takes
    EH_TEST_SLEEP seconds (0.2 by default) in a plain thread that no signal can interrupt."""
    import time

    with open(os.environ["EH_TEST_MARKS"], "a") as marks:
        marks.write(f"{question}\n")
    time.sleep(float(os.environ.get("EH_TEST_SLEEP", "0.2")))
    return respond(str(question))


def broken_until_fixed(question: object) -> str:
    """Fails about one question in four, for good, until the file EH_TEST_FIXED exists."""
    import zlib
    from pathlib import Path

    from evalharness.core import PermanentError

    if zlib.crc32(str(question).encode()) % 4 == 0 and not Path(os.environ["EH_TEST_FIXED"]).exists():
        raise PermanentError("not fixed yet")
    return respond(str(question))


async def counted_slow(question: object) -> str:
    """Logs each call's start (to EH_TEST_CALLS), then answers after EH_TEST_LATENCY seconds."""
    import time
    from pathlib import Path

    with Path(os.environ["EH_TEST_CALLS"]).open("a") as fh:  # noqa: ASYNC230 (a tiny local append)
        fh.write(f"{time.time()}\n")
    await asyncio.sleep(float(os.environ.get("EH_TEST_LATENCY", "2")))
    return respond(str(question))


async def echo(question: object) -> str:
    """The input as the output, so a test's markers reach the metrics (a judge prompt)."""
    return str(question)


async def spans(question: object) -> str:
    """Notes each call's start and end (epoch seconds) in the file EH_TEST_SPANS, after
    EH_TEST_LATENCY seconds (0.05 by default)."""
    import time
    from pathlib import Path

    started = time.time()
    await asyncio.sleep(float(os.environ.get("EH_TEST_LATENCY", "0.05")))
    with Path(os.environ["EH_TEST_SPANS"]).open("a") as fh:  # noqa: ASYNC230 (a tiny local append)
        fh.write(f"{started} {time.time()}\n")
    return respond(str(question))
