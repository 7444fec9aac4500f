"""A textbook faust pipeline doing our reservation work the obvious way: the peer our benchmark is compared to.

The issue asks for the pipeline's figure as a ratio to "a textbook faust pipeline doing the same work
the obvious way (one agent per step, a Table updated per event, at-least-once)". This is that peer:

1. ``normalize``: the raw marketplace payloads (the simulator's bytes, on ``raw.orders.<channel>``) through
   our pure normalizer (streams/normalize.py); each order line becomes one ``LineRequest`` keyed by SKU
   on ``peer-lines``. It is a peer of the reservation + routing path only: status updates and dead
   letters are counted and dropped (the runner only sends each order's first delivery anyway).
2. ``reserve``: ``peer-lines`` keyed by SKU, a ``Table`` SKU -> units available written per event
   (``stock[sku] = left``, one changelog record each); a line is reserved whole or not at all, and one
   ``LineResult`` goes to ``peer-results`` keyed by order. Stock is seeded by ``seed`` events on the same
   topic, produced by the runner before the orders (same partition as faust's producer would pick, so
   they come first in the SKU's partition).
3. ``decide``: ``peer-results`` keyed by order, a ``Table`` order -> lines answered so far written per
   event (decided orders stay in it, so a redelivered result is not decided twice); when every line is
   in, one ``Decision`` goes to ``peer-decisions``: the market's first node of
   the routing rules when every line was reserved, else ``"short"``. No rule evaluation, carriers,
   holds or release of a short order's other lines: the peer does less than our pipeline, so the ratio
   to it flatters the peer, not us.

JSON faust Records, faust's defaults otherwise (at-least-once: offsets committed after processing,
changelogs for both tables, ``acks=all``), one worker.

``run_peer`` produces the payloads and the stock first, then starts the worker (``python -m loadtest.peer
worker``, settings from the environment as for ``oms worker``) and times the decisions it writes.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from infra.process import ManagedProcess, ServiceError
from oms.bench import _peak_rss_mb, records_per_topic
from oms.settings import Settings
from schemas import topics
from schemas.order import Market, OrderEvent
from streams.adapters.base import RawInput
from streams.app import key_partition, raw_input_of_message
from streams.normalize import normalize
from streams.routing_rules import load_rules

CHANNELS = ("shopee", "lazada", "tiktok", "shopify", "pos")
SKUS = tuple(f"FS-{i:03d}" for i in range(100))
SHORT = "short"
LINES, RESULTS, DECISIONS = "peer-lines", "peer-results", "peer-decisions"


class LineRequest(faust.Record, serializer="json", include_metadata=False):
    """One order line to reserve, keyed by SKU; or, with ``seed``, the SKU's stock (``qty`` units)."""

    order_key: str
    line_id: str
    sku: str
    qty: int
    line_count: int
    market: str
    seed: bool = False


class LineResult(faust.Record, serializer="json", include_metadata=False):
    """What the SKU's stock gave one line (``reserved`` is ``qty`` or 0), keyed by order."""

    order_key: str
    line_id: str
    sku: str
    qty: int
    reserved: int
    line_count: int
    market: str


class Decision(faust.Record, serializer="json", include_metadata=False):
    """The order's outcome once every line is answered: a warehouse, or ``short``."""

    order_key: str
    warehouse: str
    lines: int
    units: int


# ------------------------------------------------------------------------------- the steps, pure


def app_id(settings: Settings) -> str:
    """The peer's app id and consumer group; its changelog topics start with it, so with the prefix."""
    return f"{settings.topic_prefix}peer"


def raw_topic_names(settings: Settings) -> list[str]:
    return [topics.raw_orders(c).full_name(settings.topic_prefix) for c in CHANNELS]


def line_requests(order: OrderEvent) -> list[LineRequest]:
    n = len(order.lines)
    return [
        LineRequest(order.order_key, line.line_id, line.sku, line.quantity, n, order.market.value)
        for line in order.lines
    ]


def seed_request(sku: str, units: int) -> LineRequest:
    return LineRequest("", "", sku, units, 0, "", seed=True)


