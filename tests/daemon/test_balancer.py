"""The balancer's decisions, as tables of cases: no Redis, no processes, time passed in."""

from __future__ import annotations

import random
from typing import Any

import pytest

from evalharness.core.config import SupervisorConfig
from evalharness.core.errors import ConfigError
from evalharness.daemon.balancer import (
    Hold,
    Plan,
    PoolPlan,
    PoolState,
    QueueDemand,
    desired_sizes,
    explain,
    initial_sizes,
    plan,
    pool_queues,
)


def sup(*queues: str, **kw: Any) -> SupervisorConfig:
    kw.setdefault("balance", "auto")
    kw.setdefault("auto_scaling_strategy", "size")
    kw.setdefault("concurrency", 1)
    # a 1 s horizon: a backlog of unit jobs needs a process per job, as without one
    kw.setdefault("balance_cooldown", 1)
    return SupervisorConfig("s", queues or ("a", "b"), **kw)


def idle(processes: int, changed_at: float | None = None) -> PoolState:
    return PoolState(processes, processes, changed_at)


def busy(processes: int, changed_at: float | None = None) -> PoolState:
    return PoolState(processes, 0, changed_at)


def ready(n: int, runtime: float = 0.0) -> QueueDemand:
    return QueueDemand(ready=n, mean_runtime=runtime)


# --- pools -----------------------------------------------------------------------------------


def test_off_is_one_pool_serving_every_queue_with_max_processes() -> None:
    config = sup("a", "b", "c", balance="off", max_processes=5)
    assert pool_queues(config) == {"a,b,c": ("a", "b", "c")}
    assert initial_sizes(config) == {"a,b,c": 5}
    # demand does not move a fixed pool
    result = plan(config, {"a,b,c": idle(5, 0.0)}, {"a": ready(1000)}, now=1.0)
    assert result.targets == {"a,b,c": 5}
    assert result.changes == ()


def test_the_processes_shorthand_is_a_fixed_pool() -> None:
    config = SupervisorConfig("s", ("a", "b"), processes=3)
    assert initial_sizes(config) == {"a,b": 3}


@pytest.mark.parametrize(
    ("queues", "max_processes", "expected"),
    [
        (("a", "b"), 4, {"a": 2, "b": 2}),
        (("a", "b"), 5, {"a": 3, "b": 2}),
        (("a", "b", "c"), 8, {"a": 3, "b": 3, "c": 2}),
        (("a", "b", "c"), 7, {"a": 3, "b": 2, "c": 2}),
        (("a", "b", "c", "d"), 6, {"a": 2, "b": 2, "c": 1, "d": 1}),
        (("a",), 5, {"a": 5}),
    ],
)
def test_simple_splits_evenly_and_gives_the_remainder_to_the_highest_priority_queues(
    queues: tuple[str, ...], max_processes: int, expected: dict[str, int]
) -> None:
    config = sup(*queues, balance="simple", max_processes=max_processes)
    assert initial_sizes(config) == expected
    # demand does not change a simple split
    assert desired_sizes(config, {queues[-1]: ready(10_000)}) == expected


def test_simple_pools_reach_their_size_at_once_without_cooldown_or_shift() -> None:
    config = sup("a", "b", balance="simple", max_processes=10, balance_max_shift=1, balance_cooldown=60)
    result = plan(config, {"a": idle(1, 0.0), "b": idle(1, 0.0)}, {}, now=1.0)
    assert result.targets == {"a": 5, "b": 5}


# --- auto: how much each queue should get ------------------------------------------------------


def test_auto_size_is_proportional_to_the_backlog() -> None:
    config = sup("a", "b", min_processes=0, max_processes=8)
    assert desired_sizes(config, {"a": ready(30), "b": ready(10)}) == {"a": 6, "b": 2}


def test_auto_time_is_proportional_to_backlog_times_mean_runtime() -> None:
    config = sup("a", "b", auto_scaling_strategy="time", min_processes=0, max_processes=8)
    # same backlog, b's jobs take three times as long: b needs three times the processes
    assert desired_sizes(config, {"a": ready(10, 1.0), "b": ready(10, 3.0)}) == {"a": 2, "b": 6}
    # by size the same demand is an even split
    assert desired_sizes(
        sup("a", "b", min_processes=0, max_processes=8), {"a": ready(10, 1.0), "b": ready(10, 3.0)}
    ) == {"a": 4, "b": 4}


def test_auto_time_uses_the_other_queues_mean_runtime_for_a_queue_without_one() -> None:
    config = sup("a", "b", "c", auto_scaling_strategy="time", min_processes=0, max_processes=12)
    demand = {"a": ready(10, 2.0), "b": ready(10, 4.0), "c": ready(10)}  # c: unknown, counts as 3 s
    assert desired_sizes(config, demand) == {"a": 3, "b": 5, "c": 4}
    # a pinned queue's runtime still counts: c's jobs are taken to last (6 + 2) / 2 = 4 s, not 2 s
    pinned = desired_sizes(config, {"a": ready(10, 6.0), "b": ready(10, 2.0), "c": ready(10)}, overrides={"a": 4})
    assert pinned == {"a": 4, "b": 3, "c": 5}
    # nobody knows a runtime: 1 s each, so the split follows the backlog
    assert desired_sizes(config, {"a": ready(30), "b": ready(10)}) == {"a": 9, "b": 3, "c": 0}


