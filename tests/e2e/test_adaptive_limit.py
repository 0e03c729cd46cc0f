"""Adaptive concurrency end to end: four worker processes share one adaptive limiter on the
stub provider's key.  The stub serves 10 calls at once and answers 429 above that; the shared
limit must settle at or below 10 quickly, keep the 429s rare from then on, and no 429 may use a
try."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from support.openai_stub import OpenAIStub
from support.procs import Processes

from evalharness.core.adaptive import PROVIDER_LIMITER, provider_scope
from evalharness.core.keys import LimiterKeys

QUOTA = 10
SAMPLES = 240


@pytest.mark.slow
def test_four_workers_share_one_adaptive_limit_that_settles_under_the_providers_quota(
    procs: Processes, tmp_path: Path, redis_url: str
) -> None:
    # calls long enough that a loaded test machine's own delays stay small beside them, as a real
    # provider's seconds-long calls do
    with OpenAIStub(max_concurrent=QUOTA, latency=(0.4, 0.6), retry_after=0.05) as stub:
        conf = tmp_path / "eval.toml"
        conf.write_text(
            f'[providers.openai]\nbase_url = "{stub.base_url}"\n'
            # start above the quota: the first burst of 429s has to bring it down
            "[providers.openai.adaptive]\nfloor = 1\nceiling = 64\nstart = 16\ncooldown = 0.2\nretry_after = 0.2\n"
        )
        data = tmp_path / "data.jsonl"
        data.write_text(
            "".join(
                json.dumps({"id": f"s{i}", "input": f"answer {i}", "expected_output": f"answer {i}"}) + "\n"
                for i in range(SAMPLES)
            )
        )
        state_key = LimiterKeys("eh", PROVIDER_LIMITER, provider_scope(stub.base_url, "OPENAI_API_KEY")).adaptive
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            run = procs.start(
                "-m",
                "evalharness.cli",
                "--config",
                str(conf),
                "run",
                str(data),
                "--sut",
                "openai:m1",
                "--metric",
                "exact-match",
                "--workers",
                "4",
                "--concurrency",
                "16",
                "--tries",
                "1",
                "--timeout",
                "10",
                "--json",
                "out.json",
                env={"OPENAI_BASE_URL": "", "OPENAI_API_KEY": "sk-stub"},
            )
            launched = time.monotonic()
            # sample the shared limit while the run goes on (a sampling cadence, not a wait)
            samples: list[tuple[float, int]] = []
            deadline = time.monotonic() + 180
            while run.poll() is None and time.monotonic() < deadline:
                raw = r.hget(state_key, "limit")
                if raw is not None:
                    samples.append((time.monotonic(), int(raw) // 1000))
                time.sleep(0.01)
            out, err = run.communicate(timeout=60)
            assert run.returncode == 0, err
            snapshot = json.loads(procs.cli("status", "--json").stdout)
        finally:
            r.close()
        report = json.loads((tmp_path / "out.json").read_text())
        # --tries 1: a 429 that used a try would have failed its sample
        assert report["scored_samples"] == SAMPLES and report["failures"]["total"] == 0

        calls = stub.seen("/v1/chat/completions")
        throttled = [c for c in calls if c.behaviour == "429-quota"]
        assert throttled, "the stub never said 429: the test did not exercise the limiter"
        assert stub.peak <= QUOTA
        first = calls[0].at
        settled = next((t for t, limit in samples if limit <= QUOTA), None)
        assert settled is not None, f"the limit never came down to {QUOTA}: {samples[-5:]}"
        assert settled - first < 60
        after = [c for c in calls if c.at > settled]
        late = [c for c in after if c.behaviour == "429-quota"]
        assert len(after) > SAMPLES // 2
        assert len(late) / len(after) < 0.05, f"{len(late)} of {len(after)} calls got 429 after the limit settled"
        later = [limit for t, limit in samples if t > settled]
        # it rests at or below the quota; it may probe one slot above it, briefly
        assert max(later) <= QUOTA + 1
        assert sum(1 for x in later if x <= QUOTA) >= 0.9 * len(later)

        limiters = [x for x in snapshot["limiters"] if x["kind"] == "adaptive"]
        assert len(limiters) == 1
        shown = limiters[0]
        assert shown["name"] == "openai" and shown["key"] == provider_scope(stub.base_url, "OPENAI_API_KEY")
        assert shown["limit"] <= QUOTA + 1 and shown["floor"] == 1 and shown["ceiling"] == 64
        assert shown["throttled_1h"] == len(throttled) and shown["decreases_1h"] >= 1
        assert shown["ok_1h"] == SAMPLES and shown["in_flight"] == 0
        print(
            f"\nfirst call {first - launched:.1f}s after the launch, the calls took {calls[-1].at - first:.1f}s; "
            f"settled after {settled - first:.2f}s; {len(throttled)} of {len(calls)} calls got 429, "
            f"{len(late)} of {len(after)} after settling; "
            f"limit now {shown['limit']}, {shown['decreases_1h']} decrease(s)"
        )
