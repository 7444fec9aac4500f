-- Dead letters with their reason and the original bytes (dead_letter_id = source topic:partition:offset).
CREATE TABLE IF NOT EXISTS dead_letters
(
    dead_letter_id    String,
    tenant            LowCardinality(String),
    channel           LowCardinality(String) COMMENT 'empty when unknown',
    stage             LowCardinality(String),
    reason_code       LowCardinality(String),
    reason            String,
    source_topic      String,
    source_partition  UInt32,
    source_offset     UInt64,
    original_bytes    UInt32,
    original          String,
    failed_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(failed_at)
ORDER BY dead_letter_id
