"""GrabFood / GrabMart partner "Submit Order" webhooks, unchanged, to canonical order events.

The shape is a GUESS pieced together from Grab's partner API docs and SDK models (grabfood-api-sdk),
not from recorded traffic, so this adapter is tolerant wherever being wrong costs nothing: optional
blocks (``price``, ``receiver``, ``featureFlags``, ``orderReadyEstimation``) may be missing or null,
numbers may come as strings. It is strict where a wrong guess would cost money or stock:

- Money is integers in the minor units of ``currency.exponent`` (Grab: 0 for VND, 2 elsewhere,
  IDR included). Our IDR has exponent 0, so Grab's IDR amounts are divided by 100, exactly or refused.
  A missing or absurd exponent is refused: the scale of every amount would be a guess.
- A new order carries no status. What it means depends on how the eater pays (:data:`STATUS`); an
  unknown ``paymentType`` is refused. A body with a non-empty ``orderState`` is not a new order
  (it looks like a listed/polled one) and is refused rather than read as one.
- Order state pushes (``{"orderID", "merchantID", "state", "code", "message", ...}``) become an order-level
  ``OrderStatusUpdate`` (:data:`STATE`); an unknown ``state`` is refused. Their time is a GUESS too: the
  documented push shows none, yet some integrations see one. The first of :data:`STATE_TIME_FIELDS` that is
  present and readable - an ISO-8601 time with an offset, or epoch seconds or milliseconds (told apart by
  size), as a number or a numeric string - is the event time; otherwise the time the record was ingested.
  A missing or unreadable time is never a refusal: a state push without one is still worth applying.

The market is the one whose currency ``currency.code`` is (Grab sends no country); a ``market``
header from the connector must agree with it.
"""

from __future__ import annotations

from typing import Any

from schemas.order import (
    CURRENCY_EXPONENT,
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

CHANNEL = "grab"

#: paymentType of a submitted order -> canonical status. Both are PAID: a cashless order is paid
#: when Grab submits it, and a cash order is COD-like - the merchant prepares it and the rider
#: collects the cash - so fulfilment (and the stock reservation) must start now, as for COD.
STATUS: dict[str, OrderStatus] = {
    "CASHLESS": OrderStatus.PAID,
    "CASH": OrderStatus.PAID,
}

#: Order state push ``state`` -> canonical status. An unknown state is refused, never guessed.
STATE: dict[str, OrderStatus] = {
    "DRIVER_ALLOCATED": OrderStatus.PROCESSING,  # a rider is on the way: the merchant is preparing the order
    "DRIVER_ARRIVED": OrderStatus.PROCESSING,  # the rider waits at the store: not handed over yet
    "COLLECTED": OrderStatus.SHIPPED,  # the rider has the food: it has left the store
    "DELIVERED": OrderStatus.DELIVERED,
    "CANCELLED": OrderStatus.CANCELLED,
    # The order will not reach the eater (no rider found, rejected, or the delivery failed). Grab closes it
    # like a cancellation and there is no "failed" in the canonical lifecycle, where a failed delivery comes
    # back as cancelled (OrderStatus.can_advance_to). A FAILED after COLLECTED may mean the food is gone: a
    # later stock stage must not restock it blindly.
    "FAILED": OrderStatus.CANCELLED,
}

#: Where a state push may carry its time, tried in order (a guess: see the module docstring).
STATE_TIME_FIELDS = ("updatedAt", "updateTime", "updatedTime", "eventTime", "timestamp", "time")

#: Epoch numbers above this are milliseconds, below it seconds (1e11 s is the year 5138, 1e11 ms is 1973).
_MS_THRESHOLD = 10**11

#: paymentType -> canonical method. Grab does not say which cashless method (GrabPay, card, ...).
PAYMENT: dict[str, PaymentMethod] = {
    "CASHLESS": PaymentMethod.OTHER,
    "CASH": PaymentMethod.COD,
}

#: channel_status of a submitted order, and of a re-submission after Grab or the merchant edited it.
SUBMITTED = "SUBMITTED"
EDITED = "SUBMITTED/EDITED"

#: Grab uses 0 and 2; anything above this is refused before 10**exponent is ever computed.
MAX_EXPONENT = 6


def normalize(raw: RawInput, body: Any, tenant: str) -> list[OrderChange]:
    """The order in one Submit Order webhook body, or the status update of one order state push."""
    root = Fields(body, "")
    if root.has("state"):
        return [_state_push(raw, root, tenant)]
    if not root.has("orderID") or "items" not in root.obj:
        raise Rejected("unknown_shape", "not a Grab Submit Order webhook: no 'orderID' and 'items'")
    return [_order(raw, root, tenant)]


def _state_push(raw: RawInput, push: Fields, tenant: str) -> OrderStatusUpdate:
    """An order state push: an order-level update (Grab has no per-item states)."""
    order_id = push.text("orderID")
    channel_status = push.text("state")
    status = STATE.get(channel_status)
    if status is None:
        raise Rejected("unknown_status", f"{push.at('state')}: unknown Grab order state {channel_status!r}")
    event_ms = _state_time_ms(push) or raw.ingest_ms
    return status_update(
        raw,
        tenant,
        CHANNEL,
        channel_order_id=order_id,
        shop_id=raw.header("shop") or push.optional_text("merchantID") or "",
        status=status,
        channel_status=channel_status,
        event_time_ms=event_ms,
        path=f"order {order_id}",
    )


def _state_time_ms(push: Fields) -> int | None:
    """The push's own time in UTC epoch ms, from the first readable :data:`STATE_TIME_FIELDS`; None if none is."""
    for name in STATE_TIME_FIELDS:
        value = push.obj.get(name)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str) and not value.strip().isdigit():
            try:
                return push.iso_time_ms(name)
            except Rejected:
                continue
        try:
            number = push.integer(name, minimum=1)
        except Rejected:
            continue
        ms = number if number >= _MS_THRESHOLD else number * 1000
        if ms <= LONG_MAX:
            return ms
    return None


