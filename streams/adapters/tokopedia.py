"""Tokopedia: legacy Open API orders, and the Tokopedia orders that now arrive TikTok Shop-shaped.

Legacy shape (../shared/reference/marketplace-payloads.md): the order notification body, or GetAllOrder's
``{"header": {...}, "data": [...orders...]}``; integer ``order_id`` and ``order_status``;
``products[]{id, sku, quantity, price}``; ``recipient.address{district, city, province, postal_code}``;
``amt{ttl_product_price, shipping_cost, ttl_amount}`` in whole rupiah; ``create_time`` in epoch seconds
(ISO-8601 with an offset is accepted too). Always market ID, currency IDR.

With encryption on, personal data travels in ``encryption{secret, content}`` (RSA + AES-GCM with the
seller's private key, which this stage does not hold): the order is still accepted, with whatever parts of
the address remain in clear and None for the rest.

Since the 2025 merger with TikTok Shop, Indonesian orders come as TikTok Shop Get Order Detail responses, and
their status changes as TikTok Shop webhooks: both go through streams.adapters.tiktok and stay on channel
"tokopedia". A webhook names no market, so only full orders are checked to be in market ID.
"""

from __future__ import annotations

import re
from typing import Any

from schemas.order import (
    MARKET_CURRENCY,
    Address,
    Market,
    OrderChange,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    contact_key,
    order_key,
)
from streams.adapters import tiktok
from streams.adapters.base import Fields, RawInput, Rejected, canonical_fields, epoch_s_to_ms, stable_event_id

CHANNEL = "tokopedia"
MARKET = Market.ID

#: Tokopedia order_status code -> canonical status. An unknown code is refused, never guessed; left out on
#: purpose: 11 (pending replacement) and 690-698 (fraud review), whose stock consequence is not known.
STATUS: dict[int, OrderStatus] = {
    0: OrderStatus.CANCELLED,  # seller cancelled
    2: OrderStatus.CANCELLED,  # rejected: replaced
    3: OrderStatus.CANCELLED,  # rejected: empty stock
    4: OrderStatus.CANCELLED,  # rejected: approval
    5: OrderStatus.CANCELLED,  # cancelled for fraud
    6: OrderStatus.CANCELLED,  # rejected automatically: out of stock
    10: OrderStatus.CANCELLED,  # rejected by the seller
    15: OrderStatus.CANCELLED,  # instant cancel by the buyer
    100: OrderStatus.PENDING_PAYMENT,  # pending order
    103: OrderStatus.PENDING_PAYMENT,  # waiting for a third party to confirm the payment
    200: OrderStatus.PENDING_PAYMENT,  # payment being confirmed
    220: OrderStatus.PAID,  # payment verified, ready to process
    221: OrderStatus.PROCESSING,  # waiting for the fulfilment partner's approval
    400: OrderStatus.PROCESSING,  # seller accepted the order
    450: OrderStatus.PROCESSING,  # waiting for pickup
    500: OrderStatus.SHIPPED,  # shipped
    501: OrderStatus.SHIPPED,  # shipped, airway bill number not entered yet
    520: OrderStatus.SHIPPED,  # invalid airway bill number
    530: OrderStatus.SHIPPED,  # buyer asked to correct the airway bill number
    540: OrderStatus.SHIPPED,  # at the pickup point, not yet with the buyer
    550: OrderStatus.SHIPPED,  # on its way back to the seller: stock returns only on receipt
    600: OrderStatus.DELIVERED,
    601: OrderStatus.DELIVERED,  # buyer opened a case; a return, if any, comes after
    699: OrderStatus.CANCELLED,  # invalid: not shipped within 25 days or not paid within 5
    700: OrderStatus.COMPLETED,
    701: OrderStatus.COMPLETED,  # closed as finished although the parcel had not arrived
}

#: How products[].currency says rupiah.
_RUPIAH = ("RP", "IDR")

_INTEGER_TEXT = re.compile(r"-?[0-9]+")


def normalize(raw: RawInput, body: Any, tenant: str) -> list[OrderChange]:
    """The orders in a legacy Tokopedia body, or a TikTok Shop-shaped order or webhook of an Indonesian shop."""
    if tiktok.looks_like(body):
        events = tiktok.normalize(raw, body, tenant, channel=CHANNEL)
        for i, event in enumerate(events):
            if isinstance(event, OrderEvent) and event.market is not MARKET:
                raise Rejected(
                    "invalid_field",
                    f"data.orders[{i}].recipient_address.region_code: Tokopedia is market {MARKET}, not {event.market}",
                )
        return events
    root = Fields(body, "")
    if root.has("header"):
        header = root.obj_field("header")
        if header.optional_text("error_code") not in (None, "0") or header.optional_text("reason"):
            raise Rejected(
                "channel_error",
                f"Tokopedia answered error_code={header.obj.get('error_code')!r}: {header.obj.get('reason')!r}",
            )
        return [_order(raw, Fields(order, f"data[{i}]"), tenant) for i, order in enumerate(root.items("data"))]
    if root.has("order_status") and not root.has("products") and not root.has("amt"):
        raise Rejected(
            "unsupported_shape",
            "Tokopedia order status notification is not an order; status pushes are handled by the status stage",
        )
    if not root.has("order_id"):
        raise Rejected("unknown_shape", "not a Tokopedia order: no 'order_id'")
    return [_order(raw, root, tenant)]


