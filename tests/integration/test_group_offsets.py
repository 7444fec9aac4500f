"""A new consumer group starts with every source partition committed at its earliest offset."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.topics import ensure_topics, start_group_at_earliest
from oms.settings import Settings
from schemas.topics import ORDER_CHANGES, raw_orders

pytestmark = pytest.mark.integration


def _committed(settings: Settings, group: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return [tp.offset for tp in consumer.committed(tps, timeout=10)]
    finally:
        consumer.close()


def test_missing_commits_are_set_to_the_start_and_existing_ones_are_kept(run_settings: Settings) -> None:
    settings = run_settings.model_copy(update={"topic_prefix": f"go{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    group = f"{settings.topic_prefix}oms"
    raw = raw_orders("shopee").full_name(settings.topic_prefix)
    changes = ORDER_CHANGES.full_name(settings.topic_prefix)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(20):
        producer.produce(raw, key=f"k{i}".encode(), value=b"{}")
    assert producer.flush(30) == 0
    assert _committed(settings, group, raw) == [-1001] * settings.partitions, "a new group has no commits"

    # a worker of this group already moved one partition on: that commit must survive
    moved = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    moved.commit(offsets=[TopicPartition(changes, 1, 7)], asynchronous=False)
    moved.close()

    set_now = start_group_at_earliest(settings, group, [raw, changes])
    assert set_now == 2 * settings.partitions - 1
    assert _committed(settings, group, raw) == [0] * settings.partitions
    assert _committed(settings, group, changes) == [0, 7, 0, 0]
    assert start_group_at_earliest(settings, group, [raw, changes]) == 0, "a second start changes nothing"


def test_a_missing_topic_is_a_clear_error(run_settings: Settings) -> None:
    from infra.process import ServiceError

    with pytest.raises(ServiceError, match="run `oms topics create`"):
        start_group_at_earliest(run_settings, "g", [f"nope{uuid.uuid4().hex[:6]}.orders.v1"])
