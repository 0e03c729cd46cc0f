"""Dramatiq's side of the peer comparison: its Redis broker with its defaults, and the jobs."""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ["PEERBENCH_URL"]
dramatiq.set_broker(RedisBroker(url=URL))
_latency = redis.Redis.from_url(URL)


@dramatiq.actor
def noop(payload: object) -> None:
    return None


@dramatiq.actor
def sleep50(payload: object) -> None:
    time.sleep(0.05)


@dramatiq.actor
def latency(sent: float) -> None:
    started = time.time()
    _latency.rpush("peerbench:latency", f"{started - sent:.6f}")
