"""safe_ack.InOrder: an agent applies each partition's records once, in offset order, whatever faust delivers.

A replay out of order sold 75 units of 50 in the flash sale (the stock is first come, first served),
so a record that comes before the one it follows is left unapplied, never committed, and read again.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streams import safe_ack
from streams.safe_ack import InOrder

A = TP("stock-commands.v1", 0)
B = TP("stock-commands.v1", 1)


class Consumer:
    """What InOrder asks of the running SafeAckConsumer."""

    def __init__(self, anchors: dict[TP, int], gaps: dict[TP, tuple[int, int]] | None = None) -> None:
        self.started = True
        self.generation = 1
        self.anchors = anchors
        self.gaps = gaps or {}
        self.read_again: list[tuple[TP, int, int]] = []
        self.highwaters: dict[TP, int] = {}

    def anchor(self, tp: TP) -> int | None:
        return self.anchors.get(tp)

    def gaps_cover(self, tp: TP, start: int, end: int) -> bool:
        gap = self.gaps.get(tp)
        return gap is not None and gap[0] <= start and end <= gap[1]

    def read_from(self, tp: TP, offset: int, arrived: int) -> None:
        self.read_again.append((tp, offset, arrived))

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]


def _events(*where: tuple[TP, int]) -> list[Any]:
    return [
        SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o, tracked=True, timestamp=1000.0 + o)) for tp, o in where
    ]


def _offsets(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.tp.partition, e.message.offset) for e in events]


def test_records_in_order_are_applied_and_the_partition_moves_on_only_when_the_step_succeeded() -> None:
    consumer = Consumer({A: 20, B: 5})
    gate = InOrder(SimpleNamespace(consumer=consumer))
    first = gate.admit(_events((A, 20), (B, 5), (A, 21)))
    assert _offsets(first.events) == [(0, 20), (1, 5), (0, 21)]
    again = gate.admit(_events((A, 20), (A, 21), (A, 22)))  # the first step failed: read again
    assert _offsets(again.events) == [(0, 20), (0, 21), (0, 22)]
    gate.advance(again)
    later = gate.admit(_events((A, 21), (A, 23)))
    assert _offsets(later.events) == [(0, 23)]  # 21 was applied already
    assert consumer.read_again == []


def test_a_record_after_a_hole_is_not_applied_nor_committed_and_the_hole_is_read_again() -> None:
    consumer = Consumer({A: 20})
    gate = InOrder(SimpleNamespace(consumer=consumer))
    events = _events((A, 31), (A, 32))
    admitted = gate.admit(events)
    assert admitted.events == []
    assert [e.message.tracked for e in events] == [False, False]
    assert consumer.read_again == [(A, 20, 31), (A, 20, 32)]  # the consumer rate-limits the seeks
    gate.advance(admitted)
    refill = gate.admit(_events((A, 20), (A, 21)))
    assert _offsets(refill.events) == [(0, 20), (0, 21)]


def test_offsets_absent_from_the_log_are_not_a_hole() -> None:
    consumer = Consumer({A: 20}, gaps={A: (20, 25)})
    gate = InOrder(SimpleNamespace(consumer=consumer))
    assert _offsets(gate.admit(_events((A, 25))).events) == [(0, 25)]


def test_before_the_rebalance_ends_nothing_is_applied_and_after_it_the_new_anchor_counts() -> None:
    consumer = Consumer({})
    gate = InOrder(SimpleNamespace(consumer=consumer))
    early = _events((A, 40))
    assert gate.admit(early).events == []
    assert early[0].message.tracked is False
    consumer.anchors, consumer.generation = {A: 40}, 2
    step = gate.admit(_events((A, 40), (A, 41)))
    consumer.generation = 3  # a rebalance while the step ran: its progress belongs to the old assignment
    gate.advance(step)
    consumer.anchors = {A: 38}
    assert _offsets(gate.admit(_events((A, 38))).events) == [(0, 38)]


def test_without_a_running_consumer_every_record_is_applied() -> None:
    idle = Consumer({})
    idle.started = False
    gate = InOrder(SimpleNamespace(consumer=idle))
    assert _offsets(gate.admit(_events((A, 7), (A, 3))).events) == [(0, 7), (0, 3)]


def test_a_partition_left_with_unapplied_records_and_no_progress_is_read_again_until_caught_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records delivered before the rebalance's anchor was known: nothing else would bring them back."""
    consumer = Consumer({})
    gate = InOrder(SimpleNamespace(consumer=consumer))
    assert gate.admit(_events((A, 56), (A, 57))).events == []
    consumer.anchors, consumer.generation, consumer.highwaters = {A: 56}, 2, {A: 115}
    clock = [1000.0]
    monkeypatch.setattr(safe_ack.time, "monotonic", lambda: clock[0])
    asyncio.run(gate.retry())
    assert consumer.read_again == [(A, 56, -1)]
    step = gate.admit(_events((A, 56), (A, 57)))
    gate.advance(step)
    consumer.read_again.clear()
    clock[0] += 0.5
    asyncio.run(gate.retry())
    assert consumer.read_again == []  # progress just now: the re-read is under way
    clock[0] += safe_ack.RETRY_S
    asyncio.run(gate.retry())
    assert consumer.read_again == [(A, 58, -1)]  # from where it stopped, not from the anchor
    gate.advance(gate.admit(_events(*[(A, o) for o in range(58, 115)])))
    consumer.read_again.clear()
    clock[0] += 10 * safe_ack.RETRY_S
    asyncio.run(gate.retry())
    asyncio.run(gate.retry())
    assert consumer.read_again == []  # caught up: no longer watched


def test_the_deadline_clock_of_a_partition_with_a_backlog_is_its_newest_applied_record() -> None:
    """After a restart, an unpaid order must not expire while the payment made in time waits unread."""
    consumer = Consumer({A: 10})
    consumer.highwaters = {A: 20}
    gate = InOrder(SimpleNamespace(consumer=consumer))
    now_ms = 5_000_000
    assert gate.clock_ms(A, now_ms) == 0  # nothing applied yet, input waiting: no deadline has passed
    gate.advance(gate.admit(_events((A, 10), (A, 11), (A, 12))))
    assert gate.clock_ms(A, now_ms) == 1_012_000  # the newest applied record: offset 12 at 1,012 s
    gate.advance(gate.admit(_events(*[(A, o) for o in range(13, 20)])))
    assert gate.clock_ms(A, now_ms) == now_ms  # caught up: the wall clock
    idle = InOrder(SimpleNamespace(consumer=SimpleNamespace(started=False)))
    assert idle.clock_ms(A, now_ms) == now_ms
