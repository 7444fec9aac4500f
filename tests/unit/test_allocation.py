"""Allocation and inventory together, as the stream will run them, without a broker.

A flash sale in memory: 20 SKUs x 50 units across 3 warehouses, 5 channels, ten times more demand
than stock, cancellations, payment, shipping. Commands travel in per-SKU queues and answers in
per-order queues, FIFO within a queue (as within a Kafka partition) and interleaved at random
between queues, with duplicates. Nothing is oversold, every order is decided, confirmed units equal
the stock, and cancelled stock is sold again.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque

import pytest

from schemas.order import Address, Market, OrderEvent, OrderLine, OrderStatus, PaymentMethod, RawRef
from streams.allocation import Allocation, Outcome, ShortPolicy, StockCommand, Verb
from streams.inventory import Decision, HoldState, SkuStock

WAREHOUSES = ("WH-SG-1", "WH-SG-2", "WH-SG-3")
CHANNELS = ("shopee", "lazada", "tiktok", "shopify", "pos")


def _order(channel: str, n: int, lines: list[tuple[str, int]], status: OrderStatus = OrderStatus.PAID) -> OrderEvent:
    key = f"t1:{channel}:{n}"
    return OrderEvent(
        event_id=f"{key}:{status}", tenant="t1", channel=channel, market=Market.SG, shop_id="s", order_key=key,
        channel_order_id=str(n), status=status, channel_status=status.value, payment_method=PaymentMethod.CARD,
        is_cod=False, currency="SGD", total_minor=1000,
        lines=tuple(OrderLine(line_id=str(i), sku=sku, quantity=q, unit_price_minor=500, paid_price_minor=500)
                    for i, (sku, q) in enumerate(lines)),
        shipping=Address(country=Market.SG), created_ms=1, event_time_ms=1 + status.rank, ingest_time_ms=1,
        raw=RawRef(topic="raw", partition=0, offset=n),
    )  # fmt: skip


class Pipeline:
    """Per-SKU command queues and per-order answer queues, drained in a random interleaving."""

    def __init__(self, seed: int, policy: ShortPolicy = ShortPolicy.REJECT) -> None:
        self.rnd = random.Random(seed)
        self.stock: dict[str, SkuStock] = {}
        self.allocations: dict[str, Allocation] = {}
        self.policy = policy
        self.queues: dict[tuple[str, str], deque[StockCommand | Decision]] = defaultdict(deque)
        self.ready: list[tuple[str, str]] = []  # queues with work, in no particular order

    def load(self, sku: str, per_warehouse: int) -> None:
        self.stock[sku] = SkuStock(sku)
        for i, warehouse in enumerate(WAREHOUSES):
            self.stock[sku].snapshot(f"load-{sku}-{i}", warehouse, per_warehouse, 1)

    def order(self, event: OrderEvent) -> None:
        allocation = self.allocations.setdefault(event.order_key, Allocation(event.order_key, self.policy))
        self._send(allocation.on_order(event))

    def _put(self, queue: tuple[str, str], item: StockCommand | Decision) -> None:
        if not self.queues[queue]:
            self.ready.append(queue)
        self.queues[queue].append(item)

    def _send(self, commands: list[StockCommand]) -> None:
        for command in commands:
            self._put(("sku", command.sku), command)
            if self.rnd.random() < 0.05:
                self._put(("sku", command.sku), command)  # at-least-once: a duplicate delivery

    def step(self) -> bool:
        if not self.ready:
            return False
        index = self.rnd.randrange(len(self.ready))
        queue = self.ready[index]
        item = self.queues[queue].popleft()
        if not self.queues[queue]:
            self.ready[index] = self.ready[-1]
            self.ready.pop()
        if isinstance(item, StockCommand):
            stock = self.stock[item.sku]
            if item.verb is Verb.RESERVE:
                decision, _ = stock.reserve(item.hold_id, item.quantity, WAREHOUSES)
                self._put(("order", item.hold_id.split("|")[0]), decision)
            else:
                act = {Verb.PAY: stock.pay, Verb.RELEASE: stock.release, Verb.SHIP: stock.ship}.get(item.verb)
                (act or stock.restock)(item.hold_id)
            for row in stock.rows.values():  # after every command on a SKU: nothing held beyond on hand
                assert row.reserved <= row.on_hand, f"{stock.sku} oversold: {row}"
        else:
            allocation = self.allocations[queue[1]]
            self._send(allocation.on_decision(item))
            assert Allocation.from_bytes(allocation.to_bytes()) == allocation, "state survives its table encoding"
        return True

    def drain(self) -> None:
        while self.step():
            pass


@pytest.mark.parametrize("seed", range(8))
def test_flash_sale_with_ten_times_demand_never_oversells_and_confirms_exactly_the_stock(seed: int) -> None:
    pipe = Pipeline(seed)
    skus = [f"SKU-{i:02d}" for i in range(20)]
    for sku in skus:
        pipe.load(sku, 50 // 3 + (1 if sku < "SKU-10" else 0))  # 16 or 17 per warehouse
    stock_total = {sku: sum(r.on_hand for r in pipe.stock[sku].rows.values()) for sku in skus}
    rnd = random.Random(seed)
    orders = []
    for n in range(sum(stock_total.values()) * 10 // 2):
        channel = rnd.choice(CHANNELS)
        event = _order(channel, n, [(rnd.choice(skus), rnd.choice((1, 1, 2, 3)))])
        orders.append(event)
        pipe.order(event)
        for _ in range(rnd.randint(0, 3)):
            pipe.step()
    pipe.drain()

    assert all(a.outcome is not Outcome.PENDING for a in pipe.allocations.values()), "every order is decided"
    confirmed = defaultdict(int)
    for event in orders:
        if pipe.allocations[event.order_key].outcome is Outcome.ALLOCATED:
            for line in event.lines:
                confirmed[line.sku] += line.quantity
    for sku in skus:
        held = sum(r.reserved for r in pipe.stock[sku].rows.values())
        assert confirmed[sku] == held <= stock_total[sku]
        # demand is 10x: what is left is less than the smallest order that could still have fitted
        assert stock_total[sku] - held < 3, f"{sku}: {stock_total[sku] - held} units unsold under 10x demand"


def test_cancelled_orders_give_their_units_back_and_they_are_sold_again() -> None:
    pipe = Pipeline(seed=1)
    pipe.load("SKU-X", 1)  # 3 units in all
    first = [_order("shopee", n, [("SKU-X", 1)]) for n in range(3)]
    for event in first:
        pipe.order(event)
    pipe.drain()
    assert all(pipe.allocations[e.order_key].outcome is Outcome.ALLOCATED for e in first)
    pipe.order(_order("shopee", 0, [("SKU-X", 1)], OrderStatus.CANCELLED))
    pipe.order(_order("lazada", 9, [("SKU-X", 1)]))
    pipe.drain()
    assert pipe.allocations["t1:shopee:0"].outcome is Outcome.CANCELLED
    assert pipe.allocations["t1:lazada:9"].outcome is Outcome.ALLOCATED
    assert sum(r.reserved for r in pipe.stock["SKU-X"].rows.values()) == 3


def test_reject_policy_releases_the_lines_that_were_reserved_when_one_is_short() -> None:
    pipe = Pipeline(seed=2)
    pipe.load("SKU-A", 5)
    pipe.load("SKU-B", 0)
    pipe.order(_order("tiktok", 1, [("SKU-A", 2), ("SKU-B", 1)]))
    pipe.drain()
    assert pipe.allocations["t1:tiktok:1"].outcome is Outcome.REJECTED
    assert sum(r.reserved for r in pipe.stock["SKU-A"].rows.values()) == 0


def test_an_order_shipped_before_its_short_line_was_decided_is_partial_not_rejected() -> None:
    """The channel says the parcel left: the held line shipped and must not be counted as released."""
    allocation = Allocation("t1:shopee:7")
    order = _order("shopee", 7, [("SKU-A", 2), ("SKU-B", 1)])
    reserves = allocation.on_order(order)
    assert [c.verb for c in reserves] == [Verb.RESERVE, Verb.RESERVE, Verb.PAY, Verb.PAY]
    shipped = _order("shopee", 7, [("SKU-A", 2), ("SKU-B", 1)], OrderStatus.SHIPPED)
    assert {c.verb for c in allocation.on_order(shipped)} == {Verb.SHIP}  # PAY went with the paid state
    held, short = sorted(allocation.lines)
    assert allocation.on_decision(Decision(held, "SKU-A", 2, HoldState.RESERVED, "WH-SG-1", 3)) == []
    assert allocation.on_decision(Decision(short, "SKU-B", 1, HoldState.SHORT, None, 0)) == []
    assert allocation.outcome is Outcome.PARTIAL


@pytest.mark.parametrize(("policy", "outcome", "held"), [(ShortPolicy.BACKORDER, Outcome.BACKORDERED, 2),
                                                           (ShortPolicy.PARTIAL, Outcome.PARTIAL, 2)])  # fmt: skip
def test_backorder_and_partial_keep_what_was_reserved(policy: ShortPolicy, outcome: Outcome, held: int) -> None:
    pipe = Pipeline(seed=3, policy=policy)
    pipe.load("SKU-A", 5)
    pipe.load("SKU-B", 0)
    pipe.order(_order("lazada", 1, [("SKU-A", 2), ("SKU-B", 1)]))
    pipe.drain()
    assert pipe.allocations["t1:lazada:1"].outcome is outcome
    assert sum(r.reserved for r in pipe.stock["SKU-A"].rows.values()) == held


def test_shipping_takes_units_off_hand_once_even_if_the_shipped_state_is_delivered_twice() -> None:
    pipe = Pipeline(seed=4)
    pipe.load("SKU-A", 2)
    pipe.order(_order("pos", 1, [("SKU-A", 2)]))
    pipe.drain()
    for _ in range(2):
        pipe.order(_order("pos", 1, [("SKU-A", 2)], OrderStatus.SHIPPED))
        pipe.drain()
    assert sum(r.on_hand for r in pipe.stock["SKU-A"].rows.values()) == 4
    assert sum(r.reserved for r in pipe.stock["SKU-A"].rows.values()) == 0


def _unpaid(n: int, created_ms: int = 1_000) -> OrderEvent:
    order = _order("lazada", n, [("SKU-A", 2), ("SKU-B", 1)], OrderStatus.PENDING_PAYMENT)
    return order.model_copy(update={"created_ms": created_ms})


def test_an_unpaid_order_releases_its_holds_once_at_its_deadline() -> None:
    allocation = Allocation("t1:lazada:1")
    reserves = allocation.on_order(_unpaid(1), unpaid_hold_ms=60_000)
    assert {c.expires_at_ms for c in reserves} == {61_000}, "the inventory sees when each hold lapses"
    assert allocation.expire(60_999) == []
    released = allocation.expire(61_000)
    assert [(c.verb, c.cause) for c in released] == [(Verb.RELEASE, "expire")] * 2
    assert allocation.outcome is Outcome.EXPIRED
    assert allocation.expire(99_000) == [], "a second check releases nothing"
    assert Allocation.from_bytes(allocation.to_bytes()) == allocation


def test_payment_before_the_deadline_keeps_the_holds() -> None:
    allocation = Allocation("t1:lazada:2")
    allocation.on_order(_unpaid(2), unpaid_hold_ms=60_000)
    paid = _order("lazada", 2, [("SKU-A", 2), ("SKU-B", 1)], OrderStatus.PAID)
    assert {c.verb for c in allocation.on_order(paid, unpaid_hold_ms=60_000)} == {Verb.PAY}
    assert allocation.expires_at_ms is None
    assert allocation.expire(10**12) == []


def test_a_rejected_unpaid_order_has_nothing_left_to_expire() -> None:
    allocation = Allocation("t1:lazada:3")
    allocation.on_order(_unpaid(3), unpaid_hold_ms=60_000)
    held, short = sorted(allocation.lines)
    allocation.on_decision(Decision(held, "SKU-A", 2, HoldState.RESERVED, "WH-SG-1", 0))
    assert [c.verb for c in allocation.on_decision(Decision(short, "SKU-B", 1, HoldState.SHORT, None, 0))] == [
        Verb.RELEASE,
        Verb.RELEASE,
    ]
    assert allocation.expire(10**12) == []
    assert allocation.outcome is Outcome.REJECTED


def test_an_order_first_seen_paid_never_expires() -> None:
    allocation = Allocation("t1:lazada:4")
    allocation.on_order(_order("lazada", 4, [("SKU-A", 1)]), unpaid_hold_ms=1)
    assert allocation.expires_at_ms is None


def test_pay_and_ship_go_out_once_per_order_not_with_every_later_status() -> None:
    """Each command is a Kafka record: delivered/completed after shipped repeat nothing."""
    allocation = Allocation("t1:shopee:8")
    lines = [("SKU-A", 2), ("SKU-B", 1)]
    assert [c.verb for c in allocation.on_order(_order("shopee", 8, lines, OrderStatus.PENDING_PAYMENT))] == [
        Verb.RESERVE,
        Verb.RESERVE,
    ]
    assert allocation.on_order(_order("shopee", 8, lines, OrderStatus.PROCESSING)) == []
    shipped = allocation.on_order(_order("shopee", 8, lines, OrderStatus.SHIPPED))
    assert sorted(c.verb.value for c in shipped) == ["pay", "pay", "ship", "ship"]  # never paid before: both
    assert allocation.on_order(_order("shopee", 8, lines, OrderStatus.DELIVERED)) == []
    assert allocation.on_order(_order("shopee", 8, lines, OrderStatus.COMPLETED)) == []


def test_a_rejected_order_paid_later_sends_no_pay_for_holds_that_hold_nothing() -> None:
    allocation = Allocation("t1:shopee:9")
    lines = [("SKU-A", 1)]
    allocation.on_order(_order("shopee", 9, lines, OrderStatus.PENDING_PAYMENT))
    (hold,) = allocation.lines
    allocation.on_decision(Decision(hold, "SKU-A", 1, HoldState.SHORT, None, 0))
    assert allocation.outcome is Outcome.REJECTED
    assert allocation.on_order(_order("shopee", 9, lines, OrderStatus.PAID)) == []
    assert allocation.on_order(_order("shopee", 9, lines, OrderStatus.SHIPPED)) == []


@pytest.mark.parametrize("ship_reached_stock_first", [True, False])
def test_a_rejected_order_the_channel_then_ships_asks_the_stock_what_left(ship_reached_stock_first: bool) -> None:
    """After a crash the new worker can decide an order before it re-reads its shipped status.

    The crashed worker had already sent the ship: if it reached the stock before the rejection's
    release, the units left with the parcel, and the order is partial, not rejected.
    """
    stock = SkuStock("SKU-A")
    stock.snapshot("load", "WH-SG-1", 5, 1)
    lines = [("SKU-A", 2), ("SKU-B", 1)]
    allocation = Allocation("t1:lazada:3")
    allocation.on_order(_order("lazada", 3, lines, OrderStatus.PAID))
    held, short = sorted(allocation.lines)
    reserved, _ = stock.reserve(held, 2, ("WH-SG-1",))
    if ship_reached_stock_first:
        stock.ship(held)  # sent by the worker that crashed, which had seen the shipped status
    allocation.on_decision(reserved)
    released = allocation.on_decision(Decision(short, "SKU-B", 1, HoldState.SHORT, None, 0))
    assert allocation.outcome is Outcome.REJECTED
    for command in released:
        if command.sku == "SKU-A":
            stock.release(command.hold_id, command.cause)
    asked = allocation.on_order(_order("lazada", 3, lines, OrderStatus.SHIPPED))
    assert [(c.verb, c.hold_id) for c in asked] == [(Verb.RESERVE, held)]  # the short line held nothing
    answer, moves = stock.reserve(held, 2, ("WH-SG-1",))
    assert moves == []  # asking takes nothing
    assert allocation.on_decision(answer) == []
    if ship_reached_stock_first:
        assert allocation.outcome is Outcome.PARTIAL
        assert allocation.decisions[held] is HoldState.SHIPPED
        assert stock.rows["WH-SG-1"].on_hand == 3
    else:
        assert allocation.outcome is Outcome.REJECTED
        assert stock.rows["WH-SG-1"].on_hand == 5
    assert allocation.on_order(_order("lazada", 3, lines, OrderStatus.DELIVERED)) == []  # asked once


def test_an_order_expired_before_its_payment_was_read_again_is_allocated_if_its_parcel_left() -> None:
    """A restarted worker's expiry timer can run before it re-reads the payment in its backlog."""
    stock = SkuStock("SKU-A")
    stock.snapshot("load", "WH-SG-1", 5, 1)
    lines = [("SKU-A", 2)]
    allocation = Allocation("t1:tiktok:4")
    allocation.on_order(_order("tiktok", 4, lines, OrderStatus.PENDING_PAYMENT), unpaid_hold_ms=1_000)
    (held,) = allocation.lines
    reserved, _ = stock.reserve(held, 2, ("WH-SG-1",))
    allocation.on_decision(reserved)
    stock.pay(held)
    stock.ship(held)  # the crashed worker saw paid and shipped
    assert allocation.outcome is Outcome.ALLOCATED
    expiry = allocation.expire(now_ms=10**13)
    assert allocation.outcome is Outcome.EXPIRED
    assert stock.release(expiry[0].hold_id, "expire") == []  # already shipped: refused
    assert allocation.on_order(_order("tiktok", 4, lines, OrderStatus.PAID)) == []
    asked = allocation.on_order(_order("tiktok", 4, lines, OrderStatus.SHIPPED))
    assert [c.verb for c in asked] == [Verb.RESERVE]
    assert allocation.outcome is Outcome.PENDING
    assert Allocation.from_bytes(allocation.to_bytes()) == allocation  # waiting survives a restart
    allocation.on_decision(reserved)  # the first answer, read again: not what was asked
    assert allocation.outcome is Outcome.PENDING
    answer, _ = stock.reserve(held, 2, ("WH-SG-1",))
    allocation.on_decision(answer)
    assert allocation.outcome is Outcome.ALLOCATED
    assert allocation.asked is None
    assert allocation.decisions[held] is HoldState.SHIPPED


