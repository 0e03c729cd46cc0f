"""Fixtures of the core tests."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIG_ENV_VARS = (
    "EVALHARNESS_CONFIG",
    "EVALHARNESS_ENV",
    "EVALHARNESS_IMPORTS",
    "EVALHARNESS_PREFIX",
    "EVALHARNESS_REDIS_URL",
    "EVALHARNESS_STATE_DIR",
    "XDG_STATE_HOME",
)


@pytest.fixture
def clean_config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the developer's shell or a config file in the checkout."""
    for name in CONFIG_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