def _order(raw: RawInput, order: Fields, tenant: str) -> OrderEvent:
    order_id = order.text("order_id")
    currency = MARKET_CURRENCY[MARKET]
    code = order.integer("order_status")
    status = STATUS.get(code)
    if status is None:
        raise Rejected("unknown_status", f"{order.at('order_status')}: unknown Tokopedia status {code}")
    channel_status = str(code)
    created_ms = _time_ms(order, "create_time")
    event_ms = _time_ms(order, "update_time") if order.has("update_time") else created_ms
    payment_info = order.optional_obj("payment_info")
    # is_cod_mitra: Tokopedia's cash-on-delivery flag; a gateway named like COD counts too
    gateway = payment_info.optional_text("gateway_name") if payment_info else None
    method = tiktok.payment_method(gateway, cod=order.flag("is_cod_mitra"))
    region, city, postcode = _address(order)
    amounts = order.obj_field("amt")
    key = order_key(tenant, CHANNEL, order_id)
    with canonical_fields(f"{order.path or 'order'}"):
        return OrderEvent(
            event_id=stable_event_id(key, channel_status, event_ms),
            tenant=tenant,
            channel=CHANNEL,
            market=MARKET,
            shop_id=raw.header("shop") or (order.text("shop_id") if order.has("shop_id") else ""),
            order_key=key,
            channel_order_id=order_id,
            status=status,
            channel_status=channel_status,
            payment_method=method,
            is_cod=method is PaymentMethod.COD,
            currency=currency,
            total_minor=amounts.money("ttl_amount", currency),
            lines=tuple(_lines(order, currency)),
            shipping=Address(
                country=MARKET, region=region, city=city, postcode=postcode, **_contact(order.obj.get("recipient"))
            ),
            ship_by_ms=None,
            created_ms=created_ms,
            event_time_ms=event_ms,
            ingest_time_ms=raw.ingest_ms,
            raw=raw.ref,
        )


def _address(order: Fields) -> tuple[str | None, str | None, str | None]:
    """(province, city, postal code) of the recipient, each None when absent, masked or not in clear.

    With ``encryption`` set the recipient may be masked, emptied or replaced by ciphertext: whatever is not a
    readable value is None, never a refusal. Without it, a recipient or address of the wrong type is refused.
    """
    if order.has("encryption"):
        recipient = order.obj.get("recipient")
        address = recipient.get("address") if isinstance(recipient, dict) else None
        if not isinstance(address, dict):
            return None, None, None
        province, city, postcode = (address.get(name) for name in ("province", "city", "postal_code"))
        return _in_clear(province), _in_clear(city), _in_clear(postcode)
    recipient_fields = order.optional_obj("recipient")
    address_fields = recipient_fields.optional_obj("address") if recipient_fields else None
    if address_fields is None:
        return None, None, None
    return (
        _in_clear(address_fields.optional_text("province")),
        _in_clear(address_fields.optional_text("city")),
        _in_clear(address_fields.optional_text("postal_code")),
    )


def _contact(recipient: object) -> dict[str, str | None]:
    """Hashed phone and address line of the recipient when in clear (masked or encrypted ones: None)."""
    if not isinstance(recipient, dict):
        return {}
    address = recipient.get("address")
    line = address.get("address_full") if isinstance(address, dict) else None
    return {"phone_key": contact_key("phone", recipient.get("phone")), "address_key": contact_key("address", line)}


def _in_clear(value: Any) -> str | None:
    """A readable address part, or None: masked ("*****"), empty or not text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a postal code sent as a number
    if not isinstance(value, str) or not value.strip() or "*" in value:
        return None
    return value.strip()


def _lines(order: Fields, currency: str) -> list[OrderLine]:
    lines: list[OrderLine] = []
    seen: dict[str, int] = {}
    for i, product in enumerate(order.items("products")):
        f = Fields(product, order.at(f"products[{i}]"))
        sku = f.optional_text("sku")
        if sku is None:
            raise Rejected("missing_sku", f"{f.path}: sku is not set")
        if f.has("currency") and f.text("currency").upper() not in _RUPIAH:
            raise Rejected(
                "invalid_field", f"{f.at('currency')}: {f.text('currency')} is not the currency of market {MARKET}"
            )
        line_id = f.optional_text("id") or str(i)
        seen[line_id] = seen.get(line_id, 0) + 1
        if seen[line_id] > 1:
            line_id = f"{line_id}#{seen[line_id]}"
        price = f.money("price", currency)
        lines.append(
            OrderLine(
                line_id=line_id,
                sku=sku,
                quantity=f.integer("quantity", minimum=1),
                unit_price_minor=price,
                paid_price_minor=price,
            )
        )
    return lines


def _time_ms(f: Fields, name: str) -> int:
    """Epoch seconds, or an ISO-8601 time with an offset ("2026-09-16T03:12:00Z"), to UTC epoch ms."""
    value = f.obj.get(name)
    if not isinstance(value, str) or _INTEGER_TEXT.fullmatch(value.strip()):
        return epoch_s_to_ms(f.integer(name, minimum=1))
    return f.iso_time_ms(name)