def test_a_line_whose_first_answer_is_still_on_its_way_is_asked_about_too() -> None:
    """Its first answer predates the expiry's release: only the answer to the question says what it is."""
    lines = [("SKU-A", 1), ("SKU-B", 1)]
    allocation = Allocation("t1:lazada:5")
    allocation.on_order(_order("lazada", 5, lines, OrderStatus.PENDING_PAYMENT), unpaid_hold_ms=1_000)
    first, second = sorted(allocation.lines)
    allocation.on_decision(Decision(first, "SKU-A", 1, HoldState.RESERVED, "WH-SG-1", 3))
    allocation.expire(now_ms=10**13)  # expired before the second answer came
    assert allocation.outcome is Outcome.EXPIRED
    asked = allocation.on_order(_order("lazada", 5, lines, OrderStatus.SHIPPED))
    assert [c.hold_id for c in asked] == [first, second]
    allocation.on_decision(Decision(second, "SKU-B", 1, HoldState.RESERVED, "WH-SG-2", 0))  # the first answer
    allocation.on_decision(Decision(first, "SKU-A", 1, HoldState.SHIPPED, "WH-SG-1", 3))
    assert allocation.outcome is Outcome.PENDING
    allocation.on_decision(Decision(second, "SKU-B", 1, HoldState.RELEASED, "WH-SG-2", 1))
    assert allocation.outcome is Outcome.PARTIAL  # one line left with the parcel, the other went back on sale
    assert Allocation.from_bytes(allocation.to_bytes()) == allocation


def test_a_line_short_all_along_answers_short_to_the_question() -> None:
    lines = [("SKU-A", 1)]
    allocation = Allocation("t1:lazada:6")
    allocation.on_order(_order("lazada", 6, lines, OrderStatus.PENDING_PAYMENT), unpaid_hold_ms=1_000)
    allocation.expire(now_ms=10**13)  # before any answer
    (hold,) = allocation.lines
    assert [c.hold_id for c in allocation.on_order(_order("lazada", 6, lines, OrderStatus.SHIPPED))] == [hold]
    allocation.on_decision(Decision(hold, "SKU-A", 1, HoldState.SHORT, None, 0))
    assert allocation.outcome is Outcome.EXPIRED
    assert allocation.asked is None
