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
