"""Issue 4's flash sale through real Kafka: every order decided, nothing oversold, across a kill -9.

20 SKUs x 50 units across 3 warehouses, five channels selling the same stock with ten times more
demand than stock (the simulator's real payload shapes, with cancellations, duplicates and status
updates arriving early). Midway, once hundreds of orders are decided, a worker is killed with
SIGKILL and a new one started: it must restore every table from its changelog and carry on. Run
with one worker, and with two sharing the partitions (the survivor takes over, then hands back).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.simulator import Simulator, run_to_kafka
from connectors.stock_load import load
from infra.process import ManagedProcess
from infra.topics import ensure_topics
from loadtest.verify import confirmed_units
from oms.runtime import spawn_worker
from oms.settings import Settings
from schemas.order import OrderEvent, OrderStatus, order_key
from schemas.topics import ALLOCATIONS, INVENTORY, ORDERS
from streams.stock_records import HELD_STATES, decode_allocation
from tests.conftest import own_settings
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

#: Midway one worker is killed with SIGKILL and a new one started (FLASH_SALE_RESTART=graceful sends
#: SIGTERM instead, none runs the sale without a restart). This lost orders until 2026-11-28: faust
#: dropped records fetched for partitions paused by the rebalance and, with nothing committed yet,
#: resumed after them; it also acked messages it skipped. streams/safe_ack.py fixes both.
RESTART = os.environ.get("FLASH_SALE_RESTART", "kill")
WORKERS = [int(n) for n in os.environ.get("FLASH_SALE_WORKERS", "1,2").split(",")]

SKUS = [f"FS-{i:02d}" for i in range(20)]
WAREHOUSES = ("WH-SG-1", "WH-SG-2", "WH-SG-3")
PER_WAREHOUSE = (17, 17, 16)  # 50 per SKU
CHANNELS = ["shopee", "lazada", "tiktok", "shopify", "pos"]


# With two workers the survivor takes the killed worker's partitions, then gives some back to the
# new one: three rebalances mid-sale, with partitions that have nothing committed yet. Before
# streams/safe_ack.py this lost 112-812 of 3,723 orders (their changes consumed and never applied).
@pytest.fixture(params=WORKERS, ids=[f"{n}-worker" for n in WORKERS])
def sale(
    services: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Settings, list[ManagedProcess]]]:
    settings = own_settings(
        services,
        tmp_path / "oms",
        "fs",
        # A stalled worker restarts itself well within the test's deadlines. Not lower: after a kill the
        # worker works through a backlog, and at 20 s a busy CI machine took that slowness for a stall,
        # and each restart (tables restored, group rejoined) set it further back, again and again.
        worker_stall_s=60.0,
    )
    ensure_topics(settings)
    csv = tmp_path / "stock.csv"
    rows = [f"{sku},{w},{n}" for sku in SKUS for w, n in zip(WAREHOUSES, PER_WAREHOUSE, strict=True)]
    csv.write_text("sku,warehouse,on_hand,version\n" + "\n".join(f"{r},1" for r in rows) + "\n")
    assert load(settings, csv).units == 50 * len(SKUS)
    workers = [spawn_worker(settings, f"sale-worker-{i}") for i in range(request.param)]
    yield settings, workers
    for proc in workers:
        proc.stop()


def _latest_outcomes(settings: Settings, done: Any, timeout: float) -> dict[str, dict[str, Any]]:
    messages = read_topic(settings, ALLOCATIONS.full_name(settings.topic_prefix), done, timeout)
    latest: dict[str, dict[str, Any]] = {}
    for m in messages:  # one order's outcomes share a partition, so this is their order
        latest[m.key().decode()] = decode_allocation(m.value())
    return latest


def test_flash_sale_across_five_channels_decides_every_order_and_never_oversells(
    sale: tuple[Settings, list[ManagedProcess]],
) -> None:
    settings, workers = sale
    sim = Simulator(seed=11, channels=CHANNELS, markets=["SG"], skus=SKUS, hot_share=0.0)
    total = 14_000  # about ten units demanded per unit in stock
    half = total // 2
    began = time.monotonic()
    run_to_kafka(settings, sim, half, rate=0)

    # kill -9 mid-stream: some orders decided, many in flight (commands and answers unconsumed). With
    # two workers the survivor takes the dead one's partitions, then gives some back to the restarted
    # one: two rebalances mid-sale.
    def some_decided(messages: list[Any]) -> bool:
        return len(messages) >= 300

    assert len(_latest_outcomes(settings, some_decided, 240)) >= 1, workers[0].log_tail()
    if RESTART != "none":
        assert workers[0].kill() if RESTART == "kill" else workers[0].stop(), "the worker was not running"
        workers.append(spawn_worker(settings, "sale-worker-restarted"))
        alive = [w for w in workers if w.pid() is not None]
        assert len(alive) == len(workers) - 1, "every other worker must still be running"
    run_to_kafka(settings, _Rest(sim, half), total - half, rate=0)

    expected = {order_key(settings.tenant, e.channel, e.order_id) for e in sim.events(total) if e.kind == "order"}
    orders_topic = ORDERS.full_name(settings.topic_prefix)

    def all_orders(messages: list[Any]) -> bool:
        return len({m.key().decode() for m in messages} & expected) >= len(expected)

    orders = {m.key().decode(): m for m in read_topic(settings, orders_topic, all_orders, 600)}
    missing = expected - set(orders)
    assert not missing, _why_missing(settings, missing)

    def all_decided(messages: list[Any]) -> bool:
        return len({m.key().decode() for m in messages} & expected) >= len(expected)

    outcomes = _latest_outcomes(settings, all_decided, 420)
    undecided = expected - set(outcomes)
    assert not undecided, _why_undecided(settings, undecided, orders)

    # allocated: every line held; partial: the order shipped before a short line was decided
    confirmed = defaultdict(int, confirmed_units(outcomes.values()))
    cancelled_after = {k for k, m in orders.items() if OrderEvent.decode(m.value()).status is OrderStatus.CANCELLED}
    oversold = [sku for sku in SKUS if confirmed[sku] > 50]
    assert not oversold, _why_oversold(settings, oversold, confirmed, outcomes)
    sold = sum(confirmed.values())
    # Sell-through is a measurement, not the promise: under the default reject policy a multi-line
    # order holds its granted lines until its short line is refused, and under load that stock can
    # come back after the demand has passed (an in-memory replay of this sale sells ~95 %). The floor
    # only catches a pipeline that stopped selling.
    assert sold >= 0.5 * 50 * len(SKUS), f"only {sold} of {50 * len(SKUS)} units sold under 10x demand"

    # The ledger, read until the stock still held per SKU is exactly what allocated orders hold: no
    # reservation lost, none released twice, nothing left held by a rejected or cancelled order.
    ledger = _Ledger()
    read_topic(settings, INVENTORY.full_name(settings.topic_prefix), lambda ms: ledger.balanced(ms, confirmed), 240)
    assert ledger.held() == {sku: confirmed[sku] for sku in SKUS}, "held stock differs from allocated orders"
    assert not ledger.oversold, f"a reservation beyond on hand: {ledger.oversold[:3]}"
    assert not ledger.conflicts, f"one movement applied twice with different effects: {ledger.conflicts[:3]}"
    print(
        f"flash sale: {len(orders)} orders, {sold} units confirmed of {50 * len(SKUS)}, "
        f"{len(cancelled_after)} cancelled, {ledger.count} ledger movements, {time.monotonic() - began:.0f}s"
    )


def _why_oversold(
    settings: Settings, skus: list[str], confirmed: dict[str, int], outcomes: dict[str, dict[str, Any]]
) -> str:
    """Where the extra units came from: confirmed holds the ledger never reserved, or reserved twice
    with different effects (a replay that did not repeat the first pass)."""
    from schemas.codec import codec

    decode = codec("stock_movement").decode
    moves = [
        move
        for m in read_topic(settings, INVENTORY.full_name(settings.topic_prefix), lambda ms: False, 10)
        for move in [decode(m.value())]
        if move["sku"] in skus
    ]
    lines = []
    for sku in skus:
        held = {
            line["hold_id"]
            for outcome in outcomes.values()
            if outcome["outcome"] in ("allocated", "partial")
            for line in outcome["lines"]
            if line["sku"] == sku and line["state"] in HELD_STATES
        }
        reserves: dict[str, set[tuple[Any, ...]]] = defaultdict(set)  # a true repeat is the same movement
        released: set[str] = set()
        for move in moves:
            if move["sku"] == sku and move["cause"] == "reserve":
                reserves[move["ref"]].add(tuple(sorted(move.items())))
            elif move["sku"] == sku and move["cause"] != "ship":
                released.add(move["ref"])
        lines.append(
            f"{sku}: {confirmed[sku]} units confirmed of 50; confirmed holds without a reserve in the ledger: "
            f"{sorted(held - set(reserves))[:5]}; reserved more than once: "
            f"{sorted(h for h, seen in reserves.items() if len(seen) > 1)[:5]}; confirmed but released: "
            f"{sorted(held & released)[:5]}; last ledger rows: {moves[-3:]}"
        )
    return "oversold:\n" + "\n".join(lines)


def _why_missing(settings: Settings, missing: set[str]) -> str:
    """Where each order missing from orders.v1 stopped: its raw records, its changes, the group's offsets."""
    from confluent_kafka import Consumer, TopicPartition

    from schemas.order import decode_changes
    from schemas.topics import ORDER_CHANGES, RAW_ORDERS
    from streams.app import group_id

    prefix = settings.topic_prefix
    ids = {key.split(":", 2)[2].encode(): key for key in missing}
    raw_names = [spec.full_name(prefix) for spec in RAW_ORDERS]
    raw = [
        (ids[i], m.topic(), m.partition(), m.offset())
        for m in read_topic(settings, raw_names, lambda ms: False, 10)
        for i in ids
        if i in (m.value() or b"")
    ]
    changes_topic = ORDER_CHANGES.full_name(prefix)
    changes = [
        (change.order_key, m.partition(), m.offset())
        for m in read_topic(settings, changes_topic, lambda ms: False, 10)
        for change in decode_changes(m.value())
        if change.order_key in missing
    ]
    group = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group_id(settings)})
    try:
        wanted = {(t, p) for _, t, p, _ in raw} | {(changes_topic, p) for _, p, _ in changes}
        committed = group.committed([TopicPartition(t, p) for t, p in sorted(wanted)], timeout=10)
        offsets = {f"{tp.topic}[{tp.partition}]": tp.offset for tp in committed}
    finally:
        group.close()
    return (
        f"{len(missing)} orders never reached orders.v1: {sorted(missing)[:5]}\n"
        f"raw records (key, topic, partition, offset): {raw[:10]}\n"
        f"order changes (key, partition, offset): {changes[:10]}\ncommitted offsets: {offsets}"
    )


