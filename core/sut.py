"""The system under test (SUT): a ``module:callable`` that takes a sample's input and returns
the output text, sync or async.  Producers and workers load it the same way, and both name the
code they loaded by its *fingerprint*, so a run is never scored against other code than its
producer sees (see ``docs/ARCHITECTURE.md``, "The SUT's fingerprint")."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import inspect
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

from .errors import SutError
from .jobs import PermanentError

SutFunc = Callable[[Any], Any]
P = ParamSpec("P")
T = TypeVar("T")

FINGERPRINT_ATTR = "__evalharness_fingerprint__"
_KEEP_VERSIONS = 4  # loaded versions of one SUT a process keeps for jobs that still name them


class CountingThreadPool(ThreadPoolExecutor):
    """A thread pool that knows how many of the calls given to it have not finished (queued or
    running).  Its idle threads are not busy: only this count says whether stopping the process
    now would abandon a call."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._count_lock = threading.Lock()
        self._unfinished = 0

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._count_lock:
            self._unfinished += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done()
            raise
        # a done callback also runs for a call cancelled before it started
        future.add_done_callback(lambda _: self._done())
        return future

    def _done(self) -> None:
        with self._count_lock:
            self._unfinished -= 1

    @property
    def unfinished(self) -> int:
        """Calls submitted that have not returned (or been cancelled) yet."""
        with self._count_lock:
            return self._unfinished


# Sync SUTs run here rather than in asyncio's default pool (min(32, cores + 4) threads), so a
# worker's --concurrency, not the core count, bounds how many calls run at once.
_SYNC_POOL = CountingThreadPool(max_workers=256, thread_name_prefix="sut")


def sync_calls_unfinished() -> int:
    """Sync SUT calls started in this process that have not returned yet."""
    return _SYNC_POOL.unfinished


class InvalidOutput(PermanentError):
    """The SUT returned something that is not text."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="invalid_output")


def _importable_cwd() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


# -- fingerprints ------------------------------------------------------------------------

FileStat = tuple[str, int, int, int]  # path, mtime_ns, size, inode


@dataclass(frozen=True)
class SutScope:
    """The source a SUT's fingerprint covers: its module's file or, for a module of a package
    of the user's own, every ``.py`` file of the top-level package.  ``dirs`` are watched too,
    so a file added to or removed from the package counts as a change."""

    files: tuple[Path, ...]  # sorted
    names: tuple[str, ...]  # each file's name relative to where the package sits: the same on every host
    dirs: tuple[Path, ...] = ()


def _installed(path: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def sut_scope(module: ModuleType) -> SutScope:
    """Which files make up the code of ``module``.  A package's files are all of its top-level
    package, because a SUT in a package usually imports its siblings; installed packages (and
    evalharness itself, whose example SUTs live in it) are covered by the module's own file, as
    they change only with an upgrade."""
    own = getattr(module, "__file__", None)
    own_path = Path(own).resolve() if own else None
    top = module.__name__.partition(".")[0]
    roots = [Path(p).resolve() for p in getattr(sys.modules.get(top), "__path__", None) or ()]
    if roots and top != "evalharness" and not any(_installed(r) for r in roots):
        found: dict[Path, str] = {}
        dirs: list[Path] = []
        for root in roots:
            for folder, subdirs, filenames in os.walk(root):
                subdirs[:] = sorted(d for d in subdirs if d != "__pycache__" and not d.startswith("."))
                here = Path(folder)
                dirs.append(here)
                for name in filenames:
                    if name.endswith(".py"):
                        file = here / name
                        found.setdefault(file, f"{top}/{file.relative_to(root).as_posix()}")
        if own_path is not None and own_path not in found:  # an extension module, say
            found[own_path] = f"{top}/{own_path.name}"
        ordered = sorted(found, key=lambda f: found[f])
        return SutScope(tuple(ordered), tuple(found[f] for f in ordered), tuple(sorted(dirs)))
    if own_path is None:
        return SutScope((), ())
    return SutScope((own_path,), (own_path.name,))


def scope_signature(scope: SutScope) -> tuple[FileStat, ...]:
    """What ``stat`` says of the scope's files and folders: cheap to read, and it changes when
    any of them is written, replaced, added or removed."""
    out: list[FileStat] = []
    for path in (*scope.files, *scope.dirs):
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), -1, -1, -1))
        else:
            out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def source_fingerprint(scope: SutScope) -> str:
    """``sha256:`` and 16 hex digits over the scope's file names (relative to their package)
    and contents, so the same code has the same fingerprint wherever it is checked out."""
    digest = hashlib.sha256()
    for path, name in zip(scope.files, scope.names, strict=True):
        digest.update(name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\0missing")
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()[:16]


def declared_fingerprint(func: object, module: ModuleType) -> str | None:
    """What the SUT says its version is: ``__evalharness_fingerprint__`` on the callable, else on
    its module (a string, for code whose behaviour the source alone does not fix)."""
    for holder in (func, module):
        value = getattr(holder, FINGERPRINT_ATTR, None)
        if value is not None:
            return "declared:" + str(value)
    return None


# -- loading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SutCode:
    """One loaded version of a SUT: the callable, the fingerprint of the code it came from, and
    the ``stat`` of that code's files when it was loaded."""

    path: str
    func: SutFunc
    fingerprint: str
    scope: SutScope
    signature: tuple[FileStat, ...]

    def changed_on_disk(self) -> bool:
        return scope_signature(self.scope) != self.signature


