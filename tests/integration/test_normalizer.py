"""The normalize stage on the real broker: every raw record becomes changes or a dead letter, the
offsets are committed once Kafka has them, and a restarted stage does not normalize them again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.raw_producer import RawProducer
from infra.topics import ensure_topics
from oms.settings import Settings
from schemas.order import DeadLetter, decode_changes
from schemas.topics import DEAD_LETTERS, ORDER_CHANGES
from streams.app import group_id as worker_group
from streams.normalizer import Normalizer, group_id, raw_topics
from tests.integration.conftest import read_topic, shopee_order, unique

pytestmark = pytest.mark.integration


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def _uncommitted(settings: Settings) -> int:
    """Raw records not yet committed by the stage's group (high watermark minus committed)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group_id(settings)})
    try:
        parts = [
            TopicPartition(name, p)
            for name in raw_topics(settings)
            for p in consumer.list_topics(name, timeout=10).topics[name].partitions
        ]
        left = 0
        for tp in consumer.committed(parts, timeout=10):
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            left += high - max(tp.offset, 0)
        return left
    finally:
        consumer.close()


def _outputs(settings: Settings, changes: int, letters: int) -> tuple[list[str], list[DeadLetter]]:
    prefix = settings.topic_prefix
    changes_read = read_topic(
        settings,
        ORDER_CHANGES.full_name(prefix),
        lambda ms: sum(len(decode_changes(m.value())) for m in ms) >= changes,
    )
    letters_read = read_topic(settings, DEAD_LETTERS.full_name(prefix), lambda ms: len(ms) >= letters)
    keys = [c.order_key for m in changes_read for c in decode_changes(m.value())]
    return keys, [DeadLetter.decode(m.value()) for m in letters_read]


def _settings(services: Settings, tmp_path: Path) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "oms",
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url,
        topic_prefix=f"nz{uuid.uuid4().hex[:8]}.",
        consumer_session_timeout_s=6.0,
    )
    ensure_topics(settings)
    return settings


def test_stage_normalizes_commits_and_resumes_after_a_restart_without_repeating(
    services: Settings, tmp_path: Path
) -> None:
    settings = _settings(services, tmp_path)
    producer = RawProducer(settings)
    first = [unique("NZ") for _ in range(30)]
    for sn in first:
        producer.send("shopee", shopee_order(sn), shop="777", delivery_id=sn)
    producer.send("lazada", b'{"data": ', shop="9", delivery_id="broken-1")
    producer.flush()

    fatal: list[BaseException] = []
    stage = Normalizer(settings, fatal.append)
    stage.start()
    try:
        _wait(lambda: _uncommitted(settings) == 0, "the stage commits every raw record it read")
    finally:
        stage.stop()
    assert stage.thread is not None and not stage.thread.is_alive()
    keys, letters = _outputs(settings, 30, 1)
    assert sorted(keys) == sorted(f"default:shopee:{sn}" for sn in first)
    assert [(d.reason_code, d.channel, d.original) for d in letters] == [("malformed_json", "lazada", b'{"data": ')]

    later = [unique("NZ") for _ in range(5)]
    for sn in later:
        producer.send("shopee", shopee_order(sn), shop="777", delivery_id=sn)
    producer.flush()
    again = Normalizer(settings, fatal.append)
    again.start()
    try:
        _wait(lambda: _uncommitted(settings) == 0, "the restarted stage commits the new records")
    finally:
        again.stop()
    assert again.normalized == 5  # resumed from the committed offsets: the first 31 were not read again
    keys, letters = _outputs(settings, 35, 1)
    assert sorted(keys) == sorted(f"default:shopee:{sn}" for sn in first + later)  # each once
    assert len(letters) == 1
    assert fatal == []


def test_an_upgraded_stage_starts_where_the_faust_agent_left_the_raw_topics(services: Settings, tmp_path: Path) -> None:
    """The build before this one read the raw topics in the worker's faust group: its commits are
    where the stage starts, so an upgrade does not normalize the retained history again."""
    settings = _settings(services, tmp_path)
    producer = RawProducer(settings)
    sent = [unique("UP") for _ in range(12)]
    for sn in sent:
        producer.send("shopee", shopee_order(sn), shop="777", delivery_id=sn)
    producer.flush()
    shopee = f"{settings.topic_prefix}raw.orders.shopee"
    on_partition: dict[int, list[str]] = {}
    for m in read_topic(settings, shopee, lambda ms: len(ms) >= len(sent)):
        on_partition.setdefault(m.partition(), []).append(m.key().decode())
    # the old worker group had read the first two records of every partition (or its only one)
    old = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": worker_group(settings)})
    try:
        read = [TopicPartition(shopee, p, min(2, len(keys))) for p, keys in on_partition.items()]
        old.commit(offsets=read, asynchronous=False)
    finally:
        old.close()
    expected = sorted(f"default:shopee:{k}" for keys in on_partition.values() for k in keys[2:])

    stage = Normalizer(settings, lambda exc: None)
    stage.start()
    try:
        _wait(lambda: _uncommitted(settings) == 0, "the stage commits the records after the old group's offsets")
    finally:
        stage.stop()
    assert stage.normalized == len(expected)
    keys, _ = _outputs(settings, len(expected), 0)
    assert sorted(keys) == expected
