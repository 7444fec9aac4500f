-- The inventory's decision on each hold (reserved, short, released, shipped, returned), by Kafka position.
CREATE TABLE IF NOT EXISTS reservations
(
    src_partition  UInt32,
    src_offset     UInt64,
    hold_id        String,
    order_key      String,
    channel        LowCardinality(String),
    sku            String,
    quantity       Int32,
    state          LowCardinality(String),
    warehouse      Nullable(String),
    available      Int64,
    at             DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(at)
ORDER BY (src_partition, src_offset)
