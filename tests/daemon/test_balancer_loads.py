"""The auto-balancer's decisions on scripted loads, one call per tick of a simulated clock: a
burst draws processes within a tick, an idle gap gives them back down to the minimum, and a
steady noisy load does not make the pools flap.  No Redis, no processes: a small fluid model of
each queue stands in for the workers."""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

import pytest

from evalharness.core.config import SupervisorConfig
from evalharness.daemon.balancer import PoolState, QueueDemand, plan
from evalharness.daemon.master import BALANCE_TICK

TICK = 0.5  # seconds between two balancer calls in the decision models (the day uses the daemon's tick)


@dataclass
class SimQueue:
    """Jobs of one runtime served first in, first out by the slots of its pool: each slot
    finishes tick / runtime jobs a tick."""

    runtime: float
    jobs: deque[list[float]] = field(default_factory=deque)  # [enqueued at, jobs] oldest first
    slots: int = 0
    in_flight: float = 0.0

    def arrive(self, now: float, jobs: float) -> None:
        if jobs > 0:
            self.jobs.append([now, jobs])

    def serve(self, slots: int, dt: float) -> None:
        self.slots = slots
        capacity = done = slots * dt / self.runtime
        while done > 1e-9 and self.jobs:
            head = self.jobs[0]
            take = min(done, head[1])
            head[1] -= take
            done -= take
            if head[1] <= 1e-9:
                self.jobs.popleft()
        # what a sample sees in flight: every slot while jobs wait, else by Little's law
        self.in_flight = float(slots) if self.jobs else (capacity - done) * self.runtime / dt

    def demand(self, now: float) -> QueueDemand:
        ready = math.ceil(sum(n for _, n in self.jobs) - 1e-9)
        wait = now - self.jobs[0][0] if self.jobs else 0.0
        return QueueDemand(
            ready=ready, running=math.ceil(self.in_flight - 1e-9), mean_runtime=self.runtime, oldest_wait=wait
        )


def simulate(
    config: SupervisorConfig, queues: dict[str, SimQueue], arrivals: dict[float, dict[str, float]], seconds: float
) -> list[tuple[float, dict[str, int]]]:
    """Run the balancer on its tick; ``arrivals`` maps a time to jobs arriving then per queue.
    Returns the pool sizes after each tick."""
    pools = {q: PoolState(0, 0) for q in config.queues}
    sizes: list[tuple[float, dict[str, int]]] = []
    now = 0.0
    while now < seconds:
        for at in [t for t in arrivals if now <= t < now + TICK]:
            for q, n in arrivals.pop(at).items():
                queues[q].arrive(at, n)
        for q, sim in queues.items():
            sim.serve(pools[q].processes * config.concurrency, TICK)
        demand = {q: sim.demand(now) for q, sim in queues.items()}
        for q, d in demand.items():
            busy = min(pools[q].processes, math.ceil(d.running / config.concurrency))
            pools[q] = PoolState(
                pools[q].processes, pools[q].processes - busy, pools[q].changed_at, pools[q].surplus_since
            )
        result = plan(config, pools, demand, now)
        for p in result.pools:
            # processes start and stop within the tick: the model is about decisions, not start-up
            changed = now if p.target != p.current else pools[p.name].changed_at
            busy = pools[p.name].busy
            pools[p.name] = PoolState(p.target, max(0, p.target - busy), changed, p.surplus_since)
        sizes.append((now, {q: pools[q].processes for q in config.queues}))
        now += TICK
    return sizes


def auto(**kw: object) -> SupervisorConfig:
    settings: dict[str, object] = {
        "balance": "auto",
        "auto_scaling_strategy": "time",
        "min_processes": 1,
        "max_processes": 6,
        "concurrency": 5,
        "balance_cooldown": 2.0,
        "balance_max_shift": 1,
    }
    settings.update(kw)
    return SupervisorConfig("s", ("x", "y"), **settings)  # type: ignore[arg-type]


def changes(series: list[int]) -> int:
    return sum(1 for a, b in zip(series, series[1:], strict=False) if a != b)


