"""``oms demo``: the walking skeleton on the embedded services, narrated for a person.

Starts Kafka and Redis, a faust worker and the sinks; sends one Shopee order and two bad payloads;
waits until the order is a ClickHouse row and a Redis status, and the bad ones are dead letters.
Then a mini flash sale from the simulator on every channel and market, summarised from ClickHouse.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, TopicPartition

from connectors.raw_producer import RawProducer, sample
from connectors.simulator import Simulator, run_to_kafka
from connectors.stock_load import load
from infra import clickhouse, services, topics
from infra.process import ServiceError, wait_until
from loadtest.verify import verify
from oms import alerts_demo, routing_ops
from oms.runtime import running_sinks, spawn_worker, stop_process
from oms.settings import Settings
from schemas.order import CURRENCY_EXPONENT, DeadLetter, order_key
from schemas.topics import DEAD_LETTERS
from sinks.clickhouse import migrate
from sinks.redis_model import OrderStatusModel
from streams.routing_rules import Rules, load_rules, parse_rules


def demo_order(order_sn: str) -> bytes:
    """The shipped Shopee sample with a fresh order_sn, so each run is a new order."""
    body: dict[str, Any] = orjson.loads(sample("shopee_order_detail.json"))
    body["response"]["order_list"][0]["order_sn"] = order_sn
    return orjson.dumps(body)


def dead_letters_for(settings: Settings, delivery_ids: set[str], timeout: float) -> dict[str, DeadLetter]:
    """Read the dead-letter topic from the start until every delivery id has its letter (or timeout)."""
    found: dict[str, DeadLetter] = {}
    topic = DEAD_LETTERS.full_name(settings.topic_prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"oms-demo-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(found) != delivery_ids:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error() is None:
                    letter = DeadLetter.decode(msg.value() or b"")
                    key = (letter.source_key or b"").decode()
                    if key in delivery_ids:
                        found[key] = letter
    finally:
        consumer.close()
    return found


def run_demo(settings: Settings, timeout: float = 180.0, events: int = 600) -> int:
    print("== starting services (first run installs Kafka from Maven Central: about a minute)")
    for line in services.up(settings):
        print("  " + line)
    topics.ensure_topics(settings)
    client = clickhouse.get_client(settings)
    migrate(client)

    run = uuid.uuid4().hex[:8].upper()
    order_sn = f"DEMO{run}"
    key = order_key(settings.tenant, "shopee", order_sn)
    bad = {f"bad-json-{run}": b'{"response": {"order_list": [', f"bad-shape-{run}": b'{"hello": "world"}'}

    hook = alerts_demo.Receiver() if not settings.alert_webhook_url else None
    if hook is not None:
        # demo scale: 2 s rate buckets, so a spike has a baseline after 12 s instead of a minute
        settings = settings.model_copy(
            update={"alert_webhook_url": hook.url, "spike_bucket_s": 2.0, "spike_min_orders": 20}
        )
    worker = spawn_worker(settings, "demo-worker")
    print(f"== worker started (pid {worker.pid()}, log {worker.log_file})")
    injected = alerts_demo.Injection(run) if events else None
    try:
        with running_sinks(settings, client) as sinks:
            producer = RawProducer(settings)
            producer.send("shopee", demo_order(order_sn), shop="shop-sg-001", delivery_id=f"good-{run}")
            for delivery_id, body in bad.items():
                producer.send("shopee", body, shop="shop-sg-001", delivery_id=delivery_id)
            producer.flush()
            print(f"== produced 1 Shopee order ({order_sn}) and 2 bad payloads to raw.orders.shopee")

            def row() -> list[Any]:
                if sinks.errors:
                    raise sinks.errors[0]
                if worker.pid() is None:
                    raise ServiceError(f"the worker exited:\n{worker.log_tail()}")
                rows = client.query(
                    "SELECT channel, market, status, payment_method, total_minor, currency, units, skus, "
                    "postcode FROM orders FINAL WHERE order_key = {k:String}",
                    parameters={"k": key},
                ).result_rows
                return list(rows[0]) if rows else []

            print("== waiting for the order in ClickHouse (the worker's first group join takes a few seconds)")
            began = time.monotonic()
            if not wait_until(lambda: bool(row()), timeout, 0.5):
                raise ServiceError(
                    f"order {key} did not reach ClickHouse within {timeout:.0f}s; worker log:\n{worker.log_tail()}"
                )
            latency = time.monotonic() - began
            model = OrderStatusModel(_redis(settings), prefix=settings.topic_prefix)
            wait_until(lambda: bool(model.get(key)), 30, 0.2)
            letters = dead_letters_for(settings, set(bad), timeout=60)
            channel, market, status, method, total, currency, units, skus, postcode = row()
            extra = injected.stocked_skus if injected is not None else ()
            flash = _flash_sale(settings, client, events, timeout, extra) if events else None
            routed = _routing(settings, flash) if flash is not None else None
            verdict = verify(settings, flash.keys, flash.stock, timeout_s=60) if flash is not None else None
            reports = alerts_demo.live_reports(settings) if flash is not None else None
            sold_out = _sold_out(client, flash) if flash is not None else None
            alerted = alerts_demo.inject(settings, producer, injected, hook, sinks) if injected is not None else None
    finally:
        stop_process(worker)
        if hook is not None:
            hook.close()

    print(f"\n== order {key}  (visible in ClickHouse {latency:.1f}s after the produce)")
    print(f"   {channel} {market}, status {status}, paid by {method}, total {total} minor units {currency}")
    print(f"   {units} units of {', '.join(skus)}, ship to postcode {postcode}")
    print(f"   Redis read model: {model.get(key)}")
    print(f"== dead letters ({len(letters)} of {len(bad)}), original bytes kept:")
    for delivery_id, letter in sorted(letters.items()):
        print(f"   {delivery_id}: {letter.reason_code}: {letter.reason}  [{len(letter.original)} bytes]")
    ok = len(letters) == len(bad)
    if flash is not None:
        ok = _print_flash_sale(flash) and ok
    if verdict is not None:
        print("\n== the promises, checked from the topics (loadtest/verify.py)")
        for line in verdict.lines():
            print("   " + line)
        ok = verdict.ok and ok
    if sold_out is not None:
        _print_sold_out(sold_out)
    if routed is not None:
        ok = _print_routing(settings, routed) and ok
    if reports is not None:
        alerts_demo.print_reports(reports)
    if alerted is not None:
        ok = alerts_demo.print_alerts(alerted) and ok
    print(
        "\nNext: `oms report sales|sla|stock|oversell|channels`, `oms alerts list` (then `oms alerts ack ID`), "
        '`oms sql "..."` (while `oms sink` runs), `oms holds list`, `oms replay --rules FILE --from T`, '
        "`oms dlq list`, `oms status`; services keep running until `oms down`."
    )
    return 0 if ok else 1


@dataclass
class FlashSale:
    seed: int
    sent: int
    expected_orders: int
    seconds: float
    rows: list[Sequence[Any]]
    statuses: list[Sequence[Any]]
    keys: set[str]
    began_ms: int
    stock: dict[str, int]


def _flash_sale(
    settings: Settings, client: Client, events: int, timeout: float, extra_skus: Sequence[str] = ()
) -> FlashSale:
    """Simulated traffic on every channel and market through the running worker and sinks."""
    seed = random.randrange(1, 1_000_000)
    sim = Simulator(seed=seed, skus=60)
    keys = sorted({order_key(settings.tenant, e.channel, e.order_id) for e in sim.events(events) if e.kind == "order"})
    stocked, stock = _load_stock(settings, [sku.code for sku in sim.catalog], extra_skus)
    print(f"\n== mini flash sale: {events} deliveries on every channel and market (seed {seed})")
    print(f"   stock: {stocked}")
    began_ms = int(time.time() * 1000)
    began = time.monotonic()
    summary = run_to_kafka(settings, sim, events, rate=0)
    if summary.outcomes["error"]:
        raise ServiceError(f"Kafka refused simulated records: {summary.first_error}")

    def arrived() -> int:
        query = "SELECT count() FROM orders FINAL WHERE order_key IN {keys:Array(String)}"
        return int(client.query(query, parameters={"keys": keys}).result_rows[0][0])

    wait_until(lambda: arrived() >= len(keys), timeout, 0.5)
    seconds = time.monotonic() - began
    where = "FROM orders FINAL WHERE order_key IN {keys:Array(String)}"
    rows = client.query(
        "SELECT channel, market, count(), sum(units), currency, sum(total_minor), countIf(is_cod) "
        f"{where} GROUP BY channel, market, currency ORDER BY channel, market",
        parameters={"keys": keys},
    ).result_rows
    statuses = client.query(
        f"SELECT status, count() {where} GROUP BY status ORDER BY count() DESC", parameters={"keys": keys}
    ).result_rows
    return FlashSale(seed, summary.sent, len(keys), seconds, list(rows), list(statuses), set(keys), began_ms, stock)


def _sold_out(client: Client, flash: FlashSale) -> list[tuple[str, list[str], int]]:
    """The sale's SKUs with nodes that have nothing left to sell: (sku, those nodes, nodes stocked)."""
    query = """
        SELECT sku, arraySort(groupArrayIf(warehouse, available <= 0)), count()
        FROM (
            SELECT sku, warehouse, argMax(available_after, (src_partition, src_offset)) AS available
            FROM inventory_ledger FINAL WHERE sku IN {skus:Array(String)} GROUP BY sku, warehouse
        )
        GROUP BY sku HAVING countIf(available <= 0) > 0 ORDER BY countIf(available <= 0) DESC, sku
    """
    rows = client.query(query, parameters={"skus": sorted(flash.stock)}).result_rows
    return [(str(sku), [str(w) for w in nodes], int(stocked)) for sku, nodes, stocked in rows]