def _split(path: str) -> tuple[str, str]:
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise SutError(f"SUT must be given as module:callable (for example mypkg.bot:answer), got {path!r}")
    return module_name, attr


@contextlib.contextmanager
def _from_source() -> Iterator[None]:
    """Compile from the source, not from ``__pycache__``: a ``.pyc`` is matched to its source
    by whole-second mtime and size, so an edit of the same length within a second would load
    the old bytecode."""
    prefix, dont_write = sys.pycache_prefix, sys.dont_write_bytecode
    sys.pycache_prefix = os.path.join(os.sep, "nonexistent-evalharness-pycache", str(os.getpid()))
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.pycache_prefix, sys.dont_write_bytecode = prefix, dont_write


def _modules_in(scope: SutScope, names: set[str] | None = None) -> list[str]:
    """The imported modules (of ``names``, when given) whose file is one of the scope's."""
    # compared by device and inode: one stat per module instead of resolving every path (a
    # resolve costs a stat per component, and a producer has hundreds of modules loaded)
    files: set[tuple[int, int]] = set()
    for f in scope.files:
        with contextlib.suppress(OSError):
            st = os.stat(f)
            files.add((st.st_dev, st.st_ino))
    found: list[str] = []
    if not files:
        return found
    for name, mod in list(sys.modules.items()):
        if names is not None and name not in names:
            continue
        file = getattr(mod, "__file__", None)
        if not isinstance(file, str):
            continue
        try:
            st = os.stat(file)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in files:
            found.append(name)
    return found


