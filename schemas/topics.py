"""The one registry of topics: name, key, value schema, partitions, cleanup policy.

Every producer, consumer, agent and the topic-creation command read topics from here, so a topic's
contract is stated once. Names carry a version suffix where the value is ours (``orders.v1``); raw
topics hold what the marketplace sent, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Channels we take orders from. The raw topic of each is ``raw.orders.<channel>``.
CHANNELS: tuple[str, ...] = ("shopee", "lazada", "tiktok", "tokopedia", "shopify", "grab", "pos")

#: Dead letters keep the original bytes; a marketplace body can be several MB.
_LARGE = {"max.message.bytes": str(16 * 1024 * 1024)}


@dataclass(frozen=True)
class TopicSpec:
    """The contract of one topic. ``partitions=None`` takes the configured default."""

    name: str
    key: str
    value: str
    value_schemas: tuple[str, ...]
    """Avro schema names a record may have (the header fingerprint tells which); () = raw bytes."""
    cleanup_policy: str = "delete"
    partitions: int | None = None
    config: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def full_name(self, prefix: str) -> str:
        return prefix + self.name

    def kafka_config(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, **self.config}


def raw_orders(channel: str) -> TopicSpec:
    if channel not in CHANNELS:
        raise KeyError(f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}")
    return TopicSpec(
        name=f"raw.orders.{channel}",
        key="delivery id or channel order id (bytes, as the connector chose)",
        value=f"{channel} native payload, unchanged (JSON bytes)",
        value_schemas=(),
        config=_LARGE,
        description="Headers: channel, shop, received_at (ms), delivery_id.",
    )


ORDER_CHANGES = TopicSpec(
    name="order-changes.v1",
    key="order key tenant:channel:channel_order_id (utf-8); a batch: a key in its partition (~changes#n)",
    value="OrderEvent or OrderStatusUpdate as normalized, or a batch of them (one normalize step's for one "
    "partition, in order); the orders agent's lifecycle makes them orders.v1",
    value_schemas=("order_event", "order_status_update", "order_change_batch"),
    description="Normalize's output, re-keyed by order so one partition sees an order's whole history.",
)

ORDERS = TopicSpec(
    name="orders.v1",
    key="order key tenant:channel:channel_order_id (utf-8)",
    value="canonical OrderEvent, forward-only per order",
    value_schemas=("order_event",),
    description="Every downstream step consumes this: no duplicates of a state, never a step backwards.",
)

DEAD_LETTERS = TopicSpec(
    name="dead-letters.v1",
    key="source topic (utf-8)",
    value="DeadLetter with the original bytes and a reason",
    value_schemas=("dead_letter",),
    config=_LARGE,
)

STOCK_ADJUSTMENTS = TopicSpec(
    name="inventory.adjustments",
    key="sku (utf-8)",
    value="StockAdjustment: versioned snapshot or delta from a WMS, a POS or `oms stock load`",
    value_schemas=("stock_adjustment",),
    description="The inventory stage applies each once by adjustment id; older snapshots never win.",
)

STOCK_COMMANDS = TopicSpec(
    name="stock-commands.v1",
    key="sku (utf-8) for one command; a key falling in the batch's partition (~stock#n) for a batch",
    value="StockCommand: one reserve/pay/release/ship/restock command for one SKU; or StockCommandBatch: the "
    "commands of one allocation step for the SKUs of one partition, in order",
    value_schemas=("stock_command", "stock_command_batch"),
    description="Allocation -> inventory. Co-partitioned with inventory.adjustments (same partitioner, same "
    "count), so a SKU's commands and adjustments reach the same inventory partition. The allocation agent "
    "writes batches (one record per partition per step instead of one per order line).",
)

RESERVATIONS = TopicSpec(
    name="reservations.v1",
    key="order key tenant:channel:channel_order_id (utf-8); a batch: a key in its partition (~answers#n)",
    value="Reservation: the inventory's decision on one hold (reserved, short, released, shipped, returned), "
    "or a batch of them (one inventory step's for one partition, in order)",
    value_schemas=("reservation", "reservation_batch"),
    description="Inventory -> the orders agent. Co-partitioned with order-changes.v1.",
)

ALLOCATIONS = TopicSpec(
    name="allocations.v1",
    key="order key (utf-8)",
    value="Allocation: the order's stock outcome once every line is decided",
    value_schemas=("allocation",),
)

ROUTING = TopicSpec(
    name="routing.v1",
    key="order key (utf-8)",
    value="RoutingDecision: node, carrier and handover per shipment, or the holds; passed-over options with reasons",
    value_schemas=("routing_decision",),
    description="Allocation (which also routes) -> `oms holds`, `oms replay`, sinks. Co-partitioned with orders.v1.",
)

HOLD_ACTIONS = TopicSpec(
    name="hold-actions.v1",
    key="order key (utf-8)",
    value="HoldAction: an operator releases or cancels a held order (oms holds release|cancel)",
    value_schemas=("hold_action",),
    description="Operators -> the allocation agent, which routes. Co-partitioned with orders.v1.",
)

INVENTORY = TopicSpec(
    name="inventory.v1",
    key="sku (utf-8)",
    value="StockMovement: the ledger of every stock change, before/after/cause",
    value_schemas=("stock_movement",),
)

CHANNEL_STOCK = TopicSpec(
    name="channel.stock.v1",
    key="channel:sku (utf-8)",
    value="ChannelStock: available-to-sell of one SKU on one channel, absolute",
    value_schemas=("channel_stock",),
    description="Stock sync -> channel connectors: the latest value per (channel, sku), paced to the channel's quota.",
)

CHANNEL_STOCK_OBSERVED = TopicSpec(
    name="channel.stock.observed.v1",
    key="channel:sku (utf-8)",
    value="ChannelStockObserved: what a channel's listing was seen offering for one SKU",
    value_schemas=("channel_stock_observed",),
    description="Channel connectors (reading listings back) -> the stock drift detector.",
)

ALERTS = TopicSpec(
    name="alerts.v1",
    key="dedupe key kind:subject (utf-8)",
    value="Alert: one state (firing, acked, resolved) of an anomaly the detectors found, with its evidence",
    value_schemas=("alert",),
    description="Detectors -> ClickHouse, the webhook (Slack-compatible) and `oms alerts list`.",
)

ALERT_ACTIONS = TopicSpec(
    name="alert-actions.v1",
    key="alert id (utf-8)",
    value="AlertAction: an operator acknowledges an alert (oms alerts ack)",
    value_schemas=("alert_action",),
    partitions=1,
    description="Operators -> the detectors, which write the acked state to alerts.v1 (one writer per topic).",
)

RAW_ORDERS: tuple[TopicSpec, ...] = tuple(raw_orders(c) for c in CHANNELS)
ALL: tuple[TopicSpec, ...] = (
    *RAW_ORDERS,
    ORDER_CHANGES,
    ORDERS,
    DEAD_LETTERS,
    STOCK_ADJUSTMENTS,
    STOCK_COMMANDS,
    RESERVATIONS,
    ALLOCATIONS,
    ROUTING,
    HOLD_ACTIONS,
    INVENTORY,
    CHANNEL_STOCK,
    CHANNEL_STOCK_OBSERVED,
    ALERTS,
    ALERT_ACTIONS,
)


def channel_of_raw_topic(topic: str, prefix: str) -> str | None:
    """``<prefix>raw.orders.shopee`` -> ``shopee``; None for any other topic."""
    if not topic.startswith(prefix):
        return None
    head, _, channel = topic[len(prefix) :].rpartition(".")
    return channel if head == "raw.orders" and channel in CHANNELS else None
