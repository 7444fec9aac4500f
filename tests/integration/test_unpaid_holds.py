"""Unpaid orders through the real broker: holds lapse at the channel's deadline and go back on sale."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.raw_producer import RawProducer
from connectors.stock_load import load
from infra.process import ManagedProcess
from infra.topics import ensure_topics
from oms.runtime import spawn_worker
from oms.settings import Settings
from schemas.codec import codec
from schemas.order import order_key
from schemas.topics import ALLOCATIONS, INVENTORY
from streams.stock_records import decode_allocation
from tests.conftest import own_settings
from tests.integration.conftest import read_topic, shopee_order, unique

pytestmark = pytest.mark.integration

HOLD_S = 3


@pytest.fixture()
def unpaid_worker(services: Settings, tmp_path: Path) -> Iterator[tuple[Settings, ManagedProcess]]:
    settings = own_settings(
        services,
        tmp_path / "oms",
        "uh",
        unpaid_hold_s=f"*=3600,shopee={HOLD_S}",
        hold_check_s=0.5,
    )
    ensure_topics(settings)
    csv = tmp_path / "stock.csv"
    # the sample Shopee order buys 1 EARBUD-PRO-BLK and 2 CABLE-USBC-1M: stock for exactly two orders
    csv.write_text("sku,warehouse,on_hand,version\nEARBUD-PRO-BLK,WH-1,2,1\nCABLE-USBC-1M,WH-1,4,1\n")
    load(settings, csv)
    worker = spawn_worker(settings, "unpaid-worker")
    yield settings, worker
    worker.stop()


def _outcomes(settings: Settings, done: Any, timeout: float) -> dict[str, list[str]]:
    history: dict[str, list[str]] = {}
    for m in read_topic(settings, ALLOCATIONS.full_name(settings.topic_prefix), done, timeout):
        history.setdefault(m.key().decode(), []).append(decode_allocation(m.value())["outcome"])
    return history


def test_an_unpaid_order_gives_its_stock_back_at_the_deadline_and_a_paid_one_keeps_it(
    unpaid_worker: tuple[Settings, ManagedProcess],
) -> None:
    settings, worker = unpaid_worker
    producer = RawProducer(settings)
    now = int(time.time())
    unpaid, paid, later = unique("UNPAID"), unique("PAID"), unique("LATER")
    for sn in (unpaid, paid):
        body = shopee_order(sn, order_status="UNPAID", create_time=now, update_time=now)
        producer.send("shopee", body, shop="9", delivery_id=f"o-{sn}")
    # paid within the hold time: its holds must survive the deadline
    producer.send(
        "shopee",
        shopee_order(paid, order_status="READY_TO_SHIP", create_time=now, update_time=now + 1),
        shop="9",
        delivery_id=f"p-{paid}",
    )
    producer.flush()
    keys = {sn: order_key(settings.tenant, "shopee", sn) for sn in (unpaid, paid, later)}

    def expired(messages: list[Any]) -> bool:
        return any(
            m.key().decode() == keys[unpaid] and decode_allocation(m.value())["outcome"] == "expired" for m in messages
        )

    history = _outcomes(settings, expired, 90)
    assert history.get(keys[unpaid]) == ["allocated", "expired"], worker.log_tail()
    assert history.get(keys[paid]) == ["allocated"], worker.log_tail()

    # The released units are on sale again: a new order gets them (without the release it is short).
    producer.send("shopee", shopee_order(later, order_status="READY_TO_SHIP"), shop="9", delivery_id=f"o-{later}")
    producer.flush()

    def later_decided(messages: list[Any]) -> bool:
        return any(m.key().decode() == keys[later] for m in messages)

    history = _outcomes(settings, later_decided, 90)
    assert history[keys[later]] == ["allocated"], worker.log_tail()
    assert history[keys[paid]] == ["allocated"], "the paid order's holds must not lapse"

    moves = [codec("stock_movement").decode(m.value()) for m in read_topic(
        settings, INVENTORY.full_name(settings.topic_prefix), lambda ms: len(ms) >= 2 + 6 + 2, 60
    )]  # fmt: skip
    expiries = Counter(move["ref"].rsplit("|", 1)[0] for move in moves if move["cause"] == "expire")
    assert expiries == {keys[unpaid]: 2}, f"exactly the unpaid order's two lines expire, once: {expiries}"