def _why_undecided(settings: Settings, undecided: set[str], orders: dict[str, Any]) -> str:
    """What each undecided order went through, for the failure message."""
    from schemas.topics import RESERVATIONS, STOCK_COMMANDS
    from streams.stock_records import decode_commands, decode_decisions

    prefix = settings.topic_prefix
    history = [
        OrderEvent.decode(m.value()).status.value
        for m in read_topic(settings, ORDERS.full_name(prefix), lambda ms: False, 10)
        if m.key().decode() in undecided
    ]
    answers = [
        d
        for m in read_topic(settings, RESERVATIONS.full_name(prefix), lambda ms: False, 10)
        for d in decode_decisions(m.value())
        if d.hold_id.rsplit("|", 1)[0] in undecided
    ]
    asked = [
        c
        for m in read_topic(settings, STOCK_COMMANDS.full_name(prefix), lambda ms: False, 10)
        for c in decode_commands(m.value())
        if c.order_key in undecided
    ]
    return (
        f"{len(undecided)} orders never decided: {sorted(undecided)[:3]}\n"
        f"orders.v1 statuses: {history}\ncommands: {asked}\nreservations: {answers}"
    )


class _Rest:
    """The simulator's events after the first ``skip`` (the second half of the same sale)."""

    def __init__(self, sim: Simulator, skip: int) -> None:
        self.sim = sim
        self.skip = skip

    def events(self, count: int | None = None) -> Iterator[Any]:
        stream = self.sim.events(None if count is None else self.skip + count)
        for i, event in enumerate(stream):
            if i >= self.skip:
                yield event


