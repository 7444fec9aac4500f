"""Lazada Open Platform: one order's GetOrder and GetOrderItems responses, unchanged, to one canonical event.

Lazada needs two calls for one order, so the connector produces one envelope holding both response bodies
exactly as received::

    {"envelope": "lazada.order.v1",
     "order": {"code": "0", "data": {...the GetOrder order...}, "request_id": "..."},
     "items": {"code": "0", "data": [{...one object per unit...}, ...], "request_id": "..."}}

Shape (../shared/reference/marketplace-payloads.md): no order-level status, each unit has its own ``status``;
money as strings or floats depending on the SDK; ``created_at`` like "2026-09-16 10:00:00 +0800";
``address_shipping.country`` a country name ("Malaysia") or code, ``address3`` the state.

- GetOrderItems returns one object per unit: units of the same ``sku`` at the same prices fold into one line,
  ``quantity`` = the number of units, ``line_id`` = their ``order_item_id``s sorted and joined by "+".
- The order status is the least advanced status of the units not canceled, and the lines are those units
  (a canceled unit is not to be shipped); all units canceled: cancelled, with all of them as lines.
  ``channel_status`` is every unit status, sorted, unique, joined by ",".
- The total is what the buyer pays, by Lazada's own formula: ``price - voucher + shipping_fee``.
- Push messages with ``message_type`` 0 (trade order) say that ONE unit changed status::

    {"seller_id": .., "message_type": 0, "site": "lazada_my", "timestamp": <ms>,
     "data": {"order_status": "shipped", "trade_order_id": .., "trade_order_line_id": .., "status_update_time": <s>}}

  Each becomes an ``OrderStatusUpdate`` for that unit: ``line_id`` is the ``trade_order_line_id`` read exactly
  as ``order_item_id`` is read for the folded ``line_id`` above, so streams.lifecycle finds the unit inside
  "id1+id2". The status uses the item table below; the time is ``status_update_time`` (seconds), else the
  push ``timestamp`` (milliseconds). Other message types are refused as unsupported.
"""

from __future__ import annotations

from typing import Any

from schemas.order import (
    LONG_MAX,
    MARKET_CURRENCY,
    Address,
    Market,
    OrderChange,
    OrderEvent,
    OrderLine,
    OrderStatus,
    OrderStatusUpdate,
    PaymentMethod,
    contact_key,
    order_key,
)
from streams.adapters.base import Fields, RawInput, Rejected, canonical_fields, stable_event_id, status_update

CHANNEL = "lazada"
ENVELOPE = "lazada.order.v1"

#: Lazada order item status -> canonical status. An unknown status is refused, never guessed.
STATUS: dict[str, OrderStatus] = {
    "unpaid": OrderStatus.PENDING_PAYMENT,
    "pending": OrderStatus.PAID,  # paid (or COD confirmed), waiting for the seller to pack
    "packed": OrderStatus.PROCESSING,
    "repacked": OrderStatus.PROCESSING,
    "ready_to_ship": OrderStatus.PROCESSING,  # packed and declared ready; the carrier has not collected it yet
    "shipped": OrderStatus.SHIPPED,
    "delivered": OrderStatus.DELIVERED,
    "failed_delivery": OrderStatus.SHIPPED,  # still out (redelivery or on its way back); stock returns only on receipt
    "canceled": OrderStatus.CANCELLED,
    "returned": OrderStatus.RETURNED,
    "lost_by_3pl": OrderStatus.SHIPPED,  # left the warehouse and will not come back: never restock it
}

#: Fragments of Lazada payment_method codes -> canonical method, first match wins (COD is matched whole).
#: Instalment plans (*_IPP) run on cards, except the pay-later lenders listed first.
_PAYMENT_CODES: tuple[tuple[str, PaymentMethod], ...] = (
    ("PAY_LATER", PaymentMethod.BNPL),
    ("KREDIVO", PaymentMethod.BNPL),
    ("AKULAKU", PaymentMethod.BNPL),
    ("CARD", PaymentMethod.CARD),  # MIXEDCARD, BCA_DEBITCARD
    ("_IPP", PaymentMethod.CARD),
    ("WALLET", PaymentMethod.EWALLET),  # WALLET_OVO, MOMO_WALLET, AC_WALLET_BOOST, LAZADA_WALLET
    ("PAYPAL", PaymentMethod.EWALLET),
    ("GCASH", PaymentMethod.EWALLET),
    ("DANA_", PaymentMethod.EWALLET),  # DANA_EBANK is the DANA wallet
    ("_TNG_", PaymentMethod.EWALLET),  # GN_TNG_EBANK is Touch 'n Go eWallet
    ("TMN_", PaymentMethod.EWALLET),  # TrueMoney
    ("ZALOPAY", PaymentMethod.EWALLET),
    ("LINE_PAY", PaymentMethod.EWALLET),
    ("_VA", PaymentMethod.BANK_TRANSFER),
    ("VIRTUAL_ACCOUNT", PaymentMethod.BANK_TRANSFER),
    ("BANK_ONLINE", PaymentMethod.BANK_TRANSFER),
    ("NAPAS", PaymentMethod.BANK_TRANSFER),
)

