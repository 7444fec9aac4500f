"""schemas.topics: the one registry of topics and the raw-topic -> channel lookup."""

from __future__ import annotations

import pytest

from schemas import topics
from schemas.codec import latest


def test_topic_names_in_the_registry_are_unique() -> None:
    names = [spec.name for spec in topics.ALL]
    assert len(names) == len(set(names))


def test_every_channel_has_a_raw_topic_named_raw_orders_channel() -> None:
    raw_names = {spec.name for spec in topics.RAW_ORDERS}
    assert raw_names == {f"raw.orders.{channel}" for channel in topics.CHANNELS}
    assert all(spec in topics.ALL for spec in topics.RAW_ORDERS)


def test_registry_holds_raw_topics_orders_and_dead_letters() -> None:
    assert topics.ORDERS in topics.ALL
    assert topics.DEAD_LETTERS in topics.ALL
    assert topics.ALERTS in topics.ALL and topics.ALERT_ACTIONS in topics.ALL
    assert len(topics.ALL) == len(topics.CHANNELS) + 14


def test_every_value_schema_named_in_the_registry_is_shipped() -> None:
    for spec in topics.ALL:
        for name in spec.value_schemas:
            assert latest(name).name == name


def test_raw_topics_hold_unchanged_bytes_without_a_schema() -> None:
    assert all(spec.value_schemas == () for spec in topics.RAW_ORDERS)


def test_raw_and_dead_letter_topics_allow_large_records() -> None:
    for spec in (*topics.RAW_ORDERS, topics.DEAD_LETTERS):
        assert int(spec.kafka_config()["max.message.bytes"]) >= 16 * 1024 * 1024


def test_kafka_config_always_states_the_cleanup_policy() -> None:
    for spec in topics.ALL:
        assert spec.kafka_config()["cleanup.policy"] == spec.cleanup_policy


def test_full_name_prepends_the_prefix() -> None:
    assert topics.ORDERS.full_name("") == "orders.v1"
    assert topics.ORDERS.full_name("t42.") == "t42.orders.v1"


def test_raw_orders_of_an_unknown_channel_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown channel 'amazon'"):
        topics.raw_orders("amazon")


@pytest.mark.parametrize("channel", topics.CHANNELS)
def test_channel_of_raw_topic_without_prefix(channel: str) -> None:
    assert topics.channel_of_raw_topic(f"raw.orders.{channel}", "") == channel


@pytest.mark.parametrize("channel", topics.CHANNELS)
def test_channel_of_raw_topic_with_prefix(channel: str) -> None:
    assert topics.channel_of_raw_topic(f"t1a2b3.raw.orders.{channel}", "t1a2b3.") == channel


@pytest.mark.parametrize(
    ("topic", "prefix"),
    [
        ("orders.v1", ""),
        ("dead-letters.v1", ""),
        ("t1.orders.v1", "t1."),
        ("raw.orders.amazon", ""),
        ("raw.orders.", ""),
        ("raw.orders", ""),
        ("raw.orders.shopee.v2", ""),
        ("x.raw.orders.shopee", ""),
        ("t2.raw.orders.shopee", "t1."),
        ("<internal>", ""),
        ("", ""),
    ],
)
def test_channel_of_a_non_raw_topic_is_none(topic: str, prefix: str) -> None:
    assert topics.channel_of_raw_topic(topic, prefix) is None


def test_every_registered_raw_topic_resolves_back_to_its_channel() -> None:
    for channel, spec in zip(topics.CHANNELS, topics.RAW_ORDERS, strict=True):
        assert topics.channel_of_raw_topic(spec.full_name("p-"), "p-") == channel
