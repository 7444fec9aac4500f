"""Shopee Open Platform v2: ``get_order_detail`` responses, unchanged, to canonical order events.

Shape (../shared/reference/marketplace-payloads.md): ``response.order_list[]``, money as floats in
major units, times in epoch seconds, ``recipient_address.zipcode`` possibly "", variants in
``model_sku`` with ``item_sku`` as the fallback.
"""

from __future__ import annotations

from typing import Any

from schemas.order import (
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
from streams.adapters.base import (
    Fields,
    RawInput,
    Rejected,
    canonical_fields,
    epoch_s_to_ms,
    stable_event_id,
    status_update,
)

CHANNEL = "shopee"

#: Shopee order_status -> canonical status. An unknown status is refused, never guessed.
STATUS: dict[str, OrderStatus] = {
    "UNPAID": OrderStatus.PENDING_PAYMENT,
    "READY_TO_SHIP": OrderStatus.PAID,
    "PROCESSED": OrderStatus.PROCESSING,
    "RETRY_SHIP": OrderStatus.PROCESSING,
    "SHIPPED": OrderStatus.SHIPPED,
    "TO_CONFIRM_RECEIVE": OrderStatus.DELIVERED,
    "IN_CANCEL": OrderStatus.PAID,  # buyer asked to cancel; the seller may still refuse: not cancelled yet
    "CANCELLED": OrderStatus.CANCELLED,
    "TO_RETURN": OrderStatus.DELIVERED,  # return requested; stock comes back only after QC
    "COMPLETED": OrderStatus.COMPLETED,
}

_PAYMENT_WORDS: tuple[tuple[str, PaymentMethod], ...] = (
    ("cash on delivery", PaymentMethod.COD),
    ("cod", PaymentMethod.COD),
    ("paylater", PaymentMethod.BNPL),
    ("later", PaymentMethod.BNPL),
    ("atome", PaymentMethod.BNPL),
    ("card", PaymentMethod.CARD),
    ("pay", PaymentMethod.EWALLET),  # ShopeePay, GrabPay, GCash-style wallets
    ("wallet", PaymentMethod.EWALLET),
    ("gcash", PaymentMethod.EWALLET),
    ("bank", PaymentMethod.BANK_TRANSFER),
    ("virtual account", PaymentMethod.BANK_TRANSFER),
    ("transfer", PaymentMethod.BANK_TRANSFER),
)


def payment_method(name: str | None, cod: bool) -> PaymentMethod:
    """The canonical method; the ``cod`` flag wins, and a method named cash-on-delivery is COD too."""
    if cod:
        return PaymentMethod.COD
    text = (name or "").lower()
    for word, method in _PAYMENT_WORDS:
        if word in text:
            return method
    return PaymentMethod.OTHER


def normalize(raw: RawInput, body: Any, tenant: str) -> list[OrderChange]:
    """All orders in one get_order_detail response body, or the status update of one push."""
    root = Fields(body, "")
    if root.has("code") and root.has("data"):
        return [_status_push(raw, root, tenant)]
    if root.optional_text("error"):
        raise Rejected("channel_error", f"Shopee answered error={root.obj['error']!r}: {root.obj.get('message')!r}")
    if not root.has("response"):
        raise Rejected("unknown_shape", "not a Shopee get_order_detail response: no 'response' object")
    orders = root.obj_field("response").items("order_list")
    # one change per order: a response may hold up to 50
    return [_order(raw, Fields(order, f"response.order_list[{i}]"), tenant) for i, order in enumerate(orders)]


#: Push codes: 3 order status, 4 tracking number (not a status: refused until shipping is modelled).
STATUS_PUSH = 3


def _status_push(raw: RawInput, root: Fields, tenant: str) -> OrderStatusUpdate:
    code = root.integer("code")
    if code != STATUS_PUSH:
        raise Rejected("unsupported_shape", f"code: Shopee push code {code} is not an order status push (3)")
    data = root.obj_field("data")
    order_sn = data.text("ordersn")  # sic: no underscore in pushes
    channel_status = data.text("status")
    status = STATUS.get(channel_status)
    if status is None:
        raise Rejected("unknown_status", f"{data.at('status')}: unknown Shopee status {channel_status!r}")
    event_ms = epoch_s_to_ms(data.optional_integer("update_time") or root.integer("timestamp", minimum=1))
    return status_update(
        raw,
        tenant,
        CHANNEL,
        channel_order_id=order_sn,
        shop_id=raw.header("shop") or (root.text("shop_id") if root.has("shop_id") else ""),
        status=status,
        channel_status=channel_status,
        event_time_ms=event_ms,
        path="data",
    )


def _order(raw: RawInput, order: Fields, tenant: str) -> OrderEvent:
    order_sn = order.text("order_sn")
    region = order.text("region") if order.has("region") else raw.header("market")
    if region is None or region not in Market.__members__:
        raise Rejected("invalid_field", f"{order.at('region')}: unknown market {region!r}")
    market = Market(region)
    currency = order.text("currency")
    if currency != MARKET_CURRENCY[market]:
        raise Rejected(
            "invalid_field",
            f"{order.at('currency')}: {currency} is not the currency of market {market} ({MARKET_CURRENCY[market]})",
        )
    channel_status = order.text("order_status")
    status = STATUS.get(channel_status)
    if status is None:
        raise Rejected("unknown_status", f"{order.at('order_status')}: unknown Shopee status {channel_status!r}")
    method = payment_method(order.optional_text("payment_method"), order.flag("cod"))
    created_ms = epoch_s_to_ms(order.integer("create_time", minimum=1))
    event_ms = epoch_s_to_ms(order.optional_integer("update_time") or order.integer("create_time"))
    ship_by = order.optional_integer("ship_by_date")
    key = order_key(tenant, CHANNEL, order_sn)
    address = order.optional_obj("recipient_address")
    with canonical_fields(f"{order.path}"):
        return OrderEvent(
            event_id=stable_event_id(key, channel_status, event_ms),
            tenant=tenant,
            channel=CHANNEL,
            market=market,
            shop_id=raw.header("shop") or (order.text("shop_id") if order.has("shop_id") else ""),
            order_key=key,
            channel_order_id=order_sn,
            status=status,
            channel_status=channel_status,
            payment_method=method,
            is_cod=method is PaymentMethod.COD,
            currency=currency,
            total_minor=order.money("total_amount", currency),
            lines=tuple(_lines(order, currency)),
            shipping=Address(
                country=market,
                region=address.optional_text("state") if address else None,
                city=address.optional_text("city") if address else None,
                postcode=address.optional_text("zipcode") if address else None,
                phone_key=contact_key("phone", address.obj.get("phone")) if address else None,
                address_key=contact_key("address", address.obj.get("full_address")) if address else None,
            ),
            ship_by_ms=epoch_s_to_ms(ship_by) if ship_by else None,
            created_ms=created_ms,
            event_time_ms=event_ms,
            ingest_time_ms=raw.ingest_ms,
            raw=raw.ref,
        )


def _lines(order: Fields, currency: str) -> list[OrderLine]:
    lines: list[OrderLine] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(order.items("item_list")):
        f = Fields(item, order.at(f"item_list[{i}]"))
        sku = f.optional_text("model_sku") or f.optional_text("item_sku")
        if sku is None:
            raise Rejected("missing_sku", f"{f.path}: neither model_sku nor item_sku is set")
        line_id = f"{f.text('item_id')}:{f.optional_text('model_id') or '0'}"
        seen[line_id] = seen.get(line_id, 0) + 1
        if seen[line_id] > 1:
            line_id = f"{line_id}#{seen[line_id]}"
        original = f.money("model_original_price", currency)
        discounted = f.money("model_discounted_price", currency) if f.has("model_discounted_price") else original
        lines.append(
            OrderLine(
                line_id=line_id,
                sku=sku,
                quantity=f.integer("model_quantity_purchased", minimum=1),
                unit_price_minor=original,
                paid_price_minor=discounted,
                promotion_type=f.optional_text("promotion_type"),
            )
        )
    return lines
