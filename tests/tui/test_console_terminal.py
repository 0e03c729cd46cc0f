"""The console where operators run it: in a pseudo-terminal that goes away (a dropped SSH
session), and served to a browser with ``--serve``. Real processes, a real pty, a real browser."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
from support.chromium import chromium_command, ensure_chromium
from test_console_e2e import Terminal

from evalharness.tui.serve import exposure_warning

ROOT = Path(__file__).resolve().parents[2]
TUI = str(Path(sys.executable).parent / "evalharness-tui")


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: set[int], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still running after {within:g}s: {sorted(p for p in pids if alive(p))}")
        time.sleep(0.05)  # polling /proc with a deadline


# Starts the console the way ``nohup`` would have its parent leave it: hangups ignored and blocked,
# dispositions a program inherits across exec.
IGNORING_HANGUPS = (
    "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP}); os.execv(sys.argv[1], sys.argv[1:])"
)


def start_console(
    redis_url: str, child_env: dict[str, str], cwd: Path, *, hangups_ignored: bool = False
) -> pexpect.spawn:
    command, args = TUI, ["--redis-url", redis_url]
    if hangups_ignored:
        command, args = sys.executable, ["-c", IGNORING_HANGUPS, TUI, *args]
    console = pexpect.spawn(
        command,
        args,
        env={**child_env, "TERM": "xterm-256color"},
        dimensions=(24, 80),
        encoding="utf-8",
        codec_errors="replace",
        cwd=str(cwd),
    )
    Terminal(console).wait_for(r"redis ok")
    return console


@pytest.mark.slow
@pytest.mark.parametrize("inherited", ["default", "hangups ignored"])
@pytest.mark.parametrize("how", ["pty closed", "SIGHUP"])
def test_the_console_exits_when_its_terminal_goes_away(
    redis_url: str, child_env: dict[str, str], tmp_path: Path, how: str, inherited: str
) -> None:
    console = start_console(redis_url, child_env, tmp_path, hangups_ignored=inherited == "hangups ignored")
    pid = console.pid
    family = {pid} | children_of(pid)
    try:
        if how == "pty closed":
            # What sshd does when the connection drops: the master side of the pty is closed (through
            # the file object that owns it, so nothing closes the number again once it is reused).
            console.ptyproc.fileobj.close()
            console.child_fd = -1
        else:
            os.kill(pid, signal.SIGHUP)
        wait_gone(family, 15, "the console and what it started")
    finally:
        for p in family:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        console.wait() if console.child_fd == -1 else console.close(force=True)


async def draw_in_browser(browser: str, profile: Path, url: str, within: float = 60.0) -> bytes:
    """Open ``url`` in headless Chromium over its DevTools protocol, wait (in real time) until the
    page says the console's first output arrived and the console's top bar is drawn, and return a
    PNG screenshot."""
    import aiohttp

    command = chromium_command(browser, profile, "--remote-debugging-port=0", "--window-size=1280,800", "about:blank")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        deadline = time.monotonic() + within
        active = profile / "DevToolsActivePort"
        while not active.exists() or not active.read_text().strip():
            if time.monotonic() > deadline:
                pytest.fail("Chromium never opened its DevTools port")
            await asyncio.sleep(0.1)  # polling for the browser's port file with a deadline
        port = int(active.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json") as reply:
                targets = await reply.json(content_type=None)
            page = next(t for t in targets if t.get("type") == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1_000_000))

                async def call(method: str, **params: object) -> dict[str, object]:
                    n = next(ids)
                    await ws.send_json({"id": n, "method": method, "params": params})
                    while True:
                        message = await ws.receive_json(timeout=within)
                        if message.get("id") == n:
                            return dict(message.get("result") or {})

                async def evaluate(expression: str) -> object:
                    result = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                    return dict(result.get("result") or {}).get("value")  # type: ignore[call-overload]

                await call("Page.navigate", url=url)
                while "-first-byte" not in str(await evaluate("document.body.className")):
                    if time.monotonic() > deadline:
                        pytest.fail("the page never received the console's output")
                    await asyncio.sleep(0.2)  # polling the page with a deadline
                # The console's first frames arrive over the next moments: the picture is taken once
                # two in a row are the same (the page has settled), half a second apart.
                previous = b""
                while True:
                    shot = base64.b64decode(str((await call("Page.captureScreenshot", format="png"))["data"]))
                    if shot == previous:
                        return shot
                    if time.monotonic() > deadline:
                        pytest.fail("the page never settled")
                    previous = shot
                    await asyncio.sleep(0.5)  # polling the picture with a deadline
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serving_off_loopback_warns_that_the_page_can_act() -> None:
    assert exposure_warning("127.0.0.1", 8566, False) is None
    assert exposure_warning("localhost", 8566, False) is None
    warning = exposure_warning("0.0.0.0", 8566, False)
    assert warning is not None and "full control" in warning and "--read-only" in warning
    read_only = exposure_warning("10.0.0.5", 8566, True)
    assert read_only is not None and "cannot act" in read_only


def test_host_without_serve_is_refused(child_env: dict[str, str]) -> None:
    out = subprocess.run([TUI, "--host", "0.0.0.0"], env=child_env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--host and --port go with --serve" in out.stderr


@pytest.mark.slow
def test_serve_draws_the_console_in_a_browser(redis_url: str, child_env: dict[str, str], tmp_path: Path) -> None:
    browser = ensure_chromium()
    port = free_port()
    server = subprocess.Popen(
        [TUI, "--redis-url", redis_url, "--serve", "--port", str(port), "--host", "0.0.0.0"],
        env=child_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"--serve never listened: {server.communicate(timeout=5)}")
                time.sleep(0.1)  # polling the port with a deadline
        shot = tmp_path / "console-browser.png"
        shot.write_bytes(asyncio.run(draw_in_browser(browser, tmp_path / "profile", f"http://127.0.0.1:{port}/")))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("EH_SCREENSHOTS"):
            shutil.copy(shot, ROOT / "screenshots" / "console-browser.png")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            _, err = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            _, err = server.communicate()
    assert b"full control" in err  # bound to every address, it warned
