-- Every available-to-sell value pushed towards a channel, by its Kafka position on channel.stock.v1.
CREATE TABLE IF NOT EXISTS channel_stock_updates
(
    src_partition   UInt32,
    src_offset      UInt64,
    tenant          LowCardinality(String),
    channel         LowCardinality(String),
    sku             String,
    available       Int64,
    computed_at     DateTime64(3, 'UTC'),
    rules_version   String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(computed_at)
ORDER BY (src_partition, src_offset)
