"""The balancer: how many worker processes each pool of a supervisor should run, and which
changes it may make now.

It is a pure function.  The daemon's balancer loop gathers the pools and the demand, calls
``plan`` and applies the result: it stops idle processes first (gracefully), then starts new
ones, records ``changed_at = now`` for every pool it changed and keeps each pool's
``surplus_since`` for the next call, and calls again on its cadence (and no later than
``Plan.next_at`` when that is set).

Pools
    ``balance = "off"``: one pool serving every queue in priority order, named after them
    all (``"evals,judge"``).  ``"simple"`` and ``"auto"``: one pool per queue, named after it.

The horizon
    ``balance_cooldown`` seconds.  A queue's backlog is *late* when its oldest ready job has
    waited longer than the horizon, or when its ready jobs would take longer than that to start
    with the processes its pool has now (ready x mean runtime / slots: the telemetry's estimated
    time to clear; a pool with no process never clears).

Desired size, where each pool should be
    off     ``max_processes``.
    simple  ``max_processes`` split evenly; the remainder goes to the highest-priority queues.
    auto    1. Floors.  Every queue gets ``min_processes``.  Then, in priority order and while
               ``max_processes`` leaves room: a queue with jobs but no process gets one (a new
               job on an idle queue is not starved by a big backlog elsewhere), and a queue's
               floor is raised to its busy processes (a pool running long jobs is not shrunk
               under them).
            2. Need.  The slots a queue's running jobs hold, plus enough slots to start its
               ready jobs within the horizon (ready x runtime / horizon), or within one runtime
               when its jobs take longer than the horizon; in processes, never more than its
               jobs can use, ceil((ready + running) / concurrency).  A late backlog by the wait
               gets all it can use.  So a backlog the pool clears within the horizon starts no
               process, and with no work every pool sits at its minimum.
            3. Weights.  ``size``: ready + running jobs.  ``time``: (ready + running) x mean
               runtime, the expected time to clear; a queue with no runtime yet uses the mean
               of the supervisor's other queues, else 1 s.  Running jobs are demand too.
            4. Shares.  ``max_processes`` is shared in proportion to the weights, each queue
               kept between its floor and its need; what a capped queue cannot use goes to the
               others.  Whole processes are handed out by largest remainder, ties to the
               higher-priority queue.  Capacity nobody needs is not started.
    overrides  An operator's ``scale POOL N`` pins that pool to N, clamped to
               [``min_processes``, what the other pools' minimums leave]; the remaining
               processes are balanced among the other pools as above.

The step, what may change now
    - Only idle processes are stopped: a pool shrinks by at most its idle count, and the
      caller chooses idle processes to stop.
    - ``auto`` pools that are not pinned:
        * grow at once to their desired size when their backlog is late, past the cooldown and
          ``balance_max_shift``; other growth waits for the pool's cooldown and moves by at most
          ``balance_max_shift``;
        * shrink only once they have had more processes than desired for a whole cooldown
          (``surplus_since``) and their last change is a cooldown old, by at most
          ``balance_max_shift`` per cooldown: a dip in the load does not make them flap.  A
          late pool does not shrink at all (held ``BUSY``), even when another late pool's share
          grew: its processes are busy or about to be, and stopping one that is still starting
          wastes its start;
        * give their idle surplus processes at once to a late pool of the supervisor that has
          no room to grow, lowest-priority pool first.
      Bringing a pool up to ``min_processes`` is exempt, so a supervisor starts at its minimum
      at once.
    - ``off``, ``simple`` and pinned pools move to their desired size at once.
    - Starts never take the total above ``max_processes``, counting the processes still
      finishing their jobs after a stop (``PoolState.stopping``): stops are counted first, then the
      room is given to pools under their minimum, then to late pools, then to the others, each
      in priority order.
    - A total above ``max_processes`` (after the maximum was lowered) is cut at once by
      stopping idle processes above the desired size, lowest-priority pool first.

A pool that needs a process while every process of the supervisor is busy gets one as soon as
one is idle; the balancer never interrupts a running job to rebalance.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

from evalharness.core.config import Balance, ScalingStrategy, SupervisorConfig

UNKNOWN_RUNTIME = 1.0  # seconds assumed for a queue when no queue of its supervisor has a runtime yet
_NO_LIMIT = sys.maxsize


@dataclass(frozen=True)
class PoolState:
    """A pool as it is now."""

    processes: int = 0
    idle: int = 0  # processes with no job in flight: the only ones that may be stopped
    changed_at: float | None = None  # clock time of its last start or stop; None: never
    # since when it has had more processes than it needs: the caller keeps PoolPlan.surplus_since
    surplus_since: float | None = None
    # processes told to stop that are still finishing their jobs: not in ``processes``, but they
    # count against max_processes until they exit, so no start is planned that cannot happen
    stopping: int = 0

    def __post_init__(self) -> None:
        if self.processes < 0 or not 0 <= self.idle <= self.processes:
            raise ValueError(f"a pool needs 0 <= idle <= processes, got idle={self.idle} processes={self.processes}")
        if self.stopping < 0:
            raise ValueError(f"stopping must be >= 0, got {self.stopping}")

    @property
    def busy(self) -> int:
        return self.processes - self.idle


@dataclass(frozen=True)
class QueueDemand:
    """The work on one queue."""

    ready: int = 0  # jobs that could start now
    running: int = 0  # jobs in flight
    mean_runtime: float = 0.0  # seconds per job over a rolling window; 0: not known yet
    oldest_wait: float = 0.0  # seconds the oldest ready job has waited; 0: none waits

    def __post_init__(self) -> None:
        if self.ready < 0 or self.running < 0:
            raise ValueError(f"job counts must be >= 0, got ready={self.ready} running={self.running}")
        for key in ("mean_runtime", "oldest_wait"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")

    @property
    def jobs(self) -> int:
        return self.ready + self.running

    @classmethod
    def from_telemetry(cls, row: Mapping[str, Any]) -> QueueDemand:
        """From one queue of a telemetry snapshot: ``ready``, ``reserved`` (running),
        ``oldest_wait`` and the runtime's ``mean`` where the snapshot has one, else its median.
        A paused queue's ready jobs cannot start, so they are no demand."""
        runtime = row.get("runtime") or {}
        mean = runtime.get("mean")
        mean = runtime.get("p50") if mean is None else mean
        paused = bool(row.get("paused"))
        return cls(
            ready=0 if paused else int(row.get("ready") or 0),
            running=int(row.get("reserved") or 0),
            mean_runtime=float(mean or 0.0),
            oldest_wait=0.0 if paused else max(0.0, float(row.get("oldest_wait") or 0.0)),
        )


