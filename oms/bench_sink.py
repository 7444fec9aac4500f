"""``oms bench sink``: the ClickHouse sink's throughput and the detectors' latency, on the real broker.

What it measures, on topics of its own (prefix ``bench-sink-<hex>.``) and a private chDB directory in
a temporary folder (never the one under OMS_DATA_DIR, which the sink or the demo may own), deleted
at the end:

1. Sink throughput. ``records`` fact records are produced first, mixed like production: per order one
   orders.v1 record (one in five with a second, shipped state), about 1.5 reservations.v1 and 1.5
   inventory.v1 ledger records (one per line; an order has 1 or 2 lines), a channel.stock.v1 update for
   one order in ten and a dead letter for one in fifty. Then ``run_sink`` with ``clickhouse_sink`` runs
   in a thread, in a new consumer group and a fresh database, and is timed from its start until it
   consumed every record and flushed it. Once with the configured batching (OMS_SINK_BATCH_ROWS,
   OMS_SINK_FLUSH_SECONDS) and once with small batches (500 rows or 0.2 s), so the choice is argued
   by numbers. Reported: records/s and fact rows/s (from the start, and from the first record read,
   which leaves out the consumer group join), flushes, records and rows per flush (the batch limit
   counts records; an order record makes 3 or 4 rows, any other record one), time inside the inserts,
   the rows left in the tables after ``FINAL`` (a shipped state replaces its paid one), the database's
   size on disk and the peak RSS of this process (chDB runs inside it).
2. Detector latency. ``run_detectors`` runs in a thread on a second fresh prefix. After a warm-up
   alert (so the group join is not counted), facts that each cause exactly one alert record are produced
   at 20/s: 40 ledger movements that take a SKU below zero, each followed by one that brings it back
   (firing, then resolved), then 20 ``short`` reservations of distinct SKUs (the AlertBook keeps at most 20
   of a kind open before it summarises, so never more are open). Per alert: the time from the fact's
   Kafka timestamp to the alert being read back from alerts.v1 by a consumer here (end to end), and the
   detectors' own ``DetectorStats.latencies_ms`` (record time -> alert produced). The count must match.
3. Pure detector throughput on one core: 200,000 synthetic orders, reservations and ledger movements
   (1 : 1.5 : 1.5) fed to ``Detectors`` directly with a tick per second of stream time; facts/s and µs
   per fact.

Results go to results/sink-<stamp>.json and .md with the machine and the command.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition

from infra import kafka, topics
from infra.clickhouse import get_client
from infra.process import ServiceError, wait_until
from oms.alerting import DetectorStats, run_detectors
from oms.bench import _write, order_template, paid_order
from oms.settings import Settings
from schemas.codec import codec
from schemas.order import DeadLetter, OrderStatus, RawRef, order_key
from schemas.topics import ALERTS, CHANNEL_STOCK, DEAD_LETTERS, INVENTORY, ORDERS, RESERVATIONS
from sinks.clickhouse import COLUMNS, Fact, clickhouse_sink, migrate
from sinks.runner import SinkStats, run_sink
from streams.detectors import DetectorConfig, Detectors, MovementSeen, OrderSeen, ReservationSeen

SMALL_BATCH_ROWS = 500
SMALL_FLUSH_SECONDS = 0.2
ALERT_PAIRS = 40  # below zero, then back: two alerts each
ALERT_SHORTS = 20  # AlertBook.cap_per_kind: more open oversells of one kind would be summarised
ALERT_RATE = 20.0  # facts/s
DETECTOR_FACTS = 200_000
SINK_DEADLINE_S = 150.0

#: (topic, key, value) of one record to produce
Record = tuple[str, bytes, bytes]


# --- 1. sink throughput --------------------------------------------------------------------------


def fact_records(settings: Settings, records: int, tag: str) -> tuple[list[Record], int]:
    """``records`` fact records mixed like production, and the fact rows the sink makes of them."""
    p, tenant = settings.topic_prefix, settings.tenant
    template = order_template(tenant)
    reserved: dict[str, int] = {}
    out: list[Record] = []
    rows = 0
    now = int(time.time() * 1000)
    i = 0
    while len(out) < records:
        channel_order_id = f"{tag}-{i}"
        skus = [f"SKU-{(i * 7 + n) % 500:04d}" for n in range(1 + i % 2)]
        paid = paid_order(
            template, channel_order_id, skus, now + i, raw=RawRef(topic="raw.orders.shopee", partition=0, offset=i)
        )
        key, lines = paid.order_key, paid.lines
        group: list[tuple[Record, int]] = [((ORDERS.full_name(p), key.encode(), paid.encode()), 2 + len(lines))]
        for n, sku in enumerate(skus):
            short = (i + n) % 25 == 0
            hold = {"hold_id": f"{key}|{n}", "order_key": key, "sku": sku, "quantity": 1,
                    "state": "short" if short else "reserved", "warehouse": None if short else "WH-1",
                    "available": 0 if short else 100}  # fmt: skip
            group.append(((RESERVATIONS.full_name(p), key.encode(), codec("reservation").encode(hold)), 1))
            before = reserved.get(sku, 0)
            reserved[sku] = before + 1
            move = {"sku": sku, "warehouse": "WH-1", "cause": "reserve", "ref": f"{key}|{n}",
                    "on_hand_before": 1_000_000, "on_hand_after": 1_000_000, "reserved_before": before,
                    "reserved_after": before + 1}  # fmt: skip
            group.append(((INVENTORY.full_name(p), sku.encode(), codec("stock_movement").encode(move)), 1))
        if i % 5 == 0:
            shipped = paid.model_copy(
                update={"event_id": f"{key}:shipped", "status": OrderStatus.SHIPPED, "event_time_ms": now + i + 60_000}
            )
            group.append(((ORDERS.full_name(p), key.encode(), shipped.encode()), 2 + len(lines)))
        if i % 10 == 0:
            stock = {"tenant": tenant, "channel": "shopee", "sku": skus[0], "available": 100,
                     "computed_at_ms": now, "source_partition": 0, "source_offset": i, "source_time_ms": now,
                     "rules_version": "bench"}  # fmt: skip
            stock_key = f"shopee:{skus[0]}".encode()
            group.append(((CHANNEL_STOCK.full_name(p), stock_key, codec("channel_stock").encode(stock)), 1))
        if i % 50 == 0:
            letter = DeadLetter.of(
                tenant=tenant, channel="lazada", stage="normalize", reason_code="bad_json", reason="bench",
                topic="raw.orders.lazada", partition=0, offset=i, key=b"k", headers={}, original=b"{not json",
            )  # fmt: skip
            group.append(((DEAD_LETTERS.full_name(p), b"raw.orders.lazada", letter.encode()), 1))
        for record, made in group[: records - len(out)]:
            out.append(record)
            rows += made
        i += 1
    return out, rows


def _produce(settings: Settings, records: list[Record]) -> float:
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 20, "compression.type": "lz4"}
    )
    errors: list[str] = []

    def delivered(err: Any, _: Any) -> None:
        if err is not None:
            errors.append(str(err))

    began = time.monotonic()
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        raise ServiceError(f"{left} record(s) not delivered to Kafka; errors: {errors[:3] or 'none'}")
    return time.monotonic() - began


@dataclass
class SinkRun:
    label: str
    batch_rows: int
    flush_seconds: float
    records: int
    fact_rows: int
    seconds: float
    join_seconds: float
    flushes: int
    insert_seconds: float
    table_rows_final: int
    db_mb_on_disk: float
    peak_rss_mb: float
    warnings: list[str] = field(default_factory=list)

    def numbers(self) -> dict[str, object]:
        steady = max(self.seconds - self.join_seconds, 1e-9)
        return {
            "batch_rows": self.batch_rows,
            "flush_seconds": self.flush_seconds,
            "records": self.records,
            "fact_rows_written": self.fact_rows,
            "table_rows_final": self.table_rows_final,
            "seconds": round(self.seconds, 2),
            "group_join_seconds": round(self.join_seconds, 2),
            "records_per_s": round(self.records / self.seconds, 1),
            "rows_per_s": round(self.fact_rows / self.seconds, 1),
            "records_per_s_after_join": round(self.records / steady, 1),
            "rows_per_s_after_join": round(self.fact_rows / steady, 1),
            "flushes": self.flushes,
            "records_per_flush": round(self.records / max(self.flushes, 1), 1),
            "rows_per_flush": round(self.fact_rows / max(self.flushes, 1), 1),
            "insert_seconds": round(self.insert_seconds, 2),
            "db_mb_on_disk": round(self.db_mb_on_disk, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "sink_warnings": len(self.warnings),
        }


class _Warnings(logging.Handler):
    """Collects what the sink logs at WARNING and above while it runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scalar(client: Client, sql: str) -> int:
    rows = client.query(sql).result_rows
    return int(rows[0][0]) if rows else 0


