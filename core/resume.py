"""Resuming an eval run whose producer died (SIGKILL, a dropped SSH session, a reboot), or was
stopped: the run's record and outputs are in Redis, so a new producer collects what finished,
leaves what is still queued or running to finish (and collects it), and dispatches only what is
missing, under the same run id — the report is the one an uninterrupted run would have written.

A producer holds a short-lived claim on its run (``<prefix>:run:<id>:producer``, renewed every
:data:`CLAIM_RENEW` seconds), so a resume can tell a live producer from a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .batches import Batches
from .datasets import Dataset
from .errors import EvalHarnessError
from .evaljobs import SUT_MISMATCH
from .evalrun import Continuation, sample_job_id
from .keys import GlobalKeys
from .queue import Queue
from .runs import RunRecord, dataset_fingerprint

CLAIM_TTL = 10  # seconds a producer's claim outlives its last renewal
CLAIM_RENEW = 2.0
RECORD_RENEW = 30.0  # the record's TTL restarts this often while its producer lives
LIVE_STATES = ("ready", "delayed", "reserved")  # a job in one of these will still deliver
# outcomes that say the run was stopped, not how the sample fared: a resume runs them again
REDO_KINDS = frozenset({"cancelled", "interrupted", "sut_import", SUT_MISMATCH})
_SHOWN = 5


class ResumeRefused(EvalHarnessError):
    """The run cannot be resumed as asked (exit 2): the message says why and what to do."""


@dataclass(frozen=True)
class ResumePlan:
    record: RunRecord
    continuation: Continuation
    collected: int  # units whose outcome was already in Redis
    live: int  # units whose job is still queued or running (collected when they finish)
    to_dispatch: int  # units dispatched now
    rounds: int  # this is the run's resume number ``rounds``
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "resumed_at": time.time(),
            "collected": self.collected,
            "live": self.live,
            "dispatched": self.to_dispatch,
            "batch": self.continuation.batch_id,
            "notes": list(self.notes),
        }


def run_id_of_batch(batch_id: str) -> str:
    """The run a run's batch belongs to: ``run-<id>``, or ``run-<id>.rN`` after resume N."""
    return batch_id.removeprefix("run-").split(".r", 1)[0]


def effective_state(state: str, claimed: bool) -> str:
    """A record's state as a person needs it: a run whose record says running but whose producer
    holds no claim any more was abandoned (its producer died) and can be resumed."""
    return "abandoned" if state == "running" and not claimed else state


def claim_value() -> str:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()})


async def hold_claim(client: aioredis.Redis, prefix: str, run_id: str, result_ttl: int, stop: asyncio.Event) -> None:
    """Renew this producer's claim on ``run_id`` until ``stop`` is set (then drop it), and keep
    the run's record alive ``result_ttl`` seconds past the producer's last sign of life."""
    keys = GlobalKeys(prefix)
    last_record = 0.0
    try:
        while not stop.is_set():
            with contextlib.suppress(OSError, ConnectionError, TimeoutError, aioredis.RedisError):
                await client.set(keys.run_producer(run_id), claim_value(), ex=CLAIM_TTL)
                if time.monotonic() - last_record >= RECORD_RENEW:
                    await client.expire(keys.run(run_id), result_ttl)
                    last_record = time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLAIM_RENEW):
                    await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await client.delete(keys.run_producer(run_id))


async def _live_claim(client: aioredis.Redis, key: str) -> str | None:
    """The claim on a run if a live producer renews it.  A claim that is there but not renewed
    is a dead producer's: it lapses within :data:`CLAIM_TTL` seconds, and this waits for that,
    so a resume right after a kill goes ahead instead of asking the user to try again."""
    first = await client.get(key)
    if first is not None and claim_dead_here(str(first)):
        await client.delete(key)
        return None
    end = time.monotonic() + CLAIM_TTL + 1.0
    while first is not None and time.monotonic() < end:
        await asyncio.sleep(0.25)
        now = await client.get(key)
        if now is None:
            return None
        if now != first:
            return str(now)  # renewed: its producer is alive
    return None if first is None else str(first)


