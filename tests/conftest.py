"""Shared fixtures: one real Redis/Valkey server per test session, started through the same
embedded-server resolver users get, and a clean database for every test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from support.procs import Processes

from evalharness.core.connection import async_client
from evalharness.core.embedded import EmbeddedServer

if TYPE_CHECKING:
    from support.inproc import Workers


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    state = tmp_path_factory.mktemp("state")
    server = EmbeddedServer(state)
    server.ensure()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> str:
    url = redis_server.url
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    monkeypatch.setenv("EVALHARNESS_REDIS_URL", url)
    return url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client of the test's Redis with decoded (str) replies."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def aclient(redis_url: str) -> AsyncIterator[object]:
    client = async_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def child_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for child processes (workers, daemon, CLI) of a test."""
    env = dict(os.environ)
    env["EVALHARNESS_REDIS_URL"] = redis_url
    env["EVALHARNESS_STATE_DIR"] = str(tmp_path / "state")
    tests_dir = str(Path(__file__).parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tests_dir, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[Workers]:
    """Workers run in the test process (support.inproc), stopped when the test ends."""
    from support.inproc import Workers  # the worker's modules load only for the tests that use it

    p = Workers(redis_url)
    yield p
    await p.stop()


@pytest.fixture
def procs(child_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    p = Processes(child_env, tmp_path)
    yield p
    p.stop_all()
