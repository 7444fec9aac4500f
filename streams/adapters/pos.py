"""Our own order JSON, ``oms.pos.v1``: POS counters, social selling (Facebook, Instagram, WhatsApp)
and orders keyed in by hand, to canonical order events.

The format is ours and documented for integrators in docs/pos-order-format.md; keep the two in step.
Because we define it, it is strict: canonical status and payment names only, money as decimal
strings (or numbers) in major units, and a total that must add up to the lines.
"""

from __future__ import annotations

from typing import Any

from schemas.order import (
    MARKET_CURRENCY,
    Address,
    Market,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    contact_key,
    order_key,
)
from streams.adapters.base import Fields, RawInput, Rejected, canonical_fields, stable_event_id

CHANNEL = "pos"

#: The ``format`` value this adapter reads. A later version gets a new name and its own branch.
FORMAT = "oms.pos.v1"

#: Where the order was taken. All of them are the "pos" channel; the source is kept in channel_status.
SOURCES = ("pos", "facebook", "instagram", "whatsapp", "manual")

#: The sender states the canonical status itself, by its canonical name.
STATUS: dict[str, OrderStatus] = {status.value: status for status in OrderStatus}

#: Payment names of the format -> canonical method.
PAYMENT: dict[str, PaymentMethod] = {
    # Cash handed over at a counter (or on pickup) is money in hand. COD means goods leaving with a
    # courier before they are paid, with the refusal and remittance risk that COD rules and alerts
    # are about; counting every cash sale as COD would trip them. The enum has no "cash", so: other.
    "cash": PaymentMethod.OTHER,
    "card": PaymentMethod.CARD,
    "ewallet": PaymentMethod.EWALLET,
    "bnpl": PaymentMethod.BNPL,
    "bank_transfer": PaymentMethod.BANK_TRANSFER,
    "cod": PaymentMethod.COD,
    "other": PaymentMethod.OTHER,
}

#: Epoch milliseconds accepted for times sent as numbers: 1973-03-03 .. 9999-12-31. A smaller
#: number is almost surely epoch seconds, and taking it as milliseconds would date the order 1970.
EPOCH_MS_MIN = 100_000_000_000
EPOCH_MS_MAX = 253_402_300_799_999


def normalize(raw: RawInput, body: Any, tenant: str) -> list[OrderEvent]:
    """The one order in an ``oms.pos.v1`` document."""
    root = Fields(body, "")
    if root.obj.get("format") != FORMAT:
        raise Rejected("unknown_shape", f"format: {root.obj.get('format')!r} is not {FORMAT!r}")
    return [_order(raw, root, tenant)]


def _order(raw: RawInput, order: Fields, tenant: str) -> OrderEvent:
    order_id = order.text("order_id")
    market = _market(raw, order)
    currency = order.text("currency")
    if currency != MARKET_CURRENCY[market]:
        raise Rejected(
            "invalid_field",
            f"{order.at('currency')}: {currency} is not the currency of market {market} ({MARKET_CURRENCY[market]})",
        )
    source = order.text("source")
    if source not in SOURCES:
        raise Rejected("invalid_field", f"{order.at('source')}: {source!r} is not one of {', '.join(SOURCES)}")
    name = order.text("status")
    status = STATUS.get(name)
    if status is None:
        raise Rejected("unknown_status", f"{order.at('status')}: {name!r} is not a canonical status")
    payment = order.text("payment_method")
    method = PAYMENT.get(payment)
    if method is None:
        raise Rejected("invalid_field", f"{order.at('payment_method')}: {payment!r} is not one of {', '.join(PAYMENT)}")
    channel_status = f"{source}/{name}"
    created_ms = _time_ms(order, "created_at")
    event_ms = _time_ms(order, "updated_at") if order.has("updated_at") else created_ms
    key = order_key(tenant, CHANNEL, order_id)
    shipping = order.optional_obj("shipping")  # null for a sale handed over in store
    with canonical_fields(f"order {order_id}"):
        lines = tuple(_lines(order, currency))
        return OrderEvent(
            event_id=stable_event_id(key, channel_status, event_ms),
            tenant=tenant,
            channel=CHANNEL,
            market=market,
            shop_id=raw.header("shop") or order.optional_text("store_id") or "",
            order_key=key,
            channel_order_id=order_id,
            status=status,
            channel_status=channel_status,
            payment_method=method,
            is_cod=method is PaymentMethod.COD,
            currency=currency,
            total_minor=_total(order, lines, currency),
            lines=lines,
            shipping=Address(
                country=market,
                region=shipping.optional_text("region") if shipping else None,
                city=shipping.optional_text("city") if shipping else None,
                postcode=shipping.optional_text("postcode") if shipping else None,
                phone_key=contact_key("phone", shipping.obj.get("phone")) if shipping else None,
                address_key=contact_key("address", shipping.obj.get("address")) if shipping else None,
            ),
            created_ms=created_ms,
            event_time_ms=event_ms,
            ingest_time_ms=raw.ingest_ms,
            raw=raw.ref,
        )


