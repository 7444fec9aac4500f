-- Alerts: one row per alert, its latest state wins (firing -> acked -> resolved; `revision` counts up).
-- Partitioned by the day it opened, which never changes for an alert.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id    String,
    dedupe_key  String,
    kind        LowCardinality(String),
    severity    LowCardinality(String),
    subject     String,
    state       LowCardinality(String),
    summary     String,
    evidence    Map(String, String),
    opened_at   DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC'),
    acked_by    Nullable(String),
    revision    UInt32
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMMDD(opened_at)
ORDER BY alert_id
