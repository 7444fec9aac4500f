"""``oms bench pipeline``: the flash-sale scenario end to end on real Kafka, real workers and the sinks.

On topics of its own (prefix ``bp<hex>.``) and a private chDB directory: 100 SKUs x 1,000 units are
loaded across the SG nodes of the routing rules, workers and the sinks (ClickHouse, Redis, stock sync,
detectors) start, and the simulator's real payloads from five channels (cancellations, duplicate
deliveries and status updates that overtake their order included) are produced to the raw topics at
``--rate`` records/s for ``--seconds``. With ``--chaos`` a worker is killed with SIGKILL at 40 % of
the load and a new one started. Then the verifier (loadtest/verify.py) checks nothing oversold,
every order decided, nothing lost, and ClickHouse gives the latencies:

- raw order received -> routing decision (per order: the first routing decision after its first
  routable state arrived), p50/p95/p99;
- stock committed (a ledger movement) -> the next channel stock update for that SKU, p50/p95/p99.

Every second a sampler records inputs produced, orders decided, the workers' consumer lag and CPU and
memory of each process; the series goes to the results (and a PNG when matplotlib is installed). The
same run measures this machine's I/O ceiling: a bare confluent-kafka consume-and-produce loop on the
same broker, and a textbook faust peer (loadtest/peer.py: an agent per step, a Table written per event)
on the same orders, queued; the pipeline's rates are given as ratios to both. The peer is timed
from its first to its last decision with all input queued and nothing else running; the pipeline is
timed end to end (load start to every order in ClickHouse) and, as the peer is, first to last
decision on allocations.v1. ``--load queued`` puts the whole load on Kafka before the workers start,
so that figure is taken in the peer's conditions too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

import loadtest
from connectors.simulator import Simulator, run_to_kafka
from connectors.stock_load import load
from infra import clickhouse, kafka, topics
from infra.process import ManagedProcess, ServiceError
from loadtest.peer import PeerResult, run_peer
from loadtest.scenario import Scenario
from loadtest.verify import Verdict, verify
from oms.bench import _write, records_per_topic
from oms.runtime import running_sinks, settings_env, spawn_worker
from oms.settings import Settings
from schemas.order import Market, order_key
from schemas.topics import ALLOCATIONS, RAW_ORDERS
from sinks.clickhouse import migrate
from streams.app import group_id, source_topics
from streams.routing_rules import load_rules
from streams.stock_records import decode_allocation

log = logging.getLogger(__name__)

CHANNELS = ["shopee", "lazada", "tiktok", "shopify", "pos"]
#: The simulator seed of the load (locust's and the paced simulator's).
LOAD_SEED = 17
#: Deliveries per second per locust user.
USER_RATE = 50.0
#: Orders the textbook peer (loadtest/peer.py) processes in the same run: the scenario's, up to this.
PEER_ORDERS = 5_000


@dataclass
class Sample:
    t: float
    produced: int
    decided: int
    lag: int
    cpu: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)


def isolated(base: Settings, data_dir: Path) -> Settings:
    """``base`` on topics and a chDB directory of its own."""
    return base.model_copy(
        update={"topic_prefix": f"bp{uuid.uuid4().hex[:8]}.", "data_dir": data_dir, "worker_stall_s": 60.0}
    )


def _stock(settings: Settings, skus: list[str], units: int, folder: Path) -> dict[str, int]:
    nodes = [n.id for n in load_rules(settings.routing_rules_path()).nodes_in(Market.SG)]
    rows = []
    for sku in skus:
        share, extra = divmod(units, len(nodes))
        rows += [f"{sku},{node},{share + (1 if i < extra else 0)}" for i, node in enumerate(nodes)]
    csv = folder / "flash-sale-stock.csv"
    csv.write_text("sku,warehouse,on_hand,version\n" + "\n".join(f"{r},1" for r in rows) + "\n")
    loaded = load(settings, csv)
    if loaded.units != units * len(skus):
        raise ServiceError(f"stock load wrote {loaded.units} units, expected {units * len(skus)}")
    return dict.fromkeys(skus, units)


def _lag(consumer: Consumer, parts: list[TopicPartition]) -> int:
    committed = consumer.committed(parts, timeout=5)
    lag = 0
    for tp in committed:
        _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5, cached=False)
        lag += max(0, high - max(tp.offset, 0))
    return lag


def _partitions(settings: Settings, consumer: Consumer, names: list[str] | None = None) -> list[TopicPartition]:
    parts = []
    for topic in names if names is not None else source_topics(settings):
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        parts += [TopicPartition(topic, p) for p in (meta.partitions if meta is not None else {})]
    return parts


def _written(consumer: Consumer, parts: list[TopicPartition]) -> int:
    """Records on ``parts`` (their high watermarks): what the load has put on the raw topics so far."""
    return sum(max(0, consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1]) for tp in parts)


class LocustLoad:
    """The load of a bench run: locust's KafkaOrderUser (loadtest/users.py), headless, in a child process.

    ``rate`` deliveries/s in all, 50 per user; with a ``shape`` (ramp, spike, plateau: loadtest/shapes.py)
    ``rate`` is the peak. The users take the deliveries in order from one simulator stream (seed
    LOAD_SEED, five channels, SG, the 100 flash-sale SKUs, hot SKUs included), so the first N of that
    stream are exactly what was sent.
    """

    def __init__(self, settings: Settings, rate: float, seconds: float, shape: str, folder: Path) -> None:
        self.settings, self.seconds, self.shape, self.folder = settings, seconds, shape, folder
        self.users = max(1, math.ceil(rate / USER_RATE))
        self.knobs = {
            "OMS_LOAD_SEED": str(LOAD_SEED),
            "OMS_LOAD_USER_RATE": str(rate / self.users),
            "OMS_LOAD_CHANNELS": ",".join(CHANNELS),
            "OMS_LOAD_MARKETS": "SG",
            "OMS_LOAD_SKUS": "100",
            "OMS_LOAD_SHAPE": shape,
            "OMS_LOAD_USERS": str(self.users),
            "OMS_LOAD_SECONDS": str(seconds),
        }
        self.scenario = Scenario.from_env(self.knobs)

    def run(self) -> int:
        """Run locust to the end; the deliveries Kafka acknowledged. ServiceError if any failed."""
        report = self.folder / "locust"
        command = [sys.executable, "-m", "locust", "-f", str(Path(loadtest.__file__).with_name("locustfile.py"))]
        command += ["KafkaOrderUser", "--headless", "--only-summary", "--loglevel", "WARNING"]
        command += ["--json-file", str(report), "--csv", str(self.folder / "locust")]
        if self.shape == "none":
            command += ["-u", str(self.users), "-r", str(self.users), "-t", f"{self.seconds:.0f}s"]
        env = {**settings_env(self.settings), **self.knobs}
        try:
            run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=self.seconds + 120)
        except FileNotFoundError as exc:  # pragma: no cover - the interpreter itself is missing
            raise ServiceError(f"cannot run locust: {exc}") from exc
        if "No module named locust" in run.stderr:
            raise ServiceError("locust is not installed: `pip install -e '.[dev]'`, or run with --load simulator")
        if run.returncode != 0 or not report.with_suffix(".json").exists():
            raise ServiceError(f"locust exited {run.returncode}:\n{run.stderr[-3000:]}")
        stats = json.loads(report.with_suffix(".json").read_text())
        requests = sum(int(entry["num_requests"]) for entry in stats)
        failures = sum(int(entry["num_failures"]) for entry in stats)
        if failures:
            raise ServiceError(
                f"locust: {failures} of {requests} deliveries were not acknowledged by Kafka at "
                f"{self.settings.kafka_bootstrap}; the verifier cannot tell which orders exist. See {self.folder}"
            )
        if requests == 0:
            raise ServiceError(f"locust sent nothing in {self.seconds:.0f} s:\n{run.stderr[-3000:]}")
        return requests


def _processes(workers: list[ManagedProcess], broker_pid: int | None) -> dict[str, psutil.Process]:
    out: dict[str, psutil.Process] = {"sinks+chdb (this process)": psutil.Process()}
    if broker_pid is not None:
        with contextlib.suppress(psutil.Error):
            out["kafka broker"] = psutil.Process(broker_pid)
    for proc in workers:
        pid = proc.pid()
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                out[proc.name] = psutil.Process(pid)
    return out


def ceiling(settings: Settings, records: int = 50_000, size: int = 1_500) -> float:
    """Records/s of a bare confluent-kafka loop that consumes each record and produces it on (acks=all)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    src, dst = f"{settings.topic_prefix}ceiling-in", f"{settings.topic_prefix}ceiling-out"
    for future in admin.create_topics([NewTopic(t, settings.partitions, 1) for t in (src, dst)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 5})
    payload = b"x" * size
    for i in range(records):
        producer.produce(src, key=str(i).encode(), value=payload)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}ceiling",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([src])
    moved, began, deadline = 0, 0.0, time.monotonic() + 120
    while moved < records and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=1000, timeout=0.5)
        if batch and not began:
            began = time.monotonic()
        for msg in batch:
            if msg.error() is None:
                producer.produce(dst, key=msg.key(), value=msg.value())
                moved += 1
        producer.poll(0)
        if batch:
            consumer.commit(asynchronous=True)
    producer.flush(60)
    seconds = time.monotonic() - began if began else float("inf")
    consumer.close()
    return moved / seconds


