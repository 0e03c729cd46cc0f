"""Dependencies point one way: the engine and the workers never load the console's toolkit,
core imports neither the daemon nor the console, and the command line (``evalharness.cli``, the
only user of click besides the programs' own flag parsing) is at the edge: nothing imports it."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import evalharness.core
import evalharness.daemon
import evalharness.tui

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
    # (click itself may load here: httpx, the provider client, imports it for its own command line;
    # what core imports is checked below, statically)
    assert under("evalharness.cli", loaded) == []


# The programs other than `evalharness` parse their own flags with click where they start:
# evalharnessd (`python -m evalharness.daemon.master`, how supervisors and scripts start it) and
# evalharness-tui (its --serve page included). Nothing else outside the cli package may.
CLICK_ALLOWED = {"daemon/master.py", "tui/app.py", "tui/serve.py"}


def imported_names(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, relative ones resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def test_nothing_in_core_daemon_or_tui_imports_the_cli_or_click() -> None:
    offenders = []
    for pkg in (evalharness.core, evalharness.daemon, evalharness.tui):
        root = Path(pkg.__path__[0])
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            package = ".".join([pkg.__name__, *rel.parent.parts])
            where = f"{root.name}/{rel}"
            for name in imported_names(path, package):
                if name == "evalharness.cli" or name.startswith("evalharness.cli."):
                    offenders.append(f"{where} imports {name}")
                if name.split(".")[0] == "click" and where not in CLICK_ALLOWED:
                    offenders.append(f"{where} imports {name}")
    assert offenders == []


def test_loading_the_daemon_loads_no_cli_and_no_click_but_for_evalharnessd() -> None:
    daemon = sorted(f"evalharness.daemon.{m.name}" for m in pkgutil.iter_modules(evalharness.daemon.__path__))
    assert {"evalharness.daemon.worker", "evalharness.daemon.common", "evalharness.daemon.master"} <= set(daemon)
    loaded = loaded_after_importing(*(m for m in daemon if m != "evalharness.daemon.master"))
    assert under("evalharness.cli", loaded) == []
    assert under("click", loaded) == []
    assert under("evalharness.cli", loaded_after_importing("evalharness.daemon.master", "evalharness.tui.app")) == []


# a worker process is `python -m evalharness.daemon.worker` (or `evalharness work`); the master is evalharnessd
@pytest.mark.parametrize("module", ["evalharness.daemon.worker", "evalharness.cli.main", "evalharness.daemon.master"])
def test_worker_processes_do_not_load_textual(module: str) -> None:
    loaded = loaded_after_importing(module)
    assert module in loaded
    assert under("textual", loaded) == []
    assert under("evalharness.tui", loaded) == []


YAML_PROBE = """
import json, sys
from pathlib import Path
from evalharness.cli import run  # everything `evalharness run` imports
from evalharness.core.datasets import load_dataset
Path(sys.argv[1]).write_text('{"id": "a", "input": "x", "expected_output": "x"}\\n')
load_dataset(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def test_a_run_of_a_json_lines_dataset_does_not_load_pyyaml(tmp_path: Path) -> None:
    # importing PyYAML takes about 10 ms of every start; a YAML dataset loads it when it is read
    data = tmp_path / "d.jsonl"
    done = subprocess.run([sys.executable, "-c", YAML_PROBE, str(data)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert under("yaml", set(json.loads(done.stdout))) == []