def _sink_run(settings: Settings, label: str, records: int, expected_rows: int, database: str) -> SinkRun:
    client = get_client(settings, database=database)
    migrate(client)
    spec = clickhouse_sink(client, settings.topic_prefix)
    rows_written = [0]
    insert_s = [0.0]
    write = spec.write

    def counting(batch: list[list[Fact]]) -> None:
        began = time.perf_counter()
        write(batch)
        insert_s[0] += time.perf_counter() - began
        rows_written[0] += sum(len(facts) for facts in batch)

    stop, stats = threading.Event(), SinkStats()
    caught = _Warnings()
    logging.getLogger("sinks").addHandler(caught)
    thread = threading.Thread(
        target=run_sink,
        args=(settings, replace(spec, write=counting), stop, stats, f"bench-sink-{uuid.uuid4().hex[:8]}"),
        name=f"bench-sink-{label}",
        daemon=True,
    )
    began = time.monotonic()
    thread.start()
    try:
        if not wait_until(lambda: stats.consumed > 0, 60, 0.01):
            raise ServiceError(f"the sink read nothing within 60 s: {caught.lines[-3:] or 'no warnings'}")
        joined = time.monotonic() - began
        done = wait_until(lambda: stats.consumed >= records and stats.written >= records, SINK_DEADLINE_S, 0.01)
        seconds = time.monotonic() - began
    finally:
        stop.set()
        thread.join(60)
        logging.getLogger("sinks").removeHandler(caught)
    if not done:
        raise ServiceError(
            f"the sink ({label}) did not write {records} records within {SINK_DEADLINE_S:.0f} s: {stats}; "
            f"warnings: {caught.lines[-3:] or 'none'}"
        )
    if stats.dead_lettered or rows_written[0] != expected_rows:
        raise ServiceError(
            f"the sink ({label}) wrote {rows_written[0]} fact rows, expected {expected_rows}; "
            f"{stats.dead_lettered} records were dead-lettered"
        )
    final = sum(_scalar(client, f"SELECT count() FROM {t} FINAL") for t in COLUMNS)
    size = _scalar(client, f"SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{database}' AND active")
    client.command(f"DROP DATABASE IF EXISTS `{database}`")
    client.close()
    return SinkRun(
        label=label,
        batch_rows=settings.sink_batch_rows,
        flush_seconds=settings.sink_flush_seconds,
        records=records,
        fact_rows=rows_written[0],
        seconds=seconds,
        join_seconds=joined,
        flushes=stats.flushes,
        insert_seconds=insert_s[0],
        table_rows_final=final,
        db_mb_on_disk=size / 1024 / 1024,
        peak_rss_mb=_peak_rss_mb(),
        warnings=caught.lines,
    )