def test_running_jobs_count_as_demand() -> None:
    config = sup("a", "b", min_processes=0, max_processes=8)
    demand = {"a": QueueDemand(ready=0, running=8), "b": ready(8)}
    assert desired_sizes(config, demand) == {"a": 4, "b": 4}
    timed = sup("a", "b", auto_scaling_strategy="time", min_processes=0, max_processes=8)
    assert desired_sizes(timed, {"a": QueueDemand(running=8, mean_runtime=60.0), "b": ready(8, 20.0)}) == {
        "a": 6,
        "b": 2,
    }


def test_a_pool_busy_with_long_jobs_is_not_shrunk_to_its_minimum() -> None:
    config = sup("a", "b", min_processes=1, max_processes=8, concurrency=10)
    # six processes of a run long jobs; b suddenly has a big backlog
    pools = {"a": busy(6, 0.0), "b": idle(1, 0.0)}
    demand = {"a": QueueDemand(running=6, mean_runtime=300.0), "b": ready(1000)}
    assert desired_sizes(config, demand, pools)["a"] == 6
    result = plan(config, pools, demand, now=100.0)
    assert result.pool("a").target == 6
    assert result.pool("b").target == 2  # the one free process goes to b


def test_a_queue_gets_no_more_processes_than_it_can_use() -> None:
    config = sup("a", "b", min_processes=0, max_processes=10, concurrency=10)
    # 3 jobs fit in one process; 25 jobs need three
    assert desired_sizes(config, {"a": ready(3), "b": ready(25)}) == {"a": 1, "b": 3}


def test_what_a_capped_queue_cannot_use_goes_to_the_others() -> None:
    config = sup("a", "b", "c", min_processes=0, max_processes=9)
    assert desired_sizes(config, {"a": ready(1), "b": ready(100), "c": ready(100)}) == {"a": 1, "b": 4, "c": 4}


def test_zero_backlog_everywhere_keeps_every_pool_at_its_minimum() -> None:
    config = sup("a", "b", "c", min_processes=2, max_processes=12)
    assert desired_sizes(config, {}) == {"a": 2, "b": 2, "c": 2}
    zero = sup("a", "b", min_processes=0, max_processes=12)
    assert desired_sizes(zero, {"a": QueueDemand(), "b": QueueDemand()}) == {"a": 0, "b": 0}


def test_one_queue_scales_between_its_minimum_and_max_processes() -> None:
    config = sup("a", min_processes=1, max_processes=6)
    assert desired_sizes(config, {}) == {"a": 1}
    assert desired_sizes(config, {"a": ready(3)}) == {"a": 3}
    assert desired_sizes(config, {"a": ready(10**9)}) == {"a": 6}


def test_a_huge_backlog_on_one_queue_leaves_the_others_their_minimum() -> None:
    config = sup("a", "b", "c", min_processes=1, max_processes=10)
    sizes = desired_sizes(config, {"b": ready(10**12)})
    assert sizes == {"a": 1, "b": 8, "c": 1}
    timed = sup("a", "b", "c", auto_scaling_strategy="time", min_processes=1, max_processes=10)
    assert desired_sizes(timed, {"a": ready(10**12, 10**6)}) == {"a": 8, "b": 1, "c": 1}


def test_a_new_job_on_an_idle_queue_gets_a_process_despite_a_huge_backlog_elsewhere() -> None:
    config = sup("a", "b", min_processes=0, max_processes=4)
    assert desired_sizes(config, {"a": ready(1_000_000), "b": ready(1)}) == {"a": 3, "b": 1}
    # in a plan: b has no process, a has all of them, idle, and its cooldown is over
    result = plan(config, {"a": idle(4, 0.0)}, {"a": ready(1_000_000), "b": ready(1)}, now=10.0)
    assert result.targets == {"a": 3, "b": 1}
    assert result.pool("a").stop == 1 and result.pool("b").start == 1


def test_ties_go_to_the_higher_priority_queue() -> None:
    config = sup("a", "b", "c", min_processes=0, max_processes=4)
    demand = {"a": ready(10), "b": ready(10), "c": ready(10)}
    assert desired_sizes(config, demand) == {"a": 2, "b": 1, "c": 1}
    reordered = sup("c", "b", "a", min_processes=0, max_processes=4)
    assert desired_sizes(reordered, demand) == {"c": 2, "b": 1, "a": 1}


