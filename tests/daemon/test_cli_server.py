"""`evalharness server start|status|stop`: the embedded server managed from the command line,
with exit codes scripts can rely on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.procs import Processes
from support.servers import bundled_binary, older_binary

from evalharness.core.embedded import ENV_SERVER_BINARY, EmbeddedServer, probe_binary


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


def test_status_names_the_binary_that_wrote_the_data_and_a_downgrade_exits_3(procs: Processes, state: Path) -> None:
    procs.env.pop(ENV_SERVER_BINARY, None)
    valkey = probe_binary(bundled_binary())
    status = procs.cli("server", "status")
    assert "data written by: none yet" in status.stdout
    assert f"binary: {valkey.describe()}" in status.stdout

    start = procs.cli("server", "start")
    assert start.returncode == 0, start.stderr
    client = redis.Redis.from_url(start.stdout.strip(), decode_responses=True)
    client.set("kept", "yes")
    client.close()
    assert procs.cli("server", "stop").returncode == 0
    status = procs.cli("server", "status")
    assert f"data written by: valkey-server {valkey.version} ({valkey.path})" in status.stdout

    older = {ENV_SERVER_BINARY: older_binary()}
    refused = procs.cli("server", "start", env=older)
    assert refused.returncode == 3
    assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
    assert f"{ENV_SERVER_BINARY} back to {valkey.path}" in refused.stderr
    assert "move the state directory" in refused.stderr
    status = procs.cli("server", "status", env=older)
    assert status.returncode == 1 and "binary: none usable" in status.stdout

    start = procs.cli("server", "start")
    assert start.returncode == 0, start.stderr
    client = redis.Redis.from_url(start.stdout.strip(), decode_responses=True)
    assert client.get("kept") == "yes"
    client.close()
