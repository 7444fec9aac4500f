"""The flash-sale verifier: after a load run, from the topics the pipeline wrote, check the promises.

- Nothing oversold: per SKU the units confirmed to orders (their newest allocation: allocated or
  partial lines that are reserved) never exceed the stock loaded, and the inventory ledger never shows
  a warehouse with more reserved than on hand.
- Every order decided: each order the load sent has an allocation outcome.
- Nothing lost: every raw record became canonical changes or one dead letter (raw inputs = records
  with changes + dead letters).

Sell-through (confirmed = stock where demand exceeded it) is reported, not enforced: under the default
reject policy a multi-line order holds its granted lines until its short line is refused, and that
stock can come back after the demand has passed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from oms.routing_ops import read_topic
from oms.settings import Settings
from schemas.codec import codec
from schemas.order import DeadLetter, decode_changes
from schemas.topics import ALLOCATIONS, DEAD_LETTERS, INVENTORY, ORDER_CHANGES, RAW_ORDERS
from streams.stock_records import HELD_STATES


@dataclass
class Verdict:
    orders_expected: int
    orders_decided: int
    undecided: list[str]
    stock_units: int
    confirmed_units: int
    oversold_units: int
    oversold_skus: list[str]
    ledger_movements: int
    ledger_below_zero: int
    raw_records: int
    raw_accounted: int
    lost_inputs: int
    dead_letters: int
    sold_out_skus: int
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.undecided and self.oversold_units == 0 and self.ledger_below_zero == 0 and self.lost_inputs == 0

    def lines(self) -> list[str]:
        return [
            f"orders decided       {self.orders_decided} of {self.orders_expected}"
            + (f"  UNDECIDED e.g. {self.undecided[:3]}" if self.undecided else ""),
            f"outcomes             {', '.join(f'{k} {v}' for k, v in sorted(self.outcomes.items()))}",
            f"units confirmed      {self.confirmed_units} of {self.stock_units} in stock; "
            f"{self.sold_out_skus} SKUs sold out",
            f"oversold units       {self.oversold_units}"
            + (f"  ON {self.oversold_skus[:5]}" if self.oversold_skus else ""),
            f"ledger               {self.ledger_movements} movements, {self.ledger_below_zero} below zero",
            f"raw inputs           {self.raw_records}: {self.raw_accounted} accounted for "
            f"({self.dead_letters} dead letters), lost {self.lost_inputs}",
        ]


def confirmed_units(outcomes: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Units held (or shipped) for orders per SKU, from each order's newest allocation record."""
    confirmed: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        if outcome["outcome"] in ("allocated", "partial"):
            for line in outcome["lines"]:
                if line["state"] in HELD_STATES:
                    confirmed[line["sku"]] += int(line["quantity"])
    return dict(confirmed)


def latest_allocations(settings: Settings) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for msg in read_topic(settings, ALLOCATIONS.full_name(settings.topic_prefix), 3.0, must_reach_end=False):
        key = msg.key()
        if key is not None:
            latest[key.decode()] = codec("allocation").decode(msg.value() or b"")
    return latest


def wait_decided(settings: Settings, expected: set[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """The newest allocation per order, once every expected order has one (or the deadline passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        latest = latest_allocations(settings)
        if expected <= set(latest) or time.monotonic() >= deadline:
            return latest
        time.sleep(2.0)  # polling a topic between full reads; the deadline bounds it


def _raw_count(settings: Settings) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "oms-verify-watermarks"})
    try:
        total = 0
        for spec in RAW_ORDERS:
            topic = spec.full_name(settings.topic_prefix)
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            for p in meta.partitions if meta is not None else {}:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high - low
        return total
    finally:
        consumer.close()


def verify(settings: Settings, expected: set[str], stock: Mapping[str, int], timeout_s: float = 300.0) -> Verdict:
    prefix = settings.topic_prefix
    outcomes = wait_decided(settings, expected, timeout_s)
    confirmed = confirmed_units(outcomes[k] for k in expected if k in outcomes)
    over = {sku: confirmed.get(sku, 0) - units for sku, units in stock.items() if confirmed.get(sku, 0) > units}
    movements = below_zero = 0
    for msg in read_topic(settings, INVENTORY.full_name(prefix), 3.0, must_reach_end=False):
        m = codec("stock_movement").decode(msg.value() or b"")
        movements += 1
        below_zero += m["on_hand_after"] - m["reserved_after"] < 0
    raw_names = {spec.full_name(prefix) for spec in RAW_ORDERS}
    refs: set[tuple[str, int, int]] = set()
    for msg in read_topic(settings, ORDER_CHANGES.full_name(prefix), 3.0, must_reach_end=False):
        for change in decode_changes(msg.value() or b""):
            refs.add((change.raw.topic, change.raw.partition, change.raw.offset))
    letters = 0
    for msg in read_topic(settings, DEAD_LETTERS.full_name(prefix), 3.0, must_reach_end=False):
        letter = DeadLetter.decode(msg.value() or b"")
        if letter.source_topic in raw_names:
            letters += 1
            refs.add((letter.source_topic, letter.source_partition, letter.source_offset))
    raw = _raw_count(settings)
    counts: dict[str, int] = defaultdict(int)
    for k in expected:
        if k in outcomes:
            counts[outcomes[k]["outcome"]] += 1
    return Verdict(
        orders_expected=len(expected),
        orders_decided=len(expected & set(outcomes)),
        undecided=sorted(expected - set(outcomes)),
        stock_units=sum(stock.values()),
        confirmed_units=sum(confirmed.get(sku, 0) for sku in stock),
        oversold_units=sum(over.values()),
        oversold_skus=sorted(over),
        ledger_movements=movements,
        ledger_below_zero=below_zero,
        raw_records=raw,
        raw_accounted=len({r for r in refs if r[0] in raw_names}),
        lost_inputs=max(0, raw - len({r for r in refs if r[0] in raw_names})),
        dead_letters=letters,
        sold_out_skus=sum(1 for sku, units in stock.items() if confirmed.get(sku, 0) >= units),
        outcomes=dict(counts),
    )
