"""TikTok Shop API 202309: ``Get Order Detail`` responses, unchanged, to canonical order events.

Shape (../shared/reference/marketplace-payloads.md): ``{"code": 0, "message": "Success", "request_id": ..,
"data": {"orders": [...]}}``; money as decimal strings in ``payment``, times in epoch seconds, the market in
``recipient_address.region_code``, region and city in ``recipient_address.district_info[]``.
``line_items[]`` holds one object per unit (no quantity field; a ``quantity`` is honoured when present):
units of the same SKU at the same prices fold into one line, ``quantity`` = the units, ``line_id`` = their
``id``s sorted and joined by "+". The SKU is ``seller_sku``, else TikTok's ``sku_id``.

Webhooks ``{"type": 1, "tts_notification_id": .., "shop_id": .., "timestamp": <s>, "data": {"order_id": ..,
"order_status": .., "update_time": <s>}}``: type 1 (order status change) becomes an order-level
``OrderStatusUpdate`` (status by the same table, the webhooks' "CANCEL" included), timed by ``data.update_time``,
else the webhook ``timestamp``, both epoch seconds. TikTok retries a webhook with the same body, so a retry gets
the same event id. Other webhook types are refused as unsupported.

Since the 2025 merger, Indonesian Tokopedia orders and webhooks arrive in this shape too:
streams.adapters.tokopedia hands them to ``normalize(..., channel="tokopedia")``.
"""

from __future__ import annotations

import re
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
from streams.adapters.base import (
    Fields,
    RawInput,
    Rejected,
    canonical_fields,
    epoch_s_to_ms,
    stable_event_id,
    status_update,
)

CHANNEL = "tiktok"

#: TikTok Shop order status -> canonical status. An unknown status is refused, never guessed.
STATUS: dict[str, OrderStatus] = {
    "UNPAID": OrderStatus.PENDING_PAYMENT,
    "ON_HOLD": OrderStatus.PAID,  # paid, held through the buyer's free-cancellation window: not shippable yet
    "AWAITING_SHIPMENT": OrderStatus.PAID,
    "PARTIALLY_SHIPPING": OrderStatus.PROCESSING,  # some packages left, not all: the order is as far as its slowest
    "AWAITING_COLLECTION": OrderStatus.PROCESSING,  # packed and labelled, waiting for the carrier
    "IN_TRANSIT": OrderStatus.SHIPPED,
    "DELIVERED": OrderStatus.DELIVERED,
    "COMPLETED": OrderStatus.COMPLETED,
    "CANCELLED": OrderStatus.CANCELLED,
    "CANCEL": OrderStatus.CANCELLED,  # the spelling webhooks use
}

#: Payment method display names (any market, any language TikTok uses) -> canonical method; first match wins.
#: Wallets before banks so "DANA" or "Touch 'n Go eWallet" are not bank transfers; \b keeps "Danamon" a bank.
_PAYMENT_NAMES: tuple[tuple[re.Pattern[str], PaymentMethod], ...] = tuple(
    (re.compile(pattern), method)
    for pattern, method in (
        (r"cash on delivery|\bcod\b", PaymentMethod.COD),
        (r"pay ?later|kredivo|akulaku|atome|home ?credit", PaymentMethod.BNPL),
        (r"card|\bvisa\b|mastercard|\bjcb\b", PaymentMethod.CARD),
        (
            r"wallet|truemoney|gopay|shopeepay|grabpay|\bovo\b|\bdana\b|linkaja|gcash|\bmaya\b|momo|zalopay"
            r"|touch ?'?n ?go|\btng\b|\bboost\b|line ?pay",
            PaymentMethod.EWALLET,
        ),
        (r"bank|virtual account|\bva\b|transfer|promptpay", PaymentMethod.BANK_TRANSFER),
    )
)

#: district_info level names that hold the region and the city, in order of preference (levels differ by
#: market: ID Province/City/District, TH Province/District, PH Region/Province/City, MY State/City).
_REGION_LEVELS = ("province", "state", "region")
_CITY_LEVELS = ("city", "city/municipality", "municipality", "district")

