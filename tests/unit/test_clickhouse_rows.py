"""The orders row: ReplacingMergeTree's version must rank lifecycle state before event time."""

from __future__ import annotations

from typing import Any

import orjson

from connectors.raw_producer import sample
from sinks.clickhouse import ORDER_COLUMNS, order_row
from streams.adapters.base import RawInput
from streams.normalize import normalize


def _row(**changes: Any) -> dict[str, Any]:
    body = orjson.loads(sample("shopee_order_detail.json"))
    body["response"]["order_list"][0].update(changes)
    outcome = normalize(RawInput("shopee", orjson.dumps(body), "raw.orders.shopee", 1, 7, 1_795_824_100_000), "t1")
    assert outcome.events, outcome.dead_letter
    return dict(zip(ORDER_COLUMNS, order_row(outcome.events[0]), strict=True))


def test_a_later_lifecycle_state_outranks_an_earlier_state_with_a_newer_timestamp() -> None:
    late_paid = _row(order_status="READY_TO_SHIP", update_time=1_795_999_999)
    early_shipped = _row(order_status="SHIPPED", update_time=1_795_900_000)
    assert early_shipped["version"] > late_paid["version"]


def test_order_row_carries_units_skus_and_the_raw_position() -> None:
    row = _row()
    assert (row["units"], row["line_count"], row["skus"]) == (3, 2, ["EARBUD-PRO-BLK", "CABLE-USBC-1M"])
    assert (row["raw_topic"], row["raw_partition"], row["raw_offset"]) == ("raw.orders.shopee", 1, 7)
    assert row["created_at"].tzinfo is not None


def test_a_batch_of_reserve_answers_is_a_row_each_told_apart_by_its_place_in_the_record() -> None:
    from sinks.clickhouse import COLUMNS, reservation_facts
    from sinks.runner import Origin
    from streams.inventory import Decision, HoldState
    from streams.stock_records import encode_decision, encode_decision_batch

    answers = [
        Decision("t1:shopee:1|0", "SKU-A", 2, HoldState.RESERVED, "WH-1", 5),
        Decision("t1:lazada:2|0", "SKU-B", 1, HoldState.SHORT, None, 0),
    ]
    at = Origin("reservations.v1", 3, 41, 1_795_824_100_000)
    rows = [dict(zip(COLUMNS[table], row, strict=True)) for table, row in reservation_facts(
        encode_decision_batch(answers), at)]  # fmt: skip
    assert [(r["src_partition"], r["src_offset"], r["src_index"]) for r in rows] == [(3, 41, 0), (3, 41, 1)]
    assert [(r["hold_id"], r["channel"], r["state"]) for r in rows] == [
        ("t1:shopee:1|0", "shopee", "reserved"),
        ("t1:lazada:2|0", "lazada", "short"),
    ]
    single = [dict(zip(COLUMNS[t], row, strict=True)) for t, row in reservation_facts(encode_decision(answers[1]), at)]
    assert [(r["src_index"], r["hold_id"]) for r in single] == [(0, "t1:lazada:2|0")]