def test_the_order_of_the_input_mappings_does_not_matter() -> None:
    config = sup("a", "b", "c", min_processes=0, max_processes=7, balance_max_shift=2)
    pools = {"a": PoolState(2, 1, 0.0), "b": idle(1, 3.0), "c": busy(3, None)}
    demand = {"a": ready(7, 2.0), "b": QueueDemand(5, 2, 1.5), "c": ready(1)}
    first = plan(config, pools, demand, now=5.0)
    again = plan(config, dict(reversed(pools.items())), dict(reversed(demand.items())), now=5.0)
    assert first == again


# --- the step: cooldown, shift, idle-only stops, max ------------------------------------------


def test_auto_starts_at_the_minimum() -> None:
    config = sup("a", "b", "c", min_processes=2, max_processes=20)
    assert initial_sizes(config) == {"a": 2, "b": 2, "c": 2}
    result = plan(config, {}, {}, now=0.0)
    assert [(p.name, p.start) for p in result.pools] == [("a", 2), ("b", 2), ("c", 2)]


def test_reaching_the_minimum_is_not_limited_by_cooldown_or_shift() -> None:
    config = sup("a", min_processes=3, max_processes=5, balance_max_shift=1, balance_cooldown=60)
    assert plan(config, {"a": idle(0, 0.0)}, {}, now=1.0).targets == {"a": 3}


def test_a_late_backlog_grows_its_pool_at_once_past_the_cooldown_and_max_shift() -> None:
    config = sup("a", "b", min_processes=1, max_processes=10, balance_max_shift=2, balance_cooldown=5)
    pools = {"a": idle(1, 100.0), "b": idle(1, 100.0)}  # started at t=100
    demand = {"a": ready(50)}  # 50 s of work for one process: far beyond the 5 s horizon
    result = plan(config, pools, demand, now=102.0)
    assert result.pool("a").late
    assert result.pool("a").target == 9 and result.pool("a").held is None
    assert result.pool("b").target == 1


@pytest.mark.parametrize(
    ("demand", "late"),
    [
        (QueueDemand(ready=10, mean_runtime=1.0), False),  # 10 job-seconds on 10 slots: 1 s
        (QueueDemand(ready=10, mean_runtime=1.0, oldest_wait=2.5), True),  # its oldest waited past 2 s
        (QueueDemand(ready=30, mean_runtime=1.0), True),  # 3 s to clear
        (QueueDemand(ready=20, mean_runtime=1.0), False),  # 2 s: not beyond the horizon
        (QueueDemand(running=10, mean_runtime=100.0, oldest_wait=50.0), False),  # nothing waits
    ],
)
def test_a_backlog_is_late_by_its_oldest_wait_or_its_time_to_clear(demand: QueueDemand, late: bool) -> None:
    config = sup("a", min_processes=1, max_processes=10, concurrency=10, balance_cooldown=2)
    assert plan(config, {"a": busy(1, 0.0)}, {"a": demand}, now=1.0).pool("a").late is late


def test_a_backlog_that_clears_within_the_horizon_does_not_grow_the_pool() -> None:
    config = sup("a", auto_scaling_strategy="time", min_processes=1, max_processes=8, concurrency=5, balance_cooldown=2)
    # 3 running and 8 waiting jobs of 100 ms: 0.8 slot-seconds to start within 2 s, one process
    small = QueueDemand(ready=8, running=3, mean_runtime=0.1)
    assert desired_sizes(config, {"a": small}) == {"a": 1}
    assert plan(config, {"a": busy(1, 0.0)}, {"a": small}, now=10.0).changes == ()
    # 200 waiting: 5 running slots + 20 slot-seconds over 2 s, three processes; late with one
    big = QueueDemand(ready=200, running=5, mean_runtime=0.1)
    assert desired_sizes(config, {"a": big}) == {"a": 3}
    grown = plan(config, {"a": busy(1, 9.5)}, {"a": big}, now=10.0)
    assert grown.pool("a").late and grown.targets == {"a": 3}
    # jobs longer than the horizon: every job gets a slot, up to what the jobs can use
    long = QueueDemand(ready=12, running=3, mean_runtime=60.0)
    assert desired_sizes(config, {"a": long}) == {"a": 3}


def test_a_backlog_that_is_not_late_grows_by_max_shift_once_per_cooldown() -> None:
    config = sup("a", min_processes=1, max_processes=10, concurrency=5, balance_cooldown=3, balance_max_shift=1)
    # two full processes of 2 s jobs and 10 more waiting: they would start within 2 s, not late,
    # but 10 + 10 x 2 / 3 slots want four processes
    demand = {"a": QueueDemand(ready=10, running=10, mean_runtime=2.0)}
    early = plan(config, {"a": busy(2, 1.0)}, demand, now=2.0)
    assert not early.pool("a").late
    assert early.pool("a").desired == 4 and early.pool("a").target == 2
    assert early.pool("a").held is Hold.COOLDOWN and early.next_at == 4.0
    step = plan(config, {"a": busy(2, 1.0)}, demand, now=4.0)
    assert step.targets == {"a": 3} and step.pool("a").held is Hold.MAX_SHIFT and step.next_at == 7.0