_ROUTING_MS = """
            SELECT r.decided AS decided, dateDiff('millisecond', h.ready, r.decided) AS ms
            FROM (SELECT order_key, min(decided_at) AS decided FROM routing_decisions FINAL GROUP BY order_key) AS r
            INNER JOIN (
                SELECT order_key, minIf(ingest_time, status IN ('paid', 'processing')) AS ready
                FROM order_status_history FINAL GROUP BY order_key HAVING countIf(status IN ('paid', 'processing')) > 0
            ) AS h USING (order_key)
"""


def _latencies(client: Any) -> dict[str, float]:
    routing = client.query(f"SELECT count(), quantiles(0.5, 0.95, 0.99)(ms), max(ms) FROM ({_ROUTING_MS})").result_rows[
        0
    ]
    stock = client.query(
        """
        SELECT count(), quantiles(0.5, 0.95, 0.99)(ms), max(ms) FROM (
            SELECT dateDiff('millisecond', l.at, c.computed_at) AS ms
            FROM inventory_ledger AS l
            ASOF INNER JOIN (SELECT sku, computed_at FROM channel_stock_updates) AS c
            ON l.sku = c.sku AND c.computed_at >= l.at
            WHERE l.cause != 'snapshot'
        )
        """
    ).result_rows[0]
    out: dict[str, float] = {}
    for name, (n, q, top) in (("raw_to_routing_ms", routing), ("stock_to_channel_ms", stock)):
        out[f"{name}.count"] = int(n)
        for label, value in zip(("p50", "p95", "p99"), q or [0, 0, 0], strict=False):
            out[f"{name}.{label}"] = round(float(value), 1)
        out[f"{name}.max"] = float(top or 0)
    return out


