"""The textbook peer's pure steps (loadtest/peer.py); the app against a broker is in tests/integration/test_peer.py."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.partitioner import DefaultPartitioner

from loadtest.peer import (
    SHORT,
    LineRequest,
    LineResult,
    decision_of,
    line_requests,
    orders_of,
    reserve_units,
    seed_request,
)
from oms.bench import order_template
from oms.settings import Settings
from streams.app import key_partition, raw_input_of_message


def test_a_line_is_reserved_whole_or_not_at_all() -> None:
    assert reserve_units(5, 2) == 2
    assert reserve_units(2, 2) == 2
    assert reserve_units(1, 2) == 0
    assert reserve_units(0, 1) == 0


def test_the_decision_names_the_markets_node_only_when_every_line_is_reserved() -> None:
    result = LineResult("t:shopee:1", "2", "A", 2, 2, 2, "SG")
    warehouses = {"SG": "SG-WH1"}
    full = decision_of(result, {"1": [1, 1], "2": [2, 2]}, warehouses)
    assert (full.warehouse, full.lines, full.units) == ("SG-WH1", 2, 3)
    short = decision_of(result, {"1": [1, 0], "2": [2, 2]}, warehouses)
    assert (short.warehouse, short.units) == (SHORT, 2)
    assert decision_of(LineResult("k", "1", "A", 1, 1, 1, "VN"), {"1": [1, 1]}, warehouses).warehouse == SHORT


def test_one_request_per_line_keyed_by_sku() -> None:
    order = order_template("t")
    requests = line_requests(order)
    assert [(r.sku, r.qty, r.line_count) for r in requests] == [
        (line.sku, line.quantity, len(order.lines)) for line in order.lines
    ]
    assert all(r.order_key == order.order_key and not r.seed for r in requests)


def test_seeds_go_where_fausts_producer_sends_the_skus_lines() -> None:
    partitioner = DefaultPartitioner()
    for partitions in (1, 4, 7):
        for sku in ("FS-000", "FS-042", "sku-with-ünicode"):
            assert key_partition(sku.encode(), partitions) == partitioner(sku.encode(), list(range(partitions)), [])
    seed = LineRequest.loads(seed_request("FS-001", 5).dumps())
    assert (seed.sku, seed.qty, seed.seed) == ("FS-001", 5, True)


def test_raw_input_takes_headers_as_faust_gives_them() -> None:
    for headers in ([("received_at", b"123"), ("shop", b"s")], {"received_at": b"123", "shop": b"s"}):
        message = SimpleNamespace(
            headers=headers, value=b"{}", key=b"k", topic="p.raw.orders.lazada", partition=1, offset=9, timestamp=5.0
        )
        raw = raw_input_of_message(message, "p.")
        assert (raw.channel, raw.ingest_ms, raw.headers["shop"], raw.offset) == ("lazada", 123, b"s", 9)


def test_the_orders_are_the_pipeline_benchs_first_order_deliveries() -> None:
    orders = orders_of(Settings(topic_prefix="u."), 50)
    assert len({o.key for o in orders}) == 50
    assert {o.channel for o in orders} <= {"shopee", "lazada", "tiktok", "shopify", "pos"}
    assert all(o.lines >= len(o.units) >= 1 for o in orders)
    assert orders == orders_of(Settings(topic_prefix="u."), 50)