def _print_sold_out(sold_out: list[tuple[str, list[str], int]]) -> None:
    everywhere = [sku for sku, nodes, stocked in sold_out if len(nodes) == stocked]
    print(f"\n== sold out: {len(everywhere)} SKUs in every node, {len(sold_out)} in at least one "
          "(a node sells only to the markets it serves)")  # fmt: skip
    for sku, nodes, stocked in sold_out[:5]:
        print(f"   {sku:<22} {len(nodes)} of {stocked} nodes: {', '.join(nodes[:6])}{' ...' if len(nodes) > 6 else ''}")


def _print_flash_sale(flash: FlashSale) -> bool:
    landed = sum(int(r[2]) for r in flash.rows)
    print(
        f"   {landed} of {flash.expected_orders} orders in ClickHouse after {flash.seconds:.1f}s "
        f"({flash.sent} deliveries incl. status changes, duplicates and early updates)"
    )
    print(f"   {'channel':<10}{'market':<7}{'orders':>7}{'units':>7}{'COD':>6}  GMV")
    for channel, market, orders, units, currency, total, cod in flash.rows:
        exponent = CURRENCY_EXPONENT.get(currency, 2)
        gmv = total / 10**exponent
        print(f"   {channel:<10}{market:<7}{orders:>7}{units:>7}{cod:>6}  {gmv:,.{exponent}f} {currency}")
    print("   latest status: " + ", ".join(f"{status} {n}" for status, n in flash.statuses))
    return landed == flash.expected_orders


