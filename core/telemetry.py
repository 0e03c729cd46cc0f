"""Telemetry: one versioned snapshot of every queue, master and worker, built from counters the
queue scripts keep at O(1) per job (nothing scans a queue).

* ``collect_snapshot`` builds the snapshot (documented in ``docs/telemetry.md``);
* the daemon publishes it on ``{prefix}:telemetry`` about once a second while someone listens,
  and its elected leader appends one entry per minute to ``{prefix}:telemetry:history``;
* events (job failed, job timed out, long wait, worker crash loop) go to ``{prefix}:events``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from .adaptive import read_limiters
from .keys import GlobalKeys, QueueKeys, adaptive_index
from .prelude import BUCKET_BOUNDS_MS as BUCKET_BOUNDS_MS  # the scripts count with the same numbers
from .prelude import EVENTS_MAXLEN as EVENTS_MAXLEN
from .prelude import MINUTE_TTL_S as MINUTE_TTL_S
from .queue import QUEUE_STATE_READS, known_queues, pipe_queue_state

SCHEMA = "evalharness.telemetry.v1"
HISTORY_SCHEMA = "evalharness.telemetry.history.v1"
HISTORY_CAP = 1_440  # one entry per minute: 24 hours
RUNTIME_WINDOW_MINUTES = 5
MINUTES_READ = 61  # per queue, the current minute and the 60 before it: the past hour, whole
MASTER_STALE = 15.0  # seconds without a heartbeat before a master counts as gone
MASTER_FORGET = 600.0  # a master silent this long is dropped from the masters hash (until then: "lost")


# The names live in core/keys.py; these short forms are what the readers here and elsewhere use.
def channel(prefix: str) -> str:
    return GlobalKeys(prefix).telemetry


def history_key(prefix: str) -> str:
    return GlobalKeys(prefix).telemetry_history


def events_key(prefix: str) -> str:
    return GlobalKeys(prefix).events


def masters_key(prefix: str) -> str:
    return GlobalKeys(prefix).masters


def minute_key(keys: QueueKeys, minute: int) -> str:
    return keys.minute(minute)


def histogram_quantile(
    buckets: dict[int, int], q: float, low: float | None = None, high: float | None = None
) -> float | None:
    """The ``q`` quantile (0..1) in seconds of a bucketed runtime histogram, interpolated
    linearly inside the bucket that holds it, and kept within the observed shortest (``low``)
    and longest (``high``) runtime in seconds when known: a bucket's bound is not a runtime
    anyone saw, so a p95 never reads above the max (nor a p50 below the min)."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    value = BUCKET_BOUNDS_MS[-1] / 1000.0
    for b in range(1, len(BUCKET_BOUNDS_MS) + 2):
        n = buckets.get(b, 0)
        if n and seen + n >= rank:
            lo = 0 if b == 1 else BUCKET_BOUNDS_MS[b - 2]
            hi = BUCKET_BOUNDS_MS[b - 1] if b <= len(BUCKET_BOUNDS_MS) else BUCKET_BOUNDS_MS[-1] * 2
            frac = (rank - seen) / n
            value = (lo + (hi - lo) * frac) / 1000.0
            break
        seen += n
    if high is not None:
        value = min(value, high)
    if low is not None:
        value = max(value, low)
    return value


def _minute_stats(rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "completed": 0,
        "failed": 0,
        "timeouts": 0,
        "retries": 0,
        "rate_limited": 0,
        "rt_sum": 0,
        "rt_max": 0,
    }
    buckets: dict[int, int] = {}
    rt_min: int | None = None
    for row in rows:
        for k, v in row.items():
            if k.startswith("rt:"):
                b = int(k[3:])
                buckets[b] = buckets.get(b, 0) + int(v)
            elif k == "rt_max":
                out["rt_max"] = max(out["rt_max"], int(v))
            elif k == "rt_min":
                rt_min = int(v) if rt_min is None else min(rt_min, int(v))
            elif k in out:
                out[k] += int(v)
    out["buckets"] = buckets
    out["rt_min"] = rt_min
    return out


def runtime_quantile(stats: dict[str, Any], q: float) -> float | None:
    """The ``q`` quantile in seconds of the runtimes counted in ``stats`` (from
    :func:`_minute_stats`), within the shortest and longest runtime observed there."""
    buckets: dict[int, int] = stats["buckets"]
    if not buckets:
        return None
    high = stats["rt_max"] / 1000.0
    low = None if stats["rt_min"] is None else stats["rt_min"] / 1000.0
    return histogram_quantile(buckets, q, low, high)


def _per_minute(current: int, previous: int, now: float) -> float:
    """Events in the last 60 s: this minute so far plus the unelapsed share of the previous one."""
    elapsed = (now % 60.0) / 60.0
    return current + previous * (1.0 - elapsed)


