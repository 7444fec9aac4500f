"""`oms simulate` through the real broker and worker: every simulated raw record is accounted for, as
canonical changes or one dead letter, counted by its raw position (as in test_reconciliation)."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import Message

from connectors.simulator import SimEvent, Simulator, run_to_kafka
from infra.process import ManagedProcess
from oms.settings import Settings
from schemas.order import DeadLetter, decode_changes
from schemas.topics import DEAD_LETTERS, ORDER_CHANGES
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

Position = tuple[str, int, int]


def test_two_hundred_simulated_events_are_all_accounted_for_on_changes_or_dead_letters(
    kafka_topics: Settings, worker: ManagedProcess
) -> None:
    simulator = Simulator(seed=42, duplicate_rate=0.05, late_update_rate=0.1, malformed_rate=0.03)
    positions: dict[Position, SimEvent] = {}

    def on_ack(event: SimEvent, topic: str, partition: int, offset: int) -> None:
        positions[(topic, partition, offset)] = event

    summary = run_to_kafka(kafka_topics, simulator, 200, rate=0, on_ack=on_ack)
    assert summary.sent == 200 and summary.outcomes["acknowledged"] == 200 and not summary.errors
    assert len(positions) == 200
    kinds = Counter(event.kind for event in positions.values())
    assert kinds["order"] and kinds["status"] and kinds["duplicate"] and kinds["malformed"], kinds

    changes: Counter[Position] = Counter()
    dead: dict[Position, DeadLetter] = {}

    def tally(messages: list[Message]) -> None:
        changes.clear()
        dead.clear()
        for m in messages:
            if m.topic().endswith(ORDER_CHANGES.name):
                for change in decode_changes(m.value()):
                    changes[(change.raw.topic, change.raw.partition, change.raw.offset)] += 1
            else:
                letter = DeadLetter.decode(m.value())
                if letter.stage == "normalize":
                    dead[(letter.source_topic, letter.source_partition, letter.source_offset)] = letter

    def all_accounted(messages: list[Message]) -> bool:
        tally(messages)
        return all(p in changes or p in dead for p in positions)

    prefix = kafka_topics.topic_prefix
    outputs = read_topic(
        kafka_topics, [ORDER_CHANGES.full_name(prefix), DEAD_LETTERS.full_name(prefix)], all_accounted, timeout=120
    )
    tally(outputs)
    missing = [p for p in positions if p not in changes and p not in dead]
    assert not missing, f"lost: {missing}\n{worker.log_tail()}"
    assert not [p for p in positions if p in changes and p in dead], "both a change and a dead letter"
    for position, event in positions.items():
        letter = dead.get(position)
        if event.kind == "malformed":
            assert letter is not None and letter.original == event.body
        elif letter is not None:  # pushes whose adapters are still being written may be refused, nothing else
            assert letter.reason_code == "unsupported_shape", (event.channel, event.kind, letter.reason)
            assert event.kind in ("status", "duplicate") and event.revision > 0
    orders = [p for p, e in positions.items() if e.kind == "order"]
    assert all(p in changes for p in orders), "every simulated order normalizes"
