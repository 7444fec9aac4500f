"""The operator's side of routing: held orders (``oms holds``) and what-if replays (``oms replay``).

Both read ``routing.v1`` from the start to its current end and fold it per order: the newest record
of an order is where it stands. Holds are answered on ``hold-actions.v1``; the routing agent applies
the action and publishes the order's next decision, which ``act`` waits for and returns.

A replay routes the recorded inputs (every decision carries its ``Request``) again under other
rules, in the order they were first decided and at the time they were decided, with the node
capacity of the whole node (one simulated worker), and compares with what happened.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from infra.process import ServiceError
from oms.settings import Settings
from schemas.codec import CodecError
from schemas.topics import HOLD_ACTIONS, ROUTING
from streams import routing, routing_records
from streams.routing_rules import Rules


def read_topic(
    settings: Settings, topic: str, idle_timeout: float = 2.0, must_reach_end: bool = True
) -> Iterator[Message]:
    """Every record of ``topic`` from the start to the end it had when called (then stops).

    Quiet for ``idle_timeout`` before the end: ServiceError, or just stop if not ``must_reach_end``.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"oms-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ServiceError(f"topic {topic} does not exist yet: run `oms up` (or `oms topics create`)")
        ends = {}
        for p in meta.partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > 0:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + idle_timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                deadline = time.monotonic() + idle_timeout
                partition, offset = msg.partition(), msg.offset()
                if msg.error() is not None or partition is None or offset is None:
                    continue
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
                yield msg
        if ends and must_reach_end:
            raise ServiceError(f"{topic}: no record for {idle_timeout} s before its end; is Kafka up? (`oms status`)")
    finally:
        consumer.close()


def decisions(settings: Settings) -> Iterator[dict[str, Any]]:
    """Every routing.v1 record, oldest first per partition (undecodable ones are skipped)."""
    for msg in read_topic(settings, ROUTING.full_name(settings.topic_prefix)):
        try:
            yield routing_records.decode_decision(msg.value() or b"")
        except (CodecError, ValueError):
            continue


