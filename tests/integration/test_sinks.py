"""Sinks against the real broker, chDB and Redis: commit after flush, replay, forward-only status."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.process import wait_until
from oms.settings import Settings
from schemas.order import OrderEvent, OrderStatus
from schemas.topics import TopicSpec
from sinks.clickhouse import ORDER_COLUMNS, decode_order, order_row
from sinks.redis_model import OrderStatusModel
from sinks.runner import SinkSpec, SinkStats, run_sink
from streams.adapters.base import RawInput
from streams.normalize import normalize
from tests.integration.conftest import shopee_order, unique

pytestmark = pytest.mark.integration


def _event(order_sn: str, **changes: Any) -> OrderEvent:
    raw = RawInput("shopee", shopee_order(order_sn, **changes), "raw.orders.shopee", 0, 0, 1_795_824_100_000)
    outcome = normalize(raw, "default")
    assert outcome.events, outcome.dead_letter
    return outcome.events[0]


def _order_row(value: bytes) -> tuple[Any, ...]:
    """orders.v1 bytes -> an ``orders`` row, as the ClickHouse sink makes it."""
    return order_row(decode_order(value))


def _private_orders_topic(settings: Settings) -> str:
    """A fresh orders topic, so each test sees only its own records."""
    from infra.topics import ensure_topics

    spec = TopicSpec(
        name=f"orders.{uuid.uuid4().hex[:6]}.v1",
        key="order key",
        value="OrderEvent",
        value_schemas=("order_event",),
    )
    ensure_topics(settings, (spec,))
    return spec.full_name(settings.topic_prefix)


def _produce(settings: Settings, topic: str, events: list[OrderEvent]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for event in events:
        producer.produce(topic, key=event.order_key.encode(), value=event.encode())
    assert producer.flush(30) == 0


def _committed(settings: Settings, topic: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def _run_until(settings: Settings, spec: SinkSpec[Any], group: str, done: Any) -> SinkStats:
    stop = threading.Event()
    stats = SinkStats()
    thread = threading.Thread(target=run_sink, args=(settings, spec, stop, stats, group), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: done(stats), 60, 0.1), f"sink did not finish: {stats}"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    return stats


def _table(ch: Client) -> str:
    name = f"orders_{uuid.uuid4().hex[:8]}"
    ch.command(f"CREATE TABLE {name} AS orders")
    return name


def test_sink_commits_offsets_only_after_a_successful_flush_and_loses_nothing_when_clickhouse_fails(
    kafka_topics: Settings, ch: Client
) -> None:
    topic = _private_orders_topic(kafka_topics)
    events = [_event(unique("FAIL")) for _ in range(30)]
    _produce(kafka_topics, topic, events)
    table = _table(ch)
    failures = {"left": 3}
    committed_while_failing: list[int] = []
    group = f"sink-{uuid.uuid4()}"

    def flaky_write(rows: list[Any]) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            committed_while_failing.append(_committed(kafka_topics, topic, group))
            raise ConnectionError("ClickHouse is away (injected)")
        ch.insert(table, rows, column_names=ORDER_COLUMNS)

    spec = SinkSpec(name="flaky", topic=topic, to_row=_order_row, write=flaky_write)
    stats = _run_until(kafka_topics, spec, group, lambda s: s.written == len(events))

    assert stats.failed_flushes == 3
    assert committed_while_failing == [0, 0, 0], "nothing may be committed before a flush succeeds"
    assert _committed(kafka_topics, topic, group) == len(events)
    keys = {row[0] for row in ch.query(f"SELECT order_key FROM {table}").result_rows}
    assert keys == {e.order_key for e in events}


def test_replaying_the_orders_topic_from_the_start_does_not_double_count(kafka_topics: Settings, ch: Client) -> None:
    topic = _private_orders_topic(kafka_topics)
    sn = unique("REPLAY")
    paid = _event(sn)
    shipped = _event(sn, order_status="SHIPPED", update_time=1_795_900_000)
    others = [_event(unique("REPLAY")) for _ in range(9)]
    _produce(kafka_topics, topic, [paid, *others, shipped, paid])  # a duplicate, late, after the newer state
    table = _table(ch)

    def write(rows: list[Any]) -> None:
        ch.insert(table, rows, column_names=ORDER_COLUMNS)

    spec = SinkSpec(name="replay", topic=topic, to_row=_order_row, write=write)
    for _ in range(2):  # the second run is a full replay under a new consumer group
        _run_until(kafka_topics, spec, f"replay-{uuid.uuid4()}", lambda s: s.written == 12)

    ch.command(f"OPTIMIZE TABLE {table} FINAL")
    assert ch.command(f"SELECT count() FROM {table} FINAL") == 10
    status = ch.command(f"SELECT status FROM {table} FINAL WHERE order_key = '{paid.order_key}'")
    assert status == "shipped", "the later lifecycle state wins whatever the delivery order"


def test_undecodable_record_on_orders_topic_goes_to_dead_letters_and_is_committed(
    kafka_topics: Settings, ch: Client
) -> None:
    topic = _private_orders_topic(kafka_topics)
    producer = Producer({"bootstrap.servers": kafka_topics.kafka_bootstrap})
    producer.produce(topic, key=b"x", value=b"not avro at all")
    good = _event(unique("GOOD"))
    producer.produce(topic, key=good.order_key.encode(), value=good.encode())
    assert producer.flush(30) == 0
    table = _table(ch)
    spec = SinkSpec(
        name="undecodable",
        topic=topic,
        to_row=_order_row,
        write=lambda rows: ch.insert(table, rows, column_names=ORDER_COLUMNS),
    )
    group = f"undecodable-{uuid.uuid4()}"
    stats = _run_until(kafka_topics, spec, group, lambda s: s.written == 1 and s.dead_lettered == 1)
    assert stats.consumed == 2
    assert _committed(kafka_topics, topic, group) == 2


def test_redis_status_never_moves_backwards_with_late_and_duplicate_events(
    kafka_topics: Settings, redis_client: Any
) -> None:
    model = OrderStatusModel(redis_client, prefix=f"{kafka_topics.topic_prefix}{uuid.uuid4().hex[:6]}:")
    sn = unique("FWD")
    pending = _event(sn, order_status="UNPAID", update_time=1_795_824_000)
    paid = _event(sn, order_status="READY_TO_SHIP", update_time=1_795_824_100)
    shipped = _event(sn, order_status="SHIPPED", update_time=1_795_900_000)

    assert model.apply([shipped]) == 1
    assert model.apply([paid, pending, shipped]) == 0, "older and duplicate states are no-ops"
    state = model.get(shipped.order_key)
    assert state["status"] == OrderStatus.SHIPPED.value
    assert state["event_id"] == shipped.event_id
