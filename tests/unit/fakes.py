"""Stand-ins for what the code under test reads of confluent-kafka's objects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from unittest import mock


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


class Sent(NamedTuple):
    """A record as ``streams.app.send_record`` would hand it to Kafka (value None: a changelog deletion)."""

    topic: str
    key: bytes
    value: Any


class Producer:
    """``streams.app.send_record`` faked: each record kept in order and acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    async def send(
        self, app: Any, topic: str, key: bytes, value: bytes | None, partition: int | None = None
    ) -> asyncio.Future[None]:
        self.sent.append(Sent(topic, key, value))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)  # what publish() awaits: the broker's acknowledgement
        return acked


def run_agent(name: str, scenario: Callable[[Any, Any], Awaitable[None]], settings: Any = None) -> list[Sent]:
    """Run ``scenario(app, agent)`` on agent ``name`` in faust's test_context (no broker); what it sent, in order."""
    from oms.settings import Settings
    from streams.app import create_app

    producer = Producer()

    async def main() -> None:
        app = create_app(settings or Settings())
        with mock.patch("streams.app.send_record", side_effect=producer.send):
            async with app.agents[name].test_context() as agent:
                await asyncio.wait_for(scenario(app, agent), timeout=10)

    asyncio.run(main())
    return producer.sent


async def until(condition: Callable[[], bool], turns: int = 1_000) -> None:
    """Let the other tasks run until ``condition()`` holds, for at most ``turns`` turns of the loop."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)  # one turn of the event loop, no time
    raise AssertionError(f"the condition did not hold within {turns} turns of the event loop")