def test_a_burst_draws_every_free_process_within_a_tick_and_an_idle_gap_gives_them_back() -> None:
    config = auto()
    queues = {"x": SimQueue(0.1), "y": SimQueue(1.0)}
    sizes = simulate(config, queues, {10.0: {"x": 1500}}, seconds=60.0)
    at = dict(sizes)
    assert at[9.5] == {"x": 1, "y": 1}  # quiet: the minimum
    # the burst arrives at t=10: x has every process y does not need at the next tick, not one per cooldown
    assert at[10.0]["x"] == 5 and at[10.0]["y"] == 1
    # 1,500 jobs of 100 ms on 25 slots: about 6 s of work.  As it drains, x has more than it
    # needs; after a cooldown with that surplus it gives one process per cooldown back: at the
    # minimum within 2 + 4 x 2 s, and it stays there
    drained = next(t for t, s in sizes if t > 10 and s["x"] < 5)
    assert 15.0 <= drained <= 18.0
    back = next(t for t, s in sizes if t > 10 and s == {"x": 1, "y": 1})
    assert back <= drained + 2.0 + 4 * 2.0
    assert all(s == {"x": 1, "y": 1} for t, s in sizes if t >= back)
    assert max(sum(s.values()) for _, s in sizes) <= config.max_processes


def test_a_burst_on_a_queue_of_long_jobs_weighs_by_runtime() -> None:
    config = auto()
    queues = {"x": SimQueue(0.1), "y": SimQueue(1.0)}
    # the same number of jobs on both queues: y's take ten times longer, so y gets the processes
    sizes = simulate(config, queues, {5.0: {"x": 400, "y": 400}}, seconds=6.0)
    last = sizes[-1][1]
    assert last["y"] > last["x"] >= 1
    assert sum(last.values()) == config.max_processes


def test_a_steady_noisy_load_does_not_make_the_pools_flap() -> None:
    config = auto()
    queues = {"x": SimQueue(0.1), "y": SimQueue(1.0)}
    rng = random.Random(17)
    # about 60 jobs/s of 100 ms on x and 6 jobs/s of 1 s on y, with Poisson noise: each keeps
    # six slots busy on average, more than one process of five
    arrivals = {t * TICK: {"x": float(_poisson(rng, 30)), "y": float(_poisson(rng, 3))} for t in range(int(120 / TICK))}
    sizes = simulate(config, queues, arrivals, seconds=120.0)
    for q in ("x", "y"):
        series = [(t, s[q]) for t, s in sizes]
        moves = [(t, b - a) for (_, a), (t, b) in zip(series, series[1:], strict=False) if a != b]
        # a pool never shrinks within a cooldown of its last move, so it cannot bounce on noise
        for (t0, _), (t1, d1) in zip(moves, moves[1:], strict=False):
            if d1 < 0:
                assert t1 - t0 >= config.balance_cooldown, f"{q} shrank {t1 - t0:.1f} s after a move"
        # at most a move every four seconds on average, where one per tick would be 240
        assert len(moves) <= 30, f"{q} moved {len(moves)} times"
    # x's load wants 6 of 10 slots: it settles at two processes and stays there
    assert {s["x"] for t, s in sizes if t >= 10} == {2}


def test_the_same_load_with_no_cooldown_reacts_on_every_tick() -> None:
    # what the cooldown buys: without it the noisy load above moves the pools far more often
    calm = auto()
    jumpy = auto(balance_cooldown=0.0)
    counts = []
    for config in (calm, jumpy):
        queues = {"x": SimQueue(0.1), "y": SimQueue(1.0)}
        rng = random.Random(17)
        arrivals = {
            t * TICK: {"x": float(_poisson(rng, 30)), "y": float(_poisson(rng, 3))} for t in range(int(120 / TICK))
        }
        sizes = simulate(config, queues, arrivals, seconds=120.0)
        counts.append(sum(changes([s[q] for _, s in sizes]) for q in ("x", "y")))
    assert counts[0] * 2 < counts[1]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means used here
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


