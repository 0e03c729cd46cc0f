"""How every evalharness program logs: one format on stderr, the level inherited by child
processes through the environment.  No dependencies, so the worker's thin entry can use it."""

from __future__ import annotations

import logging
import os
import sys

ENV_LOG_LEVEL = "EVALHARNESS_LOG_LEVEL"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``; child processes (workers) inherit it through the environment."""
    os.environ[ENV_LOG_LEVEL] = level
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=LOG_FORMAT, stream=sys.stderr)