def test_a_pool_that_never_changed_may_shrink_once_it_had_a_surplus_for_a_cooldown() -> None:
    config = sup("a", min_processes=1, max_processes=10, balance_max_shift=3, balance_cooldown=30)
    first = plan(config, {"a": idle(5, None)}, {}, now=0.0)
    assert first.changes == () and first.pool("a").surplus_since == 0.0
    assert first.pool("a").held is Hold.COOLDOWN and first.next_at == 30.0
    later = plan(config, {"a": PoolState(5, 5, None, surplus_since=0.0)}, {}, now=30.0)
    assert later.targets == {"a": 2}


def test_an_idle_queue_with_min_zero_gets_a_process_at_once() -> None:
    config = sup("a", "b", min_processes=0, max_processes=4, balance_cooldown=5)
    # b was scaled to zero at t=10; a job arrives at t=11: no process serves it, so it is late
    pools = {"a": busy(2, 0.0), "b": PoolState(0, 0, 10.0)}
    result = plan(config, pools, {"a": QueueDemand(running=2), "b": ready(1)}, now=11.0)
    assert result.pool("b").late and result.pool("b").target == 1


def test_a_late_queue_takes_idle_processes_from_a_donor_in_cooldown() -> None:
    config = sup("a", "b", min_processes=0, max_processes=3, balance_cooldown=5)
    # a holds every process, idle, and grew at t=8; b gets a job at t=9
    pools = {"a": idle(3, 8.0)}
    demand = {"a": ready(2), "b": ready(1)}
    result = plan(config, pools, demand, now=9.0)
    assert result.targets == {"a": 2, "b": 1}
    assert result.total == 3


@pytest.mark.parametrize("shift", [1, 2, 5])
def test_a_pool_shrinks_by_at_most_max_shift_per_cooldown(shift: int) -> None:
    config = sup("a", "b", min_processes=1, max_processes=20, balance_max_shift=shift, balance_cooldown=3)
    pools = {"a": idle(1, 0.0), "b": PoolState(10, 10, 0.0, surplus_since=0.0)}
    down = plan(config, pools, {}, now=3.0)
    assert down.pool("b").target == 10 - shift
    assert down.pool("b").surplus_since == 0.0  # still more than it needs: the next step follows
    assert down.pool("b").held is Hold.MAX_SHIFT and down.next_at == 6.0


def test_nothing_shrinks_before_the_cooldown() -> None:
    config = sup("a", "b", min_processes=1, max_processes=10, balance_cooldown=10)
    pools = {"a": PoolState(5, 5, 95.0, surplus_since=92.0), "b": PoolState(3, 3, 80.0, surplus_since=99.0)}
    result = plan(config, pools, {}, now=100.0)
    assert result.changes == ()
    assert {p.held for p in result.pools} == {Hold.COOLDOWN}
    # a may move when its last change is a cooldown old, b when its surplus is
    assert result.next_at == 105.0
    assert plan(config, pools, {}, now=105.0).targets == {"a": 4, "b": 3}
    assert plan(config, pools, {}, now=109.0).targets == {"a": 4, "b": 2}


def test_each_pool_has_its_own_cooldown() -> None:
    config = sup("a", "b", min_processes=0, max_processes=10, balance_cooldown=10, balance_max_shift=10)
    pools = {"a": PoolState(4, 4, 95.0, surplus_since=80.0), "b": PoolState(4, 4, 80.0, surplus_since=80.0)}
    result = plan(config, pools, {}, now=100.0)
    assert result.targets == {"a": 4, "b": 0}
    assert result.pool("a").held is Hold.COOLDOWN


def test_scale_down_only_stops_idle_processes() -> None:
    config = sup("a", min_processes=1, max_processes=10, balance_max_shift=10, balance_cooldown=0)
    pools = {"a": PoolState(processes=6, idle=2, changed_at=0.0)}
    result = plan(config, pools, {"a": QueueDemand(running=4)}, now=1.0)
    assert result.pool("a").desired == 4
    assert result.pool("a").stop == 2
    empty = plan(config, {"a": PoolState(6, 2, 0.0)}, {}, now=1.0)
    assert empty.pool("a").desired == 4  # its four busy processes are a floor
    assert empty.pool("a").stop == 2
    assert empty.pool("a").held is None
    # busy processes are never stopped: the desired size counts them
    assert plan(config, {"a": PoolState(6, 1, 0.0)}, {}, now=1.0).targets == {"a": 5}
    # when the desired size is below the busy processes, the pool waits for them
    lowered = plan(config, {"a": PoolState(6, 1, 0.0)}, {}, now=1.0, overrides={"a": 1})
    assert lowered.pool("a").stop == 1
    assert lowered.pool("a").held is Hold.BUSY


