"""Sinks: Kafka topics -> ClickHouse facts (batched, offsets committed after the flush) and the Redis read model."""
