"""The ``evalharness`` command run inside the test process: the same ``main()`` a process runs
(its error handling and exit codes included), without paying an interpreter start per call.
For tests where the command is how a user looks at or acts on state, not the behaviour of a
process of its own (signals, `run`, `work`, the server)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

_lock = threading.Lock()


def _run(args: tuple[str, ...], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    from evalharness.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    code: int = 0
    with _lock:
        try:
            os.environ.update(env)  # never cleared: a job running on another thread may read it
            os.chdir(cwd)
            sys.argv = ["evalharness", *args]
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = saved_argv
            os.chdir(saved_cwd)
            for name in set(os.environ) - set(saved_env):
                del os.environ[name]
            os.environ.update(saved_env)
    return subprocess.CompletedProcess(["evalharness", *args], code, out.getvalue(), err.getvalue())


def cli_here(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``evalharness ARGS`` with ``env`` and ``cwd``; from an async test too (on a thread of
    its own, since the command runs its own event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(args, env, cwd)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_run, args, env, cwd).result(timeout=120)


async def acli_here(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """:func:`cli_here` that leaves the test's event loop running (a worker in-process goes on)."""
    return await asyncio.to_thread(_run, args, env, cwd)
