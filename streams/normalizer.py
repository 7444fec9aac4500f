"""The normalize stage: raw.orders.<channel> -> order-changes.v1 (or dead-letters.v1), off faust.

The raw deliveries are most of the worker's input: about 3.6 records per order (the order, its
payment, status updates, duplicates), against one or two for everything downstream. faust takes in
each record with its own task, stream step and ack, about 250 us of machinery apiece on this kind of
machine, whatever the record holds, and normalizing one takes less than that. So the normalize
stage reads with a plain confluent-kafka consumer instead: librdkafka fetches and hands over up to
``agent_batch_max`` records per call, in a thread of the worker process, and the step's changes
leave as one record per order-changes.v1 partition (``change_batches``), as before.

The promise is the agents' (streams/app.py): at-least-once, and safe because ids are stable. A
step's outputs are produced and acknowledged by Kafka (``flush``) before its input offsets are
committed, so a crash (kill -9 included) can only make the next owner normalize a record again;
the same raw position gives the same event ids, and the lifecycle drops the repeat. If Kafka does
not take the outputs, nothing is committed: the consumer seeks back to the step's first records and
tries again. Partitions are assigned by Kafka in the consumer group ``<prefix>oms-normalize``
(cooperative-sticky), each read in offset order, so there is nothing like safe_ack.InOrder to do.

``step`` is pure (raw inputs in, records to send out); the ``Normalizer`` around it is the Kafka edge.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from oms.settings import Settings
from schemas import topics
from streams.adapters.base import RawInput
from streams.app import _dead_out, change_batches, raw_input
from streams.app import group_id as worker_group
from streams.normalize import normalize

log = logging.getLogger(__name__)


def group_id(settings: Settings) -> str:
    """The normalize stage's consumer group (the raw topics' committed offsets)."""
    return f"{settings.topic_prefix}oms-normalize"


def raw_topics(settings: Settings) -> list[str]:
    """Every raw.orders.<channel> topic, prefixed: what the normalize stage reads."""
    return [spec.full_name(settings.topic_prefix) for spec in topics.RAW_ORDERS]


def seed_offsets(consumer: Consumer, settings: Settings) -> int:
    """Upgrade from a build whose faust agent read the raw topics: a raw partition this stage's group
    has never committed starts where the worker's group left it, not at the earliest record (which
    would normalize the whole retained history again). Returns how many partitions were seeded.

    Committing for a group needs it empty: when another worker of the stage is already in the group,
    Kafka refuses, and that worker has seeded it already.
    """
    parts = [
        TopicPartition(name, p)
        for name in raw_topics(settings)
        for p in (consumer.list_topics(name, timeout=10).topics[name].partitions or {})
    ]
    ours = {(tp.topic, tp.partition) for tp in consumer.committed(parts, timeout=10) if tp.offset >= 0}
    missing = [tp for tp in parts if (tp.topic, tp.partition) not in ours]
    if not missing:
        return 0
    old = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": worker_group(settings)})
    try:
        theirs = [tp for tp in old.committed(missing, timeout=10) if tp.offset >= 0]
    finally:
        old.close()
    if not theirs:
        return 0
    try:
        consumer.commit(offsets=theirs, asynchronous=False)
    except KafkaException as exc:
        log.info("normalize stage: offsets not seeded (%s): the group is active, so already seeded", exc)
        return 0
    return len(theirs)


@dataclass(frozen=True)
class Out:
    """One record to produce."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Result:
    """What a step of raw records became: the records to produce, in order, and what they count."""

    records: tuple[Out, ...]
    changes: int
    dead_letters: int


def step(raws: Iterable[RawInput], settings: Settings) -> Result:
    """Pure: raw records -> their dead letters (in input order), then one order-changes.v1 record per
    partition holding that partition's changes in input order (a lone change: its own record)."""
    prefix = settings.topic_prefix
    changes_topic = topics.ORDER_CHANGES.full_name(prefix)
    dead_topic = topics.DEAD_LETTERS.full_name(prefix)
    batches = change_batches(settings.partitions)
    records: list[Out] = []
    changes = dead = 0
    for raw in raws:
        outcome = normalize(raw, settings.tenant)
        for change in outcome.events:
            batches.add(change)
        changes += len(outcome.events)
        if outcome.dead_letter is not None:
            records.append(Out(*_dead_out(dead_topic, outcome.dead_letter)))
            dead += 1

    class Collect:
        def send(self, topic: Any, key: bytes, value: bytes) -> None:
            records.append(Out(topic, key, value))

    batches.send(Collect(), changes_topic)
    return Result(tuple(records), changes, dead)


