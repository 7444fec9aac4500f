"""Closed orders: the allocation settled after the keep time, the whole order forgotten after the forget time.

``Allocation.closed`` and its stored form are pure; ``ClosedOrders.settle`` runs on real faust tables
of an app that never starts, with the changelog writes recorded in order; the orders agent runs
through ``agent.test_context()`` with ``send_record`` faked, as in test_isolation.py.
"""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import faust
import pytest

from oms.settings import Settings
from schemas.order import OrderEvent, OrderStatus
from streams.allocation import Allocation, Outcome, ShortPolicy, Verb
from streams.app import ClosedOrders, KeyedTable, ScanGate, Step, create_app
from streams.inventory import Decision, HoldState
from streams.stock_records import decode_commands, encode_decision
from tests.unit.fakes import Producer, run_agent
from tests.unit.test_allocation import _order

pytestmark = pytest.mark.usefixtures("clean_env")
DAY = 86_400_000


def _answer(allocation: Allocation, state: HoldState) -> None:
    for hold, (sku, qty) in sorted(allocation.lines.items()):
        allocation.on_decision(Decision(hold, sku, qty, state, "WH-SG-1" if state is HoldState.RESERVED else None, 0))


def test_an_order_closes_when_delivered_or_holding_nothing_and_opens_again_when_asked_its_fate() -> None:
    shipped = Allocation("t1:shopee:1")
    shipped.on_order(_order("shopee", 1, [("A", 1)]))
    shipped.mark_closed(1_000)
    assert not shipped.closed and shipped.closed_ms is None  # reserve sent, no answer yet
    _answer(shipped, HoldState.RESERVED)
    shipped.on_order(_order("shopee", 1, [("A", 1)], OrderStatus.SHIPPED))
    shipped.mark_closed(2_000)
    assert shipped.outcome is Outcome.ALLOCATED and not shipped.closed  # on its way: a cancel may still come
    shipped.on_order(_order("shopee", 1, [("A", 1)], OrderStatus.DELIVERED))
    shipped.mark_closed(3_000)
    shipped.mark_closed(4_000)
    assert shipped.closed_ms == 3_000  # when it closed, not when last seen
    assert Allocation.closed_at(shipped.to_bytes()) == 3_000
    assert Allocation.from_bytes(shipped.to_bytes()).closed_ms == 3_000

    refused = Allocation("t1:lazada:2", ShortPolicy.REJECT)
    refused.on_order(_order("lazada", 2, [("B", 1)]))
    _answer(refused, HoldState.SHORT)
    refused.mark_closed(5_000)
    assert refused.outcome is Outcome.REJECTED and refused.closed_ms == 5_000

    unpaid = Allocation("t1:lazada:3")
    unpaid.on_order(_order("lazada", 3, [("C", 1)], OrderStatus.PENDING_PAYMENT), unpaid_hold_ms=10)
    _answer(unpaid, HoldState.RESERVED)
    unpaid.expire(now_ms=1_000_000)
    unpaid.mark_closed(6_000)
    assert unpaid.outcome is Outcome.EXPIRED and unpaid.closed_ms == 6_000
    asked = unpaid.on_order(_order("lazada", 3, [("C", 1)], OrderStatus.SHIPPED))  # the channel shipped it anyway
    unpaid.mark_closed(7_000)
    assert [c.verb for c in asked] == [Verb.RESERVE] and unpaid.closed_ms is None  # open again: its fate asked
    assert Allocation.closed_at(unpaid.to_bytes()) is None


def test_stored_forms_say_when_they_closed_without_being_decoded() -> None:
    marker = Allocation.settled(1_795_000_000_123)
    assert Allocation.is_settled(marker) and len(marker) < 30
    assert Allocation.closed_at(marker) == 1_795_000_000_123
    open_order = Allocation("t1:shopee:closed")  # a key that looks like the field is not the field
    open_order.lines['t1:shopee:"closed":1|1'] = ("A", 1)
    assert Allocation.closed_at(open_order.to_bytes()) is None
    assert not Allocation.is_settled(open_order.to_bytes())


