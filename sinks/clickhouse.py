"""ClickHouse: versioned migrations, and the sink of every fact topic into its tables (replays dedupe by key)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.codec import CodecError, codec
from schemas.order import DeadLetter, OrderEvent, reservation_records
from schemas.topics import ALERTS, CHANNEL_STOCK, DEAD_LETTERS, INVENTORY, ORDERS, RESERVATIONS, ROUTING
from sinks.runner import Origin, SinkSpec, Undecodable

_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

ORDER_COLUMNS = (
    "order_key", "tenant", "channel", "market", "shop_id", "channel_order_id", "status", "channel_status",
    "payment_method", "is_cod", "currency", "total_minor", "line_count", "units", "skus", "region",
    "postcode", "ship_by", "created_at", "event_time", "ingest_time", "event_id", "raw_topic",
    "raw_partition", "raw_offset", "version",
)  # fmt: skip


def migrations() -> list[tuple[int, str, list[str]]]:
    """The shipped migrations in order: (version, name, statements). A file may hold several statements."""
    found = []
    folder = resources.files("sinks").joinpath("migrations")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match[1]), match[2], _statements(entry.read_text(encoding="utf-8"))))
    return found


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in body.split(";") if part.strip()]


def migrate(client: Client) -> list[str]:
    """Apply the shipped migrations not yet applied to the client's database, in order. Idempotent.

    Every statement is ``IF NOT EXISTS``, so a migration cut off half-way is completed by the next run.
    """
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime64(3))"
        " ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    applied = []
    for number, name, statements in migrations():
        if number in done:
            continue
        for statement in statements:
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[number, name, datetime.now(UTC)]],
            column_names=["version", "name", "applied_at"],
        )
        applied.append(f"{number:04d}_{name}")
    return applied


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def order_row(event: OrderEvent) -> tuple[Any, ...]:
    """One ``orders`` row; ``version`` makes the latest lifecycle state win on merge."""
    return (
        event.order_key, event.tenant, event.channel, event.market.value, event.shop_id,
        event.channel_order_id, event.status.value, event.channel_status, event.payment_method.value,
        event.is_cod, event.currency, event.total_minor, len(event.lines),
        sum(line.quantity for line in event.lines), [line.sku for line in event.lines],
        event.shipping.region, event.shipping.postcode,
        _dt(event.ship_by_ms) if event.ship_by_ms else None,
        _dt(event.created_ms), _dt(event.event_time_ms), _dt(event.ingest_time_ms), event.event_id,
        event.raw.topic, event.raw.partition, event.raw.offset,
        _version(event),
    )  # fmt: skip


def _version(event: OrderEvent) -> int:
    """Status rank * 1e13 + event time: the later lifecycle state wins in a ReplacingMergeTree."""
    return event.status.rank * 10**13 + event.event_time_ms


def decode_order(value: bytes) -> OrderEvent:
    try:
        return OrderEvent.decode(value)
    except (CodecError, ValueError) as exc:
        raise Undecodable(f"orders.v1 record is not a valid OrderEvent: {exc}") from exc


# --- every fact table, from every topic we own: one consumer, one batch, one insert per table ---

COLUMNS: dict[str, tuple[str, ...]] = {
    "orders": ORDER_COLUMNS,
    "order_lines": (
        "order_key", "line_id", "tenant", "channel", "market", "status", "is_cod", "currency", "sku", "quantity",
        "unit_price_minor", "paid_price_minor", "promotion_type", "created_at", "version",
    ),
    "order_status_history": (
        "order_key", "status", "tenant", "channel", "market", "channel_status", "is_cod", "ship_by", "event_time",
        "ingest_time", "event_id",
    ),
    "inventory_ledger": (
        "src_partition", "src_offset", "sku", "warehouse", "cause", "ref", "on_hand_before", "on_hand_after",
        "reserved_before", "reserved_after", "available_after", "at",
    ),
    "reservations": (
        "src_partition", "src_offset", "src_index", "hold_id", "order_key", "channel", "sku", "quantity", "state",
        "warehouse", "available", "at",
    ),
    "routing_decisions": (
        "decision_id", "order_key", "tenant", "channel", "market", "outcome", "rules", "decided_at", "shipments",
        "nodes", "carriers", "cost_minor", "currency", "meets_ship_by", "hold_codes", "actor", "summary",
    ),
    "channel_stock_updates": (
        "src_partition", "src_offset", "tenant", "channel", "sku", "available", "computed_at", "rules_version",
    ),
    "dead_letters": (
        "dead_letter_id", "tenant", "channel", "stage", "reason_code", "reason", "source_topic", "source_partition",
        "source_offset", "original_bytes", "original", "failed_at",
    ),
    "alerts": (
        "alert_id", "dedupe_key", "kind", "severity", "subject", "state", "summary", "evidence", "opened_at",
        "updated_at", "acked_by", "revision",
    ),
}  # fmt: skip

#: A fact row: the table it goes to and its values in ``COLUMNS[table]`` order.
Fact = tuple[str, tuple[Any, ...]]


def order_facts(event: OrderEvent) -> list[Fact]:
    """orders.v1 -> the order's latest state, its lines, and the step it took in its status history."""
    version = _version(event)
    created = _dt(event.created_ms)
    facts: list[Fact] = [("orders", order_row(event))]
    for line in event.lines:
        facts.append(
            (
                "order_lines",
                (
                    event.order_key, line.line_id, event.tenant, event.channel, event.market.value,
                    event.status.value, event.is_cod, event.currency, line.sku, line.quantity,
                    line.unit_price_minor, line.paid_price_minor, line.promotion_type, created, version,
                ),
            )
        )  # fmt: skip
    facts.append(
        (
            "order_status_history",
            (
                event.order_key, event.status.value, event.tenant, event.channel, event.market.value,
                event.channel_status, event.is_cod, _dt(event.ship_by_ms) if event.ship_by_ms else None,
                _dt(event.event_time_ms), _dt(event.ingest_time_ms), event.event_id,
            ),
        )
    )  # fmt: skip
    return facts


