"""schemas.codec: Avro single-object encoding, its header, its errors, and schema evolution."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import HEADER_LEN, MAGIC, AvroCodec, CodecError, codec, latest, schema_version
from schemas.order import (
    Address,
    DeadLetter,
    Market,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    RawRef,
    order_key,
)


def _event(**changes: Any) -> OrderEvent:
    fields: dict[str, Any] = {
        "event_id": "e-1",
        "tenant": "t1",
        "channel": "shopee",
        "market": Market.SG,
        "shop_id": "777",
        "order_key": order_key("t1", "shopee", "SN1"),
        "channel_order_id": "SN1",
        "status": OrderStatus.PAID,
        "channel_status": "READY_TO_SHIP",
        "payment_method": PaymentMethod.EWALLET,
        "is_cod": False,
        "currency": "SGD",
        "total_minor": 5980,
        "lines": (
            OrderLine(
                line_id="1:5",
                sku="A-1",
                quantity=1,
                unit_price_minor=3990,
                paid_price_minor=2990,
                promotion_type="flash_sale",
            ),
            OrderLine(line_id="2:0", sku="B-2", quantity=2, unit_price_minor=1495, paid_price_minor=1495),
        ),
        "shipping": Address(country=Market.SG, region="Central", city="Singapore", postcode=None),
        "ship_by_ms": None,
        "created_ms": 1_795_824_000_000,
        "event_time_ms": 1_795_824_062_000,
        "ingest_time_ms": 1_795_824_063_000,
        "raw": RawRef(topic="raw.orders.shopee", partition=3, offset=42),
    }
    fields.update(changes)
    return OrderEvent(**fields)


def _rabin64(data: bytes) -> int:
    """CRC-64-AVRO, written from the Avro specification (independent of the code under test)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


LATEST = latest("order_event").version


def _order_event_latest_json(version: int = LATEST) -> dict[str, Any]:
    text = resources.files("schemas").joinpath("avro", f"order_event.v{version}.avsc").read_text(encoding="utf-8")
    return json.loads(text)


def _order_event_v2():
    """A next version (the newest shipped one plus a field), as a producer upgraded before us would write."""
    schema = copy.deepcopy(_order_event_latest_json())
    schema["fields"].append({"name": "gift_message", "type": ["null", "string"], "default": None})
    return schema_version("order_event", LATEST + 1, schema)


# --- round trips -------------------------------------------------------------------------------------


def test_order_event_round_trips_through_the_avro_codec_unchanged() -> None:
    event = _event(ship_by_ms=1_795_996_800_000)
    assert OrderEvent.decode(event.encode()) == event


def test_order_event_with_cod_and_all_optional_fields_empty_round_trips() -> None:
    event = _event(
        payment_method=PaymentMethod.COD,
        is_cod=True,
        shipping=Address(country=Market.SG),
        lines=(OrderLine(line_id="x", sku="s", quantity=1, unit_price_minor=0, paid_price_minor=0),),
    )
    decoded = OrderEvent.decode(event.encode())
    assert decoded == event
    assert decoded.shipping.postcode is None
    assert decoded.lines[0].promotion_type is None


@given(
    total=st.integers(min_value=0, max_value=2**63 - 1),
    quantity=st.integers(min_value=1, max_value=100_000),
    text=st.text(min_size=1, max_size=30),
    offset=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_any_valid_order_event_round_trips_exactly(total: int, quantity: int, text: str, offset: int) -> None:
    event = _event(
        total_minor=total,
        shop_id=text,
        channel_status=text,
        lines=(OrderLine(line_id=text, sku=text, quantity=quantity, unit_price_minor=total, paid_price_minor=0),),
        raw=RawRef(topic=text, partition=0, offset=offset),
    )
    assert OrderEvent.decode(event.encode()) == event


def test_dead_letter_round_trips_with_original_bytes_key_and_headers() -> None:
    letter = DeadLetter.of(
        tenant="t1",
        channel=None,
        stage="normalize",
        reason_code="malformed_json",
        reason="body is not JSON",
        topic="raw.orders.shopee",
        partition=2,
        offset=9,
        key=b"\x00key",
        headers={"shop": b"777", "bin": b"\xff\xfe"},
        original=b"\xff not json",
    )
    assert DeadLetter.decode(letter.encode()) == letter


# --- the header ----------------------------------------------------------------------------------------


def test_encoded_record_starts_with_c3_01_and_the_writer_fingerprint() -> None:
    data = _event().encode()
    assert data[:2] == b"\xc3\x01" == MAGIC
    assert HEADER_LEN == 10
    assert data[2:10] == latest("order_event").fingerprint
    assert len(latest("order_event").fingerprint) == 8


def test_header_fingerprint_is_little_endian_crc64_avro_of_the_canonical_schema() -> None:
    canonical = to_parsing_canonical_form(_order_event_latest_json())
    expected = _rabin64(canonical.encode("utf-8")).to_bytes(8, "little")
    assert _event().encode()[2:10] == expected


def test_order_event_and_dead_letter_have_different_fingerprints() -> None:
    assert latest("order_event").fingerprint != latest("dead_letter").fingerprint


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b'{"order_sn": "X"}', b"\x00" * 32, b"\xc3\x02" + b"\x00" * 20],
    ids=["empty", "one-byte", "json", "zeros", "wrong-magic-second-byte"],
)
def test_decoding_bytes_without_the_single_object_header_raises_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError, match="not an Avro single-object record"):
        codec("order_event").decode(data)