def latest(records: Iterator[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest record per order (decision ids are ``order_key#seq``)."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        seq = _seq(record)
        known = out.get(record["order_key"])
        if known is None or seq >= _seq(known):
            out[record["order_key"]] = record
    return out


def _seq(record: dict[str, Any]) -> int:
    return int(str(record["decision_id"]).rsplit("#", 1)[1])


def held(settings: Settings) -> list[dict[str, Any]]:
    """Orders whose newest decision is a hold, oldest first."""
    found = [r for r in latest(decisions(settings)).values() if r["outcome"] == "held"]
    return sorted(found, key=lambda r: r["decided_ms"])


def act(settings: Settings, order_key: str, action: str, actor: str, note: str, wait_s: float = 30.0) -> dict[str, Any]:
    """Release or cancel a held order; returns the decision that answers it.

    Refuses (ServiceError, saying why) an order that is not held now: a release of a routed order
    would do nothing, and cancelling a shipment in flight is the channel's business.
    """
    current = latest(r for r in decisions(settings) if r["order_key"] == order_key).get(order_key)
    if current is None:
        raise ServiceError(f"no routing decision for order {order_key!r}: check the key with `oms holds list`")
    if current["outcome"] != "held":
        raise ServiceError(f"order {order_key} is not held: it is {current['outcome']} ({current['summary']})")
    record = routing_records.new_action(order_key, action, actor, note)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    errors: list[str] = []
    producer.produce(
        HOLD_ACTIONS.full_name(settings.topic_prefix),
        key=order_key.encode(),
        value=routing_records.encode_action(record),
        on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
    )
    if producer.flush(15) or errors:
        raise ServiceError(f"the {action} of {order_key} was not stored by Kafka: {errors or 'timed out'}; try again")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        newer = latest(r for r in decisions(settings) if r["order_key"] == order_key).get(order_key)
        if newer is not None and _seq(newer) > _seq(current):
            return newer
        time.sleep(0.5)  # polling Kafka for the answer, bounded by the deadline
    raise ServiceError(
        f"the {action} of {order_key} is stored (action {record.action_id}) but no worker answered in {wait_s:.0f} s: "
        "is `oms worker` running? It is applied when one does."
    )


# ---------------------------------------------------------------------------------------- replay


@dataclass
class Tally:
    orders: int = 0
    routed: int = 0
    held: int = 0
    split: int = 0
    late: int = 0  # routed orders with a shipment handed over after the ship-by
    cost: Counter[str] = field(default_factory=Counter)  # currency -> minor units
    holds: Counter[str] = field(default_factory=Counter)

    def add(self, decision: routing.Decision, currency: str) -> None:
        self.orders += 1
        if decision.outcome == "routed":
            self.routed += 1
            self.split += decision.split
            self.late += decision.misses_ship_by
            self.cost[currency] += decision.cost_minor
        else:
            self.held += 1
            self.holds.update(h.code for h in decision.holds)


@dataclass
class Comparison:
    rules_before: set[str]
    rules_after: str
    markets: dict[str, tuple[Tally, Tally]]
    changed_node: int = 0
    changed_carrier: int = 0

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for market, (before, after) in sorted(self.markets.items()):
            for name, tally in (("happened", before), ("what-if", after)):
                out.append(
                    {
                        "market": market,
                        "run": name,
                        "orders": tally.orders,
                        "routed": tally.routed,
                        "held": tally.held,
                        "split_rate": round(tally.split / tally.routed, 4) if tally.routed else 0.0,
                        "ship_by_misses": tally.late,
                        "cost": dict(tally.cost),
                        "holds": dict(tally.holds),
                    }
                )
        return out


def replay(records: list[dict[str, Any]], rules: Rules, start_ms: int, end_ms: int) -> Comparison:
    """Route the orders first decided in [start_ms, end_ms) again under ``rules``; compare."""
    first: dict[str, dict[str, Any]] = {}
    newest: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["outcome"] == "cancelled":
            continue
        key = record["order_key"]
        if key not in first or _seq(record) < _seq(first[key]):
            first[key] = record
        if key not in newest or _seq(record) > _seq(newest[key]):
            newest[key] = record
    chosen = sorted(
        (r for r in first.values() if start_ms <= r["decided_ms"] < end_ms),
        key=lambda r: (r["decided_ms"], r["order_key"]),
    )
    workload = routing.Workload()
    result = Comparison(set(), rules.label, {})
    for record in chosen:
        happened = newest[record["order_key"]]
        request = routing.Request.from_json(record["request"])
        released = happened["actor"] if happened["outcome"] == "routed" else None
        what_if = routing.route(request, rules, workload, record["decided_ms"], released_by=released)
        for shipment in what_if.shipments:
            workload.take(shipment)
        before = routing_records.decision_of(happened)
        result.rules_before.add(happened["rules"])
        tallies = result.markets.setdefault(request.market.value, (Tally(), Tally()))
        tallies[0].add(before, request.currency)
        tallies[1].add(what_if, request.currency)
        if before.outcome == what_if.outcome == "routed":
            result.changed_node += {s.node for s in before.shipments} != {s.node for s in what_if.shipments}
            result.changed_carrier += [s.carrier for s in before.shipments] != [s.carrier for s in what_if.shipments]
    return result


def comparison_table(result: Comparison) -> list[str]:
    happened = ", ".join(sorted(result.rules_before)) or "-"
    lines = [
        f"what-if rules {result.rules_after} against what happened under {happened}",
        f"{'market':<7}{'run':<10}{'orders':>7}{'routed':>8}{'held':>6}{'split %':>9}{'ship-by missed':>16}  cost",
    ]
    for row in result.rows():
        cost = ", ".join(routing.money(amount, cur) for cur, amount in sorted(row["cost"].items())) or "-"
        lines.append(
            f"{row['market']:<7}{row['run']:<10}{row['orders']:>7}{row['routed']:>8}{row['held']:>6}"
            f"{row['split_rate'] * 100:>8.1f}%{row['ship_by_misses']:>16}  {cost}"
        )
    for market, (before, after) in sorted(result.markets.items()):
        for currency in sorted(set(before.cost) | set(after.cost)):
            delta = after.cost[currency] - before.cost[currency]
            sign = "+" if delta >= 0 else "-"
            lines.append(f"{market}: shipping cost {sign}{routing.money(abs(delta), currency)} under the what-if rules")
        if before.holds != after.holds:
            lines.append(f"{market}: holds {dict(before.holds) or '{}'} -> {dict(after.holds) or '{}'}")
    lines.append(f"orders routed to another node: {result.changed_node}; to another carrier: {result.changed_carrier}")
    return lines
