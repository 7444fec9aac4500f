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