def rescale(amount: int, exponent: int, currency: str) -> int | None:
    """``amount`` in units of 10**-exponent as our minor units of ``currency``; None when inexact."""
    ours = CURRENCY_EXPONENT[currency]
    factor: int = 10 ** abs(exponent - ours)
    if exponent <= ours:
        return amount * factor
    whole, rest = divmod(amount, factor)
    return None if rest else whole


class _Money:
    """Reads Grab's integer amounts and converts them to our minor units, naming the field on failure."""

    def __init__(self, currency: str, exponent: int) -> None:
        self.currency = currency
        self.exponent = exponent

    def read(self, f: Fields, name: str, default: int | None = None) -> int:
        """The amount at ``f.name`` in our minor units; ``default`` when absent, if one is given."""
        if default is not None and f.obj.get(name) in (None, ""):
            return default
        try:
            amount = f.integer(name)
        except Rejected as exc:
            raise Rejected("invalid_money", exc.reason) from exc
        minor = rescale(amount, self.exponent, self.currency)
        if minor is None:
            raise Rejected(
                "invalid_money",
                f"{f.at(name)}: {amount} at exponent {self.exponent} is not a whole number of {self.currency} "
                f"minor units (exponent {CURRENCY_EXPONENT[self.currency]})",
            )
        return minor


def _order(raw: RawInput, order: Fields, tenant: str) -> OrderEvent:
    order_id = order.text("orderID")
    if order.optional_text("orderState"):
        raise Rejected(
            "unsupported_shape",
            f"{order.at('orderState')}: {order.obj['orderState']!r} on a submitted order; only new orders "
            "(empty orderState) are read here, state changes come as order state pushes ({orderID, state})",
        )
    currency = order.obj_field("currency")
    market = _market(raw, currency, currency.text("code"))
    money = _Money(MARKET_CURRENCY[market], _exponent(currency))
    payment_type = order.text("paymentType")
    status = STATUS.get(payment_type)
    if status is None:
        raise Rejected("unknown_status", f"{order.at('paymentType')}: unknown Grab paymentType {payment_type!r}")
    method = PAYMENT[payment_type]
    flags = order.optional_obj("featureFlags")
    channel_status = EDITED if flags and flags.flag("isMexEditOrder") else SUBMITTED
    created_ms = order.iso_time_ms("orderTime")
    event_ms = order.iso_time_ms("submitTime") if order.optional_text("submitTime") else created_ms
    ready = order.optional_obj("orderReadyEstimation")
    ship_by_ms = ready.iso_time_ms("maxOrderReadyTime") if ready and ready.optional_text("maxOrderReadyTime") else None
    receiver = order.optional_obj("receiver")  # none for takeaway and dine-in
    address = receiver.optional_obj("address") if receiver else None
    key = order_key(tenant, CHANNEL, order_id)
    with canonical_fields(f"order {order_id}"):
        lines = tuple(_lines(order, money))
        return OrderEvent(
            event_id=stable_event_id(key, channel_status, event_ms),
            tenant=tenant,
            channel=CHANNEL,
            market=market,
            shop_id=raw.header("shop") or order.optional_text("merchantID") or "",
            order_key=key,
            channel_order_id=order_id,
            status=status,
            channel_status=channel_status,
            payment_method=method,
            is_cod=method is PaymentMethod.COD,
            currency=money.currency,
            total_minor=_total(order, lines, money),
            lines=lines,
            shipping=Address(
                country=market,
                postcode=address.optional_text("postcode") if address else None,
                phone_key=contact_key("phone", receiver.obj.get("phones")) if receiver else None,
                address_key=contact_key("address", address.obj.get("address")) if address else None,
            ),
            ship_by_ms=ship_by_ms,
            created_ms=created_ms,
            event_time_ms=event_ms,
            ingest_time_ms=raw.ingest_ms,
            raw=raw.ref,
        )


