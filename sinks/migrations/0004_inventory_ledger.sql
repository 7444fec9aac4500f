-- The inventory.v1 ledger, one row per movement. Keyed by its Kafka position (a SKU's movements share a
-- partition and the offsets order them), so a replay writes the same keys again.
CREATE TABLE IF NOT EXISTS inventory_ledger
(
    src_partition    UInt32,
    src_offset       UInt64,
    sku              String,
    warehouse        LowCardinality(String),
    cause            LowCardinality(String),
    ref              String,
    on_hand_before   Int64,
    on_hand_after    Int64,
    reserved_before  Int64,
    reserved_after   Int64,
    available_after  Int64 COMMENT 'on hand - reserved: what may still be sold from this warehouse',
    at               DateTime64(3, 'UTC') COMMENT 'the record time in Kafka'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(at)
ORDER BY (src_partition, src_offset)
