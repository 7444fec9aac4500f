"""Typed Python view of the canonical records. Field names match the ``.avsc`` files one to one.

Conversion to and from Avro is explicit: ``to_avro()`` / ``from_avro()``; nothing else touches dicts.
"""

from __future__ import annotations

import enum
import hashlib
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.codec import codec, decode_any, decode_records


class Market(enum.StrEnum):
    SG = "SG"
    MY = "MY"
    ID = "ID"
    TH = "TH"
    VN = "VN"
    PH = "PH"


#: The currency each market settles in. An order in another currency is refused, not converted.
MARKET_CURRENCY: dict[Market, str] = {
    Market.SG: "SGD",
    Market.MY: "MYR",
    Market.ID: "IDR",
    Market.TH: "THB",
    Market.VN: "VND",
    Market.PH: "PHP",
}

#: Minor-unit exponent per currency. IDR and VND have sen/xu on paper, but no marketplace prices in
#: them, so we store whole rupiah/dong: 150000 IDR is total_minor=150000, not 15000000.
CURRENCY_EXPONENT: dict[str, int] = {"SGD": 2, "MYR": 2, "THB": 2, "PHP": 2, "USD": 2, "IDR": 0, "VND": 0}


class MoneyError(ValueError):
    """An amount that cannot be held exactly in the currency's minor units."""


def to_minor(amount: object, currency: str) -> int:
    """Major-unit amount (float, int or decimal string, as channels send) to integer minor units.

    Goes through ``Decimal(str(x))`` so 19.9 stays 1990, never 1989. Refuses fractions finer than the
    currency's minor unit rather than rounding money silently.
    """
    exponent = CURRENCY_EXPONENT.get(currency)
    if exponent is None:
        raise MoneyError(f"unknown currency {currency!r}")
    if isinstance(amount, bool) or not isinstance(amount, int | float | str | Decimal):
        raise MoneyError(f"amount must be a number or numeric string, got {type(amount).__name__}")
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"amount {amount!r} is not a number") from exc
    if not value.is_finite():
        raise MoneyError(f"amount {amount!r} is not finite")
    if value and not -30 <= value.adjusted() <= 30:
        # '1e999999' would raise decimal.Overflow in scaleb, '1e999990' takes 30 s in int(), and
        # '1e-9999999' would round to 0: no real amount is anywhere near these.
        raise MoneyError(f"amount {amount!r} is out of range")
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise MoneyError(f"amount {amount!r} {currency} has more decimals than the currency's {exponent}")
    return int(minor)


class OrderStatus(enum.StrEnum):
    """Canonical lifecycle. Forward moves only: rank decides; cancelled/returned close the order."""

    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    PROCESSING = "processing"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETURNED = "returned"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def terminal(self) -> bool:
        return self in (OrderStatus.CANCELLED, OrderStatus.RETURNED)

    def can_advance_to(self, new: OrderStatus) -> bool:
        """Whether an order in this status may move to ``new``. Never backwards, never out of a terminal.

        The main chain only moves up. Cancelled is reachable until delivery (a failed delivery comes
        back as cancelled); returned only from shipped, delivered or completed.
        """
        if self.terminal or new == self:
            return False
        if new is OrderStatus.CANCELLED:
            return self.rank <= OrderStatus.SHIPPED.rank
        if new is OrderStatus.RETURNED:
            return self in (OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.COMPLETED)
        return new.rank > self.rank


_RANK = {
    OrderStatus.PENDING_PAYMENT: 0,
    OrderStatus.PAID: 1,
    OrderStatus.PROCESSING: 2,
    OrderStatus.SHIPPED: 3,
    OrderStatus.DELIVERED: 4,
    OrderStatus.COMPLETED: 5,
    OrderStatus.CANCELLED: 6,
    OrderStatus.RETURNED: 7,
}


class PaymentMethod(enum.StrEnum):
    COD = "cod"
    CARD = "card"
    EWALLET = "ewallet"
    BNPL = "bnpl"
    BANK_TRANSFER = "bank_transfer"
    OTHER = "other"


