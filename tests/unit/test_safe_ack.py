"""The consumer commits only processed offsets, never over a hole, and reads holes again (streams/safe_ack.py).

The consumer thread (aiokafka) is replaced by a recorder: these are the bookkeeping decisions, no broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from oms.settings import Settings
from streams.app import create_app
from streams.safe_ack import SafeAckConsumer
from tests.unit.fakes import until

TOPIC = "raw.orders.shopee"
PART = TP(TOPIC, 0)


class _Thread:
    """The consumer thread calls under test: committed and earliest offsets, and seeks (recorded)."""

    def __init__(self) -> None:
        self.committed: dict[Any, int | None] = {}
        self.earliest: dict[Any, int] = {}
        self.to_beginning: list[Any] = []
        self.sought: list[dict[Any, int]] = []

    async def seek_to_committed(self) -> dict[Any, int | None]:
        return self.committed

    async def earliest_offsets(self, *partitions: Any) -> dict[Any, int]:
        return {tp: self.earliest.get(tp, 0) for tp in partitions}

    async def seek_to_beginning(self, *partitions: Any) -> None:
        self.to_beginning.extend(partitions)

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        self.sought.append(dict(partitions))


@pytest.fixture()
def consumer() -> Iterator[SafeAckConsumer]:
    app = create_app(Settings(topic_prefix="unit-safe-ack."))
    consumer = app.consumer
    assert isinstance(consumer, SafeAckConsumer)
    app.topics._acking_topics.add(TOPIC)  # the conductor adds it when the agent subscribes
    consumer._thread = _Thread()
    yield consumer


def _assigned(consumer: SafeAckConsumer, committed: int | None) -> None:
    """The end of a rebalance: faust seeks every partition to its committed offset."""
    consumer._thread.committed = {TopicPartition(TOPIC, 0): committed}
    asyncio.run(consumer.perform_seek())


def _message(offset: int, *, processed: bool = True) -> ConsumerMessage:
    message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, [], b"k", b"v", None)
    message.tracked = processed  # faust sets this when a stream hands the message to an agent
    return message


def test_a_message_the_stream_skipped_is_not_committed(consumer: SafeAckConsumer) -> None:
    _assigned(consumer, 100)
    assert consumer.ack(_message(100, processed=False)) is False
    assert consumer.ack(_message(101)) is True

    async def commit() -> int | None:
        return consumer._new_offset(PART)

    assert asyncio.run(commit()) is None, "100 was skipped: committing 102 would lose it"
    consumer.ack(_message(100))  # read again
    assert consumer._new_offset(PART) == 102


def test_nothing_is_committed_over_a_hole_and_the_hole_is_read_again(consumer: SafeAckConsumer) -> None:
    _assigned(consumer, 100)  # Kafka's committed offset: the next one to read

    async def scenario() -> None:
        for offset in (101, 102):
            consumer.ack(_message(offset))
        assert consumer._new_offset(PART) is None
        assert consumer._new_offset(PART) is None, "still missing at the next commit"
        await until(lambda: bool(consumer._thread.sought))  # the seek task has run
        assert consumer._thread.sought == [{PART: 100}], "one seek back, not one per commit"
        consumer.ack(_message(100))  # the re-read copy
        assert consumer._new_offset(PART) == 103

    asyncio.run(scenario())


def test_nothing_is_committed_before_the_rebalance_seek(consumer: SafeAckConsumer) -> None:
    # Between the assignment and the seek, faust may deliver records fetched past dropped ones.
    consumer._committed_offset[PART] = None
    consumer.ack(_message(425))
    assert consumer._new_offset(PART) is None
    _assigned(consumer, 372)
    assert consumer._committed_offset[PART] == 372


def test_a_revoked_partition_commits_nothing_until_sought_again(consumer: SafeAckConsumer) -> None:
    _assigned(consumer, 5)
    asyncio.run(consumer.on_partitions_revoked({PART}))
    consumer.ack(_message(9))
    assert consumer._new_offset(PART) is None


def test_a_known_gap_in_the_log_does_not_hold_commits_back(consumer: SafeAckConsumer) -> None:
    _assigned(consumer, 100)
    consumer._gap[PART].addi(100, 102)  # offsets 100 and 101 are absent from the log (e.g. markers)
    consumer.ack(_message(102))
    assert consumer._new_offset(PART) == 103


def test_a_partition_with_nothing_committed_is_read_and_committed_from_its_first_offset(
    consumer: SafeAckConsumer,
) -> None:
    consumer._thread.earliest = {TopicPartition(TOPIC, 0): 40}  # retention removed 0-39
    _assigned(consumer, None)
    assert consumer._thread.to_beginning == [TopicPartition(TOPIC, 0)]
    consumer.ack(_message(41))
    assert asyncio.run(_new_offset_in_loop(consumer)) is None, "40 is missing"
    consumer.ack(_message(40))
    assert consumer._new_offset(PART) == 42


async def _new_offset_in_loop(consumer: SafeAckConsumer) -> int | None:
    return consumer._new_offset(PART)


def test_records_older_than_the_last_delivered_are_never_dropped(consumer: SafeAckConsumer) -> None:
    _assigned(consumer, 7)
    consumer._read_offset[PART] = 900  # what faust's fetch loop writes after delivering 900
    assert consumer._read_offset[PART] is None, "faust would drop a re-read 7 as older than 900"


def test_partitions_with_nothing_committed_are_read_from_the_beginning(consumer: SafeAckConsumer) -> None:
    changelog = next(iter(consumer.app.tables.changelog_topics))
    consumer._thread.committed = {
        TopicPartition(TOPIC, 0): None,  # never committed: faust may have dropped fetched records
        TopicPartition(TOPIC, 1): 0,  # committed 0: aiokafka does not seek to 0 either
        TopicPartition(TOPIC, 2): 57,  # aiokafka itself seeks here
        TopicPartition(changelog, 0): None,  # table recovery positions changelogs itself
    }
    asyncio.run(consumer.seek_to_committed())
    assert sorted(consumer._thread.to_beginning) == [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
