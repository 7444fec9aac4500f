"""Redis read model of stock per (SKU, warehouse), fed from the inventory.v1 ledger.

Every ledger record (StockMovement) carries the row's state after the move, so the model keeps the
newest one per (SKU, warehouse): a hash per SKU, ``{prefix}oms:stock:{sku}``, field = warehouse,
value = compact JSON ``{"on_hand", "reserved", "cause", "ref", "p", "o"}`` where ``p``/``o`` are the
record's Kafka partition and offset; and a set of every SKU, ``{prefix}oms:stock-skus``, to list them.

The ledger is keyed by SKU, so one SKU's movements are in one partition, in order. A Lua script writes
a row only when the incoming offset is newer than the stored one in the same partition, so a replay,
a duplicate or a batch re-read after a rebalance never moves a row backwards. (A record from another
partition wins: the SKU only changes partition when the topic's partition count changes.) Rebuilt from
inventory.v1 at any time: delete the keys and replay; losing Redis loses nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from schemas.codec import CodecError, codec
from sinks.runner import SinkSpec, Undecodable

STOCK_PREFIX = "oms:stock:"
SKU_INDEX = "oms:stock-skus"
_CHUNK = 500

# KEYS[1] the SKU's hash, KEYS[2] the SKU index; ARGV: warehouse, partition, offset, row JSON, sku.
# Returns 1 when the row was written, 0 when the stored one is as new or newer.
_NEWER_ONLY = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, row = pcall(cjson.decode, cur)
  if ok and type(row) == 'table' and tonumber(row.p) == tonumber(ARGV[2])
      and tonumber(row.o) >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
"""


def stock_key(prefix: str, sku: str) -> str:
    return f"{prefix}{STOCK_PREFIX}{sku}"


def index_key(prefix: str) -> str:
    return f"{prefix}{SKU_INDEX}"


@dataclass(frozen=True)
class StockRow:
    """The stock of one SKU in one warehouse after the newest ledger record, and where that record is."""

    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    cause: str = ""
    ref: str = ""
    partition: int = -1
    offset: int = -1
    """Kafka position of the ledger record; -1 until the sink stamps it (``located``)."""

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def located(self, partition: int, offset: int) -> StockRow:
        return dataclasses.replace(self, partition=partition, offset=offset)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "warehouse": self.warehouse,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "available": self.available,
            "last_cause": self.cause,
            "last_ref": self.ref,
            "ledger_partition": self.partition,
            "ledger_offset": self.offset,
        }


def decode_movement(value: bytes) -> StockRow:
    """An inventory.v1 record -> the row it leaves behind (not yet located). Raises Undecodable."""
    try:
        r = codec("stock_movement").decode(value)
    except CodecError as exc:
        raise Undecodable(f"inventory.v1 record is not a valid StockMovement: {exc}") from exc
    return StockRow(r["sku"], r["warehouse"], r["on_hand_after"], r["reserved_after"], r["cause"], r["ref"])


class StockModel:
    """Stock per (SKU, warehouse) in Redis: ``apply`` located ledger rows, read them with ``rows``."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_NEWER_ONLY)

    def apply(self, rows: Iterable[StockRow]) -> int:
        """Write a batch of located rows in one round trip; returns how many changed the model."""
        pipe = self._client.pipeline(transaction=False)
        for row in rows:
            if row.partition < 0 or row.offset < 0:
                raise ValueError(f"stock row {row.sku}/{row.warehouse} has no ledger position; locate it first")
            value = orjson.dumps(
                {"on_hand": row.on_hand, "reserved": row.reserved, "cause": row.cause, "ref": row.ref,
                 "p": row.partition, "o": row.offset}
            )  # fmt: skip
            self._script(
                keys=[stock_key(self._prefix, row.sku), index_key(self._prefix)],
                args=[row.warehouse, row.partition, row.offset, value, row.sku],
                client=pipe,
            )
        return sum(int(r) for r in pipe.execute())

    def skus(self) -> list[str]:
        members: set[Any] = self._client.smembers(index_key(self._prefix))
        return sorted(_text(m) for m in members)

    def rows(self, sku: str | None = None, warehouse: str | None = None) -> list[StockRow]:
        """Rows sorted by SKU then warehouse; only this SKU and/or this warehouse when given."""
        skus = [sku] if sku is not None else self.skus()
        out: list[StockRow] = []
        for start in range(0, len(skus), _CHUNK):
            chunk = skus[start : start + _CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for s in chunk:
                if warehouse is None:
                    pipe.hgetall(stock_key(self._prefix, s))
                else:
                    pipe.hget(stock_key(self._prefix, s), warehouse)
            for s, found in zip(chunk, pipe.execute(), strict=True):
                fields: dict[Any, Any] = found if warehouse is None else {warehouse: found} if found else {}
                out += sorted((_row(s, _text(wh), _text(v)) for wh, v in fields.items()), key=lambda r: r.warehouse)
        return out


def _row(sku: str, warehouse: str, value: str) -> StockRow:
    r = orjson.loads(value)
    return StockRow(
        sku, warehouse, int(r["on_hand"]), int(r["reserved"]), r.get("cause", ""), r.get("ref", ""), r["p"], r["o"]
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def stock_sink(model: StockModel, topic: str) -> SinkSpec[StockRow]:
    """inventory.v1 -> the Redis stock model, each row stamped with its ledger partition and offset."""
    return SinkSpec(
        name="redis-stock",
        topic=topic,
        to_row=decode_movement,
        write=lambda rows: _apply(model, rows),
        locate=lambda row, partition, offset: row.located(partition, offset),
    )


def _apply(model: StockModel, rows: list[StockRow]) -> None:
    model.apply(rows)
