"""The SUT's fingerprint and loader: what the fingerprint covers, that changed code is imported
afresh while older versions stay available by fingerprint, and the sync pool's call count."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalharness.core.errors import SutError
from evalharness.core.sut import (
    CountingThreadPool,
    SutLoader,
    call_sut,
    source_fingerprint,
    sut_scope,
    sync_calls_unfinished,
)

_names = itertools.count()


@pytest.fixture
def modname(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A module name no other test uses, importable from ``tmp_path``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"ehsut{next(_names)}"
    yield name
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fingerprint_of(loader: SutLoader, path: str) -> str:
    return loader.load(path).fingerprint


def test_the_same_source_in_two_places_has_the_same_fingerprint_and_other_source_another(
    tmp_path: Path, modname: str
) -> None:
    a = write(tmp_path / "a" / f"{modname}.py", "def answer(x):\n    return x\n")
    b = write(tmp_path / "b" / f"{modname}.py", "def answer(x):\n    return x\n")
    c = write(tmp_path / "c" / f"{modname}.py", "def answer(x):\n    return x.upper()\n")
    fps = []
    for path in (a, b, c):
        module = type(sys)(modname)
        module.__file__ = str(path)
        scope = sut_scope(module)
        assert scope.files == (path.resolve(),) and scope.names == (f"{modname}.py",)
        fps.append(source_fingerprint(scope))
    assert fps[0] == fps[1] != fps[2]
    assert fps[0].startswith("sha256:") and len(fps[0]) == len("sha256:") + 16


def test_a_package_sut_covers_every_py_file_of_its_top_level_package(tmp_path: Path, modname: str) -> None:
    pkg = tmp_path / modname
    write(pkg / "__init__.py", "")
    write(pkg / "bot.py", "from .prompts import PROMPT\n\ndef answer(x):\n    return PROMPT + x\n")
    prompts = write(pkg / "prompts.py", "PROMPT = 'a: '\n")
    write(pkg / "__pycache__" / "junk.py", "ignored")
    write(pkg / ".hidden" / "x.py", "ignored")
    write(pkg / "notes.txt", "not code")
    loader = SutLoader()
    code = loader.load(f"{modname}.bot:answer")
    assert code.scope.names == (f"{modname}/__init__.py", f"{modname}/bot.py", f"{modname}/prompts.py")
    assert code.func("x") == "a: x"
    before = code.fingerprint

    # a sibling module the SUT imports changes: new fingerprint, new code
    prompts.write_text("PROMPT = 'b: '\n")
    again = loader.load(f"{modname}.bot:answer")
    assert again.fingerprint != before and again.func("x") == "b: x"

    # a file added to the package changes it too
    write(pkg / "extra.py", "X = 1\n")
    assert loader.load(f"{modname}.bot:answer").fingerprint != again.fingerprint


def test_an_installed_or_evalharness_module_is_covered_by_its_own_file() -> None:
    import evalharness.core.examples.http_sut as example

    scope = sut_scope(example)
    assert scope.files == (Path(example.__file__).resolve(),)  # type: ignore[arg-type]
    assert scope.names == ("http_sut.py",)


def test_a_declared_fingerprint_wins_over_the_source(tmp_path: Path, modname: str) -> None:
    write(tmp_path / f"{modname}.py", "__evalharness_fingerprint__ = 'model-v7'\n\ndef answer(x):\n    return x\n")
    assert fingerprint_of(SutLoader(), f"{modname}:answer") == "declared:model-v7"


def test_an_edit_of_the_same_size_at_once_is_imported_and_old_versions_stay_loaded(
    tmp_path: Path, modname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # the first import leaves a .pyc, as usual
    sut = write(tmp_path / f"{modname}.py", "def answer(x):\n    return 'aaaa'\n")
    loader = SutLoader()
    old = loader.load(f"{modname}:answer")
    assert old.func(None) == "aaaa"
    # same length, within the same second: the bytecode cache would serve the old code
    sut.write_text("def answer(x):\n    return 'bbbb'\n")
    new = loader.load(f"{modname}:answer")
    assert new.func(None) == "bbbb" and new.fingerprint != old.fingerprint
    # unchanged on disk: the same loaded version, not another import
    assert loader.load(f"{modname}:answer") is new
    # a job that names the old version gets it while it is loaded; the function object of a
    # job still running is untouched
    assert loader.load(f"{modname}:answer", wanted=old.fingerprint) is old
    assert old.func(None) == "aaaa"
    # an unknown fingerprint gets the code on disk
    assert loader.load(f"{modname}:answer", wanted="sha256:0000000000000000") is new


def test_a_broken_edit_is_an_error_and_the_fix_loads(tmp_path: Path, modname: str) -> None:
    sut = write(tmp_path / f"{modname}.py", "def answer(x):\n    return 'ok'\n")
    loader = SutLoader()
    loader.load(f"{modname}:answer")
    sut.write_text("def answer(x)\n    return 'oops'\n")
    with pytest.raises(SutError, match="SyntaxError"):
        loader.load(f"{modname}:answer")
    sut.write_text("def answer(x):\n    return 'fixed'\n")
    assert loader.load(f"{modname}:answer").func(None) == "fixed"


def test_the_loader_keeps_a_bounded_number_of_versions(tmp_path: Path, modname: str) -> None:
    sut = tmp_path / f"{modname}.py"
    loader = SutLoader(keep=2)
    fps = []
    for i in range(4):
        sut.write_text(f"def answer(x):\n    return {'x' * (i + 1)!r}\n")
        fps.append(loader.load(f"{modname}:answer").fingerprint)
    assert loader.load(f"{modname}:answer", wanted=fps[0]).fingerprint == fps[3]
    assert loader.load(f"{modname}:answer", wanted=fps[2]).fingerprint == fps[2]


def test_the_counting_pool_counts_only_calls_not_idle_threads() -> None:
    pool = CountingThreadPool(max_workers=4)
    release = threading.Event()
    started = threading.Event()

    def slow() -> int:
        started.set()
        release.wait(10)
        return 1

    assert pool.submit(lambda: 2).result() == 2
    assert pool.unfinished == 0  # a thread exists, idle
    future = pool.submit(slow)
    assert started.wait(5)
    assert pool.unfinished == 1
    release.set()
    assert future.result() == 1 and pool.unfinished == 0
    pool.shutdown()


async def test_a_sync_sut_call_is_counted_while_it_runs() -> None:
    release = threading.Event()

    def answer(x: str) -> str:
        release.wait(10)
        return x

    task = asyncio.create_task(call_sut(answer, "hi"))
    for _ in range(500):
        if sync_calls_unfinished() == 1:
            break
        await asyncio.sleep(0.01)
    assert sync_calls_unfinished() == 1
    release.set()
    assert await task == "hi"
    assert sync_calls_unfinished() == 0


def test_a_module_imported_before_the_loader_saw_it_is_read_again_from_its_file(tmp_path: Path, modname: str) -> None:
    sut = write(tmp_path / f"{modname}.py", "def answer(x):\n    return 'imported at start'\n")
    importlib.import_module(modname)  # as a worker's --import does
    sut.write_text("def answer(x):\n    return 'edited since'\n")
    code = SutLoader().load(f"{modname}:answer")
    # the fingerprint is of the file, so the code must be the file's too
    assert code.func(None) == "edited since"