def test_processes_still_stopping_count_against_max_so_no_start_is_planned_that_cannot_happen() -> None:
    config = sup("a", "b", min_processes=1, max_processes=6, balance_cooldown=1)
    # a gave two processes back a moment ago; they are finishing their jobs
    pools = {"a": PoolState(2, 0, 0.0, stopping=2), "b": idle(2, 0.0)}
    result = plan(config, pools, {"a": QueueDemand(running=2), "b": ready(100)}, now=5.0)
    assert result.pool("b").desired == 4
    assert result.targets == {"a": 2, "b": 2} and result.pool("b").held is Hold.MAX_PROCESSES
    gone = {"a": PoolState(2, 0, 0.0), "b": idle(2, 0.0)}
    assert plan(config, gone, {"a": QueueDemand(running=2), "b": ready(100)}, now=5.0).targets == {"a": 2, "b": 4}


def test_stops_are_counted_before_starts_so_the_total_stays_under_max() -> None:
    config = sup("a", "b", min_processes=1, max_processes=6, balance_max_shift=3, balance_cooldown=0)
    pools = {"a": PoolState(5, 1, 0.0), "b": idle(1, 0.0)}
    result = plan(config, pools, {"a": QueueDemand(running=4), "b": ready(100)}, now=1.0)
    # a can give up only its idle process, so b gets only one more
    assert result.targets == {"a": 4, "b": 2}
    assert result.total == 6


def test_a_late_backlog_does_not_wait_for_its_donor_to_cool_down() -> None:
    config = sup("a", "b", min_processes=1, max_processes=6, balance_max_shift=1, balance_cooldown=1)
    pools = {"a": idle(5, 0.5), "b": idle(1, 0.0)}
    result = plan(config, pools, {"b": ready(100)}, now=1.0)
    assert result.desired == {"a": 1, "b": 5}
    # a gave up its four idle processes at once, past its cooldown and its max_shift
    assert result.targets == {"a": 1, "b": 5}
    # only idle ones: a busy donor keeps its processes and b waits for them
    partly = plan(config, {"a": PoolState(5, 2, 0.5), "b": idle(1, 0.0)}, {"b": ready(100)}, now=1.0)
    assert partly.targets == {"a": 3, "b": 3}
    assert partly.desired == {"a": 3, "b": 3}  # a's three busy processes are its floor


def test_a_total_over_max_after_a_reload_is_cut_at_once_from_idle_processes() -> None:
    config = sup("a", "b", min_processes=1, max_processes=4, balance_max_shift=1, balance_cooldown=60)
    pools = {"a": idle(4, 0.0), "b": PoolState(4, 2, 0.0)}
    result = plan(config, pools, {"a": ready(1), "b": QueueDemand(running=2)}, now=1.0)
    # lowest priority first, down to its desired size (b's two busy processes), then a
    assert result.desired == {"a": 1, "b": 2}
    assert result.targets == {"a": 2, "b": 2}
    assert result.pool("a").held is Hold.COOLDOWN  # the rest of a's shrinking waits as usual


def test_a_zero_max_stops_everything_idle() -> None:
    config = sup("a", "b", max_processes=0)
    assert config.min_processes == 0
    assert initial_sizes(config) == {"a": 0, "b": 0}
    result = plan(config, {"a": idle(2, 0.0), "b": PoolState(2, 1, 0.0)}, {"a": ready(10)}, now=0.0)
    assert result.targets == {"a": 0, "b": 1}


# --- overrides ---------------------------------------------------------------------------------


def test_an_override_pins_a_pool_at_once_and_the_rest_is_balanced() -> None:
    config = sup("a", "b", "c", min_processes=1, max_processes=10, balance_cooldown=60)
    pools = {"a": idle(1, 0.0), "b": idle(1, 0.0), "c": idle(1, 0.0)}
    demand = {"b": ready(1000), "c": ready(1000)}
    result = plan(config, pools, demand, now=1.0, overrides={"a": 4})
    assert result.pool("a").target == 4  # no cooldown, no shift for an operator's command
    assert result.pool("a").desired == 4
    assert desired_sizes(config, demand, overrides={"a": 4}) == {"a": 4, "b": 3, "c": 3}


def test_an_override_is_clamped_to_the_minimum_and_to_what_the_other_minimums_leave() -> None:
    config = sup("a", "b", "c", min_processes=2, max_processes=10)
    assert desired_sizes(config, {}, overrides={"a": 0}) == {"a": 2, "b": 2, "c": 2}
    assert desired_sizes(config, {}, overrides={"a": 50}) == {"a": 6, "b": 2, "c": 2}
    assert desired_sizes(config, {}, overrides={"a": 50, "b": 50}) == {"a": 6, "b": 2, "c": 2}


def test_an_override_still_stops_only_idle_processes() -> None:
    config = sup("a", min_processes=0, max_processes=10)
    result = plan(config, {"a": PoolState(5, 2, 0.0)}, {}, now=1.0, overrides={"a": 0})
    assert result.pool("a").target == 3
    assert result.pool("a").held is Hold.BUSY