async def collect_snapshot(client: aioredis.Redis, prefix: str, now: float | None = None) -> dict[str, Any]:
    """The telemetry snapshot (schema ``evalharness.telemetry.v1``), in a couple of round trips."""
    now = time.time() if now is None else now
    now_ms = int(now * 1000)
    minute = int(now // 60)
    queues = await known_queues(client, prefix)
    g = GlobalKeys(prefix)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(g.workers)
        pipe.hgetall(masters_key(prefix))
        pipe.hgetall(adaptive_index(prefix))
        for q in queues:
            k = QueueKeys(prefix, q)
            pipe_queue_state(pipe, k, now_ms)
            for m in range(minute - MINUTES_READ + 1, minute + 1):
                pipe.hgetall(minute_key(k, m))
            pipe.exists(k.paused)
        replies = await pipe.execute()
    workers_raw, masters_raw, limiter_index = replies[0], replies[1], replies[2]
    workers: dict[str, dict[str, Any]] = {}
    for wid, raw in workers_raw.items():
        try:
            workers[str(wid)] = json.loads(raw)
        except ValueError:
            continue
    per_queue = QUEUE_STATE_READS + MINUTES_READ + 1  # the queue's state, its minutes, its pause flag
    rows = []
    total_jpm = 0.0
    past_hour = 0
    failed_hour = 0
    failed_7d = 0
    processes_total: set[str] = set()
    busy_total: set[str] = set()
    timeouts_hour = 0
    max_wait: dict[str, Any] = {"queue": None, "seconds": None}
    for i, q in enumerate(queues):
        r = replies[3 + i * per_queue : 3 + (i + 1) * per_queue]  # after workers, masters, limiters
        (ready, oldest, held), delayed, reserved, failed, live, counters = r[:QUEUE_STATE_READS]
        ready, oldest, held = int(ready), int(oldest), int(held)
        minutes = r[QUEUE_STATE_READS : QUEUE_STATE_READS + MINUTES_READ]  # minute-60 .. minute
        paused = bool(r[QUEUE_STATE_READS + MINUTES_READ])
        cur, prev = _minute_stats([minutes[-1]]), _minute_stats([minutes[-2]])
        window = _minute_stats(minutes[-RUNTIME_WINDOW_MINUTES:])
        hour = _minute_stats(minutes[1:])
        done_pm = _per_minute(cur["completed"], prev["completed"], now)
        failed_pm = _per_minute(cur["failed"], prev["failed"], now)
        oldest_wait = max(0.0, (now_ms - oldest) / 1000.0) if oldest >= 0 else None
        live_ids = [str(w) for w in live]
        processes_total.update(live_ids)
        # a process running a job of any of its queues counts as busy on each of them
        busy = sum(1 for w in live_ids if int(workers.get(w, {}).get("running", 0) or 0) > 0)
        busy_total.update(w for w in live_ids if int(workers.get(w, {}).get("running", 0) or 0) > 0)
        slots = sum(int(workers.get(w, {}).get("concurrency", 1)) for w in live_ids)
        mean_rt = window["rt_sum"] / window["completed"] / 1000.0 if window["completed"] else None
        if ready == 0 and not paused:
            est_clear: float | None = 0.0
        elif paused or mean_rt is None or slots == 0:
            # a paused queue starts nothing: its ready jobs do not clear at any rate
            est_clear = None
        else:
            est_clear = ready * mean_rt / slots
        if oldest_wait is not None and (max_wait["seconds"] is None or oldest_wait > max_wait["seconds"]):
            max_wait = {"queue": q, "seconds": oldest_wait}
        c = {k: int(v) for k, v in counters.items()}
        rows.append(
            {
                "name": q,
                "paused": paused,
                "ready": ready,
                "held": held,
                "delayed": delayed,
                "reserved": reserved,
                "oldest_wait": oldest_wait,
                "est_clear": est_clear,
                "processes": len(live_ids),
                "busy": busy,
                "slots": slots,
                "jobs_per_minute": done_pm + failed_pm,
                "completed_per_minute": done_pm,
                "failed_per_minute": failed_pm,
                "runtime": {
                    "mean": mean_rt,
                    "p50": runtime_quantile(window, 0.50),
                    "p95": runtime_quantile(window, 0.95),
                    "max": window["rt_max"] / 1000.0 if window["completed"] else None,
                },
                "completed": c.get("completed", 0),
                "failed": c.get("failed", 0),  # the older name of failed_total
                "failed_total": c.get("failed", 0),
                "failed_stored": failed,
                "timeouts": c.get("timeouts", 0),
                "retries": c.get("retried", 0),
                "rate_limited": c.get("released", 0),
                "lost": c.get("lost", 0),
                "dispatched": c.get("dispatched", 0),
                "past_hour": {
                    "completed": hour["completed"],
                    "failed": hour["failed"],
                    "timeouts": hour["timeouts"],
                    "retries": hour["retries"],
                    "rate_limited": hour["rate_limited"],
                },
            }
        )
        total_jpm += done_pm + failed_pm
        past_hour += hour["completed"] + hour["failed"]
        failed_hour += hour["failed"]
        timeouts_hour += hour["timeouts"]
        failed_7d += failed
    masters = []
    for raw in masters_raw.values():
        try:
            m = json.loads(raw)
        except ValueError:
            continue
        age = now - float(m.get("heartbeat_at", 0))
        if age > MASTER_STALE:
            continue
        m["heartbeat_age"] = age
        masters.append(m)
    masters.sort(key=lambda m: str(m.get("name")))
    if masters:
        status = "paused" if all(m.get("status") == "paused" for m in masters) else "running"
    else:
        status = "running" if processes_total else "inactive"
    return {
        "schema": SCHEMA,
        "at": now,
        "prefix": prefix,
        "overview": {
            "status": status,
            "jobs_per_minute": total_jpm,
            "jobs_past_hour": past_hour,
            "failed_past_hour": failed_hour,
            "failed_past_7_days": failed_7d,
            "timeouts_past_hour": timeouts_hour,
            "processes": len(processes_total),
            "busy": len(busy_total),
            "masters": len(masters),
            "max_wait": max_wait,
        },
        "queues": rows,
        "masters": masters,
        # one more round trip only when some adaptive limiter is in use
        "limiters": await read_limiters(client, prefix, now, limiter_index),
    }


def history_entry(snapshot: dict[str, Any], closed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One per-minute history entry: gauges from ``snapshot`` and the counts of the minute that
    just closed (``closed``: queue -> {completed, failed, runtime_p95})."""
    return {
        "schema": HISTORY_SCHEMA,
        "at": snapshot["at"],
        "minute": int(snapshot["at"] // 60) - 1,
        "jobs_per_minute": sum(c.get("completed", 0) + c.get("failed", 0) for c in closed.values()),
        "queues": {
            q["name"]: {
                "ready": q["ready"],
                "delayed": q.get("delayed"),
                "reserved": q["reserved"],
                "oldest_wait": q["oldest_wait"],
                "est_clear": q.get("est_clear"),
                "processes": q["processes"],
                "slots": q.get("slots"),
                **closed.get(q["name"], {"completed": 0, "failed": 0, "runtime_p95": None}),
            }
            for q in snapshot["queues"]
        },
    }


async def closed_minute(
    client: aioredis.Redis, prefix: str, queues: Sequence[str], minute: int
) -> dict[str, dict[str, Any]]:
    async with client.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.hgetall(minute_key(QueueKeys(prefix, q), minute))
        rows = await pipe.execute()
    out = {}
    for q, row in zip(queues, rows, strict=True):
        s = _minute_stats([row])
        out[q] = {
            "completed": s["completed"],
            "failed": s["failed"],
            "timeouts": s["timeouts"],
            "rate_limited": s["rate_limited"],
            "runtime_p50": runtime_quantile(s, 0.50),
            "runtime_p95": runtime_quantile(s, 0.95),
        }
    return out


async def read_history(client: aioredis.Redis, prefix: str, minutes: int = HISTORY_CAP) -> list[dict[str, Any]]:
    """The last ``minutes`` history entries, oldest first."""
    raw = await client.lrange(history_key(prefix), -minutes, -1)
    out = []
    for item in raw:
        try:
            out.append(json.loads(item))
        except ValueError:
            continue
    return out


async def read_events(client: aioredis.Redis, prefix: str, count: int = 100) -> list[dict[str, Any]]:
    """The newest ``count`` events, newest first."""
    raw: Any = await client.xrevrange(events_key(prefix), count=count)
    return [{"id": str(eid), **{str(k): v for k, v in (fields or {}).items()}} for eid, fields in raw or []]


async def read_events_after(
    client: aioredis.Redis, prefix: str, after: str | None = None, count: int = 1_000
) -> list[dict[str, Any]]:
    """Events oldest first: the newest ``count`` when ``after`` is None, else at most ``count`` of
    those added after the stream id ``after`` (a console following the stream reads only what is
    new). Each has its stream id as ``event_id``: an event's own ``id`` field is the job's."""
    if after is None:
        raw: Any = await client.xrevrange(events_key(prefix), count=count)
        raw = list(raw or [])[::-1]
    else:
        raw = await client.xrange(events_key(prefix), min=f"({after}", count=count)
    return [
        {"id": str(eid), **{str(k): v for k, v in (fields or {}).items()}, "event_id": str(eid)}
        for eid, fields in raw or []
    ]
