"""Grab partner Submit Order webhooks -> canonical OrderEvent, order state pushes -> OrderStatusUpdate
(streams.adapters.grab)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.order import Market, OrderEvent, OrderStatus, OrderStatusUpdate, PaymentMethod, decode_change
from streams.adapters import grab
from streams.adapters.base import RawInput, Rejected
from tests.unit.payload_mutations import json_values, mutate, paths

TENANT = "t1"
INGEST_MS = 1_795_824_070_000
SAMPLE_BYTES = resources.files("connectors").joinpath("samples", "grab_order.json").read_bytes()
SAMPLE: dict[str, Any] = json.loads(SAMPLE_BYTES)


def _body() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def _raw(value: Any, **changes: Any) -> RawInput:
    fields: dict[str, Any] = {
        "channel": "grab",
        "value": value if isinstance(value, bytes) else json.dumps(value).encode(),
        "topic": "raw.orders.grab",
        "partition": 2,
        "offset": 11,
        "ingest_ms": INGEST_MS,
        "headers": {},
    }
    fields.update(changes)
    return RawInput(**fields)


def _one_event(body: Any, **changes: Any) -> OrderEvent:
    events = grab.normalize(_raw(body, **changes), body, TENANT)
    assert len(events) == 1
    assert isinstance(events[0], OrderEvent)
    return events[0]


def _refusal(body: Any, **changes: Any) -> Rejected:
    with pytest.raises(Rejected) as caught:
        grab.normalize(_raw(body, **changes), body, TENANT)
    return caught.value


def _idr(exponent: int, *, item_price: int, quantity: int = 2) -> dict[str, Any]:
    """The sample as an Indonesian order: one item line, money at the given exponent, no price block."""
    body = _body()
    body["currency"] = {"code": "IDR", "symbol": "Rp", "exponent": exponent}
    body["items"] = [{"id": "NASGOR", "grabItemID": "IDITE1", "quantity": quantity, "price": item_price}]
    del body["price"]
    return body


# --- the sample ------------------------------------------------------------------------------------------


def test_sample_becomes_one_event_with_order_identity_and_what_the_eater_paid() -> None:
    event = _one_event(SAMPLE)
    assert (event.tenant, event.channel, event.channel_order_id) == (TENANT, "grab", "123-CYNKLPCVRN5L")
    assert event.order_key == "t1:grab:123-CYNKLPCVRN5L"
    assert (event.market, event.currency, event.total_minor) == (Market.SG, "SGD", 2800)  # eaterPayment
    assert event.shop_id == "1-CYTUMBDLAEAUN2"  # merchantID, as no shop header came
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.grab", 2, 11)
    assert event.ingest_time_ms == INGEST_MS


def test_sample_is_a_paid_submitted_order_with_its_times_in_utc_ms() -> None:
    event = _one_event(SAMPLE)
    assert (event.status, event.channel_status) == (OrderStatus.PAID, "SUBMITTED")
    assert (event.payment_method, event.is_cod) == (PaymentMethod.OTHER, False)
    assert event.created_ms == 1_795_773_600_000  # orderTime 2026-11-27T10:00:00Z
    assert event.event_time_ms == 1_795_773_604_000  # submitTime
    assert event.ship_by_ms == 1_795_775_400_000  # orderReadyEstimation.maxOrderReadyTime


def test_sample_lines_take_the_partner_item_id_as_sku_and_grab_item_id_as_line_id() -> None:
    laksa, kopi = _one_event(SAMPLE).lines
    assert (laksa.line_id, laksa.sku, laksa.quantity, laksa.unit_price_minor) == (
        "SGITE2024112700001#1",
        "LAKSA-REG",
        1,
        1250,
    )
    assert (kopi.line_id, kopi.sku, kopi.quantity, kopi.unit_price_minor) == (
        "SGITE2024112700002",
        "KOPI-C-ICED",
        2,
        625,
    )
    assert laksa.paid_price_minor == laksa.unit_price_minor  # promos are basket-level on Grab


def test_sample_delivery_address_keeps_the_postcode_only() -> None:
    shipping = _one_event(SAMPLE).shipping
    assert (shipping.country, shipping.postcode, shipping.city, shipping.region) == (Market.SG, "238859", None, None)


def test_sample_event_encodes_to_avro_and_back() -> None:
    event = _one_event(SAMPLE)
    assert OrderEvent.decode(event.encode()) == event


def test_shop_header_wins_over_merchant_id() -> None:
    assert _one_event(SAMPLE, headers={"shop": b"grab-sg-1"}).shop_id == "grab-sg-1"


# --- payment type and status -----------------------------------------------------------------------------


def test_cash_order_is_cod_and_paid_so_fulfilment_starts() -> None:
    body = _body()
    body["paymentType"] = "CASH"
    event = _one_event(body)
    assert (event.payment_method, event.is_cod, event.status) == (PaymentMethod.COD, True, OrderStatus.PAID)


def test_unknown_payment_type_is_refused_as_unknown_status() -> None:
    body = _body()
    body["paymentType"] = "VOUCHER"
    refusal = _refusal(body)
    assert refusal.code == "unknown_status"
    assert "paymentType" in refusal.reason and "VOUCHER" in refusal.reason


def test_edited_resubmission_gets_its_own_channel_status_and_event_id() -> None:
    body = _body()
    body["featureFlags"]["isMexEditOrder"] = True
    edited = _one_event(body)
    assert edited.channel_status == "SUBMITTED/EDITED"
    assert edited.event_id != _one_event(SAMPLE).event_id


# --- order state pushes ----------------------------------------------------------------------------------

PUSH: dict[str, Any] = {
    "orderID": "123-CYNKLPCVRN5L",
    "merchantID": "1-CYTUMBDLAEAUN2",
    "partnerMerchantID": "store-sg-orchard",
    "state": "COLLECTED",
    "driverETA": 300,
    "code": "",
    "message": "",
}


def _push(**fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(PUSH), **fields}


def _update(body: dict[str, Any], **changes: Any) -> OrderStatusUpdate:
    [update] = grab.normalize(_raw(body, **changes), body, TENANT)
    assert isinstance(update, OrderStatusUpdate)
    return update


def test_state_push_becomes_an_order_level_update_of_the_submitted_order_keeping_the_push_bytes() -> None:
    raw = _raw(PUSH)
    [update] = grab.normalize(raw, PUSH, TENANT)
    assert isinstance(update, OrderStatusUpdate)
    assert (update.tenant, update.channel, update.channel_order_id) == (TENANT, "grab", "123-CYNKLPCVRN5L")
    assert update.order_key == _one_event(SAMPLE).order_key
    assert (update.status, update.channel_status, update.line_id) == (OrderStatus.SHIPPED, "COLLECTED", None)
    assert update.event_time_ms == update.ingest_time_ms == INGEST_MS  # no time in the push: when it came
    assert update.shop_id == "1-CYTUMBDLAEAUN2"  # merchantID, as no shop header came
    assert (update.raw.topic, update.raw.partition, update.raw.offset) == ("raw.orders.grab", 2, 11)
    assert update.original == raw.value
    assert decode_change(update.encode()) == update


@pytest.mark.parametrize(
    ("state", "canonical"),
    [
        ("DRIVER_ALLOCATED", OrderStatus.PROCESSING),
        ("DRIVER_ARRIVED", OrderStatus.PROCESSING),
        ("COLLECTED", OrderStatus.SHIPPED),
        ("DELIVERED", OrderStatus.DELIVERED),
        ("CANCELLED", OrderStatus.CANCELLED),
        ("FAILED", OrderStatus.CANCELLED),  # will not reach the eater: closed like a cancellation
    ],
)
def test_every_order_state_maps_to_a_canonical_status(state: str, canonical: OrderStatus) -> None:
    update = _update(_push(state=state))
    assert (update.status, update.channel_status) == (canonical, state)


def test_shop_header_wins_over_merchant_id_in_a_state_push() -> None:
    assert _update(PUSH, headers={"shop": b"grab-sg-1"}).shop_id == "grab-sg-1"
    body = _push()
    del body["merchantID"]
    assert _update(body).shop_id == ""


@pytest.mark.parametrize(
    ("field", "value", "expected_ms"),
    [
        ("updatedAt", "2026-11-27T10:25:00Z", 1_795_775_100_000),
        ("updatedAt", "2026-11-27T18:25:00+08:00", 1_795_775_100_000),
        ("updateTime", 1_795_775_100, 1_795_775_100_000),  # epoch seconds
        ("timestamp", 1_795_775_100_123, 1_795_775_100_123),  # epoch milliseconds
        ("eventTime", "1795775100", 1_795_775_100_000),  # a numeric string
    ],
)
def test_a_time_in_the_push_is_its_event_time_in_any_of_the_guessed_forms(
    field: str, value: Any, expected_ms: int
) -> None:
    update = _update(_push(**{field: value}))
    assert update.event_time_ms == expected_ms
    assert update.ingest_time_ms == INGEST_MS


@pytest.mark.parametrize("value", ["", "soon", "2026-11-27T10:25:00", -5, 0, True, 1.5, 2**63, {"s": 1}])
def test_an_unreadable_time_is_not_a_refusal_the_ingest_time_stands_in(value: Any) -> None:
    assert _update(_push(updatedAt=value)).event_time_ms == INGEST_MS


def test_the_first_readable_time_field_wins() -> None:
    body = _push(updatedAt="garbled", updateTime=1_795_775_100, timestamp=1_795_775_200)
    assert _update(body).event_time_ms == 1_795_775_100_000


def test_state_push_event_id_is_stable_for_the_same_push_and_differs_by_state_and_time() -> None:
    timed = _push(updatedAt="2026-11-27T10:25:00Z")
    update = _update(timed)
    assert _update(timed, offset=12, ingest_ms=INGEST_MS + 5_000).event_id == update.event_id
    assert _update(PUSH).event_id == _update(PUSH, offset=12).event_id, "a replay keeps its ingest time"
    assert _update({**timed, "state": "DELIVERED"}).event_id != update.event_id
    assert _update({**timed, "updatedAt": "2026-11-27T10:26:00Z"}).event_id != update.event_id


@pytest.mark.parametrize("state", ["PICKED_UP", "collected", "ACCEPTED"])
def test_unknown_order_state_is_refused_as_unknown_status_naming_state(state: str) -> None:
    refusal = _refusal(_push(state=state))
    assert refusal.code == "unknown_status"
    assert refusal.reason.startswith("state:") and state in refusal.reason


@pytest.mark.parametrize("value", ["delete", None, "", "  ", ["123"]])
def test_state_push_without_an_order_id_is_refused_as_invalid_field_naming_it(value: Any) -> None:
    body = _push()
    if value == "delete":
        del body["orderID"]
    else:
        body["orderID"] = value
    refusal = _refusal(body)
    assert (refusal.code, refusal.reason.startswith("orderID:")) == ("invalid_field", True)


@pytest.mark.parametrize("state", ["", "  ", ["COLLECTED"], {"name": "COLLECTED"}])
def test_state_that_is_not_a_name_is_refused_as_invalid_field_naming_it(state: Any) -> None:
    refusal = _refusal(_push(state=state))
    assert (refusal.code, refusal.reason.startswith("state:")) == ("invalid_field", True)


def test_submitted_body_with_an_order_state_is_refused_rather_than_read_as_a_new_order() -> None:
    body = _body()
    body["orderState"] = "CANCELLED"
    refusal = _refusal(body)
    assert (refusal.code, "orderState" in refusal.reason) == ("unsupported_shape", True)


def test_json_that_is_not_a_grab_order_is_refused_as_unknown_shape() -> None:
    assert _refusal({"order_sn": "X", "item_list": []}).code == "unknown_shape"


# --- money and exponents ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "exponent", "currency", "expected"),
    [
        (1250, 2, "SGD", 1250),
        (12, 0, "SGD", 1200),
        (1_500_000, 2, "IDR", 15_000),
        (15_000, 0, "IDR", 15_000),
        (1_500_050, 2, "IDR", None),
        (45_000, 0, "VND", 45_000),
        (12_500, 3, "SGD", 1250),
        (12_505, 3, "SGD", None),
        (-300, 2, "IDR", -3),
    ],
)
def test_rescale_converts_exactly_or_says_it_cannot(
    amount: int, exponent: int, currency: str, expected: int | None
) -> None:
    assert grab.rescale(amount, exponent, currency) == expected


def test_idr_prices_at_grab_exponent_2_are_divided_to_whole_rupiah() -> None:
    event = _one_event(_idr(2, item_price=1_500_000))
    assert (event.market, event.currency) == (Market.ID, "IDR")
    assert event.lines[0].unit_price_minor == 15_000
    assert event.total_minor == 30_000  # no price block: the items' sum


def test_idr_prices_at_exponent_0_are_taken_as_whole_rupiah() -> None:
    assert _one_event(_idr(0, item_price=15_000)).lines[0].unit_price_minor == 15_000


def test_idr_price_with_a_fraction_of_a_rupiah_is_refused_as_invalid_money_naming_the_item() -> None:
    refusal = _refusal(_idr(2, item_price=1_500_050))
    assert refusal.code == "invalid_money"
    assert "items[0].price" in refusal.reason and "1500050" in refusal.reason


def test_sgd_prices_at_exponent_0_are_scaled_up_to_cents() -> None:
    body = _body()
    body["currency"]["exponent"] = 0
    body["items"][0]["price"] = 12
    body["price"]["eaterPayment"] = 28
    event = _one_event(body)
    assert (event.lines[0].unit_price_minor, event.total_minor) == (1200, 2800)


@pytest.mark.parametrize("exponent", [None, -1, 7, 10**18, "two"])
def test_missing_or_absurd_exponent_is_refused_because_every_amount_would_be_a_guess(exponent: Any) -> None:
    body = _body()
    body["currency"]["exponent"] = exponent
    refusal = _refusal(body)
    assert refusal.code in {"invalid_money", "invalid_field"}
    assert "currency.exponent" in refusal.reason


def test_price_that_is_not_an_integer_is_refused_as_invalid_money() -> None:
    body = _body()
    body["items"][1]["price"] = 6.25
    refusal = _refusal(body)
    assert (refusal.code, "items[1].price" in refusal.reason) == ("invalid_money", True)


def test_total_without_eater_payment_is_subtotal_plus_merchant_fee_minus_merchant_promo() -> None:
    body = _body()
    body["price"].update(eaterPayment=0, deliveryFee=0, merchantChargeFee=50, merchantFundPromo=200)
    assert _one_event(body).total_minor == 2500 + 50 - 200


def test_total_without_a_price_block_is_the_items_sum() -> None:
    body = _body()
    body["price"] = None
    assert _one_event(body).total_minor == 1250 + 2 * 625


# --- market and currency ---------------------------------------------------------------------------------


def test_currency_not_of_the_market_header_is_refused_as_invalid_field() -> None:
    refusal = _refusal(SAMPLE, headers={"market": b"MY"})
    assert refusal.code == "invalid_field"
    assert refusal.reason.startswith("currency.code: SGD is not the currency of market MY")


def test_market_header_that_agrees_with_the_currency_is_accepted() -> None:
    assert _one_event(SAMPLE, headers={"market": b"SG"}).market is Market.SG


@pytest.mark.parametrize("code", ["KHR", "USD", "sgd"])
def test_currency_of_no_market_we_serve_is_refused_as_invalid_field(code: str) -> None:
    body = _body()
    body["currency"]["code"] = code
    refusal = _refusal(body)
    assert (refusal.code, "currency.code" in refusal.reason) == ("invalid_field", True)


# --- items, address, times -------------------------------------------------------------------------------


def test_quantity_with_thousands_of_digits_is_refused_as_invalid_field() -> None:
    body = _body()
    body["items"][0]["quantity"] = "1" * 5000
    refusal = _refusal(body)
    assert (refusal.code, "items[0].quantity" in refusal.reason) == ("invalid_field", True)


def test_item_without_partner_id_takes_the_grab_item_id_without_its_modifier_index_as_sku() -> None:
    body = _body()
    body["items"][0]["id"] = ""
    line = _one_event(body).lines[0]
    assert (line.sku, line.line_id) == ("SGITE2024112700001", "SGITE2024112700001#1")


@pytest.mark.parametrize("grab_item_id", ["", None, "#2"])
def test_item_without_any_id_is_refused_as_missing_sku_naming_the_item(grab_item_id: str | None) -> None:
    body = _body()
    body["items"][1]["id"] = ""
    body["items"][1]["grabItemID"] = grab_item_id
    refusal = _refusal(body)
    assert (refusal.code, "items[1]" in refusal.reason) == ("missing_sku", True)


@pytest.mark.parametrize("quantity", [-1, 0])
def test_non_positive_quantity_is_refused_as_invalid_field_naming_it(quantity: int) -> None:
    body = _body()
    body["items"][0]["quantity"] = quantity
    refusal = _refusal(body)
    assert (refusal.code, "items[0].quantity" in refusal.reason) == ("invalid_field", True)


def test_same_item_twice_gets_distinct_line_ids() -> None:
    body = _body()
    body["items"].append(copy.deepcopy(body["items"][1]))
    body["price"]["eaterPayment"] = 4050
    ids = [line.line_id for line in _one_event(body).lines]
    assert ids == ["SGITE2024112700001#1", "SGITE2024112700002", "SGITE2024112700002#2"]


def test_empty_postcode_becomes_none() -> None:
    body = _body()
    body["receiver"]["address"]["postcode"] = ""
    assert _one_event(body).shipping.postcode is None


def test_takeaway_order_without_receiver_has_an_address_with_only_the_country() -> None:
    body = _body()
    body["receiver"] = None
    body["featureFlags"]["orderType"] = "TAKE_AWAY"
    shipping = _one_event(body).shipping
    assert (shipping.country, shipping.postcode) == (Market.SG, None)


@pytest.mark.parametrize("value", ["27 Nov 2026 10:00", "2026-11-27T10:00:00", "", None])
def test_order_time_that_is_not_an_iso_time_with_offset_is_refused_naming_it(value: Any) -> None:
    body = _body()
    body["orderTime"] = value
    refusal = _refusal(body)
    assert (refusal.code, "orderTime" in refusal.reason) == ("invalid_field", True)


def test_missing_submit_time_uses_order_time_as_event_time() -> None:
    body = _body()
    body["submitTime"] = ""
    assert _one_event(body).event_time_ms == 1_795_773_600_000


def test_event_id_is_the_same_for_the_same_webhook_delivered_twice() -> None:
    assert _one_event(SAMPLE).event_id == _one_event(SAMPLE, offset=12, ingest_ms=INGEST_MS + 1).event_id


# --- property --------------------------------------------------------------------------------------------

SAMPLE_PATHS = paths(SAMPLE)
values = json_values | st.sampled_from(["CASH", "CASHLESS", "IDR", "VND", "2026-11-27T10:00:00Z", "#1", "DELIVERED"])


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
        events = grab.normalize(_raw(body), body, TENANT)
    except Rejected as exc:
        assert exc.code and exc.reason
        return
    for event in events:
        assert OrderEvent.decode(event.encode()) == event


PUSH_PATHS = paths(PUSH)
push_values = json_values | st.sampled_from(["COLLECTED", "FAILED", "2026-11-27T10:25:00Z", 1_795_775_100, ""])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*PUSH_PATHS, ("updatedAt",), ("timestamp",)]),
            st.just(("delete",)) | push_values.map(lambda v: ("set", v)),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_state_push_gives_one_encodable_update_or_a_rejection_never_another_exception(
    changes: list[Any],
) -> None:
    body = _push()
    for path, op in changes:
        mutate(body, path, op)
    try:
        changes_out = grab.normalize(_raw(body), body, TENANT)
    except Rejected as exc:
        assert exc.code and exc.reason
        return
    [update] = changes_out  # without a state it is no Submit Order either (no items): refused above
    assert isinstance(update, OrderStatusUpdate)
    assert decode_change(update.encode()) == update