# --- 2. detector latency -------------------------------------------------------------------------


@dataclass
class LatencyResult:
    alerts: int
    rate_per_s: float
    e2e_ms: list[float]
    detector_ms: list[float]
    warnings: list[str]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else float("nan")


def _alert_facts(settings: Settings, tag: str) -> list[tuple[Record, str, str]]:
    """(record, dedupe key, state) of facts that each cause exactly one alert record."""
    p = settings.topic_prefix
    out: list[tuple[Record, str, str]] = []
    for i in range(ALERT_PAIRS):
        sku = f"LAT-{tag}-M{i:03d}"
        for reserved, state in ((12, "firing"), (0, "resolved")):
            move = {"sku": sku, "warehouse": "WH-1", "cause": "reserve", "ref": f"{sku}|{reserved}",
                    "on_hand_before": 10, "on_hand_after": 10, "reserved_before": 0,
                    "reserved_after": reserved}  # fmt: skip
            record = (INVENTORY.full_name(p), sku.encode(), codec("stock_movement").encode(move))
            out.append((record, f"oversell:sku:{sku}@WH-1", state))
    for i in range(ALERT_SHORTS):
        sku = f"LAT-{tag}-S{i:03d}"
        key = order_key(settings.tenant, "shopee", f"{tag}-short-{i}")
        hold = {"hold_id": f"{key}|0", "order_key": key, "sku": sku, "quantity": 1, "state": "short",
                "warehouse": None, "available": 0}  # fmt: skip
        record = (RESERVATIONS.full_name(p), key.encode(), codec("reservation").encode(hold))
        out.append((record, f"oversell:sku:{sku}", "firing"))
    return out


