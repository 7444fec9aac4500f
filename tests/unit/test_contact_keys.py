"""Buyer contact keys: every adapter hashes the phone and street line it was sent in clear, never the
number itself, and a masked or odd field gives None instead of a dead letter."""

from __future__ import annotations

import orjson
import pytest

from connectors.raw_producer import sample
from schemas.order import OrderEvent, contact_key
from streams.adapters.base import RawInput
from streams.normalize import normalize

#: channel, sample, (phone in clear or None when the channel masks it, street line)
SAMPLES = [
    ("shopee", "shopee_order_detail.json", "6591234567", "1 Orchard Road, #12-34, Singapore 238859"),
    ("lazada", "lazada_order.json", "60123456789", None),
    ("shopify", "shopify_order.json", "+6591234567", None),
    ("tiktok", "tiktok_order_detail.json", None, None),
    ("tokopedia", "tokopedia_legacy_order.json", "6281234564321", None),
    ("grab", "grab_order.json", "6598765432", "1 Orchard Road, Singapore 238859"),
]


def _event(channel: str, body: bytes) -> OrderEvent:
    outcome = normalize(RawInput(channel, body, f"raw.orders.{channel}", 0, 0, 1_795_824_100_000), "default")
    events = [e for e in outcome.events if isinstance(e, OrderEvent)]
    assert events, outcome.dead_letter
    return events[0]


@pytest.mark.parametrize(("channel", "name", "phone", "street"), SAMPLES)
def test_each_channel_keeps_a_hash_of_the_phone_and_address_it_sent_in_clear(
    channel: str, name: str, phone: str | None, street: str | None
) -> None:
    shipping = _event(channel, sample(name)).shipping
    assert shipping.phone_key == contact_key("phone", phone)
    if street is not None:
        assert shipping.address_key == contact_key("address", street)
    assert shipping.address_key is not None, "every sample has a street line in clear"
    text = _event(channel, sample(name)).model_dump_json()
    if phone is not None:
        assert phone.lstrip("+") not in text, "the number itself is never kept"


def test_the_same_phone_written_differently_is_one_key_and_masked_or_short_ones_are_none() -> None:
    assert contact_key("phone", "+65 9123 4567") == contact_key("phone", "6591234567") == contact_key("phone", 91234567)
    assert contact_key("phone", "(+66)81*****78") is None
    assert contact_key("phone", "12345") is None
    assert contact_key("address", "  1 ORCHARD road ") == contact_key("address", "1 Orchard Road")
    assert contact_key("address", {"street": "x"}) is None
    assert contact_key("phone", "6591234567") != contact_key("address", "6591234567"), "kinds never collide"


def test_a_phone_of_an_odd_type_gives_no_key_not_a_dead_letter() -> None:
    body = orjson.loads(sample("shopee_order_detail.json"))
    body["response"]["order_list"][0]["recipient_address"]["phone"] = {"number": "6591234567"}
    assert _event("shopee", orjson.dumps(body)).shipping.phone_key is None
