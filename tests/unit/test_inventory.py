"""The inventory core under any interleaving of commands, with duplicates and early arrivals.

A hypothesis state machine drives one SKU in three warehouses (and a pre-order SKU with a cap) through
reserve, pay, release, expire, ship, restock, snapshot and delta, re-applies earlier commands at
random, and checks after every step against a deliberately simple model:
- no oversell: a reservation is granted only while reserved <= on_hand + cap;
- reserved is exactly the sum of the held units; shipped units leave on hand once, restocks once;
- a duplicate of any command changes nothing; the ledger's last movement matches each row.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from streams.inventory import Hold, HoldState, Movement, SkuStock

WAREHOUSES = ("WH-A", "WH-B", "WH-C")
holds = st.builds(lambda o, line: f"t:shopee:O{o}|L{line}", st.integers(0, 12), st.integers(0, 1))


class InventoryMachine(RuleBasedStateMachine):
    cap = 0

    @initialize(counts=st.lists(st.integers(0, 8), min_size=3, max_size=3))
    def start(self, counts: list[int]) -> None:
        self.stock = SkuStock("SKU-1", preorder_cap=self.cap)
        self.applied: list[Callable[[], list[Movement]]] = []
        self.ledger: list[Movement] = []
        self.expected_on_hand = dict.fromkeys(WAREHOUSES, 0)
        self.versions = dict.fromkeys(WAREHOUSES, -1)
        self.deltas: set[str] = set()
        self.shipped: dict[str, int] = {}
        self.restocked: set[str] = set()
        for i, (warehouse, count) in enumerate(zip(WAREHOUSES, counts, strict=True)):
            self._do(lambda w=warehouse, c=count, i=i: self.stock.snapshot(f"init-{i}", w, c, 0))
            self.expected_on_hand[warehouse] = count
            self.versions[warehouse] = 0

    def _do(self, command: Callable[[], list[Movement]]) -> list[Movement]:
        """Apply; remember it for the duplicate rule only if it acted (a restock before its hold shipped is
        ignored, and the same restock after the ship is its first effective delivery, not a duplicate)."""
        before = (copy.deepcopy(self.stock.rows), copy.deepcopy(every_hold(self.stock)))
        moves = self._account(command())
        self.settle()
        if before != (self.stock.rows, every_hold(self.stock)):
            self.applied.append(command)
        return moves

    def settle(self) -> None:
        """What the agent does between commands (nothing here; see RetiringInventoryMachine)."""

    def _account(self, moves: list[Movement]) -> list[Movement]:
        """The model's view of what left and came back, from the movements themselves."""
        for move in moves:
            if move.cause == "ship":
                assert move.ref not in self.shipped, "units left on hand twice for one hold"
                self.shipped[move.ref] = move.on_hand[0] - move.on_hand[1]
                self.expected_on_hand[move.warehouse] -= self.shipped[move.ref]
            elif move.cause == "restock":
                assert move.ref in self.shipped and move.ref not in self.restocked, "restock once, after shipping"
                self.restocked.add(move.ref)
                self.expected_on_hand[move.warehouse] += self.shipped[move.ref]
        self.ledger.extend(moves)
        return moves

    @rule(hold=holds, quantity=st.integers(1, 5), order=st.permutations(WAREHOUSES), ttl=st.none() | st.integers(1, 50))
    def reserve(self, hold: str, quantity: int, order: list[str], ttl: int | None) -> None:
        known = copy.deepcopy(every_hold(self.stock).get(hold))
        decision, moves = self.stock.reserve(hold, quantity, tuple(order), ttl)
        self._account(moves)
        self.settle()
        self.applied.append(lambda: self.stock.reserve(hold, quantity, tuple(order), ttl)[1])
        if known is not None:
            assert decision.state is known.state and moves == [], "a duplicate reserve gets the first answer"
            return
        if decision.state in (HoldState.RESERVED, HoldState.SHIPPED, HoldState.RETURNED):  # granted (early ship)
            assert decision.warehouse is not None
            row = self.stock.rows[decision.warehouse]
            assert row.reserved <= row.on_hand + self.cap, "a reservation was granted beyond stock: oversell"
            for earlier in order[: order.index(decision.warehouse)]:
                assert self.stock.rows[earlier].available(self.cap) < quantity, "a preferred warehouse had stock"
        else:
            assert decision.state is HoldState.SHORT
            free = [w for w in WAREHOUSES if self.stock.rows[w].available(self.cap) >= quantity]
            assert not free, f"short while {free} had stock"

    @rule(hold=holds)
    def pay(self, hold: str) -> None:
        self._do(lambda: self.stock.pay(hold))

    @rule(hold=holds)
    def release(self, hold: str) -> None:
        self._do(lambda: self.stock.release(hold, "cancel"))

    @rule(now=st.integers(0, 60))
    def expire(self, now: int) -> None:
        self._do(lambda: self.stock.expire(now))

    @rule(hold=holds)
    def ship(self, hold: str) -> None:
        self._do(lambda: self.stock.ship(hold))

    @rule(hold=holds)
    def restock(self, hold: str) -> None:
        self._do(lambda: self.stock.restock(hold))

    @rule(warehouse=st.sampled_from(WAREHOUSES), count=st.integers(0, 12), version=st.integers(0, 6))
    def snapshot(self, warehouse: str, count: int, version: int) -> None:
        self._do(lambda: self.stock.snapshot(f"snap-{warehouse}-{version}", warehouse, count, version))
        if version > self.versions[warehouse]:
            self.versions[warehouse] = version
            self.expected_on_hand[warehouse] = count

    @rule(warehouse=st.sampled_from(WAREHOUSES), ident=st.integers(0, 8), delta=st.integers(-4, 8))
    def delta(self, warehouse: str, ident: int, delta: int) -> None:
        adjustment = f"delta-{warehouse}-{ident}"
        self._do(lambda: self.stock.delta(adjustment, warehouse, delta, "receipt" if delta >= 0 else "damage"))
        if adjustment not in self.deltas:
            self.deltas.add(adjustment)
            self.expected_on_hand[warehouse] += delta

    @rule(data=st.data())
    def duplicate_of_an_earlier_command_changes_nothing(self, data: Any) -> None:
        if not self.applied:
            return
        command = data.draw(st.sampled_from(self.applied))
        before, held_before = copy.deepcopy(self.stock.rows), copy.deepcopy(every_hold(self.stock))
        self._account(command())
        self.settle()
        held_after = every_hold(self.stock)
        if before != self.stock.rows or held_before != held_after:
            # expire is the one command whose repeat may act (time-based, not id-based): only new expiries
            changed = [h for k, h in held_after.items() if held_before.get(k) != h]
            assert all(h.state is HoldState.RELEASED for h in changed), changed

    @invariant()
    def the_state_survives_its_table_encoding(self) -> None:
        if hasattr(self, "stock"):
            assert SkuStock.from_bytes(self.stock.to_bytes()) == self.stock

    @invariant()
    def reserved_is_the_sum_of_held_units(self) -> None:
        if not hasattr(self, "stock"):
            return
        for warehouse, row in self.stock.rows.items():
            held = sum(
                h.quantity
                for h in self.stock.holds.values()
                if h.state is HoldState.RESERVED and h.warehouse == warehouse
            )
            assert row.reserved == held

    @invariant()
    def on_hand_follows_counts_receipts_shipments_and_restocks_exactly_once(self) -> None:
        if not hasattr(self, "stock"):
            return
        assert {w: r.on_hand for w, r in self.stock.rows.items()} == self.expected_on_hand

    @invariant()
    def the_ledger_ends_where_each_row_is(self) -> None:
        if not hasattr(self, "stock"):
            return
        last: dict[str, Movement] = {}
        for move in self.ledger:
            last[move.warehouse] = move
        for warehouse, move in last.items():
            row = self.stock.rows[warehouse]
            assert (move.on_hand[1], move.reserved[1]) == (row.on_hand, row.reserved)


