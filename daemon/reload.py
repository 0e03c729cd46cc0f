"""``evalharnessd --reload``, for development: restart the workers when a Python module they
imported from under the working directory changes (as ``uvicorn --reload`` or ``arq --watch``).

Workers started with ``EVALHARNESS_REPORT_MODULES=1`` list, in their heartbeat, the files of the
modules they imported from under their current directory, with each file's mtime when they first
saw it.  The master's watcher compares those with the files on disk once a second and, when one
changed, restarts the pools as SIGUSR1 does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.exceptions

from evalharness.core.keys import GlobalKeys

log = logging.getLogger("evalharness.reload")

ENV_REPORT_MODULES = "EVALHARNESS_REPORT_MODULES"
WATCH_EVERY = 1.0  # seconds between two looks at the files


def _installed(path: str) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in Path(path).parts)


class ModuleFiles:
    """The files of the modules this process imported from under ``root`` (installed packages
    in a virtualenv there excepted), each with its mtime when first seen."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.realpath(root or os.getcwd())
        self._seen: dict[str, str | None] = {}  # module name -> its file under root, or None
        self._mtimes: dict[str, int] = {}

    def report(self) -> dict[str, int]:
        for name, module in list(sys.modules.items()):
            if name in self._seen:
                continue
            file = getattr(module, "__file__", None)
            path = os.path.realpath(file) if isinstance(file, str) else None
            if path is None or not path.startswith(self.root + os.sep) or _installed(path):
                self._seen[name] = None
                continue
            self._seen[name] = path
            with contextlib.suppress(OSError):
                self._mtimes.setdefault(path, os.stat(path).st_mtime_ns)
        return dict(self._mtimes)


def report_modules_wanted() -> bool:
    return os.environ.get(ENV_REPORT_MODULES) == "1"


def changed_files(reported: dict[str, int], mtime: Callable[[str], int | None]) -> list[str]:
    """The reported files whose mtime on disk is not the one a worker imported (or that are gone)."""
    return sorted(f for f, seen in reported.items() if mtime(f) != seen)


def _shown(files: list[str]) -> str:
    return ", ".join(os.path.relpath(f) for f in files[:5]) + (" ..." if len(files) > 5 else "")


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class ModuleWatcher:
    """The master's ``reload`` loop: every ``every`` seconds, read the module reports of this
    master's live workers and call ``restart`` when one of their files changed."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        pids: Callable[[], set[int]],
        restart: Callable[[], None],
        every: float = WATCH_EVERY,
    ) -> None:
        self.client = client
        self.key = GlobalKeys(prefix).workers
        self.pids = pids
        self.restart = restart
        self.every = every
        self.host = socket.gethostname()
        # the change last acted on: a restart that did not happen (a configuration file that no
        # longer validates keeps the running workers) is not asked for again every second
        self._acted: tuple[frozenset[int], tuple[tuple[str, int | None], ...]] | None = None

    async def reported(self) -> dict[str, int]:
        """The files this master's live workers imported, with the mtime each saw.  Workers being
        replaced are not among ``pids``, so one change restarts the pools once."""
        mine = self.pids()
        files: dict[str, int] = {}
        for raw in await self.client.hvals(self.key):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                info = json.loads(raw)
                if info.get("host") != self.host or int(info["pid"]) not in mine:
                    continue
                for path, seen in (info.get("modules") or {}).items():
                    files[str(path)] = int(seen)
        return files

    async def check(self) -> list[str]:
        reported = await self.reported()
        changed = changed_files(reported, _mtime)
        if changed:
            seen = (frozenset(self.pids()), tuple((f, _mtime(f)) for f in changed))
            if seen == self._acted:
                return []
            self._acted = seen
            log.info("reload: %s changed; restarting the workers", _shown(changed))
            self.restart()
        return changed

    async def run(self, stop: asyncio.Event) -> None:
        log.info("reload: watching the modules the workers import from %s", os.getcwd())
        while not stop.is_set():
            try:
                await self.check()
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("reload: could not read the workers' modules (%s); trying again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
