-- One row per order line, latest order state (same `version` rule as `orders`): units and prices per SKU.
CREATE TABLE IF NOT EXISTS order_lines
(
    order_key          String,
    line_id            String,
    tenant             LowCardinality(String),
    channel            LowCardinality(String),
    market             LowCardinality(String),
    status             LowCardinality(String),
    is_cod             Bool,
    currency           LowCardinality(String),
    sku                String,
    quantity           UInt32,
    unit_price_minor   Int64,
    paid_price_minor   Int64 COMMENT 'per unit, after discounts',
    promotion_type     Nullable(String),
    created_at         DateTime64(3, 'UTC'),
    version            UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(created_at)
ORDER BY (tenant, order_key, line_id)
