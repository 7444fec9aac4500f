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
    from streams.app import CommandBatches, key_partition

    class Out:
        def __init__(self) -> None:
            self.sent: list[tuple[object, bytes, bytes]] = []

        def send(self, topic: object, key: bytes, value: bytes) -> None:
            self.sent.append((topic, key, value))

    from streams.stock_records import decode_commands

    batches = CommandBatches(4)
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
