"""The Redis stock read model against the real Redis and Kafka, and `oms stock show` over it.

Replays and stale records never move a row backwards; the sink fed from a real inventory.v1 topic
ends with the newest movement per (SKU, warehouse), and `oms stock show` prints exactly that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from confluent_kafka import Producer

from infra.process import wait_until
from infra.topics import ensure_topics
from oms.cli import main
from oms.runtime import settings_env
from oms.settings import Settings
from schemas.topics import DEAD_LETTERS, INVENTORY
from sinks.runner import SinkStats, run_sink
from sinks.stock_model import StockModel, StockRow, stock_sink
from streams.inventory import Movement
from streams.stock_records import encode_movement

pytestmark = pytest.mark.integration


@pytest.fixture()
def prefix(services: Settings, redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}."
    yield name
    for key in redis_client.scan_iter(match=f"{name}*"):
        redis_client.delete(key)


def _move(sku: str, warehouse: str, on_hand: int, reserved: int, partition: int, offset: int) -> StockRow:
    return StockRow(sku, warehouse, on_hand, reserved, "reserve", f"hold-{offset}", partition, offset)


def _state(rows: list[StockRow]) -> list[tuple[str, str, int, int, int]]:
    return [(r.sku, r.warehouse, r.on_hand, r.reserved, r.available) for r in rows]


LEDGER = [  # two SKUs in two partitions; several movements per row, in ledger (offset) order
    _move("TEE-M", "WH-JKT-1", 100, 0, 2, 0),
    _move("TEE-M", "WH-JKT-1", 100, 5, 2, 1),
    _move("TEE-M", "WH-SBY-2", 40, 0, 2, 2),
    _move("MUG-01", "WH-JKT-1", 7, 0, 0, 10),
    _move("TEE-M", "WH-JKT-1", 98, 3, 2, 3),
    _move("MUG-01", "WH-JKT-1", 7, 7, 0, 11),
]
FINAL = [("MUG-01", "WH-JKT-1", 7, 7, 0), ("TEE-M", "WH-JKT-1", 98, 3, 95), ("TEE-M", "WH-SBY-2", 40, 0, 40)]


def test_replaying_the_same_ledger_twice_gives_the_same_rows(redis_client: redis.Redis, prefix: str) -> None:
    model = StockModel(redis_client, prefix)
    assert model.apply(LEDGER) == len(LEDGER)
    first = model.rows()
    assert _state(first) == FINAL
    assert model.apply(LEDGER) == 0, "a replay changes nothing"
    assert model.rows() == first
    rebuilt = StockModel(redis_client, prefix + "again.")
    for row in LEDGER:  # the same ledger in batches of one: same result
        rebuilt.apply([row])
    assert rebuilt.rows() == first


def test_an_older_offset_never_overwrites_a_newer_one(redis_client: redis.Redis, prefix: str) -> None:
    model = StockModel(redis_client, prefix)
    assert model.apply([_move("TEE-M", "WH-1", 50, 10, 1, 20)]) == 1
    assert model.apply([_move("TEE-M", "WH-1", 60, 0, 1, 19)]) == 0, "older offset"
    assert model.apply([_move("TEE-M", "WH-1", 61, 1, 1, 20)]) == 0, "same offset: a duplicate"
    assert _state(model.rows()) == [("TEE-M", "WH-1", 50, 10, 40)]
    # within one batch, out of order (a re-read after a rebalance): the newest offset still wins
    assert model.apply([_move("TEE-M", "WH-1", 45, 5, 1, 30), _move("TEE-M", "WH-1", 70, 0, 1, 25)]) == 1
    assert _state(model.rows()) == [("TEE-M", "WH-1", 45, 5, 40)]
    assert (model.rows()[0].partition, model.rows()[0].offset) == (1, 30)


def test_rows_available_and_filters(redis_client: redis.Redis, prefix: str) -> None:
    model = StockModel(redis_client, prefix)
    model.apply(LEDGER)
    assert [r.available for r in model.rows()] == [0, 95, 40]
    assert _state(model.rows(sku="TEE-M")) == FINAL[1:]
    assert _state(model.rows(warehouse="WH-JKT-1")) == FINAL[:2]
    assert _state(model.rows(sku="TEE-M", warehouse="WH-SBY-2")) == FINAL[2:]
    assert model.rows(sku="NOPE") == [] and model.rows(warehouse="NOPE") == []
    assert model.skus() == ["MUG-01", "TEE-M"]


def test_oms_stock_show_prints_json_and_a_table_with_totals(
    services: Settings,
    redis_client: redis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OMS_REDIS_URL", services.redis_url)
    monkeypatch.setenv("OMS_TOPIC_PREFIX", prefix)
    StockModel(redis_client, prefix).apply(LEDGER)

    assert main(["stock", "show", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(r["sku"], r["warehouse"], r["on_hand"], r["reserved"], r["available"]) for r in printed] == FINAL
    assert printed[1]["last_ref"] == "hold-3" and printed[1]["ledger_offset"] == 3

    assert main(["stock", "show", "--sku", "TEE-M"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[:5] for line in table[1:4]] == [
        ["TEE-M", "WH-JKT-1", "98", "3", "95"],
        ["TEE-M", "WH-SBY-2", "40", "0", "40"],
        ["TEE-M", "total", "(2)", "138", "3"],
    ]

    assert main(["stock", "show", "--sku", "NOPE", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == []
    assert "no stock for SKU 'NOPE'" in err and "`oms sink`" in err and f"{prefix}inventory.v1" in err


def test_the_sink_fills_the_model_from_a_real_ledger_topic_and_oms_stock_show_prints_it(
    kafka_topics: Settings, redis_client: redis.Redis
) -> None:
    run = uuid.uuid4().hex[:6]
    settings = kafka_topics.model_copy(update={"topic_prefix": f"{kafka_topics.topic_prefix}stock{run}."})
    ensure_topics(settings, (INVENTORY, DEAD_LETTERS))
    topic = INVENTORY.full_name(settings.topic_prefix)
    moves = [
        Movement("TEE-M", "WH-JKT-1", "snapshot", "adj-1", (0, 100), (0, 0)),
        Movement("TEE-M", "WH-JKT-1", "reserve", "shopee:1|1", (100, 100), (0, 5)),
        Movement("MUG-01", "WH-JKT-1", "snapshot", "adj-2", (0, 7), (0, 0)),
        Movement("TEE-M", "WH-SBY-2", "snapshot", "adj-3", (0, 40), (0, 0)),
        Movement("TEE-M", "WH-JKT-1", "ship", "shopee:1|1", (100, 98), (5, 3)),
        Movement("MUG-01", "WH-JKT-1", "reserve", "lazada:9|1", (7, 7), (0, 7)),
    ]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for move in moves:
        producer.produce(topic, key=move.sku.encode(), value=encode_movement(move))
    producer.produce(topic, key=b"TEE-M", value=b"not a StockMovement")
    assert producer.flush(30) == 0
    model = StockModel(redis_client, settings.topic_prefix)

    def run_until(done: Callable[[], bool], stats: SinkStats) -> None:
        stop = threading.Event()
        spec = stock_sink(model, topic)
        args = (settings, spec, stop, stats, f"{settings.topic_prefix}stock-{uuid.uuid4()}")
        thread = threading.Thread(target=run_sink, args=args, daemon=True)
        thread.start()
        try:
            assert wait_until(done, 60, 0.1), f"the sink did not get there: {stats}, rows {model.rows()}"
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()

    try:
        first = SinkStats()
        run_until(lambda: _state(model.rows()) == FINAL and first.dead_lettered == 1, first)
        rows = model.rows()
        replay = SinkStats()  # a new consumer group reads the whole ledger again
        run_until(lambda: replay.written == len(moves) and replay.dead_lettered == 1, replay)
        assert model.rows() == rows, "a full replay leaves every row as it was"

        shown = subprocess.run(
            [sys.executable, "-m", "oms.cli", "stock", "show", "--format", "json"],
            env=settings_env(settings), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        printed = json.loads(shown.stdout)
        assert [(r["sku"], r["warehouse"], r["on_hand"], r["reserved"], r["available"]) for r in printed] == FINAL
        assert [r["last_cause"] for r in printed] == ["reserve", "ship", "snapshot"]
    finally:
        for key in redis_client.scan_iter(match=f"{settings.topic_prefix}*"):
            redis_client.delete(key)
