"""Online monitoring: judge a sample of a live application's answers, keep the scores bounded in
Redis and raise a drift alert on the event stream when their rolling mean drops.

From the application::

    from evalharness.core import online
    online.capture(question, answer, metadata={"route": "faq"})          # sync, returns at once
    await online.acapture(question, answer)                             # async, one dispatch

A capture is sampled at ``[online] sampling_rate``; a sampled one becomes one job
``evalharness.online_judge`` on the judge queue, handed to a background thread so the caller never
waits for Redis.  Nothing raises into the application: when Redis is down (or the hand-off is
full) the capture is dropped and counted (:func:`dropped`; the count reaches Redis once it is
back).  Workers serving the queue ask the judge and record the score with one script
(``online_score.lua``) that keeps the scores capped, the per-day trend and the alert state.
See ``docs/online.md``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import queue as stdqueue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from .datasets import Sample
from .errors import ConfigError
from .jobs import JobContext, PermanentError, job
from .keys import OnlineKeys, online_monitors

log = logging.getLogger(__name__)

ONLINE_JOB = "evalharness.online_judge"
HANDOFF_SIZE = 1_000  # captures waiting for the background dispatcher; more are dropped


@dataclass(frozen=True)
class OnlineSettings:
    """The ``[online]`` table of the configuration file (defaults follow the PHP harness)."""

    name: str = "default"  # one monitor per name: its scores, trend and alert are its own
    sampling_rate: float = 0.0  # fraction of captures judged; 0 = off
    metric: str = "llm-as-judge"  # a judge metric spec (llm-as-judge:model=...,rubric=...)
    queue: str = "judge"
    pass_threshold: float = 0.7  # a score at or above passes (the trend's pass rate)
    threshold: float = 0.8  # the alert fires when the rolling mean drops below this
    window: int = 50  # scores in the rolling mean
    min_samples: int = 20  # no alert before the window holds this many
    hysteresis: float = 0.05  # the alert re-arms once the mean is back at threshold + this
    keep: int = 10_000  # score entries kept
    dispatch_timeout: float = 0.5  # seconds a dispatch may take before the capture is dropped

    def validate(self) -> OnlineSettings:
        from .config import validate_name

        validate_name("online monitor", self.name)
        validate_name("queue", self.queue)
        for key in ("sampling_rate", "pass_threshold", "threshold", "hysteresis"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"online {key} must be between 0 and 1, got {value!r}")
        for key in ("window", "min_samples", "keep"):
            if getattr(self, key) < 1:
                raise ConfigError(f"online {key} must be at least 1, got {getattr(self, key)!r}")
        if self.min_samples > self.window:
            raise ConfigError(f"online min_samples ({self.min_samples}) cannot exceed window ({self.window})")
        if self.dispatch_timeout <= 0:
            raise ConfigError(f"online dispatch_timeout must be > 0, got {self.dispatch_timeout!r}")
        return self


_KEYS: dict[str, str] = {
    "name": "str",
    "sampling_rate": "float",
    "metric": "str",
    "queue": "str",
    "pass_threshold": "float",
    "threshold": "float",
    "window": "int",
    "min_samples": "int",
    "hysteresis": "float",
    "keep": "int",
    "dispatch_timeout": "float",
}


def check_online_table(raw: Any, path: str) -> dict[str, Any]:
    """Validate ``[online]``; every error names the file, table and key."""
    where = f"{path}: table [online]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_KEYS))})")
        at = f"{where} key '{key}'"
        if kind == "str" and not isinstance(value, str):
            raise ConfigError(f"{at}: expected a string, got {value!r}")
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{at}: expected an integer, got {value!r}")
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{at}: expected a number, got {value!r}")
            value = float(value)
        out[key] = value
    try:
        OnlineSettings(**out).validate()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return out


def should_sample(rate: float, draw: Callable[[], float] = random.random) -> bool:
    """The sampling decision: never at 0, always at 1, else ``draw() < rate``."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    return draw() < rate


def drift_transition(alerting: bool, mean: float, samples: int, settings: OnlineSettings) -> str:
    """The drift rule ``online_score.lua`` applies after each score (kept here as the reference
    the tests compare the script with): ``drift`` when not alerting and the rolling mean of at
    least ``min_samples`` scores is below ``threshold``; ``recovered`` when alerting and the mean
    is back at ``threshold + hysteresis``; else ''."""
    if samples < settings.min_samples:
        return ""
    if not alerting and mean < settings.threshold:
        return "drift"
    if alerting and mean >= settings.threshold + settings.hysteresis:
        return "recovered"
    return ""


