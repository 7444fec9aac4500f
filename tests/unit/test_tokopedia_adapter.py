"""Tokopedia legacy order payloads, and TikTok Shop-shaped Tokopedia orders -> canonical OrderEvent, TikTok Shop
order status webhooks -> OrderStatusUpdate, or Rejected."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.order import Market, OrderEvent, OrderStatus, OrderStatusUpdate, PaymentMethod, decode_change
from streams.adapters import tokopedia
from streams.adapters.base import RawInput, Rejected, parse_json
from tests.unit.payload_mutations import json_values, mutate, paths

TENANT = "t1"
INGEST_MS = 1_789_528_400_000
SAMPLE_BYTES = resources.files("connectors").joinpath("samples", "tokopedia_legacy_order.json").read_bytes()
SAMPLE: dict[str, Any] = json.loads(SAMPLE_BYTES)
TIKTOK_SAMPLE: dict[str, Any] = json.loads(
    resources.files("connectors").joinpath("samples", "tiktok_order_detail.json").read_bytes()
)
CODES = {"unknown_shape", "unsupported_shape", "invalid_field", "invalid_money", "missing_sku", "unknown_status"}
ENCRYPTION = {"secret": "KxZ8c2Vj...base64-rsa-oaep...==", "content": "q1w2e3r4...base64-aes-gcm...=="}


def _body() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def _address(body: dict[str, Any]) -> dict[str, Any]:
    return body["recipient"]["address"]


def _raw(**changes: Any) -> RawInput:
    fields: dict[str, Any] = {
        "channel": "tokopedia",
        "value": SAMPLE_BYTES,
        "topic": "raw.orders.tokopedia",
        "partition": 0,
        "offset": 5,
        "ingest_ms": INGEST_MS,
        "headers": {"shop": b"11223344"},
    }
    fields.update(changes)
    return RawInput(**fields)


def _events(body: Any, **changes: Any) -> list[OrderEvent]:
    events = tokopedia.normalize(_raw(**changes), body, TENANT)
    assert all(isinstance(event, OrderEvent) for event in events)
    return [event for event in events if isinstance(event, OrderEvent)]


def _one(body: Any = None, **changes: Any) -> OrderEvent:
    events = _events(_body() if body is None else body, **changes)
    assert len(events) == 1
    return events[0]


def _refused(body: Any, **changes: Any) -> Rejected:
    with pytest.raises(Rejected) as info:
        tokopedia.normalize(_raw(**changes), body, TENANT)
    return info.value


def _tiktok_shaped(region_code: str = "ID", currency: str = "IDR") -> dict[str, Any]:
    """The TikTok sample as an Indonesian Tokopedia order would come since the merger."""
    body = copy.deepcopy(TIKTOK_SAMPLE)
    order = body["data"]["orders"][0]
    order["recipient_address"]["region_code"] = region_code
    order["payment"] = {"currency": currency, "sub_total": "787000", "shipping_fee": "12000", "total_amount": "799000"}
    for item in order["line_items"]:
        item["sale_price"] = item["sale_price"].replace(".00", "000")
        item["original_price"] = item["original_price"].replace(".00", "000")
    return body


# --- the sample ------------------------------------------------------------------------------------------


def test_sample_bytes_become_one_event_with_order_identity_in_market_id() -> None:
    [event] = tokopedia.normalize(_raw(), parse_json(SAMPLE_BYTES), TENANT)
    assert isinstance(event, OrderEvent)
    assert event.channel == "tokopedia"
    assert event.channel_order_id == "1287654321"
    assert event.order_key == "t1:tokopedia:1287654321"
    assert (event.market, event.currency) == (Market.ID, "IDR")
    assert event.shop_id == "11223344"
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.tokopedia", 0, 5)


def test_sample_total_and_lines_are_whole_rupiah() -> None:
    event = _one()
    assert event.total_minor == 233_000  # amt.ttl_amount, IDR has no minor unit here
    lines = [
        (line.line_id, line.sku, line.quantity, line.unit_price_minor, line.paid_price_minor) for line in event.lines
    ]
    assert lines == [
        ("2150123456", "KOPI-GAYO-250G", 2, 85_000, 85_000),
        ("2150123999", "GULA-AREN-500ML", 1, 45_000, 45_000),
    ]


def test_sample_status_times_and_payment_are_mapped() -> None:
    event = _one()
    assert (event.status, event.channel_status) == (OrderStatus.PAID, "220")
    assert event.created_ms == event.event_time_ms == 1_789_528_320_000
    assert event.ingest_time_ms == INGEST_MS
    assert (event.payment_method, event.is_cod) == (PaymentMethod.OTHER, False)


def test_sample_address_in_clear_keeps_province_city_and_postal_code() -> None:
    shipping = _one().shipping
    assert (shipping.country, shipping.region, shipping.city, shipping.postcode) == (
        Market.ID,
        "DKI Jakarta",
        "Kota Administrasi Jakarta Selatan",
        "12730",
    )


def test_sample_event_encodes_to_avro_and_back() -> None:
    event = _one()
    assert OrderEvent.decode(event.encode()) == event


def test_shop_id_comes_from_the_payload_without_a_shop_header() -> None:
    assert _one(headers={}).shop_id == "11223344"


# --- status ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "canonical"),
    [
        *[(code, OrderStatus.CANCELLED) for code in (0, 2, 3, 4, 5, 6, 10, 15, 699)],
        *[(code, OrderStatus.PENDING_PAYMENT) for code in (100, 103, 200)],
        (220, OrderStatus.PAID),
        *[(code, OrderStatus.PROCESSING) for code in (221, 400, 450)],
        *[(code, OrderStatus.SHIPPED) for code in (500, 501, 520, 530, 540, 550)],
        (600, OrderStatus.DELIVERED),
        (601, OrderStatus.DELIVERED),
        (700, OrderStatus.COMPLETED),
        (701, OrderStatus.COMPLETED),
    ],
)
def test_order_status_code_maps_to_a_canonical_status(code: int, canonical: OrderStatus) -> None:
    body = _body()
    body["order_status"] = code
    event = _one(body)
    assert (event.status, event.channel_status) == (canonical, str(code))


def test_order_status_as_a_string_of_digits_is_the_same_code() -> None:
    body = _body()
    body["order_status"] = "400"
    assert _one(body).status is OrderStatus.PROCESSING


@pytest.mark.parametrize("code", [1, 11, 690, 999])
def test_unknown_order_status_code_is_refused_as_unknown_status(code: int) -> None:
    body = _body()
    body["order_status"] = code
    refusal = _refused(body)
    assert refusal.code == "unknown_status"
    assert "order_status" in refusal.reason
    assert str(code) in refusal.reason


# --- encrypted recipients --------------------------------------------------------------------------------


def test_encrypted_order_with_masked_recipient_is_accepted_with_no_address_parts() -> None:
    body = _body()
    body["encryption"] = ENCRYPTION
    body["recipient"] = {
        "name": "R***a",
        "phone": "*******4321",
        "address": {name: "*****" for name in ("address_full", "district", "city", "province", "postal_code")},
    }
    event = _one(body)
    assert (event.shipping.region, event.shipping.city, event.shipping.postcode) == (None, None, None)
    assert event.total_minor == 233_000


def test_encrypted_order_keeps_the_address_parts_still_in_clear() -> None:
    body = _body()
    body["encryption"] = ENCRYPTION
    _address(body).update({"address_full": "J*** K*****", "postal_code": "", "city": "Jakarta Selatan"})
    shipping = _one(body).shipping
    assert (shipping.region, shipping.city, shipping.postcode) == ("DKI Jakarta", "Jakarta Selatan", None)


@pytest.mark.parametrize("recipient", [None, "gAAAAABk...", {}, {"address": "gAAAAABk..."}, {"address": None}])
def test_encrypted_order_whose_recipient_is_not_readable_is_accepted_without_address(recipient: Any) -> None:
    body = _body()
    body["encryption"] = ENCRYPTION
    body["recipient"] = recipient
    shipping = _one(body).shipping
    assert (shipping.country, shipping.region, shipping.city, shipping.postcode) == (Market.ID, None, None, None)


def test_recipient_of_the_wrong_type_without_encryption_is_refused_as_invalid_field() -> None:
    body = _body()
    body["recipient"]["address"] = "Jl. Kemang Raya No. 10"
    refusal = _refused(body)
    assert (refusal.code, "recipient.address" in refusal.reason) == ("invalid_field", True)


def test_empty_postal_code_becomes_postcode_none() -> None:
    body = _body()
    _address(body)["postal_code"] = ""
    assert _one(body).shipping.postcode is None


# --- fields ----------------------------------------------------------------------------------------------


def test_create_time_as_iso_8601_with_an_offset_is_accepted() -> None:
    body = _body()
    body["create_time"] = "2026-09-16T03:12:00Z"
    assert _one(body).created_ms == 1_789_528_320_000


def test_update_time_is_the_event_time_when_present() -> None:
    body = _body()
    body["update_time"] = "2026-09-16T10:30:00.123456+07:00"
    assert _one(body).event_time_ms == 1_789_529_400_123


@pytest.mark.parametrize(
    "create_time", ["2026-09-16 10:12:00", "16-09-2026", "kemarin", "1960-01-01T00:00:00Z", "", 0, -5, "--5"]
)
def test_create_time_that_is_no_time_with_an_offset_nor_epoch_seconds_is_refused(create_time: Any) -> None:
    body = _body()
    body["create_time"] = create_time
    refusal = _refused(body)
    assert (refusal.code, "create_time" in refusal.reason) == ("invalid_field", True)


def test_gateway_name_in_payment_info_decides_the_payment_method() -> None:
    body = _body()
    body["payment_info"] = {"gateway_name": "BCA Virtual Account"}
    assert _one(body).payment_method is PaymentMethod.BANK_TRANSFER


def test_two_products_with_the_same_id_get_distinct_line_ids() -> None:
    body = _body()
    body["products"].append({**body["products"][0], "price": 80000, "sku": "KOPI-GAYO-250G-PROMO"})
    assert [line.line_id for line in _one(body).lines] == ["2150123456", "2150123999", "2150123456#2"]


def test_header_wrapped_order_list_becomes_one_event_per_order() -> None:
    second = {**_body(), "order_id": 1287654322}
    body = {"header": {"process_time": 0.01, "messages": "Your request has been processed successfully"}}
    body["data"] = [_body(), second]
    assert [event.channel_order_id for event in _events(body)] == ["1287654321", "1287654322"]


# --- refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantity", [-1, 0, "-3"])
def test_non_positive_quantity_is_refused_as_invalid_field(quantity: Any) -> None:
    body = _body()
    body["products"][1]["quantity"] = quantity
    refusal = _refused(body)
    assert (refusal.code, "products[1].quantity" in refusal.reason) == ("invalid_field", True)


@pytest.mark.parametrize("sku", ["", None])
def test_product_without_sku_is_refused_as_missing_sku(sku: str | None) -> None:
    body = _body()
    body["products"][0]["sku"] = sku
    refusal = _refused(body)
    assert (refusal.code, "products[0]" in refusal.reason) == ("missing_sku", True)


def test_product_priced_in_another_currency_is_refused_as_invalid_field() -> None:
    body = _body()
    body["products"][0]["currency"] = "USD"
    refusal = _refused(body)
    assert (refusal.code, "products[0].currency" in refusal.reason) == ("invalid_field", True)


def test_fractional_rupiah_is_refused_as_invalid_money() -> None:
    body = _body()
    body["amt"]["ttl_amount"] = 233000.5
    refusal = _refused(body)
    assert (refusal.code, "amt.ttl_amount" in refusal.reason) == ("invalid_money", True)


def test_tokopedia_error_header_is_refused_as_channel_error() -> None:
    body = {"header": {"process_time": 0, "messages": "", "reason": "invalid fs_id", "error_code": "ORD_API_006"}}
    body["data"] = None
    refusal = _refused(body)
    assert (refusal.code, "ORD_API_006" in refusal.reason) == ("channel_error", True)


def test_order_status_notification_is_refused_as_unsupported_shape() -> None:
    push = {"fs_id": 13004, "shop_id": 11223344, "order_id": 1287654321, "order_status": 500}
    assert _refused(push).code == "unsupported_shape"


def test_json_that_is_no_tokopedia_order_is_refused_as_unknown_shape() -> None:
    assert _refused({"invoice": "INV/1"}).code == "unknown_shape"


# --- TikTok Shop-shaped Tokopedia orders -----------------------------------------------------------------


def test_tiktok_shaped_order_is_parsed_as_tiktok_and_stays_on_channel_tokopedia() -> None:
    [event] = _events(_tiktok_shaped())
    assert (event.channel, event.order_key) == ("tokopedia", "t1:tokopedia:578123456789012345")
    assert (event.market, event.currency, event.total_minor) == (Market.ID, "IDR", 799_000)
    assert [(line.sku, line.quantity, line.paid_price_minor) for line in event.lines] == [
        ("SERUM-VITC-30ML", 2, 299_000),
        ("TONER-ROSE-100ML", 1, 189_000),
    ]
    assert event.status is OrderStatus.PAID


def test_tiktok_shaped_order_of_another_market_is_refused_as_invalid_field() -> None:
    refusal = _refused(_tiktok_shaped(region_code="TH", currency="THB"))
    assert (refusal.code, "region_code" in refusal.reason) == ("invalid_field", True)


def test_tiktok_shaped_error_answer_is_refused_as_channel_error() -> None:
    assert _refused({"code": 105001, "message": "Invalid shop_cipher", "request_id": "r", "data": {}}).code == (
        "channel_error"
    )


WEBHOOK: dict[str, Any] = {
    "type": 1,
    "tts_notification_id": "7327112393057371911",
    "shop_id": "7494012345678",
    "timestamp": 1789529470,
    "data": {"order_id": "578123456789012345", "order_status": "AWAITING_COLLECTION", "update_time": 1789529468},
}


def _webhook(**data: Any) -> dict[str, Any]:
    body = copy.deepcopy(WEBHOOK)
    body["data"].update(data)
    return body


def test_tiktok_order_status_webhook_on_the_tokopedia_channel_is_an_update_of_the_tokopedia_order() -> None:
    raw = _raw(value=json.dumps(WEBHOOK).encode())
    [update] = tokopedia.normalize(raw, WEBHOOK, TENANT)
    assert isinstance(update, OrderStatusUpdate)
    assert (update.channel, update.order_key) == ("tokopedia", "t1:tokopedia:578123456789012345")
    assert update.order_key == _events(_tiktok_shaped())[0].order_key
    assert (update.status, update.channel_status, update.line_id) == (
        OrderStatus.PROCESSING,
        "AWAITING_COLLECTION",
        None,
    )
    assert (update.event_time_ms, update.ingest_time_ms) == (1_789_529_468_000, INGEST_MS)
    assert update.shop_id == "11223344"  # the shop header wins over the payload's shop_id
    assert (update.original, update.raw.topic) == (raw.value, "raw.orders.tokopedia")
    assert decode_change(update.encode()) == update


def test_tiktok_webhook_on_the_tokopedia_channel_takes_the_shop_from_the_payload_without_a_header() -> None:
    [update] = tokopedia.normalize(_raw(headers={}), WEBHOOK, TENANT)
    assert update.shop_id == "7494012345678"


@pytest.mark.parametrize("status", ["CANCEL", "CANCELLED"])
def test_tiktok_webhook_cancel_on_the_tokopedia_channel_cancels(status: str) -> None:
    [update] = tokopedia.normalize(_raw(), _webhook(order_status=status), TENANT)
    assert (update.channel, update.status) == ("tokopedia", OrderStatus.CANCELLED)


def test_tiktok_webhook_of_another_type_on_the_tokopedia_channel_is_refused_as_unsupported_shape() -> None:
    body = {**_webhook(), "type": 2}
    refusal = _refused(body)
    assert (refusal.code, refusal.reason.startswith("type:")) == ("unsupported_shape", True)


def test_tiktok_webhook_with_an_unknown_status_on_the_tokopedia_channel_is_refused_as_unknown_status() -> None:
    refusal = _refused(_webhook(order_status="400"))
    assert (refusal.code, "data.order_status" in refusal.reason) == ("unknown_status", True)


def test_tiktok_webhook_without_an_order_id_on_the_tokopedia_channel_is_refused_naming_the_path() -> None:
    body = _webhook()
    del body["data"]["order_id"]
    refusal = _refused(body)
    assert (refusal.code, refusal.reason.startswith("data.order_id:")) == ("invalid_field", True)


# --- stable ids ------------------------------------------------------------------------------------------


def test_event_id_is_the_same_for_the_same_input_and_differs_by_status() -> None:
    assert _one().event_id == _one(offset=99, ingest_ms=INGEST_MS + 1).event_id
    body = _body()
    body["order_status"] = 400
    assert _one(body).event_id != _one().event_id


# --- property --------------------------------------------------------------------------------------------

SAMPLE_PATHS = paths({**SAMPLE, "encryption": ENCRYPTION})
tokopedia_values = json_values | st.sampled_from(["Rp", "IDR", "*****", "220", "700", "2026-09-16T03:12:00Z", ""])
mutations = st.tuples(
    st.sampled_from(SAMPLE_PATHS), st.one_of(st.just(("delete",)), tokopedia_values.map(lambda v: ("set", v)))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(mutations, min_size=1, max_size=4))
def test_mutated_sample_gives_events_or_a_rejection_never_another_exception(
    encrypted: bool, changes: list[Any]
) -> None:
    body = {**_body(), "encryption": copy.deepcopy(ENCRYPTION)} if encrypted else _body()
    for path, op in changes:
        mutate(body, path, op)
    try:
        events = tokopedia.normalize(_raw(), body, TENANT)
    except Rejected as refusal:
        assert refusal.code in CODES | {"channel_error"}
        assert refusal.reason
    else:
        assert len(events) == 1
        assert isinstance(events[0], OrderEvent)


def test_cash_on_delivery_legacy_orders_are_cod_by_flag_or_by_gateway_name() -> None:
    assert not _one().is_cod, "the sample is prepaid"
    by_flag = _body()
    by_flag["is_cod_mitra"] = True
    assert (_one(by_flag).is_cod, _one(by_flag).payment_method.value) == (True, "cod")
    by_gateway = _body()
    by_gateway.setdefault("payment_info", {})["gateway_name"] = "COD"
    event = _one(by_gateway)
    assert event.is_cod and event.payment_method.value == "cod", "a COD gateway must not fail validation"
