"""The adaptive limiter: its decision as a pure function (a table of cases), the same decision in
``adaptive.lua`` on the real Redis (both fed one random history and compared step by step), the
leases of its slots, its settings and its place in the telemetry snapshot."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support.procs import until

from evalharness.core.adaptive import (
    NEUTRAL,
    OK,
    PROVIDER_LIMITER,
    THROTTLED,
    AdaptiveClient,
    AdaptiveParams,
    AdaptiveState,
    Grant,
    initial_state,
    on_release,
    parse_adaptive,
    provider_scope,
    read_limiters,
    slot,
)
from evalharness.core.errors import ConfigError
from evalharness.core.jobs import RateLimited
from evalharness.core.keys import LimiterKeys
from evalharness.core.telemetry import read_events

P = AdaptiveParams(floor=2, ceiling=20, start=8, decrease=0.5, cooldown=1.0)


def s(limit: float, ok: int = 0, last: int = 0, at: int = 0) -> AdaptiveState:
    return AdaptiveState(int(limit * 1000), ok, last, at)


# -- the pure function ----------------------------------------------------------------------


def test_a_429_halves_the_limit_and_remembers_the_level_it_hit() -> None:
    state, lowered = on_release(s(8, ok=3), P, THROTTLED, now_ms=10_000, granted_ms=9_900, in_use=99)
    assert lowered and state == s(4, ok=0, last=10_000, at=8)
    assert state.allowed == 4


def test_a_429_never_goes_below_the_floor() -> None:
    state, lowered = on_release(s(3), P, THROTTLED, now_ms=10_000, granted_ms=9_000, in_use=99)
    assert lowered and state.limit == 2000


def test_one_burst_of_429s_lowers_the_limit_once() -> None:
    first, _ = on_release(s(16), P, THROTTLED, now_ms=10_000, granted_ms=9_950, in_use=99)
    # within the cooldown: no second decrease
    again, lowered = on_release(first, P, THROTTLED, now_ms=10_500, granted_ms=10_200, in_use=99)
    assert not lowered and again.limit == 8000
    # after the cooldown, but the call was granted before the decrease: an echo of the same burst
    echo, lowered = on_release(first, P, THROTTLED, now_ms=12_000, granted_ms=9_990, in_use=99)
    assert not lowered and echo.limit == 8000
    # after the cooldown, granted after the decrease: a new signal
    new, lowered = on_release(first, P, THROTTLED, now_ms=12_000, granted_ms=10_001, in_use=99)
    assert lowered and new.limit == 4000


def test_successes_raise_the_limit_one_slot_per_window() -> None:
    state = s(5)
    for i in range(4):
        state, _ = on_release(state, P, OK, now_ms=1000 + i, granted_ms=1000, in_use=99)
        assert state.limit == 5000 and state.ok == i + 1
    state, _ = on_release(state, P, OK, now_ms=2000, granted_ms=1000, in_use=99)
    assert state.limit == 6000 and state.ok == 0
    # a fixed increase_after instead of the current limit
    state, _ = on_release(
        s(5, ok=1), AdaptiveParams(increase_after=2, ceiling=64), OK, now_ms=0, granted_ms=0, in_use=99
    )
    assert state.limit == 6000


def test_successes_below_a_full_limit_do_not_raise_it() -> None:
    # 3 calls in flight under a limit of 8: the limit was not what bounded them
    state = s(8, ok=7)
    state, _ = on_release(state, P, OK, now_ms=5, granted_ms=1, in_use=3)
    assert state == s(8, ok=7)
    state, _ = on_release(state, P, OK, now_ms=5, granted_ms=1, in_use=8)
    assert state == s(9)


def test_successes_of_calls_started_before_the_last_decrease_do_not_undo_it() -> None:
    lowered = s(4, last=10_000, at=8)
    state, _ = on_release(lowered, P, OK, now_ms=10_050, granted_ms=9_000, in_use=8)
    assert state == lowered
    state, _ = on_release(lowered, P, OK, now_ms=10_050, granted_ms=10_000, in_use=4)
    assert state.ok == 1


def test_a_429_resets_the_success_streak_even_when_it_does_not_lower() -> None:
    state, lowered = on_release(
        s(8, ok=7, last=10_000, at=16), P, THROTTLED, now_ms=10_100, granted_ms=10_050, in_use=99
    )
    assert not lowered and state == s(8, ok=0, last=10_000, at=16)


def test_just_below_the_throttled_level_it_probes_slowly() -> None:
    # at 9 after being throttled at 10: 4 x 9 successes before trying 10 again
    state = s(9, at=10, last=1)
    for i in range(9 * 4 - 1):
        state, _ = on_release(state, P, OK, now_ms=10 + i, granted_ms=5, in_use=99)
    assert state.limit == 9000
    state, _ = on_release(state, P, OK, now_ms=100, granted_ms=5, in_use=99)
    assert state.limit == 10_000
    # above the throttled level the pace is normal again
    state, _ = on_release(s(10, at=10, last=1, ok=9), P, OK, now_ms=100, granted_ms=5, in_use=99)
    assert state.limit == 11_000


def test_the_ceiling_holds_and_other_errors_teach_nothing() -> None:
    state, _ = on_release(s(20, ok=19), P, OK, now_ms=0, granted_ms=0, in_use=99)
    assert state.limit == 20_000 and state.ok == 0
    unchanged = s(7, ok=3, last=5, at=9)
    assert on_release(unchanged, P, NEUTRAL, now_ms=99, granted_ms=0, in_use=99) == (unchanged, False)
    # a stored limit outside the caller's bounds is brought inside them first
    assert on_release(s(50), P, NEUTRAL, now_ms=0, granted_ms=0, in_use=99)[0].limit == 20_000
    assert initial_state(P) == s(8)


def test_an_uneven_factor_keeps_whole_thousandths() -> None:
    params = AdaptiveParams(floor=1, ceiling=64, start=7, decrease=0.7)
    state, _ = on_release(s(7), params, THROTTLED, now_ms=1, granted_ms=1, in_use=99)
    assert state.limit == 4900 and state.allowed == 4


# -- settings -------------------------------------------------------------------------------


def test_adaptive_settings_parse_and_name_what_is_wrong() -> None:
    assert parse_adaptive(True, "f: table [providers.openai]") == AdaptiveParams()
    assert parse_adaptive(False, "f: table [providers.openai]") is None
    got = parse_adaptive({"floor": 2, "ceiling": 4, "cooldown": 1, "key": "team"}, "f: table [providers.openai]")
    assert got == AdaptiveParams(floor=2, ceiling=4, start=4, cooldown=1.0, key="team")
    with pytest.raises(ConfigError, match=r"f: table \[providers.openai.adaptive\]: unknown key 'floors'"):
        parse_adaptive({"floors": 2}, "f: table [providers.openai]")
    with pytest.raises(ConfigError, match=r"\[providers.openai.adaptive\] key 'ceiling': must be >= floor \(4\)"):
        parse_adaptive({"floor": 4, "ceiling": 2}, "f: table [providers.openai]")
    with pytest.raises(ConfigError, match=r"key 'floor': expected a whole number, got 1.5"):
        parse_adaptive({"floor": 1.5}, "f: table [providers.openai]")
    with pytest.raises(ConfigError, match=r"key 'decrease': must be a factor between 0 and 1"):
        parse_adaptive({"decrease": 1}, "f: table [providers.openai]")
    with pytest.raises(ConfigError, match=r"key 'adaptive': expected true, false or a table"):
        parse_adaptive("yes", "f: table [providers.openai]")


def test_the_config_file_validates_the_adaptive_table(tmp_path: Path, clean_config_env: None) -> None:
    from evalharness.core.config import load_config
    from evalharness.core.providers.settings import resolve_provider

    good = tmp_path / "good.toml"
    good.write_text(
        '[providers.openai]\nbase_url = "http://127.0.0.1:9/v1"\n[providers.openai.adaptive]\nceiling = 12\nstart = 3\n'
        '[providers.local]\nbase_url = "http://127.0.0.1:8/v1"\nadaptive = true\n'
    )
    config = load_config(str(good))
    settings = resolve_provider("openai", config.providers, env={})
    assert settings.adaptive == AdaptiveParams(ceiling=12, start=3)
    assert resolve_provider("local", config.providers, env={}).adaptive == AdaptiveParams()
    bad = tmp_path / "bad.toml"
    bad.write_text('[providers.openai.adaptive]\nceiling = "many"\n')
    with pytest.raises(
        ConfigError, match=r"bad.toml: table \[providers.openai.adaptive\] key 'ceiling': expected a whole number"
    ):
        load_config(str(bad))


def test_a_provider_key_is_its_url_and_key_variable_never_the_key() -> None:
    assert provider_scope("https://api.openai.com/v1/", "OPENAI_API_KEY") == "https://api.openai.com/v1 $OPENAI_API_KEY"
    assert provider_scope("https://x/v1", "K", "team-a") == "team-a"
    assert "{" not in provider_scope("http://h/{v}", None)


# -- the script on Redis --------------------------------------------------------------------


async def test_the_script_takes_the_same_decisions_as_the_pure_function(aclient: Any) -> None:
    rnd = random.Random(16)
    client = AdaptiveClient(aclient, "eh")
    for params in (
        P,
        AdaptiveParams(floor=1, ceiling=64, start=30, decrease=0.7, cooldown=0.25, increase_after=3, probe_slowdown=2),
    ):
        name = f"agree{params.start}"
        state = initial_state(params)
        now = 1_700_000_000_000
        lowered_any = raised_any = False
        for step in range(800):
            now += rnd.choice((1, 5, 40, 300, 1500))
            grant = await client.acquire(name, "_", f"m{step}", params, now_ms=now)
            assert grant.granted  # one slot at a time: always free
            assert grant.allowed == state.allowed
            outcome = rnd.choices((OK, THROTTLED, NEUTRAL), weights=(8, 2, 1))[0]
            granted_at = now - rnd.choice((0, 0, 2000))  # some calls were granted long before
            now += rnd.choice((1, 10, 200))
            in_use = rnd.choice((1, state.allowed - 1, state.allowed, state.allowed + 3))  # limit full or not
            allowed, in_flight, lowered = await client.release(
                name, "_", f"m{step}", params, outcome, Grant(True, granted_at, grant.allowed, in_use), now_ms=now
            )
            before = state
            state, expect_lowered = on_release(state, params, outcome, now, granted_at, in_use)
            assert await client.state(name, "_") == state, f"step {step}: {outcome} from {before}"
            assert (allowed, in_flight, lowered) == (state.allowed, 0, expect_lowered)
            lowered_any |= lowered
            raised_any |= state.limit > before.limit
        assert lowered_any and raised_any  # the history exercised both directions


async def test_slots_beyond_the_limit_are_refused_and_lapse_when_not_renewed(aclient: Any) -> None:
    client = AdaptiveClient(aclient, "eh")
    params = AdaptiveParams(floor=1, ceiling=8, start=3, hold=2.0)
    t = 1_700_000_000_000
    grants = [await client.acquire("cap", "k", f"s{i}", params, now_ms=t) for i in range(4)]
    assert [g.granted for g in grants] == [True, True, True, False]
    assert grants[3].in_flight == 3 and grants[3].allowed == 3
    # the holder of s0 renews; s1 and s2 stop (their process died)
    await client.renew("cap", "k", "s0", params, now_ms=t + 1500)
    later = await client.acquire("cap", "k", "s9", params, now_ms=t + 2001)
    assert later.granted and later.in_flight == 2  # s0 (renewed) and s9


async def test_every_worker_sees_one_limit(aclient: Any, redis_url: str) -> None:
    from evalharness.core.connection import async_client

    other = async_client(redis_url)
    try:
        a, b = AdaptiveClient(aclient, "eh"), AdaptiveClient(other, "eh")
        params = AdaptiveParams(floor=1, ceiling=8, start=4, cooldown=0)
        g = await a.acquire("shared", "k", "x", params)
        await a.release("shared", "k", "x", params, THROTTLED, g)
        held = [await b.acquire("shared", "k", f"y{i}", params) for i in range(3)]
        assert [h.granted for h in held] == [True, True, False]  # b obeys the limit a lowered
    finally:
        await other.aclose()


async def test_a_provider_call_in_a_slot_feeds_the_limit(aclient: Any) -> None:
    client = AdaptiveClient(aclient, "eh")
    params = AdaptiveParams(floor=1, ceiling=4, start=2, cooldown=0, retry_after=0.1)
    async with slot(PROVIDER_LIMITER, "scope", params, shown="openai", client=client) as grant:
        assert grant is not None and grant.allowed == 2
        # the second call fits, the third is refused as a rate limit (no try used)
        async with slot(PROVIDER_LIMITER, "scope", params, client=client):
            with pytest.raises(RateLimited) as refused:
                async with slot(PROVIDER_LIMITER, "scope", params, client=client):
                    pass
    assert refused.value.retry_after is not None and 0.05 <= refused.value.retry_after <= 0.15
    assert "1 of 2" not in str(refused.value) and "2 of 2" in str(refused.value)
    with pytest.raises(RateLimited):
        async with slot(PROVIDER_LIMITER, "scope", params, shown="openai", client=client):
            raise RateLimited(1.0, "429")
    # of the two successes only the one that filled the limit counted (2 needed to raise it); the
    # 429 halved the limit
    after = await client.state(PROVIDER_LIMITER, "scope")
    assert after is not None and (after.limit, after.ok, after.throttled_at) == (1000, 0, 2)
    with pytest.raises(ValueError):
        async with slot(PROVIDER_LIMITER, "scope", params, client=client):
            raise ValueError("a 500 says nothing of load")
    assert await client.state(PROVIDER_LIMITER, "scope") == after
    # unconfigured, or no Redis bound in this process: no limit at all
    async with slot(PROVIDER_LIMITER, "scope", None, client=client) as none:
        assert none is None
    events = [e for e in await read_events(aclient, "eh") if e["kind"] == "limiter_lowered"]
    assert [(e["limiter"], e["key"], e["limit"]) for e in events] == [("openai", "scope", "1")]
    assert events[0]["message"] == "adaptive limiter openai (scope): a 429, limit lowered from 2 to 1"
    snapshot = await read_limiters(aclient, "eh")
    assert snapshot == [
        {
            "name": "openai",
            "key": "scope",
            "kind": "adaptive",
            "limit": 1,
            "floor": 1,
            "ceiling": 4,
            "in_flight": 0,
            "ok_1h": 2,
            "throttled_1h": 1,
            "decreases_1h": 1,
            "last_decrease_at": snapshot[0]["last_decrease_at"],
        }
    ]
    assert abs(snapshot[0]["last_decrease_at"] - time.time()) < 30


async def test_the_snapshot_lists_limiters_and_forgets_expired_ones(aclient: Any) -> None:
    from evalharness.core.telemetry import collect_snapshot

    client = AdaptiveClient(aclient, "eh")
    params = AdaptiveParams(floor=1, ceiling=9, start=5)
    g = await client.acquire("search", "tenant-a", "j1", params)
    assert g.granted
    snap = await collect_snapshot(aclient, "eh")
    assert [(x["name"], x["key"], x["limit"], x["in_flight"], x["ceiling"]) for x in snap["limiters"]] == [
        ("search", "tenant-a", 5, 1, 9)
    ]
    k = LimiterKeys("eh", "search", "tenant-a")
    await aclient.delete(k.adaptive)  # what 24 h unused does
    assert (await collect_snapshot(aclient, "eh"))["limiters"] == []
    assert await aclient.hlen("eh:limiters") == 0


SLOT_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from evalharness.core.adaptive import AdaptiveParams, bind, slot
    from evalharness.core.connection import async_client

    async def main():
        bind(async_client(sys.argv[1]), "eh")
        params = AdaptiveParams(floor=1, ceiling=4, start=1, hold=1.5)
        async with slot("@provider", "crash", params):
            print("held", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_the_slot_of_a_killed_process_comes_back_after_its_lease(aclient: Any, redis_url: str) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SLOT_HOLDER, redis_url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert (await asyncio.wait_for(holder.stdout.readline(), 30)).strip() == b"held"
        client = AdaptiveClient(aclient, "eh")
        params = AdaptiveParams(floor=1, ceiling=4, start=1, hold=1.5)
        # held, and renewed past its lease while the process lives
        grant = await client.acquire("@provider", "crash", "probe", params)
        assert not grant.granted and grant.in_flight == 1
        renewed_until = await aclient.zscore(LimiterKeys("eh", "@provider", "crash").slots, await _only_member(aclient))
        await until(lambda: _deadline_moved(aclient, renewed_until), deadline=10, what="the holder renewing its slot")
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(holder.wait(), 10)
        killed = time.monotonic()

        async def free() -> bool:
            return (await client.acquire("@provider", "crash", "probe", params)).granted

        await until(free, deadline=10, what="the killed process's slot lapsing")
        assert time.monotonic() - killed <= 1.5 + 1.0
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def _only_member(aclient: Any) -> str:
    members = await aclient.zrange(LimiterKeys("eh", "@provider", "crash").slots, 0, -1)
    assert len(members) == 1
    return str(members[0])


async def _deadline_moved(aclient: Any, first: float) -> bool:
    scores = await aclient.zrange(LimiterKeys("eh", "@provider", "crash").slots, 0, -1, withscores=True)
    return bool(scores) and scores[0][1] > first


async def test_the_adapters_and_the_client_call_through_the_adaptive_limit(aclient: Any) -> None:
    from types import SimpleNamespace

    from support.openai_stub import OpenAIStub

    from evalharness.core.adaptive import bind
    from evalharness.core.providers.adapters import adapter
    from evalharness.core.providers.client import OpenAIClient
    from evalharness.core.providers.settings import ProviderSettings

    bind(aclient, "eh")
    with OpenAIStub(latency=(0.3, 0.3)) as stub:
        # [sut.http] adaptive: a 429 from the service lowers its limit
        config = SimpleNamespace(sut={"http": {"adaptive": {"start": 4, "cooldown": 0}}}, providers={}, path=None)
        call, _ = adapter(f"http:{stub.root}/answer", config)
        stub.plan("429")
        with pytest.raises(RateLimited):
            await call("hello")
        assert await call("hello") == "hello"
        http_state = await AdaptiveClient(aclient, "eh").state(
            PROVIDER_LIMITER, provider_scope(f"{stub.root}/answer", None)
        )
        assert http_state is not None and http_state.limit == 2000 and http_state.throttled_at == 4
        # a provider allowing one call at once: the second concurrent chat is refused before any request
        settings = ProviderSettings(
            base_url=stub.base_url, model="m", adaptive=AdaptiveParams(floor=1, ceiling=4, start=1)
        )
        client = OpenAIClient(settings)
        before = len(stub.seen("/v1/chat/completions"))
        outcomes = await asyncio.gather(
            *(client.chat([{"role": "user", "content": "hi"}]) for _ in range(2)), return_exceptions=True
        )
        assert sum(isinstance(o, RateLimited) for o in outcomes) == 1
        assert "adaptive limiter openai" in str(next(o for o in outcomes if isinstance(o, RateLimited)))
        assert len(stub.seen("/v1/chat/completions")) == before + 1


def test_the_documented_defaults_are_the_programs() -> None:
    import re
    from dataclasses import fields

    page = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text()
    section = page[page.index("## Adaptive concurrency") :]
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| `([^`]+)`", section, re.M))
    defaults = AdaptiveParams()
    for f in fields(AdaptiveParams):
        if f.name == "key":
            continue
        assert f.name in rows, f"providers.md does not document {f.name}"
        assert float(rows[f.name]) == float(getattr(defaults, f.name)), f.name


async def test_a_jobs_adaptive_slot_is_renewed_with_its_lease_and_its_outcome_teaches_the_limit(aclient: Any) -> None:
    from evalharness.core.jobs import Job, JobOptions
    from evalharness.core.limits import LimiterClient, adaptive_limiter

    lim = adaptive_limiter("renewed", floor=1, ceiling=4, start=2, hold=30, cooldown=0)
    limiters = LimiterClient(aclient, "eh")
    jobs = [
        Job(id=f"job{i}", name="x", payload=None, queue="t", options=JobOptions(limiters=("renewed",)), enqueued_at=0.0)
        for i in range(3)
    ]
    wait, held = await limiters.acquire(jobs[0], ("renewed",))
    assert wait == 0 and held == [(lim, "_")]
    wait2, held2 = await limiters.acquire(jobs[1], ("renewed",))
    assert wait2 == 0
    refused, none = await limiters.acquire(jobs[2], ("renewed",))
    assert 0 < refused and none == []
    slots = LimiterKeys("eh", "renewed", "_").slots
    before = await aclient.zscore(slots, "job0")
    await aclient.zadd(slots, {"job0": before - 20_000})  # as if its last renewal were 20 s old
    await limiters.renew([(jobs[0], held), (jobs[1], held2)])
    assert await aclient.zscore(slots, "job0") >= before
    await limiters.release(jobs[1], held2, "ok")  # filled the limit: counts towards a raise
    await limiters.release(jobs[0], held, "rate_limited")
    state = await limiters.adaptive.state("renewed", "_")
    assert state is not None and (state.allowed, state.throttled_at) == (1, 2)
    assert await aclient.zcard(slots) == 0