_INTEGER_TEXT = re.compile(r"-?[0-9]+")


def payment_method(name: str | None, cod: bool) -> PaymentMethod:
    """The canonical method of a payment method display name; the ``cod`` flag wins."""
    if cod:
        return PaymentMethod.COD
    text = (name or "").lower()
    for pattern, method in _PAYMENT_NAMES:
        if pattern.search(text):
            return method
    return PaymentMethod.OTHER


def looks_like(body: Any) -> bool:
    """Whether a body is TikTok Shop-shaped (an API response or a webhook), whichever channel it came on."""
    return isinstance(body, dict) and (
        "tts_notification_id" in body or {"code", "message", "request_id"} <= body.keys()
    )


def normalize(raw: RawInput, body: Any, tenant: str, *, channel: str = CHANNEL) -> list[OrderChange]:
    """All orders in one Get Order Detail response body, or the status update of one webhook, of ``channel``."""
    root = Fields(body, "")
    if root.has("tts_notification_id") or (root.has("type") and not root.has("code")):
        return [_webhook(raw, root, tenant, channel)]
    if not root.has("code"):
        raise Rejected("unknown_shape", "not a TikTok Shop Get Order Detail response: no 'code'")
    if root.text("code") != "0":
        raise Rejected("channel_error", f"TikTok Shop answered code={root.obj['code']!r}: {root.obj.get('message')!r}")
    orders = root.obj_field("data").items("orders")
    return [_order(raw, Fields(order, f"data.orders[{i}]"), tenant, channel) for i, order in enumerate(orders)]


#: Webhook type of an order status change; the others (reverse, package, product, ...) are not order statuses.
ORDER_STATUS_CHANGE = 1


def _webhook(raw: RawInput, root: Fields, tenant: str, channel: str) -> OrderStatusUpdate:
    """An order status change webhook: an order-level update (TikTok reports status per order, not per unit)."""
    kind = root.integer("type")
    if kind != ORDER_STATUS_CHANGE:
        raise Rejected(
            "unsupported_shape",
            f"type: TikTok Shop webhook type {kind} is not an order status change ({ORDER_STATUS_CHANGE})",
        )
    data = root.obj_field("data")
    order_id = data.text("order_id")
    channel_status = data.text("order_status")
    status = STATUS.get(channel_status)
    if status is None:
        raise Rejected("unknown_status", f"{data.at('order_status')}: unknown TikTok Shop status {channel_status!r}")
    event_ms = _webhook_time_ms(root, data)
    return status_update(
        raw,
        tenant,
        channel,
        channel_order_id=order_id,
        shop_id=raw.header("shop") or (root.text("shop_id") if root.has("shop_id") else ""),
        status=status,
        channel_status=channel_status,
        event_time_ms=event_ms,
        path="data",
    )


def _webhook_time_ms(root: Fields, data: Fields) -> int:
    """``data.update_time``, else (absent or 0) the webhook ``timestamp``: both epoch seconds, as epoch ms."""
    f, name = (data, "update_time") if data.optional_integer("update_time") else (root, "timestamp")
    seconds = f.integer(name, minimum=1)
    if seconds > LONG_MAX // 1000:
        raise Rejected("invalid_field", f"{f.at(name)}: {seconds} s is out of range")
    return epoch_s_to_ms(seconds)


