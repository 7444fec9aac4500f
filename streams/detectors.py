"""Anomaly detectors over the order, reservation, ledger and dead-letter streams. Pure.

A runner feeds facts from Kafka into one ``Detectors`` and publishes the alert transitions it
returns. Nothing here reads a clock, sleeps or does I/O: every time is an argument in epoch
milliseconds, so a replay of the same facts and ticks gives the same alerts.

Why the shape:
- One open alert per condition. Each alert has a ``dedupe_key`` (``kind:subject``); while a key is
  open, the same condition again changes internal state only. A human on call gets one message per
  problem, then one ``resolved`` when it clears, never a storm.
- Every detector clears itself: by quiet time (shorts, wrong prices), by the next good fact (ledger
  below zero, order shipped) or by a bucket closing below its threshold (spikes). An alert nobody
  can resolve by hand would stay open forever.
- Memory is bounded by the catalogue (SKUs, channels) and by the orders still waiting to ship, never
  by time: rate buckets, price histories and tracked orders are pruned as they go.
- ``restore`` takes back the alerts that were open before a restart, so replayed facts do not raise
  them again.

Detectors (``DetectorConfig`` has the numbers):
- oversell (critical): a channel sold stock we do not have (a "short" reservation) per SKU; or a
  warehouse's available (on hand - reserved) went below zero per SKU and warehouse.
- order_spike (warning): orders per SKU or per channel in a bucket far above their trailing baseline.
- price_error (critical): a unit sold far below the trailing median price of its SKU and currency.
- ship_by_risk (warning): an order not shipped within the margin of its ship-by time, by the stream's
  event clock; beyond ``max_ship_by_alerts`` open ones, a single summary alert counts the rest.
- dead_letter_spike (warning): dead letters per channel in a bucket far above their baseline.
- stock_drift (critical when the channel shows more than we offer, else warning): what a channel
  shows for a SKU differs from what we pushed, for longer than ``stock_drift_for_ms``.
- cod_fraud (warning): many COD orders to one phone or one address (hashed) within a day, across
  channels: fake orders, or a buyer who will refuse the parcels.
"""

from __future__ import annotations

import heapq
import statistics
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from streams.routing import money as _money

FIRING = "firing"
RESOLVED = "resolved"

CRITICAL = "critical"
WARNING = "warning"
INFO = "info"

OVERSELL = "oversell"
ORDER_SPIKE = "order_spike"
PRICE_ERROR = "price_error"
SHIP_BY_RISK = "ship_by_risk"
COD_FRAUD = "cod_fraud"
STOCK_DRIFT = "stock_drift"
DEAD_LETTER_SPIKE = "dead_letter_spike"

#: the subject of the one alert that counts the at-risk orders beyond ``max_ship_by_alerts``
SHIP_BY_SUMMARY_SUBJECT = "orders:ship_by"

#: canonical statuses (schemas.order.OrderStatus) of an order that should ship and has not; unpaid cannot ship
AT_RISK_STATUSES: tuple[str, ...] = ("paid", "processing")

