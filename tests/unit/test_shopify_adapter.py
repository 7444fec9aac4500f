"""Shopify orders/create and orders/updated webhook bodies -> canonical OrderEvent (streams.adapters.shopify)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.order import Market, OrderEvent, OrderStatus, PaymentMethod
from streams.adapters import shopify
from streams.adapters.base import RawInput, Rejected
from tests.unit.payload_mutations import json_values, mutate, paths

TENANT = "t1"
INGEST_MS = 1_795_824_070_000
SAMPLE_BYTES = resources.files("connectors").joinpath("samples", "shopify_order.json").read_bytes()
SAMPLE: dict[str, Any] = json.loads(SAMPLE_BYTES)
COD = "Cash on Delivery (COD)"


def _body() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def _raw(value: Any, **changes: Any) -> RawInput:
    fields: dict[str, Any] = {
        "channel": "shopify",
        "value": value if isinstance(value, bytes) else json.dumps(value).encode(),
        "topic": "raw.orders.shopify",
        "partition": 1,
        "offset": 7,
        "ingest_ms": INGEST_MS,
        "headers": {"shop": b"kopi-threads.myshopify.com"},
    }
    fields.update(changes)
    return RawInput(**fields)


def _events(body: Any, **changes: Any) -> list[OrderEvent]:
    return shopify.normalize(_raw(body, **changes), body, TENANT)


def _one_event(body: Any, **changes: Any) -> OrderEvent:
    events = _events(body, **changes)
    assert len(events) == 1
    return events[0]


def _refusal(body: Any, **changes: Any) -> Rejected:
    with pytest.raises(Rejected) as caught:
        _events(body, **changes)
    return caught.value


# --- the sample ------------------------------------------------------------------------------------------


def test_sample_becomes_one_event_with_order_identity_and_total() -> None:
    event = _one_event(SAMPLE)
    assert (event.tenant, event.channel, event.channel_order_id) == (TENANT, "shopify", "5623817437238")
    assert event.order_key == "t1:shopify:5623817437238"
    assert (event.market, event.currency, event.total_minor) == (Market.SG, "SGD", 7630)
    assert event.shop_id == "kopi-threads.myshopify.com"
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.shopify", 1, 7)
    assert event.ingest_time_ms == INGEST_MS


def test_sample_status_payment_and_times_are_mapped_with_offsets_converted_to_utc() -> None:
    event = _one_event(SAMPLE)
    assert (event.status, event.channel_status) == (OrderStatus.PAID, "paid/null")
    assert (event.payment_method, event.is_cod) == (PaymentMethod.CARD, False)
    assert event.created_ms == 1_795_773_600_000  # 2026-11-27T18:00:00+08:00 = 10:00:00Z
    assert event.event_time_ms == 1_795_773_665_000  # updated_at, 65 s later
    assert event.ship_by_ms is None


def test_sample_lines_keep_list_price_and_spread_the_line_discount_per_unit() -> None:
    tee, mug = _one_event(SAMPLE).lines
    assert (tee.line_id, tee.sku, tee.quantity) == ("13860385161526", "TEE-ORG-BLK-M", 2)
    assert (tee.unit_price_minor, tee.paid_price_minor) == (2990, 2690)  # 6.00 off two units
    assert (mug.line_id, mug.sku, mug.quantity) == ("13860385194294", "MUG-ENM-WHT", 1)
    assert (mug.unit_price_minor, mug.paid_price_minor) == (1850, 1850)


def test_sample_shipping_address_keeps_city_and_zip_and_null_province_is_none() -> None:
    shipping = _one_event(SAMPLE).shipping
    assert (shipping.country, shipping.city, shipping.postcode, shipping.region) == (
        Market.SG,
        "Singapore",
        "529536",
        None,
    )


def test_sample_event_encodes_to_avro_and_back() -> None:
    event = _one_event(SAMPLE)
    assert OrderEvent.decode(event.encode()) == event


# --- status ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("financial", "fulfillment", "cancelled", "gateway", "expected", "channel_status"),
    [
        ("pending", None, False, "shopify_payments", OrderStatus.PENDING_PAYMENT, "pending/null"),
        ("authorized", None, False, "shopify_payments", OrderStatus.PENDING_PAYMENT, "authorized/null"),
        ("partially_paid", None, False, "manual", OrderStatus.PENDING_PAYMENT, "partially_paid/null"),
        ("paid", None, False, "shopify_payments", OrderStatus.PAID, "paid/null"),
        ("partially_refunded", None, False, "shopify_payments", OrderStatus.PAID, "partially_refunded/null"),
        ("paid", "partial", False, "shopify_payments", OrderStatus.PROCESSING, "paid/partial"),
        ("paid", "fulfilled", False, "shopify_payments", OrderStatus.SHIPPED, "paid/fulfilled"),
        ("partially_refunded", "fulfilled", False, "paypal", OrderStatus.SHIPPED, "partially_refunded/fulfilled"),
        ("refunded", None, False, "shopify_payments", OrderStatus.RETURNED, "refunded/null"),
        ("refunded", "fulfilled", False, "shopify_payments", OrderStatus.RETURNED, "refunded/fulfilled"),
        ("voided", None, False, "shopify_payments", OrderStatus.CANCELLED, "voided/null"),
        ("paid", "restocked", False, "shopify_payments", OrderStatus.CANCELLED, "paid/restocked"),
        ("paid", None, True, "shopify_payments", OrderStatus.CANCELLED, "paid/null/cancelled"),
        ("refunded", "fulfilled", True, "shopify_payments", OrderStatus.CANCELLED, "refunded/fulfilled/cancelled"),
        ("pending", None, False, COD, OrderStatus.PAID, "pending/null"),
        ("pending", "partial", False, COD, OrderStatus.PROCESSING, "pending/partial"),
        ("pending", "fulfilled", False, COD, OrderStatus.SHIPPED, "pending/fulfilled"),
        ("paid", "fulfilled", False, COD, OrderStatus.SHIPPED, "paid/fulfilled"),
        ("authorized", None, False, COD, OrderStatus.PENDING_PAYMENT, "authorized/null"),
        ("pending", None, True, COD, OrderStatus.CANCELLED, "pending/null/cancelled"),
    ],
)
def test_status_is_derived_from_financial_fulfillment_cancellation_and_cod(
    financial: str,
    fulfillment: str | None,
    cancelled: bool,
    gateway: str,
    expected: OrderStatus,
    channel_status: str,
) -> None:
    body = _body()
    body.update(financial_status=financial, fulfillment_status=fulfillment, payment_gateway_names=[gateway])
    if cancelled:
        body["cancelled_at"] = "2026-11-27T18:30:00+08:00"
    event = _one_event(body)
    assert (event.status, event.channel_status) == (expected, channel_status)


def test_every_known_financial_and_fulfillment_pair_has_a_status() -> None:
    for financial in shopify.FINANCIAL_STATUS:
        for fulfillment in shopify.FULFILLMENT_STATUS:
            for cancelled in (False, True):
                for cod in (False, True):
                    assert isinstance(shopify.status(financial, fulfillment, cancelled=cancelled, cod=cod), OrderStatus)


def test_unknown_financial_status_is_refused_as_unknown_status_naming_the_field() -> None:
    body = _body()
    body["financial_status"] = "expired"
    refusal = _refusal(body)
    assert refusal.code == "unknown_status"
    assert "financial_status" in refusal.reason and "expired" in refusal.reason


def test_unknown_fulfillment_status_is_refused_as_unknown_status_naming_the_field() -> None:
    body = _body()
    body["fulfillment_status"] = "in_progress"
    refusal = _refusal(body)
    assert refusal.code == "unknown_status"
    assert "fulfillment_status" in refusal.reason and "in_progress" in refusal.reason


def test_cancellation_time_that_does_not_parse_is_refused_naming_cancelled_at() -> None:
    body = _body()
    body["cancelled_at"] = "yesterday"
    refusal = _refusal(body)
    assert (refusal.code, "cancelled_at" in refusal.reason) == ("invalid_field", True)


# --- payment ---------------------------------------------------------------------------------------------


def test_cod_gateway_among_several_makes_the_order_cod_and_paid_while_pending() -> None:
    body = _body()
    body.update(financial_status="pending", payment_gateway_names=["gift_card", COD])
    event = _one_event(body)
    assert (event.payment_method, event.is_cod, event.status) == (PaymentMethod.COD, True, OrderStatus.PAID)


@pytest.mark.parametrize(
    ("gateways", "method"),
    [
        (["shopify_payments"], PaymentMethod.CARD),
        (["stripe"], PaymentMethod.CARD),
        (["paypal"], PaymentMethod.EWALLET),
        (["Atome"], PaymentMethod.BNPL),
        (["Bank Deposit"], PaymentMethod.BANK_TRANSFER),
        (["manual"], PaymentMethod.OTHER),
        ([], PaymentMethod.OTHER),
        (["cash on delivery"], PaymentMethod.COD),
    ],
)
def test_payment_gateway_names_map_to_a_canonical_method(gateways: list[str], method: PaymentMethod) -> None:
    body = _body()
    body["payment_gateway_names"] = gateways
    event = _one_event(body)
    assert (event.payment_method, event.is_cod) == (method, method is PaymentMethod.COD)


def test_missing_payment_gateway_names_is_other() -> None:
    body = _body()
    del body["payment_gateway_names"]
    assert _one_event(body).payment_method is PaymentMethod.OTHER


# --- market and address ----------------------------------------------------------------------------------


def test_pickup_order_without_shipping_address_takes_the_market_from_billing_and_has_no_address_parts() -> None:
    body = _body()
    body["shipping_address"] = None
    body["billing_address"]["country_code"] = "SG"
    shipping = _one_event(body).shipping
    assert (shipping.country, shipping.region, shipping.city, shipping.postcode) == (Market.SG, None, None, None)


def test_market_comes_from_the_market_header_when_no_address_names_a_country() -> None:
    body = _body()
    del body["shipping_address"], body["billing_address"]
    body["currency"] = "MYR"
    body["total_price_set"]["shop_money"]["currency_code"] = "MYR"
    assert _one_event(body, headers={"market": b"MY"}).market is Market.MY


def test_no_country_anywhere_and_no_market_header_is_refused_as_invalid_field() -> None:
    body = _body()
    del body["shipping_address"], body["billing_address"]
    refusal = _refusal(body, headers={})
    assert (refusal.code, "market" in refusal.reason) == ("invalid_field", True)


def test_country_outside_our_markets_is_refused_naming_the_country_code() -> None:
    body = _body()
    body["shipping_address"]["country_code"] = "US"
    refusal = _refusal(body)
    assert refusal.code == "invalid_field"
    assert "shipping_address.country_code" in refusal.reason and "US" in refusal.reason


def test_empty_zip_becomes_postcode_none() -> None:
    body = _body()
    body["shipping_address"]["zip"] = ""
    assert _one_event(body).shipping.postcode is None


def test_currency_not_of_the_market_is_refused_as_invalid_field_naming_currency() -> None:
    body = _body()
    body["currency"] = "MYR"
    refusal = _refusal(body)
    assert refusal.code == "invalid_field"
    assert refusal.reason.startswith("currency: MYR is not the currency of market SG")


# --- lines and money -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sku", ["", None, "   "])
def test_line_without_sku_is_refused_as_missing_sku_naming_the_line(sku: str | None) -> None:
    body = _body()
    body["line_items"][1]["sku"] = sku
    refusal = _refusal(body)
    assert refusal.code == "missing_sku"
    assert "line_items[1].sku" in refusal.reason


@pytest.mark.parametrize("quantity", [-1, 0])
def test_non_positive_quantity_is_refused_as_invalid_field_naming_it(quantity: int) -> None:
    body = _body()
    body["line_items"][0]["quantity"] = quantity
    refusal = _refusal(body)
    assert (refusal.code, "line_items[0].quantity" in refusal.reason) == ("invalid_field", True)


def test_discount_that_does_not_divide_by_quantity_rounds_the_per_unit_discount_down() -> None:
    body = _body()
    line = body["line_items"][0]
    line["quantity"] = 3
    line["discount_allocations"][0]["amount"] = "10.00"
    assert _one_event(body).lines[0].paid_price_minor == 2990 - 333


def test_negative_discount_is_refused_as_invalid_money() -> None:
    body = _body()
    body["line_items"][0]["discount_allocations"][0]["amount"] = "-1.00"
    refusal = _refusal(body)
    assert (refusal.code, "line_items[0].discount_allocations[0].amount" in refusal.reason) == ("invalid_money", True)


def test_price_with_three_decimals_is_refused_as_invalid_money_naming_the_line() -> None:
    body = _body()
    body["line_items"][0]["price"] = "29.905"
    refusal = _refusal(body)
    assert (refusal.code, "line_items[0].price" in refusal.reason) == ("invalid_money", True)


def test_total_that_disagrees_with_its_shop_money_twin_is_refused_as_invalid_money() -> None:
    body = _body()
    body["total_price_set"]["shop_money"]["amount"] = "77.30"
    refusal = _refusal(body)
    assert (refusal.code, "total_price_set.shop_money.amount" in refusal.reason) == ("invalid_money", True)


def test_total_without_its_set_twin_is_taken_as_is() -> None:
    body = _body()
    del body["total_price_set"]
    body["total_price"] = "80"
    assert _one_event(body).total_minor == 8000


def test_negative_total_is_refused_as_invalid_field() -> None:
    body = _body()
    body["total_price"] = "-1.00"
    del body["total_price_set"]
    refusal = _refusal(body)
    assert (refusal.code, "total_minor" in refusal.reason) == ("invalid_field", True)


def test_price_beyond_the_decimal_range_is_refused_as_invalid_money() -> None:
    body = _body()
    body["line_items"][0]["price"] = "1e999999"
    refusal = _refusal(body)
    assert (refusal.code, "line_items[0].price" in refusal.reason) == ("invalid_money", True)


# --- times -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["27/11/2026 18:00", "2026-13-40T00:00:00Z", "", 1795773600])
def test_created_at_that_is_not_an_iso_time_is_refused_naming_it(value: Any) -> None:
    body = _body()
    body["created_at"] = value
    refusal = _refusal(body)
    assert (refusal.code, "created_at" in refusal.reason) == ("invalid_field", True)


def test_time_without_utc_offset_is_refused_because_it_is_ambiguous() -> None:
    body = _body()
    body["updated_at"] = "2026-11-27T18:01:05"
    refusal = _refusal(body)
    assert refusal.code == "invalid_field"
    assert "updated_at" in refusal.reason and "no UTC offset" in refusal.reason


def test_missing_updated_at_uses_created_at_as_event_time() -> None:
    body = _body()
    del body["updated_at"]
    assert _one_event(body).event_time_ms == 1_795_773_600_000


# --- shapes ----------------------------------------------------------------------------------------------


def test_rest_answers_holding_one_or_several_orders_are_read_like_webhooks() -> None:
    second = _body()
    second["id"] = 5623817437239
    assert _one_event({"order": _body()}) == _one_event(SAMPLE)
    events = _events({"orders": [_body(), second]})
    assert [e.channel_order_id for e in events] == ["5623817437238", "5623817437239"]


def test_error_answer_is_refused_as_channel_error() -> None:
    refusal = _refusal({"errors": "[API] Invalid API key or access token"})
    assert (refusal.code, "Invalid API key" in refusal.reason) == ("channel_error", True)


def test_json_that_is_not_a_shopify_order_is_refused_as_unknown_shape() -> None:
    assert _refusal({"id": 1, "status": "paid"}).code == "unknown_shape"


def test_json_that_is_not_an_object_is_refused_as_invalid_field() -> None:
    assert _refusal([SAMPLE]).code == "invalid_field"


# --- stable ids ------------------------------------------------------------------------------------------


def test_event_id_is_the_same_for_the_same_order_update_delivered_twice() -> None:
    assert _one_event(SAMPLE).event_id == _one_event(SAMPLE, offset=99, ingest_ms=INGEST_MS + 1).event_id


def test_event_id_differs_when_the_order_is_updated_or_its_status_changes() -> None:
    updated, fulfilled = _body(), _body()
    updated["updated_at"] = "2026-11-27T18:05:00+08:00"
    fulfilled["fulfillment_status"] = "fulfilled"
    ids = {_one_event(body).event_id for body in (SAMPLE, updated, fulfilled)}
    assert len(ids) == 3


# --- property --------------------------------------------------------------------------------------------

SAMPLE_PATHS = paths(SAMPLE)
values = json_values | st.sampled_from(
    ["paid", "pending", "fulfilled", "partial", "MY", "US", "2026-11-27T18:00:00+08:00", "2026-11-27", COD]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(SAMPLE_PATHS), st.just(("delete",)) | values.map(lambda v: ("set", v))),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_sample_gives_encodable_events_or_a_rejection_never_another_exception(changes: list[Any]) -> None:
    body = _body()
    for path, op in changes:
        mutate(body, path, op)
    try:
        events = _events(body)
    except Rejected as exc:
        assert exc.code and exc.reason
        return
    for event in events:
        assert OrderEvent.decode(event.encode()) == event