def raw_input_of(msg: Message, prefix: str) -> RawInput:
    """A confluent-kafka message as a RawInput (channel from its topic; ingest time from the
    connector's ``received_at`` header, else the record's Kafka timestamp)."""
    _, stamp = msg.timestamp()
    return raw_input(
        prefix,
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=cast(list[tuple[str, bytes]] | None, msg.headers()),  # bytes, as produced
        timestamp_ms=stamp,
    )


class Normalizer:
    """The normalize stage's Kafka edge: a consumer and a producer, run in a thread (``start``).

    ``on_fatal`` is called (from the thread) with an error the stage cannot go on from, e.g. a bug
    outside the per-record path, which already turns every failure into a dead letter; the worker
    crashes with it rather than stop normalizing silently.
    """

    def __init__(
        self,
        settings: Settings,
        on_fatal: Callable[[BaseException], None],
        client_config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.on_fatal = on_fatal
        self.client_config = client_config or {}
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.normalized = 0  # raw records taken, for the log and tests
        self.failures: list[str] = []  # delivery errors of the current step

    def start(self) -> None:
        self.thread = threading.Thread(target=self._guarded, name="normalize", daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Finish the current step, commit it, leave the group."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout_s)

    def _guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            log.exception("normalize stage stopped: %s", exc)
            self.on_fatal(exc)

    def consumer(self) -> Consumer:
        s = self.settings
        return Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": group_id(s),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": int(s.consumer_session_timeout_s * 1000),
                "heartbeat.interval.ms": int(max(1.0, s.consumer_session_timeout_s / 5) * 1000),
                "fetch.wait.max.ms": max(1, int(s.agent_batch_wait_ms)),
                **self.client_config,
            }
        )

    def producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 2,
                # Kafka's default partitioner (faust's and Java's): an order's changes must reach the
                # order-changes.v1 partition whose orders agent keeps its state
                "partitioner": "murmur2_random",
                "message.max.bytes": 16 * 1024 * 1024,
                **self.client_config,
            }
        )

    def run(self) -> None:
        s = self.settings
        consumer, producer = self.consumer(), self.producer()
        seeded = seed_offsets(consumer, s)
        if seeded:
            log.info("normalize stage: took over %d raw partitions' offsets from group %s", seeded, worker_group(s))
        consumer.subscribe(raw_topics(s))
        log.info("normalize stage: reading %d raw topics as group %s", len(raw_topics(s)), group_id(s))
        try:
            while not self.stop_event.is_set():
                batch = consumer.consume(num_messages=s.agent_batch_max, timeout=s.agent_batch_wait_ms / 1000)
                taken = [m for m in batch if not _error(m)]
                if taken:
                    self.apply(consumer, producer, taken)
        finally:
            consumer.close()  # leaves the group: the partitions move at once, not after the session timeout

    def apply(self, consumer: Consumer, producer: Producer, msgs: Sequence[Message]) -> None:
        """Normalize ``msgs``, produce, wait for Kafka's acks, then commit; on failure read them again."""
        prefix = self.settings.topic_prefix
        result = step((raw_input_of(m, prefix) for m in msgs), self.settings)
        self.failures = []
        for out in result.records:
            self._produce(producer, out)
        left = producer.flush(60)
        if left or self.failures:
            first: dict[tuple[str, int], int] = {}
            for m in msgs:
                first.setdefault((m.topic() or "", m.partition() or 0), m.offset() or 0)
            log.error(
                "normalize: Kafka did not take a step's %d records (%s); nothing committed, reading its %d "
                "raw records again. Is the broker at %s up?",
                len(result.records),
                "; ".join(self.failures[:3]) or f"{left} unsent after 60 s",
                len(msgs),
                self.settings.kafka_bootstrap,
            )
            for (topic, partition), offset in first.items():
                consumer.seek(TopicPartition(topic, partition, offset))
            self.stop_event.wait(1.0)
            return
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            last[(m.topic() or "", m.partition() or 0)] = m.offset() or 0
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. the partitions moved in a rebalance: the next owner repeats
            log.warning(
                "normalize: commit of %d partitions failed (%s); their records will be read again", len(offsets), exc
            )
        self.normalized += len(msgs)

    def _produce(self, producer: Producer, out: Out) -> None:
        while True:
            try:
                producer.produce(out.topic, key=out.key, value=out.value, on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}: {err}")


def _error(msg: Message) -> bool:
    """True for a consumer event that is not a record (logged unless it is an end of partition)."""
    err = msg.error()
    if err is None:
        return False
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("normalize: consumer error %s", err)
    return True