def test_closed_orders_are_settled_after_the_keep_time_and_forgotten_after_the_forget_time() -> None:
    journal = Producer()
    now = 100 * DAY

    def closed(key: str, at: int | None) -> bytes:
        allocation = Allocation(key, lines={f"{key}|1": ("A", 1)}, outcome=Outcome.REJECTED, closed_ms=at)
        return allocation.to_bytes()

    async def main() -> None:
        app = create_app(Settings(topic_prefix="unit-closed."))
        allocations, deadlines = KeyedTable(app, "alloc", 4), KeyedTable(app, "dl", 4)
        state, pending = KeyedTable(app, "state", 4), KeyedTable(app, "pending", 4)
        for key, value in {
            b"open": closed("open", None),
            b"recent": closed("recent", now - 6 * DAY),
            b"due": closed("due", now - 8 * DAY),
            b"settled": Allocation.settled(now - 30 * DAY),
            b"old": Allocation.settled(now - 91 * DAY),
            b"old-full": closed("old-full", now - 95 * DAY),  # a worker that was down: straight to forgotten
        }.items():
            allocations.table.data[key] = value
            state.table.data[key] = b"lifecycle of " + key
        deadlines.table.data[b"due"] = b"123"
        pending.table.data[b"old"] = b"456"
        with mock.patch("streams.app.send_record", side_effect=journal.send):
            async with Step(state, pending, upstream=(allocations, deadlines)):
                orders = ClosedOrders(allocations, deadlines, (state, pending), 7 * DAY, 90 * DAY)
                next_due = orders.scan(allocations.entries(), now)
                counts = orders.settle(now, most=10)
        assert next_due == now + DAY  # "recent" settles in a day: closed 6 days ago, kept 7
        assert counts == (1, 2, now + 82 * DAY)  # "due" is forgotten 90 days after it closed
        assert allocations.get(b"due") == Allocation.settled(now - 8 * DAY)
        assert deadlines.get(b"due") is None
        assert state.get(b"due") == b"lifecycle of due"  # its later changes are still published
        for key in (b"open", b"recent", b"settled"):
            assert allocations.get(key) is not None and state.get(key) is not None
        for key in (b"old", b"old-full"):
            assert allocations.get(key) is None and state.get(key) is None and pending.get(key) is None

    asyncio.run(main())
    writes = [(topic.split("-")[-2], key, value) for topic, key, value in journal.sent]
    # the lifecycle's deletions reach Kafka first: a crash between keeps the settled marker, which stops a
    # re-delivered order from reserving again
    assert sorted(writes[:3]) == [("pending", b"old", None), ("state", b"old", None), ("state", b"old-full", None)]
    assert sorted(writes[3:]) == [
        ("alloc", b"due", Allocation.settled(now - 8 * DAY)),
        ("alloc", b"old", None),
        ("alloc", b"old-full", None),
        ("dl", b"due", None),
    ]


def test_a_settled_order_still_publishes_its_changes_and_moves_no_stock() -> None:
    order = _order("shopee", 7, [("SKU-7", 1)])
    delivered = order.model_copy(
        update={"status": OrderStatus.DELIVERED, "event_id": "dlv", "event_time_ms": order.event_time_ms + 9}
    )

    async def scenario(app: faust.App, agent: Any) -> None:
        agent.original_channel = app.topic("order-changes.v1")
        await agent.put(value=order.encode(), key=order.order_key.encode())
        app.tables["allocations"].data[order.order_key.encode()] = Allocation.settled(1)
        await agent.put(value=delivered.encode(), key=order.order_key.encode())
        answer = Decision(f"{order.order_key}|0", "SKU-7", 1, HoldState.RESERVED, "WH-SG-1", 0)
        agent.original_channel = app.topic("reservations.v1")
        await agent.put(value=encode_decision(answer), key=order.order_key.encode())
        assert app.tables["allocations"].data[order.order_key.encode()] == Allocation.settled(1)

    sent = run_agent("orders", scenario)
    published = [OrderEvent.decode(s.value).status for s in sent if s.topic == "orders.v1"]
    assert published == [OrderStatus.PAID, OrderStatus.DELIVERED]
    commands = [c for s in sent if s.topic == "stock-commands.v1" for c in decode_commands(s.value)]
    assert [c.verb for c in commands] == [Verb.RESERVE, Verb.PAY]  # all from the first change, none after
    assert not [s.topic for s in sent if s.topic in ("allocations.v1", "routing.v1", "dead-letters.v1")]


