"""An agent's step (streams/app.py ``Step``): outputs acknowledged first, then one changelog write per key.

The table is a real faust Table of an app that never starts; what goes to the producer (a step's
outputs and changelog writes) and changelog writes outside a step are recorded in one journal, so
the tests see the order in which they would reach Kafka.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from types import SimpleNamespace
from typing import Any
from unittest import mock

import orjson
import pytest
from faust.topics import Topic

from oms.settings import Settings
from streams.app import KeyedTable, PastHolds, ScanGate, Step, create_app, key_partition
from streams.inventory import Hold, HoldState
from tests.unit.fakes import until

pytestmark = pytest.mark.usefixtures("clean_env")


class Journal:
    def __init__(self, fail_sends: bool = False) -> None:
        self.entries: list[tuple[str, bytes, bytes | None]] = []
        self.fail_sends = fail_sends
        #: what each changelog write answers: done at once unless a test sets its own
        self.changelog_ack: asyncio.Future[None] | None = None

    async def record(
        self, app: Any, topic: str, key: bytes, value: bytes | None, partition: int | None = None
    ) -> asyncio.Future[None]:
        """``streams.app.send_record``: a step's outputs and its changelog writes go out through it."""
        if topic.endswith("-changelog"):
            assert partition is not None, "a changelog write names its partition"
            return self.changelog(partition, key, value)
        return await self.send(topic, key=key, value=value)

    async def send(self, topic: Topic | str, *, key: Any = None, value: Any = None, **_: Any) -> asyncio.Future[None]:
        name = topic if isinstance(topic, str) else topic.get_topic_name()
        self.entries.append((f"out:{name}", key, value))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_sends:
            acked.set_exception(RuntimeError("broker unreachable"))
        else:
            acked.set_result(None)
        return acked

    def changelog(self, partition: int, key: bytes, value: bytes | None) -> asyncio.Future[None]:
        self.entries.append(("changelog", key, value))
        if self.changelog_ack is not None:
            return self.changelog_ack
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def _events(n: int) -> list[Any]:
    """Stand-ins for a step's faust events: all the step touches is ``event.message.tracked``."""
    return [SimpleNamespace(message=SimpleNamespace(tracked=True, offset=i)) for i in range(n)]


def _run(journal: Journal, scenario: Any) -> None:
    async def main() -> None:
        app = create_app(Settings(topic_prefix="unit-step."))
        table = KeyedTable(app, "unit-step-table", 4)
        topic = app.topic("unit-step.out", key_serializer="raw", value_serializer="raw")
        with (
            mock.patch("streams.app.send_record", side_effect=journal.record),
            mock.patch.object(table.table, "send_changelog", side_effect=journal.changelog),  # outside a step
        ):
            await scenario(table, topic)

    asyncio.run(main())


def test_outputs_go_before_the_changelog_and_each_key_is_written_once_with_its_last_value() -> None:
    journal = Journal()

    async def scenario(table: KeyedTable, topic: Any) -> None:
        async with Step(table) as step:
            table.set(b"sku-1", b"9")
            step.send(topic, b"o1", b"reserved")
            assert table.get(b"sku-1") == b"9"  # a later record of the step reads what an earlier wrote
            table.set(b"sku-1", b"8")
            table.set(b"sku-2", b"5")
            step.send(topic, b"o2", b"reserved")
            table.delete(b"sku-2")
            assert journal.entries == []  # nothing leaves before the step ends
        assert table.get(b"sku-1") == b"8"
        assert table.get(b"sku-2") is None

    _run(journal, scenario)
    outputs = [e for e in journal.entries if e[0].startswith("out:")]
    assert outputs == [("out:unit-step.out", b"o1", b"reserved"), ("out:unit-step.out", b"o2", b"reserved")]
    assert journal.entries[:2] == outputs
    assert sorted(e for e in journal.entries if e[0] == "changelog") == [
        ("changelog", b"sku-1", b"8"),
        ("changelog", b"sku-2", None),
    ]


def test_a_failed_publish_puts_the_state_back_and_writes_no_changelog() -> None:
    journal = Journal(fail_sends=True)

    async def scenario(table: KeyedTable, topic: Any) -> None:
        table.set(b"sku-1", b"10")  # outside a step: written through at once
        with pytest.raises(RuntimeError, match="broker unreachable"):
            async with Step(table) as step:
                table.set(b"sku-1", b"7")
                table.set(b"sku-new", b"3")
                step.send(topic, b"o1", b"reserved")
        assert table.get(b"sku-1") == b"10"
        assert table.get(b"sku-new") is None

    _run(journal, scenario)
    assert [e for e in journal.entries if e[0] == "changelog"] == [("changelog", b"sku-1", b"10")]


