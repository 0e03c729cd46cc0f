"""Headless Chromium for the tests that open the HTML report: found on PATH, or installed from
the system's packages (Debian's ``chromium``) when the suite runs as root on a fresh machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

NAMES = ("chromium", "chromium-browser")
# No first-run page, no sync, no component or field-trial downloads: the browser must not reach
# the network by itself, so any request the proxy sees comes from the page.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
    "--no-service-autorun",
    "--disable-component-extensions-with-background-pages",
    "--disable-background-mode",
    "--disable-field-trial-config",
    "--dns-prefetch-disable",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,PreconnectToSearch,AccountConsistency",
)
# Even so the browser opens a connection or two to its vendor's sign-in and search hosts at
# start-up, whatever page it opens.  Requests to these hosts are the browser's, not the page's.
BROWSER_OWN_HOSTS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")


def page_requests(request_lines: list[str]) -> list[str]:
    """The proxied request lines (``CONNECT host:443 ...``, ``GET http://host/...``) that are not
    the browser's own start-up traffic."""
    out = []
    for line in request_lines:
        parts = line.split()
        target = parts[1] if len(parts) > 1 else line
        host = target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].lower()
        if not any(host == h or host.endswith("." + h) for h in BROWSER_OWN_HOSTS):
            out.append(line)
    return out


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    """The path of a Chromium binary; installs the ``chromium`` package when it is absent and
    this process may (root, apt-get present).  Fails loudly otherwise: the HTML report's test
    must run, not be skipped."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
            subprocess.run(install, env=env, capture_output=True, check=True)
        found = find_chromium()
    if not found:
        raise RuntimeError("Chromium is needed to test the HTML report: install the 'chromium' package")
    return found


def chromium_command(binary: str, profile: Path, *extra: str) -> list[str]:
    return [binary, *FLAGS, f"--user-data-dir={profile}", *extra]
