"""The console's view-model and the text it draws, without a terminal."""

from __future__ import annotations

import pytest

from evalharness.tui.app import PING_TIMEOUT, describe_failure
from evalharness.tui.state import ConsoleState, Level, format_seconds


@pytest.mark.parametrize(
    ("seconds", "round_up", "text"),
    [
        (0, False, "0s"),
        (-3, False, "0s"),
        (0.2, False, "0s"),
        (0.2, True, "1s"),
        (1.9, False, "1s"),
        (99.5, False, "99s"),
        (99.5, True, "1m40s"),
        (100, False, "1m40s"),
        (3599, False, "59m59s"),
        (3600, False, "1h00m"),
        (90061, False, "25h01m"),
    ],
)
def test_format_seconds(seconds: float, round_up: bool, text: str) -> None:
    assert format_seconds(seconds, round_up=round_up) == text


def state(**changes: object) -> ConsoleState:
    return ConsoleState("redis://localhost:6379/0", "eh", **changes)  # type: ignore[arg-type]


def test_before_the_first_check() -> None:
    s = state()
    assert s.level is Level.PENDING
    assert s.status_text() == "◌ redis: connecting…"
    assert s.status_rows() == [("Status", "connecting…")]
    assert s.stale_for() is None


def test_a_failure_after_replies_counts_the_time_without_one() -> None:
    s = state()
    s.mark_connected(100.0)
    s.mark_failed("ConnectionError: refused", 114.5, 2.0)
    assert s.level is Level.ERROR
    assert s.stale_for() == 14.5
    assert s.status_text() == "✕ redis: disconnected, retrying in 2s"
    assert s.status_rows() == [
        ("Status", "disconnected · no reply for 14s"),
        ("Error", "ConnectionError: refused"),
    ]


def test_a_failure_with_no_retry_planned() -> None:
    s = state()
    s.mark_failed("boom", 1.0, None)
    assert s.status_text() == "✕ redis: disconnected"
    assert s.connection_status() == "disconnected · never reached"


def test_a_good_check_clears_the_error() -> None:
    s = state()
    s.mark_failed("boom", 1.0, 2.0)
    s.mark_connected(3.0)
    assert s.level is Level.OK
    assert s.status_text() == "● redis ok"
    assert s.last_error is None and s.retry_in is None
    assert s.status_rows() == [("Status", "connected")]


def test_details_name_the_target_and_the_mode() -> None:
    assert state().details() == [("Redis", "redis://localhost:6379/0"), ("Prefix", "eh")]
    assert state(read_only=True).details()[-1] == ("Mode", "read-only")


@pytest.mark.parametrize(
    ("exc", "url", "text"),
    [
        (
            ConnectionError("Error 111 connecting to h:1.\n  Connection refused."),
            "redis://h:1/0",
            "ConnectionError: Error 111 connecting to h:1. Connection refused.",
        ),
        (TimeoutError(), "redis://h:1/0", f"no reply within {PING_TIMEOUT:g}s"),
        (ValueError("bad URL redis://:s3cret@h:1/0"), "redis://:s3cret@h:1/0", "ValueError: bad URL redis://:***@h:1/0"),
        (ValueError("auth with p@ss failed"), "redis://:p%40ss@h:1/0", "ValueError: auth with *** failed"),
        # A one-letter password must not cut letters out of the message.
        (ConnectionError("Connection reset"), "redis://:e@h:1/0", "ConnectionError: Connection reset"),
    ],
    ids=["one-line", "timeout", "url", "quoted-password", "short-password"],
)
def test_describe_failure(exc: BaseException, url: str, text: str) -> None:
    assert describe_failure(exc, url) == text
