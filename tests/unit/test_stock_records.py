"""The inventory stage's records: one command or one decision per record, every field kept."""

from __future__ import annotations

import pytest

from streams.allocation import StockCommand, Verb
from streams.inventory import Decision, HoldState
from streams.stock_records import decode_command, decode_decision, encode_command, encode_decision

COMMANDS = [
    StockCommand(Verb.RESERVE, "SKU-A", "t:shopee:1|0", 2, "order", ("WH-1", "WH-2"), 1_800_000_000_000),
    StockCommand(Verb.PAY, "SKU-B", "t:shopee:1|1", 1, "paid"),
    StockCommand(Verb.RELEASE, "SKU-A", "t:lazada:9|0", 3, "expire"),
]
DECISIONS = [
    Decision("t:shopee:1|0", "SKU-A", 2, HoldState.RESERVED, "WH-1", 5),
    Decision("t:shopee:1|1", "SKU-B", 1, HoldState.SHORT, None, 0),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_record_keeps_every_field(command: StockCommand) -> None:
    assert decode_command(encode_command(command)) == command


@pytest.mark.parametrize("decision", DECISIONS)
def test_a_decision_record_keeps_every_field(decision: Decision) -> None:
    assert decode_decision(encode_decision(decision)) == decision


def test_a_batch_of_commands_decodes_in_order_and_a_single_command_still_decodes() -> None:
    from streams.stock_records import decode_commands, encode_command_batch

    batch = [
        StockCommand(Verb.RESERVE, "SKU-A", "t:shopee:1|1", 2, "order", ("WH-SG-1", "*"), 1_800_000_000_000),
        StockCommand(Verb.RELEASE, "SKU-B", "t:shopee:2|1", 1, "cancel"),
        StockCommand(Verb.RESERVE, "SKU-A", "t:shopee:3|1", 1, "order"),
    ]
    assert decode_commands(encode_command_batch(batch)) == batch
    assert decode_commands(encode_command(batch[1])) == [batch[1]]


def test_commands_are_batched_by_the_partition_of_their_sku_in_order() -> None:
    from streams.app import command_batches, key_partition

    class Out:
        def __init__(self) -> None:
            self.sent: list[tuple[object, bytes, bytes]] = []

        def send(self, topic: object, key: bytes, value: bytes) -> None:
            self.sent.append((topic, key, value))

    from streams.stock_records import decode_commands

    batches = command_batches(4)
    commands = [StockCommand(Verb.RESERVE, f"FS-{i % 7:03d}", f"t:pos:{i}|1", 1, "order") for i in range(40)]
    for command in commands:
        batches.add(command)
    out = Out()
    batches.send(out, "stock-commands.v1")  # type: ignore[arg-type]
    assert 1 < len(out.sent) <= 4
    seen: list[StockCommand] = []
    for _, key, value in out.sent:
        decoded = decode_commands(value)
        partition = key_partition(key, 4)
        assert {key_partition(c.sku.encode(), 4) for c in decoded} == {partition}  # where its SKUs' state is
        seen += decoded
    for sku in {c.sku for c in commands}:
        assert [c for c in seen if c.sku == sku] == [c for c in commands if c.sku == sku]  # order kept per SKU
    assert sorted(c.hold_id for c in seen) == sorted(c.hold_id for c in commands)
    batches.send(out, "stock-commands.v1")  # type: ignore[arg-type]
    assert len(out.sent) <= 4  # emptied by the first send


def test_order_changes_are_batched_by_the_partition_of_their_order_and_a_lone_change_keeps_its_key() -> None:
    from schemas.order import OrderStatusUpdate, RawRef, decode_changes
    from streams.app import change_batches, key_partition

    sent: list[tuple[bytes, bytes]] = []

    class Out:
        def send(self, topic: object, key: bytes, value: bytes) -> None:
            sent.append((key, value))

    def push(order: int, n: int) -> OrderStatusUpdate:
        raw = RawRef(topic="raw.orders.pos", partition=0, offset=order * 10 + n)
        return OrderStatusUpdate(
            event_id=f"u{order}-{n}", tenant="t", channel="pos", shop_id="s", order_key=f"t:pos:{order}",
            channel_order_id=str(order), status="paid", channel_status="PAID", event_time_ms=1_800_000_000_000 + n,
            ingest_time_ms=1, raw=raw, original=b"{}",
        )  # fmt: skip

    changes = [push(order, n) for n in range(3) for order in range(12)]
    batches = change_batches(4)
    for change in changes:
        batches.add(change)
    batches.send(Out(), "order-changes.v1")  # type: ignore[arg-type]
    assert len(sent) <= 4
    seen = []
    for key, value in sent:
        decoded = decode_changes(value)
        assert {key_partition(c.order_key.encode(), 4) for c in decoded} == {key_partition(key, 4)}
        seen += decoded
    for order in map(str, range(12)):  # each order's changes in the order they were made
        assert [c for c in seen if c.channel_order_id == order] == [c for c in changes if c.channel_order_id == order]

    sent.clear()
    batches.add(changes[0])
    batches.send(Out(), "order-changes.v1")  # type: ignore[arg-type]
    assert sent == [(b"t:pos:0", changes[0].encode())], "a lone change is a record of its own, as before"


def test_reserve_answers_are_batched_by_the_partition_of_their_order_and_decode_in_order() -> None:
    from streams.app import answer_batches, key_partition
    from streams.stock_records import decode_decisions

    sent: list[tuple[bytes, bytes]] = []

    class Out:
        def send(self, topic: object, key: bytes, value: bytes) -> None:
            sent.append((key, value))

    answers = [Decision(f"t:pos:{i % 9}|{i}", f"SKU-{i % 4}", 1, HoldState.RESERVED, "WH-1", i) for i in range(30)]
    batches = answer_batches(4)
    for answer in answers:
        batches.add(answer)
    batches.send(Out(), "reservations.v1")  # type: ignore[arg-type]
    assert 1 < len(sent) <= 4
    seen: list[Decision] = []
    for key, value in sent:
        decoded = decode_decisions(value)
        assert {key_partition(d.order_key.encode(), 4) for d in decoded} == {key_partition(key, 4)}
        seen += decoded
    for order in {d.order_key for d in answers}:  # each order's answers in the order they were decided
        assert [d for d in seen if d.order_key == order] == [d for d in answers if d.order_key == order]
    assert decode_decisions(encode_decision(DECISIONS[1])) == [DECISIONS[1]]