#: address_shipping.country as Lazada writes it (a name, sometimes a code) -> market.
_COUNTRIES: dict[str, Market] = {
    **{market.value.lower(): market for market in Market},
    "singapore": Market.SG,
    "malaysia": Market.MY,
    "indonesia": Market.ID,
    "thailand": Market.TH,
    "vietnam": Market.VN,
    "viet nam": Market.VN,
    "philippines": Market.PH,
}


def payment_method(code: str | None) -> PaymentMethod:
    """The canonical method of a Lazada payment_method code (COD, MIXEDCARD, WALLET_OVO, BNI_VA, ...)."""
    text = (code or "").strip().upper().replace(" ", "_")
    if text in ("COD", "CASH_ON_DELIVERY"):
        return PaymentMethod.COD
    for fragment, method in _PAYMENT_CODES:
        if fragment in text:
            return method
    return PaymentMethod.OTHER


def normalize(raw: RawInput, body: Any, tenant: str) -> list[OrderChange]:
    """The one order in a lazada.order.v1 envelope, or the one unit's status update of a push."""
    root = Fields(body, "")
    if root.has("message_type"):
        return [_status_push(raw, root, tenant)]
    if not root.has("envelope"):
        raise Rejected("unknown_shape", f"not a Lazada order envelope ({ENVELOPE}): no 'envelope'")
    envelope = root.text("envelope")
    if envelope != ENVELOPE:
        raise Rejected("unsupported_shape", f"envelope: {envelope!r} is not {ENVELOPE!r}")
    order = _answer(root, "order").obj_field("data")
    units = _answer(root, "items").items("data")
    return [_order(raw, order, [Fields(unit, f"items.data[{i}]") for i, unit in enumerate(units)], tenant)]


#: Push message_type of trade order (unit status) notifications; other types are not order statuses.
STATUS_PUSH = 0


def _status_push(raw: RawInput, root: Fields, tenant: str) -> OrderStatusUpdate:
    """One unit's status change: an update of that unit (``line_id``), applied by streams.lifecycle."""
    message_type = root.integer("message_type")
    if message_type != STATUS_PUSH:
        raise Rejected(
            "unsupported_shape",
            f"message_type: Lazada push message_type {message_type} is not a trade order status push ({STATUS_PUSH})",
        )
    data = root.obj_field("data")
    order_id = data.text("trade_order_id")
    line_id = data.text("trade_order_line_id")  # read like order_item_id, so it matches inside a folded line_id
    channel_status = data.text("order_status")
    status = STATUS.get(channel_status)
    if status is None:
        raise Rejected("unknown_status", f"{data.at('order_status')}: unknown Lazada item status {channel_status!r}")
    event_ms = _push_time_ms(root, data)
    return status_update(
        raw,
        tenant,
        CHANNEL,
        channel_order_id=order_id,
        shop_id=raw.header("shop") or (root.text("seller_id") if root.has("seller_id") else ""),
        status=status,
        channel_status=channel_status,
        event_time_ms=event_ms,
        line_id=line_id,
        path="data",
    )


def _push_time_ms(root: Fields, data: Fields) -> int:
    """``data.status_update_time`` (epoch seconds), else (absent or 0) the push ``timestamp`` (epoch ms)."""
    seconds = data.optional_integer("status_update_time")
    f, name, scale = (data, "status_update_time", 1000) if seconds else (root, "timestamp", 1)
    value = f.integer(name, minimum=1)
    if value > LONG_MAX // scale:
        raise Rejected("invalid_field", f"{f.at(name)}: {value} is out of range")
    return value * scale


def _answer(root: Fields, name: str) -> Fields:
    """One Lazada response body; a code other than "0" is Lazada refusing the call."""
    answer = root.obj_field(name)
    code = answer.text("code")
    if code != "0":
        raise Rejected("channel_error", f"{answer.at('code')}: Lazada answered {code!r}: {answer.obj.get('message')!r}")
    return answer