def _record(schema: str, value: bytes, topic: str) -> dict[str, Any]:
    try:
        return codec(schema).decode(value)
    except CodecError as exc:
        raise Undecodable(f"{topic} record is not a valid {schema}: {exc}") from exc


def _channel_of(order_key: str) -> str:
    parts = order_key.split(":")
    return parts[1] if len(parts) >= 3 else ""


def ledger_fact(r: dict[str, Any], at: Origin) -> Fact:
    return (
        "inventory_ledger",
        (
            at.partition, at.offset, r["sku"], r["warehouse"], r["cause"], r["ref"], r["on_hand_before"],
            r["on_hand_after"], r["reserved_before"], r["reserved_after"], r["on_hand_after"] - r["reserved_after"],
            _dt(at.timestamp_ms),
        ),
    )  # fmt: skip


def reservation_facts(value: bytes, at: Origin) -> list[Fact]:
    """A reservations.v1 record: one answer, or an inventory step's batch of them (a row each)."""
    try:
        records = reservation_records(value)
    except CodecError as exc:
        raise Undecodable(f"{at.topic} record is not a valid reservation or reservation_batch: {exc}") from exc
    return [reservation_fact(r, at, n) for n, r in enumerate(records)]


def reservation_fact(r: dict[str, Any], at: Origin, index: int = 0) -> Fact:
    """``index``: the answer's place in its record (a batch holds several)."""
    return (
        "reservations",
        (
            at.partition, at.offset, index, r["hold_id"], r["order_key"], _channel_of(r["order_key"]), r["sku"],
            r["quantity"], r["state"], r["warehouse"], r["available"], _dt(at.timestamp_ms),
        ),
    )  # fmt: skip


