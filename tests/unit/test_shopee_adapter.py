"""Shopee get_order_detail -> canonical OrderEvent, through streams.normalize.normalize.

Every refusal must be exactly one dead letter that keeps the original bytes and where they came from.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.order import DeadLetter, Market, OrderEvent, OrderStatus, OrderStatusUpdate, PaymentMethod
from streams.adapters.base import RawInput
from streams.normalize import Outcome, normalize
from tests.unit.payload_mutations import json_values, mutate, paths

TENANT = "t1"
INGEST_MS = 1_795_824_070_000
SAMPLE_BYTES = resources.files("connectors").joinpath("samples", "shopee_order_detail.json").read_bytes()
SAMPLE: dict[str, Any] = json.loads(SAMPLE_BYTES)


def _body() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def _order(body: dict[str, Any]) -> dict[str, Any]:
    return body["response"]["order_list"][0]


def _raw(value: bytes | dict[str, Any] | list[Any], **changes: Any) -> RawInput:
    if not isinstance(value, bytes):
        value = json.dumps(value).encode()
    fields: dict[str, Any] = {
        "channel": "shopee",
        "value": value,
        "topic": "raw.orders.shopee",
        "partition": 3,
        "offset": 42,
        "ingest_ms": INGEST_MS,
        "key": b"2611270A1B2C3D",
        "headers": {"shop": b"777", "delivery_id": b"d-1"},
    }
    fields.update(changes)
    return RawInput(**fields)


def _one_event(value: bytes | dict[str, Any], **changes: Any) -> OrderEvent:
    outcome = normalize(_raw(value, **changes), TENANT)
    assert outcome.dead_letter is None, outcome.dead_letter
    assert len(outcome.events) == 1
    return outcome.events[0]


def _refused(value: bytes | dict[str, Any] | list[Any], **changes: Any) -> Outcome:
    outcome = normalize(_raw(value, **changes), TENANT)
    assert outcome.events == ()
    assert outcome.dead_letter is not None
    return outcome


# --- the sample ------------------------------------------------------------------------------------------


def test_sample_becomes_one_event_with_order_identity_and_totals() -> None:
    event = _one_event(SAMPLE_BYTES)
    assert event.tenant == TENANT
    assert event.channel == "shopee"
    assert event.channel_order_id == "2611270A1B2C3D"
    assert event.order_key == "t1:shopee:2611270A1B2C3D"
    assert event.market is Market.SG
    assert event.currency == "SGD"
    assert event.total_minor == 5980  # 59.8 SGD, not 5979
    assert event.shop_id == "777"  # from the connector's shop header


def test_sample_status_payment_and_times_are_mapped() -> None:
    event = _one_event(SAMPLE_BYTES)
    assert event.status is OrderStatus.PAID
    assert event.channel_status == "READY_TO_SHIP"
    assert event.payment_method is PaymentMethod.EWALLET  # ShopeePay
    assert event.is_cod is False
    assert event.created_ms == 1_795_824_000_000
    assert event.event_time_ms == 1_795_824_062_000  # update_time, seconds -> ms
    assert event.ship_by_ms == 1_795_996_800_000
    assert event.ingest_time_ms == INGEST_MS
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.shopee", 3, 42)


def test_sample_lines_keep_prices_and_fall_back_to_item_sku_when_model_sku_is_empty() -> None:
    first, second = _one_event(SAMPLE_BYTES).lines
    assert first.line_id == "100200300:5001"
    assert first.sku == "EARBUD-PRO-BLK"  # model_sku wins
    assert (first.quantity, first.unit_price_minor, first.paid_price_minor) == (1, 3990, 2990)
    assert first.promotion_type == "flash_sale"
    assert second.line_id == "100200400:0"
    assert second.sku == "CABLE-USBC-1M"  # model_sku "" -> item_sku
    assert (second.quantity, second.unit_price_minor, second.paid_price_minor) == (2, 1495, 1495)
    assert second.promotion_type is None  # "" means none


def test_sample_shipping_address_keeps_postcode_city_and_state() -> None:
    shipping = _one_event(SAMPLE_BYTES).shipping
    assert shipping.country is Market.SG
    assert shipping.postcode == "238859"
    assert shipping.city == "Singapore"
    assert shipping.region == "Central"


def test_sample_event_encodes_to_avro_and_back() -> None:
    event = _one_event(SAMPLE_BYTES)
    assert OrderEvent.decode(event.encode()) == event


def test_shop_id_comes_from_the_payload_when_the_shop_header_is_missing() -> None:
    body = _body()
    _order(body)["shop_id"] = 123456
    assert _one_event(body, headers={}).shop_id == "123456"


def test_shop_id_is_empty_when_neither_header_nor_payload_has_it() -> None:
    assert _one_event(SAMPLE_BYTES, headers={}).shop_id == ""


def test_market_comes_from_the_market_header_when_region_is_missing() -> None:
    body = _body()
    del _order(body)["region"]
    assert _one_event(body, headers={"market": b"SG"}).market is Market.SG


# --- field mapping ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shopee_status", "canonical"),
    [
        ("UNPAID", OrderStatus.PENDING_PAYMENT),
        ("READY_TO_SHIP", OrderStatus.PAID),
        ("PROCESSED", OrderStatus.PROCESSING),
        ("RETRY_SHIP", OrderStatus.PROCESSING),
        ("SHIPPED", OrderStatus.SHIPPED),
        ("TO_CONFIRM_RECEIVE", OrderStatus.DELIVERED),
        ("IN_CANCEL", OrderStatus.PAID),
        ("CANCELLED", OrderStatus.CANCELLED),
        ("TO_RETURN", OrderStatus.DELIVERED),
        ("COMPLETED", OrderStatus.COMPLETED),
    ],
)
def test_every_documented_shopee_status_maps_to_a_canonical_status(shopee_status: str, canonical: OrderStatus) -> None:
    body = _body()
    _order(body)["order_status"] = shopee_status
    event = _one_event(body)
    assert event.status is canonical
    assert event.channel_status == shopee_status


def test_empty_zipcode_becomes_postcode_none() -> None:
    body = _body()
    _order(body)["recipient_address"]["zipcode"] = ""
    assert _one_event(body).shipping.postcode is None


def test_missing_recipient_address_gives_an_address_with_only_the_country() -> None:
    body = _body()
    del _order(body)["recipient_address"]
    shipping = _one_event(body).shipping
    assert shipping.country is Market.SG
    assert (shipping.region, shipping.city, shipping.postcode) == (None, None, None)


def test_cod_true_makes_payment_method_cod_whatever_the_method_name() -> None:
    body = _body()
    _order(body)["cod"] = True
    event = _one_event(body)
    assert event.payment_method is PaymentMethod.COD
    assert event.is_cod is True


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("Cash on Delivery", PaymentMethod.COD),
        ("ShopeePay", PaymentMethod.EWALLET),
        ("SPayLater", PaymentMethod.BNPL),
        ("Credit Card/Debit Card", PaymentMethod.CARD),
        ("Bank Transfer", PaymentMethod.BANK_TRANSFER),
        ("", PaymentMethod.OTHER),
        ("Something New", PaymentMethod.OTHER),
    ],
)
def test_payment_method_name_maps_to_a_canonical_method(name: str, method: PaymentMethod) -> None:
    body = _body()
    _order(body)["payment_method"] = name
    event = _one_event(body)
    assert event.payment_method is method
    assert event.is_cod is (method is PaymentMethod.COD)


def test_missing_update_time_uses_create_time_as_event_time() -> None:
    body = _body()
    del _order(body)["update_time"]
    assert _one_event(body).event_time_ms == 1_795_824_000_000


def test_missing_discounted_price_uses_the_original_price() -> None:
    body = _body()
    del _order(body)["item_list"][0]["model_discounted_price"]
    line = _one_event(body).lines[0]
    assert line.paid_price_minor == line.unit_price_minor == 3990


def test_two_lines_of_the_same_item_and_model_get_distinct_line_ids() -> None:
    body = _body()
    items = _order(body)["item_list"]
    items.append(copy.deepcopy(items[0]))
    ids = [line.line_id for line in _one_event(body).lines]
    assert len(set(ids)) == 3
    assert ids[2] == "100200300:5001#2"


def test_numbers_sent_as_strings_are_accepted() -> None:
    body = _body()
    order = _order(body)
    order["create_time"] = str(order["create_time"])
    order["total_amount"] = "59.80"
    order["item_list"][1]["model_quantity_purchased"] = "2"
    event = _one_event(body)
    assert event.created_ms == 1_795_824_000_000
    assert event.total_minor == 5980
    assert event.lines[1].quantity == 2


def test_several_orders_in_one_response_become_several_events() -> None:
    body = _body()
    second = copy.deepcopy(_order(body))
    second["order_sn"] = "SECOND"
    body["response"]["order_list"].append(second)
    outcome = normalize(_raw(body), TENANT)
    assert outcome.dead_letter is None
    assert [e.channel_order_id for e in outcome.events] == ["2611270A1B2C3D", "SECOND"]


# --- refusals --------------------------------------------------------------------------------------------


def test_line_without_any_sku_is_dead_lettered_as_missing_sku_naming_the_line() -> None:
    body = _body()
    _order(body)["item_list"][1]["model_sku"] = ""
    _order(body)["item_list"][1]["item_sku"] = ""
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "missing_sku"
    assert "response.order_list[0].item_list[1]" in letter.reason


def test_unknown_status_is_dead_lettered_as_unknown_status() -> None:
    body = _body()
    _order(body)["order_status"] = "TELEPORTED"
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "unknown_status"
    assert "response.order_list[0].order_status" in letter.reason
    assert "TELEPORTED" in letter.reason


def test_currency_not_of_the_region_is_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["currency"] = "MYR"
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_field"
    assert "response.order_list[0].currency" in letter.reason


def test_unknown_region_is_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["region"] = "XX"
    letter = _refused(body).dead_letter
    assert letter is not None
    assert (letter.reason_code, "response.order_list[0].region" in letter.reason) == ("invalid_field", True)


def test_missing_region_without_a_market_header_is_refused_as_invalid_field() -> None:
    body = _body()
    del _order(body)["region"]
    letter = _refused(body, headers={}).dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_field"


@pytest.mark.parametrize("quantity", [-1, 0])
def test_non_positive_quantity_is_refused_as_invalid_field(quantity: int) -> None:
    body = _body()
    _order(body)["item_list"][0]["model_quantity_purchased"] = quantity
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_field"
    assert "response.order_list[0].item_list[0].model_quantity_purchased" in letter.reason


def test_negative_total_is_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["total_amount"] = -1
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_field"
    assert "total_minor" in letter.reason


def test_price_with_three_decimals_is_refused_as_invalid_money() -> None:
    body = _body()
    _order(body)["item_list"][0]["model_original_price"] = 39.905
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_money"
    assert "response.order_list[0].item_list[0].model_original_price" in letter.reason


def test_empty_item_list_is_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["item_list"] = []
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_field"
    assert "item_list" in letter.reason


def test_empty_order_list_is_refused() -> None:
    body = _body()
    body["response"]["order_list"] = []
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_field"


def test_shopee_error_answer_is_refused_as_channel_error() -> None:
    body = {"request_id": "r", "error": "error_auth", "message": "Invalid access_token", "response": None}
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "channel_error"
    assert "error_auth" in letter.reason


def test_malformed_json_is_dead_lettered_as_malformed_json() -> None:
    letter = _refused(SAMPLE_BYTES[:-10]).dead_letter
    assert letter is not None
    assert letter.reason_code == "malformed_json"


def test_invalid_utf8_is_dead_lettered_as_invalid_encoding_with_the_byte_offset() -> None:
    letter = _refused(b'{"order_sn": "\xff\xfe"}').dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_encoding"
    assert "byte 14" in letter.reason


def test_json_that_is_not_a_shopee_response_is_dead_lettered_as_unknown_shape() -> None:
    letter = _refused({"orders": [{"id": 1}]}).dead_letter
    assert letter is not None
    assert letter.reason_code == "unknown_shape"


def test_shopee_status_push_becomes_a_status_update_keyed_by_order_and_keeping_the_push_bytes() -> None:
    push = {"code": 3, "shop_id": 1, "timestamp": 5, "data": {"ordersn": "X", "status": "SHIPPED", "update_time": 4}}
    raw = _raw(push)
    outcome = normalize(raw, TENANT)
    assert outcome.dead_letter is None
    (update,) = outcome.events
    assert isinstance(update, OrderStatusUpdate)
    assert (update.order_key, update.status, update.event_time_ms) == (f"{TENANT}:shopee:X", OrderStatus.SHIPPED, 4000)
    assert update.original == raw.value


def test_shopee_tracking_number_push_is_dead_lettered_as_unsupported_shape() -> None:
    push = {"code": 4, "shop_id": 1, "timestamp": 1, "data": {"ordersn": "X", "tracking_no": "TN1"}}
    letter = _refused(push).dead_letter
    assert letter is not None
    assert letter.reason_code == "unsupported_shape"
    assert "4" in letter.reason


def test_shopee_status_push_with_an_unknown_status_is_dead_lettered() -> None:
    push = {"code": 3, "shop_id": 1, "timestamp": 1, "data": {"ordersn": "X", "status": "LOST_IN_SPACE"}}
    letter = _refused(push).dead_letter
    assert letter is not None and letter.reason_code == "unknown_status"


def test_channel_without_an_adapter_is_dead_lettered_as_no_adapter() -> None:
    letter = _refused(SAMPLE_BYTES, channel="myshop", topic="raw.orders.myshop").dead_letter
    assert letter is not None
    assert letter.reason_code == "no_adapter"
    assert letter.channel == "myshop"
    assert "myshop" in letter.reason


def test_dead_letter_keeps_original_bytes_and_the_source_position() -> None:
    original = b'{"broken": '
    raw = _raw(original, partition=5, offset=1234, key=b"the-key", headers={"shop": b"777", "x": b"\x00\xff"})
    letter = normalize(raw, TENANT).dead_letter
    assert letter is not None
    assert letter.original == original
    assert letter.source_topic == "raw.orders.shopee"
    assert letter.source_partition == 5
    assert letter.source_offset == 1234
    assert letter.source_key == b"the-key"
    assert letter.source_headers == {"shop": b"777", "x": b"\x00\xff"}
    assert letter.dead_letter_id == "raw.orders.shopee:5:1234"
    assert (letter.tenant, letter.channel, letter.stage) == (TENANT, "shopee", "normalize")


def test_dead_letter_encodes_to_avro_and_back() -> None:
    letter = normalize(_raw(b"\xff"), TENANT).dead_letter
    assert letter is not None
    assert DeadLetter.decode(letter.encode()) == letter


@pytest.mark.parametrize("value", ["--5", "²"])
def test_malformed_numeric_string_is_refused_as_invalid_field(value: str) -> None:
    body = _body()
    _order(body)["create_time"] = value
    letter = _refused(body).dead_letter
    assert letter is not None
    assert letter.reason_code == "invalid_field"
    assert "response.order_list[0].create_time" in letter.reason


@pytest.mark.parametrize(
    "changes", [{"total_amount": 1e19}, {"create_time": 10**17, "update_time": 10**17}], ids=["total", "time"]
)
def test_values_beyond_avro_long_are_dead_lettered_not_emitted_as_unencodable_events(
    changes: dict[str, Any],
) -> None:
    body = _body()
    _order(body).update(changes)
    outcome = normalize(_raw(body), TENANT)
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason_code in {"invalid_field", "invalid_money"}


# --- stable ids ------------------------------------------------------------------------------------------


def test_event_id_is_the_same_for_the_same_input_normalized_twice() -> None:
    first = _one_event(SAMPLE_BYTES)
    second = _one_event(SAMPLE_BYTES, offset=99, partition=0, ingest_ms=INGEST_MS + 5000)
    assert first.event_id == second.event_id


def test_event_id_differs_when_update_time_differs() -> None:
    body = _body()
    _order(body)["update_time"] += 1
    assert _one_event(body).event_id != _one_event(SAMPLE_BYTES).event_id


def test_event_id_differs_when_status_differs() -> None:
    body = _body()
    _order(body)["order_status"] = "SHIPPED"
    assert _one_event(body).event_id != _one_event(SAMPLE_BYTES).event_id


def test_event_id_differs_per_tenant() -> None:
    raw = _raw(SAMPLE_BYTES)
    assert normalize(raw, "a").events[0].event_id != normalize(raw, "b").events[0].event_id


def test_dead_letter_id_is_the_source_position_and_stable() -> None:
    first = normalize(_raw(b"{"), TENANT).dead_letter
    second = normalize(_raw(b"{"), TENANT).dead_letter
    assert first is not None and second is not None
    assert first.dead_letter_id == second.dead_letter_id == "raw.orders.shopee:3:42"


# --- properties ------------------------------------------------------------------------------------------


def _assert_exactly_one_outcome(raw: RawInput) -> Outcome:
    outcome = normalize(raw, TENANT)
    assert bool(outcome.events) != (outcome.dead_letter is not None)
    if outcome.dead_letter is not None:
        assert outcome.dead_letter.original == raw.value
        assert outcome.dead_letter.reason_code
        assert outcome.dead_letter.reason
    for event in outcome.events:
        assert isinstance(event, OrderEvent)
        assert event.raw.offset == raw.offset
    return outcome


SAMPLE_PATHS = paths(SAMPLE)

mutations = st.tuples(
    st.sampled_from(SAMPLE_PATHS), st.one_of(st.just(("delete",)), json_values.map(lambda v: ("set", v)))
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_and_give_exactly_one_outcome(data: bytes) -> None:
    _assert_exactly_one_outcome(_raw(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutations, min_size=1, max_size=4))
def test_mutated_sample_never_raises_and_gives_exactly_one_outcome(changes: list[Any]) -> None:
    body = _body()
    for path, op in changes:
        mutate(body, path, op)
    _assert_exactly_one_outcome(_raw(json.dumps(body).encode()))


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_json_document_never_raises_and_gives_exactly_one_outcome(document: Any) -> None:
    _assert_exactly_one_outcome(_raw(json.dumps(document).encode()))
