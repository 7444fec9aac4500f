"""The textbook faust peer (loadtest/peer.py) on the real broker: every order decided once, nothing oversold.

run_peer starts and stops its own worker child and makes and deletes its own topics under the run's
prefix; the fixtures give it the session's broker and that prefix.
"""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient

from infra.process import wait_until
from loadtest.peer import SHORT, orders_of, run_peer
from oms.settings import Settings
from streams.routing_rules import load_rules

pytestmark = pytest.mark.integration

ORDERS = 100
UNITS = 5


def test_every_order_decided_once_and_no_sku_oversold(run_settings: Settings) -> None:
    result = run_peer(run_settings, ORDERS, units=UNITS, timeout_s=180)

    orders = orders_of(run_settings, ORDERS)
    assert result.orders == ORDERS
    assert set(result.decisions_by_order) == {o.key for o in orders}
    assert all(len(d) == 1 for d in result.decisions_by_order.values()), "at most one decision per order"
    assert (result.decided_orders, result.missing_orders, result.duplicate_decisions) == (ORDERS, 0, 0)

    demand: Counter[str] = Counter()
    for o in orders:
        demand.update(o.units)
    assert all(units <= UNITS for units in result.reserved_by_sku.values()), result.reserved_by_sku
    assert result.oversold_skus == []
    # a SKU asked for no more than its stock gave every line what it asked; one asked for more ran short
    for sku, asked in demand.items():
        if asked <= UNITS:
            assert result.reserved_by_sku.get(sku, 0) == asked, sku
    assert any(asked > UNITS for asked in demand.values()), "the test needs an oversubscribed SKU"
    assert result.short_orders >= 1
    nodes = {n.id for n in load_rules(run_settings.routing_rules_path()).nodes}
    for o in orders:
        (decided,) = result.decisions_by_order[o.key]
        if all(demand[sku] <= UNITS for sku in o.units):
            assert decided in nodes, (o.key, decided)
        else:
            assert decided in nodes | {SHORT}, (o.key, decided)

    assert result.orders_per_s > 0 and result.seconds > 0
    assert result.kafka_records["peer-decisions"] == ORDERS
    assert result.kafka_records["peer-lines"] == result.lines + 100  # the stock seeds, one per SKU
    admin = AdminClient({"bootstrap.servers": run_settings.kafka_bootstrap})

    def left() -> list[str]:
        return [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{run_settings.topic_prefix}peer")]

    assert wait_until(lambda: not left(), 30), f"run_peer deletes its topics; still there: {left()}"
