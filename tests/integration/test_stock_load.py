"""`oms stock load` through the real broker: every row on inventory.adjustments, keyed by SKU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from oms.runtime import settings_env
from oms.settings import Settings
from schemas.order import StockAdjustment
from schemas.topics import STOCK_ADJUSTMENTS
from tests.integration.conftest import read_topic, unique

pytestmark = pytest.mark.integration


def test_a_stock_file_lands_on_inventory_adjustments_keyed_by_sku_and_a_bad_one_lands_nothing(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    run = unique("")
    good = tmp_path / "count.csv"
    good.write_text(f"sku,warehouse,on_hand,version\nA{run},WH-1,50,3\nB{run},WH-1,7,3\nA{run},WH-2,1,3\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"sku,warehouse,on_hand\nC{run},WH-1,lots\n")
    env = settings_env(kafka_topics)

    def oms(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "oms.cli", "stock", "load", *args], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    refused = oms(str(bad))
    assert refused.returncode == 1 and "line 2: column on_hand: 'lots'" in refused.stderr
    loaded = oms(str(good))
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 3 counts: 2 SKUs in 2 warehouses, 58 units on hand" in loaded.stdout

    topic = STOCK_ADJUSTMENTS.full_name(kafka_topics.topic_prefix)
    ours = [m for m in read_topic(kafka_topics, topic, lambda ms: sum(run in m.key().decode() for m in ms) >= 3)]
    rows = [StockAdjustment.decode(m.value()) for m in ours if run in m.key().decode()]
    assert sorted((r.sku, r.warehouse, r.quantity, r.version) for r in rows) == [
        (f"A{run}", "WH-1", 50, 3),
        (f"A{run}", "WH-2", 1, 3),
        (f"B{run}", "WH-1", 7, 3),
    ]
    assert all(m.key().decode() == StockAdjustment.decode(m.value()).sku for m in ours if run in m.key().decode())
    assert not any(f"C{run}" in m.key().decode() for m in ours), "a refused file produces nothing"
