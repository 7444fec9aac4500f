"""The stall decision: input waiting and no committed progress for the limit, outside rebalances."""

from __future__ import annotations

from streams.watchdog import StallWatch

P0, P1 = ("raw.orders.shopee", 0), ("raw.orders.shopee", 1)


def test_a_partition_with_input_waiting_and_no_progress_is_stalled_after_the_limit() -> None:
    watch = StallWatch(30)
    assert watch.observe(0, {P0: (5, 9)}) == []
    assert watch.observe(29, {P0: (5, 9)}) == []
    assert watch.observe(30, {P0: (5, 9)}) == [P0]


def test_progress_restarts_the_clock() -> None:
    watch = StallWatch(30)
    watch.observe(0, {P0: (5, 90)})
    assert watch.observe(25, {P0: (6, 90)}) == []
    assert watch.observe(50, {P0: (6, 90)}) == [], "25 s since the last progress"
    assert watch.observe(55, {P0: (6, 90)}) == [P0]


def test_a_partition_with_nothing_waiting_is_never_stalled() -> None:
    watch = StallWatch(1)
    for now in range(10):
        assert watch.observe(now, {P0: (9, 9), P1: (0, 0)}) == []


def test_a_rebalance_or_recovery_restarts_every_clock() -> None:
    watch = StallWatch(30)
    watch.observe(0, {P0: (5, 9)})
    watch.observe(20, {}, busy=True)
    assert watch.observe(40, {P0: (5, 9)}) == [], "the clock starts again after the rebalance"
    assert watch.observe(70, {P0: (5, 9)}) == [P0]