def run_pipeline(
    base: Settings,
    rate: float,
    seconds: float,
    workers: int,
    chaos: bool,
    units: int,
    out_dir: Path,
    load: str = "locust",
    shape: str = "none",
) -> dict[str, object]:
    if not kafka.broker_answers(base.kafka_bootstrap):
        raise ServiceError(f"no Kafka broker answers at {base.kafka_bootstrap}: run `oms up` first")
    broker_pid = kafka.process(base).pid()
    folder = Path(tempfile.mkdtemp(prefix="oms-bench-pipeline-"))
    settings = isolated(base, folder / "oms")
    try:
        return _run(settings, rate, seconds, workers, chaos, units, out_dir, broker_pid, folder, load, shape)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(
    settings: Settings,
    rate: float,
    seconds: float,
    n_workers: int,
    chaos: bool,
    units: int,
    out_dir: Path,
    broker_pid: int | None,
    folder: Path,
    load: str = "locust",
    shape: str = "none",
) -> dict[str, object]:
    topics.ensure_topics(settings)
    skus = [f"FS-{i:03d}" for i in range(100)]
    stock = _stock(settings, skus, units, folder)
    total = int(rate * seconds)
    locust = LocustLoad(settings, rate, seconds, shape, folder) if load == "locust" else None
    queued = load == "queued"
    if locust is not None:
        sim = locust.scenario.simulator()
        how = f"locust KafkaOrderUser x {locust.users}, shape {shape}"
    else:
        sim = Simulator(seed=LOAD_SEED, channels=CHANNELS, markets=["SG"], skus=skus, hot_share=0.0)
        how = "the simulator, all queued before the workers start" if queued else "the paced simulator"
    print(f"pipeline bench: {rate:.0f} deliveries/s for {seconds:.0f} s from {how}, {n_workers} worker(s)"
          f"{', chaos' if chaos else ''}; stock {len(skus)} SKUs x {units}")  # fmt: skip
    # The orders among the first N deliveries, computed before the load: after it, it would take CPU from the
    # pipeline's drain (the locust users may send a little more or less than rate x seconds).
    planned = int(total * 1.2) + 100
    order_at = [(i, order_key(settings.tenant, e.channel, e.order_id))
                for i, e in enumerate(sim.events(planned)) if e.kind == "order"]  # fmt: skip
    client = clickhouse.get_client(settings)
    migrate(client)
    if queued:  # the whole load waits on Kafka, as the peer's input does: no load generator competes for CPU
        began = time.monotonic()
        sent = run_to_kafka(settings, sim, total, 0).sent
        print(f"queued {sent} deliveries in {time.monotonic() - began:.1f} s")
    spawned_ms = int(time.time() * 1000)
    workers = [spawn_worker(settings, f"bench-worker-{i}") for i in range(n_workers)]
    samples: list[Sample] = []
    events: list[str] = []
    try:
        with running_sinks(settings, client) as sinks:
            lag_consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group_id(settings)})
            parts = _partitions(settings, lag_consumer)
            raw_parts = _partitions(
                settings, lag_consumer, [spec.full_name(settings.topic_prefix) for spec in RAW_ORDERS]
            )
            stop = threading.Event()

            def sampler() -> None:
                procs = _processes(workers, broker_pid)
                for p in procs.values():
                    with contextlib.suppress(psutil.Error):
                        p.cpu_percent(None)
                began = time.monotonic()
                while not stop.wait(1.0):
                    for name, p in _processes(workers, broker_pid).items():
                        if name not in procs:  # a new process (the restarted worker): cpu from the next sample
                            with contextlib.suppress(psutil.Error):
                                p.cpu_percent(None)
                            procs[name] = p
                    cpu, rss = {}, {}
                    for name, p in procs.items():
                        with contextlib.suppress(psutil.Error):
                            cpu[name] = p.cpu_percent(None)
                            rss[name] = p.memory_info().rss / 2**20
                    decided = int(str(client.command("SELECT uniqExact(order_key) FROM routing_decisions")))
                    samples.append(
                        Sample(time.monotonic() - began, _written(lag_consumer, raw_parts), decided,
                               _lag(lag_consumer, parts), cpu, rss)
                    )  # fmt: skip

            sampling = threading.Thread(target=sampler, name="bench-sampler", daemon=True)
            sampling.start()
            chaos_timer = None
            if chaos:

                def kill() -> None:
                    victim = workers[0]
                    events.append(f"{time.strftime('%H:%M:%S')} kill -9 {victim.name} (pid {victim.pid()})")
                    victim.kill()
                    workers.append(spawn_worker(settings, "bench-worker-restarted"))
                    events.append(f"{time.strftime('%H:%M:%S')} started bench-worker-restarted")

                chaos_timer = threading.Timer(0.4 * seconds, kill)
                chaos_timer.start()
            load_began, load_began_wall = time.monotonic(), time.time()
            if not queued:
                sent = locust.run() if locust is not None else run_to_kafka(settings, sim, total, rate).sent
            load_seconds = time.monotonic() - load_began
            # the deliveries sent are the first ``sent`` of the load's simulator stream
            if sent > planned:
                order_at = [(i, order_key(settings.tenant, e.channel, e.order_id))
                            for i, e in enumerate(sim.events(sent)) if e.kind == "order"]  # fmt: skip
            expected = {key for i, key in order_at if i < sent}
            print(f"load done: {sent} deliveries ({len(expected)} orders) in {load_seconds:.1f} s; verifying")
            if chaos_timer is not None:
                chaos_timer.join()
            verdict = verify(settings, expected, stock, timeout_s=max(300.0, seconds * 3))
            drained = time.monotonic() - load_began
            _settle(client, samples)
            stop.set()
            sampling.join(10)
            records = records_per_topic(settings)
            span = decision_span(settings)
            lag_consumer.close()
            latencies = _latencies(client)
            latency_series = _latency_series(client, load_began_wall)
            routed_series = _routed_series(client, load_began_wall)
            if sinks.errors:
                raise sinks.errors[0]
    finally:
        for proc in workers:
            proc.stop()
    ceiling_rate = ceiling(settings)
    peer = run_peer(settings, min(len(expected), PEER_ORDERS), units=units)
    print(f"textbook faust peer: {peer.orders_per_s:.1f} orders/s on {peer.orders} queued orders")
    numbers = _numbers(rate, seconds, n_workers, chaos, units, sent, load_seconds, drained, verdict,
                       latencies, samples, ceiling_rate, events, records, peer, span, spawned_ms)  # fmt: skip
    numbers = {"load": load, **numbers}
    _write(out_dir, "pipeline", numbers)
    _series(out_dir, samples, latency_series, routed_series)
    for line in verdict.lines():
        print("  " + line)
    return numbers