# --- a day: auto against a fixed pool of its maximum -----------------------------------------------

# seconds a new worker process takes before it serves: six started at once on an idle 2-core
# machine, as a burst starts them, serve 0.39 to 0.52 s later (one alone: 0.16 s, bench/startup.py)
START_UP = 0.5
DAY_TICK = BALANCE_TICK  # the day is decided as often as the daemon decides

# the day of bench/balance.py: 24 hours in 48 s; (from, to, jobs/s on x, on y) and (at, x, y)
DAY_RATES = (
    (0.0, 14.0, 1.0, 0.1),
    (14.0, 18.0, 10.0, 1.0),
    (18.0, 24.0, 20.0, 2.0),
    (27.0, 34.0, 20.0, 2.0),
    (34.0, 38.0, 5.0, 0.5),
    (38.0, 44.0, 1.0, 0.0),
)
DAY_BURSTS = ((16.0, 600, 30), (20.0, 0, 80), (28.0, 900, 60))


def day_arrivals() -> dict[int, dict[str, float]]:
    """Jobs arriving per queue, keyed by the tick they arrive in."""
    out: dict[int, dict[str, float]] = {}
    for i in range(round(48 / DAY_TICK)):
        at = i * DAY_TICK
        for start, end, x, y in DAY_RATES:
            if start <= at < end:
                out[i] = {"x": x * DAY_TICK, "y": y * DAY_TICK}
    for at, x, y in DAY_BURSTS:
        tick = round(at / DAY_TICK)
        assert tick * DAY_TICK == pytest.approx(at), f"a burst at {at} s falls between two ticks"
        got = out.setdefault(tick, {"x": 0.0, "y": 0.0})
        got["x"] += x
        got["y"] += y
    return out


@dataclass
class Waits:
    """Queue waits of the jobs served, as (seconds, jobs) chunks."""

    chunks: list[tuple[float, float]] = field(default_factory=list)

    def p95(self) -> float:
        total = sum(n for _, n in self.chunks)
        seen = 0.0
        for wait, n in sorted(self.chunks):
            seen += n
            if seen >= 0.95 * total:
                return wait
        return 0.0


def serve_fifo(sim: SimQueue, slots: float, dt: float, now: float, waits: Waits) -> float:
    """Serve ``sim`` with ``slots`` for one tick, recording each job's wait (its start is its end
    less its runtime); returns the slots it left unused."""
    done = slots * dt / sim.runtime
    capacity = done
    while done > 1e-9 and sim.jobs:
        head = sim.jobs[0]
        take = min(done, head[1])
        head[1] -= take
        done -= take
        waits.chunks.append((max(0.0, now + dt - head[0] - sim.runtime), take))
        if head[1] <= 1e-9:
            sim.jobs.popleft()
    used = capacity - done
    sim.slots = int(slots)
    sim.in_flight = float(slots) if sim.jobs else used * sim.runtime / dt
    return done * sim.runtime / dt