def _redis(settings: Settings) -> Any:
    import redis

    return redis.Redis.from_url(settings.redis_url)


def _load_stock(settings: Settings, skus: list[str], extra_skus: Sequence[str] = ()) -> tuple[str, dict[str, int]]:
    """Stock for the catalog in every node of the routing rules: hot SKUs scarce, the rest plenty."""
    rules = load_rules(settings.routing_rules_path())
    rows = [
        f"{sku},{node.id},{2 if i < 3 else 40}" for i, sku in enumerate(skus) for node in rules.nodes
    ]  # the first SKUs are the simulator's hot ones: they sell out
    rows += [f"{sku},{node.id},500" for sku in extra_skus for node in rules.nodes]
    path = settings.data_path / "demo-stock.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sku,warehouse,on_hand\n" + "\n".join(rows) + "\n")
    loaded = load(settings, path, version=int(time.time() * 1000))
    stock: dict[str, int] = {}
    for row in rows:
        sku, _, units = row.split(",")
        stock[sku] = stock.get(sku, 0) + int(units)
    return f"{loaded.units} units of {loaded.skus} SKUs in {loaded.warehouses} nodes ({rules.label})", stock


@dataclass
class Routed:
    records: dict[str, dict[str, Any]]  # order key -> newest routing decision
    flash: FlashSale


