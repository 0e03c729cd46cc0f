"""The Lua prelude: the constants every script sees are the Python ones, its key names are those of
core/keys.py, each shared piece is written once (no script keeps a copy), and every script loads
with it exactly once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from evalharness.core import prelude, telemetry
from evalharness.core.keys import GlobalKeys, QueueKeys
from evalharness.core.prelude import BUCKET_BOUNDS_MS, EVENTS_MAXLEN, MINUTE_TTL_S, WAKE_CAP, prelude_source
from evalharness.core.queue import SCRIPT_NAMES, JobRequest, Queue, link, script_source

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "core" / "lua"
# every script a module registers, not only the queue's own set
ALL_SCRIPTS = sorted(p.stem for p in LUA.glob("*.lua") if not p.stem.startswith("_"))


def _eval(r: Any, body: str, keys: list[str] | None = None, args: list[Any] | None = None) -> Any:
    keys = keys or []
    return r.eval(prelude_source() + "\n" + body, len(keys), *keys, *(args or []))


def test_the_constants_the_scripts_see_are_the_python_ones(r: Any) -> None:
    got = _eval(r, "return {WAKE_CAP, MINUTE_TTL, EVENTS_MAXLEN, RT_BOUNDS}")
    assert got == [WAKE_CAP, MINUTE_TTL_S, EVENTS_MAXLEN, list(BUCKET_BOUNDS_MS)]
    # telemetry reads the histogram and caps its own events with the very same objects
    assert telemetry.BUCKET_BOUNDS_MS is prelude.BUCKET_BOUNDS_MS
    assert telemetry.EVENTS_MAXLEN == EVENTS_MAXLEN
    # the minute hashes outlive the hour the snapshot reads
    assert telemetry.MINUTES_READ * 60 < MINUTE_TTL_S


def test_now_ms_is_the_servers_clock(r: Any) -> None:
    sec, usec = r.time()
    got = int(_eval(r, "return now_ms()"))
    assert sec * 1000 + usec // 1000 <= got < sec * 1000 + usec // 1000 + 5_000


def test_the_names_the_prelude_builds_are_those_of_keys_py(r: Any) -> None:
    k = QueueKeys("p", "q")
    events, minute_key = _eval(r, "return {events_key(ARGV[1]), tm_count(ARGV[1], 125000, 'a', 1)}", args=[k.base])
    assert events == GlobalKeys("p").events
    assert minute_key == k.minute(2)  # 125 s into the epoch: minute 2
    assert r.hgetall(k.minute(2)) == {"a": "1"} and 0 < r.ttl(k.minute(2)) <= MINUTE_TTL_S
    # sink_write: the first write of a field wins; both keys keep the sink's TTL
    for outcome in ('{"result":1}', '{"result":2}'):
        _eval(r, "sink_write(ARGV[1], 's', 'f', 60, ARGV[2])", args=[k.base, outcome])
    assert r.hgetall(k.results("s")) == {"f": '{"result":1}'}
    assert r.lrange(k.results_done("s"), 0, -1) == ['f\t{"result":1}']
    assert 0 < r.ttl(k.results("s")) <= 60 and 0 < r.ttl(k.results_done("s")) <= 60


def test_wake_never_leaves_more_than_the_cap_waiting(r: Any) -> None:
    wake = QueueKeys("p", "q").wake
    for _ in range(WAKE_CAP + 5):
        _eval(r, "wake(KEYS[1])", keys=[wake])
    assert r.llen(wake) == WAKE_CAP
    r.delete(wake)
    r.rpush(wake, "1")
    _eval(r, "wake_fill(KEYS[1], 3)", keys=[wake])  # one per ready job, counting the one waiting
    assert r.llen(wake) == 3
    _eval(r, "wake_fill(KEYS[1], 1000)", keys=[wake])
    assert r.llen(wake) == WAKE_CAP


def test_add_event_caps_the_stream_and_stamps_the_time(r: Any) -> None:
    events = GlobalKeys("p").events
    _eval(r, "add_event(KEYS[1], {'kind', 'x', 'n', 3}, 12.3456)", keys=[events])
    ((_, fields),) = r.xrange(events)
    assert fields == {"kind": "x", "n": "3", "at": "12.346"}


PIECES = ("now_ms", "wake", "wake_fill", "sink_write", "tm_count", "events_key", "add_event")


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_every_script_loads_with_the_pieces_it_calls_once(r: Any, name: str) -> None:
    source = script_source(name)
    body = (LUA / f"{name}.lua").read_text()
    assert source.endswith(body)
    for piece in PIECES:
        defined = source.count(f"local function {piece}(")
        assert defined <= 1, piece
        if re.search(rf"\b{piece}\(", body):
            assert defined == 1, piece
    for constant in ("WAKE_CAP", "MINUTE_TTL", "EVENTS_MAXLEN", "RT_BOUNDS"):
        assert source.count(f"local {constant} =") <= 1
    # it compiles on the server (a missing or misplaced piece would not)
    assert r.script_load(source)


def test_a_script_is_loaded_with_only_what_it_uses() -> None:
    # checkpoint calls nothing shared: it is loaded as it is written, at no cost from the prelude
    assert script_source("checkpoint") == (LUA / "checkpoint.lua").read_text()
    # renew only reads the clock
    renew = script_source("renew")
    assert "local function now_ms()" in renew and "WAKE_CAP" not in renew and "b_job_done" not in renew
    # a piece another piece calls comes along, before it: ack -> b_job_done -> b_maybe_finish -> b_event
    ack = script_source("ack")
    assert ack.index("local function add_event(") < ack.index("local function b_event(")
    assert ack.index("local function b_event(") < ack.index("local function b_job_done(")


def test_the_linker_refuses_what_it_cannot_split() -> None:
    with pytest.raises(ValueError, match="outside a definition"):
        link("local function f()\nend\n\nredis.call('DEL', 'x')\n", "f()")
    with pytest.raises(ValueError, match="splits a function"):
        link("local function f()\n  local a = 1\n\n  return a\nend\n", "f()")


def test_no_script_keeps_its_own_copy_of_a_prelude_piece() -> None:
    copies = {
        "the TIME expression": r"redis\.call\('TIME'\)",
        "the wake cap": r"<\s*16\b|math\.min\([^)]*16\)",
        "the minute TTL": r"\b90000\b",
        "the events cap": r"'MAXLEN'|\b10000\b",
        "the sink write": r"'HSETNX',\s*rk|:done'",
        "the minute key": r"'m:'",
        "the events key": r":events'",
        "the bucket bounds": r"600000",
        "a clock helper": r"local function b_now",
    }
    found = []
    for path in sorted(LUA.glob("*.lua")):
        if path.name == "_prelude.lua":
            continue
        text = path.read_text()
        found += [f"{path.name}: {what}" for what, pattern in copies.items() if re.search(pattern, text)]
    assert found == []
    prelude_text = (LUA / "_prelude.lua").read_text()
    assert not re.search(r"\b(16|90000|10000)\b", prelude_text), "the prelude's numbers are rendered from Python"


def test_key_names_are_built_only_in_keys_py() -> None:
    # names under the prefix, spelled anywhere but core/keys.py (f-strings or concatenation)
    pattern = re.compile(
        r"""(f["'][^"']*\{[^}]*(prefix|base)[^}]*\}:?"""
        r"""(masters|events|telemetry|control|batch_queues|workers|batch:|batches|m:)"""
        r"""|\+\s*["']:(running|cancelled|failed|done|events|_indexed)["'])"""
    )
    found = []
    for top in ("core", "daemon", "tui"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.name == "keys.py" and path.parent.name == "core":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []


async def test_ack_release_and_fail_count_the_minute_with_the_rendered_ttl(aclient: Any) -> None:
    q = Queue(aclient, prefix="t")
    await q.dispatch_many(JobRequest("noop", {}, queue="q", result_to=("s", f"f{i}", 60)) for i in range(3))
    a, b, c = (await q.pop("q", 3, 30, "w")).jobs
    assert await q.ack("q", "w", [(a.id, "7", 30)]) == []
    assert await q.release("q", "w", b.id, 0, "retry", {"kind": "timeout"})
    assert await q.fail("q", "w", c.id, {"kind": "timeout", "message": "slow"})
    keys = q.keys("q")
    [minute] = [m async for m in aclient.scan_iter(match=keys.base + "m:*")]
    row = await aclient.hgetall(minute)
    assert {k: int(v) for k, v in row.items()} == {
        "completed": 1,
        "rt_sum": 30,
        "rt_max": 30,
        "rt_min": 30,
        "rt:4": 1,  # 30 ms: above the third bound (25), within the fourth (50)
        "retries": 1,
        "timeouts": 2,
        "failed": 1,
    }
    assert 0 < await aclient.ttl(minute) <= MINUTE_TTL_S
    outcomes = await q.results("q", "s", ["f0", "f2"])
    assert outcomes[0] == {"result": 7}
    assert outcomes[1] is not None and outcomes[1]["error"]["kind"] == "timeout"


def test_the_queue_scripts_are_all_loaded_from_their_files() -> None:
    assert set(SCRIPT_NAMES) <= set(ALL_SCRIPTS)