#: Avro long: every integer we write must fit, or the record cannot be encoded downstream.
LONG_MAX = 2**63 - 1


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class OrderLine(_Record):
    line_id: str = Field(min_length=1)
    sku: str = Field(min_length=1)
    quantity: int = Field(gt=0, le=100_000)
    unit_price_minor: int = Field(ge=0, le=LONG_MAX)
    paid_price_minor: int = Field(ge=0, le=LONG_MAX)
    promotion_type: str | None = None


class Address(_Record):
    country: Market
    region: str | None = None
    city: str | None = None
    postcode: str | None = None
    #: ``contact_key`` of the buyer's phone and street line: the same buyer matches across orders and
    #: channels (COD fraud patterns) without the number or the address being kept
    phone_key: str | None = None
    address_key: str | None = None


def contact_key(kind: str, value: object) -> str | None:
    """A short stable hash of a phone (``kind="phone"``: its last 8 digits, so +65, 0 and local forms match) or
    an address line (lower-case letters and digits only); None when absent, masked, too short or not
    text. Lenient on purpose: an odd contact field never makes an order a dead letter."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or "*" in value:
        return None
    text = value
    if kind == "phone":
        digits = "".join(c for c in text if c.isdigit())
        norm = digits[-8:] if len(digits) >= 8 else ""
    else:
        norm = "".join(c for c in text.lower() if c.isalnum())
        norm = norm if len(norm) >= 8 else ""
    return hashlib.sha256(f"{kind}:{norm}".encode()).hexdigest()[:16] if norm else None


class RawRef(_Record):
    topic: str
    partition: int = Field(ge=0, le=2**31 - 1)
    offset: int = Field(ge=0, le=LONG_MAX)


class OrderEvent(_Record):
    """One canonical order event, the record on orders.v1."""

    event_id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    market: Market
    shop_id: str
    order_key: str = Field(min_length=1)
    channel_order_id: str = Field(min_length=1)
    status: OrderStatus
    channel_status: str
    payment_method: PaymentMethod
    is_cod: bool
    currency: str
    total_minor: int = Field(ge=0, le=LONG_MAX)
    lines: tuple[OrderLine, ...] = Field(min_length=1)
    shipping: Address
    ship_by_ms: int | None = Field(default=None, gt=0, le=LONG_MAX)
    created_ms: int = Field(gt=0, le=LONG_MAX)
    event_time_ms: int = Field(gt=0, le=LONG_MAX)
    ingest_time_ms: int = Field(gt=0, le=LONG_MAX)
    raw: RawRef

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        expected = MARKET_CURRENCY[self.market]
        if self.currency != expected:
            raise ValueError(f"currency {self.currency} does not match market {self.market} ({expected})")
        if self.order_key != order_key(self.tenant, self.channel, self.channel_order_id):
            raise ValueError(f"order_key {self.order_key!r} is not tenant:channel:channel_order_id")
        if self.is_cod != (self.payment_method is PaymentMethod.COD):
            raise ValueError("is_cod must be true exactly when payment_method is cod")
        return self

    def to_avro(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> OrderEvent:
        return cls.model_validate(record)

    def encode(self) -> bytes:
        return codec("order_event").encode(self.to_avro())

    @classmethod
    def decode(cls, data: bytes) -> OrderEvent:
        return cls.from_avro(codec("order_event").decode(data))


class OrderStatusUpdate(_Record):
    """A channel's status push: applies to an order by key, forward only (streams/lifecycle.py)."""

    event_id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    shop_id: str
    order_key: str = Field(min_length=1)
    channel_order_id: str = Field(min_length=1)
    line_id: str | None = None
    status: OrderStatus
    channel_status: str
    event_time_ms: int = Field(gt=0, le=LONG_MAX)
    ingest_time_ms: int = Field(gt=0, le=LONG_MAX)
    raw: RawRef
    original: bytes

    def to_avro(self) -> dict[str, Any]:
        record = self.model_dump(mode="json")
        record["original"] = self.original
        return record

    def encode(self) -> bytes:
        return codec("order_status_update").encode(self.to_avro())


