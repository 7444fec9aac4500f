"""The faust application: broker settings, topics from the registry, and the agents.

Kafka stays here at the edge; the agents call pure functions (streams/normalize.py) and send what
they return. Sends inside an agent are attached to the input offset, so faust publishes them before
it commits that offset: at-least-once, made safe downstream by stable event ids.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import faust
from faust.types import EventT, StreamT

from oms.settings import Settings
from schemas import topics
from streams.adapters.base import RawInput
from streams.codecs import register_codecs
from streams.normalize import normalize

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """A faust app bound to the configured broker. Its id carries the topic prefix (test isolation)."""
    register_codecs()
    app = faust.App(
        f"{settings.topic_prefix}oms",
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        store="memory://",
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.consumer_session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.consumer_session_timeout_s / 5),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
    )
    register_normalize(app, settings)
    return app


def raw_input_of(event: EventT[bytes], prefix: str) -> RawInput:
    """The agent's view of a raw record: the bytes plus where they came from."""
    msg = event.message
    headers = _headers(msg.headers)
    received = headers.get("received_at")
    ingest_ms = int(received) if received is not None and received.isdigit() else int(msg.timestamp * 1000)
    return RawInput(
        channel=topics.channel_of_raw_topic(msg.topic, prefix) or "unknown",
        value=msg.value if isinstance(msg.value, bytes) else bytes(msg.value or b""),
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        ingest_ms=ingest_ms,
        key=msg.key if isinstance(msg.key, bytes) else None,
        headers=headers,
    )


def _headers(raw: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> dict[str, bytes]:
    if raw is None:
        return {}
    items = raw.items() if isinstance(raw, Mapping) else raw
    return {str(k): bytes(v) if v is not None else b"" for k, v in items}


def register_normalize(app: faust.App, settings: Settings) -> Any:
    """raw.orders.<channel> -> orders.v1, or dead-letters.v1 with the original bytes and a reason."""
    prefix = settings.topic_prefix
    raw_topic = app.topic(
        *[spec.full_name(prefix) for spec in topics.RAW_ORDERS],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    orders = app.topic(topics.ORDERS.full_name(prefix), key_serializer="raw", value_serializer="oms_order_event")
    dead = app.topic(topics.DEAD_LETTERS.full_name(prefix), key_serializer="raw", value_serializer="oms_dead_letter")

    async def normalize_agent(stream: StreamT[bytes]) -> AsyncIterator[int]:
        async for event in stream.events():
            raw = raw_input_of(event, prefix)
            outcome = normalize(raw, settings.tenant)
            for order in outcome.events:
                await orders.send(key=order.order_key.encode(), value=order.to_avro())
            if outcome.dead_letter is not None:
                letter = outcome.dead_letter
                log.warning("dead letter %s: %s: %s", letter.dead_letter_id, letter.reason_code, letter.reason)
                await dead.send(key=raw.topic.encode(), value=letter.to_avro())
            yield len(outcome.events)

    return app.agent(raw_topic, name="normalize")(normalize_agent)
