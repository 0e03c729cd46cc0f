"""The engine's reads behind the console's palette, Events and Graphs, over a real Redis: lookup
by id prefix and name, the events stream read whole then only what is new (with the stream id
kept apart from a job's id), and the per-minute history entry's fields."""

from __future__ import annotations

import json
from typing import Any

import pytest

from evalharness.core.admin import Admin
from evalharness.core.batches import Batches
from evalharness.core.lookup import glob_escape
from evalharness.core.queue import JobRequest, Queue
from evalharness.core.telemetry import events_key, history_entry, masters_key

P = "lk"


@pytest.fixture
def admin(aclient: Any) -> Admin:
    return Admin(aclient, prefix=P)


async def test_lookup_finds_batches_jobs_queues_and_masters(aclient: Any, admin: Admin) -> None:
    queue = Queue(aclient, prefix=P)
    batches = Batches(aclient, P, queue)
    await batches.create("nightly-rag", [JobRequest("noop", {"i": 1})], queue="judge", batch_id="b7f00d1")
    await batches.create("run-42", [JobRequest("noop", {"i": 2})], queue="sut", batch_id="c0ffee9")
    popped = (await queue.pop("judge", 1, 30, "w")).jobs
    await aclient.hset(masters_key(P), "gpu-01-a3f", json.dumps({"name": "gpu-01-a3f", "host": "gpu-01"}))

    by_prefix = await admin.lookup("b7f")
    assert [(f.kind, f.id, f.label, f.queue) for f in by_prefix] == [("batch", "b7f00d1", "nightly-rag", "judge")]
    assert [f.id for f in await admin.lookup("run-4") if f.kind == "batch"] == ["c0ffee9"]  # by name
    assert [f.id for f in await admin.lookup("jud") if f.kind == "queue"] == ["judge"]
    running = await admin.lookup(popped[0].id[:10])
    assert [(f.kind, f.id, f.state) for f in running] == [("job", popped[0].id, "running")]
    assert [f.id for f in await admin.lookup("gpu-01") if f.kind == "master"] == ["gpu-01-a3f"]
    assert await admin.lookup("") == [] and await admin.lookup("zzz-none") == []


def test_glob_characters_are_literal() -> None:
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"


async def test_events_read_whole_then_only_what_is_new(aclient: Any, admin: Admin) -> None:
    ids = [await aclient.xadd(events_key(P), {"kind": "job_failed", "id": f"job-{i}", "queue": "q"}) for i in range(5)]
    first = await admin.events(None, 3)
    assert [e["event_id"] for e in first] == ids[2:]  # the newest three, oldest first
    assert [e["id"] for e in first] == ["job-2", "job-3", "job-4"]  # the job's id stays its own field
    assert await admin.events(first[-1]["event_id"]) == []
    new = await aclient.xadd(events_key(P), {"kind": "batch_finished", "batch": "b1"})
    assert [e["event_id"] for e in await admin.events(first[-1]["event_id"])] == [new]


def test_history_entries_carry_what_the_graphs_plot() -> None:
    snapshot = {
        "at": 1_700_000_040.0,
        "queues": [
            {
                "name": "judge",
                "ready": 5,
                "delayed": 2,
                "reserved": 3,
                "oldest_wait": 4.5,
                "est_clear": 9.0,
                "processes": 2,
                "slots": 8,
            }
        ],
    }
    closed = {"judge": {"completed": 30, "failed": 1, "rate_limited": 7, "runtime_p50": 0.4, "runtime_p95": 1.2}}
    row = history_entry(snapshot, closed)["queues"]["judge"]
    assert row == {
        "ready": 5,
        "delayed": 2,
        "reserved": 3,
        "oldest_wait": 4.5,
        "est_clear": 9.0,
        "processes": 2,
        "slots": 8,
        "completed": 30,
        "failed": 1,
        "rate_limited": 7,
        "runtime_p50": 0.4,
        "runtime_p95": 1.2,
    }