class StockAdjustment(_Record):
    """A count (snapshot) or movement (delta) of one SKU in one warehouse, the record on inventory.adjustments."""

    adjustment_id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    sku: str = Field(min_length=1, max_length=128)
    warehouse: str = Field(min_length=1, max_length=64)
    kind: Literal["snapshot", "delta"]
    quantity: int = Field(ge=-(2**31), le=2**31)
    version: int = Field(ge=0, le=LONG_MAX)
    cause: str = Field(min_length=1)
    source: str
    event_time_ms: int = Field(gt=0, le=LONG_MAX)

    @model_validator(mode="after")
    def _counts_are_not_negative(self) -> Self:
        if self.kind == "snapshot" and self.quantity < 0:
            raise ValueError(f"a snapshot counts units on hand and cannot be negative, got {self.quantity}")
        return self

    def encode(self) -> bytes:
        return codec("stock_adjustment").encode(self.model_dump())

    @classmethod
    def decode(cls, data: bytes) -> StockAdjustment:
        return cls.model_validate(codec("stock_adjustment").decode(data))


#: What order-changes.v1 carries, told apart by the schema fingerprint in each record's header: one
#: change, or a batch of them (one normalize step's changes for one partition).
OrderChange = OrderEvent | OrderStatusUpdate
CHANGE_SCHEMAS = ("order_event", "order_status_update")
CHANGE_BATCH = "order_change_batch"


def decode_change(data: bytes) -> OrderChange:
    """One change (a full order or a status update): an item of a batch, or a record of its own."""
    return _change(*decode_any(data, CHANGE_SCHEMAS))


def decode_changes(data: bytes) -> list[OrderChange]:
    """An order-changes.v1 record: its changes in order (one, or a batch)."""
    name, record = decode_any(data, (*CHANGE_SCHEMAS, CHANGE_BATCH))
    if name == CHANGE_BATCH:
        return [decode_change(item) for item in record["changes"]]
    return [_change(name, record)]


def _change(name: str, record: dict[str, Any]) -> OrderChange:
    return OrderEvent.from_avro(record) if name == "order_event" else OrderStatusUpdate.model_validate(record)


def reservation_records(data: bytes) -> list[dict[str, Any]]:
    """A reservations.v1 record's answers as Avro records, in order: one (``reservation``), or an
    inventory step's batch for one partition (``reservation_batch``). Raises CodecError."""
    return decode_records(data, "reservation", "reservation_batch", "decisions")


def encode_change_batch(changes: list[bytes]) -> bytes:
    """Encoded changes (``OrderEvent.encode``, ``OrderStatusUpdate.encode``) as one order-changes.v1 record."""
    return codec(CHANGE_BATCH).encode({"changes": changes})


class DeadLetter(_Record):
    """An input refused by a step, with everything needed to fix and re-drive it."""

    dead_letter_id: str
    tenant: str
    channel: str | None
    stage: str
    reason_code: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: bytes | None = None
    source_headers: dict[str, bytes] = Field(default_factory=dict)
    original: bytes
    failed_at_ms: int

    @classmethod
    def of(
        cls,
        *,
        tenant: str,
        channel: str | None,
        stage: str,
        reason_code: str,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        headers: dict[str, bytes],
        original: bytes,
    ) -> DeadLetter:
        """A dead letter for the record at topic/partition/offset; its id is that position (stable)."""
        return cls(
            dead_letter_id=f"{topic}:{partition}:{offset}",
            tenant=tenant,
            channel=channel,
            stage=stage,
            reason_code=reason_code,
            reason=reason,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            source_key=key,
            source_headers=headers,
            original=original,
            failed_at_ms=int(time.time() * 1000),
        )

    def to_avro(self) -> dict[str, Any]:
        return self.model_dump()

    def encode(self) -> bytes:
        return codec("dead_letter").encode(self.to_avro())

    @classmethod
    def decode(cls, data: bytes) -> DeadLetter:
        return cls.model_validate(codec("dead_letter").decode(data))


def order_key(tenant: str, channel: str, channel_order_id: str) -> str:
    """The key of an order on every order-keyed topic."""
    return f"{tenant}:{channel}:{channel_order_id}"