class PreorderInventoryMachine(InventoryMachine):
    cap = 3


class PastStore:
    """A SKU's retired holds, as the agent keeps them (streams/app.py ``PastHolds``): encoded per hold."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, hold_id: str) -> Hold | None:
        raw = self.data.get(hold_id)
        return None if raw is None else Hold.of(hold_id, orjson.loads(raw))

    def put(self, hold: Hold) -> None:
        self.data[hold.hold_id] = orjson.dumps(hold.fields())


def every_hold(stock: SkuStock) -> dict[str, Hold]:
    """The holds in the value and the retired ones: what the SKU answers for."""
    past = stock.past
    retired = {k: h for k in past.data if (h := past.get(k)) is not None} if isinstance(past, PastStore) else {}
    return {**retired, **stock.holds}


class RetiringInventoryMachine(InventoryMachine):
    """The same rules, with the agent's life between commands: the holds that hold no units retired to a
    store of their own, then the value stored and loaded again. Every property above must still hold."""

    def settle(self) -> None:
        past = self.stock.past if isinstance(self.stock.past, PastStore) else PastStore()
        for hold in self.stock.retire():
            past.put(hold)
        assert all(h.state is HoldState.RESERVED for h in self.stock.holds.values())
        self.stock = SkuStock.from_bytes(self.stock.to_bytes())
        self.stock.past = past


TestInventory = InventoryMachine.TestCase
TestInventory.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestPreorderInventory = PreorderInventoryMachine.TestCase
TestPreorderInventory.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestRetiringInventory = RetiringInventoryMachine.TestCase
TestRetiringInventory.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_five_channels_cannot_sell_one_warehouse_more_than_it_has() -> None:
    stock = SkuStock("SKU-HOT")
    stock.snapshot("wms-1", "WH-A", 10, 1)
    granted = 0
    for channel in ("shopee", "lazada", "tiktok", "shopify", "pos"):
        for order in range(5):
            decision, _ = stock.reserve(f"t:{channel}:{order}|1", 1, ("WH-A",))
            granted += decision.state is HoldState.RESERVED
    assert granted == 10
    assert stock.rows["WH-A"].available() == 0


def test_a_cancel_that_arrives_before_its_reservation_wins() -> None:
    stock = SkuStock("SKU-1")
    stock.snapshot("wms-1", "WH-A", 5, 1)
    stock.release("t:lazada:9|1", "cancel")
    decision, moves = stock.reserve("t:lazada:9|1", 2, ("WH-A",))
    assert decision.state is HoldState.RELEASED and moves == []
    assert stock.rows["WH-A"].reserved == 0


def test_an_unpaid_reservation_expires_but_a_paid_one_does_not_even_if_paid_first() -> None:
    stock = SkuStock("SKU-1")
    stock.snapshot("wms-1", "WH-A", 5, 1)
    stock.reserve("t:lazada:1|1", 2, ("WH-A",), expires_at_ms=1_000)
    stock.pay("t:lazada:2|1")  # payment news before the reservation
    stock.reserve("t:lazada:2|1", 2, ("WH-A",), expires_at_ms=1_000)
    moves = stock.expire(2_000)
    assert [(m.ref, m.cause) for m in moves] == [("t:lazada:1|1", "expire")]
    assert stock.rows["WH-A"].reserved == 2


def test_an_older_snapshot_never_overwrites_a_newer_count() -> None:
    stock = SkuStock("SKU-1")
    stock.snapshot("wms-2", "WH-A", 7, 2)
    assert stock.snapshot("wms-1", "WH-A", 100, 1) == []
    assert stock.rows["WH-A"].on_hand == 7


def test_hourly_counts_for_a_year_do_not_grow_the_skus_value_and_a_repeated_delta_still_applies_once() -> None:
    stock = SkuStock("SKU-1")
    stock.snapshot("wms-0", "WH-A", 10, 1)
    size = len(stock.to_bytes())
    for hour in range(1, 24 * 365):  # a WMS that counts every hour: the version decides, no id is kept
        stock.snapshot(f"wms-{hour}", "WH-A", 10 + hour % 3, hour + 1)
    assert len(stock.to_bytes()) <= size + 8
    assert stock.snapshot("wms-5", "WH-A", 99, 6) == []  # an old count repeated: still refused by its version
    assert len(stock.delta("rcv-1", "WH-A", 5, "receipt")) == 1
    assert stock.delta("rcv-1", "WH-A", 5, "receipt") == []  # a delta has no version: its id is kept


def test_damage_below_what_is_held_stops_new_reservations_and_reports_the_shortfall() -> None:
    stock = SkuStock("SKU-1")
    stock.snapshot("wms-1", "WH-A", 4, 1)
    stock.reserve("t:pos:1|1", 3, ("WH-A",))
    stock.delta("dmg-1", "WH-A", -2, "damage")
    assert stock.short_by("WH-A") == 1
    decision, _ = stock.reserve("t:pos:2|1", 1, ("WH-A",))
    assert decision.state is HoldState.SHORT


def test_ship_and_restock_that_arrive_before_their_reserve_apply_once_when_it_lands() -> None:
    stock = SkuStock("SKU-1")
    stock.snapshot("wms-1", "WH-A", 5, 1)
    assert stock.restock("t:shopee:7|1") == [] and stock.ship("t:shopee:7|1") == []
    _, moves = stock.reserve("t:shopee:7|1", 2, ("WH-A",))
    assert [m.cause for m in moves] == ["reserve", "ship", "restock"]
    assert (stock.rows["WH-A"].on_hand, stock.rows["WH-A"].reserved) == (5, 0)
    assert stock.ship("t:shopee:7|1") == [] and stock.restock("t:shopee:7|1") == []


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_non_positive_quantity_is_a_bug_of_the_caller(quantity: int) -> None:
    with pytest.raises(ValueError, match="quantity must be positive"):
        SkuStock("SKU-1").reserve("h", quantity, ("WH-A",))


def test_a_preference_is_tried_in_order_then_any_warehouse_but_never_an_excluded_one() -> None:
    stock = SkuStock("SKU-1")
    for ref, warehouse, units in (("c1", "SG-ORCH", 1), ("c2", "SG-JUR", 5), ("c3", "LEGACY", 9), ("c4", "PH-CEB", 50)):
        stock.snapshot(ref, warehouse, units, 1)
    preference = ("SG-ORCH", "SG-JUR", "*", "!PH-CEB")
    held = [stock.reserve(f"t:shopee:{n}|1", 1, preference)[0] for n in range(16)]
    # the ranked nodes first, in order; then the warehouse the rules do not know; never the excluded one
    assert [d.warehouse for d in held[:6]] == ["SG-ORCH"] + ["SG-JUR"] * 5
    assert {d.warehouse for d in held[6:15]} == {"LEGACY"}
    assert held[15].state is HoldState.SHORT
    assert stock.rows["PH-CEB"].reserved == 0