def _order(raw: RawInput, order: Fields, tenant: str, channel: str) -> OrderEvent:
    order_id = order.text("id")
    payment = order.obj_field("payment")
    address = order.optional_obj("recipient_address")
    currency = payment.text("currency")
    market = _market(raw, order, address, currency)
    if currency != MARKET_CURRENCY[market]:
        raise Rejected(
            "invalid_field",
            f"{payment.at('currency')}: {currency} is not the currency of market {market} ({MARKET_CURRENCY[market]})",
        )
    channel_status = order.text("status")
    status = STATUS.get(channel_status)
    if status is None:
        raise Rejected("unknown_status", f"{order.at('status')}: unknown TikTok Shop status {channel_status!r}")
    method = payment_method(order.optional_text("payment_method_name"), order.flag("is_cod"))
    created_ms = epoch_s_to_ms(order.integer("create_time", minimum=1))
    updated = order.optional_integer("update_time")
    event_ms = epoch_s_to_ms(updated) if updated else created_ms
    ship_by = order.optional_integer("rts_sla_time") or order.optional_integer("shipping_due_time")
    region, city = _region_and_city(address)
    key = order_key(tenant, channel, order_id)
    with canonical_fields(f"{order.path}"):
        return OrderEvent(
            event_id=stable_event_id(key, channel_status, event_ms),
            tenant=tenant,
            channel=channel,
            market=market,
            shop_id=raw.header("shop") or (order.text("shop_id") if order.has("shop_id") else ""),
            order_key=key,
            channel_order_id=order_id,
            status=status,
            channel_status=channel_status,
            payment_method=method,
            is_cod=method is PaymentMethod.COD,
            currency=currency,
            total_minor=payment.money("total_amount", currency),
            lines=tuple(_lines(order, currency)),
            shipping=Address(
                country=market,
                region=region,
                city=city,
                postcode=address.optional_text("postal_code") if address else None,
                phone_key=contact_key("phone", address.obj.get("phone_number")) if address else None,
                address_key=contact_key("address", address.obj.get("full_address")) if address else None,
            ),
            ship_by_ms=epoch_s_to_ms(ship_by) if ship_by else None,
            created_ms=created_ms,
            event_time_ms=event_ms,
            ingest_time_ms=raw.ingest_ms,
            raw=raw.ref,
        )


def _market(raw: RawInput, order: Fields, address: Fields | None, currency: str) -> Market:
    """``recipient_address.region_code``, else the connector's market header, else the market of the currency."""
    code = address.optional_text("region_code") if address else None
    where = address.at("region_code") if address else order.at("recipient_address.region_code")
    if code is None:
        code = raw.header("market")
        where = "header market"
    if code is None:
        for market, market_currency in MARKET_CURRENCY.items():
            if market_currency == currency:
                return market
        raise Rejected("invalid_field", f"{where}: no region_code, no market header, and {currency} is no market's")
    if code.upper() not in Market.__members__:
        raise Rejected("invalid_field", f"{where}: unknown market {code!r}")
    return Market(code.upper())


def _region_and_city(address: Fields | None) -> tuple[str | None, str | None]:
    """Region and city from ``district_info[]{address_level_name, address_name}``, by level name."""
    if address is None or not address.has("district_info"):
        return None, None
    names: dict[str, str] = {}
    for i, entry in enumerate(address.items("district_info", non_empty=False)):
        level = Fields(entry, address.at(f"district_info[{i}]"))
        name = level.optional_text("address_name")
        if name is not None:
            names.setdefault((level.optional_text("address_level_name") or "").lower(), name)
    region = next((names[level] for level in _REGION_LEVELS if level in names), None)
    city = next((names[level] for level in _CITY_LEVELS if level in names), None)
    return region, city


def _lines(order: Fields, currency: str) -> list[OrderLine]:
    """One line per (SKU, original price, sale price): TikTok sends one line item per unit."""
    units: dict[tuple[str, int, int], list[tuple[str, int]]] = {}
    for i, item in enumerate(order.items("line_items")):
        f = Fields(item, order.at(f"line_items[{i}]"))
        sku = f.optional_text("seller_sku") or f.optional_text("sku_id")
        if sku is None:
            raise Rejected("missing_sku", f"{f.path}: neither seller_sku nor sku_id is set")
        sale = f.money("sale_price", currency)
        original = f.money("original_price", currency) if f.has("original_price") else sale
        quantity = f.integer("quantity", minimum=1) if f.has("quantity") else 1
        units.setdefault((sku, original, sale), []).append((f.text("id"), quantity))
    return [
        OrderLine(
            line_id="+".join(sorted(item_id for item_id, _ in items)),
            sku=sku,
            quantity=sum(quantity for _, quantity in items),
            unit_price_minor=original,
            paid_price_minor=sale,
        )
        for (sku, original, sale), items in units.items()
    ]
