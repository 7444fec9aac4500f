"""``oms dlq list|replay``: see what was refused and why, and re-drive it after a fix.

Replay produces each selected dead letter's original bytes, key and headers back to its source topic
(plus ``oms_replay_of``), so it goes through normalization again with the fixed code. A dead letter
is re-driven once: Redis remembers replayed ids (``--force`` re-drives again). If it fails again, it
comes back as a new dead letter pointing at the replayed record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import redis
from confluent_kafka import Producer

from infra.process import ServiceError
from oms.routing_ops import read_topic
from oms.settings import Settings
from schemas.codec import CodecError
from schemas.order import DeadLetter
from schemas.topics import DEAD_LETTERS

REPLAY_HEADER = "oms_replay_of"


@dataclass(frozen=True)
class Selection:
    channel: str | None = None
    reason_code: str | None = None
    ids: frozenset[str] = frozenset()

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.channel is None or letter.channel == self.channel)
            and (self.reason_code is None or letter.reason_code == self.reason_code)
            and (not self.ids or letter.dead_letter_id in self.ids)
        )


def read_dead_letters(settings: Settings, selection: Selection, idle_timeout: float = 2.0) -> Iterator[DeadLetter]:
    """Every dead letter on the topic from the start to its current end, filtered."""

    for msg in read_topic(settings, DEAD_LETTERS.full_name(settings.topic_prefix), idle_timeout, must_reach_end=False):
        try:
            letter = DeadLetter.decode(msg.value() or b"")
        except (CodecError, ValueError):
            continue  # not ours to show; the topic has one writer per stage
        if selection.matches(letter):
            yield letter


def _replayed_key(settings: Settings, dead_letter_id: str) -> str:
    return f"{settings.topic_prefix}oms:dlq:replayed:{dead_letter_id}"


@dataclass(frozen=True)
class ReplayResult:
    replayed: list[str]
    skipped: list[str]


def replay(settings: Settings, selection: Selection, *, force: bool = False, dry_run: bool = False) -> ReplayResult:
    """Re-drive the selected dead letters to their source topics; once each unless ``force``."""
    marks = redis.Redis.from_url(settings.redis_url)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    replayed, skipped = [], []
    for letter in read_dead_letters(settings, selection):
        key = _replayed_key(settings, letter.dead_letter_id)
        if not force and marks.exists(key):
            skipped.append(letter.dead_letter_id)
            continue
        if not dry_run:
            headers: list[tuple[str, str | bytes | None]] = [
                (k, v) for k, v in letter.source_headers.items() if k != REPLAY_HEADER
            ]
            headers.append((REPLAY_HEADER, letter.dead_letter_id.encode()))
            producer.produce(letter.source_topic, key=letter.source_key, value=letter.original, headers=headers)
        replayed.append(letter.dead_letter_id)
    if not dry_run and replayed:
        if producer.flush(30) > 0:
            raise ServiceError("Kafka did not acknowledge the replayed records within 30 s; nothing marked, retry")
        pipe = marks.pipeline(transaction=False)
        for dead_letter_id in replayed:
            pipe.set(_replayed_key(settings, dead_letter_id), b"1")
        pipe.execute()
    marks.close()
    return ReplayResult(replayed, skipped)