def reserve_units(left: int, qty: int) -> int:
    """Units a line takes from ``left``: all it asks for, or none."""
    return qty if 0 < qty <= left else 0


def decision_of(result: LineResult, answered: Mapping[str, Sequence[int]], warehouses: Mapping[str, str]) -> Decision:
    """The decision once ``answered`` (line id -> [qty, reserved]) holds every line of the order."""
    whole = all(reserved == qty for qty, reserved in answered.values())
    units = sum(reserved for _, reserved in answered.values())
    warehouse = warehouses.get(result.market, SHORT) if whole else SHORT
    return Decision(result.order_key, warehouse, len(answered), units)


# ------------------------------------------------------------------------------------- the app


def create_app(settings: Settings) -> faust.App:
    """The textbook app: three agents, two tables, JSON records."""
    datadir = settings.data_path / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id(settings),
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=str(datadir),
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=settings.worker_web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=min(settings.consumer_session_timeout_s, 10.0),
        broker_heartbeat_interval=max(1.0, min(settings.consumer_session_timeout_s, 10.0) / 5),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    prefix = settings.topic_prefix
    rules = load_rules(settings.routing_rules_path())
    warehouses = {m.value: nodes[0].id for m in Market if (nodes := rules.nodes_in(m))}
    raw = app.topic(*raw_topic_names(settings), key_type=bytes, value_type=bytes, value_serializer="raw")
    lines = app.topic(prefix + LINES, key_type=str, value_type=LineRequest)
    results = app.topic(prefix + RESULTS, key_type=str, value_type=LineResult)
    decisions = app.topic(prefix + DECISIONS, key_type=str, value_type=Decision)
    stock = app.Table("stock", default=int, partitions=settings.partitions)
    answered = app.Table("answered", default=dict, partitions=settings.partitions)
    dropped: Counter[str] = Counter()

    @app.agent(raw, name="normalize")
    async def normalize_orders(stream: Any) -> None:
        async for event in stream.events():
            outcome = normalize(raw_input_of_message(event.message, prefix), settings.tenant)
            if outcome.dead_letter is not None:
                dropped[f"dead letter {outcome.dead_letter.reason_code}"] += 1
            for change in outcome.events:
                if not isinstance(change, OrderEvent):
                    dropped[type(change).__name__] += 1
                    continue
                for request in line_requests(change):
                    await lines.send(key=request.sku, value=request)

    @app.agent(lines, name="reserve")
    async def reserve(stream: Any) -> None:
        async for request in stream:
            if request.seed:
                stock[request.sku] = request.qty
                continue
            left = stock[request.sku]
            taken = reserve_units(left, request.qty)
            stock[request.sku] = left - taken
            result = LineResult(
                request.order_key, request.line_id, request.sku, request.qty, taken, request.line_count, request.market
            )
            await results.send(key=request.order_key, value=result)

    @app.agent(results, name="decide")
    async def decide(stream: Any) -> None:
        async for result in stream:
            so_far = dict(answered[result.order_key])
            if len(so_far) >= result.line_count:
                continue  # a result redelivered after the order was decided
            so_far[result.line_id] = [result.qty, result.reserved]
            answered[result.order_key] = so_far
            if len(so_far) == result.line_count:
                await decisions.send(key=result.order_key, value=decision_of(result, so_far, warehouses))

    async def report_dropped() -> None:
        if dropped:
            app.log.info("peer dropped (not orders): %s", dict(dropped))

    app.timer(10.0, name="report-dropped")(report_dropped)
    return app


def run_worker(settings: Settings) -> None:
    """The worker in this process until SIGTERM (``python -m loadtest.peer worker``)."""
    worker = faust.Worker(create_app(settings), loglevel="INFO")
    worker.execute_from_commandline()


# ------------------------------------------------------------------------------------- the runner