class Hold(StrEnum):
    """Why a pool is not at its desired size after this step."""

    COOLDOWN = "cooldown"  # the pool changed less than balance_cooldown seconds ago
    MAX_SHIFT = "max_shift"  # it moves by balance_max_shift now and the rest later
    BUSY = "busy"  # it should shrink but its processes are running jobs
    MAX_PROCESSES = "max_processes"  # it should grow but the supervisor is at max_processes


@dataclass(frozen=True)
class PoolPlan:
    """One pool's decision."""

    name: str
    queues: tuple[str, ...]
    current: int
    desired: int  # where balancing wants it
    target: int  # what it should have after this step
    held: Hold | None = None  # why target is not desired
    late: bool = False  # its backlog waits longer than the horizon: it grows at once
    surplus_since: float | None = None  # keep it for the next call (PoolState.surplus_since)

    @property
    def start(self) -> int:
        """Processes to start now."""
        return max(0, self.target - self.current)

    @property
    def stop(self) -> int:
        """Idle processes to stop now (gracefully)."""
        return max(0, self.current - self.target)


@dataclass(frozen=True)
class Plan:
    """Every pool's decision, in priority order."""

    pools: tuple[PoolPlan, ...]
    next_at: float | None = None  # when a change held by the cooldown becomes allowed

    @property
    def targets(self) -> dict[str, int]:
        return {p.name: p.target for p in self.pools}

    @property
    def desired(self) -> dict[str, int]:
        return {p.name: p.desired for p in self.pools}

    @property
    def total(self) -> int:
        return sum(p.target for p in self.pools)

    @property
    def changes(self) -> tuple[PoolPlan, ...]:
        return tuple(p for p in self.pools if p.target != p.current)

    def pool(self, name: str) -> PoolPlan:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)