def _market(raw: RawInput, order: Fields) -> Market:
    market = order.text("market") if order.has("market") else raw.header("market")
    if market is None or market not in Market.__members__:
        raise Rejected("invalid_field", f"{order.at('market')}: unknown market {market!r}")
    return Market(market)


def _lines(order: Fields, currency: str) -> list[OrderLine]:
    lines: list[OrderLine] = []
    for i, item in enumerate(order.items("lines")):
        f = Fields(item, order.at(f"lines[{i}]"))
        sku = f.optional_text("sku")
        if sku is None:
            raise Rejected("missing_sku", f"{f.at('sku')}: is missing or empty")
        line_id = f.optional_text("line_id") or str(i + 1)
        if any(line.line_id == line_id for line in lines):
            raise Rejected("invalid_field", f"{f.at('line_id')}: {line_id!r} is used by an earlier line")
        unit = f.money("unit_price", currency)
        lines.append(
            OrderLine(
                line_id=line_id,
                sku=sku,
                quantity=f.integer("quantity", minimum=1),
                unit_price_minor=unit,
                paid_price_minor=f.money("paid_price", currency) if f.has("paid_price") else unit,
                promotion_type=f.optional_text("promotion_type"),
            )
        )
    return lines


def _total(order: Fields, lines: tuple[OrderLine, ...], currency: str) -> int:
    """``total``, which must equal the lines' paid prices + ``shipping_fee`` - ``discount``, exactly.

    The strict check is affordable because the format is ours: prices are tax-inclusive and the two
    optional order-level amounts carry everything else. It catches what integrators get wrong most
    (minor units sent as major ones, a line left out, rounding on their side) at the door.
    """
    total = order.money("total", currency)
    fee, discount = (_non_negative(order, name, currency) for name in ("shipping_fee", "discount"))
    expected = sum(line.paid_price_minor * line.quantity for line in lines) + fee - discount
    if total != expected:
        raise Rejected(
            "invalid_money",
            f"{order.at('total')}: {order.obj['total']!r} is {total} minor units, but lines + shipping_fee - discount "
            f"make {expected}",
        )
    return total


def _non_negative(order: Fields, name: str, currency: str) -> int:
    """An optional order-level amount, 0 when absent."""
    amount = order.money(name, currency) if order.has(name) else 0
    if amount < 0:
        raise Rejected("invalid_money", f"{order.at(name)}: cannot be negative, got {order.obj[name]!r}")
    return amount


def _time_ms(f: Fields, name: str) -> int:
    """UTC epoch ms from an ISO-8601 time with a UTC offset, or from epoch milliseconds as a number."""
    value = f.obj.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        ms = f.integer(name)
        if not EPOCH_MS_MIN <= ms <= EPOCH_MS_MAX:
            raise Rejected(
                "invalid_field", f"{f.at(name)}: {value!r} is not epoch milliseconds (epoch seconds? times 1000)"
            )
        return ms
    return f.iso_time_ms(name)