def _detector_latency(settings: Settings, tag: str) -> LatencyResult:
    alerts_topic = ALERTS.full_name(settings.topic_prefix)
    arrived: dict[tuple[str, str], float] = {}
    extra: list[str] = []
    stop_reader, stop_detectors = threading.Event(), threading.Event()
    reader = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"bench-alerts-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    reader.assign([TopicPartition(alerts_topic, n, 0) for n in range(settings.partitions)])
    alert_codec = codec("alert")

    def read() -> None:
        while not stop_reader.is_set():
            msg = reader.poll(0.05)  # poll, not consume: it returns as soon as one record is there
            if msg is None or msg.error() is not None:
                continue
            now = time.time() * 1000
            record = alert_codec.decode(msg.value() or b"")
            key = (record["dedupe_key"], record["state"])
            if key in arrived:
                extra.append(f"{key[0]} {key[1]} (again)")
            else:
                arrived[key] = now

    stats = DetectorStats()
    config = DetectorConfig(bucket_ms=1_000)
    detectors = threading.Thread(
        target=run_detectors, args=(settings, stop_detectors, stats, config), name="bench-detectors", daemon=True
    )
    reading = threading.Thread(target=read, name="bench-alert-reader", daemon=True)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 0})
    produced: dict[tuple[str, str], int] = {}

    def send(record: Record, dedupe_key: str, state: str) -> None:
        stamp = int(time.time() * 1000)
        producer.produce(record[0], key=record[1], value=record[2], timestamp=stamp)
        producer.poll(0)
        produced[(dedupe_key, state)] = stamp

    warm = f"LAT-{tag}-WARM"
    warm_keys = {(f"oversell:sku:{warm}@WH-1", "firing"), (f"oversell:sku:{warm}@WH-1", "resolved")}
    facts = _alert_facts(settings, tag)
    wanted = {(k, s) for _, k, s in facts}
    # the detectors log each alert at WARNING: keep them off the console, and keep any other warning
    detector_log = logging.getLogger("oms.alerting")
    caught = _Warnings()
    detector_log.addHandler(caught)
    detector_log.propagate = False
    reading.start()
    detectors.start()
    try:
        # warm-up: the detectors' group join and the first fetch are not latency
        for reserved, state in ((1, "firing"), (0, "resolved")):
            move = {"sku": warm, "warehouse": "WH-1", "cause": "reserve", "ref": "warm", "on_hand_before": 0,
                    "on_hand_after": 0, "reserved_before": 0, "reserved_after": reserved}  # fmt: skip
            send((INVENTORY.full_name(settings.topic_prefix), warm.encode(), codec("stock_movement").encode(move)),
                 f"oversell:sku:{warm}@WH-1", state)  # fmt: skip
        producer.flush(30)
        if not wait_until(lambda: len(arrived) >= 2, 90, 0.01):
            raise ServiceError(f"the detectors raised no alert within 90 s (stats {stats})")
        began = time.monotonic()
        for n, (record, dedupe_key, state) in enumerate(facts):
            ahead = began + n / ALERT_RATE - time.monotonic()
            if ahead > 0:  # pacing the load generator, not synchronising
                time.sleep(ahead)
            send(record, dedupe_key, state)
        producer.flush(30)
        wait_until(lambda: wanted <= arrived.keys(), 60, 0.01)
    finally:
        stop_detectors.set()
        detectors.join(60)
        stop_reader.set()
        reading.join(10)
        reader.close()
        detector_log.removeHandler(caught)
        detector_log.propagate = True
    missing = wanted - arrived.keys()
    unexpected = sorted(f"{k} {s}" for k, s in arrived.keys() - wanted - warm_keys)
    if missing or unexpected or extra or stats.alerts != len(facts) + 2:
        raise ServiceError(
            f"expected exactly {len(facts)} alerts (+2 warm-up), one per fact: {len(missing)} missing "
            f"(e.g. {sorted(missing)[:3]}), unexpected {(unexpected + extra)[:3]}, the detectors published "
            f"{stats.alerts}"
        )
    return LatencyResult(
        alerts=len(facts),
        rate_per_s=ALERT_RATE,
        e2e_ms=[arrived[(k, s)] - produced[(k, s)] for _, k, s in facts],
        detector_ms=list(stats.latencies_ms)[2:],
        warnings=[line for line in caught.lines if not line.startswith(f"WARNING {detector_log.name}: alert ")],
    )