def run_day(config: SupervisorConfig) -> tuple[float, float]:
    """Process-seconds and p95 wait of the day, with processes that serve START_UP after their
    start and cost from it.  ``balance = "off"``: one fixed pool serving x first, then y."""
    queues = {"x": SimQueue(0.1), "y": SimQueue(1.0)}
    arrivals = day_arrivals()
    waits = Waits()
    fixed = config.balance == "off"
    # each pool's processes as the times they start serving
    starts: dict[str, list[float]] = {q: [] for q in ("x", "y")}
    if fixed:
        starts = {"x,y": [0.0] * config.max_processes}
    else:
        starts = {"x": [0.0] * config.min_processes, "y": [0.0] * config.min_processes}
    pools = {name: PoolState(len(s), 0) for name, s in starts.items()}
    process_seconds = 0.0
    tick, now = 0, 0.0
    while now < 48.0 or any(sim.jobs for sim in queues.values()):
        for q, n in arrivals.pop(tick, {}).items():
            queues[q].arrive(now, n)
        process_seconds += sum(len(s) for s in starts.values()) * DAY_TICK
        serving = {name: sum(1 for t in s if t <= now) for name, s in starts.items()}
        if fixed:
            left = serve_fifo(queues["x"], serving["x,y"] * config.concurrency, DAY_TICK, now, waits)
            serve_fifo(queues["y"], left, DAY_TICK, now, waits)
        else:
            for q, sim in queues.items():
                serve_fifo(sim, serving[q] * config.concurrency, DAY_TICK, now, waits)
            demand = {q: sim.demand(now + DAY_TICK) for q, sim in queues.items()}
            for q, d in demand.items():
                busy = min(serving[q], math.ceil(d.running / config.concurrency))
                n = len(starts[q])
                pools[q] = PoolState(n, max(0, serving[q] - busy), pools[q].changed_at, pools[q].surplus_since)
            for p in plan(config, pools, demand, now + DAY_TICK).pools:
                s = starts[p.name]
                if p.target > len(s):
                    s.extend([now + DAY_TICK + START_UP] * (p.target - len(s)))
                elif p.target < len(s):
                    s.sort()  # idle ones are the oldest here: all of them serve
                    del s[p.target :]
                changed = now + DAY_TICK if p.target != p.current else pools[p.name].changed_at
                pools[p.name] = PoolState(p.target, 0, changed, p.surplus_since)
        tick += 1
        now = tick * DAY_TICK
    assert not arrivals, "every job of the day arrived"
    return process_seconds, waits.p95()


def day_configs(strategy: str) -> tuple[SupervisorConfig, SupervisorConfig]:
    """The bench's day supervisors: auto 1..8 with ``strategy``, and a fixed pool of 8."""
    auto_config = auto(max_processes=8, balance_cooldown=1.0, balance_max_shift=3, auto_scaling_strategy=strategy)
    fixed_config = SupervisorConfig("s", ("x", "y"), balance="off", max_processes=8, concurrency=5)  # type: ignore[arg-type]
    return auto_config, fixed_config


def test_over_a_day_auto_uses_under_60_percent_of_a_fixed_pool_and_waits_at_most_twice_as_long() -> None:
    # the bench's day (bench/balance.py) in the fluid model: auto/time 1..8 used 0.48 of the
    # fixed 8's process-seconds with 1.81x its p95 wait when this was written; the wait is the
    # decision tick and the start-up a burst waits for, and the share the long-job queue keeps
    # while both queues are late (time to clear weighs y's 1 s jobs ten times x's; the fixed
    # pool serves x first)
    auto_config, fixed_config = day_configs("time")
    auto_ps, auto_p95 = run_day(auto_config)
    fixed_ps, fixed_p95 = run_day(fixed_config)
    assert fixed_ps == pytest.approx(8 * 48.0, abs=8 * DAY_TICK * 4)
    assert auto_ps <= 0.6 * fixed_ps, (auto_ps, fixed_ps)
    assert auto_p95 <= 2.0 * fixed_p95, (auto_p95, fixed_p95)


def test_over_a_day_auto_by_size_uses_under_60_percent_of_a_fixed_pool_and_waits_at_most_1_5_times_as_long() -> None:
    # weighed by jobs, the afternoon run's 900 short x jobs get 7 of the 8 processes and y's 60
    # judge jobs one: most jobs start as soon as in the fixed pool that serves x first
    # (0.48x and 1.47x when this was written; the bench measured 0.53x and 1.47x)
    auto_config, fixed_config = day_configs("size")
    auto_ps, auto_p95 = run_day(auto_config)
    fixed_ps, fixed_p95 = run_day(fixed_config)
    assert auto_ps <= 0.6 * fixed_ps, (auto_ps, fixed_ps)
    assert auto_p95 <= 1.5 * fixed_p95, (auto_p95, fixed_p95)
    # and it is the sharing that does it: the same day by time to clear waits longer
    _, time_p95 = run_day(day_configs("time")[0])
    assert auto_p95 < time_p95
