"""The progress line of `evalharness run`: counts, rate and ETA from a clock passed in; plain
lines at most every interval when stderr is not a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from evalharness.cli.progress import Counts, RunProgress, progress_line, rate_and_eta


def test_rate_and_eta() -> None:
    assert rate_and_eta(0, 100, 5.0) == (None, None)
    assert rate_and_eta(25, 100, 5.0) == (5.0, 15.0)
    assert rate_and_eta(100, 100, 20.0) == (5.0, 0.0)
    # a resumed run found 120 outcomes already there: 16 new in 2 s is 8/s, 64 left take 8 s
    assert rate_and_eta(136, 200, 2.0, since=120) == (8.0, 8.0)
    assert rate_and_eta(120, 200, 2.0, since=120) == (None, None)


def test_outcomes_there_before_the_run_count_as_done_but_not_in_the_rate() -> None:
    counts = Counts(total=200, done=136, since=120)
    assert progress_line("qa", counts, 2.0) == "qa: 136/200 done · 8.0/s · elapsed 2s · ETA 8s"


def test_the_line_shows_every_count_known() -> None:
    counts = Counts(total=200, done=40, failed=2, in_flight=10, retrying=1, rate_limited=3)
    assert progress_line("qa", counts, 10.0) == (
        "qa: 40/200 done · 2 failed · 1 retrying · 3 rate-limited · 10 in flight · 4.0/s · elapsed 10s · ETA 40s"
    )
    # serial runs know only what is done; a finished run has no ETA
    assert progress_line("qa", Counts(total=5, done=5), 125.0) == "qa: 5/5 done · 0.0/s · elapsed 2m05s"
    assert progress_line("qa", Counts(total=5), 0.0) == "qa: 0/5 done · –/s · elapsed 0s · ETA –"


def test_plain_lines_come_at_most_every_interval_and_once_at_the_end() -> None:
    now = [100.0]
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with RunProgress(console, "qa", 10, interval=5.0, clock=lambda: now[0]) as shown:
        for done in range(1, 11):
            now[0] += 1.0
            shown.done(done, 10)
    lines = out.getvalue().splitlines()
    assert lines == [
        "qa: 5/10 done · 1.0/s · elapsed 5s · ETA 5s",
        "qa: 10/10 done · 1.0/s · elapsed 10s",  # the last line, not repeated at the end
    ]


def test_disabled_progress_prints_nothing() -> None:
    out = io.StringIO()
    with RunProgress(Console(file=out, force_terminal=False), "qa", 3, enabled=False, interval=0.1) as shown:
        shown.done(3, 3)
    assert out.getvalue() == ""