def claim_dead_here(claim: str) -> bool:
    """Whether a claim names a producer process of this host that no longer exists: then there
    is no need to wait for its claim to lapse."""
    try:
        who = json.loads(claim)
        if who.get("host") != socket.gethostname():
            return False
        os.kill(int(who["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, TypeError, KeyError, AttributeError, PermissionError, OSError):
        return False
    return False


def dataset_differences(then: Dataset, now: Dataset) -> list[str]:
    """What changed between the samples a run started with and the ones given now, by id."""
    old = {s.id: s for s in then.samples}
    new = {s.id: s for s in now.samples}
    out = []
    added = [i for i in new if i not in old]
    removed = [i for i in old if i not in new]
    changed = []
    for sid, s in new.items():
        o = old.get(sid)
        if o is None:
            continue
        fields_ = [n for n in ("input", "expected_output", "metadata") if getattr(o, n) != getattr(s, n)]
        if fields_:
            changed.append(f"{sid} ({', '.join(fields_)})")

    def shown(ids: Sequence[str]) -> str:
        return ", ".join(ids[:_SHOWN]) + (f" … and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")

    if changed:
        out.append(f"{len(changed)} sample(s) changed: {shown(changed)}")
    if added:
        out.append(f"{len(added)} sample(s) added: {shown(added)}")
    if removed:
        out.append(f"{len(removed)} sample(s) removed: {shown(removed)}")
    if not out and [s.id for s in then.samples] != [s.id for s in now.samples]:
        out.append("the samples are in another order (a different --shuffle --seed or --sample?)")
    if not out and len(then.samples) != len(now.samples):
        out.append(f"{len(then.samples)} samples then, {len(now.samples)} now")
    return out


def _which(now: Path, then: Path) -> str:
    """The dataset file read now, and the one the run started with when that was another."""
    return str(then) if Path(now).resolve() == Path(then).resolve() else f"{now}; the run started with {then}"


async def plan_resume(
    client: aioredis.Redis,
    prefix: str,
    record: RunRecord,
    units: Dataset,
    sut_fingerprint: str | None,
    allow_changes: bool = False,
) -> ResumePlan:
    """Check that ``record``'s run can go on with the dataset (expanded into ``units``) and SUT
    code there are now, and find out what each unit needs: collected, awaited, or dispatched."""
    rid = record.id
    notes: list[str] = []
    if record.mode != "lazy-parallel" or record.sink is None:
        raise ResumeRefused(
            f"run {rid!r} ran {record.mode}: only a lazy-parallel run keeps its outputs in Redis and can be resumed"
        )
    holder = await _live_claim(client, GlobalKeys(prefix).run_producer(rid))
    if holder:
        try:
            who = json.loads(holder)
            whom = f"pid {who.get('pid')} on {who.get('host')}"
        except (ValueError, AttributeError):
            whom = "another producer"
        raise ResumeRefused(
            f"run {rid!r} is still being run by {whom} (its claim is renewed every {CLAIM_RENEW:g}s): "
            f"stop that producer first, or wait; a dead producer's claim lapses within {CLAIM_TTL}s"
        )
    now_fp = dataset_fingerprint(units)
    if record.fingerprint and now_fp != record.fingerprint:
        diffs = dataset_differences(record.dataset, units)
        what = "; ".join(diffs) or "its contents differ"
        if not allow_changes:
            raise ResumeRefused(
                f"the dataset changed since run {rid!r} started ({_which(units.path, record.dataset.path)}): {what}. "
                "Resuming would mix "
                "outputs of two datasets; start a new run, or pass --allow-changes to resume with the samples the run "
                "started with (its record keeps them)"
            )
        notes.append(f"the dataset changed since the run started ({what}); the run's own samples were used")
    then_fp = record.extra.get("sut_fingerprint") or None
    if then_fp and sut_fingerprint and then_fp != sut_fingerprint:
        if not allow_changes:
            raise ResumeRefused(
                f"the SUT {record.sut} changed since run {rid!r} started (its code had fingerprint {then_fp[:19]}…, "
                f"now {sut_fingerprint[:19]}…): the finished outputs came from the old code. "
                "Restore it, start a new run, "
                "or pass --allow-changes to score old and new outputs together"
            )
        notes.append(
            f"the SUT's code changed since the run started ({then_fp[:19]}… then, {sut_fingerprint[:19]}… now)"
        )
    queue = Queue(client, prefix)
    keys = queue.keys(record.queue)
    raw = await client.hgetall(keys.results(record.sink))
    total = len(record.dataset.samples)
    results: dict[int, dict[str, Any]] = {}
    redo: list[int] = []
    for k, v in raw.items():
        if not str(k).isdigit() or not 0 <= int(k) < total:
            continue
        value = json.loads(v)
        kind = (value.get("error") or {}).get("kind")
        if kind in REDO_KINDS:
            redo.append(int(k))
        else:
            results[int(k)] = value
    if redo:
        # the sink keeps the first outcome of a field: clear these, so their new outcome lands
        await client.hdel(keys.results(record.sink), *(str(i) for i in redo))
    missing = [i for i in range(total) if i not in results]
    rounds = int(record.extra.get("resumes") or 0) + 1
    # a unit's job id: sample_job_id, suffixed ".rN" when resume N dispatched it afresh
    suffixes = [""] + [f".r{n}" for n in range(1, rounds)]
    async with client.pipeline(transaction=False) as pipe:
        for i in missing:
            for suffix in suffixes:
                pipe.hmget(keys.job(sample_job_id(rid, i, suffix)), "state", "cancel")
        states = await pipe.execute()
    fresh: dict[int, str] = {}
    live = 0
    for n, i in enumerate(missing):
        mine = states[n * len(suffixes) : (n + 1) * len(suffixes)]
        alive = [
            sfx for sfx, (state, cancel) in zip(suffixes, mine, strict=True) if state in LIVE_STATES and not cancel
        ]
        if alive and i not in redo:
            live += 1  # the same id: the dispatch merges into that job, whose outcome is collected
            fresh[i] = alive[-1]
        else:
            fresh[i] = f".r{rounds}"
    batches = Batches(client, prefix, queue)
    info = await batches.info(record.batch) if record.batch else None
    new_batch = info is None or info.state == "cancelled"
    batch_id = f"run-{rid}.r{rounds}" if new_batch else str(record.batch)
    if new_batch and record.batch:
        notes.append(
            f"the run's batch {record.batch} was {'cancelled' if info else 'gone'}: the rest runs in batch {batch_id}"
        )
    continuation = Continuation(rid, batch_id, new_batch, record.started_at, results, fresh)
    return ResumePlan(record, continuation, len(results), live, len(fresh) - live, rounds, notes)
