"""Redis read model of order status: the latest lifecycle state per order, forward-only.

Rebuilt from orders.v1 at any time; losing Redis loses nothing. A Lua script compares (status rank,
event time) so a late or duplicate event never moves an order backwards, whatever the delivery order.
"""

from __future__ import annotations

from typing import Any

import redis

from schemas.order import OrderEvent
from sinks.clickhouse import decode_order
from sinks.runner import SinkSpec

KEY_PREFIX = "oms:order:"

# KEYS[1] order hash; ARGV: rank, event_time_ms, then field/value pairs. Returns 1 when applied.
_FORWARD_ONLY = """
local cur_rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
local cur_time = tonumber(redis.call('HGET', KEYS[1], 'event_time_ms') or '-1')
local rank = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
if rank < cur_rank or (rank == cur_rank and t <= cur_time) then return 0 end
redis.call('HSET', KEYS[1], 'rank', ARGV[1], 'event_time_ms', ARGV[2], unpack(ARGV, 3))
return 1
"""


def order_key(prefix: str, key: str) -> str:
    return f"{prefix}{KEY_PREFIX}{key}"


class OrderStatusModel:
    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_FORWARD_ONLY)

    def apply(self, events: list[OrderEvent]) -> int:
        """Apply a batch in one round trip; returns how many moved an order forward."""
        pipe = self._client.pipeline(transaction=False)
        for ev in events:
            self._script(
                keys=[order_key(self._prefix, ev.order_key)],
                args=[
                    ev.status.rank, ev.event_time_ms,
                    "status", ev.status.value, "channel", ev.channel, "market", ev.market.value,
                    "channel_status", ev.channel_status, "event_id", ev.event_id,
                ],
                client=pipe,
            )  # fmt: skip
        return sum(int(r) for r in pipe.execute())

    def get(self, key: str) -> dict[str, str]:
        raw: dict[Any, Any] = self._client.hgetall(order_key(self._prefix, key))
        return {
            k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v for k, v in raw.items()
        }


def order_status_sink(model: OrderStatusModel, topic: str) -> SinkSpec[OrderEvent]:
    return SinkSpec(name="redis-order-status", topic=topic, to_row=decode_order, write=lambda rows: _apply(model, rows))


def _apply(model: OrderStatusModel, rows: list[OrderEvent]) -> None:
    model.apply(rows)
