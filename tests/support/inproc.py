"""A worker run inside the test process: the same :class:`Worker` a worker process runs, without
the process (no signal handlers, no exit).  For the retry, timeout, limiter, checkpoint and batch
semantics; signals, SIGKILL, the watchdog and exit code 70 need a real process (support.procs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from evalharness.daemon.worker import Worker, WorkerOptions, import_job_modules

IMPORTS = ("support.testjobs",)


def make_worker(
    url: str, *queues: str, prefix: str = "eh", imports: tuple[str, ...] = IMPORTS, **options: Any
) -> Worker:
    import_job_modules(imports)
    return Worker(url, prefix, WorkerOptions(queues=queues or ("t",), **options).validate())


async def burst(url: str, *queues: str, deadline: float = 60.0, **options: Any) -> Worker:
    """Run a worker until none of its queues has a ready, delayed or running job; return it."""
    worker = make_worker(url, *queues, burst=True, **options)
    code = await asyncio.wait_for(worker.run(), deadline)
    assert code == 0, f"the worker ended with {code} ({worker.stop_reason})"
    return worker


@contextlib.asynccontextmanager
async def running(url: str, *queues: str, **options: Any) -> AsyncIterator[Worker]:
    """A worker serving ``queues`` while the block runs; stopped (gracefully) when it ends."""
    worker = make_worker(url, *queues, **options)
    task = asyncio.create_task(worker.run(), name="in-process worker")
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


class Workers:
    """In-process workers started as a test goes, all stopped (gracefully) at its end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.started: list[tuple[Worker, asyncio.Task[int]]] = []

    def start(self, *queues: str, n: int = 1, **options: Any) -> list[Worker]:
        out = []
        for _ in range(n):
            worker = make_worker(self.url, *queues, **options)
            self.started.append((worker, asyncio.create_task(worker.run(), name=f"worker {worker.id}")))
            out.append(worker)
        return out

    async def stop(self) -> None:
        for worker, _ in self.started:
            worker.request_stop()
        await asyncio.wait_for(asyncio.gather(*(task for _, task in self.started)), 30)
