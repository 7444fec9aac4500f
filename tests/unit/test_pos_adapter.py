"""Our own oms.pos.v1 documents (POS, social, manual orders) -> canonical OrderEvent (streams.adapters.pos)."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.order import Market, OrderEvent, OrderStatus, PaymentMethod
from streams.adapters import pos
from streams.adapters.base import RawInput, Rejected
from tests.unit.payload_mutations import json_values, mutate, paths

TENANT = "t1"
INGEST_MS = 1_795_824_070_000
SAMPLE_BYTES = resources.files("connectors").joinpath("samples", "pos_order.json").read_bytes()
SAMPLE: dict[str, Any] = json.loads(SAMPLE_BYTES)
FORMAT_DOC = Path(__file__).resolve().parents[2] / "docs" / "pos-order-format.md"


def _body() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def _raw(value: Any, **changes: Any) -> RawInput:
    fields: dict[str, Any] = {
        "channel": "pos",
        "value": value if isinstance(value, bytes) else json.dumps(value).encode(),
        "topic": "raw.orders.pos",
        "partition": 0,
        "offset": 3,
        "ingest_ms": INGEST_MS,
        "headers": {},
    }
    fields.update(changes)
    return RawInput(**fields)


def _one_event(body: Any, **changes: Any) -> OrderEvent:
    events = pos.normalize(_raw(body, **changes), body, TENANT)
    assert len(events) == 1
    return events[0]


def _refusal(body: Any, **changes: Any) -> Rejected:
    with pytest.raises(Rejected) as caught:
        pos.normalize(_raw(body, **changes), body, TENANT)
    return caught.value


# --- the sample and the documented example ---------------------------------------------------------------


def test_sample_becomes_one_event_with_order_identity_and_total() -> None:
    event = _one_event(SAMPLE)
    assert (event.tenant, event.channel, event.channel_order_id) == (TENANT, "pos", "ORCH-POS-000731")
    assert event.order_key == "t1:pos:ORCH-POS-000731"
    assert (event.market, event.currency, event.total_minor) == (Market.SG, "SGD", 6850)
    assert event.shop_id == "orchard"  # store_id, as no shop header came
    assert (event.raw.topic, event.raw.partition, event.raw.offset) == ("raw.orders.pos", 0, 3)


def test_sample_keeps_the_stated_status_with_the_source_in_channel_status() -> None:
    event = _one_event(SAMPLE)
    assert (event.status, event.channel_status) == (OrderStatus.COMPLETED, "pos/completed")
    assert (event.payment_method, event.is_cod) == (PaymentMethod.CARD, False)
    assert event.created_ms == 1_795_779_730_000  # 2026-11-27T19:42:10+08:00
    assert event.event_time_ms == 1_795_779_751_000


def test_sample_lines_get_positional_ids_and_keep_prices_and_promotion() -> None:
    tee, mug = _one_event(SAMPLE).lines
    assert (tee.line_id, tee.sku, tee.quantity, tee.unit_price_minor, tee.paid_price_minor) == (
        "1",
        "TEE-ORG-BLK-M",
        2,
        2990,
        2500,
    )
    assert tee.promotion_type == "bundle"
    assert (mug.line_id, mug.sku, mug.quantity, mug.paid_price_minor, mug.promotion_type) == (
        "2",
        "MUG-ENM-WHT",
        1,
        1850,
        None,
    )


def test_in_store_sale_without_shipping_has_an_address_with_only_the_country() -> None:
    shipping = _one_event(SAMPLE).shipping
    assert (shipping.country, shipping.region, shipping.city, shipping.postcode) == (Market.SG, None, None, None)


def test_sample_event_encodes_to_avro_and_back() -> None:
    event = _one_event(SAMPLE)
    assert OrderEvent.decode(event.encode()) == event


def test_the_example_in_the_integrator_documentation_is_accepted_as_described() -> None:
    example = re.search(r"```json\n(.*?)```", FORMAT_DOC.read_text(), re.S)
    assert example is not None
    event = _one_event(json.loads(example.group(1)))
    assert (event.channel_status, event.payment_method) == ("facebook/paid", PaymentMethod.BANK_TRANSFER)
    assert event.total_minor == 7050
    assert event.event_time_ms == 1_795_759_800_000  # updated_at as epoch ms
    assert (event.shipping.postcode, event.shipping.city) == ("529536", "Singapore")


# --- status, payment, source -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_canonical_status_name_is_accepted(status: OrderStatus) -> None:
    body = _body()
    body["status"] = status.value
    assert _one_event(body).status is status


@pytest.mark.parametrize("status", ["PAID", "shipping", "done", ""])
def test_status_that_is_not_a_canonical_name_is_refused(status: str) -> None:
    body = _body()
    body["status"] = status
    refusal = _refusal(body)
    assert refusal.code in {"unknown_status", "invalid_field"}
    assert "status" in refusal.reason
    if status:
        assert refusal.code == "unknown_status"


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("cash", PaymentMethod.OTHER),
        ("card", PaymentMethod.CARD),
        ("ewallet", PaymentMethod.EWALLET),
        ("bnpl", PaymentMethod.BNPL),
        ("bank_transfer", PaymentMethod.BANK_TRANSFER),
        ("cod", PaymentMethod.COD),
        ("other", PaymentMethod.OTHER),
    ],
)
def test_payment_names_map_to_canonical_methods_and_only_cod_is_cod(name: str, method: PaymentMethod) -> None:
    body = _body()
    body["payment_method"] = name
    event = _one_event(body)
    assert (event.payment_method, event.is_cod) == (method, name == "cod")


def test_unknown_payment_name_is_refused_as_invalid_field() -> None:
    body = _body()
    body["payment_method"] = "crypto"
    refusal = _refusal(body)
    assert (refusal.code, "payment_method" in refusal.reason) == ("invalid_field", True)


@pytest.mark.parametrize("source", pos.SOURCES)
def test_every_source_is_accepted_and_kept_in_channel_status(source: str) -> None:
    body = _body()
    body["source"] = source
    assert _one_event(body).channel_status == f"{source}/completed"


def test_unknown_source_is_refused_as_invalid_field() -> None:
    body = _body()
    body["source"] = "tiktok"
    refusal = _refusal(body)
    assert (refusal.code, "source" in refusal.reason) == ("invalid_field", True)


@pytest.mark.parametrize("value", ["oms.pos.v2", "", None, 1])
def test_wrong_or_missing_format_is_refused_as_unknown_shape(value: Any) -> None:
    body = _body()
    body["format"] = value
    assert _refusal(body).code == "unknown_shape"


# --- money -----------------------------------------------------------------------------------------------


def test_total_must_add_up_to_the_lines_and_names_both_numbers() -> None:
    body = _body()
    body["total"] = "6850"  # cents sent as dollars
    refusal = _refusal(body)
    assert refusal.code == "invalid_money"
    assert "total" in refusal.reason and "685000" in refusal.reason and "6850" in refusal.reason


def test_shipping_fee_and_discount_take_part_in_the_total() -> None:
    body = _body()
    body.update(shipping_fee="4.00", discount="2.50", total="70.00")
    assert _one_event(body).total_minor == 7000


@pytest.mark.parametrize("field", ["shipping_fee", "discount"])
def test_negative_shipping_fee_or_discount_is_refused_as_invalid_money_naming_it(field: str) -> None:
    body = _body()
    body.update({field: "-4.00", "total": "64.50" if field == "shipping_fee" else "72.50"})
    refusal = _refusal(body)
    assert (refusal.code, refusal.reason.startswith(f"{field}:")) == ("invalid_money", True)


def test_money_as_json_numbers_is_accepted() -> None:
    body = _body()
    body["lines"][0].update(unit_price=29.9, paid_price=25)
    body["total"] = 68.5
    event = _one_event(body)
    assert (event.lines[0].unit_price_minor, event.lines[0].paid_price_minor, event.total_minor) == (2990, 2500, 6850)


def test_missing_paid_price_is_the_unit_price() -> None:
    body = _body()
    del body["lines"][0]["paid_price"]
    body["total"] = "78.30"
    assert _one_event(body).lines[0].paid_price_minor == 2990


def test_price_with_a_fraction_of_a_cent_is_refused_as_invalid_money_naming_the_line() -> None:
    body = _body()
    body["lines"][1]["unit_price"] = "18.505"
    refusal = _refusal(body)
    assert (refusal.code, "lines[1].unit_price" in refusal.reason) == ("invalid_money", True)


def test_idr_amounts_are_whole_rupiah() -> None:
    body = _body()
    body.update(market="ID", currency="IDR", total="150000")
    body["lines"] = [{"sku": "BATIK-01", "quantity": 1, "unit_price": "150000"}]
    event = _one_event(body)
    assert (event.currency, event.total_minor, event.lines[0].unit_price_minor) == ("IDR", 150_000, 150_000)


def test_amount_beyond_the_decimal_range_is_refused_as_invalid_money() -> None:
    body = _body()
    body["total"] = "1e999999"
    refusal = _refusal(body)
    assert (refusal.code, "total" in refusal.reason) == ("invalid_money", True)


# --- market, lines, times --------------------------------------------------------------------------------


def test_currency_not_of_the_market_is_refused_as_invalid_field_naming_currency() -> None:
    body = _body()
    body["currency"] = "MYR"
    refusal = _refusal(body)
    assert refusal.code == "invalid_field"
    assert refusal.reason.startswith("currency: MYR is not the currency of market SG")


def test_market_comes_from_the_market_header_when_missing() -> None:
    body = _body()
    del body["market"]
    assert _one_event(body, headers={"market": b"SG"}).market is Market.SG


@pytest.mark.parametrize("market", ["XX", "sg", None])
def test_unknown_market_without_header_is_refused_as_invalid_field(market: str | None) -> None:
    body = _body()
    body["market"] = market
    refusal = _refusal(body)
    assert (refusal.code, "market" in refusal.reason) == ("invalid_field", True)


@pytest.mark.parametrize("sku", ["", None])
def test_line_without_sku_is_refused_as_missing_sku_naming_the_line(sku: str | None) -> None:
    body = _body()
    body["lines"][1]["sku"] = sku
    refusal = _refusal(body)
    assert (refusal.code, "lines[1].sku" in refusal.reason) == ("missing_sku", True)


@pytest.mark.parametrize("quantity", [-2, 0, 1.5, "two"])
def test_quantity_that_is_not_a_positive_integer_is_refused_naming_it(quantity: Any) -> None:
    body = _body()
    body["lines"][0]["quantity"] = quantity
    refusal = _refusal(body)
    assert (refusal.code, "lines[0].quantity" in refusal.reason) == ("invalid_field", True)


def test_line_ids_given_by_the_sender_are_kept_and_must_be_unique() -> None:
    body = _body()
    body["lines"][0]["line_id"] = "A"
    body["lines"][1]["line_id"] = "B"
    assert [line.line_id for line in _one_event(body).lines] == ["A", "B"]
    body["lines"][1]["line_id"] = "A"
    refusal = _refusal(body)
    assert (refusal.code, "lines[1].line_id" in refusal.reason) == ("invalid_field", True)


def test_shipping_with_an_empty_postcode_keeps_the_city_and_gives_postcode_none() -> None:
    body = _body()
    body["shipping"] = {"postcode": "", "region": "Central", "city": "Singapore"}
    shipping = _one_event(body).shipping
    assert (shipping.postcode, shipping.region, shipping.city) == (None, "Central", "Singapore")


def test_created_at_as_epoch_milliseconds_is_accepted() -> None:
    body = _body()
    body["created_at"] = 1_795_779_730_000
    assert _one_event(body).created_ms == 1_795_779_730_000


@pytest.mark.parametrize("value", [1_795_779_730, 0, -5, 10**16])
def test_created_at_number_that_is_not_plausible_epoch_ms_is_refused(value: int) -> None:
    body = _body()
    body["created_at"] = value
    refusal = _refusal(body)
    assert (refusal.code, "created_at" in refusal.reason) == ("invalid_field", True)


@pytest.mark.parametrize("value", ["27/11/2026", "2026-11-27T19:42:10", "soon", "", None, True])
def test_created_at_that_is_not_an_iso_time_with_offset_is_refused(value: Any) -> None:
    body = _body()
    body["created_at"] = value
    refusal = _refusal(body)
    assert (refusal.code, "created_at" in refusal.reason) == ("invalid_field", True)


def test_event_id_is_stable_for_the_same_document_and_changes_with_the_status() -> None:
    cancelled = _body()
    cancelled["status"] = "cancelled"
    assert _one_event(SAMPLE).event_id == _one_event(SAMPLE, offset=4).event_id
    assert _one_event(cancelled).event_id != _one_event(SAMPLE).event_id


# --- property --------------------------------------------------------------------------------------------

SAMPLE_PATHS = paths(SAMPLE)
values = json_values | st.sampled_from(
    ["paid", "cod", "cash", "facebook", "oms.pos.v1", "68.50", "2026-11-27T19:42:10+08:00", 1_795_779_730_000]
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
        events = pos.normalize(_raw(body), body, TENANT)
    except Rejected as exc:
        assert exc.code and exc.reason
        return
    for event in events:
        assert OrderEvent.decode(event.encode()) == event
