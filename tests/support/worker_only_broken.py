"""A SUT module that imports in the producer but not in workers started with EH_BREAK_IMPORT=1,
as when workers run from another directory or environment."""

from __future__ import annotations

import os

if os.environ.get("EH_BREAK_IMPORT") == "1":
    raise ImportError("No module named 'secret_sdk' (simulated: missing in the workers' environment)")


def answer(question: object) -> str:
    return "x"
