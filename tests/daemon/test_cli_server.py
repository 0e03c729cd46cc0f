"""`evalharness server start|status|stop`: the embedded server managed from the command line,
with exit codes scripts can rely on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.procs import Processes

from evalharness.core.embedded import EmbeddedServer


@pytest.fixture
def state(tmp_path: Path, procs: Processes) -> Iterator[Path]:
    """A private state directory for the CLI; its server is stopped whatever the test did."""
    path = tmp_path / "st"
    procs.env["EVALHARNESS_STATE_DIR"] = str(path)
    # EVALHARNESS_REDIS_URL stays set: the server commands manage the embedded server regardless
    yield path
    EmbeddedServer(path).stop()


def test_start_status_stop(procs: Processes, state: Path) -> None:
    status = procs.cli("server", "status")
    assert status.returncode == 1
    assert "not running" in status.stdout

    start = procs.cli("server", "start")
    assert start.returncode == 0, start.stderr
    url = start.stdout.strip()
    assert url == f"unix://{state.resolve()}/redis.sock"
    client = redis.Redis.from_url(url, decode_responses=True)
    assert client.ping()
    client.set("kept", "yes")
    pid = int(client.info("server")["process_id"])
    client.close()

    # a second start reuses the running server
    again = procs.cli("server", "start")
    assert again.returncode == 0 and again.stdout.strip() == url
    client = redis.Redis.from_url(url, decode_responses=True)
    assert int(client.info("server")["process_id"]) == pid
    client.close()

    status = procs.cli("server", "status")
    assert status.returncode == 0, status.stdout
    assert re.search(rf"running: pid {pid}\b", status.stdout)
    assert url in status.stdout and str(state.resolve()) in status.stdout

    stop = procs.cli("server", "stop")
    assert stop.returncode == 0 and "stopped" in stop.stdout
    status = procs.cli("server", "status")
    assert status.returncode == 1
    assert "not running" in status.stdout
    assert not Path(url.removeprefix("unix://")).exists()

    # stopping again is not an error; the data is still there on the next start
    stop = procs.cli("server", "stop")
    assert stop.returncode == 0 and "not running" in stop.stdout
    start = procs.cli("server", "start")
    assert start.returncode == 0 and start.stdout.strip() == url
    client = redis.Redis.from_url(url, decode_responses=True)
    assert client.get("kept") == "yes"
    client.close()


@pytest.mark.parametrize("problem", ["too-long", "not-a-directory"])
def test_an_unusable_state_dir_exits_3_with_the_reason(procs: Processes, tmp_path: Path, problem: str) -> None:
    if problem == "too-long":
        state_dir, reason = tmp_path / ("d" * 100), "too long"
    else:
        (tmp_path / "file").write_text("")
        state_dir, reason = tmp_path / "file" / "state", "Not a directory"
    done = procs.cli("server", "start", env={"EVALHARNESS_STATE_DIR": str(state_dir)})
    assert done.returncode == 3
    assert done.stderr.startswith("error: ")
    assert reason in done.stderr and "EVALHARNESS_STATE_DIR" in done.stderr
    assert "Traceback" not in done.stderr