_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Alert:
    """One transition of one alert: ``firing`` once when the condition starts, ``resolved`` once when it ends."""

    dedupe_key: str
    kind: str
    severity: str
    subject: str
    state: str
    summary: str
    evidence: dict[str, str]
    at_ms: int


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds. Defaults are tuned so a noisy but normal day (flash sales included) raises nothing."""

    bucket_ms: int = 10_000
    baseline_buckets: int = 30
    warmup_buckets: int = 6
    spike_factor: float = 4.0
    spike_min_orders: int = 30
    price_ratio: float = 0.3
    price_min_samples: int = 20
    price_window: int = 200
    price_quiet_ms: int = 300_000
    oversell_quiet_ms: int = 300_000
    ship_by_margin_ms: int = 4 * _HOUR_MS
    dead_letter_factor: float = 4.0
    dead_letter_min: int = 20
    dead_letter_warmup_buckets: int = 0
    #: COD fraud: this many COD orders to one phone or one address within the window
    cod_fraud_min_orders: int = 4
    cod_fraud_window_ms: int = 24 * _HOUR_MS
    #: contacts remembered for COD fraud (oldest forgotten first)
    cod_fraud_contacts: int = 200_000
    #: stock drift: what a channel shows differs from what we pushed for this long
    stock_drift_for_ms: int = 15 * 60_000
    stock_drift_pairs: int = 500_000
    #: individual ship-by alerts open at once; further at-risk orders are counted in one summary alert
    max_ship_by_alerts: int = 50
    #: an order must stay at risk this long in arrival time before it alerts: a burst of late-arriving
    #: events (a channel catching up, a replay) moves the clock ahead of updates still on their way
    ship_by_confirm_ms: int = 0
    #: statuses that still count as "not shipped yet" for ship-by risk
    ship_by_risk_statuses: tuple[str, ...] = AT_RISK_STATUSES

    def __post_init__(self) -> None:
        # Misconfigurations that would silently disable a detector (or divide by zero) fail loudly.
        if self.bucket_ms <= 0 or self.baseline_buckets < 1:
            raise ValueError("bucket_ms and baseline_buckets must be positive")
        if self.price_min_samples < 1 or self.price_window < self.price_min_samples:
            raise ValueError("need 1 <= price_min_samples <= price_window")
        if self.max_ship_by_alerts < 0:
            raise ValueError("max_ship_by_alerts must not be negative")


@dataclass(frozen=True)
class OrderSeen:
    """One state of an order, as the canonical order stream carried it."""

    order_key: str
    channel: str
    market: str
    status: str
    is_cod: bool
    currency: str
    ship_by_ms: int | None
    event_time_ms: int
    lines: tuple[tuple[str, int, int], ...]
    at_ms: int
    first_seen: bool
    #: hashed buyer phone and street line (schemas.order.contact_key); None when the channel hid them
    phone_key: str | None = None
    address_key: str | None = None


@dataclass(frozen=True)
class ReservationSeen:
    """One reservation decision for one order line."""

    order_key: str
    sku: str
    quantity: int
    state: str
    available: int
    warehouse: str | None
    at_ms: int


@dataclass(frozen=True)
class MovementSeen:
    """One inventory ledger entry: the stock of a SKU in a warehouse after a movement."""

    sku: str
    warehouse: str
    cause: str
    ref: str
    on_hand_after: int
    reserved_after: int
    at_ms: int


@dataclass(frozen=True)
class DeadLetterSeen:
    """One record that a stage could not process."""

    channel: str | None
    stage: str
    reason_code: str
    at_ms: int


@dataclass(frozen=True)
class ChannelStockSeen:
    """Available-to-sell of one SKU on one channel: what we pushed (``pushed``) or what the channel was
    seen showing (``observed``, from a connector reading the listing back)."""

    channel: str
    sku: str
    quantity: int
    kind: str  # "pushed" | "observed"
    at_ms: int


@dataclass
class _Drift:
    pushed: int | None = None
    observed: int | None = None
    since_ms: int | None = None  # when they started to differ (arrival time)


# --- small pure helpers -------------------------------------------------------------------------


def _key(kind: str, subject: str) -> str:
    return f"{kind}:{subject}"


def _num(x: float) -> str:
    """A number for a human: integers without a decimal point, anything else with one decimal."""
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC (a conversion of the given time, not a clock read)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _channel_of(order_key: str) -> str:
    """The channel is the second field of ``tenant:channel:channel_order_id``."""
    parts = order_key.split(":", 2)
    return parts[1] if len(parts) >= 2 else "unknown"


def _int_or(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _hours_left(ship_by_ms: int, clock_ms: int) -> str:
    return f"{(ship_by_ms - clock_ms) / _HOUR_MS:.1f}"


# --- rate buckets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RateRule:
    """When a bucket count is a spike: ``count >= max(minimum, factor * baseline)`` after ``warmup`` buckets."""

    bucket_ms: int
    baseline_buckets: int
    warmup: int
    factor: float
    minimum: int


@dataclass
class _Rate:
    """One subject's counts in its last ``baseline_buckets + 1`` buckets (missing bucket = 0)."""

    first_bucket: int
    current: int
    counts: dict[int, int] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)  # of the current bucket only