def pool_queues(config: SupervisorConfig) -> dict[str, tuple[str, ...]]:
    """Each pool's name and the queues its processes serve, in priority order."""
    if config.balance is Balance.OFF:
        return {",".join(config.queues): config.queues}
    return {q: (q,) for q in config.queues}


def initial_sizes(config: SupervisorConfig) -> dict[str, int]:
    """Where a supervisor starts: its minimums (auto), or its fixed pools (off, simple)."""
    return plan(config, {}, {}, 0.0).targets


def desired_sizes(
    config: SupervisorConfig,
    demand: Mapping[str, QueueDemand],
    pools: Mapping[str, PoolState] | None = None,
    overrides: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Where balancing wants each pool, before cooldown, shift and idle processes limit the
    step.  With ``pools``, an ``auto`` queue's busy processes are part of its floor."""
    pools = pools or {}
    names = pool_queues(config)
    pins = _check(config, pools, overrides or {})
    m, budget = config.min_processes, config.max_processes
    if config.balance is Balance.OFF:
        (name,) = names
        return {name: _clamp(pins.get(name, budget), m, budget)}

    free = [q for q in config.queues if q not in pins]
    sizes: dict[str, int] = {}
    left = budget - m * len(free)
    pinned = [q for q in config.queues if q in pins]
    for i, q in enumerate(pinned):
        sizes[q] = _clamp(pins[q], m, left - m * (len(pinned) - i - 1))
        left -= sizes[q]
    budget -= sum(sizes.values())
    if config.balance is Balance.SIMPLE:
        even = _apportion(
            budget, free, dict.fromkeys(free, m), dict.fromkeys(free, budget), dict.fromkeys(free, Fraction(1))
        )
        sizes.update(even)
    else:
        sizes.update(_auto(config, free, budget, demand, pools))
    return {q: sizes[q] for q in config.queues}


def plan(
    config: SupervisorConfig,
    pools: Mapping[str, PoolState],
    demand: Mapping[str, QueueDemand],
    now: float,
    overrides: Mapping[str, int] | None = None,
) -> Plan:
    """Decide each pool's size after this step; see the module docstring for the rules.

    ``pools`` and ``overrides`` are keyed by pool name (``pool_queues``); a pool missing from
    ``pools`` has no processes and never changed.  ``demand`` is keyed by queue name; a queue
    missing from it has no work.  ``now`` is on the same clock as ``PoolState.changed_at`` and
    ``PoolState.surplus_since``; the caller stores each ``PoolPlan.surplus_since`` for the next call.
    """
    overrides = overrides or {}
    names = pool_queues(config)
    desired = desired_sizes(config, demand, pools, overrides)
    state = {name: pools.get(name, PoolState()) for name in names}
    m, top = config.min_processes, config.max_processes
    limited = config.balance is Balance.AUTO
    cooldown = config.balance_cooldown
    runtimes = _runtimes(config, demand)

    free = {name for name in names if limited and name not in overrides}
    late = {
        name: name in free and _late(config, demand.get(name, QueueDemand()), runtimes[name], state[name].processes)
        for name in names
    }
    # a late pool above its share has no surplus: its processes are busy, or about to be
    surplus = {
        name: (pool.surplus_since if pool.surplus_since is not None else now)
        if name in free and pool.processes > desired[name] and not late[name]
        else None
        for name, pool in state.items()
    }
    up: dict[str, int] = {}
    down: dict[str, int] = {}
    cooling: set[str] = set()
    for name, pool in state.items():
        if name in free:
            cooled = pool.changed_at is None or now - pool.changed_at >= cooldown
            since = surplus[name]
            settled = since is None or now - since >= cooldown
            # a late backlog grows its pool at once; every other move waits for the cooldown,
            # and shrinking also for the pool to have had more than it needs for a whole cooldown
            up[name] = _NO_LIMIT if late[name] else config.balance_max_shift if cooled else 0
            down[name] = config.balance_max_shift if cooled and settled and not late[name] else 0
            if not late[name] and not (cooled and settled) and pool.processes > desired[name]:
                cooling.add(name)
            elif not cooled and pool.processes < desired[name] and not late[name]:
                cooling.add(name)
        else:
            up[name] = down[name] = _NO_LIMIT

    target = {name: pool.processes for name, pool in state.items()}
    held: dict[str, Hold | None] = dict.fromkeys(names)
    for name, pool in state.items():
        want = pool.processes - desired[name]
        if want <= 0:
            continue
        stop = min(want, down[name], pool.idle)
        target[name] -= stop
        if stop < want:
            held[name] = (
                Hold.BUSY
                if late[name]
                else Hold.COOLDOWN
                if name in cooling
                else Hold.BUSY
                if pool.idle < min(want, down[name])
                else Hold.MAX_SHIFT
            )

    def spare(name: str) -> int:
        """Idle processes of a pool above its desired size that this step has not stopped yet."""
        pool = state[name]
        return min(pool.idle - (pool.processes - target[name]), target[name] - desired[name])

    excess = sum(target.values()) - top
    for name in reversed(names):
        if excess <= 0:
            break
        more = min(excess, spare(name))
        if more > 0:
            target[name] -= more
            excess -= more
            if target[name] == desired[name]:
                held[name] = None

    # a late backlog does not wait for another pool's cooldown: surplus idle processes are
    # handed over now, lowest priority first.  A late pool gives only to one with no process at
    # all (its own idle processes are about to take its jobs), so a new job is never starved.
    # While processes still stopping fill max_processes, nothing is handed over: it could not
    # start before they exit.
    stopping = sum(pool.stopping for pool in state.values())
    room = top - stopping - sum(target.values())
    short = sum(max(0, max(desired[n], m) - target[n]) for n in names if late[n]) - room if room >= 0 else 0
    starving = sum(1 for n in names if late[n] and target[n] == 0 and desired[n] > 0) - room
    for name in reversed(names):
        if short <= 0:
            break
        give = min(short, spare(name), max(0, starving) if late[name] else short)
        if give > 0:
            target[name] -= give
            short -= give
            starving -= give
            if target[name] == desired[name]:
                held[name] = None

    room = max(0, top - stopping - sum(target.values()))
    for name in names:
        lift = min(max(0, m - target[name]), room)
        target[name] += lift
        room -= lift
    for name in sorted(names, key=lambda n: not late[n]):  # late pools first, each in priority order
        pool = state[name]
        ceiling = max(pool.processes, m) + up[name] if up[name] != _NO_LIMIT else _NO_LIMIT
        want = desired[name] - target[name]
        if want <= 0:
            continue
        allowed = max(0, ceiling - target[name])
        grow = min(want, allowed, room)
        target[name] += grow
        room -= grow
        if grow < want:
            held[name] = (
                Hold.MAX_PROCESSES if room < allowed - grow else Hold.COOLDOWN if name in cooling else Hold.MAX_SHIFT
            )

    next_at: float | None = None
    for name, pool in state.items():
        if held[name] is Hold.COOLDOWN:
            times = [t + cooldown for t in (pool.changed_at, surplus[name]) if t is not None]
            if not times:
                continue
            at = max(times)
        elif held[name] is Hold.MAX_SHIFT:
            at = now + cooldown
        else:
            continue
        next_at = at if next_at is None else min(next_at, at)

    return Plan(
        pools=tuple(
            PoolPlan(
                name,
                names[name],
                state[name].processes,
                desired[name],
                target[name],
                held[name],
                late=late[name],
                surplus_since=surplus[name] if target[name] > desired[name] else None,
            )
            for name in names
        ),
        next_at=next_at,
    )


def _check(config: SupervisorConfig, pools: Mapping[str, PoolState], overrides: Mapping[str, int]) -> dict[str, int]:
    names = pool_queues(config)
    for what, keys in (("pool", pools), ("override", overrides)):
        unknown = sorted(set(keys) - set(names))
        if unknown:
            raise ValueError(
                f"supervisor {config.name!r} has no {what} named {', '.join(map(repr, unknown))} "
                f"(pools: {', '.join(names)})"
            )
    for name, n in overrides.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"override for pool {name!r} must be an integer >= 0, got {n!r}")
    return dict(overrides)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _runtimes(config: SupervisorConfig, demand: Mapping[str, QueueDemand]) -> dict[str, Fraction]:
    """Each queue's mean runtime; a queue with none yet gets the mean of the supervisor's other
    queues (pinned ones too), else ``UNKNOWN_RUNTIME``."""
    known = [Fraction(demand[q].mean_runtime) for q in config.queues if q in demand and demand[q].mean_runtime > 0]
    fallback = sum(known, Fraction(0)) / len(known) if known else Fraction(UNKNOWN_RUNTIME)
    out = {}
    for q in config.queues:
        rt = demand[q].mean_runtime if q in demand else 0.0
        out[q] = Fraction(rt) if rt > 0 else fallback
    if config.balance is Balance.OFF:
        # one pool for every queue: its backlog clears at the pace of the slowest
        out[",".join(config.queues)] = max(out.values())
    return out


