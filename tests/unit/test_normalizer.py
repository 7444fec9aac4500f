"""The normalize stage (streams/normalizer.py) without a broker.

``step`` is pure: raw records in, the records to produce out. ``Normalizer.apply`` is run against
small fakes of confluent-kafka's consumer and producer, to pin its one rule: offsets are committed
only after Kafka has acknowledged every output, and a step Kafka did not take is read again.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from oms.settings import Settings
from schemas.order import DeadLetter, OrderEvent, decode_changes
from streams.app import key_partition, raw_input_of, source_topics
from streams.normalizer import Normalizer, group_id, raw_topics, step
from streams.normalizer import raw_input_of as raw_input_of_confluent

SAMPLE = resources.files("connectors").joinpath("samples", "shopee_order_detail.json").read_bytes()
RECEIVED_AT = 1_795_824_070_000


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Default settings whatever the environment."""
    for name in [n for n in os.environ if n.startswith("OMS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


class Msg:
    """The part of confluent_kafka.Message the stage reads."""

    def __init__(
        self,
        value: bytes | None,
        key: bytes | None = b"k",
        topic: str = "raw.orders.shopee",
        partition: int = 0,
        offset: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 1_795_824_000_500,
        error: Any = None,
    ) -> None:
        self._value, self._key, self._topic, self._partition, self._offset = value, key, topic, partition, offset
        self._headers, self._timestamp_ms, self._error = headers, timestamp_ms, error

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)

    def error(self) -> Any:
        return self._error


def _step(msgs: list[Msg], settings: Settings | None = None) -> Any:
    settings = settings or Settings()
    return step([raw_input_of_confluent(m, settings.topic_prefix) for m in msgs], settings)  # type: ignore[arg-type]


def _shopee(order_sn: str) -> bytes:
    body = json.loads(SAMPLE)
    body["response"]["order_list"][0]["order_sn"] = order_sn
    return json.dumps(body).encode()


# --- step: pure ---------------------------------------------------------------------------------------


def test_valid_shopee_record_becomes_one_order_change_keyed_by_its_order() -> None:
    result = _step([Msg(SAMPLE, key=b"2611270A1B2C3D", headers=[("received_at", str(RECEIVED_AT).encode())])])
    assert (result.changes, result.dead_letters) == (1, 0)
    assert len(result.records) == 1
    out = result.records[0]
    assert out.topic == "order-changes.v1"
    assert out.key == b"default:shopee:2611270A1B2C3D"  # a lone change keeps its own record and key
    event = OrderEvent.decode(out.value)
    assert event.tenant == "default"
    assert event.total_minor == 5980
    assert event.ingest_time_ms == RECEIVED_AT
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.shopee", 0, 0)


def test_malformed_record_becomes_a_dead_letter_with_its_original_bytes_key_and_headers() -> None:
    result = _step([Msg(b'{"response": ', key=b"k1", offset=4, headers=[("shop", b"777")])])
    assert (result.changes, result.dead_letters) == (0, 1)
    [out] = result.records
    assert (out.topic, out.key) == ("dead-letters.v1", b"raw.orders.shopee")
    letter = DeadLetter.decode(out.value)
    assert letter.reason_code == "malformed_json"
    assert letter.channel == "shopee"
    assert letter.original == b'{"response": '
    assert letter.source_key == b"k1"
    assert letter.source_headers == {"shop": b"777"}
    assert letter.dead_letter_id == "raw.orders.shopee:0:4"


def test_changes_of_one_partition_travel_in_one_record_in_input_order() -> None:
    settings = Settings()
    msgs = [Msg(_shopee(f"SN{i:04d}"), offset=i) for i in range(40)]
    result = _step(msgs, settings)
    changes = [c for out in result.records for c in decode_changes(out.value)]
    assert sorted(c.raw.offset for c in changes) == list(range(40))  # type: ignore[union-attr]
    by_partition: dict[int, list[int]] = {}
    for out in result.records:
        part = key_partition(out.key, settings.partitions)
        assert part not in by_partition  # one record per partition
        by_partition[part] = [c.raw.offset for c in decode_changes(out.value)]  # type: ignore[union-attr]
        for change in decode_changes(out.value):
            assert key_partition(change.order_key.encode(), settings.partitions) == part  # where its state lives
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())
    assert len(result.records) < 40


