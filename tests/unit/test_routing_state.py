"""One order's routing stage (streams/routing_state.py) and its Avro records (streams/routing_records.py).

Inputs arrive in any order and any number of times; each decision is emitted once, numbered per order.
The rules are the packaged sample; the clock is Tuesday 2026-12-01 02:00 UTC (10:00 in Singapore).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from schemas.order import Address, Market, OrderEvent, OrderLine, OrderStatus, PaymentMethod, RawRef
from streams import routing_records
from streams.routing import WHOLE, Request, Workload
from streams.routing_rules import load_rules, sample_rules_path
from streams.routing_state import Action, OrderRouting, Step, order_fields, request_of_order

RULES = load_rules(sample_rules_path())
NOW = int(dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC).timestamp() * 1000)
KEY = "t1:shopee:1001"


def _order(
    status: OrderStatus = OrderStatus.PAID,
    *,
    cod: bool = False,
    total: int = 10_000,
    postcode: str | None = "600123",
    city: str | None = "Singapore",
    skus: tuple[str, ...] = ("SKU-A", "SKU-B"),
) -> OrderEvent:
    return OrderEvent(
        event_id=f"{KEY}:{status}", tenant="t1", channel="shopee", market=Market.SG, shop_id="s", order_key=KEY,
        channel_order_id="1001", status=status, channel_status=status.value,
        payment_method=PaymentMethod.COD if cod else PaymentMethod.CARD, is_cod=cod, currency="SGD",
        total_minor=total,
        lines=tuple(OrderLine(line_id=str(i), sku=sku, quantity=1, unit_price_minor=500, paid_price_minor=500)
                    for i, sku in enumerate(skus)),
        shipping=Address(country=Market.SG, city=city, postcode=postcode), ship_by_ms=NOW + 86_400_000,
        created_ms=NOW - 60_000, event_time_ms=NOW - 60_000 + status.rank, ingest_time_ms=NOW - 50_000,
        raw=RawRef(topic="raw", partition=0, offset=1),
    )  # fmt: skip


def _allocation(
    outcome: str = "allocated", warehouses: tuple[str | None, ...] = ("SG-JUR", "SG-JUR"), state: str = "reserved"
) -> dict[str, Any]:
    """An allocations.v1 record (v2 fields); a line with no warehouse is short."""
    lines = [
        {
            "hold_id": f"{KEY}|{i}",
            "sku": sku,
            "quantity": 1,
            "state": state if warehouse else "short",
            "warehouse": warehouse,
        }
        for i, (sku, warehouse) in enumerate(zip(("SKU-A", "SKU-B"), warehouses, strict=True))
    ]
    return {"order_key": KEY, "outcome": outcome, "policy": "reject", "lines": lines}


def _action(action_id: str, action: str, actor: str = "ops", note: str = "checked with the buyer") -> Action:
    return Action(action_id, KEY, action, actor, note, NOW)


def _step(state: OrderRouting, workload: Workload, action: Action | None = None) -> Step | None:
    return state.step(RULES, workload, NOW, WHOLE, action)


def _held_for_review() -> tuple[OrderRouting, Workload, Step]:
    state, workload = OrderRouting(KEY), Workload()
    state.on_order(_order(cod=True, total=35_000))  # SG: COD above 300.00 waits for a call-back
    state.on_allocation(_allocation())
    held = _step(state, workload)
    assert held is not None
    return state, workload, held


# ------------------------------------------------------------------------------------- routing


def test_a_paid_order_routes_once_when_its_allocation_arrives() -> None:
    state, workload = OrderRouting(KEY), Workload()
    state.on_order(_order())
    assert _step(state, workload) is None, "no stock held yet"
    state.on_allocation(_allocation())
    step = _step(state, workload)
    assert step is not None and step.decision is not None
    assert (step.seq, step.outcome, step.actor) == (1, "routed", None)
    assert [(s.node, s.carrier, s.holds) for s in step.decision.shipments] == [
        ("SG-JUR", "singpost-sg", (f"{KEY}|0", f"{KEY}|1"))
    ]
    assert step.summary == step.decision.summary() and step.summary.startswith("SG-JUR -> singpost-sg")
    assert step.request.postcode == "600123" and step.request.market is Market.SG
    assert workload.used_day("SG-JUR", "2026-12-01") == 1, "step takes the node's capacity"
    assert (state.last, state.seq) == ("routed", 1)


def test_a_duplicate_input_emits_nothing_and_takes_no_more_capacity() -> None:
    state, workload = OrderRouting(KEY), Workload()
    state.on_order(_order())
    state.on_allocation(_allocation())
    assert _step(state, workload) is not None
    state.on_order(_order())
    assert _step(state, workload) is None
    state.on_allocation(_allocation())
    assert _step(state, workload) is None
    state.on_order(_order(OrderStatus.PROCESSING))  # the order moves on: still nothing new
    assert _step(state, workload) is None
    assert workload.used_day("SG-JUR", "2026-12-01") == 1
    assert state.seq == 1


def test_the_allocation_may_arrive_before_the_order() -> None:
    state, workload = OrderRouting(KEY), Workload()
    state.on_allocation(_allocation())
    assert _step(state, workload) is None, "no address yet"
    state.on_order(_order())
    step = _step(state, workload)
    assert step is not None and step.outcome == "routed"


def test_an_unpaid_order_waits_for_payment() -> None:
    state, workload = OrderRouting(KEY), Workload()
    state.on_order(_order(OrderStatus.PENDING_PAYMENT))
    state.on_allocation(_allocation())
    assert _step(state, workload) is None
    assert state.last is None and workload == Workload()
    state.on_order(_order(OrderStatus.PAID))
    step = _step(state, workload)
    assert step is not None and (step.seq, step.outcome) == (1, "routed")


def test_an_order_the_channel_already_shipped_is_still_routed() -> None:
    state = OrderRouting(KEY)
    state.on_order(_order(OrderStatus.SHIPPED))
    state.on_allocation(_allocation(state="shipped"))
    step = _step(state, Workload())
    assert step is not None and step.outcome == "routed"


def test_only_allocated_or_partial_stock_is_routed() -> None:
    for outcome in ("pending", "backordered", "rejected"):
        state = OrderRouting(KEY)
        state.on_order(_order())
        state.on_allocation(_allocation(outcome))
        assert _step(state, Workload()) is None, outcome


def test_a_partial_allocation_ships_only_the_reserved_line() -> None:
    state = OrderRouting(KEY)
    state.on_order(_order())
    state.on_allocation(_allocation("partial", ("SG-TAMP", None)))
    assert [line["warehouse"] for line in state.lines] == ["SG-TAMP", None]
    step = _step(state, Workload())
    assert step is not None and step.decision is not None
    assert [(s.node, s.holds) for s in step.decision.shipments] == [("SG-TAMP", (f"{KEY}|0",))]


def test_a_released_line_keeps_no_warehouse() -> None:
    state = OrderRouting(KEY)
    state.on_allocation(_allocation(state="released"))
    assert [line["warehouse"] for line in state.lines] == [None, None]


def test_lines_in_two_nodes_of_a_splitting_market_ship_in_two_parcels() -> None:
    state = OrderRouting(KEY)
    state.on_order(_order())
    state.on_allocation(_allocation(warehouses=("SG-TAMP", "SG-JUR")))
    step = _step(state, Workload())
    assert step is not None and step.decision is not None
    assert [s.node for s in step.decision.shipments] == ["SG-JUR", "SG-TAMP"]
    assert step.summary.startswith("split: ")


# ------------------------------------------------------------------------------ operator actions


def test_a_held_order_is_routed_by_a_release_once() -> None:
    state, workload, held = _held_for_review()
    assert held.decision is not None
    assert (held.seq, held.outcome, [h.code for h in held.decision.holds]) == (1, "held", ["cod_review"])
    assert state.holds == ["cod_review"]
    assert workload == Workload(), "a held order takes no capacity"
    assert _step(state, workload) is None, "held stays held without an operator"

    release = _action("a1", "release")
    step = _step(state, workload, release)
    assert step is not None and step.decision is not None
    assert (step.seq, step.outcome, step.actor, step.note) == (2, "routed", "ops", "checked with the buyer")
    assert step.decision.released_by == "ops"
    assert [s.carrier for s in step.decision.shipments] == ["ninjavan-sg"]  # jnt-sg's COD cap is 300.00
    assert state.holds == []
    assert _step(state, workload, release) is None, "the same action again"
    assert _step(state, workload, _action("a2", "release")) is None, "a release of a routed order does nothing"
    assert workload.used_day("SG-JUR", "2026-12-01") == 1


def test_a_release_cannot_waive_the_cod_cap() -> None:
    state, workload = OrderRouting(KEY), Workload()
    state.on_order(_order(cod=True, total=60_000))
    state.on_allocation(_allocation())
    first = _step(state, workload)
    assert first is not None and first.decision is not None
    assert {h.code for h in first.decision.holds} == {"cod_review", "cod_over_cap"}
    again = _step(state, workload, _action("a1", "release"))
    assert again is not None and again.decision is not None
    assert (again.seq, again.outcome, again.decision.released_by) == (2, "held", "ops")
    assert state.holds == ["cod_over_cap"]
    assert _step(state, workload, _action("a1", "release")) is None, "the same action id again: applied once"
    third = _step(state, workload, _action("a2", "release"))  # another release: decided again, still held
    assert third is not None and (third.seq, third.outcome) == (3, "held")


def test_a_cancel_action_cancels_a_held_order_once() -> None:
    state, workload, _ = _held_for_review()
    cancel = _action("c1", "cancel", actor="alice", note="buyer unreachable")
    step = _step(state, workload, cancel)
    assert step is not None
    assert (step.seq, step.outcome, step.decision, step.actor) == (2, "cancelled", None, "alice")
    assert step.summary == "cancelled: buyer unreachable"
    assert _step(state, workload, cancel) is None
    assert _step(state, workload, _action("r1", "release")) is None, "nothing follows a cancel"
    assert _step(state, workload) is None


def test_a_cancel_action_without_a_note_says_who_cancelled() -> None:
    state, workload, _ = _held_for_review()
    step = _step(state, workload, _action("c1", "cancel", note=""))
    assert step is not None and step.note == "cancelled by an operator"


def test_an_order_cancelled_after_it_was_routed_is_cancelled_once() -> None:
    state, workload = OrderRouting(KEY), Workload()
    state.on_order(_order())
    state.on_allocation(_allocation())
    assert _step(state, workload) is not None
    state.on_order(_order(OrderStatus.CANCELLED))
    step = _step(state, workload)
    assert step is not None
    assert (step.seq, step.outcome, step.actor, step.note) == (2, "cancelled", None, "the order was cancelled")
    state.on_order(_order(OrderStatus.CANCELLED))
    assert _step(state, workload) is None


def test_stock_released_after_a_decision_cancels_it() -> None:
    state, workload, _ = _held_for_review()
    state.on_allocation(_allocation("expired"))
    step = _step(state, workload)
    assert step is not None and (step.outcome, step.note) == ("cancelled", "stock expired")
    assert _step(state, workload) is None


def test_an_order_cancelled_before_any_decision_emits_nothing() -> None:
    state = OrderRouting(KEY)
    state.on_order(_order(OrderStatus.CANCELLED))
    state.on_allocation(_allocation("cancelled"))
    assert _step(state, Workload()) is None


# --------------------------------------------------------------------------------- persistence


def test_state_survives_its_table_encoding() -> None:
    state, workload, _ = _held_for_review()
    restored = OrderRouting.from_bytes(KEY, state.to_bytes())
    assert restored == state
    twin_load = Workload.from_bytes(workload.to_bytes())
    release = _action("a1", "release")
    mine, theirs = _step(state, workload, release), _step(restored, twin_load, release)
    assert mine is not None and theirs is not None
    assert mine == theirs
    assert workload == twin_load
    again = OrderRouting.from_bytes(KEY, restored.to_bytes())
    assert _step(again, twin_load, release) is None, "applied actions are remembered"
    assert OrderRouting.from_bytes(KEY, None) == OrderRouting(KEY)


def test_request_of_an_order_not_yet_held() -> None:
    order = _order(cod=True, total=2500)
    request = request_of_order(order)
    assert [(line.hold_id, line.sku, line.warehouse) for line in request.lines] == [
        (f"{KEY}|0", "SKU-A", None),
        (f"{KEY}|1", "SKU-B", None),
    ]
    assert (request.is_cod, request.total_minor, request.postcode, request.currency) == (True, 2500, "600123", "SGD")
    assert order_fields(order)["market"] == "SG"


# ------------------------------------------------------------------------------------- records


def _released_steps() -> list[Step]:
    state, workload, held = _held_for_review()
    routed = _step(state, workload, _action("a1", "release"))
    assert routed is not None
    return [held, routed]


def test_a_step_survives_its_avro_record_and_rebuilds_the_decision() -> None:
    for step in _released_steps():
        record = routing_records.decode_decision(routing_records.encode_step(step))
        assert step.decision is not None
        assert record["decision_id"] == f"{KEY}#{step.seq}"
        assert (record["order_key"], record["tenant"], record["channel"], record["market"]) == (
            KEY,
            "t1",
            "shopee",
            "SG",
        )
        assert (record["outcome"], record["actor"], record["note"]) == (step.outcome, step.actor, step.note)
        assert record["rules"] == RULES.label
        assert record["summary"] == step.summary
        assert record["currency"] == "SGD"
        assert Request.from_json(record["request"]) == step.request
        assert routing_records.decision_of(record) == step.decision


def test_a_cancelled_step_has_an_empty_decision_record() -> None:
    state, workload, _ = _held_for_review()
    step = _step(state, workload, _action("c1", "cancel", actor="alice"))
    assert step is not None
    record = routing_records.decode_decision(routing_records.encode_step(step))
    assert (record["outcome"], record["actor"], record["rules"]) == ("cancelled", "alice", "")
    assert (record["shipments"], record["holds"], record["passed_over"]) == ([], [], [])
    rebuilt = routing_records.decision_of(record)
    assert (rebuilt.outcome, rebuilt.released_by, rebuilt.shipments) == ("cancelled", None, ())


def test_an_action_survives_its_avro_record() -> None:
    action = routing_records.new_action(KEY, "release", "ops", "ok")
    assert routing_records.decode_action(routing_records.encode_action(action)) == action
    assert len(action.action_id) == 32
    assert routing_records.new_action(KEY, "release", "ops", "ok").action_id != action.action_id


def test_an_action_is_release_or_cancel() -> None:
    with pytest.raises(ValueError, match="release or cancel"):
        routing_records.new_action(KEY, "ship", "ops", "")
