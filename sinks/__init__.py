"""Sinks: topics -> ClickHouse facts and the Redis read model, batched, offsets committed after a flush."""
