"""Defaults the docs state as numbers are the program's: the daemon's default `--grace` (the
longest job limit + 30 s), as README, configuration, deploy and production pages give it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalharness.core.config import SupervisorConfig
from evalharness.daemon.master import default_grace, parse_queue_flags

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_grace_is_the_longest_job_limit_plus_30_seconds() -> None:
    assert default_grace(parse_queue_flags(("evals=2",), 10)) == 90
    assert default_grace(parse_queue_flags(("evals=2",), 10), hard_timeout=300) == 330
    assert (
        default_grace(
            [
                SupervisorConfig(name="long", queues=("a",), timeout=200),
                SupervisorConfig(name="short", queues=("b",), timeout=5),
            ]
        )
        == 230
    )
    assert (
        default_grace([SupervisorConfig(name="capped", queues=("c",), timeout=100, hard_timeout=120)], hard_timeout=600)
        == 150
    )


@pytest.mark.parametrize(
    ("page", "pattern"),
    [
        ("README.md", r"so\s+(\d+) s here; the daemon says so when it stops \(`in-flight jobs get up to (\d+)s`\)"),
        ("docs/configuration.md", r"`--grace SECONDS` \| the longest job limit \+ 30 s: .*\(so (\d+) s by default\)"),
        ("docs/deploy.md", r"so\s+(\d+) s with the defaults"),
        ("docs/production.md", r"`evalharnessd`: the longest job limit \+ 30 s .*, so (\d+) s;"),
        ("docs/ARCHITECTURE.md", r"so\s+(\d+) s with the defaults"),
    ],
)
def test_the_docs_give_the_default_grace_the_daemon_uses(page: str, pattern: str) -> None:
    found = re.search(pattern, (ROOT / page).read_text())
    assert found, f"{page} no longer states the default --grace as expected"
    assert {int(g) for g in found.groups()} == {int(default_grace(parse_queue_flags(("evals=2",), 10)))}
