"""The inventory stage's records: batches and single records decode the same way, in order."""

from __future__ import annotations

from streams.allocation import StockCommand, Verb
from streams.inventory import Decision, HoldState
from streams.stock_records import (
    decode_commands,
    decode_decisions,
    encode_command,
    encode_commands,
    encode_decision,
    encode_decisions,
)

COMMANDS = [
    StockCommand(Verb.RESERVE, "SKU-A", "t:shopee:1|0", 2, "order", ("WH-1", "WH-2"), 1_800_000_000_000),
    StockCommand(Verb.PAY, "SKU-B", "t:shopee:1|1", 1, "paid"),
    StockCommand(Verb.RELEASE, "SKU-A", "t:lazada:9|0", 3, "expire"),
]
DECISIONS = [
    Decision("t:shopee:1|0", "SKU-A", 2, HoldState.RESERVED, "WH-1", 5),
    Decision("t:shopee:1|1", "SKU-B", 1, HoldState.SHORT, None, 0),
]


def test_a_batch_of_commands_keeps_every_field_and_the_order() -> None:
    assert decode_commands(encode_commands(COMMANDS)) == COMMANDS


def test_a_single_command_record_is_still_read_as_a_batch_of_one() -> None:
    assert decode_commands(encode_command(COMMANDS[0])) == COMMANDS[:1]


def test_a_batch_of_decisions_keeps_every_field_and_the_order() -> None:
    assert decode_decisions(encode_decisions(DECISIONS)) == DECISIONS
    assert decode_decisions(encode_decision(DECISIONS[1])) == DECISIONS[1:]


def test_an_empty_batch_is_valid_and_empty() -> None:
    assert decode_commands(encode_commands([])) == []
