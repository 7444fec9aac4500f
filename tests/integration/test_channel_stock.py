"""Stock back to channels through the real Kafka and Redis.

Ledger records on a real inventory.v1 become available-to-sell per channel in Redis and on
channel.stock.v1: the last value per (channel, SKU) equals ats() of the final rows, a burst of changes
is coalesced and paced to each channel's quota, a rules edit and a lock that expires re-price every
SKU without a ledger record, a restart re-pushes nothing that did not change, and `oms stock channels`
prints what Redis holds.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Producer

from connectors.channel_stock import ChannelStockStats, Level, Rules, ats, parse_rules, read_ats, run_channel_stock
from infra.process import wait_until
from infra.topics import ensure_topics
from oms.cli import main
from oms.settings import Settings
from schemas.codec import codec
from schemas.topics import CHANNEL_STOCK, DEAD_LETTERS, INVENTORY
from streams.inventory import Movement
from streams.stock_records import encode_movement
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

QUOTA = {"shopee": 4, "lazada": 20, "pos": 50}
RULES = """\
version = "it-1"

[defaults]
min_interval_s = 0
burst = 1

[channel.shopee]
quota = 4
buffer = 2

[channel.lazada]
quota = 20
share = 0.5

[channel.pos]
quota = 50
warehouses = ["WH-A"]
max = 30

[[lock]]
channel = "shopee"
sku = "FS-01"
units = 10
until = "{far}"

