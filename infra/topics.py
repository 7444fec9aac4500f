"""Create the registry's topics on the broker, idempotently."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from infra.process import ServiceError
from oms.settings import Settings
from schemas.topics import ALL, TopicSpec


def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = ALL, timeout: float = 30.0) -> list[str]:
    """Create missing topics; existing ones are left as they are. Returns the names created."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(
            spec.full_name(settings.topic_prefix),
            num_partitions=spec.partitions or settings.partitions,
            replication_factor=-1,  # the broker's default: 1 on the embedded node, 3 on a cluster
            config=spec.kafka_config(),
        )
        for spec in specs
        if spec.full_name(settings.topic_prefix) not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another process created it between our list and create
            raise ServiceError(f"could not create topic {name}: {err}") from exc
    _wait_until_visible(admin, created, timeout)
    return created


def _wait_until_visible(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Creation is acknowledged before every broker's metadata shows the topic; a consumer that
    subscribes in between may never be assigned it. Return once each has a leader per partition."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        topics = admin.list_topics(timeout=5).topics
        pending = {
            name
            for name in pending
            if name not in topics
            or topics[name].error is not None
            or not topics[name].partitions
            or any(p.leader < 0 for p in topics[name].partitions.values())
        }
        if pending:
            time.sleep(0.1)  # polling the broker's metadata until the deadline
    if pending:
        raise ServiceError(f"topics created but not visible after {timeout:.0f}s: {sorted(pending)}")


def start_group_at_earliest(settings: Settings, group: str, names: list[str], timeout: float = 10.0) -> int:
    """Commit the earliest offset for every partition of ``names`` where ``group`` has no commit yet.

    What auto.offset.reset=earliest would read anyway, but written down. A faust worker (0.15.3)
    that went through two rebalances within its first seconds (a second worker joining, or a
    killed one's session expiring) sometimes never fetched partitions that had no committed offset,
    with no error: its share of orders stalled. With every partition committed before the first
    worker joins, that path is never taken (a two-worker reproduction went from about one run in
    two stalling to none in six). Existing commits are never touched; returns how many were set.
    A group that already has live members refuses a commit from outside: then the worker that
    started it has done this, and nothing is changed.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        wanted = []
        for name in names:
            meta = consumer.list_topics(name, timeout=timeout).topics.get(name)
            if meta is None or meta.error is not None:
                raise ServiceError(f"topic {name} is missing; run `oms topics create` (or `oms up`) first")
            wanted += [TopicPartition(name, p) for p in meta.partitions]
        committed = consumer.committed(wanted, timeout=timeout)
        missing = [tp for tp in committed if tp.offset < 0]
        starts = []
        for tp in missing:
            low, _ = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout)
            starts.append(TopicPartition(tp.topic, tp.partition, max(0, low)))
        if starts:
            try:
                consumer.commit(offsets=starts, asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() not in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION):
                    raise
                return 0
        return len(starts)
    finally:
        consumer.close()
