"""Analytics against the real broker and the real ClickHouse engine (chDB): every fact topic into its table,
replays that change no count, ClickHouse refusing writes mid-stream, queries from another process, and
alerts from a crafted stream to the topic, ClickHouse, the webhook and back with an ack."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer

from infra import clickhouse, topics
from infra.process import wait_until
from oms.alerting import DeliveryStats, run_alert_webhook, send_ack
from oms.runtime import settings_env
from oms.settings import Settings
from schemas.codec import codec
from schemas.order import DeadLetter, OrderEvent
from schemas.topics import ALERTS, CHANNEL_STOCK, DEAD_LETTERS, INVENTORY, ORDERS, RESERVATIONS
from sinks.clickhouse import COLUMNS, clickhouse_sink, migrate
from sinks.runner import SinkStats, run_sink
from streams.adapters.base import RawInput
from streams.normalize import normalize
from tests.integration.conftest import shopee_order, unique

pytestmark = pytest.mark.integration

KPI_VIEWS = (
    "kpi_sales_minute", "kpi_fill_rate", "kpi_oversell", "kpi_ship_by", "kpi_stock", "kpi_routing", "kpi_cod",
    "kpi_dead_letters",
)  # fmt: skip


@pytest.fixture(scope="module")
def own(kafka_topics: Settings, ch: Client) -> Iterator[tuple[Settings, Client]]:
    """A prefix and database of this module's own: its topics hold exactly what the tests produce."""
    tag = uuid.uuid4().hex[:6]
    settings = kafka_topics.model_copy(update={"topic_prefix": f"{kafka_topics.topic_prefix}an{tag}."})
    topics.ensure_topics(settings)
    client = clickhouse.get_client(settings, database=f"analytics_{tag}")
    migrate(client)
    yield settings, client
    client.command(f"DROP DATABASE IF EXISTS analytics_{tag}")


def _event(order_sn: str, **changes: Any) -> OrderEvent:
    raw = RawInput("shopee", shopee_order(order_sn, **changes), "raw.orders.shopee", 0, 0, 1_795_824_100_000)
    outcome = normalize(raw, "default")
    assert outcome.events, outcome.dead_letter
    return outcome.events[0]