def test_overrides_apply_to_simple_and_off_supervisors_too() -> None:
    simple = sup("a", "b", "c", balance="simple", max_processes=9)
    assert desired_sizes(simple, {}, overrides={"c": 5}) == {"a": 2, "b": 2, "c": 5}
    off = sup("a", "b", balance="off", max_processes=6, min_processes=1)
    assert plan(off, {"a,b": idle(6, 0.0)}, {}, now=0.0, overrides={"a,b": 2}).targets == {"a,b": 2}
    assert desired_sizes(off, {}, overrides={"a,b": 0}) == {"a,b": 1}


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"nope": 1}, "no override named 'nope'"), ({"a": -1}, ">= 0"), ({"a": 1.5}, "integer")],
)
def test_bad_overrides_are_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan(sup("a", "b", max_processes=4), {}, {}, now=0.0, overrides=overrides)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"queues": ("a", "b", "c"), "min_processes": 2, "max_processes": 5}, "min_processes"),
        ({"queues": ("a", "b", "c"), "max_processes": 2}, "min_processes"),  # the default minimum of 1
        ({"balance_max_shift": 0}, "balance_max_shift"),
        ({"balance_cooldown": -1}, "balance_cooldown"),
        ({"concurrency": 0}, "concurrency"),
        ({"queues": ("a", "a")}, "queues"),
        ({"queues": ()}, "queues"),
        ({"processes": 3}, "processes"),  # a fixed size makes no sense with auto
    ],
)
def test_impossible_supervisor_settings_are_refused(kw: dict[str, Any], key: str) -> None:
    queues = kw.pop("queues", ("a", "b"))
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        sup(*queues, **kw) if queues else SupervisorConfig("s", (), balance="auto")


def test_bad_inputs_are_refused() -> None:
    config = sup("a", "b", max_processes=4)
    with pytest.raises(ValueError, match="no pool named 'c'"):
        plan(config, {"c": idle(1)}, {}, now=0.0)
    with pytest.raises(ValueError, match="idle"):
        PoolState(processes=1, idle=2)
    with pytest.raises(ValueError, match="idle"):
        PoolState(processes=-1)
    with pytest.raises(ValueError, match="job counts"):
        QueueDemand(ready=-1)
    with pytest.raises(ValueError, match="mean_runtime"):
        QueueDemand(mean_runtime=float("nan"))


def test_demand_on_queues_the_supervisor_does_not_serve_is_ignored() -> None:
    config = sup("a", max_processes=4, min_processes=1)
    assert desired_sizes(config, {"other": ready(100)}) == {"a": 1}


def test_demand_is_read_from_a_telemetry_snapshot_row() -> None:
    row = {"name": "evals", "ready": 12, "reserved": 3, "runtime": {"p50": 2.5, "p95": 9.0, "max": 11.0}}
    assert QueueDemand.from_telemetry(row) == QueueDemand(ready=12, running=3, mean_runtime=2.5)
    assert QueueDemand.from_telemetry({**row, "runtime": {"mean": 3.0, "p50": 2.5}}).mean_runtime == 3.0
    assert QueueDemand.from_telemetry({"ready": 0, "reserved": 0, "runtime": {"p50": None}}) == QueueDemand()


def test_a_plan_says_what_to_start_and_stop() -> None:
    p = Plan(pools=(PoolPlan("a", ("a",), 3, 5, 4), PoolPlan("b", ("b",), 3, 1, 2, Hold.MAX_SHIFT)))
    assert (p.pool("a").start, p.pool("a").stop) == (1, 0)
    assert (p.pool("b").start, p.pool("b").stop) == (0, 1)
    assert p.targets == {"a": 4, "b": 2} and p.desired == {"a": 5, "b": 1}
    assert p.total == 6 and len(p.changes) == 2
    with pytest.raises(KeyError):
        p.pool("c")


# --- invariants over many random inputs ------------------------------------------------------------


def random_case(
    rng: random.Random,
) -> tuple[SupervisorConfig, dict[str, PoolState], dict[str, QueueDemand], float, dict[str, int]]:
    n = rng.randint(1, 5)
    queues = tuple(f"q{i}" for i in range(n))
    balance = rng.choice(["off", "simple", "auto", "auto", "auto"])
    low = rng.randint(0, 3)
    high = (low if balance == "off" else low * n) + rng.randint(0, 12)
    config = SupervisorConfig(
        "s",
        queues,
        balance=balance,  # type: ignore[arg-type]
        auto_scaling_strategy=rng.choice(["time", "size"]),  # type: ignore[arg-type]
        min_processes=low,
        max_processes=high,
        balance_max_shift=rng.randint(1, 4),
        balance_cooldown=rng.choice([0.0, 1.0, 3.0, 10.0]),
        concurrency=rng.randint(1, 5),
    )
    now = 100.0
    pools = {}
    for name in pool_queues(config):
        if rng.random() < 0.15:
            continue
        processes = rng.randint(0, high + 2)
        pools[name] = PoolState(
            processes,
            rng.randint(0, processes),
            rng.choice([None, now - rng.uniform(0, 12)]),
            rng.choice([None, now - rng.uniform(0, 12)]),
            rng.choice([0, 0, 0, rng.randint(0, 3)]),
        )
    demand = {
        q: QueueDemand(
            ready=rng.choice([0, 0, rng.randint(1, 10), rng.randint(0, 10_000)]),
            running=rng.choice([0, rng.randint(0, 20)]),
            mean_runtime=rng.choice([0.0, rng.uniform(0.01, 600)]),
            oldest_wait=rng.choice([0.0, rng.uniform(0, 20)]),
        )
        for q in queues
        if rng.random() < 0.8
    }
    overrides = {name: rng.randint(0, high + 3) for name in pool_queues(config) if rng.random() < 0.1}
    return config, pools, demand, now, overrides