class _Ledger:
    """inventory.v1 folded as it is read: the last row per (sku, warehouse), and what looks wrong.

    After a crash a movement may be published twice (outputs are sent before the state is written);
    a true repeat is byte-identical, while one hold reserved or released twice shows up as two
    different movements for the same (sku, warehouse, cause, ref).
    """

    def __init__(self) -> None:
        from schemas.codec import codec

        self.codec = codec("stock_movement")
        self.seen = 0
        self.count = 0
        self.rows: dict[tuple[str, str], tuple[int, int]] = {}
        self.first: dict[tuple[str, str, str, str], bytes] = {}
        self.oversold: list[dict[str, Any]] = []
        self.conflicts: list[tuple[str, str, str, str]] = []

    def balanced(self, messages: list[Any], confirmed: dict[str, int]) -> bool:
        for m in messages[self.seen :]:
            move = self.codec.decode(m.value())
            self.count += 1
            ident = (move["sku"], move["warehouse"], move["cause"], move["ref"])
            if self.first.setdefault(ident, m.value()) != m.value():
                self.conflicts.append(ident)
            self.rows[(move["sku"], move["warehouse"])] = (move["on_hand_after"], move["reserved_after"])
            if move["cause"] == "reserve" and move["reserved_after"] > move["on_hand_after"]:
                self.oversold.append(move)
        self.seen = len(messages)
        return self.held() == {sku: confirmed.get(sku, 0) for sku in SKUS}

    def held(self) -> dict[str, int]:
        """Units per SKU still reserved or already shipped (gone from the 50 loaded)."""
        held = dict.fromkeys(SKUS, 0)
        for (sku, _), (_, reserved) in self.rows.items():
            held[sku] += reserved
        for sku in SKUS:
            on_hand = sum(v[0] for (s, _), v in self.rows.items() if s == sku)
            held[sku] += 50 - on_hand
        return held