def routing_fact(r: dict[str, Any]) -> Fact:
    shipments = r["shipments"]
    return (
        "routing_decisions",
        (
            r["decision_id"], r["order_key"], r["tenant"], r["channel"], r["market"], r["outcome"], r["rules"],
            _dt(r["decided_ms"]), len(shipments), [s["node"] for s in shipments], [s["carrier"] for s in shipments],
            sum(s["cost_minor"] for s in shipments), r["currency"],
            bool(shipments) and all(s["meets_ship_by"] for s in shipments), [h["code"] for h in r["holds"]],
            r["actor"], r["summary"],
        ),
    )  # fmt: skip


def channel_stock_fact(r: dict[str, Any], at: Origin) -> Fact:
    return (
        "channel_stock_updates",
        (
            at.partition, at.offset, r["tenant"], r["channel"], r["sku"], r["available"], _dt(r["computed_at_ms"]),
            r["rules_version"],
        ),
    )  # fmt: skip


def dead_letter_fact(letter: DeadLetter) -> Fact:
    return (
        "dead_letters",
        (
            letter.dead_letter_id, letter.tenant, letter.channel or "", letter.stage, letter.reason_code,
            letter.reason, letter.source_topic, letter.source_partition, letter.source_offset,
            len(letter.original), letter.original, _dt(letter.failed_at_ms),
        ),
    )  # fmt: skip


def alert_fact(r: dict[str, Any]) -> Fact:
    return (
        "alerts",
        (
            r["alert_id"], r["dedupe_key"], r["kind"], r["severity"], r["subject"], r["state"], r["summary"],
            r["evidence"], _dt(r["opened_ms"]), _dt(r["updated_ms"]), r["acked_by"], r["revision"],
        ),
    )  # fmt: skip


def facts_of(prefix: str) -> Callable[[Origin, bytes], list[Fact]]:
    """Record -> fact rows, by the topic it came from (names under ``prefix``). Raises Undecodable."""
    handlers: dict[str, Callable[[Origin, bytes], list[Fact]]] = {
        ORDERS.full_name(prefix): lambda at, v: order_facts(decode_order(v)),
        INVENTORY.full_name(prefix): lambda at, v: [ledger_fact(_record("stock_movement", v, at.topic), at)],
        RESERVATIONS.full_name(prefix): lambda at, v: reservation_facts(v, at),
        ROUTING.full_name(prefix): lambda at, v: [routing_fact(_record("routing_decision", v, at.topic))],
        CHANNEL_STOCK.full_name(prefix): lambda at, v: [channel_stock_fact(_record("channel_stock", v, at.topic), at)],
        DEAD_LETTERS.full_name(prefix): lambda at, v: [dead_letter_fact(_dead_letter(v))],
        ALERTS.full_name(prefix): lambda at, v: [alert_fact(_record("alert", v, at.topic))],
    }

    def facts(at: Origin, value: bytes) -> list[Fact]:
        return handlers[at.topic](at, value)

    return facts


FACT_TOPICS = (ORDERS, INVENTORY, RESERVATIONS, ROUTING, CHANNEL_STOCK, DEAD_LETTERS, ALERTS)


def _dead_letter(value: bytes) -> DeadLetter:
    try:
        return DeadLetter.decode(value)
    except (CodecError, ValueError) as exc:
        raise Undecodable(f"dead-letters.v1 record is not a valid DeadLetter: {exc}") from exc


def write_facts(client: Client, batch: list[list[Fact]]) -> None:
    """One insert per table. Tables are written in a fixed order; a failure leaves the batch for a retry
    that rewrites the same keys (every table dedupes by key), so a half-written batch is harmless."""
    by_table: dict[str, list[tuple[Any, ...]]] = {}
    for facts in batch:
        for table, row in facts:
            by_table.setdefault(table, []).append(row)
    for table in COLUMNS:
        rows = by_table.get(table)
        if rows:
            client.insert(table, rows, column_names=COLUMNS[table])


def clickhouse_sink(client: Client, prefix: str) -> SinkSpec[list[Fact]]:
    """Every fact topic -> its ClickHouse tables, through one consumer group."""
    return SinkSpec(
        name="clickhouse",
        topic=tuple(spec.full_name(prefix) for spec in FACT_TOPICS),
        write=lambda batch: write_facts(client, batch),
        from_record=facts_of(prefix),
    )