@dataclass(frozen=True)
class _Spike:
    count: int
    baseline: float
    threshold: float
    top_reason: tuple[str, int] | None


def _baseline(rate: _Rate, bucket: int, n: int) -> float:
    """Mean count of the up to ``n`` buckets before ``bucket``, counting only those since the subject
    was first seen: a new subject's baseline is not diluted by buckets from before it existed."""
    start = max(rate.first_bucket, bucket - n)
    span = bucket - start
    if span <= 0:
        return 0.0
    return sum(rate.counts.get(b, 0) for b in range(start, bucket)) / span


def _threshold(rule: _RateRule, baseline: float) -> float:
    """The floor keeps a quiet subject (baseline near 0) from alerting on a handful of facts."""
    return max(float(rule.minimum), rule.factor * baseline)


def _prune(counts: dict[int, int], oldest: int) -> None:
    """Forget buckets older than ``oldest``: keeps memory at ``baseline_buckets + 1`` per subject."""
    for b in [b for b in counts if b < oldest]:
        del counts[b]


class _Rates:
    """Per-subject bucket counts for one kind of spike."""

    def __init__(self, rule: _RateRule) -> None:
        self.rule = rule
        self.subjects: dict[str, _Rate] = {}

    def _rate(self, subject: str, bucket: int) -> _Rate:
        rate = self.subjects.get(subject)
        if rate is None:
            rate = self.subjects[subject] = _Rate(first_bucket=bucket, current=bucket)
        return rate

    def roll(self, subject: str, at_ms: int) -> bool:
        """Move the subject to the bucket of ``at_ms``. True when that closed a bucket below its threshold
        (skipped buckets count: they were empty)."""
        bucket = at_ms // self.rule.bucket_ms
        rate = self._rate(subject, bucket)
        if bucket <= rate.current:
            return False
        closed = rate.counts.get(rate.current, 0)
        threshold = _threshold(self.rule, _baseline(rate, rate.current, self.rule.baseline_buckets))
        below = closed == 0 or closed < threshold or bucket > rate.current + 1
        rate.current = bucket
        rate.reasons.clear()
        _prune(rate.counts, bucket - self.rule.baseline_buckets)
        return below

    def add(self, subject: str, at_ms: int, reason: str | None = None) -> tuple[bool, _Spike | None]:
        """Count one fact. Returns (a bucket closed below threshold, the spike if this bucket is one).
        A fact older than the subject's current bucket counts in the current one: arrival times are
        nearly monotonic, and a bucket already judged is not judged again."""
        closed_below = self.roll(subject, at_ms)
        rate = self.subjects[subject]
        bucket = rate.current
        count = rate.counts[bucket] = rate.counts.get(bucket, 0) + 1
        if reason is not None:
            rate.reasons[reason] += 1
        if bucket - rate.first_bucket < self.rule.warmup:
            return closed_below, None
        baseline = _baseline(rate, bucket, self.rule.baseline_buckets)
        threshold = _threshold(self.rule, baseline)
        if count < threshold:
            return closed_below, None
        top = rate.reasons.most_common(1)
        return closed_below, _Spike(count, baseline, threshold, top[0] if top else None)


# --- the detectors ------------------------------------------------------------------------------


@dataclass
class _Quiet:
    """An alert that resolves after ``quiet_ms`` without a repeat; ``count`` counts the repeats."""

    last_ms: int
    count: int
    quiet_ms: int
    count_field: str


@dataclass(frozen=True)
class _Tracked:
    """An order that has a ship-by time and has not shipped yet."""

    ship_by_ms: int
    status: str
    channel: str
    market: str


