"""Online monitoring: the drift rule (once per crossing, with hysteresis) as the script applies it
on a real Redis, bounded score storage, sampling, and captures while Redis is stopped (nothing
raises, nothing blocks, what was dropped is counted and reaches Redis once it is back)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from support.openai_stub import OpenAIStub
from support.procs import Processes, live_workers, wait_until

from evalharness.core import online
from evalharness.core.embedded import EmbeddedServer
from evalharness.core.errors import ConfigError
from evalharness.core.judges import JudgeScorer
from evalharness.core.keys import OnlineKeys
from evalharness.core.online import (
    Monitor,
    OnlineSettings,
    check_online_table,
    drift_transition,
    record_score,
    should_sample,
)
from evalharness.core.providers.settings import ProviderSettings

KEY = "sk-online-test-31415926"


def judge(base_url: str = "http://127.0.0.1:9/v1") -> JudgeScorer:
    return JudgeScorer("llm-as-judge", "llm", ProviderSettings(base_url=base_url, timeout=5), "judge-m")


def test_sampling_decision() -> None:
    assert not should_sample(0.0, lambda: 0.0)
    assert should_sample(1.0, lambda: 0.999)
    assert should_sample(0.3, lambda: 0.29) and not should_sample(0.3, lambda: 0.3)


def test_online_table_errors_name_the_key() -> None:
    assert check_online_table({"sampling_rate": 1, "window": 10, "min_samples": 5}, "f.toml")["sampling_rate"] == 1.0
    with pytest.raises(ConfigError, match=r"f\.toml: table \[online\]: unknown key 'rate'"):
        check_online_table({"rate": 1}, "f.toml")
    with pytest.raises(ConfigError, match=r"key 'window': expected an integer"):
        check_online_table({"window": "50"}, "f.toml")
    with pytest.raises(ConfigError, match="min_samples .* cannot exceed window"):
        check_online_table({"window": 5, "min_samples": 6}, "f.toml")
    with pytest.raises(ConfigError, match="sampling_rate must be between 0 and 1"):
        check_online_table({"sampling_rate": 1.5}, "f.toml")


async def test_drift_alert_fires_once_per_crossing_with_hysteresis(aclient: Any) -> None:
    settings = OnlineSettings(name="shop", window=4, min_samples=3, threshold=0.75, hysteresis=0.125, keep=6)
    scores = [
        1,
        1,
        1,
        0.25,  # mean 0.8125: above the threshold
        0.25,  # 0.625: drift
        1,
        1,  # still below: no second alert
        1,  # 0.8125: above the threshold, under threshold + hysteresis: still alerting
        1,  # 1.0: recovered
        0.25,
        0.25,
    ]  # 0.625: a new crossing, a new alert
    transitions = [(await record_score(aclient, "eh", settings, s, {"at": time.time()}))[2] for s in scores]
    assert {i: t for i, t in enumerate(transitions) if t} == {4: "drift", 8: "recovered", 10: "drift"}
    events = [fields for _, fields in await aclient.xrange("eh:events")]
    assert [e["kind"] for e in events] == ["online_drift", "online_recovered", "online_drift"]
    assert events[0]["monitor"] == "shop" and float(events[0]["mean"]) == pytest.approx(0.625)
    keys = OnlineKeys("eh", "shop")
    assert await aclient.llen(keys.scores) == 6  # capped at keep
    assert await aclient.llen(keys.window) == 4
    status = await online.status(aclient, "eh", "shop")
    assert status["alerting"] and status["scored"] == len(scores) and status["mean"] == pytest.approx(0.625)
    await record_score(aclient, "eh", settings, None, {"error": {"kind": "judge_unparseable"}})
    assert (await online.status(aclient, "eh", "shop"))["failed"] == 1
    day = (await online.trend(aclient, "eh", "shop"))[-1]
    assert day["total"] == len(scores) and day["mean"] == pytest.approx(sum(scores) / len(scores))


async def test_the_script_applies_the_same_rule_as_drift_transition(aclient: Any) -> None:
    rng = random.Random(11)
    for trial in range(5):
        settings = OnlineSettings(
            name=f"m{trial}", window=rng.randint(2, 8), min_samples=2, threshold=0.5, hysteresis=0.25
        )
        window: list[float] = []
        alerting = False
        for _ in range(60):
            score = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0])  # exact in binary: no rounding at the threshold
            window = [score, *window][: settings.window]
            want = drift_transition(alerting, sum(window) / len(window), len(window), settings)
            alerting = {"drift": True, "recovered": False}.get(want, alerting)
            assert (await record_score(aclient, "eh", settings, score, {}))[2] == want


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path / "own-redis")
    server.ensure()
    yield server
    server.stop()


def test_capture_with_redis_stopped_never_raises_nor_blocks_and_counts_drops(own_server: EmbeddedServer) -> None:
    url = own_server.url
    monitor = Monitor(OnlineSettings(sampling_rate=1.0, dispatch_timeout=0.3), judge(), redis_url=url)
    try:
        assert monitor.capture("q", "a") and monitor.flush()
        r = redis.Redis.from_url(url)
        assert r.zcard("eh:{q:judge}:ready") == 1
        r.close()
        own_server.stop()
        started = time.monotonic()
        for i in range(3):
            assert monitor.capture(f"q{i}", "a", metadata={"i": i})  # taken, not raised
        assert time.monotonic() - started < 0.1  # the application never waits for Redis
        assert monitor.flush(timeout=10)
        assert monitor.dropped == 3 and monitor.dispatched == 1
        own_server.ensure()
        assert monitor.capture("again", "a") and monitor.flush(timeout=10)
        r = redis.Redis.from_url(own_server.url, decode_responses=True)
        assert r.hget(OnlineKeys("eh", "default").state, "dropped") == "3"  # reported once Redis was back
        r.close()
    finally:
        monitor.close()


async def test_acapture_with_redis_stopped_returns_false_quickly(own_server: EmbeddedServer) -> None:
    url = own_server.url
    own_server.stop()
    monitor = Monitor(OnlineSettings(sampling_rate=1.0, dispatch_timeout=0.2), judge(), redis_url=url)
    try:
        started = time.monotonic()
        assert await monitor.acapture("q", "a") is False
        assert time.monotonic() - started < 2.0
        # the dispatcher may still be trying when the wait above gives up (a slow machine): once it
        # has settled, the capture is counted as dropped, not queued
        assert monitor.flush(timeout=10)
        assert monitor.dropped == 1
    finally:
        monitor.close()


def test_module_capture_never_raises_on_a_broken_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[online]\nsampling_rate = 7\n")
    monkeypatch.setenv("EVALHARNESS_CONFIG", str(bad))
    monkeypatch.setattr(online, "_default", None)
    monkeypatch.setattr("evalharness.core.config._explicit_path", None)
    assert online.capture("q", "a") is False
    assert asyncio.run(online.acapture("q", "a")) is False


@pytest.mark.slow
def test_captures_are_judged_by_workers_and_drift_shows_in_status(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    with OpenAIStub(api_key=KEY, latency=(0.0, 0.01)) as stub:
        # one job at a time: the scores are recorded in capture order, so the window is known
        procs.worker("judge", concurrency=1, imports=(), env={"OPENAI_API_KEY": KEY})
        wait_until(lambda: live_workers(redis_url, "judge") == 1, 20, "a judge worker")
        monitor = Monitor(
            OnlineSettings(name="faq", sampling_rate=1.0, window=5, min_samples=5, threshold=0.8),
            judge(stub.base_url),
            redis_url=redis_url,
        )
        try:
            for i in range(5):
                assert monitor.capture(f"q{i}", "fine [judge:1.0]", metadata={"i": i})
            for i in range(4):
                assert monitor.capture(f"r{i}", "bad [judge:0.1]")
            assert monitor.flush()
        finally:
            monitor.close()
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        wait_until(lambda: int(r.hget(OnlineKeys("eh", "faq").state, "scored") or 0) == 9, 60, "9 judged captures")
        kinds = [f["kind"] for _, f in r.xrange("eh:events") if f["kind"].startswith("online_")]
        assert kinds == ["online_drift"]  # once, though the mean stayed below for 3 more scores
        r.close()
        done = procs.cli("online", "status", "--json")
        assert done.returncode == 1, done.stderr  # alerting
        doc = json.loads(done.stdout)["monitors"][0]
        assert doc["monitor"] == "faq" and doc["alerting"] and doc["scored"] == 9 and doc["mean"] == pytest.approx(0.28)
        assert doc["recent"][0]["metadata"] == {} and doc["recent"][-1]["reason"]
        trend = procs.cli("online", "trend", "--name", "faq", "--json")
        assert json.loads(trend.stdout)["days"][-1]["total"] == 9
        assert len(stub.seen("/v1/chat/completions")) == 9


def test_module_capture_uses_the_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    config = tmp_path / "evalharness.toml"
    config.write_text(
        '[providers.openai]\nbase_url = "http://127.0.0.1:9/v1"\n\n'
        '[metrics.llm-as-judge]\nmodel = "judge-m"\nrubric = "be kind"\n\n'
        '[online]\nname = "shop"\nsampling_rate = 1.0\nqueue = "online-judge"\n'
    )
    monkeypatch.setenv("EVALHARNESS_CONFIG", str(config))
    monkeypatch.setattr(online, "_default", None)
    # a --config another test's command loaded in this process would win over the variable
    monkeypatch.setattr("evalharness.core.config._explicit_path", None)
    try:
        assert online.capture("Where is my order?", "It ships today.", metadata={"route": "orders"})
        assert online._default is not None and online._default.flush()
        assert online.dropped() == 0
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        (job_id,) = r.zrange("eh:{q:online-judge}:ready", 0, -1)
        envelope = json.loads(r.hget(f"eh:{{q:online-judge}}:job:{job_id}", "data"))
        r.close()
        payload = envelope["payload"]
        assert envelope["name"] == "evalharness.online_judge"
        assert payload["settings"]["name"] == "shop" and payload["judge"]["model"] == "judge-m"
        assert "Rubric: be kind" in payload["judge"]["messages"][0]["content"] and payload["metadata"] == {
            "route": "orders"
        }
        assert "api_key" not in json.dumps(payload["judge"]["provider"]).replace("api_key_env", "")
    finally:
        if online._default is not None:
            online._default.close()
