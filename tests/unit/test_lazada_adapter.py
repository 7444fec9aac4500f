"""Lazada lazada.order.v1 envelope (GetOrder + GetOrderItems) -> canonical OrderEvent, and unit status pushes ->
OrderStatusUpdate of that unit, or Rejected naming the field."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.order import (
    Market,
    OrderChange,
    OrderEvent,
    OrderStatus,
    OrderStatusUpdate,
    PaymentMethod,
    contact_key,
    decode_change,
)
from streams.adapters import lazada
from streams.adapters.base import RawInput, Rejected, parse_json
from streams.lifecycle import OrderState, apply
from tests.unit.payload_mutations import json_values, mutate, paths

TENANT = "t1"
INGEST_MS = 1_789_540_000_000
SAMPLE_BYTES = resources.files("connectors").joinpath("samples", "lazada_order.json").read_bytes()
SAMPLE: dict[str, Any] = json.loads(SAMPLE_BYTES)
CODES = {"unknown_shape", "unsupported_shape", "invalid_field", "invalid_money", "missing_sku", "unknown_status"}


def _body() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def _order(body: dict[str, Any]) -> dict[str, Any]:
    return body["order"]["data"]


def _units(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["items"]["data"]


def _raw(**changes: Any) -> RawInput:
    fields: dict[str, Any] = {
        "channel": "lazada",
        "value": SAMPLE_BYTES,
        "topic": "raw.orders.lazada",
        "partition": 1,
        "offset": 7,
        "ingest_ms": INGEST_MS,
        "headers": {"shop": b"MY1A2B3C", "market": b"MY"},
    }
    fields.update(changes)
    return RawInput(**fields)


def _one(body: Any = None, **changes: Any) -> OrderEvent:
    events = lazada.normalize(_raw(**changes), _body() if body is None else body, TENANT)
    assert len(events) == 1
    assert isinstance(events[0], OrderEvent)
    return events[0]


def _refused(body: Any, **changes: Any) -> Rejected:
    with pytest.raises(Rejected) as info:
        lazada.normalize(_raw(**changes), body, TENANT)
    return info.value


def _set_all_statuses(body: dict[str, Any], status: str) -> None:
    for unit in _units(body):
        unit["status"] = status


# --- the sample ------------------------------------------------------------------------------------------


def test_sample_bytes_become_one_event_with_order_identity_market_and_shop() -> None:
    [event] = lazada.normalize(_raw(), parse_json(SAMPLE_BYTES), TENANT)
    assert isinstance(event, OrderEvent)
    assert event.channel == "lazada"
    assert event.channel_order_id == "600123456789012"
    assert event.order_key == "t1:lazada:600123456789012"
    assert (event.market, event.currency) == (Market.MY, "MYR")
    assert event.shop_id == "MY1A2B3C"
    assert event.ingest_time_ms == INGEST_MS
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.lazada", 1, 7)


def test_sample_total_is_what_the_buyer_pays_price_less_voucher_plus_shipping() -> None:
    assert _one().total_minor == 12480 - 2000 + 490


def test_sample_status_is_the_least_advanced_unit_status_and_channel_status_lists_them() -> None:
    event = _one()
    assert event.status is OrderStatus.PAID  # units packed, packed, pending: pending is the slowest
    assert event.channel_status == "packed,pending"


def test_sample_times_are_utc_epoch_ms_from_the_offset_in_the_text() -> None:
    event = _one()
    assert event.created_ms == 1_789_524_000_000  # 2026-09-16 10:00:00 +0800 = 02:00:00Z
    assert event.event_time_ms == 1_789_539_605_000  # updated_at
    assert event.ship_by_ms is None


def test_sample_two_units_of_one_sku_fold_into_one_line_of_quantity_two() -> None:
    tee, cap = _one().lines
    assert (tee.sku, tee.quantity, tee.unit_price_minor, tee.paid_price_minor) == ("TEE-CREW-BLK-M", 2, 4990, 3990)
    assert tee.line_id == "600123456889012+600123456889013"
    assert (cap.sku, cap.quantity, cap.unit_price_minor, cap.paid_price_minor) == ("CAP-BASEBALL-NVY", 1, 2500, 2500)
    assert cap.line_id == "600123456889014"


def test_sample_payment_and_address_are_mapped() -> None:
    event = _one()
    assert event.payment_method is PaymentMethod.CARD  # MIXEDCARD
    assert event.is_cod is False
    assert event.shipping.model_dump() == {
        "country": Market.MY,
        "region": "Kuala Lumpur",
        "city": "Kuala Lumpur",
        "postcode": "55100",
        "phone_key": contact_key("phone", "60123456789"),
        "address_key": contact_key("address", _sample_address_line()),
    }
    assert event.shipping.phone_key is not None and event.shipping.address_key is not None


def _sample_address_line() -> str:
    line: str = SAMPLE["order"]["data"]["address_shipping"]["address1"]
    return line


def test_sample_event_encodes_to_avro_and_back() -> None:
    event = _one()
    assert OrderEvent.decode(event.encode()) == event


# --- units and lines -------------------------------------------------------------------------------------


def test_line_ids_do_not_depend_on_the_order_units_come_in() -> None:
    body = _body()
    _units(body).reverse()
    assert {line.line_id for line in _one(body).lines} == {line.line_id for line in _one().lines}


def test_units_of_one_sku_at_different_paid_prices_stay_separate_lines() -> None:
    body = _body()
    _units(body)[1]["paid_price"] = 44.90
    lines = [(line.sku, line.quantity, line.paid_price_minor) for line in _one(body).lines]
    assert lines == [("TEE-CREW-BLK-M", 1, 3990), ("TEE-CREW-BLK-M", 1, 4490), ("CAP-BASEBALL-NVY", 1, 2500)]


def test_money_as_strings_or_floats_gives_the_same_event() -> None:
    body = _body()
    order = _order(body)
    order["price"], order["voucher"], order["shipping_fee"] = 124.8, "20.00", "4.90"
    for unit in _units(body):
        for name in ("item_price", "paid_price", "voucher_amount"):
            unit[name] = str(unit[name]) if isinstance(unit[name], float) else float(unit[name])
    assert _one(body) == _one()


def test_missing_paid_price_is_item_price_less_voucher_amount() -> None:
    body = _body()
    for unit in _units(body):
        del unit["paid_price"]
    tee = _one(body).lines[0]
    assert (tee.quantity, tee.paid_price_minor) == (2, 3990)


def test_missing_voucher_and_shipping_fee_count_as_zero() -> None:
    body = _body()
    del _order(body)["voucher"], _order(body)["shipping_fee"]
    assert _one(body).total_minor == 12480


def test_a_canceled_unit_leaves_the_lines_and_does_not_hold_back_the_status() -> None:
    body = _body()
    _units(body)[2]["status"] = "canceled"  # the cap; both tees are packed
    event = _one(body)
    assert event.status is OrderStatus.PROCESSING
    assert event.channel_status == "canceled,packed"
    assert [(line.sku, line.quantity) for line in event.lines] == [("TEE-CREW-BLK-M", 2)]


def test_all_units_canceled_is_a_cancelled_order_that_keeps_every_line() -> None:
    body = _body()
    _set_all_statuses(body, "canceled")
    event = _one(body)
    assert event.status is OrderStatus.CANCELLED
    assert event.channel_status == "canceled"
    assert sum(line.quantity for line in event.lines) == 3


def test_a_returned_unit_beside_a_delivered_one_leaves_the_order_delivered() -> None:
    body = _body()
    _set_all_statuses(body, "delivered")
    _units(body)[0]["status"] = "returned"
    assert _one(body).status is OrderStatus.DELIVERED


@pytest.mark.parametrize(
    ("item_status", "canonical"),
    [
        ("unpaid", OrderStatus.PENDING_PAYMENT),
        ("pending", OrderStatus.PAID),
        ("packed", OrderStatus.PROCESSING),
        ("repacked", OrderStatus.PROCESSING),
        ("ready_to_ship", OrderStatus.PROCESSING),
        ("shipped", OrderStatus.SHIPPED),
        ("delivered", OrderStatus.DELIVERED),
        ("failed_delivery", OrderStatus.SHIPPED),
        ("canceled", OrderStatus.CANCELLED),
        ("returned", OrderStatus.RETURNED),
        ("lost_by_3pl", OrderStatus.SHIPPED),
    ],
)
def test_every_documented_item_status_maps_to_a_canonical_status(item_status: str, canonical: OrderStatus) -> None:
    body = _body()
    _set_all_statuses(body, item_status)
    event = _one(body)
    assert (event.status, event.channel_status) == (canonical, item_status)


# --- market, address, payment ----------------------------------------------------------------------------


@pytest.mark.parametrize(("country", "market"), [("Malaysia", Market.MY), ("MY", Market.MY), ("thailand", Market.TH)])
def test_shipping_country_name_or_code_decides_the_market(country: str, market: Market) -> None:
    body = _body()
    _order(body)["address_shipping"]["country"] = country
    for unit in _units(body):
        unit["currency"] = "THB" if market is Market.TH else "MYR"
    assert _one(body).market is market


def test_market_comes_from_the_market_header_when_the_country_is_missing() -> None:
    body = _body()
    del _order(body)["address_shipping"]["country"]
    assert _one(body, headers={"market": b"MY"}).market is Market.MY


def test_market_comes_from_the_units_currency_without_country_or_header() -> None:
    body = _body()
    _order(body)["address_shipping"]["country"] = ""
    assert _one(body, headers={}).market is Market.MY


def test_empty_post_code_falls_back_to_address5_and_both_empty_is_none() -> None:
    body = _body()
    _order(body)["address_shipping"]["post_code"] = ""
    assert _one(body).shipping.postcode == "55100"
    _order(body)["address_shipping"]["address5"] = ""
    assert _one(body).shipping.postcode is None


def test_missing_shipping_address_keeps_the_market_from_the_header() -> None:
    body = _body()
    del _order(body)["address_shipping"]
    shipping = _one(body).shipping
    assert (shipping.country, shipping.region, shipping.city, shipping.postcode) == (Market.MY, None, None, None)


def test_shop_id_comes_from_the_units_without_a_shop_header() -> None:
    assert _one(headers={"market": b"MY"}).shop_id == "Bintang Apparel"


@pytest.mark.parametrize(
    ("code", "method"),
    [
        ("COD", PaymentMethod.COD),
        ("MIXEDCARD", PaymentMethod.CARD),
        ("BCA_DEBITCARD", PaymentMethod.CARD),
        ("MAYBANK_IPP", PaymentMethod.CARD),
        ("WALLET_OVO", PaymentMethod.EWALLET),
        ("GN_TNG_EBANK", PaymentMethod.EWALLET),
        ("PAYPAL", PaymentMethod.EWALLET),
        ("PAY_LATER", PaymentMethod.BNPL),
        ("AKULAKU_IPP", PaymentMethod.BNPL),
        ("BNI_VA", PaymentMethod.BANK_TRANSFER),
        ("MOLPAY_MAYBANK_ONLINE", PaymentMethod.BANK_TRANSFER),
        ("SEVENELEVEN_OTC", PaymentMethod.OTHER),
        ("", PaymentMethod.OTHER),
    ],
)
def test_payment_method_code_maps_to_a_canonical_method(code: str, method: PaymentMethod) -> None:
    body = _body()
    _order(body)["payment_method"] = code
    event = _one(body)
    assert event.payment_method is method
    assert event.is_cod is (method is PaymentMethod.COD)


# --- refusals --------------------------------------------------------------------------------------------


def test_unknown_unit_status_is_refused_as_unknown_status_naming_the_unit() -> None:
    body = _body()
    _units(body)[1]["status"] = "teleported"
    refusal = _refused(body)
    assert refusal.code == "unknown_status"
    assert "items.data[1].status" in refusal.reason
    assert "teleported" in refusal.reason


def test_cancelled_with_two_ls_is_not_a_lazada_status() -> None:
    body = _body()
    _set_all_statuses(body, "cancelled")
    assert _refused(body).code == "unknown_status"


@pytest.mark.parametrize("sku", ["", None])
def test_unit_without_sku_is_refused_as_missing_sku(sku: str | None) -> None:
    body = _body()
    _units(body)[2]["sku"] = sku
    refusal = _refused(body)
    assert (refusal.code, "items.data[2]" in refusal.reason) == ("missing_sku", True)


def test_unit_currency_not_of_the_market_is_refused_as_invalid_field() -> None:
    body = _body()
    _units(body)[0]["currency"] = "SGD"
    refusal = _refused(body)
    assert refusal.code == "invalid_field"
    assert "items.data[0].currency" in refusal.reason


def test_country_that_is_no_market_is_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["address_shipping"]["country"] = "Japan"
    refusal = _refused(body)
    assert (refusal.code, "order.data.address_shipping.country" in refusal.reason) == ("invalid_field", True)


def test_no_country_no_header_and_no_currency_is_refused_as_invalid_field() -> None:
    body = _body()
    del _order(body)["address_shipping"]["country"]
    for unit in _units(body):
        del unit["currency"]
    assert _refused(body, headers={}).code == "invalid_field"


@pytest.mark.parametrize(
    "created_at",
    ["16/09/2026 10:00", "2026-09-16 10:00:00", "2026-13-45 10:00:00 +0800", "1969-12-31 23:00:00 +0000", ""],
)
def test_created_at_that_is_not_a_time_with_an_offset_is_refused_as_invalid_field(created_at: str) -> None:
    body = _body()
    _order(body)["created_at"] = created_at
    refusal = _refused(body)
    assert (refusal.code, "order.data.created_at" in refusal.reason) == ("invalid_field", True)


def test_price_with_three_decimals_is_refused_as_invalid_money() -> None:
    body = _body()
    _units(body)[0]["item_price"] = "49.905"
    refusal = _refused(body)
    assert (refusal.code, "items.data[0].item_price" in refusal.reason) == ("invalid_money", True)


def test_voucher_above_the_price_gives_a_negative_total_refused_as_invalid_field() -> None:
    body = _body()
    _order(body)["voucher"] = 500
    refusal = _refused(body)
    assert (refusal.code, "total_minor" in refusal.reason) == ("invalid_field", True)


def test_units_of_another_order_are_refused_as_invalid_field() -> None:
    body = _body()
    _units(body)[1]["order_id"] = 999
    refusal = _refused(body)
    assert (refusal.code, "items.data[1].order_id" in refusal.reason) == ("invalid_field", True)


def test_empty_order_items_are_refused_as_invalid_field() -> None:
    body = _body()
    body["items"]["data"] = []
    assert _refused(body).code == "invalid_field"


@pytest.mark.parametrize("answer", ["order", "items"])
def test_lazada_error_code_in_either_response_is_refused_as_channel_error(answer: str) -> None:
    body = _body()
    body[answer] = {"type": "ISV", "code": "IllegalAccessToken", "message": "expired", "request_id": "r"}
    refusal = _refused(body)
    assert refusal.code == "channel_error"
    assert f"{answer}.code" in refusal.reason
    assert "IllegalAccessToken" in refusal.reason


def test_bare_getorder_response_without_the_envelope_is_refused_as_unknown_shape() -> None:
    assert _refused(_body()["order"]).code == "unknown_shape"


def test_other_envelope_version_is_refused_as_unsupported_shape() -> None:
    body = _body()
    body["envelope"] = "lazada.order.v2"
    assert _refused(body).code == "unsupported_shape"


def test_amount_with_a_huge_exponent_is_refused_as_invalid_money() -> None:
    body = _body()
    _order(body)["price"] = "1e999999"
    assert _refused(body).code == "invalid_money"


# --- stable ids ------------------------------------------------------------------------------------------


def test_event_id_is_the_same_for_the_same_input_whatever_its_position() -> None:
    assert _one().event_id == _one(offset=99, partition=0, ingest_ms=INGEST_MS + 1).event_id


def test_event_id_differs_when_a_unit_status_changes() -> None:
    body = _body()
    _units(body)[2]["status"] = "packed"
    assert _one(body).event_id != _one().event_id


# --- unit status pushes ----------------------------------------------------------------------------------

PUSH: dict[str, Any] = {
    "seller_id": "1000123456",
    "message_type": 0,
    "data": {
        "order_status": "shipped",
        "trade_order_id": "600123456789012",
        "trade_order_line_id": "600123456889012",
        "status_update_time": 1789539605,
    },
    "timestamp": 1789539605123,
    "site": "lazada_my",
}


def _push(**data: Any) -> dict[str, Any]:
    body = copy.deepcopy(PUSH)
    body["data"].update(data)
    return body


def _push_raw(body: dict[str, Any], **changes: Any) -> RawInput:
    return _raw(value=json.dumps(body).encode(), **changes)


def _update(body: dict[str, Any], **changes: Any) -> OrderStatusUpdate:
    [update] = lazada.normalize(_push_raw(body, **changes), body, TENANT)
    assert isinstance(update, OrderStatusUpdate)
    return update


def test_unit_status_push_becomes_an_update_of_that_unit_keeping_the_push_bytes() -> None:
    raw = _push_raw(PUSH)
    [update] = lazada.normalize(raw, parse_json(raw.value), TENANT)
    assert isinstance(update, OrderStatusUpdate)
    assert (update.tenant, update.channel, update.channel_order_id) == (TENANT, "lazada", "600123456789012")
    assert update.order_key == "t1:lazada:600123456789012" == _one().order_key
    assert update.line_id == "600123456889012"
    assert (update.status, update.channel_status) == (OrderStatus.SHIPPED, "shipped")
    assert update.event_time_ms == 1_789_539_605_000  # status_update_time is in seconds
    assert (update.shop_id, update.ingest_time_ms) == ("MY1A2B3C", INGEST_MS)
    assert (update.raw.topic, update.raw.partition, update.raw.offset) == ("raw.orders.lazada", 1, 7)
    assert update.original == raw.value
    assert decode_change(update.encode()) == update


def test_push_line_id_is_one_of_the_unit_ids_folded_into_the_order_line_id() -> None:
    units = {unit for line in _one().lines for unit in line.line_id.split("+")}
    assert "600123456889013" in units
    for line_id in (600123456889013, "600123456889013", " 600123456889013 "):  # number or string, as SDKs send
        assert _update(_push(trade_order_line_id=line_id)).line_id == "600123456889013"
    assert _update(_push(trade_order_id=600123456789012)).order_key == _one().order_key


@pytest.mark.parametrize("missing", [None, "", 0])
def test_without_status_update_time_the_push_timestamp_in_milliseconds_is_the_event_time(missing: Any) -> None:
    assert _update(_push(status_update_time=missing)).event_time_ms == 1_789_539_605_123
    body = _push()
    del body["data"]["status_update_time"]
    assert _update(body).event_time_ms == 1_789_539_605_123


def test_push_shop_id_is_the_seller_id_without_a_shop_header() -> None:
    assert _update(PUSH, headers={"market": b"MY"}).shop_id == "1000123456"
    body = copy.deepcopy(PUSH)
    del body["seller_id"]
    assert _update(body, headers={}).shop_id == ""


@pytest.mark.parametrize(("item_status", "canonical"), sorted(lazada.STATUS.items()))
def test_every_item_status_in_a_push_maps_like_in_an_order(item_status: str, canonical: OrderStatus) -> None:
    update = _update(_push(order_status=item_status))
    assert (update.status, update.channel_status) == (canonical, item_status)


@pytest.mark.parametrize("status", ["teleported", "cancelled", "SHIPPED"])
def test_push_with_an_unknown_status_is_refused_as_unknown_status_naming_the_field(status: str) -> None:
    refusal = _refused(_push(order_status=status))
    assert refusal.code == "unknown_status"
    assert "data.order_status" in refusal.reason and status in refusal.reason


@pytest.mark.parametrize("message_type", [1, 3, "10"])
def test_push_of_another_message_type_is_refused_as_unsupported_shape(message_type: Any) -> None:
    body = _push()
    body["message_type"] = message_type
    refusal = _refused(body)
    assert refusal.code == "unsupported_shape"
    assert "message_type" in refusal.reason and str(message_type) in refusal.reason


@pytest.mark.parametrize("field", ["trade_order_id", "trade_order_line_id", "order_status"])
@pytest.mark.parametrize("value", ["delete", None, "", {"id": 1}])
def test_push_without_an_id_or_status_is_refused_as_invalid_field_naming_the_path(field: str, value: Any) -> None:
    body = _push()
    if value == "delete":
        del body["data"][field]
    else:
        body["data"][field] = value
    refusal = _refused(body)
    assert (refusal.code, f"data.{field}" in refusal.reason) == ("invalid_field", True)


def test_push_without_data_is_refused_as_invalid_field_naming_data() -> None:
    body = copy.deepcopy(PUSH)
    del body["data"]
    refusal = _refused(body)
    assert (refusal.code, refusal.reason.startswith("data:")) == ("invalid_field", True)


@pytest.mark.parametrize(
    ("data", "timestamp", "path"),
    [
        ({"status_update_time": -5}, 1789539605123, "data.status_update_time"),
        ({"status_update_time": "soon"}, 1789539605123, "data.status_update_time"),
        ({"status_update_time": 2**62}, 1789539605123, "data.status_update_time"),
        ({"status_update_time": None}, None, "timestamp"),
        ({"status_update_time": None}, "1.5.2026", "timestamp"),
    ],
)
def test_push_without_a_readable_time_is_refused_as_invalid_field_naming_the_path(
    data: dict[str, Any], timestamp: Any, path: str
) -> None:
    body = _push(**data)
    body["timestamp"] = timestamp
    refusal = _refused(body)
    assert refusal.code == "invalid_field"
    assert refusal.reason.startswith(f"{path}:")


def test_push_event_id_is_stable_on_replay_and_differs_per_unit_status_and_time() -> None:
    update = _update(PUSH)
    assert _update(PUSH, offset=99, partition=0, ingest_ms=INGEST_MS + 1).event_id == update.event_id
    other_unit = _update(_push(trade_order_line_id="600123456889013"))
    assert other_unit.event_time_ms == update.event_time_ms
    assert other_unit.event_id != update.event_id, "two units' pushes in the same second are two updates"
    assert _update(_push(order_status="delivered")).event_id != update.event_id
    assert _update(_push(status_update_time=1789539606)).event_id != update.event_id


def _two_tees() -> OrderEvent:
    """The sample without the cap: one line of two units of one SKU, both packed."""
    body = _body()
    del _units(body)[2]
    order = _one(body)
    assert [(line.line_id, line.quantity) for line in order.lines] == [("600123456889012+600123456889013", 2)]
    return order


def _run(changes: list[OrderChange]) -> tuple[OrderState, list[OrderEvent]]:
    """Through streams.lifecycle, storing and reloading the state each step as the faust table does."""
    state, emitted = OrderState(), list[OrderEvent]()
    for change in changes:
        step = apply(OrderState.from_bytes(state.to_bytes()), change)
        state = step.state
        emitted.extend(step.emit)
    return state, emitted


def test_one_shipped_unit_of_two_keeps_the_order_processing_and_the_second_ships_it() -> None:
    order = _two_tees()
    assert order.status is OrderStatus.PROCESSING
    first = _update(_push(trade_order_line_id="600123456889012", status_update_time=1789540000))
    second = _update(_push(trade_order_line_id="600123456889013", status_update_time=1789540000), offset=8)

    state, emitted = _run([order, first])
    assert [e.status for e in emitted] == [OrderStatus.PROCESSING], "one unit of two shipped: not shipped yet"
    assert state.line_status == {"600123456889012": OrderStatus.SHIPPED}

    state, emitted = _run([order, first, second])
    assert [e.status for e in emitted] == [OrderStatus.PROCESSING, OrderStatus.SHIPPED]
    shipped = emitted[-1]
    assert (shipped.channel_status, shipped.event_id, shipped.event_time_ms) == (
        "shipped",
        second.event_id,
        1_789_540_000_000,
    )
    assert shipped.lines == order.lines, "a push moves the status and keeps the order's lines and money"
    assert state.line_status == {"600123456889012": OrderStatus.SHIPPED, "600123456889013": OrderStatus.SHIPPED}


def test_unit_pushes_that_arrive_before_the_order_wait_and_then_ship_it() -> None:
    order = _two_tees()
    first = _update(_push(trade_order_line_id="600123456889012", status_update_time=1789540000))
    second = _update(_push(trade_order_line_id="600123456889013", status_update_time=1789540000), offset=8)
    _, emitted = _run([first, second, first, order])
    assert [e.status for e in emitted] == [OrderStatus.PROCESSING, OrderStatus.SHIPPED]


def test_a_canceled_unit_push_and_a_shipped_one_ship_the_order() -> None:
    order = _two_tees()
    canceled = _update(_push(trade_order_line_id="600123456889012", order_status="canceled"))
    shipped = _update(_push(trade_order_line_id="600123456889013", status_update_time=1789540000))
    _, emitted = _run([order, canceled, shipped])
    assert [e.status for e in emitted] == [OrderStatus.PROCESSING, OrderStatus.SHIPPED]


# --- property --------------------------------------------------------------------------------------------

SAMPLE_PATHS = paths(SAMPLE)
lazada_values = json_values | st.sampled_from(["MY", "MYR", "Malaysia", "pending", "canceled", "0", "49.90", ""])
mutations = st.tuples(
    st.sampled_from(SAMPLE_PATHS), st.one_of(st.just(("delete",)), lazada_values.map(lambda v: ("set", v)))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutations, min_size=1, max_size=4))
def test_mutated_sample_gives_events_or_a_rejection_never_another_exception(changes: list[Any]) -> None:
    body = _body()
    for path, op in changes:
        mutate(body, path, op)
    try:
        events = lazada.normalize(_raw(), body, TENANT)
    except Rejected as refusal:
        assert refusal.code in CODES | {"channel_error"}
        assert refusal.reason
    else:
        assert len(events) == 1
        assert isinstance(events[0], OrderEvent)


PUSH_PATHS = paths(PUSH)
push_values = json_values | st.sampled_from(["shipped", "canceled", "600123456889012", "0", 0, 1789539605, ""])
push_mutations = st.tuples(
    st.sampled_from(PUSH_PATHS), st.one_of(st.just(("delete",)), push_values.map(lambda v: ("set", v)))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(push_mutations, min_size=1, max_size=4))
def test_mutated_push_gives_one_encodable_update_or_a_rejection_never_another_exception(changes: list[Any]) -> None:
    body = _push()
    for path, op in changes:
        mutate(body, path, op)
    try:
        changes_out = lazada.normalize(_push_raw(body), body, TENANT)
    except Rejected as refusal:
        assert refusal.code in CODES
        assert refusal.reason
    else:
        [update] = changes_out
        assert isinstance(update, OrderStatusUpdate)
        assert update.line_id
        assert decode_change(update.encode()) == update