[[lock]]
channel = "lazada"
sku = "FS-01"
units = 5
until = "2026-01-01T00:00:00+07:00"
"""


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


@pytest.fixture()
def settings(kafka_topics: Settings, redis_client: redis.Redis) -> Iterator[Settings]:
    """Own topics (a sub-prefix of this run) and own Redis keys, deleted afterwards."""
    prefix = f"{kafka_topics.topic_prefix}ats{uuid.uuid4().hex[:6]}."
    ours = kafka_topics.model_copy(update={"topic_prefix": prefix})
    ensure_topics(ours, (INVENTORY, CHANNEL_STOCK, DEAD_LETTERS))
    yield ours
    for key in redis_client.scan_iter(match=f"{prefix}*"):
        redis_client.delete(key)


class Ledger:
    """Produces StockMovements and keeps the row each leaves behind, as the inventory stage would."""

    def __init__(self, settings: Settings) -> None:
        self.topic = INVENTORY.full_name(settings.topic_prefix)
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 5})
        self.rows: dict[str, dict[str, Level]] = {}

    def move(self, sku: str, warehouse: str, on_hand: int, reserved: int, cause: str = "reserve") -> None:
        before = self.rows.get(sku, {}).get(warehouse, Level(0, 0))
        move = Movement(sku, warehouse, cause, f"ref-{uuid.uuid4().hex[:6]}", (before.on_hand, on_hand),
                        (before.reserved, reserved))  # fmt: skip
        self.producer.produce(self.topic, key=sku.encode(), value=encode_movement(move))
        self.rows.setdefault(sku, {})[warehouse] = Level(on_hand, reserved)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def expected(self, rules: Rules, now_ms: int | None = None) -> dict[tuple[str, str], int]:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        return {
            (ch, sku): ats(rows, rules, ch, sku, now_ms) for sku, rows in self.rows.items() for ch in rules.channels
        }


def _in_redis(client: redis.Redis, prefix: str) -> dict[tuple[str, str], int]:
    return {(a.channel, a.sku): a.available for a in read_ats(client, prefix)}


def _run(settings: Settings, path: Path, stats: ChannelStockStats, stop: threading.Event) -> threading.Thread:
    group = f"{settings.topic_prefix}channel-stock-{uuid.uuid4().hex[:6]}"
    thread = threading.Thread(
        target=run_channel_stock,
        args=(settings, stop, stats, group, path),
        kwargs={"reload_every_s": 0.2},
        daemon=True,
    )
    thread.start()
    return thread


def _idle(stats: ChannelStockStats) -> Callable[[], bool]:
    return lambda: stats.caught_up and stats.pending == 0 and stats.dirty == 0


def test_ats_per_channel_reaches_redis_and_channel_stock_v1_paced_coalesced_and_rule_driven(
    settings: Settings,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = settings.topic_prefix
    path = tmp_path / "channel_stock.toml"
    text = RULES.format(far=_iso(datetime.now(UTC) + timedelta(days=30)))
    path.write_text(text)
    rules = parse_rules(text)
    ledger = Ledger(settings)
    # the ledger before the sync starts: it rebuilds from here
    ledger.move("FS-01", "WH-A", 100, 0, "snapshot")
    ledger.move("FS-01", "WH-B", 40, 0, "snapshot")
    ledger.move("FS-01", "WH-A", 100, 7)
    ledger.move("MUG-01", "WH-A", 12, 0, "snapshot")
    ledger.move("MUG-01", "WH-A", 12, 12)
    ledger.move("TEE-M", "WH-B", 5, 0, "snapshot")
    ledger.move("TEE-M", "WH-B", 3, 4, "damage")  # short: on hand below what is held
    ledger.producer.produce(ledger.topic, key=b"FS-01", value=b"not a StockMovement")
    ledger.flush()

    stats, stop = ChannelStockStats(), threading.Event()
    thread = _run(settings, path, stats, stop)
    try:
        want = ledger.expected(rules)
        assert want[("shopee", "FS-01")] == 133 - 2 and want[("lazada", "FS-01")] == (133 - 10) // 2
        assert want[("pos", "FS-01")] == 30 and want[("pos", "TEE-M")] == 0
        assert wait_until(lambda: _idle(stats)() and _in_redis(redis_client, prefix) == want, 60), (
            f"rebuild: {stats}, redis {_in_redis(redis_client, prefix)}, want {want}"
        )
        assert stats.undecodable == 1 and stats.skus == 3
        assert len(stats.latencies_ms) == 0, "records of the rebuild are not live: no latency sample"

        # live: a flash-sale burst on one SKU, 300 reservations as fast as Kafka takes them
        ledger.move("HOT-1", "WH-A", 300, 0, "snapshot")
        for reserved in range(1, 301):
            ledger.move("HOT-1", "WH-A", 300, reserved)
        ledger.move("TEE-M", "WH-B", 20, 4, "receipt")
        ledger.flush()
        want = ledger.expected(rules)
        assert want[("shopee", "HOT-1")] == 0 and want[("pos", "TEE-M")] == 0 and want[("lazada", "TEE-M")] == 8
        assert wait_until(lambda: _idle(stats)() and _in_redis(redis_client, prefix) == want, 60), (
            f"live: {stats}, redis {_in_redis(redis_client, prefix)}, want {want}"
        )
        assert stats.p50_ms is not None and stats.p99_ms is not None
        assert 0 <= stats.p50_ms <= stats.p99_ms < 30_000, (stats.p50_ms, stats.p99_ms)
        latency = (stats.p50_ms, stats.p99_ms)

        # an edit of the rules (a lazada campaign on MUG-01 for 3 s) re-prices every SKU, then expires
        ledger.move("MUG-01", "WH-A", 12, 2, "release")
        ledger.flush()
        want = ledger.expected(rules)
        assert wait_until(lambda: _idle(stats)() and _in_redis(redis_client, prefix) == want, 60), stats
        until = datetime.now(UTC) + timedelta(seconds=3)
        edited = text.replace('version = "it-1"', 'version = "it-2"') + (
            f'\n[[lock]]\nchannel = "lazada"\nsku = "MUG-01"\nunits = 4\nuntil = "{_iso(until)}"\n'
        )
        path.write_text(edited)
        rules = parse_rules(edited)
        during = ledger.expected(rules, int(until.timestamp() * 1000) - 1)
        assert (during[("shopee", "MUG-01")], during[("pos", "MUG-01")]) == (10 - 4 - 2, 6)
        assert wait_until(lambda: stats.rules_version == rules.label, 10), stats
        after = ledger.expected(rules, int(until.timestamp() * 1000) + 1)
        assert (after[("shopee", "MUG-01")], after[("pos", "MUG-01")]) == (8, 10)
        assert wait_until(lambda: datetime.now(UTC) > until and _in_redis(redis_client, prefix) == after, 30), (
            f"after the lock: {stats}, redis {_in_redis(redis_client, prefix)}, want {after}"
        )
        assert wait_until(_idle(stats), 30)
        assert stats.rules_errors == 0

        # a broken edit is refused and the running rules stay
        path.write_text(edited.replace("quota = 20", "quota = -1"))
        assert wait_until(lambda: stats.rules_errors == 1, 10) and stats.rules_version == rules.label
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()

    # channel.stock.v1: the last value per (channel, SKU) is the final ATS; pushes paced per channel
    final = _in_redis(redis_client, prefix)
    assert final == after
    records: list[dict[str, Any]] = []

    def complete(messages: list[Any]) -> bool:
        records[:] = [codec("channel_stock").decode(m.value()) for m in messages]  # per key in partition order
        return {(r["channel"], r["sku"]): r["available"] for r in records} == final

    messages = read_topic(settings, CHANNEL_STOCK.full_name(prefix), complete, timeout=60)
    assert complete(messages), "channel.stock.v1 does not end with the final value of every (channel, SKU)"
    assert {m.key().decode() for m in messages} == {f"{ch}:{sku}" for ch, sku in final}
    assert all(r["tenant"] == settings.tenant and r["available"] >= 0 for r in records)
    for channel, quota in QUOTA.items():
        stamps = sorted(r["computed_at_ms"] for r in records if r["channel"] == channel)
        elapsed_s = (stamps[-1] - stamps[0] + 1) / 1000  # +1 ms: the stamps are whole milliseconds
        assert len(stamps) <= quota * elapsed_s + 1, f"{channel}: {len(stamps)} pushes in {elapsed_s:.3f}s"
        for i in range(len(stamps)):  # and in every window, not only overall
            for j in range(i + 1, min(len(stamps), i + 3 * quota)):
                assert j - i + 1 <= quota * (stamps[j] - stamps[i] + 1) / 1000 + 1, f"{channel}: burst at {i}"
        assert stats.pushed_by_channel[channel] == len(stamps)
    hot = [r for r in records if r["sku"] == "HOT-1" and r["channel"] == "shopee"]
    assert len(hot) < 50, f"301 changes of HOT-1 coalesced into {len(hot)} shopee pushes"
    mug = [r for r in records if r["sku"] == "MUG-01" and r["channel"] == "shopee"]
    assert [r["available"] for r in mug[-3:]] == [8, 4, 8], "release, then the lock, then its expiry"
    assert mug[-1]["source_offset"] == mug[-2]["source_offset"] == mug[-3]["source_offset"], "no ledger record"
    assert mug[-1]["rules_version"] == rules.label and mug[-3]["rules_version"].startswith("it-1+")

    # a restart rebuilds from the ledger and re-pushes nothing: Redis already has every value
    path.write_text(edited)
    again, stop = ChannelStockStats(), threading.Event()
    thread = _run(settings, path, again, stop)
    try:
        assert wait_until(lambda: _idle(again)() and again.computed >= len(ledger.rows), 60), again
        assert again.written == 0 and _in_redis(redis_client, prefix) == final
    finally:
        stop.set()
        thread.join(30)

    # oms stock channels prints what Redis holds
    monkeypatch.setenv("OMS_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("OMS_TOPIC_PREFIX", prefix)
    assert main(["stock", "channels", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {(r["channel"], r["sku"]): r["available"] for r in printed} == final
    repriced = {r["rules_version"] for r in printed if r["sku"] == "MUG-01" and r["channel"] != "lazada"}
    assert repriced == {rules.label}, "shopee and pos re-priced by it-2 (lazada's own lock left it at 5)"
    assert {r["rules_version"][:5] for r in printed} == {"it-1+", "it-2+"}, "an unchanged value is not re-sent"
    print(f"commit-to-update latency p50 {latency[0]:.0f} ms, p99 {latency[1]:.0f} ms")