@dataclass(frozen=True)
class DecisionSpan:
    """Orders decided on allocations.v1 (an outcome other than pending) and when: Kafka timestamps, ms."""

    orders: int
    first_ms: int
    last_ms: int

    def rate_from(self, start_ms: int) -> float:
        return self.orders * 1000 / (self.last_ms - start_ms) if self.last_ms > start_ms else 0.0


def decision_span(settings: Settings) -> DecisionSpan:
    """How the peer's rate is measured (loadtest/peer.py): orders decided, first and last decision."""
    from oms.routing_ops import read_topic

    stamps, orders = [], set()
    for m in read_topic(settings, ALLOCATIONS.full_name(settings.topic_prefix), idle_timeout=5.0):
        if decode_allocation(m.value() or b"").get("outcome") == "pending":
            continue
        stamps.append(m.timestamp()[1])
        orders.add(m.key())
    return DecisionSpan(len(orders), min(stamps, default=0), max(stamps, default=0))


def _settle(client: Any, samples: list[Sample]) -> None:
    """Until the routing decisions in ClickHouse stop growing for 5 s (the sink is a second behind)."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + 120
    while time.monotonic() < deadline:
        now = int(str(client.command("SELECT count() FROM routing_decisions")))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 5:
            return
        time.sleep(0.5)  # polling ClickHouse; the deadline bounds it


def _numbers(
    rate: float,
    seconds: float,
    workers: int,
    chaos: bool,
    units: int,
    sent: int,
    load_seconds: float,
    drained: float,
    verdict: Verdict,
    latencies: dict[str, float],
    samples: list[Sample],
    ceiling_rate: float,
    events: list[str],
    records: dict[str, int],
    peer: PeerResult,
    span: DecisionSpan,
    spawned_ms: int,
) -> dict[str, object]:
    decided_rate = verdict.orders_decided / drained if drained else 0.0
    peer_rate = peer.orders_per_s
    first_to_last, from_start = span.rate_from(span.first_ms), span.rate_from(spawned_ms)
    peak_cpu: dict[str, float] = {}
    peak_rss: dict[str, float] = {}
    for s in samples:
        for name, v in s.cpu.items():
            peak_cpu[name] = max(peak_cpu.get(name, 0.0), v)
        for name, v in s.rss_mb.items():
            peak_rss[name] = max(peak_rss.get(name, 0.0), v)
    numbers: dict[str, object] = {
        "offered_rate_per_s": rate,
        "seconds": seconds,
        "workers": workers,
        "chaos": chaos,
        "stock": f"100 SKUs x {units}",
        "deliveries_sent": sent,
        "load_seconds": round(load_seconds, 1),
        "orders": verdict.orders_expected,
        "orders_decided": verdict.orders_decided,
        "orders_decided_per_s_end_to_end": round(decided_rate, 1),
        "deliveries_per_s_end_to_end": round(sent / drained, 1) if drained else 0.0,
        "drained_after_s": round(drained, 1),
        "max_consumer_lag": max((s.lag for s in samples), default=0),
        "oversold_units": verdict.oversold_units,
        "ledger_below_zero": verdict.ledger_below_zero,
        "lost_inputs": verdict.lost_inputs,
        "undecided_orders": len(verdict.undecided),
        "units_confirmed": verdict.confirmed_units,
        "units_in_stock": verdict.stock_units,
        "sold_out_skus": verdict.sold_out_skus,
        "dead_letters": verdict.dead_letters,
        "outcomes": json.dumps(verdict.outcomes, sort_keys=True),
        **latencies,
        "kafka_records_per_order": round(sum(records.values()) / verdict.orders_expected, 1)
        if verdict.orders_expected
        else 0.0,
        "kafka_records_by_topic": json.dumps(records),
        "ceiling_bare_confluent_records_per_s": round(ceiling_rate, 1),
        "pipeline_deliveries_vs_ceiling": round((sent / drained) / ceiling_rate, 4) if drained and ceiling_rate else 0,
        "peer_textbook_faust_orders_per_s": round(peer_rate, 1),
        "pipeline_orders_vs_peer": round(decided_rate / peer_rate, 3) if peer_rate else 0,
        # the peer's own methods (allocations.v1 timestamps): orders decided / first to last decision, and
        # / workers started to last decision; with --load queued, in the peer's conditions too (input
        # queued, no load generator running). A backlog makes a worker's steps large, so its first
        # decision comes late: from the start is the fairer of the two then.
        "orders_decided_per_s_first_to_last": round(first_to_last, 1),
        "pipeline_first_to_last_vs_peer": round(first_to_last / peer_rate, 3) if peer_rate else 0,
        "orders_decided_per_s_from_worker_start": round(from_start, 1),
        "peer_orders_per_s_from_worker_start": round(peer.orders_per_s_from_start, 1),
        "pipeline_from_start_vs_peer": round(from_start / peer.orders_per_s_from_start, 3)
        if peer.orders_per_s_from_start
        else 0,
        "peak_cpu_pct": json.dumps({k: round(v) for k, v in peak_cpu.items()}),
        "peak_rss_mb": json.dumps({k: round(v) for k, v in peak_rss.items()}),
        "chaos_events": "; ".join(events),
        "verdict": "PASS" if verdict.ok else "FAIL",
    }
    return numbers


def _latency_series(client: Any, began_s: float) -> list[tuple[float, float, float]]:
    """Raw order -> routing decision by when the decision was made: (seconds since load start, p50, p99) per 5 s."""
    rows = client.query(
        f"SELECT toUnixTimestamp(toStartOfInterval(decided, INTERVAL 5 SECOND)) AS bucket, "
        f"quantiles(0.5, 0.99)(ms) FROM ({_ROUTING_MS}) GROUP BY bucket ORDER BY bucket"
    ).result_rows
    return [(float(bucket) + 2.5 - began_s, float(q[0]), float(q[1])) for bucket, q in rows]  # mid-bucket


def _routed_series(client: Any, began_s: float) -> list[tuple[float, int]]:
    """Orders routed per second by when the worker decided them (``decided_at``): (seconds since load start, n).

    Not the sampler's count of rows in ClickHouse, which grows as the sink flushes: in the full sale that
    count moved in bursts (nothing for 10-30 s, then 300-500 at once) while the worker decided steadily."""
    rows = client.query(
        "SELECT toUnixTimestamp(toStartOfSecond(decided)) AS s, count() FROM "
        "(SELECT order_key, min(decided_at) AS decided FROM routing_decisions FINAL GROUP BY order_key) "
        "GROUP BY s ORDER BY s"
    ).result_rows
    return [(float(second) + 0.5 - began_s, int(n)) for second, n in rows]


def _series(
    out_dir: Path,
    samples: list[Sample],
    latency: list[tuple[float, float, float]],
    routed: Sequence[tuple[float, int]] = (),
) -> None:
    """The per-second series as JSON, and a PNG of throughput, lag and CPU when matplotlib is there."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    rows = [{"t": round(s.t, 1), "produced": s.produced, "decided": s.decided, "lag": s.lag, "cpu": s.cpu,
             "rss_mb": s.rss_mb} for s in samples]  # fmt: skip
    lat = [{"t": round(t, 1), "raw_to_routing_p50_ms": p50, "raw_to_routing_p99_ms": p99} for t, p50, p99 in latency]
    per_second = [{"t": round(t, 1), "n": n} for t, n in routed]
    series = {"per_second": rows, "latency_5s": lat, "routed_per_second": per_second}
    (out_dir / f"pipeline-{stamp}-series.json").write_text(json.dumps(series, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no PNG; `pip install -e '.[load]'`)")
        return
    t = [s.t for s in samples]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    rate_in = [0.0] + [(b.produced - a.produced) / max(b.t - a.t, 1e-6) for a, b in itertools.pairwise(samples)]
    top.plot(t, rate_in, label="deliveries produced /s")
    if routed:
        top.plot([x[0] for x in routed], [x[1] for x in routed], label="orders routed /s (by decision time)")
    else:
        rate_out = [0.0] + [(b.decided - a.decided) / max(b.t - a.t, 1e-6) for a, b in itertools.pairwise(samples)]
        top.plot(t, rate_out, label="orders routed /s (as the sink wrote them)")
    top.set_ylabel("per second")
    top.legend()
    middle.plot([x[0] for x in latency], [x[1] / 1000 for x in latency], label="raw order -> routing p50")
    middle.plot([x[0] for x in latency], [x[2] / 1000 for x in latency], label="raw order -> routing p99")
    middle.set_ylabel("seconds (by decision time)")
    middle.legend()
    bottom.plot(t, [s.lag for s in samples], label="worker consumer lag (records)")
    bottom.set_ylabel("records")
    bottom.set_xlabel("seconds")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"pipeline-{stamp}.png", dpi=90)
    print(f"chart written to {out_dir}/pipeline-{stamp}.png")
