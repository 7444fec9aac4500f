"""``oms bench reserve``: canonical orders through reserve and allocate, on real Kafka and real workers.

What it measures, each on fresh topics:
- throughput: PAID canonical orders (1-3 lines over ``skus`` SKUs in 3 warehouses, about 1.2 units
  demanded per unit in stock, so both allocated and rejected paths run) produced to
  order-changes.v1 (the orders agent's input) as fast as possible, with 1 and with 2 workers;
  orders/s from the first send to the last decision;
- latency: the same at a paced rate (half the 1-worker throughput unless ``--rate``), p50/p95/p99
  from the order's Kafka timestamp to its first allocations.v1 record (one clock, one machine);
- recovery: ``recovery_skus`` SKUs loaded, the worker killed with SIGKILL, a new one started: the
  time from its start until a probe order is decided, against the same for a worker with empty
  tables (the difference is restoring the tables from their changelogs).
Results go to results/ as JSON and markdown with the machine and the command.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.stock_load import load
from infra import services, topics
from infra.process import ManagedProcess, ServiceError, wait_until
from oms.bench import _peak_rss_mb, _write, order_template, paid_order
from oms.runtime import spawn_worker
from oms.settings import Settings
from schemas.topics import ALLOCATIONS, INVENTORY, ORDER_CHANGES

WAREHOUSES = ("WH-1", "WH-2", "WH-3")


@dataclass
class ThroughputResult:
    workers: int
    orders: int
    lines: int
    skus: int
    rate_limit_per_s: float
    seconds: float
    orders_per_s: float
    lines_per_s: float
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    allocated: int
    rejected: int
    worker_peak_rss_mb: float


@dataclass
class RecoveryResult:
    skus: int
    stock_load_seconds: float
    stock_rows_per_s: float
    empty_worker_start_to_decision_s: float
    restored_worker_start_to_decision_s: float
    table_restore_s: float
    worker_peak_rss_mb: float


class Orders:
    """PAID canonical orders with stable keys and 1-3 lines over the bench SKUs."""

    def __init__(self, tenant: str, skus: list[str], seed: int = 7) -> None:
        self.template = order_template(tenant)
        self.skus = skus
        self.rnd = random.Random(seed)

    def make(self, n: int, tag: str) -> tuple[str, bytes, int]:
        channel_order_id = f"{tag}-{n}"
        picked = self.rnd.sample(self.skus, self.rnd.choice((1, 1, 2, 3)))
        order = paid_order(self.template, channel_order_id, picked, int(time.time() * 1000))
        return order.order_key, order.encode(), len(order.lines)


def _producer(settings: Settings) -> Producer:
    # murmur2_random: faust's partitioner; an order's key must land where its allocation state lives
    return Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "acks": "all",
        }
    )


def _produce(producer: Producer, topic: str, key: str, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=value)
            producer.poll(0)
            return
        except BufferError:  # the local queue is full: let deliveries drain, then retry
            producer.poll(0.05)


def _consumer(settings: Settings, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    return consumer


class Decisions:
    """Reads allocations.v1 and remembers each order's first decision and its Kafka timestamp."""

    def __init__(self, settings: Settings) -> None:
        from streams.stock_records import decode_allocation

        self._decode = decode_allocation
        self.consumer = _consumer(settings, ALLOCATIONS.full_name(settings.topic_prefix))
        self.first: dict[str, tuple[int, str]] = {}

    def wait_for(self, keys: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not keys <= self.first.keys():
            if time.monotonic() > deadline:
                return False
            for msg in self.consumer.consume(num_messages=2000, timeout=0.2):
                raw_key, value = msg.key(), msg.value()
                if msg.error() is not None or raw_key is None or value is None:
                    continue
                key = raw_key.decode()
                if key not in self.first:
                    self.first[key] = (msg.timestamp()[1], self._decode(value)["outcome"])
        return True

    def close(self) -> None:
        self.consumer.close()


@contextmanager
def _workers(settings: Settings, count: int, tag: str) -> Iterator[list[ManagedProcess]]:
    procs = [spawn_worker(settings, f"bench-{tag}-{i}") for i in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def _fresh(settings: Settings) -> Settings:
    run = settings.model_copy(update={"topic_prefix": f"bres{uuid.uuid4().hex[:6]}.", "log_level": "warning"})
    topics.ensure_topics(run)
    return run


def _load_stock(run: Settings, skus: list[str], per_warehouse: int, folder: Path) -> float:
    """Load stock and wait until the inventory stage has applied every row; returns seconds taken."""
    csv = folder / f"{run.topic_prefix}stock.csv"
    rows = [f"{sku},{w},{per_warehouse},1" for sku in skus for w in WAREHOUSES]
    csv.write_text("sku,warehouse,on_hand,version\n" + "\n".join(rows) + "\n")
    began = time.monotonic()
    load(run, csv)
    consumer = _consumer(run, INVENTORY.full_name(run.topic_prefix))
    seen = 0
    try:
        deadline = time.monotonic() + 1800
        while seen < len(rows):
            if time.monotonic() > deadline:
                raise ServiceError(f"only {seen} of {len(rows)} stock rows reached the ledger in 30 minutes")
            seen += sum(1 for m in consumer.consume(num_messages=5000, timeout=0.2) if m.error() is None)
    finally:
        consumer.close()
        csv.unlink(missing_ok=True)
    return time.monotonic() - began


def _group_stable(run: Settings, members: int, timeout: float) -> bool:
    admin = AdminClient({"bootstrap.servers": run.kafka_bootstrap})
    group = f"{run.topic_prefix}oms"

    def stable() -> bool:
        try:
            described = admin.describe_consumer_groups([group])[group].result(timeout=5)
        except KafkaException:
            return False
        assigned = [m for m in described.members if m.assignment and m.assignment.topic_partitions]
        return str(described.state).endswith("STABLE") and len(assigned) >= members

    return wait_until(stable, timeout, interval=0.5)


def _warm_up(run: Settings, orders: Orders, decisions: Decisions, producer: Producer, workers: int) -> None:
    """One order per partition decided: every worker has joined, restored and is processing."""
    topic = ORDER_CHANGES.full_name(run.topic_prefix)
    keys = set()
    for i in range(4 * run.partitions):
        key, value, _ = orders.make(i, "warm")
        _produce(producer, topic, key, value)
        keys.add(key)
    producer.flush(30)
    if not decisions.wait_for(keys, 180):
        raise ServiceError("the worker(s) decided nothing within 180 s; see .oms/logs/bench-*.log")
    if workers > 1 and not _group_stable(run, workers, 120):
        raise ServiceError(f"{workers} workers did not share the partitions within 120 s")


def run_throughput(
    settings: Settings, orders_n: int, skus_n: int, workers: int, folder: Path, rate: float = 0.0
) -> ThroughputResult:
    run = _fresh(settings)
    skus = [f"BENCH-{i:06d}" for i in range(skus_n)]
    expected_lines = orders_n * 1.75  # mean lines per order
    per_warehouse = max(1, math.ceil(expected_lines / 1.2 / skus_n / len(WAREHOUSES)))
    orders = Orders(run.tenant, skus)
    with _workers(run, workers, f"w{workers}") as procs:
        _load_stock(run, skus, per_warehouse, folder)
        decisions = Decisions(run)
        producer = _producer(run)
        try:
            _warm_up(run, orders, decisions, producer, workers)
            if workers > 1:  # a second warm-up after the rebalance: every worker serving
                _warm_up(run, orders, decisions, producer, 1)
            prepared = [orders.make(i, "o") for i in range(orders_n)]
            sent: dict[str, int] = {}
            topic = ORDER_CHANGES.full_name(run.topic_prefix)
            began, began_wall = time.monotonic(), time.time()
            for i, (key, value, _) in enumerate(prepared):
                if rate > 0 and i % 20 == 0:  # pacing the load generator, not synchronising
                    ahead = began + i / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                sent[key] = int(time.time() * 1000)
                _produce(producer, topic, key, value)
            producer.flush(120)
            if not decisions.wait_for(set(sent), 1200):
                missing = len(set(sent) - decisions.first.keys())
                raise ServiceError(f"{missing} of {orders_n} orders were not decided within 20 minutes")
            last = max(decisions.first[k][0] for k in sent)
            seconds = last / 1000 - began_wall
            latencies = sorted(decisions.first[k][0] - sent[k] for k in sent)
            outcomes = [decisions.first[k][1] for k in sent]
            peak = sum(_peak_rss_mb(p.pid()) for p in procs)
        finally:
            decisions.close()
    lines = sum(n for _, _, n in prepared)

    def pct(q: float) -> float:
        return float(latencies[min(len(latencies) - 1, int(q * len(latencies)))])

    return ThroughputResult(
        workers=workers,
        orders=orders_n,
        lines=lines,
        skus=skus_n,
        rate_limit_per_s=rate,
        seconds=round(seconds, 2),
        orders_per_s=round(orders_n / seconds, 1),
        lines_per_s=round(lines / seconds, 1),
        latency_ms_p50=pct(0.50),
        latency_ms_p95=pct(0.95),
        latency_ms_p99=pct(0.99),
        latency_ms_max=float(latencies[-1]),
        allocated=outcomes.count("allocated"),
        rejected=outcomes.count("rejected"),
        worker_peak_rss_mb=round(peak, 1),
    )


def run_recovery(settings: Settings, skus_n: int, folder: Path) -> RecoveryResult:
    run = _fresh(settings)
    skus = [f"REC-{i:06d}" for i in range(skus_n)]
    orders = Orders(run.tenant, skus[:10])
    topic = ORDER_CHANGES.full_name(run.topic_prefix)
    decisions = Decisions(run)
    producer = _producer(run)
    try:
        worker = spawn_worker(run, "bench-recovery-0")
        try:
            empty = _start_to_decision(orders, decisions, producer, topic, "empty", began=time.monotonic())
            load_s = _load_stock(run, skus, 5, folder)
            if not worker.kill():
                raise ServiceError(f"the worker died before the kill:\n{worker.log_tail()}")
        finally:
            worker.stop()
        began = time.monotonic()
        restored = spawn_worker(run, "bench-recovery-1")
        try:
            restored_s = _start_to_decision(orders, decisions, producer, topic, "restored", began=began)
            peak = _peak_rss_mb(restored.pid())
        finally:
            restored.stop()
    finally:
        decisions.close()
    rows = skus_n * len(WAREHOUSES)
    return RecoveryResult(
        skus=skus_n,
        stock_load_seconds=round(load_s, 1),
        stock_rows_per_s=round(rows / load_s, 1),
        empty_worker_start_to_decision_s=round(empty, 2),
        restored_worker_start_to_decision_s=round(restored_s, 2),
        table_restore_s=round(restored_s - empty, 2),
        worker_peak_rss_mb=round(peak, 1),
    )


def _start_to_decision(
    orders: Orders, decisions: Decisions, producer: Producer, topic: str, tag: str, began: float
) -> float:
    key, value, _ = orders.make(0, f"probe-{tag}")
    _produce(producer, topic, key, value)
    producer.flush(30)
    if not decisions.wait_for({key}, 600):
        raise ServiceError(f"the {tag} worker decided nothing within 600 s; see .oms/logs/bench-recovery-*.log")
    return time.monotonic() - began


def run_reserve(
    settings: Settings,
    orders_n: int,
    skus_n: int,
    worker_counts: list[int],
    recovery_skus: int,
    out_dir: Path,
    rate: float = 0.0,
) -> dict[str, Any]:
    for line in services.up(settings):
        print("  " + line)
    folder = settings.data_path / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    numbers: dict[str, Any] = {}
    runs = []
    for workers in worker_counts:
        result = run_throughput(settings, orders_n, skus_n, workers, folder)
        print(f"throughput, {workers} worker(s):")
        print(summary(result))
        runs.append(result)
        numbers[f"w{workers}_orders_per_s"] = result.orders_per_s
        numbers[f"w{workers}_lines_per_s"] = result.lines_per_s
        numbers[f"w{workers}_unpaced_latency_ms_p50"] = result.latency_ms_p50
        numbers[f"w{workers}_unpaced_latency_ms_p99"] = result.latency_ms_p99
        numbers[f"w{workers}_peak_rss_mb"] = result.worker_peak_rss_mb
    paced_rate = rate or (round(runs[0].orders_per_s / 2, 0) if runs else 200.0)
    paced = run_throughput(settings, min(orders_n, int(paced_rate * 20)), skus_n, 1, folder, rate=paced_rate)
    print(f"latency at {paced_rate:.0f} orders/s, 1 worker:")
    print(summary(paced))
    numbers.update(
        paced_rate_per_s=paced_rate,
        paced_orders=paced.orders,
        paced_latency_ms_p50=paced.latency_ms_p50,
        paced_latency_ms_p95=paced.latency_ms_p95,
        paced_latency_ms_p99=paced.latency_ms_p99,
        paced_latency_ms_max=paced.latency_ms_max,
    )
    if recovery_skus > 0:
        recovery = run_recovery(settings, recovery_skus, folder)
        print(f"recovery after kill -9 with {recovery_skus} SKUs:")
        print(summary(recovery))
        numbers.update({f"recovery_{k}": v for k, v in asdict(recovery).items()})
    numbers.update(orders=orders_n, skus=skus_n, partitions=settings.partitions)
    _write(out_dir, "reserve", numbers)
    return numbers


def summary(result: ThroughputResult | RecoveryResult) -> str:
    return "\n".join(f"  {k:<36}{v}" for k, v in asdict(result).items())
