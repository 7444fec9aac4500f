"""Stand-ins for what the code under test reads of confluent-kafka's objects."""

from __future__ import annotations

from typing import Any


class FakeMessage:
    """The part of confluent_kafka.Message our consumers read."""

    def __init__(
        self,
        value: bytes | None,
        partition: int = 0,
        offset: int = 0,
        topic: str = "raw.orders.shopee",
        key: bytes | None = b"k",
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 1_795_824_000_500,
        error: Any = None,
    ) -> None:
        self._value, self._key, self._topic, self._partition, self._offset = value, key, topic, partition, offset
        self._headers, self._timestamp_ms, self._error = headers, timestamp_ms, error

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)

    def error(self) -> Any:
        return self._error
