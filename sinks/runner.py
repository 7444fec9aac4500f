"""The consume loop shared by every sink: decode, batch, flush with back-off, commit after the flush.

When the destination is slow or away, the loop pauses its partitions (nothing more is read, so the
backlog waits in Kafka), keeps the group membership alive, retries with exponential back-off, and
resumes once a flush succeeds. Nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from oms.settings import Settings
from schemas.order import DeadLetter
from schemas.topics import DEAD_LETTERS
from sinks.batching import BatchingSink

log = logging.getLogger(__name__)
Row = TypeVar("Row")


class Undecodable(ValueError):
    """A record on a topic we own that does not decode: it goes to the dead-letter topic."""


@dataclass
class SinkStats:
    consumed: int = 0
    written: int = 0
    dead_lettered: int = 0
    flushes: int = 0
    failed_flushes: int = 0


@dataclass(frozen=True)
class Origin:
    """Where a consumed record sits in Kafka, and its record time."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass
class SinkSpec(Generic[Row]):
    """What a sink reads and how it writes. ``to_row`` raises Undecodable for a bad record.

    ``locate``, when given, stamps each decoded row with its record's partition and offset, for
    writers that keep only the newest record of a key (the ledger's order is its offsets).
    ``from_record``, when given, replaces ``to_row`` for sinks that read several topics or key rows
    by their Kafka position: it gets the record's ``Origin`` too.
    """

    name: str
    topic: str | tuple[str, ...]
    write: Callable[[list[Row]], None]
    to_row: Callable[[bytes], Row] | None = None
    locate: Callable[[Row, int, int], Row] | None = None
    from_record: Callable[[Origin, bytes], Row] | None = None

    @property
    def topics(self) -> list[str]:
        return [self.topic] if isinstance(self.topic, str) else list(self.topic)


def run_sink(
    settings: Settings,
    spec: SinkSpec[Row],
    stop: threading.Event,
    stats: SinkStats | None = None,
    group_id: str | None = None,
) -> SinkStats:
    """Consume ``spec.topic`` until ``stop`` is set; flush what is pending before returning."""
    stats = stats or SinkStats()
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group_id or f"{settings.topic_prefix}oms-sink-{spec.name}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(settings.consumer_session_timeout_s * 1000),
            "max.poll.interval.ms": 300_000,
            # fetch in batches (up to 100 ms late): a fetch per few records cost the broker a core
            # under flash-sale load, taken from the worker on a 2-core machine
            "fetch.min.bytes": 262_144,
            "fetch.wait.max.ms": 100,
        }
    )
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 5})
    dead_topic = DEAD_LETTERS.full_name(settings.topic_prefix)

    def commit(offsets: Mapping[tuple[str, int], int]) -> None:
        # dead letters of this batch must be durable before their inputs are committed
        if producer.flush(30) > 0:
            raise RuntimeError("dead-letter producer did not deliver within 30 s")
        if offsets:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)

    sink: BatchingSink[Row] = BatchingSink(
        writer=spec.write,
        committer=commit,
        max_rows=settings.sink_batch_rows,
        max_age_s=settings.sink_flush_seconds,
    )

    def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            stats.written += sink.flush()  # hand over cleanly when we can
        except Exception:
            sink.forget({(tp.topic, tp.partition) for tp in partitions})

    consumer.subscribe(spec.topics, on_revoke=on_revoke)
    backoff = 0.5
    try:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=min(1000, settings.sink_batch_rows), timeout=0.2):
                _take(msg, spec, sink, producer, settings, dead_topic, stats)
            if not sink.due():
                continue
            try:
                stats.written += sink.flush()
                stats.flushes += 1
                if backoff > 0.5:
                    consumer.resume(consumer.assignment())
                    log.warning("sink %s: destination is back, resumed", spec.name)
                backoff = 0.5
            except Exception as exc:
                stats.failed_flushes += 1
                if backoff == 0.5:
                    consumer.pause(consumer.assignment())
                log.warning(
                    "sink %s: flush of %d rows failed (%s); paused, retry in %.1fs",
                    spec.name,
                    sink.pending,
                    exc,
                    backoff,
                )
                _wait(consumer, stop, backoff)
                backoff = min(backoff * 2, 30.0)
        try:
            stats.written += sink.flush()
        except Exception as exc:
            log.warning("sink %s: final flush failed (%s); the batch will be re-read on restart", spec.name, exc)
    finally:
        consumer.close()
        producer.flush(10)
    return stats


def _take(
    msg: Message,
    spec: SinkSpec[Row],
    sink: BatchingSink[Row],
    producer: Producer,
    settings: Settings,
    dead_topic: str,
    stats: SinkStats,
) -> None:
    err = msg.error()
    if err is not None:
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("sink %s: consumer error %s", spec.name, err)
        return
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        return
    stats.consumed += 1
    value = msg.value() or b""
    try:
        if spec.from_record is not None:
            _, stamp = msg.timestamp()
            row = spec.from_record(Origin(topic, partition, offset, stamp if stamp > 0 else 0), value)
        elif spec.to_row is not None:
            row = spec.to_row(value)
        else:
            raise TypeError(f"sink {spec.name} has neither to_row nor from_record")
    except Undecodable as exc:
        letter = DeadLetter.of(
            tenant=settings.tenant,
            channel=None,
            stage=f"sink.{spec.name}",
            reason_code="undecodable",
            reason=str(exc),
            topic=topic,
            partition=partition,
            offset=offset,
            key=msg.key(),
            headers=_headers(msg),
            original=value,
        )
        producer.produce(dead_topic, key=topic.encode(), value=letter.encode())
        stats.dead_lettered += 1
        sink.add(None, topic, partition, offset)
        return
    if spec.locate is not None:
        row = spec.locate(row, partition, offset)
    sink.add(row, topic, partition, offset)


def _headers(msg: Message) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in msg.headers() or []:
        name, value = item[0], item[1]
        out[str(name)] = value if isinstance(value, bytes) else str(value or "").encode()
    return out


def _wait(consumer: Consumer, stop: threading.Event, seconds: float) -> None:
    """Back off while paused, polling so the group keeps us (paused partitions return nothing)."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1, timeout=0.1):
            # a rebalance can hand us new, unpaused partitions; pause them too and re-read later
            consumer.pause(consumer.assignment())
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is not None and partition is not None and offset is not None:
                consumer.seek(TopicPartition(topic, partition, offset))