def test_an_error_in_the_step_body_puts_the_state_back_and_sends_nothing() -> None:
    journal = Journal()

    async def scenario(table: KeyedTable, topic: Any) -> None:
        table.set(b"sku-1", b"10")
        with pytest.raises(ValueError, match="bad record"):
            async with Step(table) as step:
                table.delete(b"sku-1")
                step.send(topic, b"o1", b"reserved")
                raise ValueError("bad record")
        assert table.get(b"sku-1") == b"10"
        async with Step(table):  # the table works normally afterwards
            table.set(b"sku-1", b"4")
        assert table.get(b"sku-1") == b"4"

    _run(journal, scenario)
    assert journal.entries == [("changelog", b"sku-1", b"10"), ("changelog", b"sku-1", b"4")]


def _decode(raw: bytes) -> list[int]:
    return [int(x) for x in raw.split(b",")]


def _encode(value: list[int]) -> bytes:
    return b",".join(str(x).encode() for x in value)


def test_a_loaded_value_is_decoded_once_and_a_stored_one_encoded_once_per_step() -> None:
    journal = Journal()
    decodes: list[bytes] = []
    encodes: list[list[int]] = []

    def decode(raw: bytes) -> list[int]:
        decodes.append(raw)
        return _decode(raw)

    def encode(value: list[int]) -> bytes:
        encodes.append(list(value))
        return _encode(value)

    async def scenario(table: KeyedTable, topic: Any) -> None:
        table.set(b"sku-1", b"1,2")
        async with Step(table):
            for n in (3, 4, 5):
                value = table.load(b"sku-1", decode)
                assert value is not None
                value.append(n)
                table.store(b"sku-1", value, encode)
        assert table.get(b"sku-1") == b"1,2,3,4,5"
        async with Step(table):  # the next step reuses the object decoded before
            value = table.load(b"sku-1", decode)
            assert value == [1, 2, 3, 4, 5]
            table.store(b"sku-1", [*value, 6], encode)

    _run(journal, scenario)
    assert decodes == [b"1,2"]
    assert encodes == [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]]
    assert [e for e in journal.entries if e[0] == "changelog"] == [
        ("changelog", b"sku-1", b"1,2"),
        ("changelog", b"sku-1", b"1,2,3,4,5"),
        ("changelog", b"sku-1", b"1,2,3,4,5,6"),
    ]


def test_bytes_replaced_behind_the_table_are_decoded_again() -> None:
    async def scenario(table: KeyedTable, topic: Any) -> None:
        table.set(b"sku-1", b"1")
        assert table.load(b"sku-1", _decode) == [1]
        table.table.data[b"sku-1"] = b"7,8"  # what a changelog restore does
        assert table.load(b"sku-1", _decode) == [7, 8]

    _run(Journal(), scenario)


def test_a_failed_step_forgets_values_changed_in_place() -> None:
    async def scenario(table: KeyedTable, topic: Any) -> None:
        table.set(b"sku-1", b"1")
        with pytest.raises(ValueError, match="bad record"):
            async with Step(table):
                value = table.load(b"sku-1", _decode)
                assert value is not None
                value.append(99)
                table.store(b"sku-1", value, _encode)
                raise ValueError("bad record")
        assert table.load(b"sku-1", _decode) == [1]
        assert table.get(b"sku-1") == b"1"

    _run(Journal(), scenario)


def test_the_step_ends_only_once_kafka_has_its_changelog_writes() -> None:
    """faust acks a step's records when it ends: the state they produced must already be in Kafka."""
    journal = Journal()

    async def scenario(table: KeyedTable, topic: Any) -> None:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        journal.changelog_ack = ack

        async def step() -> None:
            async with Step(table) as s:
                table.set(b"sku-1", b"3")
                s.send(topic, b"o1", b"reserved")

        running = asyncio.create_task(step())
        for _ in range(20):  # let the step run as far as it can
            await asyncio.sleep(0)
        assert ("changelog", b"sku-1", b"3") in journal.entries
        assert not running.done(), "the step ended before its changelog write was acknowledged"
        ack.set_result(None)
        await asyncio.wait_for(running, 5)

    _run(journal, scenario)


def test_a_failed_changelog_write_puts_the_state_back_and_leaves_the_records_uncommitted() -> None:
    journal = Journal()
    events = _events(3)

    async def scenario(table: KeyedTable, topic: Any) -> None:
        table.set(b"sku-1", b"10")
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("changelog partition offline"))
        journal.changelog_ack = failed
        with pytest.raises(RuntimeError, match="changelog partition offline"):
            async with Step(table, events=events):
                table.set(b"sku-1", b"7")
        assert table.get(b"sku-1") == b"10"  # read again, the records are applied again

    _run(journal, scenario)
    assert [e.message.tracked for e in events] == [False, False, False]