def _market(raw: RawInput, currency: Fields, code: str) -> Market:
    """The market whose currency ``code`` is; the connector's ``market`` header, if any, must agree."""
    market = next((m for m, c in MARKET_CURRENCY.items() if c == code), None)
    if market is None:
        raise Rejected("invalid_field", f"{currency.at('code')}: {code!r} is not the currency of any market we serve")
    header = raw.header("market")
    if header is not None and header != market:
        expected = MARKET_CURRENCY[Market(header)] if header in Market.__members__ else "not a market we serve"
        raise Rejected(
            "invalid_field",
            f"{currency.at('code')}: {code} is not the currency of market {header} (the 'market' header; {expected})",
        )
    return market


def _exponent(currency: Fields) -> int:
    """The power of ten Grab's integer amounts are scaled by; without it every amount is a guess."""
    if not currency.has("exponent"):
        raise Rejected("invalid_money", f"{currency.at('exponent')}: missing, so the scale of every amount is unknown")
    exponent = currency.integer("exponent", minimum=0)
    if exponent > MAX_EXPONENT:
        raise Rejected("invalid_money", f"{currency.at('exponent')}: {exponent} is above {MAX_EXPONENT}")
    return exponent


def _lines(order: Fields, money: _Money) -> list[OrderLine]:
    """One line per item; ``price`` is per unit, modifiers and tax included, so unit = paid price:
    Grab's promos are basket-level (``price.*Promo``), not attributed to items."""
    lines: list[OrderLine] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(order.items("items")):
        f = Fields(item, order.at(f"items[{i}]"))
        grab_item = f.optional_text("grabItemID")
        # "id" is the partner's own item id (our SKU). grabItemID may end in "#<n>" to tell apart the
        # same item with other modifiers: the product is what precedes it.
        sku = f.optional_text("id") or (grab_item.split("#")[0].strip() if grab_item else None)
        if not sku:
            raise Rejected("missing_sku", f"{f.path}: neither id nor grabItemID is set")
        line_id = grab_item or sku
        seen[line_id] = seen.get(line_id, 0) + 1
        if seen[line_id] > 1:
            line_id = f"{line_id}#{seen[line_id]}"
        price = money.read(f, "price")
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


def _total(order: Fields, lines: tuple[OrderLine, ...], money: _Money) -> int:
    """What the eater pays, as far as Grab shows it to the partner.

    ``eaterPayment`` is only filled for cash or merchant-delivered orders (0 otherwise, with the
    delivery fee and Grab's promos hidden too); then the same formula over what is visible:
    subtotal + merchantChargeFee - merchantFundPromo. Without a ``price`` block: the items' sum.
    """
    price = order.optional_obj("price")
    if price is None:
        return sum(line.unit_price_minor * line.quantity for line in lines)
    eater = money.read(price, "eaterPayment", default=0)
    if eater:
        return eater
    return (
        money.read(price, "subtotal")
        + money.read(price, "merchantChargeFee", default=0)
        - money.read(price, "merchantFundPromo", default=0)
    )
