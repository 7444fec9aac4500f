"""What every channel adapter shares: the raw input, the rejection, and field readers that say where."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.order import MoneyError, OrderStatus, OrderStatusUpdate, RawRef, order_key, to_minor

_INTEGER = re.compile(r"^-?[0-9]{1,19}$")  # longer is beyond any long and beyond int()'s digit limit
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVENT_NS = uuid.UUID("6f1c1f4e-6a57-4c55-9a53-2f1c8e2b7a10")


@dataclass(frozen=True)
class RawInput:
    """One record from a raw.orders.<channel> topic, as the connector produced it."""

    channel: str
    value: bytes
    topic: str
    partition: int
    offset: int
    ingest_ms: int
    key: bytes | None = None
    headers: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def ref(self) -> RawRef:
        """Where this record sits in Kafka, carried by every canonical change made from it."""
        return RawRef(topic=self.topic, partition=self.partition, offset=self.offset)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value.decode("utf-8", "replace") if value is not None else None


class Rejected(Exception):
    """A business refusal of an input: becomes a dead letter with ``code`` and a readable ``reason``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def parse_json(data: bytes) -> Any:
    """Decode JSON bytes or reject with where it broke."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("invalid_encoding", f"body is not UTF-8 at byte {exc.start}") from exc
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Rejected("malformed_json", f"body is not JSON: {exc}") from exc


class Fields:
    """Reads fields of a JSON object, rejecting with the full path of the field on any problem."""

    def __init__(self, obj: Any, path: str) -> None:
        if not isinstance(obj, dict):
            raise Rejected("invalid_field", f"{path}: expected an object, got {_kind(obj)}")
        self.obj: dict[str, Any] = obj
        self.path = path

    def at(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return self.obj.get(name) is not None

    def obj_field(self, name: str) -> Fields:
        return Fields(self.obj.get(name), self.at(name))

    def optional_obj(self, name: str) -> Fields | None:
        return None if self.obj.get(name) is None else self.obj_field(name)

    def items(self, name: str, *, non_empty: bool = True) -> list[Any]:
        value = self.obj.get(name)
        if not isinstance(value, list):
            raise Rejected("invalid_field", f"{self.at(name)}: expected a list, got {_kind(value)}")
        if non_empty and not value:
            raise Rejected("invalid_field", f"{self.at(name)}: is empty")
        return value

    def text(self, name: str) -> str:
        value = self.obj.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # ids come as numbers or strings depending on the SDK
        if not isinstance(value, str) or not value.strip():
            raise Rejected("invalid_field", f"{self.at(name)}: expected a non-empty string, got {_kind(value)}")
        return value.strip()

    def optional_text(self, name: str) -> str | None:
        value = self.obj.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return self.text(name)

    def integer(self, name: str, *, minimum: int | None = None) -> int:
        value = self.obj.get(name)
        if isinstance(value, str) and _INTEGER.match(value.strip()):
            value = int(value.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise Rejected("invalid_field", f"{self.at(name)}: expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise Rejected("invalid_field", f"{self.at(name)}: must be >= {minimum}, got {value}")
        return value

    def optional_integer(self, name: str) -> int | None:
        return None if self.obj.get(name) in (None, "") else self.integer(name)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.obj.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise Rejected("invalid_field", f"{self.at(name)}: expected true or false, got {_kind(value)}")
        return value

    def iso_time_ms(self, name: str) -> int:
        """An ISO-8601 time with a UTC offset ("2026-09-16 10:00:00 +0800", "...T03:12:00Z") as UTC ms.

        A time without an offset is refused: guessing the zone would shift SLAs by hours.
        """
        value = self.text(name)
        try:
            moment: datetime | None = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        example = "like '2026-09-16 10:00:00 +0800'"
        if moment is None:
            raise Rejected("invalid_field", f"{self.at(name)}: {value!r} is not an ISO-8601 time ({example})")
        if moment.utcoffset() is None:
            raise Rejected("invalid_field", f"{self.at(name)}: {value!r} has no UTC offset ({example})")
        try:
            ms = (moment - _EPOCH) // timedelta(milliseconds=1)
        except OverflowError as exc:
            raise Rejected("invalid_field", f"{self.at(name)}: {value!r} is out of range") from exc
        if ms <= 0:
            raise Rejected("invalid_field", f"{self.at(name)}: {value!r} is not after 1970")
        return ms

    def money(self, name: str, currency: str) -> int:
        try:
            return to_minor(self.obj.get(name), currency)
        except MoneyError as exc:
            raise Rejected("invalid_money", f"{self.at(name)}: {exc}") from exc


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


@contextmanager
def canonical_fields(path: str) -> Iterator[None]:
    """Turn a canonical-model validation failure into a refusal naming the input and the field."""
    try:
        yield
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Rejected("invalid_field", f"{path}: canonical field {where}: {first['msg']}") from exc


def status_update(
    raw: RawInput,
    tenant: str,
    channel: str,
    *,
    channel_order_id: str,
    shop_id: str,
    status: OrderStatus,
    channel_status: str,
    event_time_ms: int,
    line_id: str | None = None,
    path: str = "data",
) -> OrderStatusUpdate:
    """A status push as a canonical update, keeping the push's bytes for a possible dead letter.

    A per-line update hashes its line into the event id: two units' pushes in the same second are two
    updates, not one.
    """
    key = order_key(tenant, channel, channel_order_id)
    hashed_status = channel_status if line_id is None else f"{line_id}:{channel_status}"
    with canonical_fields(path):
        return OrderStatusUpdate(
            event_id=stable_event_id(key, hashed_status, event_time_ms),
            tenant=tenant,
            channel=channel,
            shop_id=shop_id,
            order_key=key,
            channel_order_id=channel_order_id,
            line_id=line_id,
            status=status,
            channel_status=channel_status,
            event_time_ms=event_time_ms,
            ingest_time_ms=raw.ingest_ms,
            raw=raw.ref,
            original=raw.value,
        )


def stable_event_id(order_key: str, channel_status: str, event_time_ms: int) -> str:
    """Same order state from the same channel update -> same id, on every replay."""
    return str(uuid.uuid5(_EVENT_NS, f"{order_key}|{channel_status}|{event_time_ms}"))


def epoch_s_to_ms(seconds: int) -> int:
    return seconds * 1000
