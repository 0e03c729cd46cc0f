"""An adaptive limiter on jobs, with real worker processes: every worker obeys one limit, a job
that raises RateLimited lowers it and uses no try; the limit shows in ``evalharness status``, its
JSON and the Prometheus exposition."""

from __future__ import annotations

import io
import json
import re
import urllib.request
from typing import Any

import pytest
import support.adaptive_jobs  # noqa: F401  (registers the job and its limiter in this process too)
from rich.console import Console
from support.overlap import max_overlap
from support.procs import Processes, live_workers, until

from evalharness.cli.status import render
from evalharness.core.adaptive import AdaptiveClient, AdaptiveParams
from evalharness.core.keys import QueueKeys
from evalharness.core.queue import Queue

K = QueueKeys("eh", "t")


@pytest.mark.slow
async def test_workers_share_the_adaptive_limit_and_a_429_lowers_it_without_using_a_try(
    procs: Processes, aclient: Any, redis_url: str
) -> None:
    procs.worker("t", concurrency=10, imports=("support.adaptive_jobs",))
    procs.worker("t", concurrency=10, imports=("support.adaptive_jobs",))

    async def two_workers() -> bool:
        return live_workers(redis_url, "t") == 2

    await until(two_workers, deadline=60, what="two workers")
    q = Queue(aclient, "eh")
    # 12 calls for 20 worker slots: the limit (start 4) is what bounds them
    ids = [await q.dispatch("t.adaptive", {"seconds": 0.3}, result_to=("s", f"a{i}", 600)) for i in range(12)]

    async def results(prefix: str, n: int) -> list[dict[str, Any]] | None:
        raw = await aclient.hgetall(K.results("s"))
        got = [json.loads(v) for k, v in raw.items() if k.startswith(prefix)]
        return got if len(got) == n else None

    first = await until(lambda: results("a", 12), deadline=60, what="the first calls")
    assert len(ids) == 12 and all("result" in r for r in first)
    assert max_overlap([(r["result"]["started"], r["result"]["ended"]) for r in first]) <= 4
    # now every call's first attempt gets a 429
    for i in range(8):
        await q.dispatch("t.adaptive", {"seconds": 0.1, "throttle": True}, result_to=("s", f"b{i}", 600))
    second = await until(lambda: results("b", 8), deadline=60, what="the throttled calls")
    for r in second:
        assert r["result"]["releases"] >= 1 and r["result"]["tries_used"] == 1  # tries=1: the 429 used none
    state = await AdaptiveClient(aclient, "eh").state("t-api", "_")
    assert state is not None and state.allowed < 4 and state.throttled_at >= 1

    # status, its JSON and Prometheus show it
    shown = json.loads(procs.cli("status", "--json").stdout)["limiters"]
    assert [(x["name"], x["key"], x["kind"], x["limit"]) for x in shown] == [("t-api", "_", "adaptive", state.allowed)]
    assert shown[0]["throttled_1h"] >= 1 and shown[0]["decreases_1h"] >= 1 and shown[0]["ok_1h"] >= 12
    text = procs.cli("status").stdout
    assert f"limiter t-api (_): limit {state.allowed} (1–8)" in text
    server = procs.start("-m", "evalharness.cli", "metrics", "--serve", "0")
    line = server.stderr.readline() if server.stderr else ""
    url = re.search(r"http://\S+/metrics", line)
    assert url, line
    body = urllib.request.urlopen(url.group(0), timeout=10).read().decode()  # noqa: ASYNC210 (a one-off read in a test)
    assert f'evalharness_limiter_limit{{key="_",kind="adaptive",name="t-api"}} {float(state.allowed)}' in body
    assert 'evalharness_limiter_ceiling{key="_",kind="adaptive",name="t-api"} 8.0' in body


async def test_status_lists_each_adaptive_limiter(aclient: Any) -> None:
    from evalharness.core.telemetry import collect_snapshot

    client = AdaptiveClient(aclient, "eh")
    params = AdaptiveParams(floor=2, ceiling=32, start=6)
    await client.acquire("@provider", "https://api.example/v1 $EXAMPLE_KEY", "x", params, shown="example")
    snap = await collect_snapshot(aclient, "eh")
    console = Console(width=160, file=io.StringIO(), color_system=None)
    console.print(render(snap, 160))
    out = console.file
    assert isinstance(out, io.StringIO)
    assert (
        "limiter example (https://api.example/v1 $EXAMPLE_KEY): "
        "limit 6 (2–32), 1 in flight, 0 throttled 1h, 0 decrease(s) 1h" in out.getvalue()
    )