def _utc_day(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d")


# -- the worker side ------------------------------------------------------------------------------


async def record_score(
    client: aioredis.Redis,
    prefix: str,
    settings: OnlineSettings,
    score: float | None,
    entry: Mapping[str, Any],
    at: float | None = None,
) -> tuple[float | None, int, str]:
    """Record one judged capture (``score`` None: the judge gave none) and apply the drift rule;
    returns (rolling mean or None below ``min_samples``, samples in the window, transition:
    ``drift``, ``recovered`` or '')."""
    from .queue import script_source

    keys = OnlineKeys(prefix, settings.name)
    passed = 1 if score is not None and score >= settings.pass_threshold else 0
    script = client.register_script(script_source("online_score"))
    mean, n, transition = await script(
        keys=[keys.scores, keys.window, keys.state, keys.trend, keys.events, online_monitors(prefix)],
        args=[
            json.dumps({**entry, "score": score, "passed": bool(passed)}, ensure_ascii=False),
            "" if score is None else repr(float(score)),
            passed,
            settings.keep,
            settings.window,
            settings.min_samples,
            repr(settings.threshold),
            repr(settings.hysteresis),
            _utc_day(at if at is not None else time.time()),
            settings.name,
        ],
    )
    mean_s = mean.decode() if isinstance(mean, bytes) else str(mean)
    trans = transition.decode() if isinstance(transition, bytes) else str(transition)
    return (float(mean_s) if mean_s else None), int(n), trans


def _settings_of(payload: Mapping[str, Any]) -> OnlineSettings:
    known = {k: payload["settings"][k] for k in _KEYS if k in payload["settings"]}
    return OnlineSettings(**known)


async def _record_failure(ctx: JobContext, exc: BaseException, failure: dict[str, Any]) -> None:
    payload = ctx.job.payload
    await record_score(
        ctx.client,
        ctx.prefix,
        _settings_of(payload),
        None,
        {
            "at": payload.get("captured_at"),
            "error": {"kind": failure.get("kind"), "message": str(failure.get("message") or exc)[:500]},
            "metadata": payload.get("metadata"),
        },
    )


@job(ONLINE_JOB, queue="judge", timeout=120.0, tries=3, backoff=(1.0, 5.0, 30.0), on_failure=_record_failure)
async def judge_capture(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Payload: ``{"settings": <the monitor's settings>, "judge": <a judge job payload>,
    "metadata", "captured_at"}``.  An unparseable judge reply is recorded as a failed judgement
    (no score) rather than retried."""
    from .judges import ask

    settings = _settings_of(payload)
    entry: dict[str, Any] = {
        "at": payload.get("captured_at"),
        "metadata": payload.get("metadata"),
        "metric": payload["judge"].get("metric"),
    }
    try:
        verdict = await ask(payload["judge"], ctx.job.key)
    except PermanentError as exc:
        if exc.kind != "judge_unparseable":
            raise
        entry["error"] = {"kind": exc.kind, "message": str(exc)}
        await record_score(ctx.client, ctx.prefix, settings, None, entry)
        return {"score": None, "error": exc.kind}
    entry.update(reason=verdict.get("reason", ""), model=verdict.get("model"))
    mean, n, transition = await record_score(ctx.client, ctx.prefix, settings, float(verdict["score"]), entry)
    return {"score": verdict["score"], "mean": mean, "samples": n, "transition": transition}


# -- the application side ---------------------------------------------------------------------------


@dataclass
class Monitor:
    """One application's monitor: samples captures and hands them to a background dispatcher.

    ``judge`` is a :class:`~evalharness.core.judges.JudgeScorer` (it builds the judge prompt);
    ``redis_url`` None means: resolve it (flag-less: ``EVALHARNESS_REDIS_URL``, the
    configuration file, the embedded server's socket — which is never started from here)."""

    settings: OnlineSettings
    judge: Any = None
    redis_url: str | None = None
    prefix: str = "eh"
    draw: Callable[[], float] = random.random
    captured: int = 0
    dispatched: int = 0
    dropped: int = 0
    _unreported: int = 0
    _handoff: stdqueue.Queue[tuple[dict[str, Any], concurrent.futures.Future[bool] | None]] = field(
        default_factory=lambda: stdqueue.Queue(HANDOFF_SIZE)
    )
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _job_payload(
        self, sample_input: Any, output: Any, metadata: Mapping[str, Any] | None, expected: Any
    ) -> dict[str, Any]:
        sample = Sample("online", sample_input, "" if expected is None else expected, dict(metadata or {}), 0)
        return {
            "settings": {k: getattr(self.settings, k) for k in _KEYS},
            "judge": self.judge.payload(sample, str(output)),
            "metadata": dict(metadata or {}),
            "captured_at": time.time(),
        }

    def _drop(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n
            self._unreported += n

    def _offer(
        self,
        sample_input: Any,
        output: Any,
        metadata: Mapping[str, Any] | None,
        expected: Any,
        fut: concurrent.futures.Future[bool] | None,
    ) -> bool:
        try:
            if not should_sample(self.settings.sampling_rate, self.draw):
                return False
            self.captured += 1
            payload = self._job_payload(sample_input, output, metadata, expected)
            self._start()
            self._handoff.put_nowait((payload, fut))
            return True
        except Exception as exc:  # never into the application
            log.debug("online capture dropped: %s", exc)
            self._drop()
            if fut is not None and not fut.done():
                fut.set_result(False)
            return False

    def capture(
        self, sample_input: Any, output: Any, *, metadata: Mapping[str, Any] | None = None, expected: Any = None
    ) -> bool:
        """Sample and hand over; True when the capture was taken for judging (it may still be
        dropped if Redis is down).  Returns at once."""
        return self._offer(sample_input, output, metadata, expected, None)

    async def acapture(
        self, sample_input: Any, output: Any, *, metadata: Mapping[str, Any] | None = None, expected: Any = None
    ) -> bool:
        """Sample and dispatch, waiting (without blocking the loop) at most ``dispatch_timeout``
        for the one dispatch; True when the job is queued."""
        fut: concurrent.futures.Future[bool] = concurrent.futures.Future()
        if not self._offer(sample_input, output, metadata, expected, fut):
            return False
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.settings.dispatch_timeout * 2 + 0.5)
        except Exception:
            return False

    # -- the background dispatcher --

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="evalharness-online", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        from .connection import async_client
        from .queue import JobRequest, Queue

        client: aioredis.Redis | None = None
        loop = asyncio.get_running_loop()
        while True:
            item = await loop.run_in_executor(None, self._handoff.get)
            payload, fut = item
            if not payload:  # close()
                break
            ok = False
            try:
                if client is None:
                    client = async_client(
                        self._url(),
                        socket_connect_timeout=self.settings.dispatch_timeout,
                        socket_timeout=self.settings.dispatch_timeout,
                    )
                q = Queue(client, self.prefix)
                async with asyncio.timeout(self.settings.dispatch_timeout):
                    await q.dispatch_many([JobRequest(ONLINE_JOB, payload, queue=self.settings.queue)])
                    with self._lock:
                        unreported, self._unreported = self._unreported, 0
                    if unreported:
                        await client.hincrby(OnlineKeys(self.prefix, self.settings.name).state, "dropped", unreported)
                ok = True
                self.dispatched += 1
            except Exception as exc:
                log.debug("online capture dropped: %s", exc)
                self._drop()
            if fut is not None and not fut.done():
                fut.set_result(ok)
            self._handoff.task_done()
        if client is not None:
            await client.aclose()

    def _url(self) -> str:
        if self.redis_url is None:
            from .config import resolve_settings

            resolved = resolve_settings(start_embedded=False)
            self.redis_url, self.prefix = resolved.redis_url, resolved.prefix
        return self.redis_url

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every handed-over capture was dispatched or dropped (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._handoff.unfinished_tasks == 0:
                return True
            time.sleep(0.01)  # polling the hand-off, with a deadline
        return False

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._handoff.put(({}, None))
            self._thread.join(timeout=5)


def monitor_from_config(config: Any = None, **overrides: Any) -> Monitor:
    """A monitor configured by the ``[online]`` table (and its judge metric by ``[metrics]`` and
    ``[providers]``) of the configuration file this process uses."""
    from .config import process_config
    from .judges import judge_scorers
    from .providers.hub import metric_context
    from .scorers import resolve_metrics

    config = config if config is not None else process_config()
    settings = replace(OnlineSettings(**getattr(config, "online", {})), **overrides).validate()
    scorers = resolve_metrics([settings.metric], config=config.metrics, context=metric_context(config.providers))
    judges = judge_scorers(scorers)
    if not judges:
        raise ConfigError(f"[online] metric {settings.metric!r} is not a judge metric (llm-as-judge, refusal-quality)")
    return Monitor(settings, judges[0])


_default: Monitor | None = None
_default_lock = threading.Lock()
_setup_failures = 0


def configure(monitor: Monitor | None = None, **overrides: Any) -> Monitor:
    """Set the monitor :func:`capture` uses (default: :func:`monitor_from_config`)."""
    global _default
    with _default_lock:
        _default = monitor if monitor is not None else monitor_from_config(**overrides)
        return _default


def _monitor() -> Monitor | None:
    global _default, _setup_failures
    with _default_lock:
        if _default is None:
            try:
                _default = monitor_from_config()
            except Exception as exc:
                _setup_failures += 1
                if _setup_failures == 1:
                    log.warning("online monitoring is off: %s", exc)
                return None
        return _default


def capture(sample_input: Any, output: Any, *, metadata: Mapping[str, Any] | None = None, expected: Any = None) -> bool:
    """Capture one live interaction for judging; never raises, never waits for Redis."""
    try:
        m = _monitor()
        if m is None:
            return False
        return m.capture(sample_input, output, metadata=metadata, expected=expected)
    except Exception:
        return False


async def acapture(
    sample_input: Any, output: Any, *, metadata: Mapping[str, Any] | None = None, expected: Any = None
) -> bool:
    """The async variant: one dispatch, awaited without blocking the loop; never raises."""
    try:
        m = _monitor()
        if m is None:
            return False
        return await m.acapture(sample_input, output, metadata=metadata, expected=expected)
    except Exception:
        return False


def dropped() -> int:
    """Captures the default monitor could not hand over (Redis down, hand-off full)."""
    return _default.dropped if _default is not None else 0


# -- reading -------------------------------------------------------------------------------------


async def status(client: aioredis.Redis, prefix: str, name: str, recent: int = 10) -> dict[str, Any]:
    keys = OnlineKeys(prefix, name)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.state)
    pipe.lrange(keys.scores, 0, recent - 1)
    pipe.llen(keys.scores)
    state_raw, recent_raw, kept = await pipe.execute()
    state = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in state_raw.items()
    }
    return {
        "monitor": name,
        "scored": int(state.get("scored", 0)),
        "passed": int(state.get("passed", 0)),
        "failed": int(state.get("failed", 0)),
        "dropped": int(state.get("dropped", 0)),
        "kept": int(kept),
        "mean": float(state["mean"]) if state.get("mean") else None,
        "samples": int(state.get("samples", 0)),
        "alerting": state.get("alerting") == "1",
        "alert_at": float(state["alert_at"]) if state.get("alert_at") else None,
        "last_at": float(state["last_at"]) if state.get("last_at") else None,
        "recent": [json.loads(e) for e in recent_raw],
    }


async def trend(client: aioredis.Redis, prefix: str, name: str, days: int = 30) -> list[dict[str, Any]]:
    """Per UTC day, oldest first, the last ``days`` days that have scores (clamped to 1..365)."""
    days = max(1, min(365, days))
    raw = await client.hgetall(OnlineKeys(prefix, name).trend)
    by_day: dict[str, dict[str, float]] = {}
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        day, _, what = key.rpartition(":")
        by_day.setdefault(day, {})[what] = float(v)
    rows = []
    for day in sorted(by_day)[-days:]:
        n = int(by_day[day].get("n", 0))
        rows.append(
            {
                "date": day,
                "total": n,
                "passed": int(by_day[day].get("passed", 0)),
                "mean": by_day[day].get("sum", 0.0) / n if n else None,
                "pass_rate": by_day[day].get("passed", 0) / n if n else None,
            }
        )
    return rows


async def monitors(client: aioredis.Redis, prefix: str) -> list[str]:
    return sorted(
        (m.decode() if isinstance(m, bytes) else str(m)) for m in await client.smembers(online_monitors(prefix))
    )
