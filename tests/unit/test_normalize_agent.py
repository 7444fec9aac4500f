"""The faust normalize agent, run with agent.test_context(): no broker.

``streams.app.send_record`` (where every output of a step goes to the producer, as bytes) is
replaced by a fake that records the bytes, so the tests see what would reach Kafka.

faust's test_context names each message after the agent's original channel. Our agent subscribes to
all raw.orders.<channel> topics at once, which faust cannot name, so a plain put() arrives as topic
"<internal>" (channel "unknown" -> no_adapter). Pointing the wrapper's original_channel at one raw
topic makes put() carry that topic's name, so the shopee adapter is exercised end to end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from oms.settings import Settings
from schemas.order import DeadLetter, OrderEvent
from streams.app import create_app, raw_input_of
from tests.unit.fakes import Sent, run_agent

SAMPLE = resources.files("connectors").joinpath("samples", "shopee_order_detail.json").read_bytes()
RECEIVED_AT = 1_795_824_070_000


pytestmark = pytest.mark.usefixtures("clean_env")


def _run(scenario: Callable[[faust.App, Any], Awaitable[None]], settings: Settings | None = None) -> list[Sent]:
    """Run scenario(app, agent-under-test); returns what the agent sent, serialized, in order."""
    return run_agent("normalize", scenario, settings)


def _shopee(app: faust.App, agent: Any, prefix: str = "") -> None:
    agent.original_channel = app.topic(f"{prefix}raw.orders.shopee")


def test_agent_subscribes_to_every_raw_topic_with_the_prefix() -> None:
    async def topics_of() -> set[str]:
        app = create_app(Settings(topic_prefix="t9."))
        return set(app.agents["normalize"].channel.topics)

    names = asyncio.run(topics_of())
    assert "t9.raw.orders.shopee" in names
    assert "t9.raw.orders.lazada" in names
    assert all(name.startswith("t9.raw.orders.") for name in names)


def test_valid_shopee_record_is_sent_to_order_changes_as_avro_keyed_by_order_key() -> None:
    async def scenario(app: faust.App, agent: Any) -> None:
        _shopee(app, agent)
        await agent.put(value=SAMPLE, key=b"2611270A1B2C3D", headers={"received_at": str(RECEIVED_AT).encode()})
        assert agent.results == {0: 1}  # the agent yields the number of events it sent

    sent = _run(scenario)
    assert len(sent) == 1
    assert sent[0].topic == "order-changes.v1"
    assert sent[0].key == b"default:shopee:2611270A1B2C3D"
    assert sent[0].value[:2] == b"\xc3\x01"
    event = OrderEvent.decode(sent[0].value)
    assert event.tenant == "default"
    assert event.total_minor == 5980
    assert event.ingest_time_ms == RECEIVED_AT
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.shopee", 0, 0)


def test_malformed_record_is_sent_to_dead_letters_with_its_original_bytes() -> None:
    async def scenario(app: faust.App, agent: Any) -> None:
        _shopee(app, agent)
        await agent.put(value=b'{"response": ', key=b"k1", headers={"shop": b"777"})
        assert agent.results == {0: 0}

    sent = _run(scenario)
    assert len(sent) == 1
    assert sent[0].topic == "dead-letters.v1"
    assert sent[0].key == b"raw.orders.shopee"
    letter = DeadLetter.decode(sent[0].value)
    assert letter.reason_code == "malformed_json"
    assert letter.channel == "shopee"
    assert letter.original == b'{"response": '
    assert letter.source_key == b"k1"
    assert letter.source_headers == {"shop": b"777"}
    assert letter.dead_letter_id == "raw.orders.shopee:0:0"


def test_valid_and_malformed_records_in_one_stream_go_to_their_own_topics_in_order() -> None:
    async def scenario(app: faust.App, agent: Any) -> None:
        _shopee(app, agent)
        await agent.put(value=SAMPLE, key=b"a")
        await agent.put(value=b"\xff\xfe", key=b"b")
        await agent.put(value=SAMPLE, key=b"c")
        assert agent.results == {0: 1, 1: 0, 2: 1}

    sent = _run(scenario)
    assert [s.topic for s in sent] == ["order-changes.v1", "dead-letters.v1", "order-changes.v1"]
    assert DeadLetter.decode(sent[1].value).reason_code == "invalid_encoding"
    assert [OrderEvent.decode(sent[i].value).raw.offset for i in (0, 2)] == [0, 2]
    # the same order state twice: same event id, so applying the replay changes nothing downstream
    assert OrderEvent.decode(sent[0].value).event_id == OrderEvent.decode(sent[2].value).event_id


def test_agent_uses_the_topic_prefix_and_tenant() -> None:
    async def scenario(app: faust.App, agent: Any) -> None:
        _shopee(app, agent, "t9.")
        await agent.put(value=SAMPLE, key=b"a")
        await agent.put(value=b"nope", key=b"b")

    sent = _run(scenario, Settings(topic_prefix="t9.", tenant="acme"))
    assert [s.topic for s in sent] == ["t9.order-changes.v1", "t9.dead-letters.v1"]
    assert sent[0].key == b"acme:shopee:2611270A1B2C3D"
    assert sent[1].key == b"t9.raw.orders.shopee"
    assert DeadLetter.decode(sent[1].value).tenant == "acme"


def test_record_from_an_unnamed_topic_is_dead_lettered_as_no_adapter_for_channel_unknown() -> None:
    async def scenario(app: faust.App, agent: Any) -> None:
        await agent.put(value=SAMPLE, key=b"k")  # test_context names it "<internal>"

    sent = _run(scenario)
    assert len(sent) == 1
    assert sent[0].topic == "dead-letters.v1"
    letter = DeadLetter.decode(sent[0].value)
    assert (letter.reason_code, letter.channel) == ("no_adapter", "unknown")
    assert letter.original == SAMPLE


def test_record_with_an_amount_beyond_avro_long_is_dead_lettered_and_the_agent_keeps_running() -> None:
    body = json.loads(SAMPLE)
    body["response"]["order_list"][0]["total_amount"] = 1e19
    huge = json.dumps(body).encode()
    crash: list[BaseException] = []

    async def scenario(app: faust.App, agent: Any) -> None:
        _shopee(app, agent)
        try:
            await agent.put(value=huge, key=b"a")
            await agent.put(value=SAMPLE, key=b"b")
        except Exception as exc:
            crash.append(exc)

    sent = _run(scenario)
    assert crash == []
    assert [s.topic for s in sent] == ["dead-letters.v1", "order-changes.v1"]


# --- raw_input_of, with a fake event ---------------------------------------------------------------------


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
