-- Every lifecycle step an order took, once: orders.v1 is forward-only, so (order, status) is unique and a
-- replay rewrites the same key. The day is the step's own event time, fixed per record.
CREATE TABLE IF NOT EXISTS order_status_history
(
    order_key       String,
    status          LowCardinality(String),
    tenant          LowCardinality(String),
    channel         LowCardinality(String),
    market          LowCardinality(String),
    channel_status  LowCardinality(String),
    is_cod          Bool,
    ship_by         Nullable(DateTime64(3, 'UTC')),
    event_time      DateTime64(3, 'UTC'),
    ingest_time     DateTime64(3, 'UTC'),
    event_id        String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (order_key, status)
