"""ClickHouse: versioned migrations, and the orders sink (orders.v1 -> table ``orders``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.codec import CodecError
from schemas.order import OrderEvent
from sinks.runner import SinkSpec, Undecodable

_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

ORDER_COLUMNS = (
    "order_key", "tenant", "channel", "market", "shop_id", "channel_order_id", "status", "channel_status",
    "payment_method", "is_cod", "currency", "total_minor", "line_count", "units", "skus", "region",
    "postcode", "ship_by", "created_at", "event_time", "ingest_time", "event_id", "raw_topic",
    "raw_partition", "raw_offset", "version",
)  # fmt: skip


def migrate(client: Client) -> list[str]:
    """Apply the shipped migrations not yet applied to the client's database, in order. Idempotent."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime64(3))"
        " ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    applied = []
    folder = resources.files("sinks").joinpath("migrations")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = _MIGRATION.match(entry.name)
        if not match or int(match[1]) in done:
            continue
        client.command(entry.read_text(encoding="utf-8"))
        client.insert(
            "schema_migrations",
            [[int(match[1]), match[2], datetime.now(UTC)]],
            column_names=["version", "name", "applied_at"],
        )
        applied.append(entry.name)
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
        event.status.rank * 10**13 + event.event_time_ms,
    )  # fmt: skip


def decode_order(value: bytes) -> OrderEvent:
    try:
        return OrderEvent.decode(value)
    except (CodecError, ValueError) as exc:
        raise Undecodable(f"orders.v1 record is not a valid OrderEvent: {exc}") from exc


def orders_sink(client: Client, topic: str) -> SinkSpec[tuple[Any, ...]]:
    """orders.v1 -> ``orders`` (ReplacingMergeTree: replays do not double count)."""

    def write(rows: list[tuple[Any, ...]]) -> None:
        client.insert("orders", rows, column_names=ORDER_COLUMNS)

    return SinkSpec(name="clickhouse-orders", topic=topic, to_row=lambda v: order_row(decode_order(v)), write=write)
