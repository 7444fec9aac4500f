"""Avro conversion of the inventory stage's records, at the Kafka edge of the pure cores."""

from __future__ import annotations

from typing import Any

from schemas.codec import codec, decode_records
from schemas.order import reservation_records
from streams.allocation import Allocation, StockCommand, Verb
from streams.inventory import Decision, HoldState, Movement


def encode_command(command: StockCommand) -> bytes:
    return codec("stock_command").encode(_command_record(command))


def _command_record(command: StockCommand) -> dict[str, Any]:
    return {
        "verb": command.verb.value,
        "sku": command.sku,
        "hold_id": command.hold_id,
        "order_key": command.order_key,
        "quantity": command.quantity,
        "cause": command.cause,
        "warehouses": list(command.warehouses),
        "expires_at_ms": command.expires_at_ms,
    }


def decode_command(data: bytes) -> StockCommand:
    return _command(codec("stock_command").decode(data))


def encode_command_batch(commands: list[StockCommand]) -> bytes:
    """Several commands (all for SKUs of one inventory partition) as one stock-commands.v1 record."""
    return codec("stock_command_batch").encode({"commands": [_command_record(c) for c in commands]})


def decode_commands(data: bytes) -> list[StockCommand]:
    """A stock-commands.v1 record: one command, or a batch of them in order."""
    return [_command(r) for r in decode_records(data, "stock_command", "stock_command_batch", "commands")]


def _command(r: dict[str, Any]) -> StockCommand:
    return StockCommand(
        Verb(r["verb"]), r["sku"], r["hold_id"], r["quantity"], r["cause"], tuple(r["warehouses"]), r["expires_at_ms"]
    )


def encode_decision(decision: Decision) -> bytes:
    return codec("reservation").encode(_decision_record(decision))


def _decision_record(decision: Decision) -> dict[str, Any]:
    return {
        "hold_id": decision.hold_id,
        "order_key": decision.order_key,
        "sku": decision.sku,
        "quantity": decision.quantity,
        "state": decision.state.value,
        "warehouse": decision.warehouse,
        "available": decision.available,
    }


def decode_decision(data: bytes) -> Decision:
    return _decision(codec("reservation").decode(data))


def encode_decision_batch(decisions: list[Decision]) -> bytes:
    """Several answers (all for orders of one reservations.v1 partition) as one record, in order."""
    return codec("reservation_batch").encode({"decisions": [_decision_record(d) for d in decisions]})


def decode_decisions(data: bytes) -> list[Decision]:
    """A reservations.v1 record's answers, in order: one, or an inventory step's batch for a partition."""
    return [_decision(r) for r in reservation_records(data)]


def _decision(r: dict[str, Any]) -> Decision:
    return Decision(r["hold_id"], r["sku"], r["quantity"], HoldState(r["state"]), r["warehouse"], r["available"])


def encode_movement(move: Movement) -> bytes:
    return codec("stock_movement").encode(
        {
            "sku": move.sku,
            "warehouse": move.warehouse,
            "cause": move.cause,
            "ref": move.ref,
            "on_hand_before": move.on_hand[0],
            "on_hand_after": move.on_hand[1],
            "reserved_before": move.reserved[0],
            "reserved_after": move.reserved[1],
        }
    )


def encode_allocation(allocation: Allocation) -> bytes:
    return codec("allocation").encode(allocation_record(allocation))


#: allocation line states whose units an order holds: still reserved, or already gone with the parcel.
#: A line can be answered "shipped" outright: after a crash the order's reserve is sent again, and the
#: stock answers with what became of the hold meanwhile.
HELD_STATES = (HoldState.RESERVED.value, HoldState.SHIPPED.value)


def allocation_record(allocation: Allocation) -> dict[str, Any]:
    """The allocations.v1 record of an order's allocation (also what routing reads of it)."""
    lines = [
        {
            "hold_id": hold,
            "sku": sku,
            "quantity": quantity,
            "state": allocation.decisions.get(hold, HoldState.RELEASED).value,
            "warehouse": allocation.warehouses.get(hold),
        }
        for hold, (sku, quantity) in sorted(allocation.lines.items())
    ]
    return {
        "order_key": allocation.order_key,
        "outcome": allocation.outcome.value,
        "policy": allocation.policy.value,
        "lines": lines,
    }


def decode_allocation(data: bytes) -> dict[str, Any]:
    return codec("allocation").decode(data)
