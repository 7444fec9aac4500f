"""What-if replay (oms replay): recorded decisions routed again under other rules, compared with what happened."""

from __future__ import annotations

import datetime as dt
from typing import Any

from oms.routing_ops import comparison_table, latest, replay
from schemas.order import Market
from streams import routing
from streams.routing_records import decision_of, step_record
from streams.routing_rules import Rules, load_rules, parse_rules, sample_rules_path
from streams.routing_state import Step

# Tuesday 2026-12-01 10:00 in Singapore, 09:00 in Jakarta: before every cut-off
NOW = int(dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC).timestamp() * 1000)


def _request(key: str, market: Market, postcode: str, held: list[str], cod: bool = False) -> routing.Request:
    currency = {Market.SG: "SGD", Market.ID: "IDR"}[market]
    lines = tuple(routing.Line(f"{key}|{n}", f"SKU-{n}", 1, node) for n, node in enumerate(held))
    return routing.Request(key, "t", "shopee", market, postcode, None, cod, 10_000, currency, None, NOW, lines)


def _record(request: routing.Request, rules: Rules, at: int, seq: int = 1) -> dict[str, Any]:
    decision = routing.route(request, rules, routing.Workload(), at)
    return step_record(Step(seq, decision.outcome, decision, request, summary=decision.summary()))


def test_replay_compares_cost_holds_and_splits_under_other_rules() -> None:
    rules = load_rules(sample_rules_path())
    records = [
        _record(_request("t:shopee:1", Market.SG, "238859", ["SG-JUR"]), rules, NOW),
        _record(_request("t:shopee:2", Market.ID, "12110", ["ID-CKR", "ID-SBY"]), rules, NOW + 1),
        _record(_request("t:shopee:3", Market.SG, "520123", ["SG-TAMP"]), rules, NOW - 60_000),  # before the window
    ]
    assert [r["outcome"] for r in records] == ["routed", "held", "routed"]
    text = sample_rules_path().read_text()
    cheaper = text.replace(
        "cost = { base_minor = 250, per_kg_minor = 100 }", "cost = { base_minor = 150, per_kg_minor = 100 }"
    )
    whatif = parse_rules(cheaper.replace('split = "hold"', 'split = "allow"'), "what-if")

    result = replay(records, whatif, NOW, NOW + 10)

    sg_before, sg_after = result.markets["SG"]
    assert (sg_before.orders, sg_after.orders) == (1, 1), "only orders first decided inside the window"
    assert sg_before.cost["SGD"] - sg_after.cost["SGD"] == 100  # SingPost's base rate, SGD 1.00 cheaper
    id_before, id_after = result.markets["ID"]
    assert (id_before.held, id_after.held) == (1, 0)
    assert id_before.holds == {"split_needed": 1} and not id_after.holds
    assert (id_before.split, id_after.split) == (0, 1)
    table = "\n".join(comparison_table(result))
    assert "SG: shipping cost -SGD 1.00" in table and "split_needed" in table


def test_replay_compares_with_the_newest_decision_and_routes_a_released_order_as_released() -> None:
    rules = load_rules(sample_rules_path())
    request = _request("t:shopee:9", Market.SG, "238859", ["SG-ORCH"], cod=True)
    request = routing.Request(**{**request.__dict__, "total_minor": 40_000})  # above the SGD 300 COD review
    held = _record(request, rules, NOW)
    assert held["outcome"] == "held"
    decision = routing.route(request, rules, routing.Workload(), NOW + 5, released_by="ops")
    released = step_record(Step(2, decision.outcome, decision, request, actor="ops", summary=decision.summary()))
    assert released["outcome"] == "routed"
    assert latest(iter([released, held]))["t:shopee:9"]["decision_id"].endswith("#2")

    result = replay([held, released], rules, NOW, NOW + 10)

    before, after = result.markets["SG"]
    assert (before.routed, after.routed) == (1, 1), "the operator's release is replayed too"
    assert decision_of(released).shipments == decision.shipments
