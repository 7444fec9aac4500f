-- Latest state per order. ReplacingMergeTree keeps the row with the highest `version` per key, so a
-- replay of orders.v1 does not double count (read with FINAL, or argMax, for exact answers).
-- Partitioned by the order's creation day: a key never changes partition, which dedupe needs.
CREATE TABLE IF NOT EXISTS orders
(
    order_key        String,
    tenant           LowCardinality(String),
    channel          LowCardinality(String),
    market           LowCardinality(String),
    shop_id          String,
    channel_order_id String,
    status           LowCardinality(String),
    channel_status   LowCardinality(String),
    payment_method   LowCardinality(String),
    is_cod           Bool,
    currency         LowCardinality(String),
    total_minor      Int64,
    line_count       UInt16,
    units            UInt32,
    skus             Array(String),
    region           Nullable(String),
    postcode         Nullable(String),
    ship_by          Nullable(DateTime64(3, 'UTC')),
    created_at       DateTime64(3, 'UTC'),
    event_time       DateTime64(3, 'UTC'),
    ingest_time      DateTime64(3, 'UTC'),
    event_id         String,
    raw_topic        String,
    raw_partition    UInt32,
    raw_offset       UInt64,
    version          UInt64 COMMENT 'status rank * 1e13 + event time ms: later lifecycle state wins'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(created_at)
ORDER BY (tenant, order_key)