# --- 3. pure detector throughput -----------------------------------------------------------------


def detector_facts(count: int, seed: int = 11) -> list[OrderSeen | ReservationSeen | MovementSeen]:
    """Orders, reservations and ledger movements in the ratio 1 : 1.5 : 1.5, 5 ms of stream time apart."""
    rng = random.Random(seed)
    base = 1_795_824_000_000
    out: list[OrderSeen | ReservationSeen | MovementSeen] = []
    open_orders: list[OrderSeen] = []
    reserved: dict[str, int] = {}
    n = 0
    while len(out) < count:
        at = base + 5 * len(out)
        if open_orders and rng.random() < 0.2:  # a later state of an earlier order
            first = open_orders.pop(rng.randrange(len(open_orders)))
            out.append(replace(first, status="shipped", at_ms=at, event_time_ms=at, first_seen=False))
            continue
        n += 1
        channel = ("shopee", "lazada", "tiktok")[n % 3]
        key = f"bench:{channel}:{n}"
        skus = [f"SKU-{rng.randint(1, 2000):04d}" for _ in range(rng.choice((1, 2)))]
        cod = rng.random() < 0.3
        order = OrderSeen(
            order_key=key, channel=channel, market="SG", status="paid", is_cod=cod, currency="SGD",
            ship_by_ms=at + 3 * 86_400_000, event_time_ms=at,
            lines=tuple((s, 1, 2990 + rng.randint(0, 100)) for s in skus),
            at_ms=at, first_seen=True, phone_key=f"p{rng.randrange(10**9)}" if cod else None,
            address_key=f"a{rng.randrange(10**9)}" if cod else None,
        )  # fmt: skip
        out.append(order)
        open_orders.append(order)
        for sku in skus:
            short = rng.random() < 0.02
            out.append(ReservationSeen(key, sku, 1, "short" if short else "reserved", 0 if short else 50,
                                       None if short else "WH-1", at))  # fmt: skip
            before = reserved.get(sku, 0)
            reserved[sku] = before + 1
            out.append(MovementSeen(sku, "WH-1", "reserve", f"{key}|{sku}", 1_000_000, before + 1, at))
    return out[:count]


def _detector_throughput(count: int) -> dict[str, object]:
    facts = detector_facts(count)
    detectors = Detectors(DetectorConfig())
    handlers: dict[type, Callable[[Any], list[Any]]] = {
        OrderSeen: detectors.on_order,
        ReservationSeen: detectors.on_reservation,
        MovementSeen: detectors.on_movement,
    }
    alerts = 0
    next_tick = facts[0].at_ms + 1000
    began = time.perf_counter()
    for fact in facts:
        if fact.at_ms >= next_tick:
            alerts += len(detectors.tick(fact.at_ms))
            next_tick = fact.at_ms + 1000
        alerts += len(handlers[type(fact)](fact))
    seconds = time.perf_counter() - began
    return {
        "facts": count,
        "seconds": round(seconds, 2),
        "facts_per_s": round(count / seconds, 1),
        "us_per_fact": round(seconds / count * 1e6, 2),
        "alert_transitions": alerts,
    }


# --- the whole benchmark -------------------------------------------------------------------------


def _dir_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total / 1024 / 1024