def test_the_scan_reads_values_only_and_a_beat_settles_a_slice_of_its_own_orders_as_stored_then() -> None:
    now = 100 * DAY

    def closed(key: str, at: int) -> bytes:
        return Allocation(key, lines={f"{key}|1": ("A", 1)}, outcome=Outcome.REJECTED, closed_ms=at).to_bytes()

    stored = {
        b"open": Allocation("open", lines={"open|1": ("A", 1)}).to_bytes(),
        b"due-1": closed("due-1", now - 9 * DAY),
        b"due-2": closed("due-2", now - 8 * DAY),
        b"due-3": closed("due-3", now - 8 * DAY),
        b"theirs": closed("theirs", now - 8 * DAY),  # a standby copy: its owner settles it
        b"later": closed("later", now - 5 * DAY),  # due in 2 days
        b"settled": Allocation.settled(now - 89 * DAY),  # forgotten in 1 day
    }
    asked: list[bytes] = []

    def mine(key: bytes) -> bool:
        asked.append(key)
        return key != b"theirs"

    allocations, deadlines, lifecycle = mock.Mock(), mock.Mock(), mock.Mock()
    allocations.get.side_effect = stored.get
    orders = ClosedOrders(allocations, deadlines, (lifecycle,), 7 * DAY, 90 * DAY, mine)
    assert orders.scan(stored.items(), now) == now + DAY  # the marker of 89 days, before "later"
    assert asked == [], "the scan reads values only"
    assert list(orders.queue) == [b"due-1", b"due-2", b"due-3", b"theirs"]

    assert orders.settle(now, most=1) == (1, 0, now + 81 * DAY)
    assert asked == [b"due-1"], "a key is hashed as its order is settled"
    stored[b"due-2"] = Allocation("due-2", lines={"due-2|1": ("A", 1)}).to_bytes()  # asked its fate: open
    assert orders.settle(now, most=5) == (1, 0, now + 82 * DAY), "due-2 opened again, due-3 settled, not theirs"
    assert [c.args[0] for c in allocations.set.call_args_list] == [b"due-1", b"due-3"]
    assert not orders.queue and orders.settle(now, most=5) == (0, 0, None)
    assert orders.scan([(b"open", stored[b"open"])], now) is None and not orders.queue


def test_the_closed_orders_gate_opens_when_a_settled_marker_comes_due() -> None:
    gate = ScanGate(shortest_keep_ms=7 * DAY)
    gate.scanned(now_ms=0, next_due_ms=None)
    assert gate.skip(7 * DAY - 1)
    gate.due(3 * DAY)  # a marker settled at this beat is forgotten in 3 days
    assert gate.skip(3 * DAY - 1) and not gate.skip(3 * DAY)


def test_an_assignment_resets_the_gate_and_clears_what_was_queued() -> None:
    async def assigned() -> tuple[bool, list[bytes]]:
        app = create_app(Settings(topic_prefix="unit-gate."))
        queue = [b"another worker's order, perhaps"]
        gate = ScanGate(shortest_keep_ms=7 * DAY).reset_on_assignment(app, also=queue.clear)
        gate.scanned(now_ms=0, next_due_ms=None)
        assert gate.skip(DAY)
        await app.on_partitions_assigned.send(set())
        return gate.skip(DAY), queue

    assert asyncio.run(assigned()) == (False, [])