def _produce(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for topic, key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def _facts(settings: Settings, n_orders: int) -> tuple[list[tuple[str, bytes, bytes]], dict[str, int]]:
    """One of every fact, with a duplicate and a late older state: (records, distinct rows per table)."""
    p = settings.topic_prefix
    sns = [unique("AN") for _ in range(n_orders)]
    events = [_event(sn) for sn in sns]
    shipped = _event(sns[0], order_status="SHIPPED", update_time=1_795_900_000)
    records = [(ORDERS.full_name(p), e.order_key.encode(), e.encode()) for e in [*events, shipped, events[0]]]
    for i, e in enumerate(events):
        state = "short" if i % 3 == 0 else "reserved"
        r = {"hold_id": f"{e.order_key}|1", "order_key": e.order_key, "sku": "SKU-AN", "quantity": 1,
             "state": state, "warehouse": None if state == "short" else "SG-JUR", "available": 0}  # fmt: skip
        records.append((RESERVATIONS.full_name(p), e.order_key.encode(), codec("reservation").encode(r)))
        move = {"sku": f"SKU-AN{i % 2}", "warehouse": "SG-JUR", "cause": "reserve", "ref": e.order_key,
                "on_hand_before": 10, "on_hand_after": 10, "reserved_before": i, "reserved_after": i + 1}  # fmt: skip
        records.append((INVENTORY.full_name(p), f"SKU-AN{i % 2}".encode(), codec("stock_movement").encode(move)))
    stock = {"tenant": "default", "channel": "shopee", "sku": "SKU-AN0", "available": 7, "computed_at_ms": 1,
             "source_partition": 0, "source_offset": 1, "source_time_ms": 1, "rules_version": "t"}  # fmt: skip
    records.append((CHANNEL_STOCK.full_name(p), b"shopee:SKU-AN0", codec("channel_stock").encode(stock)))
    letter = DeadLetter.of(
        tenant="default", channel="lazada", stage="normalize", reason_code="bad_json", reason="test",
        topic="raw.orders.lazada", partition=0, offset=int(uuid.uuid4().int % 10**9), key=b"k", headers={},
        original=b"{not json",
    )  # fmt: skip
    records.append((DEAD_LETTERS.full_name(p), b"raw.orders.lazada", letter.encode()))
    at = 1_795_824_100_000
    alert = {"alert_id": "oversell:sku:SKU-AN@1", "dedupe_key": "oversell:sku:SKU-AN", "kind": "oversell",
             "severity": "critical", "subject": "sku:SKU-AN", "state": "firing", "summary": "s", "evidence": {},
             "opened_ms": at, "updated_ms": at, "acked_by": None, "revision": 1}  # fmt: skip
    records.append((ALERTS.full_name(p), b"oversell:sku:SKU-AN", codec("alert").encode(alert)))
    distinct = {
        "orders": n_orders,
        "order_lines": sum(len(e.lines) for e in events),
        "order_status_history": n_orders + 1,
        "inventory_ledger": n_orders,
        "reservations": n_orders,
        "channel_stock_updates": 1,
        "dead_letters": 1,
        "alerts": 1,
    }
    return records, distinct


def _sink_once(settings: Settings, client: Client, records: int) -> SinkStats:
    stop, stats = threading.Event(), SinkStats()
    spec = clickhouse_sink(client, settings.topic_prefix)
    args = (settings, spec, stop, stats, f"an-{uuid.uuid4()}")  # a new group: a full replay from the start
    thread = threading.Thread(target=run_sink, args=args, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: stats.consumed >= records and stats.written >= records, 90, 0.1), stats
    finally:
        stop.set()
        thread.join(30)
    return stats


def _counts(client: Client) -> dict[str, int]:
    return {t: int(client.command(f"SELECT count() FROM {t} FINAL")) for t in COLUMNS if t != "routing_decisions"}


def _kpis(client: Client) -> dict[str, list[Any]]:
    for view in KPI_VIEWS:
        client.command(f"SYSTEM REFRESH VIEW {view}")
        client.command(f"SYSTEM WAIT VIEW {view}")
    return {v: sorted(map(repr, client.query(f"SELECT * FROM {v}").result_rows)) for v in KPI_VIEWS}


def test_replaying_every_fact_topic_twice_changes_no_table_count_and_no_kpi(own: tuple[Settings, Client]) -> None:
    settings, client = own
    records, distinct = _facts(settings, 9)
    _produce(settings, records)

    first = _sink_once(settings, client, len(records))
    assert first.dead_lettered == 0
    counts, kpis = _counts(client), _kpis(client)
    assert counts == distinct, "each fact once, whatever the duplicates and late states"
    fill = client.query("SELECT holds, filled, short FROM kpi_fill_rate WHERE channel = 'shopee'").result_rows
    assert fill == [(9, 6, 3)]
    assert client.command("SELECT status FROM orders FINAL WHERE status = 'shipped' LIMIT 1") == "shipped"

    _sink_once(settings, client, len(records))  # the same topics again, from the start
    assert _counts(client) == counts
    assert _kpis(client) == kpis


def test_the_sink_waits_while_clickhouse_refuses_writes_and_catches_up_when_it_is_back(
    own: tuple[Settings, Client],
) -> None:
    settings, client = own
    tables = [t for t in COLUMNS if t != "routing_decisions"]
    before = _counts(client)
    stop, stats = threading.Event(), SinkStats()
    spec = clickhouse_sink(client, settings.topic_prefix)
    thread = threading.Thread(target=run_sink, args=(settings, spec, stop, stats, "an-outage"), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: stats.flushes >= 1, 90, 0.1), "the sink must first catch up with earlier tests"
        for table in tables:  # the engine itself refuses: the tables are gone until attached again
            client.command(f"DETACH TABLE {table}")
        try:
            records, distinct = _facts(settings, 6)
            _produce(settings, records)
            assert wait_until(lambda: stats.failed_flushes >= 2, 60, 0.1), f"writes must fail while away: {stats}"
        finally:
            for table in tables:
                client.command(f"ATTACH TABLE {table}")
        assert wait_until(lambda: _counts(client)["orders"] == before["orders"] + 6, 120, 0.2), stats
    finally:
        stop.set()
        thread.join(30)
    after = _counts(client)
    assert after["reservations"] == before["reservations"] + distinct["reservations"], "nothing dropped"
    assert after["dead_letters"] == before["dead_letters"] + 1


def test_another_process_queries_the_embedded_engine_through_its_owner(kafka_topics: Settings, sinks: Any) -> None:
    env = settings_env(kafka_topics)
    sql = "SELECT count() AS n FROM system.one"
    done = subprocess.run(
        [sys.executable, "-m", "oms.cli", "sql", sql, "--format", "json"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == [{"n": 1}]
    write = subprocess.run(
        [sys.executable, "-m", "oms.cli", "sql", "DROP TABLE orders"], env=env, capture_output=True, timeout=60
    )
    assert write.returncode == 2 and b"readonly" in write.stderr.lower(), "the query path is read-only"
    report = subprocess.run([sys.executable, "-m", "oms.cli", "report", "channels", "--format", "csv"], env=env,
                            capture_output=True, timeout=60)  # fmt: skip
    assert report.returncode == 0 and report.stdout.startswith(b"channel,orders,holds,fill_pct"), report.stderr


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
        else:
            type(self).received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_crafted_oversell_raises_one_alert_that_reaches_clickhouse_and_the_webhook_and_can_be_acked(
    kafka_topics: Settings, ch: Client, sinks: Any
) -> None:
    sku = unique("OVERSOLD-")
    short = [
        {"hold_id": f"default:shopee:{sku}{i}|1", "order_key": f"default:shopee:{sku}{i}", "sku": sku,
         "quantity": 2, "state": "short", "warehouse": None, "available": 0}
        for i in range(5)
    ]  # fmt: skip
    _produce(kafka_topics, [(RESERVATIONS.full_name(kafka_topics.topic_prefix), r["order_key"].encode(),
                             codec("reservation").encode(r)) for r in short])  # fmt: skip

    def alert_rows() -> list[tuple[Any, ...]]:
        return list(ch.query(
            "SELECT alert_id, state, acked_by, evidence FROM alerts FINAL WHERE subject = {s:String}",
            parameters={"s": f"sku:{sku}"},
        ).result_rows)  # fmt: skip

    assert wait_until(lambda: len(alert_rows()) == 1, 60, 0.2), "five shorts of one SKU: one alert"
    alert_id, state, _, evidence = alert_rows()[0]
    assert state == "firing" and evidence["channel"] == "shopee"

    hook = type("Hook", (_Hook,), {"received": [], "fail_first": 2})
    server = HTTPServer(("127.0.0.1", 0), hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    settings = kafka_topics.model_copy(update={"alert_webhook_url": url, "alert_retry_max_s": 0.2})
    stop, stats = threading.Event(), DeliveryStats()
    thread = threading.Thread(target=run_alert_webhook, args=(settings, stop, stats), daemon=True)
    thread.start()
    try:
        mine = lambda: [b for b in hook.received if b["alert"]["alert_id"] == alert_id]  # noqa: E731
        assert wait_until(lambda: len(mine()) == 1, 60, 0.1), f"delivered after the webhook recovered: {stats}"
        assert stats.failed_attempts >= 2 and mine()[0]["text"].startswith(":rotating_light: [CRITICAL] oversell")

        send_ack(kafka_topics, alert_id, "ana", "restocking")
        assert wait_until(lambda: alert_rows()[0][1:3] == ("acked", "ana"), 60, 0.2), alert_rows()
        assert wait_until(lambda: any(b["alert"]["state"] == "acked" for b in mine()), 60, 0.1)
    finally:
        stop.set()
        thread.join(30)
        server.shutdown()