def _import(path: str, fresh: SutScope | None) -> tuple[ModuleType, SutFunc]:
    module_name, attr = _split(path)
    _importable_cwd()
    if fresh is not None:
        # Forget the modules of the old version so the import below runs the new source; jobs
        # still running keep the function object (and so the modules) they already hold.
        for name in {module_name, *_modules_in(fresh)}:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
    try:
        with _from_source() if fresh is not None else contextlib.nullcontext():
            obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise SutError(
                f"SUT {path!r}: no module named {exc.name!r} (searched the current directory "
                f"{os.getcwd()} and PYTHONPATH)"
            ) from None
        raise SutError(f"SUT {path!r}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise SutError(f"SUT {path!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    module = obj
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SutError(f"SUT {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise SutError(f"SUT {path!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    func: SutFunc = obj
    return module, func


class SutLoader:
    """The SUTs this process loaded, by path and by fingerprint.

    ``load`` returns the version a job asks for when it is still loaded, and otherwise the code
    on disk now: a ``stat`` of the SUT's files tells whether they changed since they were
    imported (hashing happens only then), and changed code is imported afresh."""

    def __init__(self, keep: int = _KEEP_VERSIONS) -> None:
        self.keep = keep
        self._current: dict[str, SutCode] = {}
        self._versions: dict[str, OrderedDict[str, SutCode]] = {}
        self._lock = threading.Lock()

    def load(self, path: str, wanted: str | None = None) -> SutCode:
        """The SUT ``path`` with fingerprint ``wanted`` if this process has it loaded, else the
        current code on disk (imported again when it changed).  Raises :class:`SutError`."""
        if _is_adapter(path):
            return _adapter_code(path, wanted)
        with self._lock:
            versions = self._versions.setdefault(path, OrderedDict())
            if wanted is not None and wanted in versions:
                versions.move_to_end(wanted)
                return versions[wanted]
            current = self._current.get(path)
            if current is not None and not current.changed_on_disk():
                return current
            code = self._load(path, current)
            self._current[path] = code
            versions[code.fingerprint] = code
            versions.move_to_end(code.fingerprint)
            while len(versions) > self.keep:
                versions.popitem(last=False)
            return code

    def _load(self, path: str, previous: SutCode | None) -> SutCode:
        fresh = None if previous is None else previous.scope
        for _ in range(3):
            before = set(sys.modules)
            module, func = _import(path, fresh)
            scope = sut_scope(module)
            if fresh is None and _modules_in(scope, before):
                # Some of its modules were imported before this loader saw them (a worker's
                # --import, say): they may be older than the files they are hashed from.
                fresh = scope
                continue
            signature = scope_signature(scope)
            fingerprint = declared_fingerprint(func, module) or source_fingerprint(scope)
            code = SutCode(path, func, fingerprint, scope, signature)
            if not code.changed_on_disk():
                return code
            fresh = scope  # written while we read it: read it again
        return code

    def forget(self) -> None:
        with self._lock:
            self._current.clear()
            self._versions.clear()
        with _ADAPTER_LOCK:
            _ADAPTERS.clear()
            _ADAPTER_VERSIONS.clear()


SUTS = SutLoader()


def _is_adapter(path: str) -> bool:
    if not path.startswith(("openai:", "http")):
        return False  # a module:callable; the adapters (and the HTTP client) need not load
    from .providers.adapters import is_adapter

    return is_adapter(path)


_ADAPTERS: dict[tuple[str | None, ...], SutCode] = {}
_ADAPTER_VERSIONS: dict[str, OrderedDict[str, SutCode]] = {}
_ADAPTER_LOCK = threading.Lock()


def _adapter_code(path: str, wanted: str | None = None) -> SutCode:
    """An adapter SUT (``openai:MODEL``, ``http:URL``): its settings come from the configuration
    file, whose ``stat`` stands in for the source's, and from the environment.  As for code, a
    version this process built is kept by fingerprint, so the samples of a run keep the settings
    it started with when the file is edited during the run."""
    with _ADAPTER_LOCK:
        versions = _ADAPTER_VERSIONS.setdefault(path, OrderedDict())
        if wanted is not None and wanted in versions:
            versions.move_to_end(wanted)
            return versions[wanted]
        code = _current_adapter(path)
        versions[code.fingerprint] = code
        versions.move_to_end(code.fingerprint)
        while len(versions) > _KEEP_VERSIONS:
            versions.popitem(last=False)
        return code


def _current_adapter(path: str) -> SutCode:
    from .config import ENV_CONFIG, process_config, process_config_path
    from .errors import ConfigError
    from .providers.adapters import adapter
    from .providers.settings import ENV_BASE_URL

    cache_key = (path, os.getcwd(), os.environ.get(ENV_CONFIG), os.environ.get(ENV_BASE_URL))
    known = _ADAPTERS.get(cache_key)
    if known is not None and not known.changed_on_disk():
        return known
    try:
        config = process_config()
    except ConfigError as exc:
        raise SutError(f"SUT {path!r}: {exc}") from None
    func, fingerprint = adapter(path, config)
    # the file's stat stands in for a source's, also while it is absent: creating it is a change
    file = (config.path or process_config_path()).resolve()
    scope = SutScope((file,), (file.name,))
    code = SutCode(path, func, fingerprint, scope, scope_signature(scope))
    _ADAPTERS[cache_key] = code
    return code


def load_sut_code(path: str, wanted: str | None = None) -> SutCode:
    """The SUT ``path`` as :meth:`SutLoader.load` gives it, from this process's loader."""
    return SUTS.load(path, wanted)


def load_sut(path: str) -> SutFunc:
    """Import ``module:callable`` (the current directory and ``PYTHONPATH`` are searched, as for
    ``python -m``), or import it again when its source changed since.  Raises :class:`SutError`
    saying what is wrong."""
    return SUTS.load(path).func


def sut_fingerprint(path: str) -> str:
    """The fingerprint of the SUT ``path`` as it is on disk now (loading it if needed)."""
    return SUTS.load(path).fingerprint


@cache
def _takes_key(func: SutFunc) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "idempotency_key" or p.kind is p.VAR_KEYWORD for p in params)


async def call_sut(func: SutFunc, sample_input: Any, idempotency_key: str | None = None) -> str:
    """Call the SUT once: async functions are awaited, sync ones run in a thread so they never
    block the event loop.  A SUT with an ``idempotency_key`` parameter receives the job's key,
    to pass on to a provider that deduplicates.  The output must be text."""
    kwargs: dict[str, Any] = {}
    if idempotency_key is not None and _takes_key(func):
        kwargs["idempotency_key"] = idempotency_key
    if inspect.iscoroutinefunction(func):
        output = await func(sample_input, **kwargs)
    else:
        output = await asyncio.get_running_loop().run_in_executor(_SYNC_POOL, partial(func, sample_input, **kwargs))
        if inspect.isawaitable(output):
            output = await output
    if not isinstance(output, str):
        raise InvalidOutput(f"the SUT returned {type(output).__name__}, expected str (the output text)")
    return output
