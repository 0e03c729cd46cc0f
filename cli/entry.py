"""The ``evalharness`` program's entry point: the CLI, then an immediate exit.

Once a command has done its work (a run's report is written and printed) nothing is left for
the interpreter's own shutdown to do but tear down every loaded module and object, which costs
a run of the full CLI a noticeable part of a second (more on a busy machine).  The streams and
log handlers are flushed and the process ends with the command's exit status."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable


def main(cli_main: Callable[[], None] | None = None) -> None:
    """Run ``cli_main`` (the CLI's ``main``; given when ``python -m evalharness.cli.main`` runs
    it, so the module is not imported a second time) and end the process with its status."""
    if cli_main is None:
        from .main import main as cli_main
    try:
        cli_main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # what the interpreter does with SystemExit("message")
            print(exc.code, file=sys.stderr)
            code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe (`evalharness ... | head`)
        code = code or 1
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
