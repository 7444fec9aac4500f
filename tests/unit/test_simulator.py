"""The traffic simulator: reproducible by seed, every body in its channel's shape, realistic mixes."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest

from connectors import signatures
from connectors.simulator import (
    CHANNEL_MARKETS,
    DEFAULT_COD_SHARE,
    POSTCODE_DIGITS,
    SimEvent,
    Simulator,
    SimulatorError,
    WebhookSecrets,
    signed_headers,
)
from connectors.webhooks import identity
from oms.settings import Settings
from schemas.order import MARKET_CURRENCY, Market, OrderEvent, OrderStatusUpdate
from schemas.topics import CHANNELS
from streams.adapters.base import RawInput
from streams.normalize import Outcome, normalize

#: Status pushes whose adapters are being written right now: an update, or refused as unsupported_shape.
PUSHES_IN_PROGRESS = {"lazada", "tiktok", "grab", "tokopedia"}


def _normalize(event: SimEvent, offset: int = 0) -> Outcome:
    raw = RawInput(
        channel=event.channel,
        value=event.body,
        topic=f"raw.orders.{event.channel}",
        partition=0,
        offset=offset,
        ingest_ms=1_800_000_000_000,
        key=event.delivery_id.encode(),
        headers={"shop": event.shop.encode(), "delivery_id": event.delivery_id.encode()},
    )
    return normalize(raw, "t1")


@pytest.fixture(scope="module")
def traffic() -> list[SimEvent]:
    return list(Simulator(seed=11).events(600))


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() -> None:
    def run(seed: int) -> list[tuple[str, bytes, str, str, str]]:
        return [(e.channel, e.body, e.shop, e.delivery_id, e.kind) for e in Simulator(seed=seed).events(400)]

    first = run(5)
    assert first == run(5)
    assert first != run(6)
    again = Simulator(seed=5)
    assert list(again.events(50)) == list(again.events(50)), "each call is a fresh run of the same traffic"


def test_every_order_body_normalizes_to_an_order_in_its_markets_currency(traffic: list[SimEvent]) -> None:
    orders = [e for e in traffic if e.kind == "order"]
    assert len(orders) > 100
    seen: set[tuple[str, str]] = set()
    for i, event in enumerate(orders):
        outcome = _normalize(event, i)
        assert outcome.dead_letter is None, (event.channel, outcome.dead_letter.reason, event.body[:300])
        (order,) = outcome.events
        assert isinstance(order, OrderEvent)
        assert order.market.value == event.market
        assert order.currency == MARKET_CURRENCY[order.market]
        assert order.channel_order_id == event.order_id
        assert order.total_minor > 0
        if order.shipping.postcode is not None:
            assert len(order.shipping.postcode) == POSTCODE_DIGITS[order.market]
            assert order.shipping.postcode.isdigit()
        seen.add((event.channel, event.market))
    assert {channel for channel, _ in seen} == set(CHANNELS)
    assert {market for _, market in seen} == {m.value for m in Market}


def test_every_channel_and_market_pair_it_serves_normalizes() -> None:
    for channel in CHANNELS:
        for market in CHANNEL_MARKETS[channel]:
            events = list(Simulator(seed=3, channels=[channel], markets=[market]).events(60))
            for i, event in enumerate(e for e in events if e.kind == "order"):
                outcome = _normalize(event, i)
                assert outcome.dead_letter is None, (channel, market, outcome.dead_letter.reason)
                assert outcome.events[0].currency == MARKET_CURRENCY[market]  # type: ignore[union-attr]


def test_shopee_status_pushes_normalize_to_status_updates_of_their_order() -> None:
    events = list(Simulator(seed=2, channels=["shopee"]).events(300))
    pushes = [e for e in events if e.kind == "status"]
    assert len(pushes) > 50
    for i, event in enumerate(pushes):
        outcome = _normalize(event, i)
        assert outcome.dead_letter is None, outcome.dead_letter.reason
        (update,) = outcome.events
        assert isinstance(update, OrderStatusUpdate)
        assert update.channel_order_id == event.order_id
        assert update.status.value == event.status


def test_pushes_being_implemented_become_updates_or_unsupported_shape_never_internal_errors() -> None:
    events = list(Simulator(seed=4, channels=sorted(PUSHES_IN_PROGRESS)).events(600))
    statuses = Counter[str]()
    for i, event in enumerate(e for e in events if e.kind == "status"):
        outcome = _normalize(event, i)
        if outcome.dead_letter is not None:
            assert outcome.dead_letter.reason_code == "unsupported_shape", (event.channel, outcome.dead_letter.reason)
            statuses[f"{event.channel}:unsupported"] += 1
        else:
            assert all(change.channel_order_id == event.order_id for change in outcome.events)
            statuses[f"{event.channel}:{type(outcome.events[0]).__name__}"] += 1
    assert {key.split(":")[0] for key in statuses} == PUSHES_IN_PROGRESS


def test_status_changes_follow_paid_shipped_delivered_and_some_orders_are_cancelled() -> None:
    events = list(Simulator(seed=8, channels=["shopee", "tiktok"], late_update_rate=0).events(3000))
    paths: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event.kind in ("order", "status"):
            paths[event.order_id].append(event.status)
    order_rank = ["pending_payment", "paid", "shipped", "delivered"]
    for path in paths.values():
        main = [s for s in path if s != "cancelled"]
        assert main == sorted(main, key=order_rank.index), path
        if "cancelled" in path:
            assert path[-1] == "cancelled" and "shipped" not in path
    cancelled = sum("cancelled" in p for p in paths.values())
    assert 0.05 < cancelled / len(paths) < 0.15
    assert sum(p[-1] == "delivered" for p in paths.values()) > 50


def test_hot_skus_carry_more_than_half_the_units(traffic: list[SimEvent]) -> None:
    def top_decile_share(events: list[SimEvent]) -> float:
        units: Counter[str] = Counter()
        for i, event in enumerate(e for e in events if e.kind == "order"):
            for line in _normalize(event, i).events[0].lines:  # type: ignore[union-attr]
                units[line.sku] += line.quantity
        top = sum(n for _, n in units.most_common(max(1, 200 // 10)))
        return top / sum(units.values())

    skewed = top_decile_share(list(Simulator(seed=9).events(1500)))
    flat = top_decile_share(list(Simulator(seed=9, hot_share=0.0).events(1500)))
    assert skewed > 0.5
    assert skewed > flat + 0.1


def test_flash_sale_lines_are_hot_skus_at_a_discount() -> None:
    sim = Simulator(seed=12, channels=["shopee"])
    flash = 0
    for i, event in enumerate(e for e in sim.events(300) if e.kind == "order"):
        for line in _normalize(event, i).events[0].lines:  # type: ignore[union-attr]
            if line.promotion_type == "flash_sale":
                flash += 1
                assert line.sku in sim.hot_skus
                assert line.paid_price_minor < line.unit_price_minor
    assert flash > 20


def test_cod_share_per_market_is_near_the_configured_share() -> None:
    # the legacy Tokopedia adapter reads no COD flag (is_cod_mitra): measured on the other channels
    channels = [c for c in CHANNELS if c != "tokopedia"]
    events = Simulator(seed=21, channels=channels, duplicate_rate=0, late_update_rate=0).events(None)
    cod: dict[Market, list[bool]] = defaultdict(list)
    orders = 0
    for i, event in enumerate(events):
        if event.kind != "order":
            continue
        order = _normalize(event, i).events[0]
        assert isinstance(order, OrderEvent)
        cod[order.market].append(order.is_cod)
        orders += 1
        if orders == 2000:
            break
    for market, flags in cod.items():
        share = sum(flags) / len(flags)
        tolerance = 3 * (DEFAULT_COD_SHARE[market] * (1 - DEFAULT_COD_SHARE[market]) / len(flags)) ** 0.5 + 0.02
        assert abs(share - DEFAULT_COD_SHARE[market]) < tolerance, (market, share, len(flags))
    override = Simulator(seed=21, channels=["shopee"], markets=["SG"], cod_share={"SG": 0.9})
    flags_sg = [e for e in override.events(400) if e.kind == "order"]
    assert sum(orjson.loads(e.body)["response"]["order_list"][0]["cod"] for e in flags_sg) / len(flags_sg) > 0.8


def test_duplicates_repeat_an_earlier_delivery_byte_for_byte_with_its_delivery_id(traffic: list[SimEvent]) -> None:
    earlier: dict[str, bytes] = {}
    duplicates = 0
    for event in traffic:
        if event.kind == "duplicate":
            duplicates += 1
            assert earlier[event.delivery_id] == event.body
        else:
            assert event.delivery_id not in earlier, "a new delivery has a new id"
            earlier[event.delivery_id] = event.body
    assert duplicates > 3


def test_late_status_changes_come_before_their_order() -> None:
    events = list(Simulator(seed=13, late_update_rate=0.3).events(800))
    first_order = {}
    for i, event in enumerate(events):
        if event.kind == "order":
            first_order.setdefault(event.order_id, i)
    late = [(i, e) for i, e in enumerate(events) if e.late]
    assert len(late) > 20
    for i, event in late:
        assert event.kind == "status" and event.revision == 1
        assert first_order.get(event.order_id, len(events)) > i
    on_time = [(i, e) for i, e in enumerate(events) if e.kind == "status" and not e.late]
    assert all(first_order[e.order_id] < i for i, e in on_time)


def test_tokopedia_orders_are_only_in_indonesia() -> None:
    events = list(Simulator(seed=14, channels=["tokopedia", "shopee"]).events(400))
    tokopedia = [e for e in events if e.channel == "tokopedia" and e.kind == "order"]
    assert tokopedia
    assert {e.market for e in tokopedia} == {"ID"}
    for i, event in enumerate(tokopedia):
        assert _normalize(event, i).events[0].market is Market.ID  # type: ignore[union-attr]
    with pytest.raises(SimulatorError, match="no selected channel serves a selected market"):
        Simulator(channels=["tokopedia"], markets=["SG"])


def test_malformed_bodies_become_dead_letters_with_a_reason_not_internal_errors() -> None:
    events = list(Simulator(seed=15, malformed_rate=0.2).events(400))
    malformed = [e for e in events if e.kind == "malformed"]
    assert len(malformed) > 20
    for i, event in enumerate(malformed):
        letter = _normalize(event, i).dead_letter
        assert letter is not None
        assert letter.reason_code in {"malformed_json", "invalid_encoding", "invalid_field"}
    assert not [e for e in Simulator(seed=15).events(400) if e.kind == "malformed"], "none by default"


def test_signed_deliveries_pass_the_webhook_services_checks_and_keep_their_delivery_id(
    traffic: list[SimEvent],
) -> None:
    secrets = WebhookSecrets("pk", "lk", "ls", "tk", "ts", "shs", "tos", "grs", "pos")
    settings = Settings(
        shopee_partner_key="pk",
        lazada_app_key="lk",
        lazada_app_secret="ls",
        tiktok_app_key="tk",
        tiktok_app_secret="ts",
        shopify_webhook_secret="shs",
        tokopedia_webhook_secret="tos",
        grab_webhook_secret="grs",
        pos_webhook_secret="pos",
    )
    assert WebhookSecrets.from_settings(settings) == secrets
    checked = set()
    for event in traffic:
        url = f"https://oms.example/webhooks/{event.channel}"
        headers = signed_headers(event, url, secrets)
        assert signatures.verify(settings, event.channel, url, event.body, headers).ok, event.channel
        assert identity(event.channel, event.body, headers)[0] == event.delivery_id
        tampered = signatures.verify(settings, event.channel, url, event.body + b" ", headers)
        assert not tampered.ok
        checked.add(event.channel)
    assert checked == set(CHANNELS)
    assert WebhookSecrets(shopee_partner_key="pk").missing(["shopee", "grab"]) == ["OMS_GRAB_WEBHOOK_SECRET"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": ["shopee", "amazon"]}, r"unknown channel\(s\) 'amazon'; known: shopee, lazada"),
        ({"markets": ["SG", "US"]}, r"unknown market\(s\) 'US'; known: SG, MY"),
        ({"duplicate_rate": 1.5}, "duplicate_rate must be a share between 0 and 1"),
        ({"cod_share": {"XX": 0.1}}, "cod_share: unknown market 'XX'"),
        ({"skus": 0}, "skus must be at least 1"),
    ],
)
def test_bad_parameters_are_refused_naming_what_is_accepted(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SimulatorError, match=message):
        Simulator(**kwargs)  # type: ignore[arg-type]