def _order(raw: RawInput, order: Fields, units: list[Fields], tenant: str) -> OrderEvent:
    order_id = order.text("order_id")
    for unit in units:
        if unit.has("order_id") and unit.text("order_id") != order_id:
            raise Rejected(
                "invalid_field", f"{unit.at('order_id')}: {unit.text('order_id')} is not this order ({order_id})"
            )
    address = order.optional_obj("address_shipping")
    market = _market(raw, order, address, units)
    currency = MARKET_CURRENCY[market]
    for unit in units:
        if unit.has("currency") and unit.text("currency") != currency:
            raise Rejected(
                "invalid_field",
                f"{unit.at('currency')}: {unit.text('currency')} is not the currency of market {market} ({currency})",
            )
    statuses = [_unit_status(unit) for unit in units]
    live = [(unit, status) for unit, status in zip(units, statuses, strict=True) if status is not OrderStatus.CANCELLED]
    status = min((status for _, status in live), key=lambda s: s.rank, default=OrderStatus.CANCELLED)
    channel_status = ",".join(sorted({unit.text("status") for unit in units}))
    method = payment_method(order.optional_text("payment_method"))
    created_ms = order.iso_time_ms("created_at")
    event_ms = order.iso_time_ms("updated_at") if order.has("updated_at") else created_ms
    voucher = order.money("voucher", currency) if order.has("voucher") else 0
    shipping_fee = order.money("shipping_fee", currency) if order.has("shipping_fee") else 0
    total = order.money("price", currency) - voucher + shipping_fee
    shop_from_units = next((unit.text("shop_id") for unit in units if unit.has("shop_id")), "")
    key = order_key(tenant, CHANNEL, order_id)
    with canonical_fields(f"{order.path}"):
        return OrderEvent(
            event_id=stable_event_id(key, channel_status, event_ms),
            tenant=tenant,
            channel=CHANNEL,
            market=market,
            shop_id=raw.header("shop") or shop_from_units,
            order_key=key,
            channel_order_id=order_id,
            status=status,
            channel_status=channel_status,
            payment_method=method,
            is_cod=method is PaymentMethod.COD,
            currency=currency,
            total_minor=total,
            lines=tuple(_lines([unit for unit, _ in live] or units, currency)),
            shipping=Address(
                country=market,
                region=address.optional_text("address3") if address else None,
                city=(address.optional_text("city") or address.optional_text("address4")) if address else None,
                postcode=(address.optional_text("post_code") or address.optional_text("address5")) if address else None,
                phone_key=contact_key("phone", address.obj.get("phone")) if address else None,
                address_key=contact_key("address", address.obj.get("address1")) if address else None,
            ),
            ship_by_ms=None,
            created_ms=created_ms,
            event_time_ms=event_ms,
            ingest_time_ms=raw.ingest_ms,
            raw=raw.ref,
        )


def _market(raw: RawInput, order: Fields, address: Fields | None, units: list[Fields]) -> Market:
    """The shipping country, else the connector's market header, else the market of the units' currency."""
    country = address.optional_text("country") if address else None
    if country is not None:
        market = _COUNTRIES.get(country.lower())
        if market is None:
            raise Rejected("invalid_field", f"{order.at('address_shipping.country')}: {country!r} is not a market")
        return market
    header = raw.header("market")
    if header is not None:
        if header not in Market.__members__:
            raise Rejected("invalid_field", f"header market: unknown market {header!r}")
        return Market(header)
    for unit in units:
        if unit.has("currency"):
            currency = unit.text("currency")
            for market, market_currency in MARKET_CURRENCY.items():
                if market_currency == currency:
                    return market
            raise Rejected("invalid_field", f"{unit.at('currency')}: {currency} is no market's currency")
    raise Rejected(
        "invalid_field", f"{order.at('address_shipping.country')}: no country, no market header, no currency"
    )


def _unit_status(unit: Fields) -> OrderStatus:
    name = unit.text("status")
    status = STATUS.get(name)
    if status is None:
        raise Rejected("unknown_status", f"{unit.at('status')}: unknown Lazada item status {name!r}")
    return status


def _lines(units: list[Fields], currency: str) -> list[OrderLine]:
    """One line per (sku, item price, paid price): Lazada sends one object per unit."""
    folded: dict[tuple[str, int, int], list[str]] = {}
    for unit in units:
        sku = unit.optional_text("sku")
        if sku is None:
            raise Rejected("missing_sku", f"{unit.path}: sku is not set")
        price = unit.money("item_price", currency)
        if unit.has("paid_price"):
            paid = unit.money("paid_price", currency)
        else:  # paid_price is item_price less the vouchers on the unit
            paid = price - (unit.money("voucher_amount", currency) if unit.has("voucher_amount") else 0)
        folded.setdefault((sku, price, paid), []).append(unit.text("order_item_id"))
    return [
        OrderLine(
            line_id="+".join(sorted(item_ids)),
            sku=sku,
            quantity=len(item_ids),
            unit_price_minor=price,
            paid_price_minor=paid,
        )
        for (sku, price, paid), item_ids in folded.items()
    ]
