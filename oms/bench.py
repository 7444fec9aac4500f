"""``oms bench normalize|webhooks``. normalize: raw records through a real faust worker and broker, measured.

Produces N raw records (every channel that has an adapter and a sample, plus a share of malformed
bodies) to fresh topics, as fast as possible or paced at ``--rate``, waits for one output per record
on normalize's outputs (order-changes.v1, dead-letters.v1), and reports throughput, latency
percentiles and the worker's peak RSS. Latency runs from the raw record's ``received_at`` (carried
in the change as ingest_time_ms, or in the dead letter's headers) to the output record's Kafka
timestamp: one clock, one machine. The worker runs every agent (normalize and lifecycle), as in
production.
Unpaced, latency is mostly queueing; pace below the throughput to see the service time.
webhooks: signed marketplace bodies against ``oms connectors serve`` (a child process) with real
Kafka and Redis; each 200 means Kafka acknowledged the body.
Results go to results/ as JSON and markdown with the machine and the command.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.raw_producer import RawProducer, sample
from infra import services, topics
from infra.process import ServiceError
from oms.runtime import spawn_worker
from oms.settings import Settings
from schemas.order import DeadLetter, OrderEvent, OrderStatus, decode_changes, order_key
from schemas.topics import DEAD_LETTERS, ORDER_CHANGES
from streams.adapters.base import RawInput
from streams.normalize import ADAPTERS, normalize

MALFORMED = b'{"response": {"order_list": ['


@dataclass
class NormalizeResult:
    records: int
    rate_limit_per_s: float
    channels: list[str]
    malformed_share: float
    seconds: float
    records_per_s: float
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    worker_peak_rss_mb: float
    events: int
    dead_letters: int


def _samples() -> dict[str, bytes]:
    """One recorded payload per channel that has an adapter and yields exactly one event."""
    found = {}
    names = sorted(entry.name for entry in resources.files("connectors").joinpath("samples").iterdir())
    for channel in sorted(ADAPTERS):
        for name in names:
            if name.startswith(channel) and name.endswith(".json"):
                body = sample(name)
                outcome = normalize(RawInput(channel, body, f"raw.orders.{channel}", 0, 0, 1), "bench")
                if len(outcome.events) == 1:
                    found[channel] = body
                    break
    return found


def order_template(tenant: str) -> OrderEvent:
    """The Shopee sample as a canonical order, for benchmarks that stamp their own keys, lines and times."""
    body = sample("shopee_order_detail.json")
    event = normalize(RawInput("shopee", body, "raw.orders.shopee", 0, 0, 1), tenant).events[0]
    if not isinstance(event, OrderEvent):
        raise ServiceError("the Shopee sample did not normalize to an order; connectors/samples is damaged")
    return event


def paid_order(
    template: OrderEvent, channel_order_id: str, skus: Sequence[str], at_ms: int, **update: Any
) -> OrderEvent:
    """``template`` as the PAID Shopee order ``channel_order_id``: one unit of each of ``skus``, at ``at_ms``."""
    key = order_key(template.tenant, "shopee", channel_order_id)
    line = template.lines[0]
    lines = tuple(line.model_copy(update={"line_id": str(n), "sku": sku, "quantity": 1}) for n, sku in enumerate(skus))
    return template.model_copy(
        update={
            "event_id": f"{key}:paid",
            "order_key": key,
            "channel_order_id": channel_order_id,
            "status": OrderStatus.PAID,
            "lines": lines,
            "created_ms": at_ms,
            "event_time_ms": at_ms,
            "ingest_time_ms": at_ms,
            **update,
        }
    )


def _peak_rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def records_per_topic(settings: Settings) -> dict[str, int]:
    """Records written to each topic of ``settings.topic_prefix`` (end offsets), most first: what a run cost."""
    from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]  # not in its re-exports

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 4})
    prefix = settings.topic_prefix
    wanted = {
        TopicPartition(name, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
        for name, meta in admin.list_topics(timeout=10).topics.items()
        if name.startswith(prefix)
        for p in meta.partitions
    }
    out: Counter[str] = Counter()
    for tp, future in admin.list_offsets(wanted, request_timeout=10).items():
        out[tp.topic[len(prefix) :]] += max(0, future.result(10).offset)
    return dict(out.most_common())


def _drain(consumer: Consumer, want: int, timeout: float) -> tuple[list[int], int, int]:
    """Read outputs until ``want`` arrived; latency per record from the received_at header."""
    latencies: list[int] = []
    events = dead = 0
    deadline = time.monotonic() + timeout
    while events + dead < want and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=0.2):
            if msg.error() is not None:
                continue
            value = msg.value() or b""
            _, ts = msg.timestamp()
            if (msg.topic() or "").endswith(DEAD_LETTERS.name):
                dead += 1
                raw_received = DeadLetter.decode(value).source_headers.get("received_at", b"")
                received = [int(raw_received)] if raw_received.isdigit() else []
            else:
                changes = decode_changes(value)  # one, or a normalize step's batch for one partition
                events += len(changes)
                received = [change.ingest_time_ms for change in changes]
            latencies += [ts - r for r in received if ts > 0]
    return latencies, events, dead


def run_normalize(
    settings: Settings, records: int, malformed_share: float, out_dir: Path, rate: float = 0.0
) -> NormalizeResult:
    bodies = _samples()
    if not bodies:
        raise ServiceError("no channel has both an adapter and a sample in connectors/samples")
    run = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}.", "log_level": "warning"})
    for line in services.up(run):
        print("  " + line)
    topics.ensure_topics(run)
    worker = spawn_worker(run, "bench-worker")
    consumer = Consumer(
        {"bootstrap.servers": run.kafka_bootstrap, "group.id": f"bench-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    try:
        # normalize's own output: orders.v1 would hold one event per distinct order state, and the
        # records here repeat one order per channel (the lifecycle rightly emits each once)
        outs = [ORDER_CHANGES.full_name(run.topic_prefix), DEAD_LETTERS.full_name(run.topic_prefix)]
        consumer.assign([TopicPartition(t, p, 0) for t in outs for p in range(run.partitions)])
        producer = RawProducer(run)
        channels = sorted(bodies)
        # warm-up: the worker's first group join takes seconds and is not throughput
        producer.send(channels[0], bodies[channels[0]], shop="bench", delivery_id="warmup")
        producer.flush()
        if _drain(consumer, 1, 120)[1] < 1:
            raise ServiceError(f"the worker produced nothing in 120 s:\n{worker.log_tail()}")
        began = time.monotonic()
        every = int(1 / malformed_share) if malformed_share > 0 else 0
        for i in range(records):
            if rate > 0 and i % 50 == 0:  # pacing the load generator, not synchronising a test
                ahead = began + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            channel = channels[i % len(channels)]
            body = MALFORMED if every and i % every == every - 1 else bodies[channel]
            producer.send(channel, body, shop="bench", delivery_id=f"b{i}")
        producer.flush(120)
        latencies, events, dead = _drain(consumer, records, 600)
        seconds = time.monotonic() - began
        peak = _peak_rss_mb(worker.pid())
    finally:
        consumer.close()
        worker.stop()
    if events + dead < records:
        raise ServiceError(f"only {events + dead} of {records} records came out within the deadline")
    latencies.sort()

    def pct(q: float) -> float:
        return float(latencies[min(len(latencies) - 1, int(q * len(latencies)))]) if latencies else float("nan")

    result = NormalizeResult(
        records=records,
        rate_limit_per_s=rate,
        channels=channels,
        malformed_share=malformed_share,
        seconds=round(seconds, 2),
        records_per_s=round(records / seconds, 1),
        latency_ms_p50=pct(0.50),
        latency_ms_p95=pct(0.95),
        latency_ms_p99=pct(0.99),
        latency_ms_max=float(latencies[-1]) if latencies else float("nan"),
        worker_peak_rss_mb=round(peak, 1),
        events=events,
        dead_letters=dead,
    )
    _write(out_dir, "normalize", asdict(result))
    return result


@dataclass
class WebhookResult:
    requests: int
    concurrency: int
    seconds: float
    requests_per_s: float
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    accepted: int
    duplicates: int
    errors: int
    service_peak_rss_mb: float


def run_webhooks(settings: Settings, requests: int, concurrency: int, out_dir: Path) -> WebhookResult:
    """Signed Shopee bodies against `oms connectors serve` (a child process) with real Kafka and Redis."""
    import asyncio
    import hashlib
    import hmac

    import aiohttp
    import orjson

    from infra.process import ManagedProcess, wait_until
    from oms.runtime import free_port, settings_env

    run = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}.", "log_level": "warning"})
    for line in services.up(run):
        print("  " + line)
    topics.ensure_topics(run)
    port = free_port()
    key = "bench-partner-key"
    env = settings_env(run, webhook_port=str(port), shopee_partner_key=key, webhook_public_url="https://oms.bench")
    logs = run.data_path / "logs"
    service = ManagedProcess("bench-webhooks", logs / "bench-webhooks.pid", logs / "bench-webhooks.log")
    service.start([sys.executable, "-m", "oms.cli", "connectors", "serve"], env=env)
    template = orjson.loads(sample("shopee_order_detail.json"))
    url = f"http://127.0.0.1:{port}/webhooks/shopee"

    def signed(i: int) -> tuple[bytes, str]:
        template["response"]["order_list"][0]["order_sn"] = f"BENCH{i:08d}"
        body = orjson.dumps(template)
        return body, hmac.new(key.encode(), b"https://oms.bench/webhooks/shopee|" + body, hashlib.sha256).hexdigest()

    payloads = [signed(i) for i in range(requests)]
    latencies: list[float] = []
    counts = {"accepted": 0, "duplicate": 0, "error": 0}

    async def fire() -> float:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            deadline = time.monotonic() + 60
            while not await ready():
                if time.monotonic() > deadline or service.pid() is None:
                    raise ServiceError(f"the webhook service did not start:\n{service.log_tail()}")
                await asyncio.sleep(0.2)
            queue = list(reversed(payloads))

            async def client() -> None:
                while queue:
                    body, signature = queue.pop()
                    began = time.perf_counter()
                    async with session.post(url, data=body, headers={"Authorization": signature}) as resp:
                        status = (await resp.json()).get("status", "error") if resp.status == 200 else "error"
                    latencies.append((time.perf_counter() - began) * 1000)
                    counts[status if status in counts else "error"] += 1

            began = time.monotonic()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            return time.monotonic() - began

    try:
        seconds = asyncio.run(fire())
        peak = _peak_rss_mb(service.pid())
    finally:
        service.stop()
        wait_until(lambda: service.pid() is None, 10)
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else float("nan")

    result = WebhookResult(
        requests=requests,
        concurrency=concurrency,
        seconds=round(seconds, 2),
        requests_per_s=round(requests / seconds, 1),
        latency_ms_p50=pct(0.5),
        latency_ms_p95=pct(0.95),
        latency_ms_p99=pct(0.99),
        latency_ms_max=round(latencies[-1], 1) if latencies else float("nan"),
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        errors=counts["error"],
        service_peak_rss_mb=round(peak, 1),
    )
    _write(out_dir, "webhooks", asdict(result))
    return result


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gb": f"{mem_kb / 1024 / 1024:.1f}",
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _write(out_dir: Path, name: str, numbers: dict[str, object]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    command = " ".join(["oms", *sys.argv[1:]])
    host = machine()
    doc = {"benchmark": name, "at": stamp, "command": command, "machine": host, "results": numbers}
    (out_dir / f"{name}-{stamp}.json").write_text(json.dumps(doc, indent=2))
    lines = [f"# {name} benchmark, {stamp}", "", f"Command: `{command}`", ""]
    lines += [f"Machine: {', '.join(f'{k} {v}' for k, v in host.items())}", ""]
    lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in numbers.items()]
    (out_dir / f"{name}-{stamp}.md").write_text("\n".join(lines) + "\n")
    print(f"results written to {out_dir}/{name}-{stamp}.json and .md")


def summary(result: NormalizeResult | WebhookResult) -> str:
    return "\n".join(f"  {k:<22}{v}" for k, v in asdict(result).items())