def _routing(settings: Settings, flash: FlashSale) -> Routed:
    """The flash sale's routing decisions, once their number stops growing (or 60 s)."""
    seen: dict[str, dict[str, Any]] = {}
    stable_since = time.monotonic()
    deadline = stable_since + 60

    def settled() -> bool:
        nonlocal stable_since
        found = routing_ops.latest(r for r in routing_ops.decisions(settings) if r["order_key"] in flash.keys)
        if len(found) != len(seen):
            stable_since = time.monotonic()
        seen.clear()
        seen.update(found)
        return bool(seen) and time.monotonic() - stable_since >= 3

    wait_until(settled, deadline - time.monotonic(), 0.5)
    return Routed(dict(seen), flash)


def _print_routing(settings: Settings, routed: Routed) -> bool:
    records = list(routed.records.values())
    by_market: dict[str, Counter[str]] = {}
    holds: Counter[str] = Counter()
    example: dict[str, str] = {}
    for record in records:
        market = record["market"]
        if record["outcome"] == "routed":
            for shipment in record["shipments"]:
                by_market.setdefault(market, Counter())[f"{shipment['node']} -> {shipment['carrier']}"] += 1
            example.setdefault(market, f"{record['order_key']}: {record['summary']}")
        for hold in record["holds"] if record["outcome"] == "held" else []:
            holds[hold["code"]] += 1
            example.setdefault(f"hold:{hold['code']}", f"{record['order_key']}: {hold['detail']}")
    routed_n = sum(r["outcome"] == "routed" for r in records)
    split = sum(len(r["shipments"]) > 1 for r in records)
    print(f"\n== routing: {routed_n} orders routed ({split} split), {len(records) - routed_n} held")
    for market in sorted(by_market):
        top = ", ".join(f"{route} {n}" for route, n in by_market[market].most_common(3))
        print(f"   {market}: {top}")
        print(f"      e.g. {example[market]}")
    for code, n in holds.most_common():
        print(f"   held {code}: {n}  e.g. {example[f'hold:{code}']}")
    whatif = _whatif_rules(settings)
    result = routing_ops.replay(list(routing_ops.decisions(settings)), whatif, routed.flash.began_ms, 2**62)
    print(f"\n== what-if replay: the same orders under rules {whatif.label} (ID ships split orders, no COD review)")
    for line in routing_ops.comparison_table(result):
        print("   " + line)
    missing = sorted({"SG", "MY", "ID", "TH", "VN", "PH"} - set(by_market))
    if missing:
        print(f"   (no order of {', '.join(missing)} was routed in this run: a small sale may have none paid there)")
    return any(r["outcome"] == "routed" for r in records)


def _whatif_rules(settings: Settings) -> Rules:
    """The rules in force with two policy changes an ops lead might try: split in ID, no COD reviews."""
    text = settings.routing_rules_path().read_text(encoding="utf-8")
    text = re.sub(r'split = "hold"', 'split = "allow"', text)
    text = re.sub(r"(?m)^cod_review_above_minor = .*$", "", text)
    text = re.sub(r'(?m)^version = "(.*)"', r'version = "\1-whatif"', text, count=1)
    return parse_rules(text, "what-if")