def test_a_failed_or_cancelled_step_leaves_its_records_uncommitted_and_a_good_one_does_not() -> None:
    journal = Journal()
    failed, cancelled, good = _events(2), _events(2), _events(2)

    async def scenario(table: KeyedTable, topic: Any) -> None:
        with pytest.raises(ValueError, match="bad record"):
            async with Step(table, events=failed):
                table.set(b"sku-1", b"1")
                raise ValueError("bad record")

        async def stuck() -> None:
            async with Step(table, events=cancelled):
                table.set(b"sku-1", b"2")
                await asyncio.Event().wait()  # a worker stopping mid-step

        task = asyncio.create_task(stuck())
        await until(lambda: table.get(b"sku-1") == b"2")  # mid-step
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert table.get(b"sku-1") is None
        async with Step(table, events=good):
            table.set(b"sku-1", b"3")

    _run(journal, scenario)
    assert [e.message.tracked for e in failed + cancelled] == [False] * 4
    assert [e.message.tracked for e in good] == [True, True]


def test_upstream_tables_are_written_only_once_the_others_are_acknowledged() -> None:
    """An order's lifecycle state must never reach Kafka ahead of the allocation derived from it."""
    journal = Journal()

    async def scenario(table: KeyedTable, topic: Any) -> None:
        lifecycle = KeyedTable(table.table.app, "unit-step-lifecycle", 4)
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        journal.changelog_ack = ack

        async def step() -> None:
            async with Step(table, upstream=[lifecycle]):
                lifecycle.set(b"order-1", b"paid")
                table.set(b"order-1", b"allocated")

        running = asyncio.create_task(step())
        for _ in range(20):  # let the step run as far as it can
            await asyncio.sleep(0)
        assert journal.entries == [("changelog", b"order-1", b"allocated")], "upstream went out first"
        journal.changelog_ack = None  # from now on each write is acknowledged at once
        ack.set_result(None)
        await asyncio.wait_for(running, 5)
        assert journal.entries[1:] == [("changelog", b"order-1", b"paid")]

    _run(journal, scenario)


def test_a_failed_downstream_write_leaves_the_upstream_unwritten_and_every_table_put_back() -> None:
    journal = Journal()
    events = _events(2)

    async def scenario(table: KeyedTable, topic: Any) -> None:
        lifecycle = KeyedTable(table.table.app, "unit-step-lifecycle", 4)
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("changelog partition offline"))
        journal.changelog_ack = failed
        with pytest.raises(RuntimeError, match="changelog partition offline"):
            async with Step(table, events=events, upstream=[lifecycle]):
                lifecycle.set(b"order-1", b"paid")
                table.set(b"order-1", b"allocated")
        assert (table.get(b"order-1"), lifecycle.get(b"order-1")) == (None, None)

    _run(journal, scenario)
    assert journal.entries == [("changelog", b"order-1", b"allocated")], "the upstream must not go out"
    assert [e.message.tracked for e in events] == [False, False]


def test_retired_holds_sit_in_their_skus_partition_and_are_written_only_when_they_change() -> None:
    journal = Journal()

    async def scenario(table: KeyedTable, topic: Any) -> None:
        history = KeyedTable(table.table.app, "unit-step-holds", 8, within=PastHolds.SEP)
        for n in range(40):
            sku = f"SKU-{n}".encode()
            key = sku + PastHolds.SEP + b"t:shopee:O1|L1"
            assert history.partition(key) == key_partition(sku, 8)
        past = PastHolds(history, b"SKU-1", 1_000)
        hold = Hold("t:shopee:O1|L1", HoldState.SHORT, 2)
        with mock.patch.object(history.table, "send_changelog", side_effect=journal.changelog):
            async with Step(history) as step:
                past.put(hold)
                step.send(topic, b"o1", b"short")
            later = PastHolds(history, b"SKU-1", 5_000)
            async with Step(history):
                assert later.get(hold.hold_id) == hold
                later.put(Hold("t:shopee:O1|L1", HoldState.SHORT, 2))  # a duplicate reserve found it: no change
            assert PastHolds(history, b"SKU-2", 2_000).get(hold.hold_id) is None  # another SKU's hold of the same id

    _run(journal, scenario)
    assert [e for e in journal.entries if e[0] == "changelog"] == [
        ("changelog", b"SKU-1\x00t:shopee:O1|L1", b'["short",2,null,null,false,1000]')
    ]


