"""Dependencies point one way: the engine and the workers never load the console's toolkit,
and core imports neither the daemon nor the console."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import evalharness.core

CORE_MODULES = sorted(f"evalharness.core.{m.name}" for m in pkgutil.iter_modules(evalharness.core.__path__))

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_importing(*modules: str) -> set[str]:
    """Modules present in a fresh interpreter after importing ``modules``."""
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def under(package: str, loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m == package or m.startswith(package + "."))


def test_core_loads_neither_textual_nor_the_daemon_nor_the_console() -> None:
    for name in ("queue", "evalrun", "report", "scorers", "datasets", "jobs", "embedded", "config"):
        assert f"evalharness.core.{name}" in CORE_MODULES
    loaded = loaded_after_importing("evalharness.core", *CORE_MODULES)
    assert set(CORE_MODULES) <= loaded
    assert under("textual", loaded) == []
    assert under("evalharness.daemon", loaded) == []
    assert under("evalharness.tui", loaded) == []


# a worker process is `python -m evalharness.daemon.worker` (or `evalharness work`); the master is evalharnessd
@pytest.mark.parametrize("module", ["evalharness.daemon.worker", "evalharness.cli.main", "evalharness.daemon.master"])
def test_worker_processes_do_not_load_textual(module: str) -> None:
    loaded = loaded_after_importing(module)
    assert module in loaded
    assert under("textual", loaded) == []
    assert under("evalharness.tui", loaded) == []
