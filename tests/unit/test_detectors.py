"""The anomaly detectors (streams/detectors.py): one alert per condition, resolved when it clears.

Each detector fires exactly once on a crafted stream and stays quiet on a normal one: a seeded,
noisy but steady stream of many SKUs and channels, with flash-sale prices mixed in. Times are
arguments (epoch ms), so every test is a replay with no clock and no sleeps.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import replace

import pytest

from streams.detectors import (
    DEAD_LETTER_SPIKE,
    FIRING,
    ORDER_SPIKE,
    OVERSELL,
    PRICE_ERROR,
    RESOLVED,
    SHIP_BY_RISK,
    Alert,
    ChannelStockSeen,
    DeadLetterSeen,
    DetectorConfig,
    Detectors,
    MovementSeen,
    OrderSeen,
    ReservationSeen,
)

T0 = 1_700_000_000_000  # a bucket boundary for 10 s buckets
BUCKET = 10_000
HOUR = 3_600_000


def order(
    n: int,
    *,
    at_ms: int = T0,
    channel: str = "shopee",
    sku: str = "SKU-1",
    price: int = 1000,
    lines: tuple[tuple[str, int, int], ...] | None = None,
    status: str = "paid",
    currency: str = "SGD",
    market: str = "SG",
    ship_by_ms: int | None = None,
    event_time_ms: int | None = None,
    first_seen: bool = True,
    is_cod: bool = False,
    phone_key: str | None = None,
    address_key: str | None = None,
) -> OrderSeen:
    """An order with defaults: one line of one unit, paid, no ship-by, event time = arrival time."""
    return OrderSeen(
        order_key=f"default:{channel}:{n}",
        channel=channel,
        market=market,
        status=status,
        is_cod=is_cod,
        currency=currency,
        ship_by_ms=ship_by_ms,
        event_time_ms=at_ms if event_time_ms is None else event_time_ms,
        lines=((sku, 1, price),) if lines is None else lines,
        at_ms=at_ms,
        first_seen=first_seen,
        phone_key=phone_key,
        address_key=address_key,
    )


def feed(detectors: Detectors, orders: Iterable[OrderSeen]) -> list[Alert]:
    out: list[Alert] = []
    for o in orders:
        out += detectors.on_order(o)
    return out


def of_kind(alerts: Iterable[Alert], kind: str) -> list[Alert]:
    return [a for a in alerts if a.kind == kind]


def steady(detectors: Detectors, buckets: int, per_bucket: int = 5, start: int = 0, sku: str = "SKU-1") -> list[Alert]:
    """``per_bucket`` orders of ``sku`` on shopee in each bucket, with a tick at the end of each."""
    out: list[Alert] = []
    for b in range(start, start + buckets):
        base = T0 + b * BUCKET
        out += feed(detectors, (order(b * 1000 + i, at_ms=base + i * 10, sku=sku) for i in range(per_bucket)))
        out += detectors.tick(base + BUCKET - 1)
    return out


def assert_transitions_consistent(alerts: list[Alert]) -> None:
    """Per key, transitions alternate firing/resolved starting with firing: nothing returned twice."""
    last: dict[str, str] = {}
    for a in alerts:
        assert a.dedupe_key == f"{a.kind}:{a.subject}"
        assert all(isinstance(v, str) for v in a.evidence.values())
        expected = RESOLVED if last.get(a.dedupe_key) == FIRING else FIRING
        assert a.state == expected, a
        last[a.dedupe_key] = a.state


# --- order spike -------------------------------------------------------------------------------


def test_order_spike_fires_once_per_subject_and_resolves_on_a_quiet_bucket() -> None:
    d = Detectors()
    assert steady(d, 40) == []

    spike_at = T0 + 40 * BUCKET
    fired = feed(d, (order(100_000 + i, at_ms=spike_at + i) for i in range(120)))
    assert sorted(a.dedupe_key for a in fired) == ["order_spike:channel:shopee", "order_spike:sku:SKU-1"]
    assert all(a.kind == ORDER_SPIKE and a.severity == "warning" and a.state == FIRING for a in fired)
    sku_alert = next(a for a in fired if a.subject == "sku:SKU-1")
    assert sku_alert.evidence == {"count": "30", "baseline": "5.0", "threshold": "30", "bucket_s": "10", "factor": "4"}
    assert sku_alert.at_ms == spike_at + 29

    # two more spike buckets: still the same open alerts, nothing new
    more = d.tick(spike_at + BUCKET)
    for b in (41, 42):
        more += feed(d, (order(b * 1000 + i, at_ms=T0 + b * BUCKET + i) for i in range(120)))
        more += d.tick(T0 + b * BUCKET + BUCKET - 1)
    assert more == []
    assert [a.dedupe_key for a in d.open_alerts()] == ["order_spike:channel:shopee", "order_spike:sku:SKU-1"]

    # a quiet bucket: resolved when it closes (seen by the next tick in a later bucket)
    assert steady(d, 1, start=43) == []
    resolved = d.tick(T0 + 44 * BUCKET)
    assert sorted(a.dedupe_key for a in resolved) == ["order_spike:channel:shopee", "order_spike:sku:SKU-1"]
    assert all(a.state == RESOLVED and a.at_ms == T0 + 44 * BUCKET for a in resolved)
    assert d.open_alerts() == []
    assert_transitions_consistent(fired + resolved)


def test_order_spike_counts_orders_not_units_and_not_repeat_states() -> None:
    d = Detectors()
    steady(d, 10)
    at = T0 + 10 * BUCKET
    # 29 orders with 10 units each (and the SKU on two lines), plus 50 later states of them: below 30 orders
    many_units = (("SKU-1", 10, 1000), ("SKU-1", 10, 1000))
    alerts = feed(d, (order(9000 + i, at_ms=at + i, lines=many_units) for i in range(29)))
    alerts += feed(
        d, (order(9000 + i % 29, at_ms=at + 100 + i, status="processing", first_seen=False) for i in range(50))
    )
    assert alerts == []
    assert of_kind(d.on_order(order(9999, at_ms=at + 500)), ORDER_SPIKE) != []


def test_order_spike_needs_warmup_for_a_new_subject() -> None:
    d = Detectors()
    # a brand new SKU and channel selling 100 orders in their first buckets: no baseline yet, no alert
    alerts: list[Alert] = []
    for b in range(6):
        alerts += feed(d, (order(b * 1000 + i, at_ms=T0 + b * BUCKET + i, channel="tiktok") for i in range(100)))
    assert alerts == []
    # from the 7th bucket on the subject has a history; 100 is far below 4x its baseline of 100 anyway
    alerts += feed(d, (order(7000 + i, at_ms=T0 + 6 * BUCKET + i, channel="tiktok") for i in range(100)))
    assert alerts == []


def test_order_spike_bucket_memory_is_bounded() -> None:
    config = DetectorConfig()
    d = Detectors(config)
    for b in range(10_000):
        d.on_order(order(b, at_ms=T0 + b * BUCKET))
    rates = d._order_rates.subjects
    assert len(rates["sku:SKU-1"].counts) <= config.baseline_buckets + 1
    assert len(rates["channel:shopee"].counts) <= config.baseline_buckets + 1
    assert d.open_alerts() == []


# --- oversell ----------------------------------------------------------------------------------


def short(n: int, at_ms: int, sku: str = "SKU-1", quantity: int = 2) -> ReservationSeen:
    return ReservationSeen(f"default:shopee:{n}", sku, quantity, "short", 0, None, at_ms)


def test_oversell_short_fires_once_counts_repeats_and_resolves_after_quiet() -> None:
    d = Detectors()
    reserved = ReservationSeen("default:shopee:1", "SKU-1", 1, "reserved", 5, "SG-JUR", T0)
    assert d.on_reservation(reserved) == []

    [fired] = d.on_reservation(short(2, T0 + 1000))
    assert (fired.dedupe_key, fired.kind, fired.severity, fired.state) == (
        "oversell:sku:SKU-1",
        OVERSELL,
        "critical",
        FIRING,
    )
    assert (
        fired.summary
        == "SKU-1 oversold: shopee sold 2 that no node serving the order could reserve (order default:shopee:2)"
    )
    assert fired.evidence["channel"] == "shopee" and fired.evidence["order_key"] == "default:shopee:2"
    assert (fired.evidence["quantity"], fired.evidence["available"], fired.evidence["shorts"]) == ("2", "0", "1")

    last = T0 + 120_000
    for n, at in ((3, T0 + 60_000), (4, T0 + 90_000), (5, last)):
        assert d.on_reservation(short(n, at)) == []
    [still] = d.open_alerts()
    assert still.evidence["shorts"] == "4"  # counted while open, not re-raised

    assert d.tick(last + 300_000 - 1) == []
    [resolved] = d.tick(last + 300_000)
    assert (resolved.dedupe_key, resolved.state, resolved.at_ms) == (fired.dedupe_key, RESOLVED, last + 300_000)
    assert resolved.evidence["shorts"] == "4"
    assert d.open_alerts() == [] and d._quiet == {}

    # a new short after it resolved is a new alert
    assert [a.state for a in d.on_reservation(short(6, last + 400_000))] == [FIRING]


def test_oversell_ledger_below_zero_fires_once_and_resolves_on_next_good_movement() -> None:
    d = Detectors()

    def move(on_hand: int, reserved: int, at: int, warehouse: str = "SG-JUR") -> MovementSeen:
        return MovementSeen("SKU-1", warehouse, "damage", f"adj-{at}", on_hand, reserved, at)

    assert d.on_movement(move(10, 3, T0)) == []
    [fired] = d.on_movement(move(2, 3, T0 + 1))
    assert fired.dedupe_key == "oversell:sku:SKU-1@SG-JUR"
    assert fired.evidence == {
        "on_hand": "2",
        "reserved": "3",
        "available": "-1",
        "cause": "damage",
        "ref": f"adj-{T0 + 1}",
    }
    assert d.on_movement(move(1, 3, T0 + 2)) == []  # still below: no second alert
    assert d.on_movement(move(50, 0, T0 + 3, warehouse="SG-TUAS")) == []  # another warehouse: unrelated
    assert d.tick(T0 + 10 * HOUR) == []  # not time-based
    [resolved] = d.on_movement(move(3, 3, T0 + 4))
    assert (resolved.dedupe_key, resolved.state, resolved.at_ms) == (fired.dedupe_key, RESOLVED, T0 + 4)
    assert d.open_alerts() == []


# --- price error -------------------------------------------------------------------------------


def test_price_error_fires_once_without_dragging_the_median_and_resolves_after_quiet() -> None:
    d = Detectors()
    alerts = feed(d, (order(i, at_ms=T0 + i * 1000, price=1000 + (i % 5) * 10) for i in range(30)))
    alerts += feed(d, (order(100 + i, at_ms=T0 + 40_000 + i, price=600) for i in range(5)))  # a flash sale: fine
    assert alerts == []

    [fired] = d.on_order(order(200, at_ms=T0 + 50_000, price=250, channel="lazada"))
    assert (fired.dedupe_key, fired.kind, fired.severity) == ("price_error:sku:SKU-1", PRICE_ERROR, "critical")
    assert fired.evidence == {
        "order_key": "default:lazada:200",
        "channel": "lazada",
        "price": "250",
        "median": "1020",
        "currency": "SGD",
        "ratio": "0.25",
        "max_ratio": "0.3",
        "cheap_sales": "1",
    }

    # 50 more wrong prices: no new alert, and the median is untouched (else 1 would not be cheap any more)
    last = T0 + 60_000 + 49 * 2000
    assert feed(d, (order(300 + i, at_ms=T0 + 60_000 + i * 2000, price=1) for i in range(50))) == []
    assert d._prices[("SKU-1", "SGD")].count(1) == 0
    assert d.open_alerts()[0].evidence["cheap_sales"] == "51"

    assert d.tick(last + 300_000 - 1) == []
    [resolved] = d.tick(last + 300_000)
    assert (resolved.dedupe_key, resolved.state) == (fired.dedupe_key, RESOLVED)
    assert d.open_alerts() == []


def test_price_error_needs_min_samples_and_compares_within_currency() -> None:
    d = Detectors()
    assert feed(d, (order(i, at_ms=T0 + i, price=1000) for i in range(4))) == []
    assert d.on_order(order(5, at_ms=T0 + 5, price=1)) == []  # the 5th sale ever: no history to judge by

    assert feed(d, (order(10 + i, at_ms=T0 + 10 + i, price=1000) for i in range(20))) == []
    # 4 ringgit against a history of Singapore dollars: a different (sku, currency), still too few samples
    assert d.on_order(order(50, at_ms=T0 + 50, price=100, currency="MYR")) == []
    # a later state of an order is not a new sale
    assert d.on_order(order(51, at_ms=T0 + 51, price=1, first_seen=False)) == []
    assert of_kind(d.on_order(order(52, at_ms=T0 + 52, price=1)), PRICE_ERROR) != []


def test_price_history_is_bounded() -> None:
    config = DetectorConfig(price_window=50)
    d = Detectors(config)
    feed(d, (order(i, at_ms=T0 + i, price=1000 + i) for i in range(1000)))
    assert len(d._prices[("SKU-1", "SGD")]) == 50


# --- ship-by risk ------------------------------------------------------------------------------


def test_ship_by_risk_fires_on_the_event_clock_and_resolves_when_shipped() -> None:
    d = Detectors()
    ship_by = T0 + 10 * HOUR
    assert d.on_order(order(1, ship_by_ms=ship_by, event_time_ms=T0)) == []
    assert d.tick(T0 + 100 * HOUR) == []  # arrival time does not move the ship-by clock

    # another order's event time moves the clock to within 4 h of the ship-by
    [fired] = d.on_order(order(2, at_ms=T0 + 1000, event_time_ms=T0 + 6 * HOUR + 30 * 60_000))
    assert (fired.dedupe_key, fired.kind, fired.severity) == (
        "ship_by_risk:order:default:shopee:1",
        SHIP_BY_RISK,
        "warning",
    )
    assert fired.evidence == {
        "ship_by": "2023-11-15T08:13:20Z",
        "hours_left": "3.5",
        "status": "paid",
        "channel": "shopee",
        "market": "SG",
    }
    assert fired.at_ms == T0 + 1000

    # processing is still at risk: no new alert; later, overdue: still the same one
    assert (
        d.on_order(order(1, at_ms=T0 + 2000, status="processing", event_time_ms=T0 + 7 * HOUR, first_seen=False)) == []
    )
    assert d.on_order(order(3, at_ms=T0 + 3000, event_time_ms=T0 + 12 * HOUR)) == []
    assert d.tick(T0 + 4000) == []

    [resolved] = d.on_order(order(1, at_ms=T0 + 5000, status="shipped", event_time_ms=T0 + 12 * HOUR, first_seen=False))
    assert (resolved.dedupe_key, resolved.state, resolved.at_ms) == (fired.dedupe_key, RESOLVED, T0 + 5000)
    assert d._tracked == {} and d.open_alerts() == []


def test_ship_by_risk_waits_out_the_confirm_period_so_updates_on_their_way_do_not_flap() -> None:
    d = Detectors(DetectorConfig(ship_by_confirm_ms=60_000))
    late = {"ship_by_ms": T0 - HOUR, "event_time_ms": T0}
    assert d.on_order(order(1, at_ms=T0, **late)) == []
    assert d.on_order(order(2, at_ms=T0 + 1000, **late)) == []
    # order 1's shipped update arrives 30 s later: it never alerts
    assert d.on_order(order(1, at_ms=T0 + 30_000, status="shipped", event_time_ms=T0, first_seen=False)) == []
    assert d.tick(T0 + 59_000) == []
    [fired] = d.tick(T0 + 61_000)
    assert fired.subject == "order:default:shopee:2" and fired.state == "firing"
    assert d.tick(T0 + 120_000) == [], "fired once"


def test_ship_by_risk_overdue_on_arrival_and_canonical_statuses() -> None:
    d = Detectors()
    [late] = d.on_order(order(1, status="processing", ship_by_ms=T0 - 2 * HOUR, event_time_ms=T0))
    assert late.evidence["hours_left"] == "-2.0" and "2.0h late" in late.summary
    # an order without a ship-by, or already cancelled, is not tracked
    assert d.on_order(order(2, ship_by_ms=None, event_time_ms=T0)) == []
    assert d.on_order(order(3, status="cancelled", ship_by_ms=T0 - HOUR, event_time_ms=T0)) == []
    assert list(d._tracked) == ["default:shopee:1"]
    [resolved] = d.on_order(order(1, status="cancelled", event_time_ms=T0, first_seen=False))
    assert resolved.state == RESOLVED


def test_ship_by_cap_one_summary_for_500_late_orders() -> None:
    config = DetectorConfig()
    d = Detectors(config)
    cap = config.max_ship_by_alerts
    # 500 orders, order i due i seconds after order 0
    alerts = feed(
        d, (order(i, at_ms=T0 + i, ship_by_ms=T0 + 10 * HOUR + i * 1000, event_time_ms=T0) for i in range(500))
    )
    assert alerts == []
    alerts = d.on_order(order(999, at_ms=T0 + 1000, event_time_ms=T0 + 9 * HOUR))  # all 500 late at once
    alerts += d.tick(T0 + 2000)
    assert len(alerts) == cap + 1 <= config.max_ship_by_alerts + 1
    summary = next(a for a in alerts if a.subject == "orders:ship_by")
    assert summary.dedupe_key == "ship_by_risk:orders:ship_by"
    assert summary.evidence == {"count": str(500 - cap), "cap": str(cap)}
    individual = sorted(a.subject for a in alerts if a.subject.startswith("order:"))
    assert individual == sorted(f"order:default:shopee:{i}" for i in range(cap))  # the most urgent ones

    def ship(i: int, at: int) -> list[Alert]:
        return d.on_order(order(i, at_ms=at, status="shipped", event_time_ms=T0 + 9 * HOUR, first_seen=False))

    # ship all but one over the cap: the summary stays, its count follows
    out: list[Alert] = []
    for i in range(cap, 499):
        out += ship(i, T0 + 3000 + i)
    assert out == []
    assert next(a for a in d.open_alerts() if a.subject == "orders:ship_by").evidence["count"] == "1"
    [summary_resolved] = ship(499, T0 + 5000)
    assert (summary_resolved.dedupe_key, summary_resolved.state) == (summary.dedupe_key, RESOLVED)

    # the individual ones resolve one by one
    out = []
    for i in range(cap):
        out += ship(i, T0 + 6000 + i)
    assert len(out) == cap and all(a.state == RESOLVED for a in out)
    assert d.open_alerts() == [] and d._tracked == {}
    assert len(d._due) <= 2 * len(d._tracked) + 1024


def test_ship_by_change_moves_the_due_time() -> None:
    d = Detectors()
    d.on_order(order(1, ship_by_ms=T0 + 5 * HOUR, event_time_ms=T0))
    # the channel extended the ship-by: the old due time no longer fires
    d.on_order(order(1, ship_by_ms=T0 + 20 * HOUR, event_time_ms=T0, first_seen=False))
    assert d.on_order(order(2, event_time_ms=T0 + 2 * HOUR)) == []
    [fired] = d.on_order(order(3, event_time_ms=T0 + 16 * HOUR))
    assert fired.evidence["hours_left"] == "4.0"


# --- dead letters ------------------------------------------------------------------------------


def dead(at_ms: int, channel: str | None = "shopee", reason: str = "schema") -> DeadLetterSeen:
    return DeadLetterSeen(channel, "normalize", reason, at_ms)


def test_dead_letter_spike_fires_once_without_warmup_and_resolves() -> None:
    d = Detectors()
    alerts: list[Alert] = []
    for i in range(60):
        alerts += d.on_dead_letter(dead(T0 + i, reason="bad_sku" if i % 3 == 0 else "schema"))
    [fired] = alerts
    assert (fired.dedupe_key, fired.kind, fired.severity) == (
        "dead_letter_spike:channel:shopee",
        DEAD_LETTER_SPIKE,
        "warning",
    )
    assert fired.evidence["count"] == "20" and fired.evidence["baseline"] == "0.0"
    assert (fired.evidence["top_reason"], fired.evidence["top_reason_count"]) == ("schema", "13")

    assert d.tick(T0 + BUCKET - 1) == []
    [resolved] = d.tick(T0 + 2 * BUCKET)  # the next bucket was empty
    assert (resolved.dedupe_key, resolved.state) == (fired.dedupe_key, RESOLVED)


def test_dead_letter_unknown_channel_and_steady_trickle() -> None:
    d = Detectors()
    alerts: list[Alert] = []
    for b in range(100):
        for i in range(10):
            alerts += d.on_dead_letter(dead(T0 + b * BUCKET + i))
        alerts += d.tick(T0 + b * BUCKET + 5000)
    assert alerts == []  # 10 a bucket, every bucket: below the minimum of 20
    [fired] = [a for i in range(25) for a in d.on_dead_letter(dead(T0 + 200 * BUCKET + i, channel=None))]
    assert fired.subject == "channel:unknown"


# --- restore -----------------------------------------------------------------------------------


def test_restore_prevents_raising_open_alerts_again() -> None:
    first = Detectors()
    steady(first, 40)
    [short_alert] = first.on_reservation(short(1, T0 + 40 * BUCKET))
    spike = feed(first, (order(50_000 + i, at_ms=T0 + 40 * BUCKET + i) for i in range(40)))
    assert len(spike) == 2
    open_before = first.open_alerts()
    assert len(open_before) == 3

    # after a restart the same facts come again: nothing is raised twice
    second = Detectors()
    second.restore([*open_before, replace(short_alert, dedupe_key="oversell:sku:OTHER", state=RESOLVED)])
    assert second.open_alerts() == open_before  # the resolved one is not taken back
    replayed = second.on_reservation(short(1, T0 + 40 * BUCKET))
    replayed += feed(second, (order(60_000 + i, at_ms=T0 + 40 * BUCKET + 100 + i) for i in range(40)))
    assert replayed == []

    # and they still resolve: the spike when a bucket closes below threshold, the short after quiet time
    assert second.tick(T0 + 41 * BUCKET) == []  # the replayed bucket had 40 orders: still a spike
    resolved = second.tick(T0 + 42 * BUCKET)  # the next one had none
    assert sorted(a.dedupe_key for a in resolved) == ["order_spike:channel:shopee", "order_spike:sku:SKU-1"]
    [short_resolved] = second.tick(T0 + 40 * BUCKET + 300_000)
    assert (short_resolved.dedupe_key, short_resolved.state) == (short_alert.dedupe_key, RESOLVED)
    assert second.open_alerts() == []


def test_restore_ship_by_and_spike_without_any_fact() -> None:
    d = Detectors()
    ship_alert = Alert(
        "ship_by_risk:order:default:shopee:7", SHIP_BY_RISK, "warning", "order:default:shopee:7", FIRING, "late", {}, T0
    )
    spike_alert = Alert(
        "dead_letter_spike:channel:lazada", DEAD_LETTER_SPIKE, "warning", "channel:lazada", FIRING, "spike", {}, T0
    )
    d.restore([ship_alert, spike_alert])
    # the order is replayed, still late: no second alert; then it ships: resolved
    assert d.on_order(order(7, ship_by_ms=T0, event_time_ms=T0 + HOUR)) == []
    [resolved] = d.on_order(order(7, status="shipped", event_time_ms=T0 + HOUR, first_seen=False))
    assert resolved.dedupe_key == ship_alert.dedupe_key
    # the spike's subject never comes back: the first full bucket seen after restart closes empty
    assert d.tick(T0 + 5 * BUCKET) == []
    [spike_resolved] = d.tick(T0 + 6 * BUCKET)
    assert spike_resolved.dedupe_key == spike_alert.dedupe_key


# --- a normal day ------------------------------------------------------------------------------


CHANNELS = ("shopee", "lazada", "tiktok", "shopify", "pos")
MARKETS = ("SG", "MY")


def usual_price(rng: random.Random, base: int) -> int:
    """Within 5 % of the usual price, or a 40 % flash-sale discount one time in ten (must not fire)."""
    return int(base * (0.6 if rng.random() < 0.1 else rng.uniform(0.95, 1.05)))


def normal_stream(seed: int, buckets: int = 400, anomaly_at: int | None = None) -> tuple[Detectors, list[Alert]]:
    """A noisy but normal stream: 20-40 orders a bucket over 60 SKUs, 5 channels and 2 currencies, prices
    within 5 % with one line in ten at a 40 % flash discount, reservations that fit, a trickle of dead
    letters, orders shipped (or cancelled) 1-20 minutes after their event, 30 minutes before their
    ship-by comes within the margin. Ticks every second. ``anomaly_at``: in that bucket, also one real
    problem per detector kind that has a single-fact trigger (a wrong price, a short, a negative ledger)."""
    rng = random.Random(seed)
    skus = [f"SKU-{i}" for i in range(60)]
    base_price = {sku: rng.randrange(500, 50_000) for sku in skus}
    d = Detectors()
    alerts: list[Alert] = []
    to_ship: list[tuple[int, int, OrderSeen]] = []  # heap of (event time it ships, n, order)
    n = shipped = 0
    for b in range(buckets):
        start = T0 + b * BUCKET
        arrivals = sorted(start + rng.randrange(BUCKET) for _ in range(rng.randint(20, 40)))
        second = start
        for at in arrivals:
            while second + 1000 <= at:
                second += 1000
                alerts += d.tick(second)
            n += 1
            channel, market = rng.choice(CHANNELS), rng.choice(MARKETS)
            currency = "SGD" if market == "SG" else "MYR"
            lines = tuple(
                (sku, rng.randint(1, 3), usual_price(rng, base_price[sku]))
                for sku in rng.sample(skus, rng.randint(1, 3))
            )
            event = at - rng.randrange(5000)
            key = f"default:{channel}:{n}"
            ship_by = event + 4 * HOUR + 30 * 60_000
            o = OrderSeen(key, channel, market, "paid", rng.random() < 0.2, currency, ship_by, event, lines, at, True)
            alerts += d.on_order(o)
            for sku, qty, _ in lines:
                available, on_hand = rng.randint(0, 500), rng.randint(100, 1000)
                alerts += d.on_reservation(ReservationSeen(key, sku, qty, "reserved", available, "WH", at))
                reserved = rng.randint(0, on_hand)
                alerts += d.on_movement(MovementSeen(sku, "WH", "reserve", key, on_hand, reserved, at))
            heapq.heappush(to_ship, (event + rng.randint(60_000, 20 * 60_000), n, o))
            if rng.random() < 0.1:
                alerts += d.on_dead_letter(DeadLetterSeen(rng.choice([*CHANNELS, None]), "normalize", "schema", at))
            while to_ship and to_ship[0][0] <= event:  # handovers due by the stream's clock
                _, _, done = heapq.heappop(to_ship)
                status = "cancelled" if rng.random() < 0.05 else "shipped"
                alerts += d.on_order(replace(done, status=status, event_time_ms=event, at_ms=at, first_seen=False))
                shipped += 1
        if b == anomaly_at:
            at = start + BUCKET - 1
            wrong = (("SKU-0", 1, base_price["SKU-0"] // 10),)
            alerts += d.on_order(
                OrderSeen("default:pos:bad", "pos", "SG", "paid", False, "SGD", None, at, wrong, at, True)
            )
            alerts += d.on_reservation(ReservationSeen("default:lazada:short", "SKU-1", 1, "short", 0, None, at))
            alerts += d.on_movement(MovementSeen("SKU-2", "WH", "damage", "adj-1", 3, 5, at))
        alerts += d.tick(start + BUCKET)
    assert min(len(h) for h in d._prices.values()) >= DetectorConfig().price_min_samples  # prices were judged
    assert shipped > n * 3 // 4 and len(d._tracked) == len(to_ship)  # shipped orders are forgotten
    return d, alerts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_normal_stream_raises_nothing(seed: int) -> None:
    d, alerts = normal_stream(seed)
    assert alerts == []
    assert d.open_alerts() == []


def test_one_real_problem_in_a_normal_stream_raises_one_alert_each() -> None:
    """The quiet normal stream is not a deaf detector: the same stream with three real problems raises
    exactly those three, and each resolves by itself when its condition clears."""
    _, alerts = normal_stream(1, anomaly_at=100)
    firing = sorted(a.dedupe_key for a in alerts if a.state == FIRING)
    assert firing == ["oversell:sku:SKU-1", "oversell:sku:SKU-2@WH", "price_error:sku:SKU-0"]
    resolved = sorted(a.dedupe_key for a in alerts if a.state == RESOLVED)
    # the short and the price resolve after 5 quiet minutes; the ledger on the next good SKU-2 movement
    assert resolved == firing
    assert_transitions_consistent(alerts)


def test_config_rejects_settings_that_disable_a_detector() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(price_window=10, price_min_samples=20)
    with pytest.raises(ValueError):
        DetectorConfig(bucket_ms=0)


# --- COD fraud -----------------------------------------------------------------------------------


def test_cod_orders_to_one_phone_across_channels_raise_one_alert_that_clears_after_a_quiet_day() -> None:
    d = Detectors()
    cod = {"is_cod": True, "phone_key": "phone-1", "address_key": None}
    alerts = feed(d, (order(i, at_ms=T0 + i * 60_000, channel=("shopee", "lazada")[i % 2], **cod) for i in range(3)))
    assert alerts == [], "three COD orders to one phone in a day is below the line"
    [fired] = d.on_order(order(3, at_ms=T0 + 3 * 60_000, **cod))
    assert (fired.kind, fired.subject, fired.severity) == ("cod_fraud", "phone:phone-1", "warning")
    assert fired.evidence["cod_orders"] == "4" and fired.evidence["channels"] == "lazada,shopee"
    assert feed(d, (order(10 + i, at_ms=T0 + HOUR + i, **cod) for i in range(5))) == [], "one alert, not more"
    assert d.open_alerts()[0].evidence["cod_orders"] == "9"
    assert d.tick(T0 + 20 * HOUR) == []
    [resolved] = d.tick(T0 + HOUR + 24 * HOUR + 10)
    assert resolved.state == RESOLVED and resolved.dedupe_key == fired.dedupe_key


def test_cod_fraud_ignores_prepaid_orders_repeat_states_and_orders_a_day_apart() -> None:
    d = Detectors()
    same = {"phone_key": None, "address_key": "addr-1"}
    assert feed(d, (order(i, at_ms=T0 + i, is_cod=False, **same) for i in range(10))) == [], "prepaid: no risk"
    assert feed(d, (order(20, at_ms=T0 + i, is_cod=True, first_seen=i == 0, **same) for i in range(10))) == []
    spaced = (order(30 + i, at_ms=T0 + i * 25 * HOUR, is_cod=True, **same) for i in range(10))
    assert feed(d, spaced) == [], "one COD order a day to an address is a regular buyer"


# --- channel stock drift -------------------------------------------------------------------------


def test_a_channel_showing_more_than_we_offer_for_too_long_is_one_critical_alert_until_it_matches() -> None:
    d = Detectors(DetectorConfig(stock_drift_for_ms=600_000))
    push = ChannelStockSeen("shopee", "SKU-1", 3, "pushed", T0)
    assert d.on_channel_stock(push) == []
    assert d.on_channel_stock(ChannelStockSeen("shopee", "SKU-1", 10, "observed", T0 + 1_000)) == []
    assert d.tick(T0 + 300_000) == [], "a channel takes a while to apply a push"
    [fired] = d.tick(T0 + 601_000)
    assert (fired.kind, fired.subject, fired.severity) == ("stock_drift", "sku:SKU-1@shopee", "critical")
    assert fired.evidence["shown"] == "10" and fired.evidence["ours"] == "3"
    assert d.tick(T0 + 900_000) == [], "once"
    [resolved] = d.on_channel_stock(ChannelStockSeen("shopee", "SKU-1", 3, "observed", T0 + 950_000))
    assert resolved.state == RESOLVED and resolved.dedupe_key == fired.dedupe_key


def test_a_transient_difference_and_a_channel_showing_less_behave_as_they_should() -> None:
    d = Detectors(DetectorConfig(stock_drift_for_ms=600_000))
    d.on_channel_stock(ChannelStockSeen("lazada", "SKU-2", 5, "observed", T0))
    d.on_channel_stock(ChannelStockSeen("lazada", "SKU-2", 7, "pushed", T0 + 1_000))
    assert d.on_channel_stock(ChannelStockSeen("lazada", "SKU-2", 7, "observed", T0 + 60_000)) == []
    assert d.tick(T0 + 3_600_000) == [], "the channel applied the push within a minute: no drift"
    d.on_channel_stock(ChannelStockSeen("lazada", "SKU-2", 9, "pushed", T0 + 3_600_000))
    [fired] = d.tick(T0 + 3_600_000 + 600_000)
    assert fired.severity == "warning" and "sales are lost" in fired.summary
    assert d._drifting == {("lazada", "SKU-2")}


def test_a_cod_fraud_alert_restored_after_a_restart_takes_more_orders_and_still_clears() -> None:
    first = Detectors()
    cod = {"is_cod": True, "phone_key": "phone-9"}
    [fired] = feed(first, (order(i, at_ms=T0 + i, **cod) for i in range(4)))
    again = Detectors()
    again.restore([fired])
    assert feed(again, (order(10 + i, at_ms=T0 + HOUR + i, **cod) for i in range(4))) == [], "still one alert"
    [resolved] = again.tick(T0 + HOUR + 25 * HOUR)
    assert resolved.state == RESOLVED and resolved.dedupe_key == fired.dedupe_key
