"""Closed orders through the real broker: the allocation settles, survives a kill -9, and stops restocking.

A worker that settles closed orders after one second: an order is shipped and completed, its
allocation in the changelog becomes the settled marker; the worker is killed with SIGKILL and
another started, which restores the marker from the changelog; the channel then re-sends the
completed order with a newer update time. The lifecycle publishes it again (orders.v1), and the
restored marker keeps the orders agent from acting on it: no stock command, no allocation record.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from connectors.raw_producer import RawProducer
from connectors.stock_load import load
from infra.topics import ensure_topics
from oms.runtime import spawn_worker
from oms.settings import Settings
from schemas.order import OrderEvent, order_key
from schemas.topics import ALLOCATIONS, ORDER_CHANGES, ORDERS, STOCK_COMMANDS
from streams.allocation import Allocation
from streams.app import create_app
from streams.stock_records import decode_allocation, decode_commands
from tests.conftest import own_settings
from tests.integration.conftest import committed_to_end, read_topic, shopee_order, unique

pytestmark = pytest.mark.integration


def test_a_settled_order_is_restored_after_kill_9_and_its_re_sent_states_move_no_stock(
    services: Settings, tmp_path: Path
) -> None:
    settings = own_settings(
        services,
        tmp_path / "oms",
        "co",
        closed_order_keep_days=1 / 86_400,  # one second
        closed_order_check_s=0.5,
    )
    ensure_topics(settings)
    csv = tmp_path / "stock.csv"
    csv.write_text("sku,warehouse,on_hand,version\nEARBUD-PRO-BLK,WH-1,5,1\nCABLE-USBC-1M,WH-1,10,1\n")
    load(settings, csv)
    changelog = create_app(settings).tables["allocations"].changelog_topic.get_topic_name()
    sn = unique("DONE")
    key = order_key(settings.tenant, "shopee", sn)
    producer = RawProducer(settings)
    now = int(time.time())
    worker = spawn_worker(settings, "closed-worker-1")
    try:
        for n, status in enumerate(("READY_TO_SHIP", "SHIPPED", "COMPLETED")):
            body = shopee_order(sn, order_status=status, create_time=now, update_time=now + n)
            producer.send("shopee", body, shop="9", delivery_id=f"{status}-{sn}")
        producer.flush()

        def allocated(messages: list[Any]) -> bool:
            return any(m.key() == key.encode() for m in messages)

        # the worker creates its changelog topics as it starts: read them once it has decided the order
        assert allocated(read_topic(settings, ALLOCATIONS.full_name(settings.topic_prefix), allocated, 90))

        def settled(messages: list[Any]) -> bool:
            return any(m.key() == key.encode() and Allocation.is_settled(m.value() or b"") for m in messages)

        writes = read_topic(settings, changelog, settled, 90)
        assert settled(writes), worker.log_tail()
        full = [m.value() for m in writes if m.key() == key.encode() and not Allocation.is_settled(m.value() or b"")]
        assert Allocation.from_bytes(full[-1]).outcome.value == "allocated"
        assert Allocation.closed_at(full[-1]) is not None  # closed once completed, settled a second later
        assert worker.kill(), "the worker was not running"
    finally:
        worker.stop()

    topics = [ORDERS.full_name(settings.topic_prefix), STOCK_COMMANDS.full_name(settings.topic_prefix),
              ALLOCATIONS.full_name(settings.topic_prefix)]  # fmt: skip
    before = read_topic(settings, topics, lambda ms: False, 3)
    worker = spawn_worker(settings, "closed-worker-2")
    try:
        resent = shopee_order(sn, order_status="COMPLETED", create_time=now, update_time=now + 60)
        producer.send("shopee", resent, shop="9", delivery_id=f"again-{sn}")
        producer.flush()

        def published_again(messages: list[Any]) -> bool:
            return sum(1 for m in messages if m.topic() == topics[0] and m.key() == key.encode()) > sum(
                1 for m in before if m.topic() == topics[0] and m.key() == key.encode()
            )

        published = read_topic(settings, topics[0], published_again, 90)
        assert published_again(published), worker.log_tail()
        # the state is published as the orders agent handles its change: wait for the whole step's commit
        assert committed_to_end(settings, ORDER_CHANGES.full_name(settings.topic_prefix), 60), worker.log_tail()
        after = read_topic(settings, topics, lambda ms: False, 3)
    finally:
        worker.stop()
    states = [OrderEvent.decode(m.value()) for m in after if m.topic() == topics[0] and m.key() == key.encode()]
    assert states[-1].event_time_ms > states[-2].event_time_ms  # the re-sent one, published

    def commands_in(messages: list[Any]) -> list[str]:
        # stock commands are keyed by SKU: two SKUs' commands sit on two partitions, read in either order
        found = (c for m in messages if m.topic() == topics[1] for c in decode_commands(m.value()))
        return sorted(repr(c) for c in found if c.order_key == key)

    assert commands_in(before), "the order's stock commands before the restart"
    assert commands_in(after) == commands_in(before), "a settled order moves no stock"
    mine = [m for m in after if m.topic() == topics[2] and m.key() == key.encode()]
    assert [decode_allocation(m.value())["outcome"] for m in mine] == ["allocated"]