class Detectors:
    """All detectors and the open alerts. Each ``on_*``/``tick`` returns the transitions it caused."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = cfg = config or DetectorConfig()
        self._open: dict[str, Alert] = {}
        self._quiet: dict[str, _Quiet] = {}
        self._order_rates = _Rates(
            _RateRule(cfg.bucket_ms, cfg.baseline_buckets, cfg.warmup_buckets, cfg.spike_factor, cfg.spike_min_orders)
        )
        self._dead_letter_rates = _Rates(
            _RateRule(
                cfg.bucket_ms,
                cfg.baseline_buckets,
                cfg.dead_letter_warmup_buckets,
                cfg.dead_letter_factor,
                cfg.dead_letter_min,
            )
        )
        self._prices: dict[tuple[str, str], deque[int]] = {}
        self._clock: int | None = None  # max event time of the orders seen: the ship-by clock
        self._tracked: dict[str, _Tracked] = {}
        self._due: list[tuple[int, str, int]] = []  # heap of (ship_by - margin, order_key, ship_by)
        self._ship_alerted: set[str] = set()  # order keys with an open individual ship-by alert
        self._overflow: set[str] = set()  # at-risk order keys counted in the summary alert instead
        self._cod: dict[str, deque[tuple[int, str, str]]] = {}  # contact -> recent COD orders (at, key, channel)
        self._drift: dict[tuple[str, str], _Drift] = {}  # (channel, sku) -> pushed vs observed
        self._drifting: set[tuple[str, str]] = set()  # the pairs that differ now
        self._pending: dict[str, int] = {}  # at risk, waiting out ship_by_confirm_ms: key -> since (arrival)

    # --- the public surface ---

    def on_order(self, order: OrderSeen) -> list[Alert]:
        """Spikes and prices on an order's first state only (a status change is not a new sale); ship-by
        risk on every state, since that is how an order leaves the risk."""
        out: list[Alert] = []
        if order.first_seen:  # rates and prices count an order once
            out += self._count_order(order)
            out += self._check_prices(order)
            if order.is_cod:
                out += self._check_cod(order)
        out += self._track_ship_by(order)
        out += self._check_ship_by(order.at_ms)
        return out

    def on_reservation(self, r: ReservationSeen) -> list[Alert]:
        """A short is a sale of stock we do not have; more shorts of the SKU while open only count."""
        if r.state != "short":
            return []
        subject = f"sku:{r.sku}"
        key = _key(OVERSELL, subject)
        if key in self._open:
            return self._repeat(key, r.at_ms)
        channel = _channel_of(r.order_key)
        evidence = {
            "order_key": r.order_key,
            "channel": channel,
            "quantity": str(r.quantity),
            "available": str(r.available),
            "warehouse": r.warehouse or "",
            "shorts": "1",
        }
        summary = (
            f"{r.sku} oversold: {channel} sold {r.quantity} that no node serving the order could reserve "
            f"(order {r.order_key})"
        )
        self._quiet[key] = _Quiet(r.at_ms, 1, self.config.oversell_quiet_ms, "shorts")
        return self._raise(OVERSELL, CRITICAL, subject, summary, evidence, r.at_ms)

    def on_movement(self, m: MovementSeen) -> list[Alert]:
        """Available below zero at a warehouse; the next movement that brings it back resolves it."""
        subject = f"sku:{m.sku}@{m.warehouse}"
        available = m.on_hand_after - m.reserved_after
        if available >= 0:
            return self._resolve(_key(OVERSELL, subject), m.at_ms, f"available back to {available} ({m.cause} {m.ref})")
        evidence = {
            "on_hand": str(m.on_hand_after),
            "reserved": str(m.reserved_after),
            "available": str(available),
            "cause": m.cause,
            "ref": m.ref,
        }
        summary = (
            f"{m.sku} at {m.warehouse} below zero: {m.on_hand_after} on hand, {m.reserved_after} reserved "
            f"(after {m.cause} {m.ref})"
        )
        return self._raise(OVERSELL, CRITICAL, subject, summary, evidence, m.at_ms)

    def on_channel_stock(self, c: ChannelStockSeen) -> list[Alert]:
        """What a channel shows against what we pushed; the drift alerts on ``tick`` once it lasted."""
        pair = (c.channel, c.sku)
        drift = self._drift.pop(pair, None) or _Drift()
        self._drift[pair] = drift  # most recently used last: the oldest pair is forgotten first
        if len(self._drift) > self.config.stock_drift_pairs:
            self._drift.pop(next(iter(self._drift)))
        if c.kind == "pushed":
            drift.pushed = c.quantity
        else:
            drift.observed = c.quantity
        if drift.pushed is None or drift.observed is None or drift.pushed == drift.observed:
            drift.since_ms = None
            self._drifting.discard(pair)
            return self._resolve(
                _key(STOCK_DRIFT, f"sku:{c.sku}@{c.channel}"), c.at_ms, f"{c.channel} shows what we pushed"
            )
        if drift.since_ms is None:
            drift.since_ms = c.at_ms
            self._drifting.add(pair)
        return self._check_drift(pair, drift, c.at_ms)

    def _check_drift(self, pair: tuple[str, str], drift: _Drift, now_ms: int) -> list[Alert]:
        channel, sku = pair
        subject = f"sku:{sku}@{channel}"
        key = _key(STOCK_DRIFT, subject)
        if drift.since_ms is None or drift.pushed is None or drift.observed is None:
            return []
        if key in self._open:
            self._update_evidence(key, shown=str(drift.observed), ours=str(drift.pushed))
            return []
        lasted = now_ms - drift.since_ms
        if lasted < self.config.stock_drift_for_ms:
            return []
        more = drift.observed > drift.pushed  # the channel offers units we do not have: it will oversell
        evidence = {
            "channel": channel,
            "shown": str(drift.observed),
            "ours": str(drift.pushed),
            "minutes": _num(lasted / 60_000),
        }
        summary = (
            f"{channel} shows {drift.observed} of {sku} but we offer {drift.pushed}, for {_num(lasted / 60_000)} min"
            + (": it can sell stock we do not have" if more else ": sales are lost")
        )
        return self._raise(STOCK_DRIFT, CRITICAL if more else WARNING, subject, summary, evidence, now_ms)

    def on_dead_letter(self, d: DeadLetterSeen) -> list[Alert]:
        """A burst of dead letters from one channel usually means its payload format changed."""
        subject = f"channel:{d.channel or 'unknown'}"
        return self._count(DEAD_LETTER_SPIKE, self._dead_letter_rates, subject, d.at_ms, d.reason_code)

    def tick(self, now_ms: int) -> list[Alert]:
        """Time-based resolves (quiet alerts, spike buckets that closed) and ship-by checks."""
        out: list[Alert] = []
        for key in sorted(self._quiet):
            quiet = self._quiet[key]
            if now_ms - quiet.last_ms >= quiet.quiet_ms:
                del self._quiet[key]
                out += self._resolve(key, now_ms, f"quiet for {_num(quiet.quiet_ms / 1000)}s")
        for alert in sorted(self._open.values(), key=lambda a: a.dedupe_key):
            if alert.kind == ORDER_SPIKE:
                out += self._close_bucket(alert, self._order_rates, now_ms)
            elif alert.kind == DEAD_LETTER_SPIKE:
                out += self._close_bucket(alert, self._dead_letter_rates, now_ms)
        out += self._check_ship_by(now_ms)
        for pair in sorted(self._drifting):  # only the pairs that differ: few, unlike the catalogue
            drift = self._drift.get(pair)
            if drift is None:  # forgotten (bounded memory)
                self._drifting.discard(pair)
            else:
                out += self._check_drift(pair, drift, now_ms)
        return out

    def open_alerts(self) -> list[Alert]:
        """The firing alerts with their current numbers (counts kept up to date while open)."""
        return sorted(self._open.values(), key=lambda a: a.dedupe_key)

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Take back the alerts open before a restart, with just enough state for each to resolve later.
        Quiet alerts count their quiet time from when they fired; spikes from the next bucket seen."""
        for alert in alerts:
            if alert.state != FIRING:
                continue
            self._open[alert.dedupe_key] = alert
            if alert.kind == OVERSELL and "@" not in alert.subject:
                shorts = _int_or(alert.evidence.get("shorts"), 1)
                self._quiet[alert.dedupe_key] = _Quiet(alert.at_ms, shorts, self.config.oversell_quiet_ms, "shorts")
            elif alert.kind == PRICE_ERROR:
                sales = _int_or(alert.evidence.get("cheap_sales"), 1)
                self._quiet[alert.dedupe_key] = _Quiet(alert.at_ms, sales, self.config.price_quiet_ms, "cheap_sales")
            elif alert.kind == SHIP_BY_RISK and alert.subject.startswith("order:"):
                self._ship_alerted.add(alert.subject.removeprefix("order:"))
            elif alert.kind == COD_FRAUD:
                orders = _int_or(alert.evidence.get("cod_orders"), 1)
                window = self.config.cod_fraud_window_ms
                self._quiet[alert.dedupe_key] = _Quiet(alert.at_ms, orders, window, "cod_orders")

    # --- transitions ---

    def _raise(
        self, kind: str, severity: str, subject: str, summary: str, evidence: dict[str, str], at_ms: int
    ) -> list[Alert]:
        """Open an alert unless its key is open already: the one place that keeps alerts from storming."""
        key = _key(kind, subject)
        if key in self._open:
            return []
        alert = Alert(key, kind, severity, subject, FIRING, summary, evidence, at_ms)
        self._open[key] = alert
        return [alert]

    def _resolve(self, key: str, at_ms: int, why: str) -> list[Alert]:
        alert = self._open.pop(key, None)
        if alert is None:
            return []
        return [replace(alert, state=RESOLVED, at_ms=at_ms, summary=f"resolved ({why}); was: {alert.summary}")]

    def _update_evidence(self, key: str, **changes: str) -> None:
        """Keep the numbers of an open alert current without emitting anything (``open_alerts`` shows them)."""
        alert = self._open.get(key)
        if alert is not None:
            self._open[key] = replace(alert, evidence={**alert.evidence, **changes})

    def _repeat(self, key: str, at_ms: int) -> list[Alert]:
        """The condition of an open quiet alert happened again: restart its quiet time, count it."""
        quiet = self._quiet[key]
        quiet.last_ms = max(quiet.last_ms, at_ms)
        quiet.count += 1
        self._update_evidence(key, **{quiet.count_field: str(quiet.count)})
        return []

    # --- spikes ---

    def _count_order(self, order: OrderSeen) -> list[Alert]:
        out = self._count(ORDER_SPIKE, self._order_rates, f"channel:{order.channel}", order.at_ms)
        for sku in sorted({sku for sku, _, _ in order.lines}):  # orders containing the SKU, not units
            out += self._count(ORDER_SPIKE, self._order_rates, f"sku:{sku}", order.at_ms)
        return out

    def _count(self, kind: str, rates: _Rates, subject: str, at_ms: int, reason: str | None = None) -> list[Alert]:
        closed_below, spike = rates.add(subject, at_ms, reason)
        out = self._resolve(_key(kind, subject), at_ms, "bucket closed below threshold") if closed_below else []
        if spike is not None and _key(kind, subject) not in self._open:  # the check spares building the text
            out += self._raise(kind, WARNING, subject, *self._spike_text(kind, rates.rule, subject, spike), at_ms)
        return out

    def _close_bucket(self, alert: Alert, rates: _Rates, now_ms: int) -> list[Alert]:
        if rates.roll(alert.subject, now_ms):
            return self._resolve(alert.dedupe_key, now_ms, "bucket closed below threshold")
        return []

    def _spike_text(self, kind: str, rule: _RateRule, subject: str, spike: _Spike) -> tuple[str, dict[str, str]]:
        what = "orders" if kind == ORDER_SPIKE else "dead letters"
        bucket_s = _num(rule.bucket_ms / 1000)
        evidence = {
            "count": str(spike.count),
            "baseline": f"{spike.baseline:.1f}",
            "threshold": _num(spike.threshold),
            "bucket_s": bucket_s,
            "factor": _num(rule.factor),
        }
        summary = f"{what} spike on {subject}: {spike.count} in {bucket_s}s vs baseline {spike.baseline:.1f}"
        if spike.top_reason is not None:
            reason, count = spike.top_reason
            evidence |= {"top_reason": reason, "top_reason_count": str(count)}
            summary += f", mostly {reason} ({count})"
        return summary, evidence

    # --- prices ---

    def _check_prices(self, order: OrderSeen) -> list[Alert]:
        out: list[Alert] = []
        for sku, _quantity, price in order.lines:
            history = self._prices.get((sku, order.currency))
            if history is None:
                history = self._prices[(sku, order.currency)] = deque(maxlen=self.config.price_window)
            if len(history) >= self.config.price_min_samples:
                median = statistics.median(history)
                if price < self.config.price_ratio * median:
                    out += self._price_error(order, sku, price, median)
                    continue  # one wrong price must not drag the median down
            history.append(price)  # the deque drops the oldest beyond price_window
        return out

    def _price_error(self, order: OrderSeen, sku: str, price: int, median: float) -> list[Alert]:
        subject = f"sku:{sku}"
        key = _key(PRICE_ERROR, subject)
        if key in self._open:
            return self._repeat(key, order.at_ms)
        ratio = price / median if median else 0.0
        evidence = {
            "order_key": order.order_key,
            "channel": order.channel,
            "price": str(price),
            "median": _num(median),
            "currency": order.currency,
            "ratio": f"{ratio:.2f}",
            "max_ratio": f"{self.config.price_ratio:g}",
            "cheap_sales": "1",
        }
        summary = (
            f"{sku} sold on {order.channel} at {_money(price, order.currency)}, {ratio:.2f}x its median "
            f"{_money(int(median), order.currency)} (order {order.order_key})"
        )
        self._quiet[key] = _Quiet(order.at_ms, 1, self.config.price_quiet_ms, "cheap_sales")
        return self._raise(PRICE_ERROR, CRITICAL, subject, summary, evidence, order.at_ms)

    # --- COD fraud ---

    def _check_cod(self, order: OrderSeen) -> list[Alert]:
        """Many COD orders to one phone or one address in a day: fake orders or a buyer who refuses parcels."""
        out: list[Alert] = []
        window, least = self.config.cod_fraud_window_ms, self.config.cod_fraud_min_orders
        for label, contact in (("phone", order.phone_key), ("address", order.address_key)):
            if contact is None:
                continue
            seen = self._cod.pop(contact, None) or deque()
            self._cod[contact] = seen  # most recently used last: the oldest contact is forgotten first
            if len(self._cod) > self.config.cod_fraud_contacts:
                self._cod.pop(next(iter(self._cod)))
            seen.append((order.at_ms, order.order_key, order.channel))
            while seen and seen[0][0] <= order.at_ms - window:
                seen.popleft()
            while len(seen) > 4 * least:  # enough evidence; bounded
                seen.popleft()
            subject = f"{label}:{contact}"
            key = _key(COD_FRAUD, subject)
            if key in self._open:  # restore() gives a restored alert its quiet timer too
                quiet = self._quiet[key]
                quiet.last_ms = max(quiet.last_ms, order.at_ms)
                self._update_evidence(key, cod_orders=str(len(seen)), last_order=order.order_key)
                continue
            if len(seen) < least:
                continue
            channels = sorted({channel for _, _, channel in seen})
            evidence = {
                "cod_orders": str(len(seen)),
                "window_h": _num(window / _HOUR_MS),
                "orders": ",".join(k for _, k, _ in list(seen)[-5:]),
                "channels": ",".join(channels),
                "market": order.market,
                "last_order": order.order_key,
            }
            summary = (
                f"{len(seen)} COD orders to one {label} within {_num(window / _HOUR_MS)}h on "
                f"{', '.join(channels)} ({order.market}); latest {order.order_key}"
            )
            self._quiet[key] = _Quiet(order.at_ms, len(seen), window, "cod_orders")
            out += self._raise(COD_FRAUD, WARNING, subject, summary, evidence, order.at_ms)
        return out

    # --- ship-by ---

    def _track_ship_by(self, order: OrderSeen) -> list[Alert]:
        """Follow the orders that can still miss their ship-by; forget them once they leave that state."""
        self._clock = order.event_time_ms if self._clock is None else max(self._clock, order.event_time_ms)
        key = order.order_key
        if order.status not in self.config.ship_by_risk_statuses:
            return self._untrack(key, order.at_ms, order.status)
        previous = self._tracked.get(key)
        ship_by = order.ship_by_ms
        if ship_by is None:  # a later state without the ship-by keeps the one we know
            if previous is None:
                return []
            ship_by = previous.ship_by_ms
        self._tracked[key] = _Tracked(ship_by, order.status, order.channel, order.market)
        if previous is None or previous.ship_by_ms != ship_by:
            heapq.heappush(self._due, (ship_by - self.config.ship_by_margin_ms, key, ship_by))
            self._compact_due()
        return []

    def _untrack(self, key: str, at_ms: int, status: str) -> list[Alert]:
        if self._tracked.pop(key, None) is not None:
            self._compact_due()
        self._overflow.discard(key)  # the summary's count follows in _ship_by_summary
        self._pending.pop(key, None)
        self._ship_alerted.discard(key)
        return self._resolve(_key(SHIP_BY_RISK, f"order:{key}"), at_ms, f"now {status}")

    def _check_ship_by(self, at_ms: int) -> list[Alert]:
        """Raise the orders whose ship-by came within the margin of the event clock, in due order."""
        if self._clock is None:
            return []  # no order seen since start: the clock is unknown
        out: list[Alert] = []
        while self._due and self._due[0][0] <= self._clock:
            _, key, ship_by = heapq.heappop(self._due)
            tracked = self._tracked.get(key)
            if tracked is None or tracked.ship_by_ms != ship_by or key in self._ship_alerted or key in self._overflow:
                continue  # shipped, moved, or already counted: a stale heap entry
            self._pending.setdefault(key, at_ms)
        confirm = self.config.ship_by_confirm_ms
        while self._pending:  # in the order they became at risk
            key, since = next(iter(self._pending.items()))
            if at_ms - since < confirm:
                break
            del self._pending[key]
            tracked = self._tracked.get(key)
            if tracked is None or key in self._ship_alerted or key in self._overflow:
                continue
            if len(self._ship_alerted) < self.config.max_ship_by_alerts:
                out += self._at_risk(key, tracked, self._clock, at_ms)
            else:
                self._overflow.add(key)
        return out + self._ship_by_summary(at_ms)

    def _ship_by_summary(self, at_ms: int) -> list[Alert]:
        """One alert for all the at-risk orders beyond the cap, raised with the count after a whole check."""
        key = _key(SHIP_BY_RISK, SHIP_BY_SUMMARY_SUBJECT)
        if not self._overflow:
            return self._resolve(key, at_ms, "no order beyond the cap at risk")
        count, cap = str(len(self._overflow)), self.config.max_ship_by_alerts
        if key in self._open:
            self._update_evidence(key, count=count)
            return []
        summary = f"{count} more orders at ship-by risk beyond the {cap} alerted one by one"
        evidence = {"count": count, "cap": str(cap)}
        return self._raise(SHIP_BY_RISK, WARNING, SHIP_BY_SUMMARY_SUBJECT, summary, evidence, at_ms)

    def _at_risk(self, key: str, tracked: _Tracked, clock: int, at_ms: int) -> list[Alert]:
        self._ship_alerted.add(key)
        hours = _hours_left(tracked.ship_by_ms, clock)
        evidence = {
            "ship_by": _iso(tracked.ship_by_ms),
            "hours_left": hours,
            "status": tracked.status,
            "channel": tracked.channel,
            "market": tracked.market,
        }
        summary = f"order {key} ({tracked.channel}) still {tracked.status}, ship-by {_iso(tracked.ship_by_ms)}"
        summary += f", {hours}h left" if not hours.startswith("-") else f", {hours.removeprefix('-')}h late"
        return self._raise(SHIP_BY_RISK, WARNING, f"order:{key}", summary, evidence, at_ms)

    def _compact_due(self) -> None:
        """Drop stale heap entries (shipped or moved orders) once they outnumber the live ones by far: keeps
        the heap bounded by the tracked orders, at an amortized constant cost."""
        if len(self._due) <= 2 * len(self._tracked) + 1024:
            return
        self._due = [
            (t.ship_by_ms - self.config.ship_by_margin_ms, key, t.ship_by_ms)
            for key, t in self._tracked.items()
            if key not in self._ship_alerted and key not in self._overflow
        ]
        heapq.heapify(self._due)
