-- Where each order ships from and with whom, or why it is held. decision_id is unique per decision.
CREATE TABLE IF NOT EXISTS routing_decisions
(
    decision_id    String,
    order_key      String,
    tenant         LowCardinality(String),
    channel        LowCardinality(String),
    market         LowCardinality(String),
    outcome        LowCardinality(String),
    rules          String,
    decided_at     DateTime64(3, 'UTC'),
    shipments      UInt16,
    nodes          Array(String),
    carriers       Array(String),
    cost_minor     Int64,
    currency       LowCardinality(String),
    meets_ship_by  Bool,
    hold_codes     Array(String),
    actor          Nullable(String),
    summary        String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(decided_at)
ORDER BY decision_id
