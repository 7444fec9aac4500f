"""TikTok Shop API 202309 Get Order Detail -> canonical OrderEvent, and order status webhooks -> OrderStatusUpdate,
or Rejected naming the field."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.order import Market, OrderEvent, OrderStatus, OrderStatusUpdate, PaymentMethod, decode_change
from streams.adapters import tiktok
from streams.adapters.base import RawInput, Rejected, parse_json
from streams.lifecycle import OrderState, apply
from tests.unit.payload_mutations import json_values, mutate, paths

TENANT = "t1"
INGEST_MS = 1_789_529_470_000
SAMPLE_BYTES = resources.files("connectors").joinpath("samples", "tiktok_order_detail.json").read_bytes()
SAMPLE: dict[str, Any] = json.loads(SAMPLE_BYTES)
CODES = {"unknown_shape", "unsupported_shape", "invalid_field", "invalid_money", "missing_sku", "unknown_status"}


def _body() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def _order(body: dict[str, Any]) -> dict[str, Any]:
    return body["data"]["orders"][0]


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    return _order(body)["line_items"]


def _raw(**changes: Any) -> RawInput:
    fields: dict[str, Any] = {
        "channel": "tiktok",
        "value": SAMPLE_BYTES,
        "topic": "raw.orders.tiktok",
        "partition": 2,
        "offset": 11,
        "ingest_ms": INGEST_MS,
        "headers": {"shop": b"7495012345678", "market": b"TH"},
    }
    fields.update(changes)
    return RawInput(**fields)


def _events(body: Any = None, **changes: Any) -> list[OrderEvent]:
    events = tiktok.normalize(_raw(**changes), _body() if body is None else body, TENANT)
    assert all(isinstance(event, OrderEvent) for event in events)
    return [event for event in events if isinstance(event, OrderEvent)]


def _one(body: Any = None, **changes: Any) -> OrderEvent:
    events = _events(body, **changes)
    assert len(events) == 1
    return events[0]


def _refused(body: Any, **changes: Any) -> Rejected:
    with pytest.raises(Rejected) as info:
        tiktok.normalize(_raw(**changes), body, TENANT)
    return info.value


# --- the sample ------------------------------------------------------------------------------------------


def test_sample_bytes_become_one_event_with_order_identity_market_and_total() -> None:
    [event] = tiktok.normalize(_raw(), parse_json(SAMPLE_BYTES), TENANT)
    assert isinstance(event, OrderEvent)
    assert event.channel == "tiktok"
    assert event.channel_order_id == "578123456789012345"
    assert event.order_key == "t1:tiktok:578123456789012345"
    assert (event.market, event.currency) == (Market.TH, "THB")
    assert event.total_minor == 82700  # "827.00" THB
    assert event.shop_id == "7495012345678"
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.tiktok", 2, 11)


def test_sample_status_payment_and_times_are_mapped() -> None:
    event = _one()
    assert (event.status, event.channel_status) == (OrderStatus.PAID, "AWAITING_SHIPMENT")
    assert (event.payment_method, event.is_cod) == (PaymentMethod.EWALLET, False)  # TrueMoney Wallet
    assert event.created_ms == 1_789_529_400_000
    assert event.event_time_ms == 1_789_529_462_000
    assert event.ship_by_ms == 1_789_702_200_000  # rts_sla_time
    assert event.ingest_time_ms == INGEST_MS


def test_sample_two_units_of_one_seller_sku_fold_into_one_line_of_quantity_two() -> None:
    serum, toner = _one().lines
    assert (serum.sku, serum.quantity, serum.unit_price_minor, serum.paid_price_minor) == (
        "SERUM-VITC-30ML",
        2,
        39900,
        29900,
    )
    assert serum.line_id == "578123456789112345+578123456789112346"
    assert (toner.sku, toner.quantity, toner.unit_price_minor, toner.paid_price_minor) == (
        "TONER-ROSE-100ML",
        1,
        18900,
        18900,
    )


def test_sample_region_and_city_come_from_district_info_levels() -> None:
    shipping = _one().shipping
    assert (shipping.country, shipping.region, shipping.city, shipping.postcode) == (
        Market.TH,
        "Bangkok",
        "Khlong Toei",
        "10110",
    )


def test_sample_event_encodes_to_avro_and_back() -> None:
    event = _one()
    assert OrderEvent.decode(event.encode()) == event


# --- field mapping ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tiktok_status", "canonical"),
    [
        ("UNPAID", OrderStatus.PENDING_PAYMENT),
        ("ON_HOLD", OrderStatus.PAID),
        ("AWAITING_SHIPMENT", OrderStatus.PAID),
        ("PARTIALLY_SHIPPING", OrderStatus.PROCESSING),
        ("AWAITING_COLLECTION", OrderStatus.PROCESSING),
        ("IN_TRANSIT", OrderStatus.SHIPPED),
        ("DELIVERED", OrderStatus.DELIVERED),
        ("COMPLETED", OrderStatus.COMPLETED),
        ("CANCELLED", OrderStatus.CANCELLED),
    ],
)
def test_every_documented_status_maps_to_a_canonical_status(tiktok_status: str, canonical: OrderStatus) -> None:
    body = _body()
    _order(body)["status"] = tiktok_status
    assert _one(body).status is canonical


def test_cancel_as_webhooks_spell_it_is_cancelled_like_cancelled_but_keeps_its_spelling() -> None:
    cancel, cancelled = _body(), _body()
    _order(cancel)["status"] = "CANCEL"
    _order(cancelled)["status"] = "CANCELLED"
    assert _one(cancel).status is _one(cancelled).status is OrderStatus.CANCELLED
    assert _one(cancel).channel_status == "CANCEL"


def test_a_quantity_when_present_counts_as_that_many_units() -> None:
    body = _body()
    _items(body)[0]["quantity"] = 3
    _items(body)[2]["quantity"] = "2"
    serum, toner = _one(body).lines
    assert (serum.quantity, toner.quantity) == (4, 2)


def test_units_of_one_seller_sku_at_different_sale_prices_stay_separate_lines() -> None:
    body = _body()
    _items(body)[1]["sale_price"] = "249.00"
    lines = [(line.sku, line.quantity, line.paid_price_minor) for line in _one(body).lines]
    assert lines == [("SERUM-VITC-30ML", 1, 29900), ("SERUM-VITC-30ML", 1, 24900), ("TONER-ROSE-100ML", 1, 18900)]


def test_line_ids_do_not_depend_on_the_order_units_come_in() -> None:
    body = _body()
    _items(body).reverse()
    assert {line.line_id for line in _one(body).lines} == {line.line_id for line in _one().lines}


def test_missing_seller_sku_falls_back_to_the_sku_id() -> None:
    body = _body()
    _items(body)[2]["seller_sku"] = ""
    assert _one(body).lines[1].sku == "1729512345678905678"


def test_money_as_numbers_instead_of_strings_gives_the_same_event() -> None:
    body = _body()
    _order(body)["payment"]["total_amount"] = 827
    for item in _items(body):
        item["sale_price"], item["original_price"] = float(item["sale_price"]), float(item["original_price"])
    assert _one(body) == _one()


def test_missing_original_price_uses_the_sale_price() -> None:
    body = _body()
    del _items(body)[2]["original_price"]
    toner = _one(body).lines[1]
    assert toner.unit_price_minor == toner.paid_price_minor == 18900


def test_empty_postal_code_becomes_postcode_none() -> None:
    body = _body()
    _order(body)["recipient_address"]["postal_code"] = ""
    assert _one(body).shipping.postcode is None


def test_missing_district_info_gives_no_region_or_city() -> None:
    body = _body()
    del _order(body)["recipient_address"]["district_info"]
    shipping = _one(body).shipping
    assert (shipping.region, shipping.city, shipping.postcode) == (None, None, "10110")


def test_city_level_wins_over_district_when_both_are_there() -> None:
    body = _body()
    _order(body)["recipient_address"]["district_info"].append({"address_level_name": "City", "address_name": "Krung"})
    assert _one(body).shipping.city == "Krung"


def test_market_comes_from_the_header_without_region_code_and_from_the_currency_without_both() -> None:
    body = _body()
    del _order(body)["recipient_address"]["region_code"]
    assert _one(body, headers={"market": b"TH"}).market is Market.TH
    assert _one(body, headers={}).market is Market.TH


def test_missing_update_time_uses_create_time_and_missing_rts_sla_uses_shipping_due_time() -> None:
    body = _body()
    del _order(body)["update_time"], _order(body)["rts_sla_time"]
    _order(body)["shipping_due_time"] = 1_789_700_000
    event = _one(body)
    assert event.event_time_ms == event.created_ms == 1_789_529_400_000
    assert event.ship_by_ms == 1_789_700_000_000


def test_is_cod_makes_the_payment_cod_whatever_the_method_name() -> None:
    body = _body()
    _order(body)["is_cod"] = True
    event = _one(body)
    assert (event.payment_method, event.is_cod) == (PaymentMethod.COD, True)


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("Cash on delivery", PaymentMethod.COD),
        ("Credit/Debit Card", PaymentMethod.CARD),
        ("GoPayLater", PaymentMethod.BNPL),
        ("DANA", PaymentMethod.EWALLET),
        ("GCash", PaymentMethod.EWALLET),
        ("Bank Danamon Virtual Account", PaymentMethod.BANK_TRANSFER),
        ("Maybank2u", PaymentMethod.BANK_TRANSFER),
        ("PromptPay", PaymentMethod.BANK_TRANSFER),
        ("QR Code", PaymentMethod.OTHER),
        ("", PaymentMethod.OTHER),
    ],
)
def test_payment_method_name_maps_to_a_canonical_method(name: str, method: PaymentMethod) -> None:
    body = _body()
    _order(body)["payment_method_name"] = name
    event = _one(body)
    assert event.payment_method is method
    assert event.is_cod is (method is PaymentMethod.COD)


def test_several_orders_in_one_response_become_several_events() -> None:
    body = _body()
    second = copy.deepcopy(_order(body))
    second["id"] = "578999999999999999"
    body["data"]["orders"].append(second)
    assert [event.channel_order_id for event in _events(body)] == ["578123456789012345", "578999999999999999"]


def test_channel_argument_names_the_channel_and_the_order_key() -> None:
    [event] = tiktok.normalize(_raw(), _body(), TENANT, channel="tokopedia")
    assert (event.channel, event.order_key) == ("tokopedia", "t1:tokopedia:578123456789012345")


# --- refusals --------------------------------------------------------------------------------------------


def test_unknown_status_is_refused_as_unknown_status_naming_the_field() -> None:
    body = _body()
    _order(body)["status"] = "TELEPORTED"
    refusal = _refused(body)
    assert refusal.code == "unknown_status"
    assert "data.orders[0].status" in refusal.reason
    assert "TELEPORTED" in refusal.reason


def test_line_item_without_seller_sku_or_sku_id_is_refused_as_missing_sku() -> None:
    body = _body()
    del _items(body)[1]["seller_sku"], _items(body)[1]["sku_id"]
    refusal = _refused(body)
    assert (refusal.code, "data.orders[0].line_items[1]" in refusal.reason) == ("missing_sku", True)


@pytest.mark.parametrize("quantity", [-1, 0, "-2", "--1", "²"])
def test_non_positive_or_malformed_quantity_is_refused_as_invalid_field(quantity: Any) -> None:
    body = _body()
    _items(body)[0]["quantity"] = quantity
    refusal = _refused(body)
    assert (refusal.code, "data.orders[0].line_items[0].quantity" in refusal.reason) == ("invalid_field", True)


def test_currency_not_of_the_region_is_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["payment"]["currency"] = "VND"
    refusal = _refused(body)
    assert (refusal.code, "data.orders[0].payment.currency" in refusal.reason) == ("invalid_field", True)


def test_unknown_region_code_is_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["recipient_address"]["region_code"] = "US"
    refusal = _refused(body)
    assert (refusal.code, "recipient_address.region_code" in refusal.reason) == ("invalid_field", True)


@pytest.mark.parametrize("create_time", ["2026-09-16", "yesterday", "", None, 0])
def test_create_time_that_is_not_epoch_seconds_is_refused_as_invalid_field(create_time: Any) -> None:
    body = _body()
    _order(body)["create_time"] = create_time
    refusal = _refused(body)
    assert (refusal.code, "data.orders[0].create_time" in refusal.reason) == ("invalid_field", True)


def test_price_with_three_decimals_is_refused_as_invalid_money() -> None:
    body = _body()
    _items(body)[2]["sale_price"] = "189.005"
    refusal = _refused(body)
    assert (refusal.code, "line_items[2].sale_price" in refusal.reason) == ("invalid_money", True)


def test_empty_line_items_are_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["line_items"] = []
    assert _refused(body).code == "invalid_field"


def test_tiktok_error_answer_is_refused_as_channel_error() -> None:
    refusal = _refused({"code": 36009003, "message": "Internal error", "request_id": "r", "data": None})
    assert refusal.code == "channel_error"
    assert "36009003" in refusal.reason


def test_json_that_is_not_a_tiktok_response_is_refused_as_unknown_shape() -> None:
    assert _refused({"orders": [{"id": "1"}]}).code == "unknown_shape"


# --- stable ids ------------------------------------------------------------------------------------------


def test_event_id_is_the_same_for_the_same_input_whatever_its_position() -> None:
    assert _one().event_id == _one(offset=99, partition=0, ingest_ms=INGEST_MS + 1).event_id


def test_event_id_differs_when_update_time_differs() -> None:
    body = _body()
    _order(body)["update_time"] += 1
    assert _one(body).event_id != _one().event_id


# --- order status webhooks -------------------------------------------------------------------------------

WEBHOOK: dict[str, Any] = {
    "type": 1,
    "tts_notification_id": "7327112393057371910",
    "shop_id": "7495012345678",
    "timestamp": 1789529470,
    "data": {"order_id": "578123456789012345", "order_status": "IN_TRANSIT", "update_time": 1789529468},
}


def _webhook(**data: Any) -> dict[str, Any]:
    body = copy.deepcopy(WEBHOOK)
    body["data"].update(data)
    return body


def _webhook_raw(body: dict[str, Any], **changes: Any) -> RawInput:
    return _raw(value=json.dumps(body).encode(), **changes)


def _update(body: dict[str, Any], **changes: Any) -> OrderStatusUpdate:
    [update] = tiktok.normalize(_webhook_raw(body, **changes), body, TENANT)
    assert isinstance(update, OrderStatusUpdate)
    return update


def test_order_status_webhook_becomes_an_order_level_update_keeping_the_webhook_bytes() -> None:
    raw = _webhook_raw(WEBHOOK)
    [update] = tiktok.normalize(raw, parse_json(raw.value), TENANT)
    assert isinstance(update, OrderStatusUpdate)
    assert (update.tenant, update.channel, update.channel_order_id) == (TENANT, "tiktok", "578123456789012345")
    assert update.order_key == "t1:tiktok:578123456789012345" == _one().order_key
    assert update.line_id is None
    assert (update.status, update.channel_status) == (OrderStatus.SHIPPED, "IN_TRANSIT")
    assert update.event_time_ms == 1_789_529_468_000  # data.update_time, epoch seconds
    assert (update.shop_id, update.ingest_time_ms) == ("7495012345678", INGEST_MS)
    assert (update.raw.topic, update.raw.partition, update.raw.offset) == ("raw.orders.tiktok", 2, 11)
    assert update.original == raw.value
    assert decode_change(update.encode()) == update


@pytest.mark.parametrize("missing", [None, "", 0])
def test_without_update_time_the_webhook_timestamp_in_seconds_is_the_event_time(missing: Any) -> None:
    assert _update(_webhook(update_time=missing)).event_time_ms == 1_789_529_470_000


def test_webhook_shop_id_comes_from_the_payload_without_a_shop_header() -> None:
    assert _update(WEBHOOK, headers={"shop": b"other"}).shop_id == "other"
    assert _update(WEBHOOK, headers={}).shop_id == "7495012345678"


@pytest.mark.parametrize(("tiktok_status", "canonical"), sorted(tiktok.STATUS.items()))
def test_every_status_in_a_webhook_maps_like_in_an_order(tiktok_status: str, canonical: OrderStatus) -> None:
    update = _update(_webhook(order_status=tiktok_status))
    assert (update.status, update.channel_status) == (canonical, tiktok_status)


def test_cancel_and_cancelled_both_cancel_the_order() -> None:
    assert _update(_webhook(order_status="CANCEL")).status is OrderStatus.CANCELLED
    assert _update(_webhook(order_status="CANCELLED")).status is OrderStatus.CANCELLED


@pytest.mark.parametrize("status", ["TELEPORTED", "in_transit", "SHIPPED"])
def test_webhook_with_an_unknown_status_is_refused_as_unknown_status_naming_the_field(status: str) -> None:
    refusal = _refused(_webhook(order_status=status))
    assert refusal.code == "unknown_status"
    assert "data.order_status" in refusal.reason and status in refusal.reason


@pytest.mark.parametrize("kind", [2, 3, 4, 6, "11"])
def test_webhook_of_another_type_is_refused_as_unsupported_shape_naming_type(kind: Any) -> None:
    body = _webhook()
    body["type"] = kind
    refusal = _refused(body)
    assert refusal.code == "unsupported_shape"
    assert refusal.reason.startswith("type:") and str(kind) in refusal.reason


@pytest.mark.parametrize("field", ["order_id", "order_status"])
@pytest.mark.parametrize("value", ["delete", None, "  ", [1]])
def test_webhook_without_order_id_or_status_is_refused_as_invalid_field_naming_the_path(field: str, value: Any) -> None:
    body = _webhook()
    if value == "delete":
        del body["data"][field]
    else:
        body["data"][field] = value
    refusal = _refused(body)
    assert (refusal.code, f"data.{field}" in refusal.reason) == ("invalid_field", True)


@pytest.mark.parametrize(
    ("body_change", "path"),
    [
        ({"data": None}, "data"),
        ({"type": None}, "type"),
        ({"type": "order"}, "type"),
        ({"timestamp": None, "data": {"order_id": "5", "order_status": "CANCEL"}}, "timestamp"),
        ({"data": {"order_id": "5", "order_status": "CANCEL", "update_time": -1}}, "data.update_time"),
        ({"data": {"order_id": "5", "order_status": "CANCEL", "update_time": 2**62}}, "data.update_time"),
    ],
)
def test_webhook_with_a_missing_or_bad_field_is_refused_as_invalid_field_naming_it(
    body_change: dict[str, Any], path: str
) -> None:
    body = {**_webhook(), **body_change}
    refusal = _refused(body)
    assert refusal.code == "invalid_field"
    assert refusal.reason.startswith(f"{path}:")


def test_webhook_retries_get_the_same_event_id_and_a_newer_change_another() -> None:
    update = _update(WEBHOOK)
    assert _update(WEBHOOK, offset=99, partition=0, ingest_ms=INGEST_MS + 120_000).event_id == update.event_id
    assert _update(_webhook(update_time=1789529469)).event_id != update.event_id
    assert _update(_webhook(order_status="DELIVERED")).event_id != update.event_id


def test_an_early_webhook_waits_for_its_order_and_is_applied_when_the_order_arrives() -> None:
    webhook = _update(WEBHOOK, offset=3)
    order = _one()  # AWAITING_SHIPMENT, updated at 1789529462: before the webhook's change
    assert webhook.order_key == order.order_key

    early = apply(OrderState(), webhook)
    assert (early.emit, early.dead, early.state.pending) == ((), (), (webhook,))

    arrived = apply(OrderState.from_bytes(early.state.to_bytes()), order)
    assert [e.status for e in arrived.emit] == [OrderStatus.PAID, OrderStatus.SHIPPED]
    assert arrived.state.pending == ()
    shipped = arrived.emit[-1]
    assert (shipped.channel_status, shipped.event_id, shipped.event_time_ms) == (
        "IN_TRANSIT",
        webhook.event_id,
        1_789_529_468_000,
    )
    assert shipped.lines == order.lines
    assert apply(arrived.state, webhook).emit == (), "the retried webhook changes nothing"


# --- property --------------------------------------------------------------------------------------------

SAMPLE_PATHS = paths(SAMPLE)
tiktok_values = json_values | st.sampled_from(["TH", "THB", "CANCEL", "IN_TRANSIT", "299.00", "quantity", ""])
mutations = st.tuples(
    st.sampled_from(SAMPLE_PATHS), st.one_of(st.just(("delete",)), tiktok_values.map(lambda v: ("set", v)))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutations, min_size=1, max_size=4))
def test_mutated_sample_gives_events_or_a_rejection_never_another_exception(changes: list[Any]) -> None:
    body = _body()
    for path, op in changes:
        mutate(body, path, op)
    try:
        events = tiktok.normalize(_raw(), body, TENANT)
    except Rejected as refusal:
        assert refusal.code in CODES | {"channel_error"}
        assert refusal.reason
    else:
        assert events
        assert all(isinstance(event, OrderEvent) for event in events)


WEBHOOK_PATHS = paths(WEBHOOK)
webhook_values = json_values | st.sampled_from(["CANCEL", "IN_TRANSIT", "578123456789012345", 1, 2, 1789529468, ""])
webhook_mutations = st.tuples(
    st.sampled_from(WEBHOOK_PATHS), st.one_of(st.just(("delete",)), webhook_values.map(lambda v: ("set", v)))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(webhook_mutations, min_size=1, max_size=4))
def test_mutated_webhook_gives_one_encodable_update_or_a_rejection_never_another_exception(changes: list[Any]) -> None:
    body = _webhook()
    for path, op in changes:
        mutate(body, path, op)
    try:
        changes_out = tiktok.normalize(_webhook_raw(body), body, TENANT)
    except Rejected as refusal:
        assert refusal.code in CODES | {"channel_error"}
        assert refusal.reason
    else:
        [update] = changes_out
        assert isinstance(update, OrderStatusUpdate)
        assert update.line_id is None
        assert decode_change(update.encode()) == update