def test_a_retired_hold_is_forgotten_after_its_keep_time_and_a_shipped_one_after_its_own() -> None:
    keep = {HoldState.SHIPPED: 10_000, None: 1_000}
    short = orjson.dumps([*Hold("h1", HoldState.SHORT, 1).fields(), 5_000])
    shipped = orjson.dumps([*Hold("h2", HoldState.SHIPPED, 1, "WH-A").fields(), 5_000])
    assert not PastHolds.due(short, 5_999, keep)
    assert PastHolds.due(short, 6_000, keep)
    assert not PastHolds.due(shipped, 6_000, keep)  # a return can still come back
    assert PastHolds.due(shipped, 15_000, keep)


def test_forgetting_retired_holds_writes_a_tombstone_for_each_due_one_only() -> None:
    journal = Journal()
    keep = {HoldState.SHIPPED: 10_000, None: 1_000}

    async def scenario(table: KeyedTable, topic: Any) -> None:
        history = KeyedTable(table.table.app, "unit-step-holds", 8, within=PastHolds.SEP)
        with mock.patch.object(history.table, "send_changelog", side_effect=journal.changelog):
            async with Step(history):
                PastHolds(history, b"SKU-1", 0).put(Hold("o1|L1", HoldState.SHORT, 1))
                PastHolds(history, b"SKU-1", 0).put(Hold("o2|L1", HoldState.SHIPPED, 1, "WH-A"))
                PastHolds(history, b"SKU-2", 4_000).put(Hold("o3|L1", HoldState.RELEASED, 0))
            journal.entries.clear()
            async with Step(history):
                not_mine = history.partition(b"SKU-1" + PastHolds.SEP)
                mine = lambda key: history.partition(key) != not_mine  # noqa: E731
                assert PastHolds.forget(history, history.items(), 2_000, keep, mine) == (0, 0)  # another worker's
                assert PastHolds.forget(history, history.items(), 2_000, keep) == (1, 0)  # o2 kept, retired at 0
        assert PastHolds(history, b"SKU-1", 0).get("o1|L1") is None
        assert PastHolds(history, b"SKU-1", 0).get("o2|L1") is not None
        assert PastHolds(history, b"SKU-2", 0).get("o3|L1") is not None

    _run(journal, scenario)
    assert journal.entries == [("changelog", b"SKU-1\x00o1|L1", None)]


def test_a_table_value_takes_the_memory_of_its_length_not_of_the_buffer_it_was_encoded_in() -> None:
    journal = Journal()
    kept: list[int] = []

    async def scenario(table: KeyedTable, topic: Any) -> None:
        tracemalloc.start()
        try:
            values = [orjson.dumps(["short", 2, None, None, False, n]) for n in range(2_000)]  # 4 KB buffers
            async with Step(table):
                for n, value in enumerate(values):
                    table.set(f"k{n}".encode(), value)
            del values, value
            # what this file allocated and is still alive: the keys, and the encoder's buffers if kept
            here = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, __file__)])
            kept.append(sum(stat.size for stat in here.statistics("filename")))
        finally:
            tracemalloc.stop()
        assert table.get(b"k7") == orjson.dumps(["short", 2, None, None, False, 7])

    _run(journal, scenario)
    assert kept[0] < 2_000 * 512, f"{kept[0] / 2_000:.0f} bytes kept per 32-byte value"


def test_the_retired_holds_scan_waits_until_the_oldest_one_left_can_be_due() -> None:
    gate = ScanGate(shortest_keep_ms=1_000)
    assert not gate.skip(0)  # after a start: scan
    gate.scanned(now_ms=5_000, next_due_ms=5_200)  # retired at 4,200, kept 1,000
    assert gate.skip(5_199) and not gate.skip(5_200)
    gate.scanned(now_ms=5_000, next_due_ms=9_000)  # what is retired from now on is due before that
    assert gate.skip(5_999) and not gate.skip(6_000)
    gate.scanned(now_ms=6_000, next_due_ms=None)  # nothing left: what is retired from now on
    assert gate.skip(6_999) and not gate.skip(7_000)
    gate.reset()  # an assignment may have restored older holds
    assert not gate.skip(6_001)


def test_forgetting_reports_when_the_oldest_retired_hold_left_was_retired() -> None:
    keep = {HoldState.SHIPPED: 10_000, None: 1_000}
    items = [
        (b"SKU-1\x00a", orjson.dumps([*Hold("a", HoldState.SHORT, 1).fields(), 100])),  # due at 1,100
        (b"SKU-1\x00b", orjson.dumps([*Hold("b", HoldState.SHIPPED, 1, "WH-A").fields(), 300])),  # at 10,300
        (b"SKU-1\x00c", orjson.dumps([*Hold("c", HoldState.RELEASED, 0).fields(), 900])),  # at 1,900
    ]
    table = mock.Mock()
    assert PastHolds.forget(table, items, 1_500, keep) == (1, 300)
    assert [c.args[0] for c in table.delete.call_args_list] == [b"SKU-1\x00a"]
    assert PastHolds.retired_at(items[2][1]) == 900
