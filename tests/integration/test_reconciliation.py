"""Nothing lost, end to end through the real broker and worker: every raw record ends as canonical
changes or exactly one dead letter (never both, never neither), counted by its raw position."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from importlib import resources

import orjson
import pytest
from confluent_kafka import KafkaError, Message

from connectors.raw_producer import RawProducer
from infra.process import ManagedProcess
from oms.settings import Settings
from schemas.order import DeadLetter, decode_changes
from schemas.topics import DEAD_LETTERS, ORDER_CHANGES
from streams.normalize import ADAPTERS
from tests.integration.conftest import read_topic, shopee_order, unique

pytestmark = pytest.mark.integration

Position = tuple[str, int, int]


def _channel_samples() -> list[tuple[str, bytes]]:
    names = sorted(e.name for e in resources.files("connectors").joinpath("samples").iterdir())
    return [
        (channel, resources.files("connectors").joinpath("samples", name).read_bytes())
        for channel in sorted(ADAPTERS)
        for name in names
        if name.startswith(channel) and name.endswith(".json")
    ]


def test_every_raw_record_is_accounted_for_exactly_once_across_channels_and_ugly_inputs(
    kafka_topics: Settings, worker: ManagedProcess, producer: RawProducer
) -> None:
    run = unique("")
    big_valid = orjson.loads(shopee_order(unique("BIG")))
    big_valid["response"]["order_list"][0]["message_to_seller"] = "x" * (5 * 1024 * 1024)
    inputs: list[tuple[str, bytes]] = [
        *_channel_samples(),
        ("shopee", shopee_order(unique("REC"))),
        ("shopee", shopee_order(f"DUP{run}")),
        ("shopee", shopee_order(f"DUP{run}")),  # the same delivery twice
        ("shopee", b'{"response": {"order_list": ['),
        ("shopee", b"\xff\xfe\x00garbage"),
        ("shopee", orjson.dumps(big_valid)),  # 5 MB body that is a valid order
        ("shopee", b"{" * (5 * 1024 * 1024)),  # 5 MB of garbage: its dead letter keeps all of it
        ("shopee", shopee_order(unique("REC"), order_status="TELEPORTED")),
        (
            "shopee",
            orjson.dumps({"code": 3, "shop_id": 1, "timestamp": 9, "data": {"ordersn": f"P{run}", "status": "X"}}),
        ),
        ("tokopedia" if "tokopedia" not in ADAPTERS else "grab", b'{"unknown": "channel without adapter or shape"}'),
    ]
    positions: dict[Position, bytes] = {}

    def remember(body: bytes) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            assert err is None, err
            positions[(msg.topic(), msg.partition(), msg.offset())] = body  # type: ignore[index]

        return on_delivery

    for i, (channel, body) in enumerate(inputs):
        producer.send(channel, body, shop="rec", delivery_id=f"rec-{run}-{i}", on_delivery=remember(body))
    producer.flush(60)
    assert len(positions) == len(inputs)

    changes_by_pos: Counter[Position] = Counter()
    dead_by_pos: Counter[Position] = Counter()

    def tally(messages: list[Message]) -> None:
        changes_by_pos.clear()
        dead_by_pos.clear()
        for m in messages:
            if m.topic().endswith(ORDER_CHANGES.name):
                for change in decode_changes(m.value()):
                    changes_by_pos[(change.raw.topic, change.raw.partition, change.raw.offset)] += 1
            else:
                letter = DeadLetter.decode(m.value())
                if letter.stage == "normalize":
                    dead_by_pos[(letter.source_topic, letter.source_partition, letter.source_offset)] += 1

    def all_accounted(messages: list[Message]) -> bool:
        tally(messages)
        return all(p in changes_by_pos or p in dead_by_pos for p in positions)

    prefix = kafka_topics.topic_prefix
    names = [ORDER_CHANGES.full_name(prefix), DEAD_LETTERS.full_name(prefix)]
    outputs = read_topic(kafka_topics, names, all_accounted, timeout=120)
    tally(outputs)
    missing = [p for p in positions if p not in changes_by_pos and p not in dead_by_pos]
    assert not missing, f"lost: {missing}\n{worker.log_tail()}"
    both = [p for p in positions if p in changes_by_pos and p in dead_by_pos]
    assert not both, f"both a change and a dead letter: {both}"
    assert all(dead_by_pos[p] == 1 for p in positions if p in dead_by_pos), "one dead letter per input"
    letters = {
        (d.source_topic, d.source_partition, d.source_offset): d
        for d in (DeadLetter.decode(m.value()) for m in outputs if m.topic().endswith(DEAD_LETTERS.name))
    }
    for position, body in positions.items():
        if position in dead_by_pos:
            assert letters[position].original == body, "the dead letter keeps the original bytes"
    huge = next(p for p, b in positions.items() if b.startswith(b"{{{{"))
    assert len(letters[huge].original) == 5 * 1024 * 1024
    assert sum(1 for p in positions if p in changes_by_pos) >= len(_channel_samples()) + 4