def check_invariants(
    config: SupervisorConfig,
    pools: dict[str, PoolState],
    demand: dict[str, QueueDemand],
    now: float,
    overrides: dict[str, int],
) -> Plan:
    result = plan(config, pools, demand, now, overrides)
    m, top = config.min_processes, config.max_processes
    assert [p.name for p in result.pools] == list(pool_queues(config))
    assert sum(result.desired.values()) <= top
    if config.balance == "simple" and not overrides:
        assert sum(result.desired.values()) == top
    current_total = sum(p.current for p in result.pools)
    # a late pool takes idle processes at once; the room they free may go to a pool under its minimum
    donating = any(p.late for p in result.pools) and any(p.start for p in result.pools)
    for p in result.pools:
        state = pools.get(p.name, PoolState())
        cooling = state.changed_at is not None and now - state.changed_at < config.balance_cooldown
        since = now if state.surplus_since is None else state.surplus_since
        settling = now - since < config.balance_cooldown
        limited = config.balance == "auto" and p.name not in overrides
        assert not p.late or limited
        # the surplus is remembered while the pool stays above its desired size, and only then
        assert (p.surplus_since is not None) == (limited and p.target > p.desired and not p.late)
        assert m <= p.desired <= top
        # every step moves toward the desired size and never past it
        assert min(p.current, p.desired) <= p.target <= max(p.current, p.desired)
        # only idle processes are stopped, and never below the minimum
        assert p.stop <= state.idle
        if p.stop:
            assert p.target >= m
        if p.target < m:
            assert p.stop == 0 and result.total + sum(x.stopping for x in pools.values()) >= top, (
                "a pool stays under its minimum only while there is no room"
            )
        if limited:
            if p.start and not p.late:
                assert p.target <= max(p.current, m) + (0 if cooling else config.balance_max_shift)
            if p.stop and not (current_total > top) and not donating:
                # shrinking waits for the cooldown and for a surplus a cooldown old, then steps
                assert not cooling and not settling and p.stop <= config.balance_max_shift
        assert (p.target == p.desired) == (p.held is None)
    # no start beyond what max_processes leaves beside the processes still stopping
    stopping = sum(p.stopping for p in pools.values())
    if any(p.start for p in result.pools):
        assert result.total + stopping <= top or all(p.target <= max(p.current, m) for p in result.pools)
    # never above max_processes, unless busy processes alone are more than that
    if result.total > top:
        assert not any(p.start for p in result.pools)
        for p in result.pools:
            state = pools.get(p.name, PoolState())
            assert p.target <= p.desired or p.target == state.busy
    # deterministic
    assert plan(config, pools, demand, now, overrides) == result
    return result


def test_invariants_hold_for_many_random_inputs() -> None:
    rng = random.Random(20240601)
    for _ in range(2000):
        check_invariants(*random_case(rng))


def test_with_steady_demand_and_idle_processes_every_pool_reaches_its_desired_size() -> None:
    rng = random.Random(7)

    def settled(p: PoolPlan, result: Plan) -> bool:
        # a late pool above its share keeps its processes for its own backlog, and a pool under
        # its share waits for them
        kept = any(o.late and o.target > o.desired for o in result.pools)
        return (
            p.held is None
            or (p.late and p.held is Hold.BUSY and p.target > p.desired)
            or (kept and p.held is Hold.MAX_PROCESSES)
        )

    for _ in range(300):
        config, pools, demand, now, overrides = random_case(rng)
        # every process idle, so nothing is held by busy processes
        state = {name: PoolState(p.processes, p.processes, p.changed_at) for name, p in pools.items()}
        demand = {q: QueueDemand(d.ready, 0, d.mean_runtime) for q, d in demand.items()}
        for _ in range(200):
            result = check_invariants(config, state, demand, now, overrides)
            if not result.changes and all(settled(p, result) for p in result.pools):
                break
            state = {
                p.name: PoolState(
                    p.target,
                    p.target,
                    now if p.target != p.current else state.get(p.name, PoolState()).changed_at,
                    p.surplus_since,
                )
                for p in result.pools
            }
            now += max(config.balance_cooldown, 0.5)
        else:
            pytest.fail(f"no convergence: {config} {demand} {overrides}")
        desired = desired_sizes(config, demand, state, overrides)
        for p in result.pools:
            assert p.target == desired[p.name] or p.held is not None


