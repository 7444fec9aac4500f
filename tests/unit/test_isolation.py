"""A record that makes an agent's own logic raise becomes a dead letter; the records around it go on.

``isolating`` with stand-in events, then the orders and inventory agents
through ``agent.test_context()`` (no broker), with ``streams.app.send_record`` replaced by a fake that
records what would reach Kafka, and a fault planted in the agents' logic for one order or one SKU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any
from unittest import mock

import faust
import pytest

import streams.app as app_module
from schemas.order import DeadLetter, OrderEvent, decode_changes, encode_change_batch
from streams import lifecycle
from streams.allocation import StockCommand, Verb
from streams.isolation import OwnLogicFailed, isolating, own_logic
from streams.stock_records import decode_command, decode_commands, decode_decisions, encode_command_batch
from tests.unit.fakes import Sent, run_agent
from tests.unit.test_allocation import _order

pytestmark = pytest.mark.usefixtures("clean_env")


def _event(value: bytes, offset: int = 0) -> Any:
    return SimpleNamespace(value=value, message=SimpleNamespace(tracked=True, offset=offset, topic="t", partition=0))


def test_isolating_applies_records_one_by_one_after_a_failed_step_and_takes_apart_the_one_that_fails() -> None:
    events = [_event(b"a", 0), _event(b"bad", 1), _event(b"c", 2)]
    steps: list[list[bytes]] = []
    apart: list[bytes] = []

    async def run(batch: Sequence[Any]) -> int:
        steps.append([e.value for e in batch])
        with own_logic():
            if any(e.value == b"bad" for e in batch):
                for e in batch:
                    e.message.tracked = False  # what Step does when it undoes a step
                raise KeyError("boom")
        return len(batch)

    async def take_apart(event: Any, failed: OwnLogicFailed) -> int:
        assert isinstance(failed.cause, KeyError)
        assert event.message.tracked  # admitted again: its settling step moves the offset on
        apart.append(event.value)
        return 10

    done = asyncio.run(isolating(events, run, take_apart, "test"))
    assert steps == [[b"a", b"bad", b"c"], [b"a"], [b"bad"], [b"c"]]
    assert apart == [b"bad"]
    assert done == 1 + 10 + 1
    assert all(e.message.tracked for e in events)


def test_isolating_lets_failures_outside_the_agents_logic_through() -> None:
    async def run(batch: Sequence[Any]) -> int:
        raise ConnectionError("broker away")  # publishing or a changelog write: read again, not isolated

    async def take_apart(event: Any, failed: OwnLogicFailed) -> int:
        raise AssertionError("not the record's fault")

    with pytest.raises(ConnectionError):
        asyncio.run(isolating([_event(b"a")], run, take_apart, "test"))


def _run(agent_name: str, scenario: Callable[[faust.App, Any], Awaitable[None]]) -> list[Sent]:
    return run_agent(agent_name, scenario)


def _faulty_lifecycle(bad_key: str) -> Any:
    real = lifecycle.apply

    def apply(state: lifecycle.OrderState, change: Any) -> lifecycle.Step:
        if change.order_key == bad_key:
            raise ZeroDivisionError("planted fault")
        return real(state, change)

    return mock.patch.object(lifecycle, "apply", side_effect=apply)


def test_a_change_that_trips_the_orders_agent_is_a_dead_letter_and_the_others_in_its_batch_go_on() -> None:
    orders = [_order("shopee", n, [(f"SKU-{n}", 1)]) for n in range(3)]
    bad = orders[1]
    batch = encode_change_batch([o.encode() for o in orders])

    async def scenario(app: faust.App, agent: Any) -> None:
        agent.original_channel = app.topic("order-changes.v1")
        with _faulty_lifecycle(bad.order_key):
            await agent.put(value=batch, key=b"changes#0")
        await agent.put(value=bad.encode(), key=bad.order_key.encode())  # once fixed: replayed alone

    sent = _run("orders", scenario)
    letters = [DeadLetter.decode(s.value) for s in sent if s.topic == "dead-letters.v1"]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.reason_code == "processing_failed" and letter.stage == "orders"
    assert "ZeroDivisionError: planted fault" in letter.reason and "oms dlq replay" in letter.reason
    assert letter.dead_letter_id == "order-changes.v1:0:0:1"
    assert (letter.source_topic, letter.source_offset) == ("order-changes.v1", 0)
    assert letter.source_key == bad.order_key.encode()
    [change] = decode_changes(letter.original)  # the change's own bytes, a record its topic takes alone
    assert isinstance(change, OrderEvent) and change.event_id == bad.event_id
    published = [OrderEvent.decode(s.value).order_key for s in sent if s.topic == "orders.v1"]
    assert published == [orders[0].order_key, orders[2].order_key, bad.order_key]  # the replay went through
    commanded = [c.sku for s in sent if s.topic == "stock-commands.v1" for c in decode_commands(s.value)]
    assert list(dict.fromkeys(commanded)) == ["SKU-0", "SKU-2", "SKU-1"]  # none for the failed one until its replay


def test_a_command_that_trips_the_inventory_agent_is_a_dead_letter_and_the_others_are_answered() -> None:
    commands = [StockCommand(Verb.RESERVE, f"SKU-{n}", f"t1:shopee:{n}|0", 1, "order") for n in range(3)]
    real = app_module._apply

    def apply(stock: Any, item: Any) -> Any:
        if item.sku == "SKU-1":
            raise RuntimeError("planted fault")
        return real(stock, item)

    async def scenario(app: faust.App, agent: Any) -> None:
        agent.original_channel = app.topic("stock-commands.v1")
        with mock.patch.object(app_module, "_apply", side_effect=apply):
            await agent.put(value=encode_command_batch(commands), key=b"commands#0")

    sent = _run("inventory", scenario)
    letters = [DeadLetter.decode(s.value) for s in sent if s.topic == "dead-letters.v1"]
    assert [(x.reason_code, x.dead_letter_id, x.source_key) for x in letters] == [
        ("processing_failed", "stock-commands.v1:0:0:1", b"SKU-1")
    ]
    assert decode_command(letters[0].original) == commands[1]
    answered = [d.sku for s in sent if s.topic == "reservations.v1" for d in decode_decisions(s.value)]
    assert sorted(answered) == ["SKU-0", "SKU-2"]
