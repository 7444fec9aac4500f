"""Shopify ``orders/create`` and ``orders/updated`` webhooks, unchanged, to canonical order events.

Shape (../shared/reference/marketplace-payloads.md): the body is the order object itself; ``id`` an
int64; times ISO-8601 with the shop's UTC offset; money as decimal strings in the shop currency
(``currency``), with ``*_set`` twins that also carry the buyer's presentment currency. The REST
answers a poller gets when it recovers missed webhooks (``{"order": {...}}`` and ``{"orders": [...]}``)
hold the same object and are accepted too.

Shopify has no single order status: it is derived from ``financial_status``, ``fulfillment_status``
and ``cancelled_at`` by :func:`status`.
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

CHANNEL = "shopify"

#: What financial_status alone says, before cancellation and fulfilment are considered.
#: ``refunded`` is RETURNED: Shopify sets it when all the money went back, which for a shipped order
#: means the goods come back (stock returns only after QC); for an unshipped one the order is over
#: either way, and RETURNED closes it just as CANCELLED would.
FINANCIAL_STATUS: dict[str, OrderStatus] = {
    "pending": OrderStatus.PENDING_PAYMENT,
    "authorized": OrderStatus.PENDING_PAYMENT,  # card authorized, not captured: not money yet
    "partially_paid": OrderStatus.PENDING_PAYMENT,
    "paid": OrderStatus.PAID,
    "partially_refunded": OrderStatus.PAID,  # some lines refunded; the rest still goes out
    "refunded": OrderStatus.RETURNED,
    "voided": OrderStatus.CANCELLED,  # authorization voided: the order will never be paid
}

#: What fulfillment_status says once goods move; None (JSON null) means nothing fulfilled yet.
#: ``restocked`` is documented by Shopify as "every line item restocked and the order cancelled".
FULFILLMENT_STATUS: dict[str | None, OrderStatus | None] = {
    None: None,
    "partial": OrderStatus.PROCESSING,
    "fulfilled": OrderStatus.SHIPPED,
    "restocked": OrderStatus.CANCELLED,
}

#: The gateway name Shopify gives cash on delivery (financial_status stays pending until collected).
COD_GATEWAY = "cash on delivery"

_GATEWAY_WORDS: tuple[tuple[str, PaymentMethod], ...] = (
    ("shopify_payments", PaymentMethod.CARD),  # Shopify Payments: cards, Shop Pay and wallets on cards
    ("stripe", PaymentMethod.CARD),
    ("paypal", PaymentMethod.EWALLET),
    ("grabpay", PaymentMethod.EWALLET),
    ("wallet", PaymentMethod.EWALLET),
    ("atome", PaymentMethod.BNPL),
    ("afterpay", PaymentMethod.BNPL),
    ("bank", PaymentMethod.BANK_TRANSFER),
    ("transfer", PaymentMethod.BANK_TRANSFER),
)


def status(financial: str, fulfillment: str | None, *, cancelled: bool, cod: bool) -> OrderStatus:
    """The canonical status of a Shopify order; both statuses must be keys of the tables above.

    Order of precedence: cancelled (``cancelled_at`` set, voided, restocked), then fully refunded,
    then how far fulfilment got, then payment. A COD order is fulfilled before it is paid, so its
    ``pending`` means "go ahead" and maps to PAID (with ``is_cod`` true), never PENDING_PAYMENT, or
    COD orders would never reserve stock.
    """
    by_money = FINANCIAL_STATUS[financial]
    by_goods = FULFILLMENT_STATUS[fulfillment]
    if cancelled or OrderStatus.CANCELLED in (by_money, by_goods):
        return OrderStatus.CANCELLED
    if by_money is OrderStatus.RETURNED:
        return OrderStatus.RETURNED
    if by_goods is not None:
        return by_goods
    if cod and financial == "pending":
        return OrderStatus.PAID
    return by_money


def payment_method(gateways: list[str]) -> PaymentMethod:
    """COD when any gateway is cash on delivery; else the first gateway we recognise; else other."""
    names = [name.lower() for name in gateways]
    if any(COD_GATEWAY in name for name in names):
        return PaymentMethod.COD
    for name in names:
        for word, method in _GATEWAY_WORDS:
            if word in name:
                return method
    return PaymentMethod.OTHER


def normalize(raw: RawInput, body: Any, tenant: str) -> list[OrderEvent]:
    """The order in one webhook body (or in a REST answer holding one or several orders)."""
    root = Fields(body, "")
    if root.has("errors"):
        raise Rejected("channel_error", f"Shopify answered errors={root.obj['errors']!r}")
    if "orders" in root.obj:
        orders = root.items("orders")
        return [_order(raw, Fields(order, f"orders[{i}]"), tenant) for i, order in enumerate(orders)]
    if "order" in root.obj:
        return [_order(raw, root.obj_field("order"), tenant)]
    if "line_items" not in root.obj or "financial_status" not in root.obj:
        raise Rejected("unknown_shape", "not a Shopify order: no 'line_items' and 'financial_status'")
    return [_order(raw, root, tenant)]


def _order(raw: RawInput, order: Fields, tenant: str) -> OrderEvent:
    order_id = order.text("id")
    market = _market(raw, order)
    currency = order.text("currency")
    if currency != MARKET_CURRENCY[market]:
        raise Rejected(
            "invalid_field",
            f"{order.at('currency')}: {currency} is not the currency of market {market} ({MARKET_CURRENCY[market]})",
        )
    method = payment_method(_gateways(order))
    financial = order.text("financial_status")
    if financial not in FINANCIAL_STATUS:
        raise Rejected(
            "unknown_status", f"{order.at('financial_status')}: unknown Shopify financial_status {financial!r}"
        )
    fulfillment = order.optional_text("fulfillment_status")
    if fulfillment not in FULFILLMENT_STATUS:
        raise Rejected(
            "unknown_status", f"{order.at('fulfillment_status')}: unknown Shopify fulfillment_status {fulfillment!r}"
        )
    cancelled = order.has("cancelled_at")
    if cancelled:
        order.iso_time_ms("cancelled_at")  # a cancellation time that does not parse is not a cancellation we trust
    canonical = status(financial, fulfillment, cancelled=cancelled, cod=method is PaymentMethod.COD)
    channel_status = f"{financial}/{fulfillment or 'null'}" + ("/cancelled" if cancelled else "")
    created_ms = order.iso_time_ms("created_at")
    event_ms = order.iso_time_ms("updated_at") if order.has("updated_at") else created_ms
    total = order.money("total_price", currency)
    _cross_check_total(order, total, currency)
    key = order_key(tenant, CHANNEL, order_id)
    address = order.optional_obj("shipping_address")  # none for in-store pickup and digital goods
    with canonical_fields(f"{order.path or 'order'}"):
        return OrderEvent(
            event_id=stable_event_id(key, channel_status, event_ms),
            tenant=tenant,
            channel=CHANNEL,
            market=market,
            shop_id=raw.header("shop") or "",  # the order object does not name its shop
            order_key=key,
            channel_order_id=order_id,
            status=canonical,
            channel_status=channel_status,
            payment_method=method,
            is_cod=method is PaymentMethod.COD,
            currency=currency,
            total_minor=total,
            lines=tuple(_lines(order, currency)),
            shipping=Address(
                country=market,
                region=address.optional_text("province") if address else None,
                city=address.optional_text("city") if address else None,
                postcode=address.optional_text("zip") if address else None,
                phone_key=contact_key("phone", address.obj.get("phone")) if address else None,
                address_key=contact_key("address", address.obj.get("address1")) if address else None,
            ),
            created_ms=created_ms,
            event_time_ms=event_ms,
            ingest_time_ms=raw.ingest_ms,
            raw=raw.ref,
        )


def _market(raw: RawInput, order: Fields) -> Market:
    """Where the goods go, else where the buyer is billed, else the connector's market header."""
    code, where = raw.header("market"), "header 'market'"
    for name in ("shipping_address", "billing_address"):
        address = order.optional_obj(name)
        country = address.optional_text("country_code") if address else None
        if address and country:
            code, where = country, address.at("country_code")
            break
    if code is None or code not in Market.__members__:
        raise Rejected("invalid_field", f"{where}: unknown market {code!r}")
    return Market(code)


