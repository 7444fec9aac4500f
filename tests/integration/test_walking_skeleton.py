"""One order end to end through the real broker, a real faust worker, chDB and Redis."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from connectors.raw_producer import RawProducer
from infra.process import ManagedProcess, wait_until
from oms.settings import Settings
from schemas.order import DeadLetter, OrderEvent, OrderStatus, PaymentMethod, order_key
from schemas.topics import DEAD_LETTERS, ORDERS
from sinks.redis_model import OrderStatusModel
from tests.integration.conftest import read_topic, shopee_order, unique

pytestmark = pytest.mark.integration


def _orders_for(settings: Settings, key: str, count: int = 1) -> list[OrderEvent]:
    topic = ORDERS.full_name(settings.topic_prefix)
    found = read_topic(settings, topic, lambda ms: sum(m.key() == key.encode() for m in ms) >= count)
    return [OrderEvent.decode(m.value()) for m in found if m.key() == key.encode()]


def test_shopee_order_becomes_canonical_event_clickhouse_row_and_redis_status(
    kafka_topics: Settings,
    worker: ManagedProcess,
    sinks: Any,
    ch: Client,
    producer: RawProducer,
    redis_client: Any,
) -> None:
    order_sn = unique("SKEL")
    producer.send("shopee", shopee_order(order_sn), shop="shop-sg-001", delivery_id=f"d-{order_sn}")
    producer.flush()
    key = order_key(kafka_topics.tenant, "shopee", order_sn)

    events = _orders_for(kafka_topics, key)
    assert len(events) == 1, f"no canonical event for {key}; worker log:\n{worker.log_tail()}"
    event = events[0]
    assert (event.market, event.currency, event.total_minor) == ("SG", "SGD", 5980)
    assert event.status is OrderStatus.PAID and event.payment_method is PaymentMethod.EWALLET
    assert [(line.sku, line.quantity, line.paid_price_minor) for line in event.lines] == [
        ("EARBUD-PRO-BLK", 1, 2990),
        ("CABLE-USBC-1M", 2, 1495),
    ]
    assert event.shop_id == "shop-sg-001" and event.shipping.postcode == "238859"
    assert event.raw.topic == f"{kafka_topics.topic_prefix}raw.orders.shopee"

    def row() -> list[Any]:
        return ch.query(
            "SELECT status, total_minor, units, raw_offset FROM orders FINAL WHERE order_key = {k:String}",
            parameters={"k": key},
        ).result_rows

    assert wait_until(lambda: bool(row()), 60, 0.2), "the order never reached ClickHouse"
    assert row() == [("paid", 5980, 3, event.raw.offset)]

    model = OrderStatusModel(redis_client, prefix=kafka_topics.topic_prefix)
    assert wait_until(lambda: bool(model.get(key)), 30, 0.1)
    assert model.get(key)["status"] == "paid"


def test_bad_payloads_become_dead_letters_with_original_bytes_and_the_worker_keeps_going(
    kafka_topics: Settings, worker: ManagedProcess, producer: RawProducer
) -> None:
    run = unique("")
    bad = {
        f"json-{run}": (b'{"response": {"order_list": [', "malformed_json"),
        f"shape-{run}": (b'{"hello": "world"}', "unknown_shape"),
        f"utf8-{run}": (b'{"response": "\xff\xfe"}', "invalid_encoding"),
        f"status-{run}": (shopee_order(f"BAD{run}", order_status="TELEPORTED"), "unknown_status"),
        f"lazada-{run}": (b'{"order_id": 1}', "unknown_shape"),
    }
    for delivery_id, (body, _) in bad.items():
        channel = "lazada" if delivery_id.startswith("lazada") else "shopee"
        producer.send(channel, body, shop="s1", delivery_id=delivery_id)
    good_sn = unique("AFTERBAD")
    producer.send("shopee", shopee_order(good_sn), shop="s1", delivery_id=f"good-{run}")
    producer.flush()

    topic = DEAD_LETTERS.full_name(kafka_topics.topic_prefix)
    ours = set(bad)
    messages = read_topic(
        kafka_topics, topic, lambda ms: ours <= {DeadLetter.decode(m.value()).source_key.decode() for m in ms}
    )
    letters = {
        (letter.source_key or b"").decode(): letter
        for letter in (DeadLetter.decode(m.value()) for m in messages)
        if (letter.source_key or b"").decode() in ours
    }
    assert set(letters) == ours, f"missing dead letters; worker log:\n{worker.log_tail()}"
    for delivery_id, (body, code) in bad.items():
        letter = letters[delivery_id]
        assert letter.reason_code == code, letter.reason
        assert letter.original == body
        assert letter.source_topic.endswith("raw.orders." + ("lazada" if "lazada" in delivery_id else "shopee"))
        assert letter.source_headers["delivery_id"] == delivery_id.encode()
        assert letter.dead_letter_id == f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}"

    assert _orders_for(kafka_topics, order_key(kafka_topics.tenant, "shopee", good_sn))
    assert worker.pid() is not None, "the worker must survive bad input"


def test_worker_web_server_listens_on_loopback_only(worker: ManagedProcess, worker_port: int) -> None:
    def listeners() -> set[str]:
        found = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
            for line in rows:
                local, state = line.split()[1], line.split()[3]
                address, port = local.rsplit(":", 1)
                if state == "0A" and int(port, 16) == worker_port:
                    found.add(address)
        return found

    assert wait_until(lambda: bool(listeners()), 60, 0.2), f"worker web port never opened:\n{worker.log_tail()}"
    assert listeners() <= {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