def run_sink_bench(settings: Settings, records: int, out_dir: Path) -> dict[str, object]:
    """Run the three measurements, print them as a table and write results/sink-<stamp>.json and .md."""
    if records < 100:
        raise ServiceError("oms bench sink: --records must be at least 100")
    if not kafka.broker_answers(settings.kafka_bootstrap):
        raise ServiceError(f"Kafka does not answer at {settings.kafka_bootstrap}: run `oms up`")
    tag = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="oms-bench-sink-"))
    run = settings.model_copy(update={"topic_prefix": f"bench-sink-{tag}.", "data_dir": data_dir})
    if run.data_path != data_dir.resolve():
        raise ServiceError(f"the benchmark's data directory resolved to {run.data_path}, not {data_dir}")
    alerts_run = run.model_copy(update={"topic_prefix": f"bench-sink-{tag}.alerts."})
    if not run.clickhouse_embedded:
        print(f"  note: OMS_CLICKHOUSE_URL is set; the sink writes to {run.clickhouse_url} (databases bench_{tag}_*)")
    try:
        topics.ensure_topics(run)
        topics.ensure_topics(alerts_run)
        print(f"  topics under {run.topic_prefix}, chDB in {data_dir}")
        batch, rows = fact_records(run, records, tag)
        produce_s = _produce(run, batch)
        print(f"  produced {len(batch)} fact records ({rows} fact rows) in {produce_s:.1f} s")
        small = run.model_copy(update={"sink_batch_rows": SMALL_BATCH_ROWS, "sink_flush_seconds": SMALL_FLUSH_SECONDS})
        sinks = []
        for label, use in (("default", run), ("small", small)):
            print(f"  sink run '{label}': batch {use.sink_batch_rows} rows or {use.sink_flush_seconds} s ...")
            sinks.append(_sink_run(use, label, len(batch), rows, f"bench_{tag}_{label}"))
        chdb_mb = _dir_mb(data_dir)
        print(f"  detector latency: {ALERT_PAIRS * 2 + ALERT_SHORTS} alert-raising facts at {ALERT_RATE:g}/s ...")
        latency = _detector_latency(alerts_run, tag)
        print(f"  detectors on one core: {DETECTOR_FACTS} facts ...")
        pure = _detector_throughput(DETECTOR_FACTS)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    numbers: dict[str, object] = {"topic_prefix": run.topic_prefix, "produce_seconds": round(produce_s, 2)}
    for sink in sinks:
        numbers |= {f"sink.{sink.label}.{k}": v for k, v in sink.numbers().items()}
    numbers["sink.chdb_dir_mb_after_runs"] = round(chdb_mb, 2)
    numbers |= {
        "alerts.count": latency.alerts,
        "alerts.rate_per_s": latency.rate_per_s,
        "alerts.e2e_ms_p50": _pct(latency.e2e_ms, 0.50),
        "alerts.e2e_ms_p95": _pct(latency.e2e_ms, 0.95),
        "alerts.e2e_ms_p99": _pct(latency.e2e_ms, 0.99),
        "alerts.e2e_ms_max": round(max(latency.e2e_ms), 1),
        "alerts.detector_ms_p50": _pct(latency.detector_ms, 0.50),
        "alerts.detector_ms_p95": _pct(latency.detector_ms, 0.95),
        "alerts.detector_ms_p99": _pct(latency.detector_ms, 0.99),
        "alerts.detector_ms_max": round(max(latency.detector_ms), 1),
        "alerts.detector_warnings": len(latency.warnings),
    }
    numbers |= {f"detectors.{k}": v for k, v in pure.items()}
    numbers["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    print(_table(sinks, numbers))
    for sink in sinks:
        for line in sink.warnings[:10]:
            print(f"  sink {sink.label} logged: {line}")
    for line in latency.warnings[:10]:
        print(f"  detectors logged: {line}")
    _write(out_dir, "sink", numbers)
    return numbers


def _table(sinks: list[SinkRun], numbers: dict[str, object]) -> str:
    rows = [f"\n  {'sink into chDB':<28}" + "".join(f"{s.label:>14}" for s in sinks)]
    columns = [s.numbers() for s in sinks]
    for metric in columns[0]:
        rows.append(f"  {metric:<28}" + "".join(f"{c[metric]!s:>14}" for c in columns))
    rows.append(f"  {'chDB dir after both (MB)':<28}{numbers['sink.chdb_dir_mb_after_runs']!s:>14}")
    rows.append(f"\n  {'alerts, fact -> alerts.v1':<28}")
    for key, value in numbers.items():
        if key.startswith("alerts."):
            rows.append(f"  {key.removeprefix('alerts.'):<28}{value!s:>14}")
    rows.append(f"\n  {'detectors, one core':<28}")
    for key, value in numbers.items():
        if key.startswith("detectors."):
            rows.append(f"  {key.removeprefix('detectors.'):<28}{value!s:>14}")
    rows.append(f"\n  {'peak RSS of this process MB':<28}{numbers['peak_rss_mb']!s:>14}")
    return "\n".join(rows)