def test_valid_and_malformed_records_go_to_their_own_topics_and_a_replay_keeps_its_event_id() -> None:
    result = _step([Msg(SAMPLE, offset=0), Msg(b"\xff\xfe", offset=1), Msg(SAMPLE, offset=2)])
    assert (result.changes, result.dead_letters) == (2, 1)
    dead = [o for o in result.records if o.topic == "dead-letters.v1"]
    assert [DeadLetter.decode(o.value).reason_code for o in dead] == ["invalid_encoding"]
    [changes] = [decode_changes(o.value) for o in result.records if o.topic == "order-changes.v1"]
    assert [c.raw.offset for c in changes] == [0, 2]  # type: ignore[union-attr]
    # the same order state twice: same event id, so applying the replay changes nothing downstream
    assert changes[0].event_id == changes[1].event_id


def test_step_uses_the_topic_prefix_and_tenant() -> None:
    settings = Settings(topic_prefix="t9.", tenant="acme")
    result = _step([Msg(SAMPLE, topic="t9.raw.orders.shopee"), Msg(b"nope", topic="t9.raw.orders.shopee")], settings)
    assert sorted(o.topic for o in result.records) == ["t9.dead-letters.v1", "t9.order-changes.v1"]
    by_topic = {o.topic: o for o in result.records}
    assert by_topic["t9.order-changes.v1"].key == b"acme:shopee:2611270A1B2C3D"
    assert by_topic["t9.dead-letters.v1"].key == b"t9.raw.orders.shopee"
    assert DeadLetter.decode(by_topic["t9.dead-letters.v1"].value).tenant == "acme"


def test_record_from_a_topic_without_an_adapter_is_dead_lettered_as_no_adapter() -> None:
    [out] = _step([Msg(SAMPLE, topic="raw.orders.unknown")]).records
    letter = DeadLetter.decode(out.value)
    assert (letter.reason_code, letter.channel) == ("no_adapter", "unknown")
    assert letter.original == SAMPLE


def test_record_with_an_amount_beyond_avro_long_is_dead_lettered_and_the_rest_go_on() -> None:
    body = json.loads(SAMPLE)
    body["response"]["order_list"][0]["total_amount"] = 1e19
    result = _step([Msg(json.dumps(body).encode(), offset=0), Msg(SAMPLE, offset=1)])
    assert sorted(o.topic for o in result.records) == ["dead-letters.v1", "order-changes.v1"]


def test_the_stage_reads_every_raw_topic_in_its_own_group_and_the_agents_none() -> None:
    settings = Settings(topic_prefix="t9.")
    assert "t9.raw.orders.shopee" in raw_topics(settings)
    assert all(name.startswith("t9.raw.orders.") for name in raw_topics(settings))
    assert not set(raw_topics(settings)) & set(source_topics(settings))
    assert group_id(settings) == "t9.oms-normalize"


# --- Normalizer.apply: commit after the acks ------------------------------------------------------------


class FakeProducer:
    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes]] = []
        self.pending: list[Any] = []
        self.flushed = 0

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.sent.append((topic, key))
        self.pending.append((on_delivery, SimpleNamespace(topic=lambda: topic)))

    def flush(self, timeout: float) -> int:
        self.flushed += 1
        err = KafkaError(KafkaError._MSG_TIMED_OUT, self.fail) if self.fail else None
        for callback, msg in self.pending:
            callback(err, msg)
        self.pending = []
        return 0


