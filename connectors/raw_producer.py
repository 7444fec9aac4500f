"""Produce marketplace payloads to raw.orders.<channel> exactly as received, with the standard headers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from oms.settings import Settings
from schemas.topics import raw_orders


class ProduceError(RuntimeError):
    """Kafka did not acknowledge a raw record: the delivery must not be answered as accepted."""


class RawProducer:
    """Acks from every in-sync replica before a delivery counts as accepted (``flush`` waits for them)."""

    def __init__(self, settings: Settings, client_config: Mapping[str, Any] | None = None) -> None:
        """``client_config``: extra librdkafka settings (timeouts, TLS, SASL for a production cluster)."""
        self._settings = settings
        config: dict[str, Any] = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.max.bytes": 16 * 1024 * 1024,
        }
        self._producer = Producer({**config, **(client_config or {})})
        self._errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err}")

    def send(
        self,
        channel: str,
        body: bytes,
        *,
        shop: str,
        delivery_id: str,
        received_at_ms: int | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Queue one raw record; ``flush`` (or ``on_delivery``, served by ``poll``) reports the broker's ack."""
        topic = raw_orders(channel).full_name(self._settings.topic_prefix)
        received = received_at_ms if received_at_ms is not None else int(time.time() * 1000)
        self._producer.produce(
            topic,
            key=delivery_id.encode(),
            value=body,
            headers=[
                ("channel", channel.encode()),
                ("shop", shop.encode()),
                ("received_at", str(received).encode()),
                ("delivery_id", delivery_id.encode()),
            ],
            on_delivery=on_delivery or self._on_delivery,
        )
        self._producer.poll(0)

    def poll(self, timeout: float) -> None:
        """Serve delivery callbacks (a background thread calls this when callers pass ``on_delivery``)."""
        self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> None:
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if left or errors:
            raise ProduceError(f"{left} record(s) unacknowledged after {timeout}s; errors: {errors or 'none'}")


def sample(name: str) -> bytes:
    """A recorded marketplace payload shipped with the package (connectors/samples)."""
    return resources.files("connectors").joinpath("samples", name).read_bytes()