@dataclass
class PeerResult:
    """One run of the peer. ``seconds``: first to last decision (Kafka timestamps), all input queued."""

    orders: int
    lines: int
    skus: int
    units_per_sku: int
    partitions: int
    seconds: float
    orders_per_s: float
    seconds_from_start: float
    """worker started (python, faust, group join, table recovery) -> last decision"""
    orders_per_s_from_start: float
    decisions: int
    """decision records written (duplicates included)"""
    decided_orders: int
    short_orders: int
    duplicate_decisions: int
    missing_orders: int
    oversold_skus: list[str]
    units_reserved: int
    worker_cpu_s: float
    """the worker's CPU seconds between the first and the last decision (as the runner saw them)"""
    worker_cpu_pct: float
    worker_cpu_total_s: float
    """the worker's CPU seconds from its start (imports, group join) to the last decision"""
    worker_peak_rss_mb: float
    broker_cpu_pct: float | None
    kafka_records: dict[str, int]
    reserved_by_sku: dict[str, int] = field(repr=False)
    decisions_by_order: dict[str, list[str]] = field(repr=False)

    def numbers(self) -> dict[str, object]:
        """The scalar figures (what the results files get)."""
        skip = {"reserved_by_sku", "decisions_by_order"}
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out["kafka_records_per_order"] = round(sum(self.kafka_records.values()) / self.orders, 1) if self.orders else 0
        return out

    def render(self) -> str:
        return "\n".join(f"  {k:<26}{v}" for k, v in self.numbers().items())


@dataclass(frozen=True)
class PeerOrder:
    """One simulated order delivery and what it asks for."""

    key: str
    channel: str
    shop: str
    delivery_id: str
    body: bytes
    lines: int
    units: dict[str, int]
    """SKU -> units over the order's lines"""


def orders_of(settings: Settings, count: int) -> list[PeerOrder]:
    """The first ``count`` order deliveries of the pipeline bench's simulator, checked against our normalizer."""
    from connectors.simulator import Simulator

    sim = Simulator(seed=17, channels=list(CHANNELS), markets=["SG"], skus=list(SKUS), hot_share=0.0)
    out: list[PeerOrder] = []
    for e in itertools.islice((e for e in sim.events() if e.kind == "order"), count):
        topic = topics.raw_orders(e.channel).full_name(settings.topic_prefix)
        events = normalize(RawInput(e.channel, e.body, topic, 0, 0, 1), settings.tenant).events
        if len(events) != 1 or not isinstance(events[0], OrderEvent):
            raise ServiceError(f"simulated {e.channel} order {e.order_id} did not normalize to one order")
        order = events[0]
        if len({line.line_id for line in order.lines}) != len(order.lines):
            raise ServiceError(
                f"simulated order {order.order_key} repeats a line id: the decide step needs them unique"
            )
        units: Counter[str] = Counter()
        for line in order.lines:
            units[line.sku] += line.quantity
        out.append(PeerOrder(order.order_key, e.channel, e.shop, e.delivery_id, e.body, len(order.lines), dict(units)))
    return out


def _admin(settings: Settings) -> AdminClient:
    # log_level 4: warnings and worse (librdkafka's notices about purged background events are noise here)
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 4})


def _create_topics(settings: Settings) -> None:
    admin = _admin(settings)
    names = [*raw_topic_names(settings), *(settings.topic_prefix + t for t in (LINES, RESULTS, DECISIONS))]
    for future in admin.create_topics([NewTopic(n, settings.partitions, 1) for n in names]).values():
        future.result(30)


def _delete_topics(settings: Settings) -> None:
    """Best effort: every topic of the run (its prefix), faust's changelogs included, and the group."""
    admin = _admin(settings)
    with contextlib.suppress(Exception):
        names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(settings.topic_prefix)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(30)
    with contextlib.suppress(Exception):
        for future in admin.delete_consumer_groups([app_id(settings)], request_timeout=10).values():
            with contextlib.suppress(Exception):
                future.result(10)


def _produce_input(settings: Settings, orders: Sequence[PeerOrder], units: int) -> None:
    """The stock seeds on peer-lines (in the partition faust would pick), then the raw payloads; all acked."""
    from connectors.raw_producer import RawProducer

    seeds = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 5})
    errors: list[str] = []

    def acked(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for sku in SKUS:
        value = seed_request(sku, units).dumps()
        partition = key_partition(sku.encode(), settings.partitions)
        seeds.produce(
            settings.topic_prefix + LINES, key=sku.encode(), value=value, partition=partition, on_delivery=acked
        )
    if seeds.flush(60) or errors:
        raise ServiceError(f"stock seeds not acknowledged: {errors[:3] or 'timeout'}")
    producer = RawProducer(settings)
    for o in orders:
        while True:
            try:
                producer.send(o.channel, o.body, shop=o.shop, delivery_id=o.delivery_id)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)


