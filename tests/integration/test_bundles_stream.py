"""Bundles through the real broker: a gift set sold on Shopee is held as its components, as one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.raw_producer import RawProducer, sample
from connectors.stock_load import load
from infra.process import ManagedProcess
from infra.topics import ensure_topics
from oms.runtime import spawn_worker
from oms.settings import Settings
from schemas.order import order_key
from schemas.topics import ALLOCATIONS
from streams.stock_records import decode_allocation
from tests.conftest import own_settings
from tests.integration.conftest import read_topic, unique

pytestmark = pytest.mark.integration

BUNDLES = Path(__file__).parents[2] / "connectors" / "samples" / "bundles.toml"


@pytest.fixture()
def bundle_worker(services: Settings, tmp_path: Path) -> Iterator[tuple[Settings, ManagedProcess]]:
    settings = own_settings(
        services,
        tmp_path / "oms",
        "bu",
        bundles_file=str(BUNDLES),
    )
    ensure_topics(settings)
    csv = tmp_path / "stock.csv"
    # GIFTSET-01 = 1 earbud + 2 cables: stock for exactly one gift set
    csv.write_text("sku,warehouse,on_hand,version\nEARBUD-PRO-BLK,WH-1,1,1\nCABLE-USBC-1M,WH-1,2,1\n")
    load(settings, csv)
    worker = spawn_worker(settings, "bundle-worker")
    yield settings, worker
    worker.stop()


def _giftset_order(order_sn: str) -> bytes:
    body: dict[str, Any] = orjson.loads(sample("shopee_order_detail.json"))
    order = body["response"]["order_list"][0]
    order["order_sn"] = order_sn
    item = dict(order["item_list"][0], model_sku="GIFTSET-01", item_sku="GIFTSET", model_quantity_purchased=1)
    order["item_list"] = [item]
    order["total_amount"] = item["model_discounted_price"]
    return orjson.dumps(body)


def test_a_bundle_is_held_as_its_components_and_the_second_one_is_short(
    bundle_worker: tuple[Settings, ManagedProcess],
) -> None:
    settings, worker = bundle_worker
    producer = RawProducer(settings)
    first, second = unique("GIFT"), unique("GIFT")
    for sn in (first, second):
        producer.send("shopee", _giftset_order(sn), shop="9", delivery_id=f"o-{sn}")
        producer.flush()
    keys = {order_key(settings.tenant, "shopee", sn): sn for sn in (first, second)}

    def both(messages: list[Any]) -> bool:
        return {m.key().decode() for m in messages} >= set(keys)

    found = read_topic(settings, ALLOCATIONS.full_name(settings.topic_prefix), both, 90)
    latest = {m.key().decode(): decode_allocation(m.value()) for m in found}
    assert set(latest) >= set(keys), worker.log_tail()
    outcomes = sorted(latest[k]["outcome"] for k in keys)
    assert outcomes == ["allocated", "rejected"], f"one set in stock, two sold: {outcomes}"
    allocated = next(latest[k] for k in keys if latest[k]["outcome"] == "allocated")
    held = sorted((line["sku"], line["quantity"], line["state"]) for line in allocated["lines"])
    assert held == [("CABLE-USBC-1M", 2, "reserved"), ("EARBUD-PRO-BLK", 1, "reserved")]