def test_a_late_pool_above_its_share_keeps_its_processes_until_its_backlog_is_not_late() -> None:
    config = sup("a", "b", auto_scaling_strategy="time", min_processes=1, max_processes=6, concurrency=5)
    # a took five processes for its burst; then b's longer jobs arrive and weigh more
    pools = {"a": idle(5, 0.0), "b": busy(1, 0.0)}
    demand = {"a": QueueDemand(ready=500, mean_runtime=0.1), "b": QueueDemand(ready=200, running=5, mean_runtime=1.0)}
    held = plan(config, pools, demand, now=10.0)
    assert held.desired == {"a": 1, "b": 5}
    # a's idle processes (its heartbeats may be a moment old) are about to take its jobs: no churn
    assert held.targets == {"a": 5, "b": 1} and held.pool("a").held is Hold.BUSY
    assert held.pool("a").surplus_since is None
    # a's backlog clears within the horizon: its idle processes go to b's late backlog at once
    calm = {"a": QueueDemand(ready=5, mean_runtime=0.1), "b": demand["b"]}
    assert plan(config, pools, calm, now=11.0).targets == {"a": 1, "b": 5}
    # with no late pool to take them, it keeps them for a cooldown first
    quiet = plan(config, pools, {"a": calm["a"]}, now=11.0)
    assert quiet.targets == {"a": 5, "b": 1} and quiet.pool("a").surplus_since == 11.0


# --- what an event says about a change ---------------------------------------------------------------


def test_a_change_is_explained_with_its_reason_and_numbers() -> None:
    config = sup("x", "y", auto_scaling_strategy="time", min_processes=1, max_processes=6, concurrency=5)
    demand = {"x": QueueDemand(ready=1480, running=5, mean_runtime=0.1, oldest_wait=0.4)}
    grown = plan(config, {"x": busy(1, 0.0), "y": idle(1, 0.0)}, demand, now=10.0).pool("x")
    why = explain(config, grown, demand, now=10.0)
    assert why["reason"] == "backlog"
    assert (why["from"], why["to"], why["desired"]) == ("1", "5", "5")
    assert (why["ready"], why["running"], why["wait"]) == ("1480", "5", "0.400")
    # 1,480 x 0.1 s on 5 slots, then on 25
    assert (why["est_clear"], why["est_clear_after"]) == ("29.600", "5.920")
    assert why["message"] == (
        "x 1 → 5 processes: backlog late: 1,480 ready, 5 running, oldest waited 0.4 s, "
        "clears in 29.6 s with 1, 5.9 s with 5 (horizon 1 s)"
    )
    # drained: x shrinks after a cooldown with a surplus, and says for how long it was idle
    state = PoolState(5, 5, 10.0, surplus_since=14.0)
    down = plan(config, {"x": state, "y": idle(1, 0.0)}, {}, now=15.5).pool("x")
    idle_why = explain(config, down, {}, now=15.5, state=state)
    assert idle_why["reason"] == "idle" and (idle_why["from"], idle_why["to"]) == ("5", "4")
    assert idle_why["message"] == "x 5 → 4 processes: idle for 1.5 s: no jobs ready or running"
    assert idle_why["est_clear"] == "0.000"
    busy_why = explain(config, down, {"x": QueueDemand(running=3, mean_runtime=0.1)}, now=15.5, state=state)
    assert busy_why["reason"] == "surplus"
    assert busy_why["message"] == "x 5 → 4 processes: needs 1 for 1.5 s: 0 ready, 3 running"


def test_an_override_and_the_minimum_are_reasons_too() -> None:
    config = sup("x", "y", min_processes=2, max_processes=6)
    pinned = plan(config, {"x": idle(2, 0.0), "y": idle(2, 0.0)}, {}, now=1.0, overrides={"x": 4}).pool("x")
    assert explain(config, pinned, {}, now=1.0, pinned=True)["reason"] == "override"
    assert "pinned by evalharness scale" in explain(config, pinned, {}, now=1.0, pinned=True)["message"]
    start = plan(config, {}, {}, now=0.0).pool("x")
    minimum = explain(config, start, {}, now=0.0)
    assert minimum["reason"] == "minimum" and minimum["est_clear_after"] == "0.000"
    assert minimum["message"] == "x 0 → 2 processes: up to min_processes 2"
    # a queue with jobs and no process never clears
    zero = sup("x", "y", min_processes=0, max_processes=6)
    none = explain(zero, PoolPlan("x", ("x",), 0, 1, 1, late=True), {"x": ready(3)}, now=0.0)
    assert none["est_clear"] == "inf" and "clears in never with 0, 3.0 s with 1" in none["message"]
