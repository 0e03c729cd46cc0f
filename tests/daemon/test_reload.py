"""`evalharnessd --reload`'s parts: which modules a worker reports, and which changes count."""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from evalharness.daemon.reload import ModuleFiles, ModuleWatcher, changed_files


def test_a_worker_reports_the_modules_it_imported_from_under_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ehreload_mine.py").write_text("X = 1\n")
    venv = tmp_path / ".venv" / "lib" / "site-packages"
    venv.mkdir(parents=True)
    (venv / "ehreload_installed.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(venv))
    monkeypatch.syspath_prepend(str(tmp_path))
    files = ModuleFiles(str(tmp_path))
    try:
        importlib.import_module("ehreload_mine")
        importlib.import_module("ehreload_installed")
        report = files.report()
    finally:
        sys.modules.pop("ehreload_mine", None)
        sys.modules.pop("ehreload_installed", None)
    mine = os.path.realpath(tmp_path / "ehreload_mine.py")
    # its own module, with the mtime it had when seen; not an installed package, not the stdlib
    assert report == {mine: os.stat(mine).st_mtime_ns}


def test_a_file_counts_as_changed_when_its_mtime_differs_or_it_is_gone() -> None:
    disk = {"/w/a.py": 10, "/w/b.py": 20}
    reported = {"/w/a.py": 10, "/w/b.py": 19, "/w/c.py": 5}
    assert changed_files(reported, disk.get) == ["/w/b.py", "/w/c.py"]
    assert changed_files({"/w/a.py": 10}, disk.get) == []


async def test_the_watcher_restarts_once_per_change_of_its_own_workers_files(aclient: Any, tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine.py", tmp_path / "theirs.py"
    mine.write_text("A = 1\n")
    theirs.write_text("B = 1\n")
    seen = {str(mine): mine.stat().st_mtime_ns}
    host = socket.gethostname()
    await aclient.hset(
        "eh:workers",
        mapping={
            "w1": json.dumps({"host": host, "pid": 101, "modules": seen}),
            # another master's worker, and a worker on another host: not this watcher's business
            "w2": json.dumps({"host": host, "pid": 202, "modules": {str(theirs): 1}}),
            "w3": json.dumps({"host": "elsewhere", "pid": 101, "modules": {str(theirs): 1}}),
        },
    )
    restarts: list[int] = []
    watcher = ModuleWatcher(aclient, "eh", lambda: {101}, lambda: restarts.append(1))
    assert await watcher.check() == [] and restarts == []

    os.utime(mine, ns=(mine.stat().st_atime_ns, mine.stat().st_mtime_ns + 1_000_000))
    assert await watcher.check() == [str(mine)]
    assert restarts == [1]
    # the same workers, the same change: a restart that did not happen is not asked again
    assert await watcher.check() == []
    assert restarts == [1]