def _gateways(order: Fields) -> list[str]:
    names = order.items("payment_gateway_names", non_empty=False) if order.has("payment_gateway_names") else []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise Rejected("invalid_field", f"{order.at(f'payment_gateway_names[{i}]')}: expected a string")
    return names


def _cross_check_total(order: Fields, total: int, currency: str) -> None:
    """``total_price_set.shop_money`` must say the same as ``total_price``: a disagreement means we
    would be reading presentment money as shop money somewhere, and the order's value is unknown."""
    money_set = order.optional_obj("total_price_set")
    shop = money_set.optional_obj("shop_money") if money_set else None
    if shop is None:
        return
    if shop.has("currency_code") and shop.text("currency_code") != currency:
        raise Rejected(
            "invalid_field", f"{shop.at('currency_code')}: {shop.obj['currency_code']!r} is not the order currency"
        )
    if shop.has("amount") and shop.money("amount", currency) != total:
        raise Rejected(
            "invalid_money",
            f"{shop.at('amount')}: {shop.obj['amount']!r} differs from {order.at('total_price')} "
            f"{order.obj['total_price']!r}",
        )


def _lines(order: Fields, currency: str) -> list[OrderLine]:
    lines: list[OrderLine] = []
    for i, item in enumerate(order.items("line_items")):
        f = Fields(item, order.at(f"line_items[{i}]"))
        sku = f.optional_text("sku")
        if sku is None:
            raise Rejected("missing_sku", f"{f.path}.sku: is empty (variant {f.obj.get('variant_id')!r})")
        quantity = f.integer("quantity", minimum=1)
        price = f.money("price", currency)
        lines.append(
            OrderLine(
                line_id=f.text("id"),
                sku=sku,
                quantity=quantity,
                unit_price_minor=price,
                paid_price_minor=price - _discount(f, currency) // quantity,
                promotion_type=None,
            )
        )
    return lines


def _discount(line: Fields, currency: str) -> int:
    """The line's discount in minor units: the sum of its ``discount_allocations[].amount``.

    The caller spreads it per unit, rounding the per-unit discount down when it does not divide
    evenly (3 units, 10.00 off: 3.33 each), so at most quantity-1 minor units of it go unrecorded.
    """
    total = 0
    allocations = line.items("discount_allocations", non_empty=False) if line.has("discount_allocations") else []
    for j, allocation in enumerate(allocations):
        f = Fields(allocation, line.at(f"discount_allocations[{j}]"))
        amount = f.money("amount", currency)
        if amount < 0:
            raise Rejected("invalid_money", f"{f.at('amount')}: a discount cannot be negative, got {f.obj['amount']!r}")
        total += amount
    return total
