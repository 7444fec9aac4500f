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
