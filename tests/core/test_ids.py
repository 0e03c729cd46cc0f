"""Short ids like git's: one prefix length that parts every id shown, and the way back from a
typed prefix to the one id it names, with a clear error when it names none or several."""

from __future__ import annotations

from typing import Any

import pytest

from evalharness.core.batches import Batches
from evalharness.core.errors import EvalHarnessError
from evalharness.core.ids import (
    MIN_SHOWN,
    AmbiguousIdError,
    abbreviate,
    match_prefix,
    prefix_length,
    resolve_batch,
    resolve_failed_job,
)
from evalharness.core.queue import JobRequest, Queue

# Real job ids dispatched in the same millisecond: the first 12 characters are the time.
SAME_MS = ["01a233a68ee36de144c01c20094f", "01a233a68ee3b00f2a9c4d1e7731", "01a233a68ee3b0ff2a9c4d1e7731"]


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        pytest.param(["01a233a68ee36de1"], MIN_SHOWN, id="one-id-minimum"),
        pytest.param(["01a233a68ee36de1", "01a233a68ee39999"], 13, id="shared-time-prefix"),
        pytest.param(SAME_MS, 15, id="closest-pair-decides"),
        pytest.param(["f1", "f2"], MIN_SHOWN, id="short-ids-whole"),
        pytest.param(["abcdefgh", "abcdefghij"], 9, id="id-that-heads-another"),
        pytest.param([], MIN_SHOWN, id="none"),
    ],
)
def test_prefix_length(ids: list[str], expected: int) -> None:
    assert prefix_length(ids) == expected


def test_abbreviations_are_unique_and_count_the_ids_not_shown() -> None:
    short = abbreviate(SAME_MS)
    assert len(set(short.values())) == len(SAME_MS)
    assert all(full.startswith(s) for full, s in short.items())
    # Two ids shown, but the third exists: the prefixes must still tell all three apart.
    assert abbreviate(SAME_MS[:2]) == {SAME_MS[0]: "01a233a68ee36", SAME_MS[1]: "01a233a68ee3b"}
    assert abbreviate(SAME_MS[:2], among=SAME_MS) == {i: i[:15] for i in SAME_MS[:2]}


def test_match_prefix_takes_a_whole_id_or_a_unique_prefix() -> None:
    ids = [*SAME_MS, "f1", "f12"]
    assert match_prefix("01a233a68ee36", ids, "failed job") == SAME_MS[0]
    assert match_prefix(SAME_MS[1], ids, "failed job") == SAME_MS[1]
    assert match_prefix("f1", ids, "failed job") == "f1"  # a whole id wins over the ids it heads


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(AmbiguousIdError) as err:
        match_prefix("01a233a68ee3b", SAME_MS, "failed job")
    message = str(err.value)
    assert "'01a233a68ee3b' is the start of 2 failed job ids" in message
    assert SAME_MS[1] in message and SAME_MS[2] in message and SAME_MS[0] not in message
    assert err.value.exit_code == 2
    with pytest.raises(AmbiguousIdError, match="25 batch ids: bat-00, .* and 15 more"):
        match_prefix("bat-", [f"bat-{i:02d}" for i in range(25)], "batch")


@pytest.mark.parametrize(("text", "reason"), [("zzzz", "no failed job 'zzzz'"), ("01a", "at least 4 characters")])
def test_no_match_or_a_too_short_prefix_is_an_error(text: str, reason: str) -> None:
    with pytest.raises(EvalHarnessError, match=reason) as err:
        match_prefix(text, SAME_MS, "failed job")
    assert not isinstance(err.value, AmbiguousIdError)


async def failed_jobs(queue: Queue, name: str, ids: list[str]) -> list[str]:
    await queue.dispatch_many([JobRequest("noop", {"i": i}, queue=name, id=job_id) for i, job_id in enumerate(ids)])
    for job in (await queue.pop(name, len(ids), 30, "w1")).jobs:
        assert await queue.fail(name, "w1", job.id, {"kind": "exception", "message": "boom"})
    return ids


async def test_failed_jobs_resolve_by_prefix_across_queues_or_on_one(aclient: Any) -> None:
    queue = Queue(aclient, "eh")
    on_a = await failed_jobs(queue, "a", SAME_MS)
    (on_b,) = await failed_jobs(queue, "b", ["01a233a68ee4aaaaaaaaaaaaaaaa"])
    short = abbreviate([*on_a, on_b])
    assert await resolve_failed_job(aclient, "eh", short[on_a[1]]) == ("a", on_a[1])
    assert await resolve_failed_job(aclient, "eh", short[on_b]) == ("b", on_b)
    with pytest.raises(EvalHarnessError, match=r"no failed job '01a233a68ee4aaa' on queue\(s\) a"):
        await resolve_failed_job(aclient, "eh", short[on_b], ["a"])
    with pytest.raises(AmbiguousIdError, match="3 failed job ids"):
        await resolve_failed_job(aclient, "eh", "01a233a68ee3", ["a"])


async def test_batches_resolve_by_prefix(aclient: Any) -> None:
    batches = Batches(aclient, "eh")
    first = await batches.create("one", [JobRequest("noop", 1)], queue="q", batch_id="run-01a233a68ee36de1")
    second = await batches.create("two", [JobRequest("noop", 2)], queue="q", batch_id="run-01a233a68ee39999")
    assert await resolve_batch(aclient, "eh", "run-01a233a68ee36") == first
    assert await resolve_batch(aclient, "eh", second) == second
    with pytest.raises(AmbiguousIdError, match="2 batch ids"):
        await resolve_batch(aclient, "eh", "run-01a2")
    with pytest.raises(EvalHarnessError, match="no batch 'run-9'"):
        await resolve_batch(aclient, "eh", "run-9")