def est_clear(config: SupervisorConfig, demand: QueueDemand, runtime: float, processes: int) -> float:
    """Seconds until a queue's ready jobs have all started with ``processes`` processes (inf
    when it has none); the telemetry's estimated time to clear."""
    if demand.ready == 0:
        return 0.0
    if processes <= 0:
        return math.inf
    return demand.ready * runtime / (processes * config.concurrency)


def _late(config: SupervisorConfig, demand: QueueDemand, runtime: Fraction, processes: int) -> bool:
    """A backlog is late when its oldest job has waited longer than the horizon
    (``balance_cooldown``), or when it would take longer than that to clear with the processes
    the pool has now."""
    if demand.ready == 0:
        return False
    horizon = config.balance_cooldown
    return demand.oldest_wait > horizon or est_clear(config, demand, float(runtime), processes) > horizon


def _need(config: SupervisorConfig, demand: QueueDemand, runtime: Fraction) -> int:
    """Processes a queue needs: the slots its running jobs hold, plus enough to start its ready
    jobs within the horizon (``balance_cooldown``), or within one runtime when its jobs take
    longer than that; never more than its jobs can use (jobs / concurrency).  A backlog whose
    oldest job already waited longer than the horizon gets all it can use."""
    c = config.concurrency
    usable = -(-demand.jobs // c)
    if demand.ready and demand.oldest_wait > config.balance_cooldown:
        return usable
    slots = demand.running + demand.ready * float(runtime) / max(config.balance_cooldown, float(runtime))
    return min(usable, math.ceil(slots / c - 1e-9))  # 15.000000001 slots of 5 are 3 processes


def _auto(
    config: SupervisorConfig,
    queues: list[str],
    budget: int,
    demand: Mapping[str, QueueDemand],
    pools: Mapping[str, PoolState],
) -> dict[str, int]:
    work = {q: demand.get(q, QueueDemand()) for q in queues}
    floors = dict.fromkeys(queues, config.min_processes)
    room = budget - sum(floors.values())
    for q in queues:
        if room > 0 and floors[q] == 0 and work[q].jobs > 0:
            floors[q] = 1
            room -= 1
    for q in queues:
        busy = pools[q].busy if q in pools else 0
        extra = min(max(0, busy - floors[q]), room)
        floors[q] += extra
        room -= extra
    runtimes = _runtimes(config, demand)
    caps = {q: max(floors[q], _need(config, work[q], runtimes[q])) for q in queues}
    return _apportion(budget, queues, floors, caps, _weights(config, work, runtimes))


def _weights(
    config: SupervisorConfig, work: Mapping[str, QueueDemand], runtimes: Mapping[str, Fraction]
) -> dict[str, Fraction]:
    if config.auto_scaling_strategy is ScalingStrategy.SIZE:
        return {q: Fraction(d.jobs) for q, d in work.items()}
    return {q: d.jobs * runtimes[q] for q, d in work.items()}


def _apportion(
    total: int,
    order: list[str],
    floors: Mapping[str, int],
    caps: Mapping[str, int],
    weights: Mapping[str, Fraction],
) -> dict[str, int]:
    """Share ``total`` in proportion to ``weights``, each between its floor and cap, in whole
    units by largest remainder (ties to the earlier name in ``order``).  Hands out less than
    ``total`` only when every cap is reached."""
    if not order:
        return {}
    # a queue without weight cannot grow past its floor
    reach = {q: caps[q] if weights[q] > 0 else floors[q] for q in order}
    if sum(reach.values()) <= total:
        return reach
    goal = Fraction(total)

    def share(scale: Fraction) -> dict[str, Fraction]:
        return {q: min(max(scale * weights[q], Fraction(floors[q])), Fraction(reach[q])) for q in order}

    # the sum of shares is piecewise linear in the scale, bending where a queue leaves its
    # floor or reaches its cap; find the piece that reaches the goal and solve on it
    bends = sorted({Fraction(b) / weights[q] for q in order if weights[q] > 0 for b in (floors[q], reach[q])})
    low, low_sum = Fraction(0), sum(share(Fraction(0)).values(), Fraction(0))
    scale = Fraction(0)
    if low_sum < goal:
        for bend in bends:
            bend_sum = sum(share(bend).values(), Fraction(0))
            if bend_sum >= goal:
                scale = low + (goal - low_sum) * (bend - low) / (bend_sum - low_sum)
                break
            low, low_sum = bend, bend_sum
    exact = share(scale)
    whole = {q: math.floor(exact[q]) for q in order}
    left = total - sum(whole.values())
    # the fractions add up to `left`, each below 1: at least `left` queues have one
    by_remainder = sorted(
        (q for q in order if exact[q] > whole[q]), key=lambda q: (whole[q] - exact[q], order.index(q))
    )
    for q in by_remainder[:left]:
        whole[q] += 1
    return whole


def explain(
    config: SupervisorConfig,
    change: PoolPlan,
    demand: Mapping[str, QueueDemand],
    now: float,
    state: PoolState | None = None,
    pinned: bool = False,
) -> dict[str, str]:
    """Why a pool moves from ``change.current`` to ``change.target``, as the fields of a
    ``supervisor_scaled`` event: ``reason`` (``backlog``, ``demand``, ``minimum``, ``idle``,
    ``surplus``, ``override``), the queue's ``ready``, ``running``, ``wait`` (the oldest ready
    job's, seconds), ``est_clear`` with the processes it had and ``est_clear_after`` with the
    new ones (seconds, ``inf`` with none), ``from``, ``to``, ``desired`` and a ``message``."""
    work = [demand.get(q, QueueDemand()) for q in change.queues]
    total = QueueDemand(
        ready=sum(d.ready for d in work),
        running=sum(d.running for d in work),
        oldest_wait=max((d.oldest_wait for d in work), default=0.0),
    )
    runtime = float(_runtimes(config, demand)[change.name])
    before = est_clear(config, total, runtime, change.current)
    after = est_clear(config, total, runtime, change.target)
    up = change.target > change.current
    if pinned:
        reason = "override"
    elif up:
        reason = "minimum" if change.current < config.min_processes else "backlog" if change.late else "demand"
    else:
        reason = "idle" if total.jobs == 0 else "surplus"
    arrow = f"{change.name} {change.current} → {change.target} process{'es' if change.target != 1 else ''}"
    jobs = f"{total.ready:,} ready, {total.running:,} running"
    clear = f"clears in {_seconds(before)} with {change.current}, {_seconds(after)} with {change.target}"
    since = f" for {now - state.surplus_since:.1f} s" if state is not None and state.surplus_since is not None else ""
    if reason == "override":
        why = "pinned by evalharness scale"
    elif reason == "minimum":
        why = f"up to min_processes {config.min_processes}"
    elif reason == "backlog":
        why = (
            f"backlog late: {jobs}, oldest waited {total.oldest_wait:.1f} s, {clear} "
            f"(horizon {config.balance_cooldown:g} s)"
        )
    elif reason == "demand":
        why = f"demand: {jobs}, {clear}"
    elif reason == "idle":
        why = f"idle{since}: no jobs ready or running"
    else:
        why = f"needs {change.desired}{since}: {jobs}"
    return {
        "reason": reason,
        "from": str(change.current),
        "to": str(change.target),
        "desired": str(change.desired),
        "ready": str(total.ready),
        "running": str(total.running),
        "wait": f"{total.oldest_wait:.3f}",
        "est_clear": _seconds(before, unit=False),
        "est_clear_after": _seconds(after, unit=False),
        "message": f"{arrow}: {why}",
    }


def _seconds(value: float, unit: bool = True) -> str:
    if math.isinf(value):
        return "never" if unit else "inf"
    return f"{value:.1f} s" if unit else f"{value:.3f}"
