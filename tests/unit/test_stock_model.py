"""The stock read model's pure parts: ledger decoding, the runner stamping offsets, the sink wiring,
the table, and `oms stock` argument and connection errors. Redis-backed behaviour (replay, offsets,
the CLI over real rows) is in tests/integration/test_stock_show.py."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from oms.cli import _stock_table, main
from oms.runtime import free_port, sink_specs
from oms.settings import Settings
from sinks.batching import BatchingSink
from sinks.runner import SinkSpec, SinkStats, Undecodable, _take
from sinks.stock_model import StockModel, StockRow, decode_movement, stock_sink
from streams.inventory import Movement
from streams.stock_records import encode_movement
from tests.unit.fakes import FakeMessage


def _message(value: bytes, partition: int, offset: int) -> FakeMessage:
    return FakeMessage(value, partition, offset, topic="inventory.v1", key=b"SKU-1")


def _ledger(sku: str = "SKU-1", warehouse: str = "WH-1", on_hand: int = 10, reserved: int = 3) -> bytes:
    return encode_movement(Movement(sku, warehouse, "reserve", "hold-1", (on_hand, on_hand), (0, reserved)))


def _take_all(spec: SinkSpec[Any], messages: list[FakeMessage]) -> list[Any]:
    sink: BatchingSink[Any] = BatchingSink(writer=lambda rows: None, committer=lambda offsets: None)
    for msg in messages:
        _take(msg, spec, sink, None, Settings(), "dead-letters.v1", SinkStats())  # type: ignore[arg-type]
    return sink.rows


def test_a_ledger_record_decodes_to_the_row_it_leaves_behind_and_garbage_is_undecodable() -> None:
    row = decode_movement(_ledger(on_hand=10, reserved=3))
    assert (row.sku, row.warehouse, row.on_hand, row.reserved, row.available) == ("SKU-1", "WH-1", 10, 3, 7)
    assert (row.cause, row.ref, row.partition, row.offset) == ("reserve", "hold-1", -1, -1)
    assert row.located(2, 41) == StockRow("SKU-1", "WH-1", 10, 3, "reserve", "hold-1", 2, 41)
    with pytest.raises(Undecodable, match="StockMovement"):
        decode_movement(b"not avro")


def test_the_runner_stamps_rows_with_partition_and_offset_only_for_sinks_that_ask() -> None:
    model = StockModel(redis.Redis.from_url("redis://127.0.0.1:1/0"))  # never connects here
    stamped = _take_all(stock_sink(model, "inventory.v1"), [_message(_ledger(), 3, 17), _message(_ledger(), 3, 18)])
    assert [(r.partition, r.offset) for r in stamped] == [(3, 17), (3, 18)]
    plain = SinkSpec[bytes](name="plain", topic="t", to_row=lambda value: value, write=lambda rows: None)
    assert _take_all(plain, [_message(b"abc", 0, 5)]) == [b"abc"], "sinks without locate get to_row's row as before"


def test_the_model_refuses_a_row_without_its_ledger_position() -> None:
    model = StockModel(redis.Redis.from_url("redis://127.0.0.1:1/0"))
    with pytest.raises(ValueError, match="no ledger position"):
        model.apply([StockRow("SKU-1", "WH-1", 1, 0)])


def test_oms_sink_runs_the_stock_sink_on_the_prefixed_ledger_next_to_the_order_sinks() -> None:
    specs = {s.name: s for s in sink_specs(Settings(topic_prefix="run1."), client=object())}  # type: ignore[arg-type]
    assert set(specs) == {"clickhouse", "redis-order-status", "redis-stock"}
    assert "run1.orders.v1" in specs["clickhouse"].topics and "run1.alerts.v1" in specs["clickhouse"].topics
    assert specs["redis-stock"].topic == "run1.inventory.v1"
    assert specs["redis-order-status"].topic == "run1.orders.v1"


def test_the_table_totals_a_sku_held_in_several_warehouses_only() -> None:
    rows = [
        StockRow("MUG-01", "WH-JKT-1", 7, 7, "reserve", "r", 1, 2),
        StockRow("TEE-M", "WH-JKT-1", 1200, 35, "reserve", "r", 0, 5),
        StockRow("TEE-M", "WH-SBY-2", 40, 0, "snapshot", "a", 0, 6),
    ]
    lines = _stock_table(rows)
    assert lines[0].split() == ["SKU", "WAREHOUSE", "ON", "HAND", "RESERVED", "AVAILABLE", "LAST", "CHANGE"]
    assert [line.split() for line in lines[1:5]] == [
        ["MUG-01", "WH-JKT-1", "7", "7", "0", "reserve"],
        ["TEE-M", "WH-JKT-1", "1,200", "35", "1,165", "reserve"],
        ["TEE-M", "WH-SBY-2", "40", "0", "40", "snapshot"],
        ["TEE-M", "total", "(2)", "1,240", "35", "1,205"],
    ]
    assert lines[-1].strip() == "3 rows: 2 SKUs in 2 warehouses; 1,247 on hand, 42 reserved, 1,205 available"


def test_stock_load_without_a_file_says_which_file_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stock", "load"]) == 2
    err = capsys.readouterr().err
    assert "oms stock load: which file?" in err and "sku,warehouse,on_hand" in err


def test_stock_options_of_the_other_action_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stock", "show", "counts.csv", "--dry-run"]) == 2
    assert "oms stock show does not take FILE, --dry-run (only `oms stock load` does)" in capsys.readouterr().err
    assert main(["stock", "load", "counts.csv", "--format", "json"]) == 2
    assert "oms stock load does not take --format" in capsys.readouterr().err


def test_stock_show_without_redis_says_where_it_looked_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("OMS_REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    assert main(["stock", "show", "--format", "json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"Redis at redis://:********@127.0.0.1:{port}/0" in err
    assert "`oms up`" in err and "OMS_REDIS_URL" in err
    assert "hunter2" not in err
