"""Integration fixtures: topics, a real faust worker child, an in-process chDB owner, helpers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, TopicPartition

from connectors.raw_producer import RawProducer, sample
from infra import clickhouse, topics
from infra.process import ManagedProcess
from oms.runtime import free_port, running_sinks, spawn_worker
from oms.settings import Settings
from sinks.clickhouse import migrate


@pytest.fixture(scope="session")
def kafka_topics(run_settings: Settings) -> Settings:
    created = topics.ensure_topics(run_settings)
    assert created, "a fresh prefix must create the registry's topics"
    return run_settings


@pytest.fixture(scope="session")
def worker_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def worker(kafka_topics: Settings, worker_port: int) -> Iterator[ManagedProcess]:
    proc = spawn_worker(kafka_topics, "test-worker", web_port=worker_port)
    yield proc
    proc.stop()
    assert proc.pid() is None


@pytest.fixture(scope="session")
def ch(kafka_topics: Settings) -> Iterator[Client]:
    client = clickhouse.get_client(kafka_topics)
    migrate(client)
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{kafka_topics.clickhouse_database}`")


@pytest.fixture(scope="session")
def sinks(kafka_topics: Settings, ch: Client, worker: ManagedProcess) -> Iterator[Any]:
    with running_sinks(kafka_topics, ch) as running:
        yield running
    assert not running.errors


@pytest.fixture()
def producer(kafka_topics: Settings) -> RawProducer:
    return RawProducer(kafka_topics)


@pytest.fixture()
def redis_client(services: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(services.redis_url)
    yield client
    client.close()


def shopee_order(order_sn: str, **changes: Any) -> bytes:
    """The recorded Shopee response with a unique order_sn and optional field changes on the order."""
    body: dict[str, Any] = orjson.loads(sample("shopee_order_detail.json"))
    order = body["response"]["order_list"][0]
    order["order_sn"] = order_sn
    order.update(changes)
    return orjson.dumps(body)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    """Whether ``condition()`` holds before the deadline, asked every ``every`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)  # the polling interval of a condition with a deadline
    return True


def committed_to_end(settings: Settings, topic: str, timeout: float) -> bool:
    """Whether the worker's consumer group commits every record now on ``topic`` before the deadline."""
    from streams.app import group_id

    group = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group_id(settings)})
    try:
        parts = [TopicPartition(topic, p) for p in group.list_topics(topic, timeout=10).topics[topic].partitions]
        ends = [group.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]

        def done() -> bool:
            committed = [tp.offset for tp in group.committed(parts, timeout=10)]
            return all(end == 0 or at >= end for at, end in zip(committed, ends, strict=True))

        return wait_until(done, timeout)
    finally:
        group.close()


def read_topic(
    settings: Settings, topic: str | list[str], done: Callable[[list[Any]], bool], timeout: float = 60.0
) -> list[Any]:
    """All messages of one or more topics from the start, read until ``done(messages)`` or the deadline."""
    import time

    names = [topic] if isinstance(topic, str) else topic
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    messages: list[Any] = []
    try:
        assignment = []
        for name in names:
            meta = consumer.list_topics(name, timeout=10).topics[name]
            assignment += [TopicPartition(name, p, 0) for p in meta.partitions]
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while not done(messages) and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(num_messages=500, timeout=0.3) if m.error() is None)
    finally:
        consumer.close()
    return messages