def test_decoding_empty_bytes_says_it_got_nothing() -> None:
    with pytest.raises(CodecError, match="got nothing"):
        codec("order_event").decode(b"")


@pytest.mark.parametrize("keep", range(1, HEADER_LEN))
def test_decoding_a_header_cut_short_says_the_record_is_too_short(keep: int) -> None:
    data = _event().encode()[:keep]
    with pytest.raises(CodecError, match=r"short|truncat") as info:
        codec("order_event").decode(data)
    assert "got c301" not in str(info.value)


@pytest.mark.parametrize("keep", [10, 11, 20, -30, -1])
def test_decoding_a_truncated_body_raises_codec_error_naming_the_schema(keep: int) -> None:
    data = _event().encode()[:keep]
    with pytest.raises(CodecError, match=rf"corrupt order_event\.v{LATEST} body"):
        codec("order_event").decode(data)


def test_decoding_an_unknown_fingerprint_raises_codec_error_asking_to_upgrade() -> None:
    data = bytearray(_event().encode())
    data[2:10] = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    with pytest.raises(CodecError, match=r"unknown order_event schema fingerprint 0102030405060708.*upgrade"):
        codec("order_event").decode(bytes(data))


def test_decoding_a_dead_letter_with_the_order_event_codec_is_an_unknown_fingerprint() -> None:
    letter = DeadLetter.of(
        tenant="t",
        channel="shopee",
        stage="normalize",
        reason_code="x",
        reason="y",
        topic="raw.orders.shopee",
        partition=0,
        offset=0,
        key=None,
        headers={},
        original=b"",
    )
    with pytest.raises(CodecError, match="unknown order_event schema fingerprint"):
        codec("order_event").decode(letter.encode())


@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_either_returns_a_record_or_raises_codec_error(data: bytes) -> None:
    try:
        record = codec("order_event").decode(data)
    except CodecError:
        return
    assert isinstance(record, dict)


@given(st.binary(max_size=60))
def test_decoding_garbage_after_a_valid_header_never_raises_anything_but_codec_error(body: bytes) -> None:
    data = MAGIC + latest("order_event").fingerprint + body
    try:
        record = codec("order_event").decode(data)
    except CodecError:
        return
    assert isinstance(record, dict)


def test_encoding_a_record_missing_a_required_field_raises_codec_error() -> None:
    record = _event().to_avro()
    del record["tenant"]
    with pytest.raises(CodecError, match=rf"record does not fit order_event\.v{LATEST}"):
        codec("order_event").encode(record)


def test_encoding_a_field_of_the_wrong_type_raises_codec_error() -> None:
    record = _event().to_avro()
    record["total_minor"] = "lots"
    with pytest.raises(CodecError, match=rf"order_event\.v{LATEST}"):
        codec("order_event").encode(record)


def test_encoding_an_int_beyond_avro_long_raises_codec_error() -> None:
    record = _event().to_avro()
    record["total_minor"] = 2**63
    with pytest.raises(CodecError, match=rf"record does not fit order_event\.v{LATEST}"):
        codec("order_event").encode(record)


def test_unknown_schema_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no schema named"):
        AvroCodec("no_such_schema")
    with pytest.raises(KeyError, match="no schema named"):
        latest("no_such_schema")


# --- schema evolution ------------------------------------------------------------------------------------


def test_a_v2_writer_stamps_the_v2_fingerprint() -> None:
    v2 = _order_event_v2()
    writer = AvroCodec("order_event", writer=v2, known=(v2,))
    data = writer.encode({**_event().to_avro(), "gift_message": "happy birthday"})
    assert data[2:10] == v2.fingerprint != latest("order_event").fingerprint


def test_a_v1_reader_that_knows_v2_decodes_v2_bytes_without_the_new_field() -> None:
    v2 = _order_event_v2()
    v1 = latest("order_event")
    assert v1.version == LATEST
    writer = AvroCodec("order_event", writer=v2, known=(v2,))
    reader = AvroCodec("order_event", writer=v1, known=(v2,))
    event = _event()
    record = reader.decode(writer.encode({**event.to_avro(), "gift_message": "happy birthday"}))
    assert "gift_message" not in record
    assert OrderEvent.from_avro(record) == event


def test_a_v2_reader_decodes_v1_bytes_with_the_new_field_defaulted_to_none() -> None:
    v2 = _order_event_v2()
    reader = AvroCodec("order_event", known=(v2,))
    assert reader.writer == v2  # the newest known version reads and writes by default
    event = _event()
    record = reader.decode(event.encode())
    assert record["gift_message"] is None
    assert OrderEvent.from_avro({k: v for k, v in record.items() if k != "gift_message"}) == event


def test_a_v1_reader_that_does_not_know_v2_refuses_v2_bytes() -> None:
    v2 = _order_event_v2()
    data = AvroCodec("order_event", writer=v2, known=(v2,)).encode({**_event().to_avro(), "gift_message": None})
    with pytest.raises(CodecError, match="unknown order_event schema fingerprint"):
        codec("order_event").decode(data)


def test_orders_written_before_the_buyer_contact_keys_decode_with_them_unknown() -> None:
    v1 = schema_version("order_event", 1, _order_event_latest_json(1))
    record = _event().to_avro()
    record["shipping"] = {k: v for k, v in record["shipping"].items() if k not in ("phone_key", "address_key")}
    old = AvroCodec("order_event", writer=v1, known=(v1,)).encode(record)
    decoded = OrderEvent.decode(old)
    assert decoded.shipping.phone_key is None and decoded.shipping.address_key is None
    assert decoded.order_key == _event().order_key
