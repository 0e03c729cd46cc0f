"""The job lifecycle as code: every state the scripts write is a JobStatus (or, on a batch record,
a batch state), and decide() is a table of pure cases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalharness.core.batches import STATES as BATCH_STATES
from evalharness.core.jobs import (
    TERMINAL_STATES,
    FailureKind,
    Job,
    JobOptions,
    JobStatus,
    Outcome,
    Verdict,
    decide,
)

LUA = Path(__file__).resolve().parents[2] / "core" / "lua"


def _hset_calls(source: str) -> list[tuple[str, str]]:
    """(key expression, argument text) of every ``redis.call('HSET', ...)``, continuation lines included."""
    out = []
    for m in re.finditer(r"redis\.call\('HSET',", source):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        args = source[m.end() : i - 1]
        key, _, rest = args.partition(",")
        out.append((key.strip(), rest))
    return out


def _written_states() -> dict[str, set[str]]:
    """State literals the scripts write, split by the record they go to."""
    found: dict[str, set[str]] = {"job": set(), "batch": set()}
    for path in sorted(LUA.glob("*.lua")):
        for key, args in _hset_calls(path.read_text()):
            for literal in re.findall(r"'state',\s*'(\w+)'", args):
                record = "batch" if re.search(r"\bbk\b|'batch:'", key) else "job"
                found[record].add(literal)
    return found


def test_every_job_state_the_scripts_write_is_a_job_status_and_each_status_is_written() -> None:
    written = _written_states()
    assert written["job"], "the parser found no job state literal: the scripts changed shape"
    assert written["job"] <= set(JobStatus), written["job"] - set(JobStatus)
    # no member is dead: every status is something a script really stores
    assert set(JobStatus) == written["job"]
    assert written["batch"] <= set(BATCH_STATES)


def test_terminal_states() -> None:
    assert (
        {s for s in JobStatus if s.terminal}
        == TERMINAL_STATES
        == {
            JobStatus.FAILED,
            JobStatus.RETRIED,
            JobStatus.CANCELLED,
        }
    )
    assert not JobStatus.RESERVED.terminal


def _job(attempts: int = 1, releases: int = 0, exceptions: int = 0, **opts: object) -> Job:
    options = JobOptions().override(**opts)
    return Job(
        id="j",
        name="n",
        payload=None,
        queue="q",
        options=options,
        enqueued_at=0.0,
        attempts=attempts,
        releases=releases,
        exceptions=exceptions,
    )


@pytest.mark.parametrize(
    ("job", "outcome", "verdict", "kind", "reason"),
    [
        (_job(1, tries=3), Outcome.DELIVERED, Verdict.RUN, "", ""),
        (_job(3, tries=3), Outcome.DELIVERED, Verdict.RUN, "", ""),
        # the pop counted a 4th attempt of a 3-try job: the 3rd one's lease lapsed
        (
            _job(4, tries=3),
            Outcome.DELIVERED,
            Verdict.FAIL,
            FailureKind.LOST,
            "its worker stopped (lease lapsed) on the last allowed attempt (3 tries)",
        ),
        # releases used no try
        (_job(4, releases=2, tries=3), Outcome.DELIVERED, Verdict.RUN, "", ""),
        (_job(9, tries=0), Outcome.DELIVERED, Verdict.RUN, "", ""),
        (_job(1), Outcome.OK, Verdict.ACK, "", ""),
        (_job(1), Outcome.CANCELLED, Verdict.FAIL, FailureKind.CANCELLED, "cancelled by an operator"),
        (_job(1, tries=3), Outcome.EXCEPTION, Verdict.RELEASE, FailureKind.EXCEPTION, ""),
        (_job(3, tries=3), Outcome.EXCEPTION, Verdict.FAIL, FailureKind.EXCEPTION, "tries exhausted (3/3)"),
        (_job(1, tries=3), Outcome.TIMEOUT, Verdict.RELEASE, FailureKind.TIMEOUT, ""),
        (
            _job(2, exceptions=1, tries=5, max_exceptions=2),
            Outcome.EXCEPTION,
            Verdict.FAIL,
            FailureKind.EXCEPTION,
            "max_exceptions reached (2)",
        ),
        (_job(2, exceptions=1, tries=5, max_exceptions=2), Outcome.LOST, Verdict.RELEASE, FailureKind.LOST, ""),
        (_job(1), Outcome.RATE_LIMITED, Verdict.RELEASE, FailureKind.RATE_LIMITED, ""),
    ],
)
def test_decide(job: Job, outcome: Outcome, verdict: Verdict, kind: str, reason: str) -> None:
    d = decide(job, outcome=outcome, now=0.0, rnd=0.5)
    assert (d.verdict, d.kind, d.reason) == (verdict, kind, reason)


def test_decide_permanent_and_deadlines() -> None:
    d = decide(_job(1, tries=3), outcome=Outcome.LOST, now=0.0, permanent=True)
    assert (d.verdict, d.kind, d.reason) == (Verdict.FAIL, FailureKind.LOST, "not retryable")
    d = decide(_job(1, backoff=[5.0], retry_until=3.0), outcome=Outcome.EXCEPTION, now=0.0, rnd=0.5)
    assert (d.verdict, d.reason) == (Verdict.FAIL, "retry_until passed")
    d = decide(_job(1, retry_until=3.0), outcome=Outcome.RATE_LIMITED, now=0.0, retry_after=10.0)
    assert (d.verdict, d.reason) == (Verdict.FAIL, "still rate-limited at retry_until")
    d = decide(_job(1), outcome=Outcome.RATE_LIMITED, now=0.0, retry_after=2.5)
    assert (d.verdict, d.delay, d.rate_limited) == (Verdict.RELEASE, 2.5, True)
