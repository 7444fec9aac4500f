"""Alerts at the Kafka edge: the detectors' loop (facts in, alerts.v1 out) and the webhook delivery.

The detectors (streams/detectors.py, pure) see orders, reservations, the stock ledger and dead letters
as they arrive and return alert transitions. ``AlertBook`` gives each occurrence an id and a revision,
folds in operators' acks (alert-actions.v1) and writes every state to alerts.v1, keyed by dedupe key.
On start the book is rebuilt from alerts.v1, so an alert still open is not raised again after a
restart. Offsets are committed only after the alerts they caused are durable.

Delivery reads alerts.v1 in its own consumer group and posts each state to the webhook as Slack-
compatible JSON, retrying with back-off without end; an alert is committed only once delivered, in order.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from oms.routing_ops import read_topic
from oms.settings import Settings
from schemas.codec import CodecError, codec
from schemas.order import DeadLetter, OrderEvent, reservation_records
from schemas.topics import (
    ALERT_ACTIONS,
    ALERTS,
    CHANNEL_STOCK,
    CHANNEL_STOCK_OBSERVED,
    DEAD_LETTERS,
    INVENTORY,
    ORDERS,
    RESERVATIONS,
)
from streams.detectors import (
    Alert,
    ChannelStockSeen,
    DeadLetterSeen,
    DetectorConfig,
    Detectors,
    MovementSeen,
    OrderSeen,
    ReservationSeen,
)

log = logging.getLogger(__name__)

SEVERITY_ICON = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


@dataclass
class AlertBook:
    """Open alerts by dedupe key, as records of alert.v1 (dicts), and the transitions to publish.

    No storms: with ``cap_per_kind`` alerts of one kind open (a sold-out catalogue, a carrier outage),
    further ones of that kind are counted in one summary alert ``kind:*`` instead of each raising its
    own; the summary resolves when every one it counted has.
    """

    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    cap_per_kind: int = 20
    overflow: dict[str, set[str]] = field(default_factory=dict)

    def apply(self, alert: Alert) -> dict[str, Any] | None:
        """A detector transition -> the alert record to publish (None if it changes nothing)."""
        current = self.open.get(alert.dedupe_key)
        if alert.state == "firing":
            if current is not None or alert.dedupe_key in self.overflow.get(alert.kind, ()):
                return None
            if sum(r["kind"] == alert.kind and r["subject"] != "*" for r in self.open.values()) >= self.cap_per_kind:
                return self._overflow(alert)
            record = self._record(alert, alert.dedupe_key, alert.subject, alert.summary, dict(alert.evidence))
            self.open[alert.dedupe_key] = record
            return record
        counted = self.overflow.get(alert.kind, set())
        if alert.dedupe_key in counted:
            counted.discard(alert.dedupe_key)
            summary_key = f"{alert.kind}:*"
            if counted or summary_key not in self.open:
                return None
            alert = Alert(
                summary_key, alert.kind, alert.severity, "*", "resolved",
                f"every further {alert.kind} alert has cleared", {"count": "0"}, alert.at_ms,
            )  # fmt: skip
            current = self.open[summary_key]
        elif current is None and not counted and f"{alert.kind}:*" in self.open:
            # a summary restored after a restart does not know what it counted: the first clear closes it
            return self.apply(
                Alert(
                    f"{alert.kind}:*",
                    alert.kind,
                    alert.severity,
                    "*",
                    "resolved",
                    f"further {alert.kind} alerts have cleared",
                    {"count": "0"},
                    alert.at_ms,
                )
            )
        if current is None:
            return None
        del self.open[alert.dedupe_key]
        evidence = {**current["evidence"], **alert.evidence}
        return {
            **current,
            "state": "resolved",
            "summary": alert.summary,
            "evidence": evidence,
            "updated_ms": alert.at_ms,
            "revision": current["revision"] + 1,
        }

    def _overflow(self, alert: Alert) -> dict[str, Any] | None:
        counted = self.overflow.setdefault(alert.kind, set())
        counted.add(alert.dedupe_key)
        key = f"{alert.kind}:*"
        if key in self.open:
            self.open[key]["evidence"]["count"] = str(len(counted))  # counted, not re-sent
            return None
        summary = (
            f"more than {self.cap_per_kind} {alert.kind} alerts at once: further ones are counted here, "
            f"first {alert.subject}: {alert.summary}"
        )
        record = self._record(alert, key, "*", summary, {"count": "1", "first": alert.subject})
        self.open[key] = record
        return record

    @staticmethod
    def _record(alert: Alert, key: str, subject: str, summary: str, evidence: dict[str, str]) -> dict[str, Any]:
        return {
            "alert_id": f"{key}@{alert.at_ms}",
            "dedupe_key": key,
            "kind": alert.kind,
            "severity": alert.severity,
            "subject": subject,
            "state": "firing",
            "summary": summary,
            "evidence": evidence,
            "opened_ms": alert.at_ms,
            "updated_ms": alert.at_ms,
            "acked_by": None,
            "revision": 1,
        }

    def ack(self, alert_id: str, actor: str, at_ms: int) -> dict[str, Any] | None:
        for key, record in self.open.items():
            if record["alert_id"] == alert_id and record["state"] == "firing":
                acked = {**record, "state": "acked", "acked_by": actor, "updated_ms": at_ms}
                acked["revision"] = record["revision"] + 1
                self.open[key] = acked
                return acked
        return None

    def restore(self, records: list[dict[str, Any]]) -> list[Alert]:
        """Records of alerts.v1 in order -> the open ones kept here; returns them for the detectors."""
        latest: dict[str, dict[str, Any]] = {}
        for record in records:
            latest[record["dedupe_key"]] = record
        self.open = {k: r for k, r in latest.items() if r["state"] != "resolved"}
        return [
            Alert(
                dedupe_key=r["dedupe_key"],
                kind=r["kind"],
                severity=r["severity"],
                subject=r["subject"],
                state="firing",
                summary=r["summary"],
                evidence=dict(r["evidence"]),
                at_ms=r["opened_ms"],
            )
            for r in self.open.values()
        ]


@dataclass
class DetectorStats:
    consumed: int = 0
    undecodable: int = 0
    alerts: int = 0
    #: each alert's delay behind the fact that raised it (record time -> produced), ms; the newest last
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class _Seen:
    """Order keys already seen (bounded): rates and prices count an order once."""

    def __init__(self, cap: int = 500_000) -> None:
        self.keys: OrderedDict[str, None] = OrderedDict()
        self.cap = cap

    def first(self, key: str) -> bool:
        if key in self.keys:
            self.keys.move_to_end(key)
            return False
        self.keys[key] = None
        if len(self.keys) > self.cap:
            self.keys.popitem(last=False)
        return True


def order_seen(event: OrderEvent, at_ms: int, first: bool) -> OrderSeen:
    return OrderSeen(
        order_key=event.order_key,
        channel=event.channel,
        market=event.market.value,
        status=event.status.value,
        is_cod=event.is_cod,
        currency=event.currency,
        ship_by_ms=event.ship_by_ms,
        event_time_ms=event.event_time_ms,
        lines=tuple((line.sku, line.quantity, line.paid_price_minor) for line in event.lines),
        at_ms=at_ms,
        first_seen=first,
        phone_key=event.shipping.phone_key,
        address_key=event.shipping.address_key,
    )


def detector_config(settings: Settings) -> DetectorConfig:
    return DetectorConfig(
        bucket_ms=int(settings.spike_bucket_s * 1000),
        spike_min_orders=settings.spike_min_orders,
        price_min_samples=settings.price_min_samples,
        ship_by_confirm_ms=int(settings.ship_by_confirm_s * 1000),
        stock_drift_for_ms=int(settings.stock_drift_s * 1000),
    )


def run_detectors(
    settings: Settings,
    stop: threading.Event,
    stats: DetectorStats | None = None,
    config: DetectorConfig | None = None,
    clock: Callable[[], float] = time.time,
) -> DetectorStats:
    """Detect until ``stop``; every alert state goes to alerts.v1 before its inputs are committed."""
    stats = stats or DetectorStats()
    prefix = settings.topic_prefix
    alerts_topic = ALERTS.full_name(prefix)
    book = AlertBook()
    history = [codec("alert").decode(m.value() or b"") for m in read_topic(settings, alerts_topic, 5.0)]
    detectors = Detectors(config or detector_config(settings))
    detectors.restore(book.restore(history))
    seen = _Seen()
    topics = {
        ORDERS.full_name(prefix): "order",
        RESERVATIONS.full_name(prefix): "reservation",
        INVENTORY.full_name(prefix): "movement",
        DEAD_LETTERS.full_name(prefix): "dead_letter",
        ALERT_ACTIONS.full_name(prefix): "action",
        CHANNEL_STOCK.full_name(prefix): "pushed",
        CHANNEL_STOCK_OBSERVED.full_name(prefix): "observed",
    }
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{prefix}oms-detectors",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(settings.consumer_session_timeout_s * 1000),
            "fetch.min.bytes": 65_536,  # in batches, at most 50 ms late (see sinks/runner.py)
            "fetch.wait.max.ms": 50,
        }
    )
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 5})
    offsets: dict[tuple[str, int], int] = {}

    def publish(records: list[dict[str, Any]], since_ms: float) -> None:
        alert_codec = codec("alert")
        for record in records:
            producer.produce(alerts_topic, key=record["dedupe_key"].encode(), value=alert_codec.encode(record))
            stats.alerts += 1
            stats.latencies_ms.append(max(0.0, clock() * 1000 - since_ms))
            log.warning("alert %s %s: %s", record["state"], record["dedupe_key"], record["summary"])

    def commit() -> None:
        if not offsets:
            return
        if producer.flush(30) > 0:
            raise RuntimeError("alerts were not delivered to Kafka within 30 s; not committing their inputs")
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        offsets.clear()

    consumer.subscribe(list(topics))
    next_tick = next_commit = time.monotonic()
    try:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                fact_ms = _record_ms(msg, clock)
                records = _take(msg, topics, detectors, book, seen, stats, int(fact_ms))
                if records:
                    publish(records, fact_ms)
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                if topic is not None and partition is not None and offset is not None:
                    offsets[(topic, partition)] = offset + 1
            now = time.monotonic()
            if now >= next_tick:
                now_ms = int(clock() * 1000)
                publish([r for a in detectors.tick(now_ms) if (r := book.apply(a)) is not None], now_ms)
                next_tick = now + settings.detector_tick_s
            if now >= next_commit:
                commit()
                next_commit = now + 1.0
        commit()
    finally:
        consumer.close()
        producer.flush(10)
    return stats


def _record_ms(msg: Message, clock: Callable[[], float]) -> float:
    kind, stamp = msg.timestamp()
    return float(stamp) if kind != 0 and stamp > 0 else clock() * 1000


def _take(
    msg: Message,
    topics: dict[str, str],
    detectors: Detectors,
    book: AlertBook,
    seen: _Seen,
    stats: DetectorStats,
    at_ms: int,
) -> list[dict[str, Any]]:
    err = msg.error()
    if err is not None:
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("detectors: consumer error %s", err)
        return []
    stats.consumed += 1
    kind = topics.get(msg.topic() or "")
    value = msg.value() or b""
    try:
        if kind == "order":
            event = OrderEvent.decode(value)
            alerts = detectors.on_order(order_seen(event, at_ms, seen.first(event.order_key)))
        elif kind == "reservation":  # one answer, or an inventory step's batch of them
            alerts = []
            for r in reservation_records(value):
                alerts += detectors.on_reservation(
                    ReservationSeen(
                        order_key=r["order_key"],
                        sku=r["sku"],
                        quantity=r["quantity"],
                        state=r["state"],
                        available=r["available"],
                        warehouse=r["warehouse"],
                        at_ms=at_ms,
                    )
                )
        elif kind == "movement":
            m = codec("stock_movement").decode(value)
            alerts = detectors.on_movement(
                MovementSeen(
                    sku=m["sku"],
                    warehouse=m["warehouse"],
                    cause=m["cause"],
                    ref=m["ref"],
                    on_hand_after=m["on_hand_after"],
                    reserved_after=m["reserved_after"],
                    at_ms=at_ms,
                )
            )
        elif kind == "dead_letter":
            letter = DeadLetter.decode(value)
            alerts = detectors.on_dead_letter(DeadLetterSeen(letter.channel, letter.stage, letter.reason_code, at_ms))
        elif kind == "pushed":
            c = codec("channel_stock").decode(value)
            alerts = detectors.on_channel_stock(ChannelStockSeen(c["channel"], c["sku"], c["available"], kind, at_ms))
        elif kind == "observed":
            c = codec("channel_stock_observed").decode(value)
            alerts = detectors.on_channel_stock(ChannelStockSeen(c["channel"], c["sku"], c["shown"], kind, at_ms))
        elif kind == "action":
            action = codec("alert_action").decode(value)
            acked = book.ack(action["alert_id"], action["actor"], action["at_ms"])
            return [acked] if acked is not None else []
        else:
            return []
    except (CodecError, ValueError) as exc:
        # the sink dead-letters undecodable records of these topics; the detectors only skip them
        stats.undecodable += 1
        log.warning(
            "detectors: skipped an undecodable record at %s:%s:%s (%s)", msg.topic(), msg.partition(), msg.offset(), exc
        )
        return []
    return [record for alert in alerts if (record := book.apply(alert)) is not None]


def new_ack(alert_id: str, actor: str, note: str) -> dict[str, Any]:
    return {
        "action_id": str(uuid.uuid4()),
        "alert_id": alert_id,
        "action": "ack",
        "actor": actor,
        "note": note,
        "at_ms": int(time.time() * 1000),
    }


def send_ack(settings: Settings, alert_id: str, actor: str, note: str) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    producer.produce(
        ALERT_ACTIONS.full_name(settings.topic_prefix),
        key=alert_id.encode(),
        value=codec("alert_action").encode(new_ack(alert_id, actor, note)),
    )
    if producer.flush(30) > 0:
        raise RuntimeError(f"the ack was not delivered to Kafka at {settings.kafka_bootstrap} within 30 s")


# --- delivery to a webhook ---


def slack_payload(record: dict[str, Any]) -> dict[str, Any]:
    """Slack-compatible: ``text`` for any incoming webhook, plus the fields for tools that read JSON."""
    state = record["state"]
    icon = ":white_check_mark:" if state == "resolved" else SEVERITY_ICON.get(record["severity"], "")
    evidence = ", ".join(f"{k}={v}" for k, v in sorted(record["evidence"].items()))
    head = f"{icon} [{record['severity'].upper()}] {record['kind']} {state}: {record['summary']}".strip()
    text = f"{head}\n{record['subject']} | {evidence}" if evidence else f"{head}\n{record['subject']}"
    if record.get("acked_by"):
        text += f"\nacked by {record['acked_by']}"
    return {
        "text": text,
        "alert": dict(record),
    }


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed_attempts: int = 0
    last_error: str = ""


def post_json(url: str, body: dict[str, Any], timeout_s: float) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        if response.status >= 300:
            raise urllib.error.HTTPError(url, response.status, "not 2xx", response.headers, None)


def run_alert_webhook(
    settings: Settings,
    stop: threading.Event,
    stats: DeliveryStats | None = None,
    post: Callable[[str, dict[str, Any], float], None] = post_json,
) -> DeliveryStats:
    """Post every alerts.v1 record to OMS_ALERT_WEBHOOK_URL in order; commit each once delivered."""
    stats = stats or DeliveryStats()
    url = settings.alert_webhook_url
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}oms-alert-webhook",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(settings.consumer_session_timeout_s * 1000),
            "max.poll.interval.ms": 3_600_000,
        }
    )
    consumer.subscribe([ALERTS.full_name(settings.topic_prefix)])
    try:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=100, timeout=0.2):
                if msg.error() is not None:
                    continue
                try:
                    record = codec("alert").decode(msg.value() or b"")
                except CodecError as exc:
                    log.warning("alert webhook: skipped an undecodable alert at offset %s (%s)", msg.offset(), exc)
                else:
                    if not _deliver(url, slack_payload(record), settings, stop, stats, post):
                        return stats  # stopping: this alert is not committed and is sent after the restart
                consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
    return stats


def _deliver(
    url: str,
    body: dict[str, Any],
    settings: Settings,
    stop: threading.Event,
    stats: DeliveryStats,
    post: Callable[[str, dict[str, Any], float], None],
) -> bool:
    wait = min(0.5, settings.alert_retry_max_s)
    while not stop.is_set():
        try:
            post(url, body, settings.alert_webhook_timeout_s)
            stats.delivered += 1
            return True
        except Exception as exc:  # any failure: retry (a 4xx is as likely a proxy hiccup as a bad URL)
            stats.failed_attempts += 1
            stats.last_error = str(exc)
            log.warning("alert webhook %s failed (%s); retry in %.1fs", url, exc, wait)
            stop.wait(wait)
            wait = min(wait * 2, settings.alert_retry_max_s)
    return False