class FakeConsumer:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.commits: list[list[tuple[str, int, int]]] = []
        self.seeks: list[tuple[str, int, int]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        assert not self.producer.pending, "committed before the outputs were acknowledged"
        assert self.producer.flushed, "committed before the outputs were flushed"
        self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def _normalizer() -> Normalizer:
    return Normalizer(Settings(), on_fatal=lambda exc: None)


def test_apply_commits_the_next_offset_of_each_partition_after_the_outputs_are_acknowledged() -> None:
    producer = FakeProducer()
    consumer = FakeConsumer(producer)
    msgs = [
        Msg(_shopee("A1"), partition=0, offset=7),
        Msg(_shopee("A2"), partition=0, offset=8),
        Msg(b"nope", topic="raw.orders.lazada", partition=3, offset=41),
    ]
    normalizer = _normalizer()
    normalizer.apply(consumer, producer, msgs)  # type: ignore[arg-type]
    assert {t for t, _ in producer.sent} == {"order-changes.v1", "dead-letters.v1"}
    assert consumer.commits == [[("raw.orders.lazada", 3, 42), ("raw.orders.shopee", 0, 9)]]
    assert consumer.seeks == []
    assert normalizer.normalized == 3


def test_apply_commits_nothing_and_reads_the_step_again_when_kafka_refuses_an_output() -> None:
    producer = FakeProducer(fail="Local: Message timed out")
    consumer = FakeConsumer(producer)
    msgs = [Msg(_shopee("A1"), partition=0, offset=7), Msg(_shopee("A2"), partition=0, offset=8)]
    normalizer = _normalizer()
    normalizer.stop_event.set()  # no back-off wait in a unit test
    normalizer.apply(consumer, producer, msgs)  # type: ignore[arg-type]
    assert consumer.commits == []
    assert consumer.seeks == [("raw.orders.shopee", 0, 7)]  # from the step's first record
    assert normalizer.normalized == 0


def test_a_crash_of_the_stage_thread_is_handed_to_the_worker() -> None:
    seen: list[BaseException] = []
    normalizer = Normalizer(Settings(kafka_bootstrap="127.0.0.1:1"), on_fatal=seen.append)

    def boom() -> None:
        raise RuntimeError("bug")

    normalizer.run = boom  # type: ignore[method-assign]
    normalizer.start()
    assert normalizer.thread is not None
    normalizer.thread.join(10)
    assert [str(e) for e in seen] == ["bug"]


# --- raw_input_of (faust's message, for the agents' dead letters) ------------------------------------------


def _event(**message: Any) -> Any:
    fields: dict[str, Any] = {
        "topic": "t1.raw.orders.shopee",
        "partition": 2,
        "offset": 17,
        "timestamp": 1_795_824_000.5,
        "key": b"key",
        "value": b"{}",
        "headers": [("received_at", b"1795824070000"), ("shop", b"777")],
    }
    fields.update(message)
    return SimpleNamespace(message=SimpleNamespace(**fields))


def test_raw_input_of_takes_channel_position_key_and_headers_from_the_message() -> None:
    raw = raw_input_of(_event(), "t1.")
    assert raw.channel == "shopee"
    assert (raw.topic, raw.partition, raw.offset) == ("t1.raw.orders.shopee", 2, 17)
    assert raw.key == b"key"
    assert raw.value == b"{}"
    assert dict(raw.headers) == {"received_at": b"1795824070000", "shop": b"777"}
    assert raw.ingest_ms == 1_795_824_070_000


def test_raw_input_of_a_confluent_message_reads_the_same_fields() -> None:
    msg = Msg(b"{}", key=b"key", topic="t1.raw.orders.shopee", partition=2, offset=17, headers=[("shop", b"777")])
    raw = raw_input_of_confluent(msg, "t1.")  # type: ignore[arg-type]
    assert (raw.channel, raw.topic, raw.partition, raw.offset) == ("shopee", "t1.raw.orders.shopee", 2, 17)
    assert (raw.key, raw.value, dict(raw.headers)) == (b"key", b"{}", {"shop": b"777"})
    assert raw.ingest_ms == 1_795_824_000_500  # no received_at header: the Kafka timestamp


def test_raw_input_of_uses_the_kafka_timestamp_without_a_received_at_header() -> None:
    raw = raw_input_of(_event(headers=None), "t1.")
    assert raw.ingest_ms == 1_795_824_000_500
    assert dict(raw.headers) == {}


def test_raw_input_of_ignores_a_non_numeric_received_at_header() -> None:
    raw = raw_input_of(_event(headers={"received_at": b"yesterday"}), "t1.")
    assert raw.ingest_ms == 1_795_824_000_500


def test_raw_input_of_a_topic_that_is_not_raw_has_channel_unknown() -> None:
    assert raw_input_of(_event(topic="t1.orders.v1"), "t1.").channel == "unknown"


def test_raw_input_of_keeps_empty_header_values_and_drops_a_non_bytes_key() -> None:
    raw = raw_input_of(_event(headers=[("h", None)], key="text-key", value=None), "t1.")
    assert dict(raw.headers) == {"h": b""}
    assert raw.key is None
    assert raw.value == b""