def _spawn(settings: Settings, folder: Path) -> ManagedProcess:
    from oms.runtime import free_port, settings_env

    proc = ManagedProcess("peer-worker", folder / "peer-worker.pid", folder / "peer-worker.log")
    env = settings_env(settings, worker_web_port=str(free_port()), log_level="info")
    proc.start([sys.executable, "-m", "loadtest.peer", "worker"], env=env, cwd=Path.cwd())
    return proc


def _decisions_consumer(settings: Settings) -> Consumer:
    topic = settings.topic_prefix + DECISIONS
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"peer-reader-{uuid.uuid4()}",
         "enable.auto.commit": False}
    )  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    return consumer


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


def _broker(settings: Settings) -> psutil.Process | None:
    from infra import kafka

    pid = kafka.process(settings).pid()
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    from oms.routing_ops import read_topic

    return [orjson.loads(m.value() or b"{}") for m in read_topic(settings, topic, idle_timeout=10.0)]


def _reserved(results: Iterable[dict[str, Any]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r in results:
        out[str(r["sku"])] += int(r["reserved"])
    return dict(out)


def run_peer(
    settings: Settings,
    orders: int,
    units: int = 1000,
    out_dir: Path | None = None,
    *,
    timeout_s: float = 600.0,
) -> PeerResult:
    """``orders`` simulated orders (the pipeline bench's seed, 100 SKUs x ``units``) through the textbook peer.

    On topics of its own (``<prefix>peer<hex>.``), deleted at the end. The input is on Kafka before the
    worker starts, so the time is pure processing. ServiceError when the decisions do not all arrive
    within ``timeout_s`` (naming how many did) or the worker dies. With ``out_dir``, results JSON + MD.
    """
    from infra import kafka

    if orders < 1:
        raise ServiceError(f"orders must be at least 1, got {orders}")
    if not kafka.broker_answers(settings.kafka_bootstrap):
        raise ServiceError(f"no Kafka broker answers at {settings.kafka_bootstrap}: run `oms up` first")
    folder = Path(tempfile.mkdtemp(prefix="oms-peer-"))
    run = settings.model_copy(
        update={"topic_prefix": f"{settings.topic_prefix}peer{uuid.uuid4().hex[:8]}.", "data_dir": folder / "oms"}
    )
    broker = _broker(settings)
    try:
        work = orders_of(run, orders)
        _create_topics(run)
        _produce_input(run, work, units)
        result = _measure(run, work, units, folder, broker, timeout_s)
    finally:
        _delete_topics(run)
        shutil.rmtree(folder, ignore_errors=True)
    if out_dir is not None:
        from oms.bench import _write

        _write(out_dir, "peer", result.numbers())
    return result


def _measure(
    settings: Settings,
    work: Sequence[PeerOrder],
    units: int,
    folder: Path,
    broker: psutil.Process | None,
    timeout_s: float,
) -> PeerResult:
    expected = {o.key for o in work}
    consumer = _decisions_consumer(settings)
    try:
        seen, timing, usage = _collect(settings, consumer, expected, folder, broker, timeout_s)
    finally:
        consumer.close()
    records = records_per_topic(settings)
    reserved = _reserved(_read_all(settings, settings.topic_prefix + RESULTS))
    first_ts, last_ts, started_wall = timing
    cpu_s, window, broker_s, total_cpu_s, peak_rss = usage
    seconds = max((last_ts - first_ts) / 1000, 1e-3)
    from_start = max(last_ts / 1000 - started_wall, 1e-3)
    n = len(work)
    return PeerResult(
        orders=n,
        lines=sum(o.lines for o in work),
        skus=len(SKUS),
        units_per_sku=units,
        partitions=settings.partitions,
        seconds=round(seconds, 3),
        orders_per_s=round((n - 1) / seconds if n > 1 else n / seconds, 1),
        seconds_from_start=round(from_start, 3),
        orders_per_s_from_start=round(n / from_start, 1),
        decisions=sum(len(v) for v in seen.values()),
        decided_orders=len(expected.intersection(seen)),
        short_orders=sum(1 for k in expected if seen.get(k, [""])[0] == SHORT),
        duplicate_decisions=sum(len(v) - 1 for v in seen.values()),
        missing_orders=len(expected.difference(seen)),
        oversold_skus=sorted(sku for sku, r in reserved.items() if r > units),
        units_reserved=sum(reserved.values()),
        worker_cpu_s=round(cpu_s, 2),
        worker_cpu_pct=round(100 * cpu_s / window, 1),
        worker_cpu_total_s=round(total_cpu_s, 2),
        worker_peak_rss_mb=round(peak_rss, 1),
        broker_cpu_pct=round(100 * broker_s / window, 1) if broker is not None else None,
        kafka_records=records,
        reserved_by_sku=reserved,
        decisions_by_order=seen,
    )


def _collect(
    settings: Settings,
    consumer: Consumer,
    expected: set[str],
    folder: Path,
    broker: psutil.Process | None,
    timeout_s: float,
) -> tuple[dict[str, list[str]], tuple[int, int, float], tuple[float, float, float, float, float]]:
    """Start the worker, read decisions until every expected order has one, stop it, read the rest.

    Returns (order -> warehouses, (first and last decision's Kafka timestamp ms, worker start epoch s),
    (worker CPU s and wall s between first and last decision as seen here, broker CPU s in it, the
    worker's CPU s in all, its peak RSS MB)).
    """
    seen: dict[str, list[str]] = {}
    pending = set(expected)
    first_ts = last_ts = 0
    cpu_first = broker_first = wall_first = 0.0

    def take(msg: Any) -> None:
        nonlocal first_ts, last_ts
        decision = orjson.loads(msg.value() or b"{}")
        key = str(decision["order_key"])
        seen.setdefault(key, []).append(str(decision["warehouse"]))
        pending.discard(key)
        ts = msg.timestamp()[1]
        first_ts, last_ts = min(first_ts or ts, ts), max(last_ts, ts)

    started_wall = time.time()
    proc = _spawn(settings, folder)
    try:
        pid = proc.pid()
        worker = None
        with contextlib.suppress(psutil.Error, TypeError):
            worker = psutil.Process(pid)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"peer: {len(expected) - len(pending)} of {len(expected)} orders decided after "
                    f"{timeout_s:.0f} s. Worker log:\n{proc.log_tail()}"
                )
            if proc.pid() is None:
                raise ServiceError(f"peer worker exited. Its log:\n{proc.log_tail()}")
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                if msg.error() is None:
                    if not first_ts:
                        cpu_first, broker_first, wall_first = _cpu(worker), _cpu(broker), time.monotonic()
                    take(msg)
        cpu_last, broker_last, wall_last = _cpu(worker), _cpu(broker), time.monotonic()
        peak_rss = _peak_rss_mb(pid)
    finally:
        proc.stop()
    # the worker is gone, what it wrote is final: read the rest (duplicates after the last expected one)
    topic = settings.topic_prefix + DECISIONS
    written = sum(
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
        for p in range(settings.partitions)
    )
    deadline = time.monotonic() + 60
    while sum(len(v) for v in seen.values()) < written and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=0.2):
            if msg.error() is None:
                take(msg)
    window = max(wall_last - wall_first, 1e-3)
    usage = (cpu_last - cpu_first, window, broker_last - broker_first, cpu_last, peak_rss)
    return seen, (first_ts, last_ts, started_wall), usage


def main(argv: Sequence[str]) -> int:
    from oms.settings import SettingsError, load_settings

    if list(argv) != ["worker"]:
        print("usage: python -m loadtest.peer worker  (settings from OMS_* as for `oms worker`)", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    run_worker(settings)
    return 0


if __name__ == "__main__":
    from loadtest.peer import main as _main  # the records' module is loadtest.peer, not __main__

    sys.exit(_main(sys.argv[1:]))
