"""Dead letters can be listed and re-driven through normalization, once each, through the real broker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from connectors.raw_producer import RawProducer
from infra.process import ManagedProcess
from oms.dlq import REPLAY_HEADER, Selection, read_dead_letters, replay
from oms.runtime import settings_env
from oms.settings import Settings
from schemas.order import DeadLetter
from schemas.topics import DEAD_LETTERS
from tests.integration.conftest import read_topic, shopee_order, unique

pytestmark = pytest.mark.integration


def _letters(settings: Settings, done: Callable[[list[DeadLetter]], bool]) -> list[DeadLetter]:
    topic = DEAD_LETTERS.full_name(settings.topic_prefix)
    messages = read_topic(settings, topic, lambda ms: done([DeadLetter.decode(m.value()) for m in ms]))
    return [DeadLetter.decode(m.value()) for m in messages]


def test_a_dead_letter_is_listed_re_driven_once_and_fails_again_as_a_letter_pointing_at_the_replay(
    kafka_topics: Settings, worker: ManagedProcess, producer: RawProducer
) -> None:
    delivery = unique("dlq-")
    body = shopee_order(unique("DLQ"), order_status="TELEPORTED")
    producer.send("shopee", body, shop="s1", delivery_id=delivery)
    producer.flush()

    def first(letters: list[DeadLetter]) -> bool:
        return any(letter.source_key == delivery.encode() for letter in letters)

    original = next(letter for letter in _letters(kafka_topics, first) if letter.source_key == delivery.encode())
    assert original.reason_code == "unknown_status"

    listed = subprocess.run(
        [sys.executable, "-m", "oms.cli", "dlq", "list", "--reason", "unknown_status", "--format", "json"],
        env=settings_env(kafka_topics),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert original.dead_letter_id in listed.stdout

    only_this = Selection(ids=frozenset({original.dead_letter_id}))
    assert replay(kafka_topics, only_this).replayed == [original.dead_letter_id]
    again = replay(kafka_topics, only_this)
    assert again.replayed == [] and again.skipped == [original.dead_letter_id], "re-driven once unless forced"

    def replayed(letters: list[DeadLetter]) -> bool:
        return any(letter.source_headers.get(REPLAY_HEADER) == original.dead_letter_id.encode() for letter in letters)

    second = [
        letter
        for letter in _letters(kafka_topics, replayed)
        if letter.source_headers.get(REPLAY_HEADER) == original.dead_letter_id.encode()
    ]
    assert len(second) == 1, f"the re-driven record must be normalized again; worker log:\n{worker.log_tail()}"
    assert second[0].original == body and second[0].source_key == delivery.encode()
    assert second[0].dead_letter_id != original.dead_letter_id
    assert any(
        letter.dead_letter_id == second[0].dead_letter_id
        for letter in read_dead_letters(kafka_topics, Selection(reason_code="unknown_status"))
    )


def test_a_stock_command_the_inventory_refuses_is_a_dead_letter_apart_from_an_undecodable_one(
    kafka_topics: Settings, worker: ManagedProcess
) -> None:
    from confluent_kafka import Producer

    from schemas.topics import STOCK_COMMANDS
    from streams.allocation import StockCommand, Verb
    from streams.stock_records import encode_command

    sku = unique("DLQ-SKU-")
    refused = encode_command(StockCommand(Verb.RESERVE, sku, f"{unique('order-')}|1", quantity=0, cause="order"))
    garbage = b"\x00not a stock command"
    producer = Producer({"bootstrap.servers": kafka_topics.kafka_bootstrap})
    for value in (refused, garbage):
        producer.produce(STOCK_COMMANDS.full_name(kafka_topics.topic_prefix), key=sku.encode(), value=value)
    assert producer.flush(10) == 0

    def mine(letters: list[DeadLetter]) -> list[DeadLetter]:
        return [letter for letter in letters if letter.stage == "inventory" and letter.source_key == sku.encode()]

    letters = mine(_letters(kafka_topics, lambda found: len(mine(found)) >= 2))
    by_original = {letter.original: letter for letter in letters}
    assert by_original[refused].reason_code == "invalid_command"
    assert "quantity must be positive" in by_original[refused].reason
    assert by_original[garbage].reason_code == "undecodable"
