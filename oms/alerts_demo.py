"""The demo's analytics and alerts part: live reports during the flash sale, then three injected problems
(an oversell, a price error, an order spike, COD orders to one phone), each of which must raise exactly
one alert that reaches the webhook. The demo runs its own local webhook receiver unless OMS_ALERT_WEBHOOK_URL is set.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import orjson

from connectors.raw_producer import RawProducer, sample
from infra.process import ServiceError, wait_until
from oms.analytics import QueryError, Result, query, render, report_sql
from oms.runtime import Sinks
from oms.settings import Settings
from schemas.order import contact_key


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        type(self).received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Receiver:
    """A Slack-compatible webhook on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        handler = type("Hook", (_Hook,), {"received": self.received})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        threading.Thread(target=self._server.serve_forever, name="demo-webhook", daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Injection:
    run: str
    price_minor: int = 2990  # SGD 29.90, the injected SKUs' usual price

    @property
    def oversold(self) -> str:
        return f"DEMO-OOS-{self.run}"

    @property
    def mispriced(self) -> str:
        return f"DEMO-PRICE-{self.run}"

    @property
    def spiking(self) -> str:
        return f"DEMO-SPIKE-{self.run}"

    @property
    def stocked_skus(self) -> tuple[str, ...]:
        """Loaded with plenty of stock (the oversold SKU gets none)."""
        return (self.mispriced, self.spiking)

    @property
    def phone(self) -> str:
        """A Singapore mobile number unique to this run."""
        return "659" + str(int(self.run, 16) % 10**7).zfill(7)

    def expected(self) -> dict[str, tuple[str, str]]:
        return {
            "oversell": ("oversell", f"sku:{self.oversold}"),
            "price error": ("price_error", f"sku:{self.mispriced}"),
            "spike": ("order_spike", f"sku:{self.spiking}"),
            "COD fraud": ("cod_fraud", f"phone:{contact_key('phone', self.phone)}"),
        }


def shopee_order(order_sn: str, sku: str, price_minor: int, now_s: int, cod_phone: str | None = None) -> bytes:
    """A paid Shopee SG order of one unit of ``sku`` at ``price_minor`` cents, made now (COD to
    ``cod_phone`` when given)."""
    body: dict[str, Any] = orjson.loads(sample("shopee_order_detail.json"))
    order = body["response"]["order_list"][0]
    if cod_phone is not None:
        order.update(cod=True, payment_method="Cash on Delivery")
        order["recipient_address"]["phone"] = cod_phone
    item = dict(order["item_list"][0])
    price = price_minor / 100
    item.update(
        model_sku=sku, item_sku=sku.rsplit("-", 1)[0], model_quantity_purchased=1, model_original_price=price,
        model_discounted_price=price, promotion_type="",
    )  # fmt: skip
    order.update(
        order_sn=order_sn, item_list=[item], total_amount=price, create_time=now_s, update_time=now_s,
        pay_time=now_s, ship_by_date=now_s + 2 * 86400,
    )  # fmt: skip
    return orjson.dumps(body)


@dataclass
class Alerted:
    expected: dict[str, tuple[str, str]]
    #: label -> the firing alerts the webhook got for it (exactly one is right)
    found: dict[str, list[dict[str, Any]]]
    seconds: dict[str, float]
    total: int
    by_kind: dict[str, int] = field(default_factory=dict)
    where: str = "webhook"


def inject(
    settings: Settings, producer: RawProducer, injection: Injection, hook: Receiver | None, sinks: Sinks
) -> Alerted:
    """Steady sales of two SKUs (a baseline), then a price error, a spike and an oversell."""
    print(
        "\n== injecting problems: 16 s of steady sales of two SKUs, then a price error, a spike, an oversell, COD fraud"
    )
    count = 0

    def send(sku: str, price_minor: int, cod_phone: str | None = None) -> None:
        nonlocal count
        count += 1
        order_sn = f"DEMOA{injection.run}{count:05d}"
        body = shopee_order(order_sn, sku, price_minor, int(time.time()), cod_phone)
        producer.send("shopee", body, shop="shop-sg-001", delivery_id=f"alert-demo-{order_sn}")

    began = time.monotonic()
    for second in range(16):  # pacing the baseline, not waiting for a result
        send(injection.spiking, injection.price_minor)
        send(injection.mispriced, injection.price_minor)
        send(injection.mispriced, injection.price_minor)
        producer.flush()
        time.sleep(max(0.0, began + second + 1 - time.monotonic()))
    injected_at: dict[str, float] = {}
    send(injection.mispriced, 100)  # SGD 1.00 instead of 29.90
    injected_at["price error"] = time.monotonic()
    for _ in range(40):
        send(injection.spiking, injection.price_minor)
    injected_at["spike"] = time.monotonic()
    send(injection.oversold, injection.price_minor)
    injected_at["oversell"] = time.monotonic()
    for _ in range(5):
        send(injection.mispriced, injection.price_minor, cod_phone=injection.phone)
    injected_at["COD fraud"] = time.monotonic()
    producer.flush()
    print(
        "   sent: 1 order at SGD 1.00 (usually 29.90), a burst of 40 orders of one SKU, 1 order of a SKU with no stock"
    )

    expected = injection.expected()
    seconds: dict[str, float] = {}

    def firing() -> list[dict[str, Any]]:
        if sinks.errors:
            raise sinks.errors[0]
        if hook is not None:
            return [b["alert"] for b in list(hook.received) if b.get("alert", {}).get("state") == "firing"]
        try:  # the user's own webhook: the alerts table shows what was sent to it
            return query(settings, "SELECT kind, subject, alert_id, summary FROM alerts FINAL").dicts()
        except QueryError:
            return []

    def arrived() -> bool:
        alerts = firing()
        for label, (kind, subject) in expected.items():
            if label not in seconds and any(a["kind"] == kind and a["subject"] == subject for a in alerts):
                seconds[label] = time.monotonic() - injected_at[label]
        return len(seconds) == len(expected)

    wait_until(arrived, 90, 0.2)
    alerts = firing()
    found = {label: [a for a in alerts if (a["kind"], a["subject"]) == pair] for label, pair in expected.items()}
    by_kind: dict[str, int] = {}
    for a in alerts:
        by_kind[a["kind"]] = by_kind.get(a["kind"], 0) + 1
    where = "the demo's webhook receiver" if hook is not None else settings.alert_webhook_url
    return Alerted(expected, found, seconds, len(alerts), by_kind, where)


def print_alerts(alerted: Alerted) -> bool:
    print(f"== alerts at {alerted.where}: {alerted.total} firing in all ({_counts(alerted.by_kind)})")
    ok = True
    for label, alerts in alerted.found.items():
        kind, subject = alerted.expected[label]
        if len(alerts) == 1:
            took = alerted.seconds.get(label)
            print(f"   {label}: one {kind} alert for {subject} after {took:.1f}s: {alerts[0].get('summary', '')}")
        else:
            ok = False
            print(f"   {label}: expected one {kind} alert for {subject}, got {len(alerts)}  <-- PROBLEM")
    return ok


def _counts(by_kind: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(by_kind.items())) or "none"


def live_reports(settings: Settings) -> dict[str, Result]:
    """The reports an ops lead would run right now, from the live views (refreshed every 5 s)."""
    out: dict[str, Result] = {}
    try:
        wait_until(lambda: bool(query(settings, report_sql("sales")).rows), 20, 0.5)
        for name, limit in (("sales", 50), ("channels", 50), ("oversell", 5)):
            out[name] = query(settings, report_sql(name, limit=limit))
        out["open alerts, newest first"] = query(
            settings,
            "SELECT opened_at, severity, kind, summary FROM alerts FINAL WHERE state != 'resolved' "
            "ORDER BY opened_at DESC LIMIT 5",
        )
    except QueryError as exc:
        raise ServiceError(f"a live report failed: {exc}") from exc
    return out


def print_reports(reports: dict[str, Result]) -> None:
    print("\n== live reports while the pipeline runs (`oms report NAME` from any terminal shows the same)")
    for name, result in reports.items():
        print(f"\n-- {name}")
        for line in render(result, "table").splitlines():
            print("   " + line)
