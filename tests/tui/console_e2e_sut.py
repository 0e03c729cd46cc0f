"""A SUT for the console's end-to-end test: the example's answers, slowly, with every call's start
time appended to the file named by EH_TEST_CALLS so the test can tell when calls stop."""

from __future__ import annotations

import asyncio
import os
import random
import time

from evalharness.core.examples.sim import respond


async def answer(question: object) -> str:
    # One short append per call: blocking the loop this briefly is harmless in a test SUT.
    with open(os.environ["EH_TEST_CALLS"], "a") as calls:  # noqa: ASYNC230
        calls.write(f"{time.time()}\n")
    await asyncio.sleep(random.uniform(0.3, 0.6))
    return respond(str(question))
