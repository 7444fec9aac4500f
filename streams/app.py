"""The faust application: broker settings, topics from the registry, and the agents.

Kafka stays here at the edge; the agents call pure functions (streams/normalize.py) and send what
they return. Each agent takes its input in steps of up to ``agent_batch_max`` records (``Step``):
the step's outputs are sent together and acknowledged by Kafka, then every state the step touched is
written to its changelog once, then faust acks the inputs. At-least-once, made safe downstream by
stable event ids; one awaited round trip and one changelog write per key per step, not per record.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

import faust
import orjson
from aiokafka.partitioner import murmur2
from faust.types import TP, EventT, StreamT

from oms.settings import Settings
from schemas import topics
from schemas.codec import CodecError
from schemas.order import DeadLetter, OrderChange, OrderEvent, StockAdjustment, decode_changes, encode_change_batch
from streams import allocation, inventory, lifecycle, routing, routing_records, routing_state, safe_ack, stock_records
from streams.adapters.base import RawInput
from streams.isolation import OwnLogicFailed, isolating, own_logic
from streams.normalize import dead_letter, normalize
from streams.routing_rules import RulesHolder
from streams.routing_state import request_of_order

log = logging.getLogger(__name__)

T = TypeVar("T")


def create_app(settings: Settings) -> faust.App:
    """A faust app bound to the configured broker. Its id carries the topic prefix (test isolation)."""
    app = faust.App(
        group_id(settings),
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        store="memory://",
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.consumer_session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.consumer_session_timeout_s / 5),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
    )
    safe_ack.install(app)
    rules = RulesHolder(settings.routing_rules_path())  # a bad file stops the start, naming line and field
    app.timer(settings.routing_reload_s, name="reload-routing-rules")(_reload(rules))
    register_normalize(app, settings)
    register_orders(app, settings, rules)
    register_inventory(app, settings)
    return app


def _reload(rules: RulesHolder) -> Any:
    async def reload_routing_rules() -> None:
        rules.current()  # a changed file is read; a bad one is logged and refused, the rules stay

    return reload_routing_rules


def source_topics(settings: Settings) -> list[str]:
    """Every topic the worker's agents consume (its consumer group's offsets), prefixed."""
    specs = [*topics.RAW_ORDERS, topics.ORDER_CHANGES, topics.RESERVATIONS]
    specs += [topics.STOCK_COMMANDS, topics.STOCK_ADJUSTMENTS, topics.HOLD_ACTIONS]
    return [spec.full_name(settings.topic_prefix) for spec in specs]


def group_id(settings: Settings) -> str:
    """The worker's consumer group: faust uses the app id."""
    return f"{settings.topic_prefix}oms"


def raw_input_of(event: EventT[bytes], prefix: str) -> RawInput:
    """The agent's view of a raw record: the bytes plus where they came from."""
    return raw_input_of_message(event.message, prefix)


def raw_input_of_message(msg: Any, prefix: str) -> RawInput:
    """A faust message (topic, partition, offset, key, value, headers, timestamp) as a RawInput."""
    headers = _headers(msg.headers)
    received = headers.get("received_at")
    ingest_ms = int(received) if received is not None and received.isdigit() else int(msg.timestamp * 1000)
    return RawInput(
        channel=topics.channel_of_raw_topic(msg.topic, prefix) or "unknown",
        value=msg.value if isinstance(msg.value, bytes) else bytes(msg.value or b""),
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        ingest_ms=ingest_ms,
        key=msg.key if isinstance(msg.key, bytes) else None,
        headers=headers,
    )


def _headers(raw: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> dict[str, bytes]:
    if raw is None:
        return {}
    items = raw.items() if isinstance(raw, Mapping) else raw
    return {str(k): bytes(v) if v is not None else b"" for k, v in items}


def register_normalize(app: faust.App, settings: Settings) -> Any:
    """raw.orders.<channel> -> order-changes.v1 (keyed by order), or dead-letters.v1 with a reason."""
    prefix = settings.topic_prefix
    raw_topic = app.topic(
        *[spec.full_name(prefix) for spec in topics.RAW_ORDERS],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    changes = _raw_topic(app, topics.ORDER_CHANGES.full_name(prefix))
    dead = _dead_letters(app, settings)

    in_order = safe_ack.in_order(app, "normalize")  # each partition's records applied once, in offset order

    async def normalize_agent(stream: StreamT[bytes]) -> AsyncIterator[int]:
        async for batch in _steps(stream, settings):
            sent = 0
            async with Step(events=batch, order=in_order) as step:
                out = change_batches(settings.partitions)
                for event in step.events:
                    outcome = normalize(raw_input_of(event, prefix), settings.tenant)
                    for change in outcome.events:
                        out.add(change)
                    if outcome.dead_letter is not None:
                        step.send(*_dead_out(dead, outcome.dead_letter))
                    sent += len(outcome.events)
                out.send(step, changes)
            yield sent

    return app.agent(raw_topic, name="normalize")(normalize_agent)


def register_orders(app: faust.App, settings: Settings, rules: RulesHolder) -> Any:
    """order-changes.v1 + reservations.v1 + hold-actions.v1 -> orders.v1, stock-commands.v1, allocations.v1, routing.v1.

    Everything about one order is decided by this one agent, which owns all of the order's tables:
    its lifecycle (streams/lifecycle.py: forward-only, early updates held), then its stock
    (streams/allocation.py) and its routing (streams/routing_state.py, routing.py). Each canonical
    state the lifecycle emits goes to orders.v1 for the sinks and detectors, and straight on to the
    allocation in the same step: orders.v1 is not read back, which saves the worker a Kafka input (and
    faust's ~250 us of machinery) per canonical state. A new order's reserves carry the routing
    preference (the best nodes for its postcode, then any); once allocated and paid it is routed from
    where the units are held; an operator's cancel of a held order releases its stock.
    One agent per input topic: safe_ack relies on each partition being consumed by one agent in order.

    Node capacity is shared out per partition (``routing.Share``: the N slices of a node's hour and day
    add up to its capacity), so workers never together exceed it, however the partitions are spread.
    """
    prefix = settings.topic_prefix
    changes_name = topics.ORDER_CHANGES.full_name(prefix)
    actions_name = topics.HOLD_ACTIONS.full_name(prefix)
    source = app.topic(
        changes_name, topics.RESERVATIONS.full_name(prefix), actions_name, key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw",
    )  # fmt: skip
    orders = _raw_topic(app, topics.ORDERS.full_name(prefix))
    commands = _raw_topic(app, topics.STOCK_COMMANDS.full_name(prefix))
    outcomes = _raw_topic(app, topics.ALLOCATIONS.full_name(prefix))
    routed = _raw_topic(app, topics.ROUTING.full_name(prefix))
    dead = _dead_letters(app, settings)
    # KeyedTable: the timers write outside any event; the changelog partition comes from the key.
    order_state = _bytes_table(app, "order-state", settings)
    waiting = _bytes_table(app, "order-pending", settings)  # updates held for their order: oldest ms
    table = _bytes_table(app, "allocations", settings)
    deadlines = _bytes_table(app, "hold-deadlines", settings)  # unpaid orders: order key -> expiry ms
    loads = _bytes_table(app, "routing-workload", settings)  # per partition: orders per node, hour and day
    tables = (table, deadlines, loads)  # a step writes these first, then ``lifecycle_tables`` (see Step)
    lifecycle_tables = (order_state, waiting)
    lock = asyncio.Lock()  # the agent and the timers never interleave a read and write of one order
    timers = TableTimers(app, lock)

    def live(out: Step, batches: CommandBatches, key: bytes, change: lifecycle.Step) -> int:
        """A lifecycle step's outputs and state; each canonical state it emits then allocated."""
        for letter in change.dead:
            out.send(*_dead_out(dead, letter))
        oldest = change.state.oldest_pending_ms
        if oldest is None:
            waiting.delete(key)
        else:
            waiting.set(key, str(oldest).encode())
        sent, raw = 0, None
        for order in change.emit:
            raw = order.encode()
            out.send(orders, key, raw)
            sent += allocate(out, batches, key, order=order)
        # stored decoded, encoded once when the step commits (with the bytes just sent, if its order)
        known = raw if change.emit and change.emit[-1] is change.state.order else None
        order_state.store(key, change.state, lambda state: state.to_bytes(known))
        return sent

    def record(
        out: Step,
        batches: CommandBatches,
        key: bytes,
        state: allocation.Allocation,
        before: allocation.Outcome,
        sent: list[Any],
        order: OrderEvent | None = None,
        action: routing_state.Action | None = None,
    ) -> None:
        """The outputs and the new state (whose changelog goes out after the outputs are acked)."""
        route = routing_state.OrderRouting.from_dict(key.decode(), state.routing)
        if order is not None:
            route.on_order(order)
        if order is not None or state.outcome is not before or route.allocation is None:
            route.on_allocation(stock_records.allocation_record(state))  # not per line answer: per outcome
        load_key = _partition_key(loads, b"~workload", loads.partition(key))
        workload = routing.Workload.from_bytes(loads.get(load_key) if route.may_route(action) else None)
        share = routing.Share(loads.partition(key), settings.partitions)
        now = _now_ms()
        step = route.step(rules.rules, workload, now, share, action)  # the timer reloads
        if step is not None and step.outcome == "cancelled" and step.actor:
            released = state.on_operator_cancel()
            log.info("order %s cancelled by %s: %d holds released", key.decode(), step.actor, len(released))
            sent = [*sent, *released]
            route.on_allocation(stock_records.allocation_record(state))
        for command in sent:
            batches.add(command)
        if state.outcome is not before:
            out.send(outcomes, key, stock_records.encode_allocation(state))
        if step is not None:
            out.send(routed, key, routing_records.encode_step(step))
        state.routing = route.to_dict()
        state.mark_closed(now)
        table.set(key, state.to_bytes())
        if state.expires_at_ms is None:
            deadlines.delete(key)
        else:
            deadlines.set(key, str(state.expires_at_ms).encode())
        if step is not None and step.decision is not None and step.decision.shipments:
            workload.forget_before(time.strftime("%Y-%m-%d", time.gmtime(time.time() - 2 * 86400)))
            loads.set(load_key, workload.to_bytes())

    def allocate(
        out: Step,
        batches: CommandBatches,
        key: bytes,
        order: OrderEvent | None = None,
        decision: inventory.Decision | None = None,
        action: routing_state.Action | None = None,
    ) -> int:
        """A canonical state, a reserve answer or an operator's action for the order: the commands counted."""
        stored = table.get(key)
        if stored is not None and allocation.Allocation.is_settled(stored):
            return 0  # closed OMS_CLOSED_ORDER_KEEP_DAYS ago: its changes are published, they move no stock
        if action is not None and not stored:
            log.warning("hold action %s for unknown order %s: ignored", action.action_id, key.decode())
            return 0
        if stored:
            state = allocation.Allocation.from_bytes(stored)
        else:
            channel = order.channel if order else "*"
            state = allocation.Allocation(key.decode(), allocation.ShortPolicy(settings.short_policy_for(channel)))
        before = state.outcome
        sent: list[allocation.StockCommand] = []
        if order is not None:
            first = not state.lines  # the reserves go out now: where should they hold the units?
            prefer = routing.preference(request_of_order(order), rules.rules, _now_ms()) if first else ()
            sent = state.on_order(order, settings.unpaid_hold_ms(order.channel), settings.bundles(), prefer)
        elif decision is not None:
            sent = state.on_decision(decision)
        record(out, batches, key, state, before, sent, order, action)
        return len(sent)

    def items_of(out: Step, event: EventT[bytes]) -> list[OrderChange | routing_state.Action | inventory.Decision]:
        """An input record's items: its changes, its operator action or its reserve answers; none if it
        cannot be decoded (a dead letter with its bytes goes into ``out``)."""
        topic = event.message.topic
        try:
            if topic == changes_name:  # one change, or a normalize step's batch for this partition
                return list(decode_changes(event.value))
            if topic == actions_name:
                return [routing_records.decode_action(event.value)]
            return list(stock_records.decode_decisions(event.value))  # one answer, or an inventory step's batch
        except (CodecError, ValueError, TypeError) as exc:
            stage = lifecycle.STAGE if topic == changes_name else "allocation"
            out.send(*_undecodable(dead, event, settings, stage, exc))
            return []

    def apply_item(
        out: Step, batches: CommandBatches, key: bytes, item: OrderChange | routing_state.Action | inventory.Decision
    ) -> int:
        """One item of a record (``key``: the record's): its outputs and commands into ``out``; the commands counted."""
        if isinstance(item, routing_state.Action):
            return allocate(out, batches, key, action=item)
        if isinstance(item, inventory.Decision):
            return allocate(out, batches, item.order_key.encode(), decision=item)
        return change_of(out, batches, item)

    def apply(out: Step, batches: CommandBatches, event: EventT[bytes]) -> int:
        """One input record of the agent: its outputs and commands into ``out``; the commands counted."""
        key = event.key if isinstance(event.key, bytes) else b""
        return sum(apply_item(out, batches, key, item) for item in items_of(out, event))

    def change_of(out: Step, batches: CommandBatches, change: OrderChange) -> int:
        key = change.order_key.encode()
        return live(out, batches, key, lifecycle.apply(order_of(key), change))

    def order_of(key: bytes) -> lifecycle.OrderState:
        """The lifecycle state of an order, decoded once while it stays in memory (KeyedTable.load)."""
        return order_state.load(key, lifecycle.OrderState.from_bytes) or lifecycle.OrderState()

    in_order = safe_ack.in_order(app, "orders")  # each partition's records applied once, in offset order

    async def run(events: Sequence[EventT[bytes]]) -> int:
        """One step of the agent over ``events``."""
        async with lock, Step(*tables, events=events, order=in_order, upstream=lifecycle_tables) as step:
            with own_logic():
                batches = command_batches(settings.partitions)
                sent = sum(apply(step, batches, event) for event in step.events)
                batches.send(step, commands)
        return sent

    async def take_apart(event: EventT[bytes], failed: OwnLogicFailed) -> int:
        """A record whose step fails alone: each item in a step of its own, a failing one dead-lettered."""

        async def one(n: int, item: OrderChange | routing_state.Action | inventory.Decision) -> int:
            async with Step(*tables, upstream=lifecycle_tables) as step:
                with own_logic():
                    batches = command_batches(settings.partitions)
                    sent = apply_item(step, batches, key, item)
                    batches.send(step, commands)
            return sent

        key = event.key if isinstance(event.key, bytes) else b""
        async with lock, Step(events=[event], order=in_order) as settle:
            return await _items_apart(settle, event, items_of(settle, event), one, dead, settings, "orders")

    async def orders_agent(stream: StreamT[bytes]) -> AsyncIterator[int]:
        async for batch in _steps(stream, settings, settings.agent_step_max_bytes):
            yield await isolating(batch, run, take_apart, "orders")

    @timers.every(settings.pending_check_s, "expire-pending-updates")
    async def expire_pending() -> None:
        """Status updates whose order never came within OMS_PENDING_UPDATE_WAIT_S: dead letters."""
        now = _now_ms()
        wait_ms = int(settings.pending_update_wait_s * 1000)
        async with Step(*tables, upstream=lifecycle_tables) as step:
            batches = command_batches(settings.partitions)
            due = [key for key, oldest in waiting.active_items(app, changes_name) if now - int(oldest) >= wait_ms]
            for key in due:
                state = order_of(key)
                live(step, batches, key, lifecycle.expire(state, now, wait_ms))
            batches.send(step, commands)

    @timers.every(settings.hold_check_s, "expire-unpaid-holds")
    async def expire_unpaid() -> None:
        wall = _now_ms()
        clocks: dict[int, int] = {}  # per partition of order-changes.v1: applied up to when (InOrder.clock_ms)
        async with Step(*tables, upstream=lifecycle_tables) as step:
            batches = command_batches(settings.partitions)
            for key, deadline in deadlines.active_items(app, changes_name):
                # not before the order's partition of order-changes.v1 is applied up to the deadline: a
                # payment made in time may still wait in the backlog (after a restart)
                partition = deadlines.partition(key)
                if partition not in clocks:
                    clocks[partition] = in_order.clock_ms(TP(changes_name, partition), wall)
                now = clocks[partition]
                if int(deadline) > now:
                    continue
                stored = table.get(key)
                if stored is None:
                    deadlines.delete(key)
                    continue
                state = allocation.Allocation.from_bytes(stored)
                before = state.outcome
                sent = state.expire(now)
                if sent:
                    log.info("unpaid order %s expired: %d holds released", key.decode(), len(sent))
                record(step, batches, key, state, before, sent)
            batches.send(step, commands)

    keep_ms = int(settings.closed_order_keep_days * 86_400_000)
    forget_ms = int(settings.order_forget_days * 86_400_000)

    owned_changes: frozenset[int] = frozenset()  # the partitions of order-changes.v1 this worker owns
    closed = ClosedOrders(
        table, deadlines, lifecycle_tables, keep_ms, forget_ms, lambda key: table.partition(key) in owned_changes
    )
    # an assignment may restore orders closed long ago, and the queued keys may be another worker's now
    closed_gate = ScanGate(keep_ms).reset_on_assignment(app, also=closed.queue.clear)

    @timers.every(settings.closed_order_check_s, "settle-closed-orders")
    async def settle_closed() -> None:
        """Closed orders: the allocation settled after OMS_CLOSED_ORDER_KEEP_DAYS, all of the order forgotten
        after OMS_ORDER_FORGET_DAYS; at most CLOSED_ORDERS_PER_BEAT a beat."""
        nonlocal owned_changes
        now = _now_ms()
        if not closed.queue:
            if closed_gate.skip(now):
                return
            next_due = closed.scan(table.entries(), now)
            closed_gate.scanned(now, next_due)
            log.info(
                "closed orders: scanned %d allocations, %d due; next scan in %.0f s at the latest",
                len(table.table.data), len(closed.queue), (closed_gate.scan_from - now) / 1000,
            )  # fmt: skip
        owned_changes = table.owned(app, changes_name)
        # forgetting: the lifecycle state goes first, so a crash between leaves the settled allocation,
        # which keeps a re-delivered order from reserving stock again
        async with Step(*lifecycle_tables, upstream=tables):
            settled, forgotten, forget_at = closed.settle(now, CLOSED_ORDERS_PER_BEAT)
        if forget_at is not None:
            closed_gate.due(forget_at)
        if settled or forgotten:
            log.info(
                "closed orders: %d allocations settled, %d orders forgotten, %d more due",
                settled, forgotten, len(closed.queue),
            )  # fmt: skip

    return app.agent(source, name="orders")(orders_agent)


#: A timer's work: one step of an agent's tables.
TimerStep = Callable[[], Awaitable[None]]


#: A timer step that holds its agent's lock this long or longer is logged with how long.
SLOW_TIMER_S = 0.2


class TableTimers:
    """The timers of an agent that act on its tables (``every``): not while a rebalance (and the restore
    that follows it) is under way, and a rebalance waits for a timer's step in flight to end before the
    partitions move.

    Both were seen together in a 2-worker kill -9 flash sale, which oversold 1-3 units of six SKUs: the
    unpaid-hold timer ran while its worker was restoring newly assigned partitions from their changelogs.
    It expired orders on states that were not yet fully restored and sent their releases; the restore
    then put back the older states over the timer's, so the allocations kept holds the stock had
    already released. faust waits for the agents' events before it revokes partitions, not for timers:
    a timer here runs under the agent's lock and skips its turn while ``app.rebalancing``, and on every
    revoke the lock is taken once, so a timer's step ends with its outputs and changelog writes
    acknowledged before another worker can restore those partitions.

    A timer that raises is logged and runs again at its next beat: faust would otherwise crash the
    worker, and every agent with it, for a fault in one periodic task.
    """

    def __init__(self, app: faust.App, lock: asyncio.Lock, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.lock, self.clock = app, lock, clock
        app.on_partitions_revoked.connect(self._on_revoked)

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        async with self.lock:
            pass  # a timer's step in flight has ended

    def every(self, seconds: float, name: str) -> Callable[[TimerStep], TimerStep]:
        """Register ``step`` as a faust timer with both rules; returns the guarded timer (what faust runs)."""

        def register(step: TimerStep) -> TimerStep:
            async def guarded() -> None:
                async with self.lock:
                    if self.app.rebalancing:
                        return  # it skips a beat
                    started = self.clock()
                    try:
                        await step()
                    except Exception:  # its Step put the tables back: log it and try again next beat
                        log.exception(
                            "timer %s failed; what it changed was put back and it runs again in %g s. If this "
                            "repeats, the traceback names the cause: fix it and restart the worker",
                            name, seconds,
                        )  # fmt: skip
                    held = self.clock() - started
                    if held >= SLOW_TIMER_S:  # the agent's records waited that long: a latency spike's cause
                        log.info("timer %s held the agent for %.0f ms", name, held * 1000)

            guarded.__name__ = guarded.__qualname__ = name
            self.app.timer(seconds, name=name)(guarded)
            return guarded

        return register


_PARTITION_KEYS: dict[tuple[bytes, int, int], bytes] = {}


def _partition_key(table: KeyedTable, stem: bytes, partition: int) -> bytes:
    """A key of ``table`` that lives in ``partition``: state of the partition itself (``stem#n``)."""
    return partition_key(stem, partition, table.partitions)


@functools.lru_cache(maxsize=1 << 16)
def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partition of ``key`` (murmur2), as our producers and KeyedTable compute it.

    Remembered for the 65,536 latest keys: aiokafka's murmur2 is pure Python (about 8 us a key here),
    and a step asks it several times per order (each table the order touches, each command batch) and
    per SKU on every command."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def partition_key(stem: bytes, partition: int, partitions: int) -> bytes:
    """A key that falls in ``partition`` of ``partitions`` (``stem#n``, the first n that does)."""
    found = _PARTITION_KEYS.get((stem, partition, partitions))
    if found is None:
        n = 0
        while key_partition(stem + b"#" + str(n).encode(), partitions) != partition:
            n += 1
        found = _PARTITION_KEYS[(stem, partition, partitions)] = stem + b"#" + str(n).encode()
    return found


class Batches(Generic[T]):
    """A step's records for one topic grouped by the partition of their key: one record per partition.

    The reader applies a partition's items in the order they were added, as if each were its own
    record; a key always falls in one partition, so its items keep their order. A partition with a
    single item gets a record of its own, under the item's key. Every Kafka record costs the worker
    that reads it about 250 us of faust's machinery, whatever it holds: stock commands travel this
    way (1 record per inventory partition per step, not 1 per order line), and so do order changes and
    reserve answers.
    """

    def __init__(
        self,
        partitions: int,
        stem: bytes,
        key_of: Callable[[T], bytes],
        encode_one: Callable[[T], bytes],
        encode_batch: Callable[[list[T]], bytes],
    ) -> None:
        self.partitions, self.stem = partitions, stem
        self.key_of, self.encode_one, self.encode_batch = key_of, encode_one, encode_batch
        self.by_partition: dict[int, list[tuple[bytes, T]]] = {}

    def add(self, item: T) -> None:
        key = self.key_of(item)
        self.by_partition.setdefault(key_partition(key, self.partitions), []).append((key, item))

    def send(self, out: Step, topic: Any) -> None:
        """One record per partition into ``out``; then empty."""
        for part, items in sorted(self.by_partition.items()):
            if len(items) == 1:
                out.send(topic, items[0][0], self.encode_one(items[0][1]))
            else:
                key = partition_key(self.stem, part, self.partitions)
                out.send(topic, key, self.encode_batch([item for _, item in items]))
        self.by_partition = {}


CommandBatches = Batches[allocation.StockCommand]


def command_batches(partitions: int) -> CommandBatches:
    """Stock commands by the inventory partition of their SKU (stock-commands.v1)."""
    return Batches(
        partitions,
        b"~stock",
        lambda c: c.sku.encode(),
        stock_records.encode_command,
        stock_records.encode_command_batch,
    )


def answer_batches(partitions: int) -> Batches[inventory.Decision]:
    """Reserve answers by the partition of their order (reservations.v1)."""
    encode_one, encode_batch = stock_records.encode_decision, stock_records.encode_decision_batch
    return Batches(partitions, b"~answers", lambda d: d.order_key.encode(), encode_one, encode_batch)


def change_batches(partitions: int) -> Batches[OrderChange]:
    """Order changes by the partition of their order (order-changes.v1)."""
    return Batches(
        partitions, b"~changes", lambda c: c.order_key.encode(), lambda c: c.encode(),
        lambda changes: encode_change_batch([c.encode() for c in changes]),
    )  # fmt: skip


def _now_ms() -> int:
    return int(time.time() * 1000)


def register_inventory(app: faust.App, settings: Settings) -> Any:
    """stock-commands.v1 + inventory.adjustments -> reservations.v1 and the inventory.v1 ledger."""
    prefix = settings.topic_prefix
    commands_name = topics.STOCK_COMMANDS.full_name(prefix)
    source = app.topic(
        commands_name, topics.STOCK_ADJUSTMENTS.full_name(prefix), key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw",
    )  # fmt: skip
    answers = _raw_topic(app, topics.RESERVATIONS.full_name(prefix))
    ledger = _raw_topic(app, topics.INVENTORY.full_name(prefix))
    dead = _dead_letters(app, settings)
    table = _bytes_table(app, "stock", settings)
    history = KeyedTable(app, "stock-holds", settings.partitions, within=PastHolds.SEP)  # retired holds
    lock = asyncio.Lock()  # the agent and the timer never interleave
    timers = TableTimers(app, lock)
    keep_ms = {
        inventory.HoldState.SHIPPED: int(settings.shipped_hold_keep_days * 86_400_000),
        None: int(settings.retired_hold_keep_h * 3_600_000),
    }

    def items_of(out: Step, event: EventT[bytes]) -> list[allocation.StockCommand | StockAdjustment]:
        """A record's items: a stock command, a batch of them, or an adjustment; none if it cannot be
        decoded (a dead letter with its bytes goes into ``out``)."""
        try:
            if event.message.topic == commands_name:
                return list(stock_records.decode_commands(event.value))
            return [StockAdjustment.decode(event.value)]
        except (CodecError, ValueError) as exc:
            out.send(*_undecodable(dead, event, settings, "inventory", exc))
            return []

    def apply(out: Step, replies: Batches[inventory.Decision], event: EventT[bytes]) -> int:
        """One record: moves into ``out``, answers into ``replies`` (sent once per step, a record per
        partition of reservations.v1); the moves counted."""
        items = items_of(out, event)
        alone = len(items) == 1
        return sum(apply_one(out, replies, event, item, None if alone else n) for n, item in enumerate(items))

    def apply_one(
        out: Step,
        replies: Batches[inventory.Decision],
        event: EventT[bytes],
        item: allocation.StockCommand | StockAdjustment,
        n: int | None,
    ) -> int:
        """One command or adjustment (``n``: its place in a batch record) against its SKU's stock."""
        key = item.sku.encode()
        stock = table.load(key, inventory.SkuStock.from_bytes) or inventory.SkuStock(item.sku)
        stock.past = past = PastHolds(history, key, _now_ms())
        try:
            decision, moves = _apply(stock, item)
        except ValueError as exc:  # refused before any change (SkuStock raises first): nothing to write
            what = item.hold_id if isinstance(item, allocation.StockCommand) else item.adjustment_id
            letter = _item_letter(event, settings, "inventory", "invalid_command", f"{what}: {exc}", item, n)
            out.send(*_dead_out(dead, letter))
            return 0
        for move in moves:
            out.send(ledger, key, stock_records.encode_movement(move))
        if decision is not None:
            replies.add(decision)
        for hold in stock.retire():
            past.put(hold)
        table.store(key, stock, inventory.SkuStock.to_bytes)
        return len(moves)

    in_order = safe_ack.in_order(app, "inventory")  # each partition's records applied once, in offset order

    async def run(events: Sequence[EventT[bytes]]) -> int:
        """One step of the agent over ``events``."""
        # the retired holds are written first: a crash between the two leaves the SKU's value as it
        # was, whose holds answer before any retired copy, and the re-read command applies again
        async with lock, Step(history, events=events, order=in_order, upstream=(table,)) as step:
            with own_logic():
                replies = answer_batches(settings.partitions)
                moved = sum(apply(step, replies, event) for event in step.events)
                replies.send(step, answers)
        return moved

    async def take_apart(event: EventT[bytes], failed: OwnLogicFailed) -> int:
        """A record whose step fails alone: each item in a step of its own, a failing one dead-lettered."""
        async with lock, Step(events=[event], order=in_order) as settle:
            items = items_of(settle, event)

            async def one(n: int, item: allocation.StockCommand | StockAdjustment) -> int:
                async with Step(history, upstream=(table,)) as step:
                    with own_logic():
                        replies = answer_batches(settings.partitions)
                        moved = apply_one(step, replies, event, item, None if len(items) == 1 else n)
                        replies.send(step, answers)
                return moved

            return await _items_apart(settle, event, items, one, dead, settings, "inventory")

    async def inventory_agent(stream: StreamT[bytes]) -> AsyncIterator[int]:
        async for batch in _steps(stream, settings, settings.agent_step_max_bytes):
            yield await isolating(batch, run, take_apart, "inventory")

    gate = ScanGate(min(keep_ms.values())).reset_on_assignment(app)  # it may restore older holds

    @timers.every(RETIRED_HOLDS_CHECK_S, "forget-retired-holds")
    async def forget_retired() -> None:
        """Retired holds kept past OMS_RETIRED_HOLD_KEEP_H (shipped: OMS_SHIPPED_HOLD_KEEP_DAYS) are dropped."""
        now = _now_ms()
        if gate.skip(now):
            return
        owned = history.owned(app, commands_name)
        async with Step(history):  # due first: it reads each value's tail, ownership hashes its key
            forgotten, oldest = PastHolds.forget(
                history, history.items(), now, keep_ms, lambda key: history.partition(key) in owned
            )
        gate.scanned(now, None if oldest is None else oldest + gate.shortest)
        if forgotten:
            log.info("forgot %d retired holds", forgotten)

    return app.agent(source, name="inventory")(inventory_agent)


def _apply(
    stock: inventory.SkuStock, item: allocation.StockCommand | StockAdjustment
) -> tuple[inventory.Decision | None, list[inventory.Movement]]:
    """One stock command or adjustment against one SKU's stock: the reserve answer (if any) and moves."""
    if isinstance(item, StockAdjustment):
        if item.kind == "snapshot":
            return None, stock.snapshot(item.adjustment_id, item.warehouse, item.quantity, item.version)
        return None, stock.delta(item.adjustment_id, item.warehouse, item.quantity, item.cause)
    verb = allocation.Verb
    if item.verb is verb.RESERVE:
        return stock.reserve(item.hold_id, item.quantity, item.warehouses, item.expires_at_ms)
    if item.verb is verb.PAY:
        return None, stock.pay(item.hold_id)
    if item.verb is verb.RELEASE:
        return None, stock.release(item.hold_id, item.cause or "release")
    if item.verb is verb.SHIP:
        return None, stock.ship(item.hold_id)
    return None, stock.restock(item.hold_id)


async def send_record(
    app: faust.App, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
) -> Awaitable[Any]:
    """One record, already bytes, straight into faust's producer; returns the broker's ack to await.

    faust's ``Topic.send`` and a table's ``send_changelog`` wrap each record in a FutureMessage, run
    its serializers, send callbacks and sensors, and (for the changelog) queue it in faust's
    ProducerBuffer first: about 10 % of the worker's time under flash-sale load, for records that
    are bytes already and awaited together. The same producer (and so the same murmur2 partitioner)
    sends them here. Nothing is lost by skipping faust's changelog callback: it keeps RocksDB's
    offsets, and the tables are in memory (``store="memory://"``).
    """
    return cast(Awaitable[Any], await app.producer.send(topic, key, value, partition, None, None))


async def publish(messages: list[tuple[Any, bytes, bytes]]) -> None:
    """Send a step's outputs now and wait until Kafka has them all; call it BEFORE writing the state.

    faust publishes an agent's ordinary sends at commit time, but a table's changelog goes out
    whenever the producer flushes. After a kill -9 the restored state could then already hold an
    effect whose output was never sent, and the re-run input is a no-op: the output is lost. With
    outputs acknowledged first, a crash can only repeat an output (same ids downstream), never lose one.
    """
    futures = [await send_record(topic.app, topic.get_topic_name(), key, value) for topic, key, value in messages]
    if futures:
        await asyncio.gather(*futures)


async def _steps(
    stream: StreamT[bytes], settings: Settings, max_bytes: int | None = None
) -> AsyncIterator[Sequence[EventT[bytes]]]:
    """The agent's input in steps: up to ``agent_batch_max`` records, or what came within the wait; with
    ``max_bytes``, what was taken is applied in consecutive steps of at most that many value bytes.

    faust acks the records it handed over once the agent asks for more (``take_events``), that is after
    the agent's body has run for every step of them, so an offset is committed only once its step's
    outputs and state are in Kafka. Under a backlog an orders-agent step of 500 order-change batches held
    tens of thousands of changes, and its decisions left in bursts seconds apart (``max_bytes``).
    """
    taken: AsyncIterator[Sequence[EventT[bytes]]] = cast(Any, stream).take_events(  # not in StreamT's stubs
        settings.agent_batch_max, settings.agent_batch_wait_ms / 1000
    )
    async for batch in taken:
        if max_bytes is None:
            yield batch
        else:
            for part in by_size(batch, max_bytes):
                yield part


def by_size(events: Sequence[EventT[bytes]], max_bytes: int) -> list[Sequence[EventT[bytes]]]:
    """``events`` in consecutive runs of at most ``max_bytes`` value bytes, each at least one record."""
    runs: list[Sequence[EventT[bytes]]] = []
    start, size = 0, 0
    for i, event in enumerate(events):
        length = len(event.value) if isinstance(event.value, bytes | bytearray) else 0
        if i > start and size + length > max_bytes:
            runs.append(events[start:i])
            start, size = i, 0
        size += length
    if start < len(events):
        runs.append(events[start:])
    return runs


class Step:
    """One step of an agent: outputs gathered, then sent and acknowledged, then the tables' changelogs.

    Inside ``async with Step(*tables, events=batch)`` the tables' in-memory state moves at once (a
    later record of the step reads what an earlier one wrote), but their changelog writes wait: on
    leaving, the outputs are published (``publish``), then each touched key's last value goes to its
    changelog, once, and the step waits until Kafka has those too. Only then does the step end and
    faust ack its records, so an offset is never committed ahead of the state it produced.

    faust's own commit is no guarantee of that: it flushes the producer buffer before committing, but
    ``ProducerBuffer.flush`` gives up after 0.1 s without a message leaving the buffer, and the
    commit goes ahead with changelog writes still queued. A kill -9 then restores stock without
    holds whose commands were already committed, and sells those units again: the likely cause of
    the one oversell seen in CI (FS-15: 51 of 50 in tests/integration/test_flash_sale.py, about 1 run
    in 14; none in the runs since).

    If the body, the publishing or a changelog write fails (or the step is cancelled), the in-memory
    state is put back as it was and the step's records are un-tracked: faust's ``take_events`` acks
    them anyway, but streams/safe_ack.py commits nothing at or past an un-tracked record, so they
    are read again (by this worker after a seek back, or by the next one) and applied again.

    Changelog writes to different tables are not atomic. ``upstream`` names the tables the others
    are derived from (an order's lifecycle state, from which its allocation follows): their writes go
    out only once the others' are acknowledged. A crash in between leaves the upstream state behind,
    and the re-read record derives the rest again. The other way round, the re-read record would find
    itself already applied upstream (a duplicate: nothing emitted) and never derive the rest: an
    order the lifecycle knew and the allocation never saw stayed undecided (a kill -9 found it).
    """

    def __init__(
        self,
        *tables: KeyedTable,
        events: Sequence[EventT[Any]] = (),
        order: safe_ack.InOrder | None = None,
        upstream: Sequence[KeyedTable] = (),
    ) -> None:
        self.groups = (tables, tuple(upstream))  # written in this order, each acknowledged first
        self.tables = (*tables, *upstream)
        self.order = order
        self.admitted = order.admit(events) if order is not None else None
        #: the records to apply: with ``order``, only each partition's next ones (safe_ack.InOrder)
        self.events: Sequence[EventT[Any]] = self.admitted.events if self.admitted is not None else events
        self.out: list[tuple[Any, bytes, bytes]] = []

    def send(self, topic: Any, key: bytes, value: bytes) -> None:
        self.out.append((topic, key, value))

    async def __aenter__(self) -> Step:
        for table in self.tables:
            table.begin()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc_type is None:
                await publish(self.out)
                for group in self.groups:
                    written = [ack for table in group for ack in await table.commit()]
                    if written:
                        await asyncio.gather(*written)
        except BaseException:
            self._undo()
            raise
        if exc_type is not None:
            self._undo()
            return
        for table in self.tables:
            table.end()
        if self.order is not None and self.admitted is not None:
            self.order.advance(self.admitted)

    def _undo(self) -> None:
        for table in self.tables:
            table.rollback()
        for event in self.events:
            event.message.tracked = False  # never committed: read again


def exact(raw: bytes) -> bytes:
    """``raw`` in a bytes object of its own size. orjson returns its output in the 4 KB buffer it wrote
    it into, whatever its length: kept as a table value, every order cost some 14 KB of memory (7.7 GB
    after 470,000 orders in the full flash sale, found with memray)."""
    return memoryview(raw).tobytes()


#: Decoded values a KeyedTable keeps per table (the oldest decoded leaves first).
OBJECT_CACHE_KEYS = 20_000


class KeyedTable:
    """A faust table of bytes whose changelog partition is computed from the key, always.

    faust picks the changelog partition either from the current event (which does not exist in a
    timer) or, with ``use_partitioner``, from the producer's metadata for the changelog topic, which a
    freshly started worker may not have yet: the write then raises, faust restarts the agent, and the
    event being processed is lost. Kafka's murmur2 of the key - what faust's and our producers use for
    the source topics - needs neither, and puts each key's state where its inputs are.
    """

    def __init__(self, app: faust.App, name: str, partitions: int, within: bytes | None = None) -> None:
        """``within``: keys are ``stem + within + rest``, and only the stem picks the partition, so entries
        about one thing (a SKU's retired holds) sit in the partition of that thing (the SKU)."""
        table: Any = app.Table(name, key_type=bytes, value_type=bytes, partitions=partitions)
        self.within = within
        self.table = table
        # faust derives serializers from the types and would JSON-encode bytes; set them before the
        # changelog topic is first built.
        self.table.key_serializer = "raw"
        self.table.value_serializer = "raw"
        self.partitions = partitions
        self._held: dict[bytes, bytes | None] | None = None  # in a step: changelog writes to make on commit
        self._before: dict[bytes, bytes | None] = {}  # in a step: each touched key's value before it
        # decoded values (``load``/``store``) and the bytes each was decoded from; values stored in a
        # step are encoded once, on commit
        self._objects: dict[bytes, tuple[bytes, Any]] = {}
        self._dirty: dict[bytes, tuple[Any, Callable[[Any], bytes]]] = {}

    def begin(self) -> None:
        """From now on changelog writes wait for ``commit`` (and ``rollback`` can undo the writes)."""
        self._held, self._before = {}, {}

    async def commit(self) -> list[Awaitable[Any]]:
        """Each key touched since ``begin``: its last value (or deletion) to the changelog, once.

        Returns the writes' acknowledgements, to await. Until ``end`` a ``rollback`` still puts the
        in-memory state back (a write that failed leaves the step undone).
        """
        dirty, self._dirty = self._dirty, {}
        for key, (value, encode) in dirty.items():
            self._put(key, encode(value), value)
        held, self._held = self._held or {}, None
        app, topic = self.table.app, self.table.changelog_topic.get_topic_name()
        return [await send_record(app, topic, key, raw, self.partition(key)) for key, raw in held.items()]

    def end(self) -> None:
        """The step's changelog writes are acknowledged: it can no longer be undone."""
        self._before = {}

    def rollback(self) -> None:
        """The in-memory state as it was at ``begin``; nothing goes to the changelog."""
        before, self._held, self._before, self._dirty = self._before, None, {}, {}
        self._objects.clear()  # a loaded value may have been changed in place
        for key, raw in before.items():
            if raw is None:
                self.table.data.pop(key, None)
            else:
                self.table.data[key] = raw

    def load(self, key: bytes, decode: Callable[[bytes], T]) -> T | None:
        """The key's value decoded, once: later loads of unchanged bytes return the same object.

        The caller may change the object in place, but must then ``store`` it (or fail the step).
        """
        dirty = self._dirty.get(key)
        if dirty is not None:
            return cast(T, dirty[0])
        raw = self.get(key)
        if raw is None:
            return None
        known = self._objects.get(key)
        if known is not None and known[0] is raw:  # the bytes we decoded (a restore replaces them)
            return cast(T, known[1])
        value = decode(raw)
        self._remember(key, raw, value)
        return value

    def store(self, key: bytes, value: T, encode: Callable[[T], bytes]) -> None:
        """Set the key to ``value``; in a step it is encoded once, when the step commits."""
        if self._held is None:
            self._put(key, encode(value), value)
            self.table.send_changelog(self.partition(key), key, self.get(key))
            return
        if key not in self._before:
            self._before[key] = self.get(key)
        self._held.pop(key, None)
        self._dirty[key] = (value, cast(Callable[[Any], bytes], encode))

    def _put(self, key: bytes, raw: bytes, value: Any) -> None:
        raw = exact(raw)
        self.table.data[key] = raw
        self._remember(key, raw, value)
        if self._held is not None:
            self._held[key] = raw

    def _remember(self, key: bytes, raw: bytes, value: Any) -> None:
        if len(self._objects) >= OBJECT_CACHE_KEYS and key not in self._objects:
            self._objects.pop(next(iter(self._objects)))  # the oldest decoded
        self._objects[key] = (raw, value)

    def _write(self, key: bytes, value: bytes | None) -> None:
        self._dirty.pop(key, None)
        if self._held is None:
            self.table.send_changelog(self.partition(key), key, value)
            return
        if key not in self._before:
            self._before[key] = self.get(key)
        self._held[key] = value

    def partition(self, key: bytes) -> int:
        stem = key if self.within is None else key.split(self.within, 1)[0]
        return key_partition(stem, self.partitions)

    def get(self, key: bytes) -> bytes | None:
        value = self.table.data.get(key)
        return value if isinstance(value, bytes) else None

    def set(self, key: bytes, value: bytes) -> None:
        value = exact(value)
        self._write(key, value)
        self.table.data[key] = value

    def delete(self, key: bytes) -> None:
        if key in self.table.data:
            self._write(key, None)
            del self.table.data[key]

    def items(self) -> list[tuple[bytes, bytes]]:
        return list(self.table.data.items())

    def entries(self) -> Iterable[tuple[bytes, bytes]]:
        """Every entry as stored, not copied: read it through before changing the table."""
        return cast(Iterable[tuple[bytes, bytes]], self.table.data.items())

    def active_items(self, app: faust.App, source_topic: str) -> list[tuple[bytes, bytes]]:
        """The entries of partitions this worker owns (not its standby copies): what a timer may act on."""
        owned = self.owned(app, source_topic)
        return [(k, v) for k, v in self.table.data.items() if self.partition(k) in owned]

    def owned(self, app: faust.App, source_topic: str) -> frozenset[int]:
        """The partitions this worker owns (not its standby copies)."""
        return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == source_topic)


class ClosedOrders:
    """What the orders agent keeps of a closed order (``allocation.Allocation.closed``), and for how long.

    In the full flash sale every order kept about 1.4 KB of table values (allocation ~850 bytes, lifecycle
    ~510) for good, and a worker's memory and restore time grew with every order it ever saw. Once an
    order has been closed for the keep time, its allocation is replaced by when it closed (``settled``,
    about 25 bytes): the lifecycle still publishes the order's later changes (a return, a late status), and
    the agent moves no stock for them. After the forget time the order is dropped altogether, so a
    delivery of it after that is a new order.

    Both run under the agent's lock, so they come in slices. ``scan`` queues the due orders: it reads only
    each value's first field (130 ms for 200,000 orders). Asking every key's owner there (murmur2, ~8 us
    a key) held raw to routing for ~2 s at every beat in the full sale. ``settle`` takes a slice of the
    queue per beat, each order as it is stored then, and only then asks whether it is this worker's.
    """

    def __init__(
        self,
        allocations: KeyedTable,
        deadlines: KeyedTable,
        lifecycle: Sequence[KeyedTable],
        keep_ms: int,
        forget_ms: int,
        mine: Callable[[bytes], bool] = lambda key: True,
    ) -> None:
        self.allocations, self.deadlines, self.lifecycle = allocations, deadlines, lifecycle
        self.keep_ms, self.forget_ms, self.mine = keep_ms, forget_ms, mine
        self.queue: collections.deque[bytes] = collections.deque()  # due when scanned, not yet settled

    def due_at(self, raw: bytes) -> int | None:
        """When a stored allocation is next due: settled after the keep time, forgotten after the forget
        time; None while its order is open."""
        closed = allocation.Allocation.closed_at(raw)
        if closed is None:
            return None
        return closed + (self.forget_ms if allocation.Allocation.is_settled(raw) else self.keep_ms)

    def scan(self, items: Iterable[tuple[bytes, bytes]], now_ms: int) -> int | None:
        """Queue the due orders among ``items`` (allocations), in place of any queued before; when the
        first of the others comes due (None if none is closed)."""
        self.queue.clear()
        next_due: int | None = None
        for key, raw in items:
            at = self.due_at(raw)
            if at is None:
                continue  # open: once it closes, not due before the keep time from then
            if at > now_ms:
                next_due = at if next_due is None else min(next_due, at)
            else:
                self.queue.append(key)  # whether it is ``mine`` is asked as it is settled, a slice at a time
        return next_due

    def settle(self, now_ms: int, most: int) -> tuple[int, int, int | None]:
        """Settle or forget up to ``most`` queued orders that are still due and ``mine``: how many of each,
        and when the first marker settled here is to be forgotten (None if none was settled)."""
        settled = forgotten = 0
        forget_at: int | None = None
        for _ in range(min(most, len(self.queue))):
            key = self.queue.popleft()
            raw = self.allocations.get(key) or b""
            closed = allocation.Allocation.closed_at(raw)
            if closed is None or not self.mine(key):
                continue  # opened again since the scan, or no longer this worker's
            if now_ms - closed >= self.forget_ms:
                for table in (*self.lifecycle, self.allocations, self.deadlines):
                    table.delete(key)
                forgotten += 1
            elif now_ms - closed >= self.keep_ms and not allocation.Allocation.is_settled(raw):
                self.allocations.set(key, allocation.Allocation.settled(closed))
                self.deadlines.delete(key)
                settled += 1
                at = closed + self.forget_ms
                forget_at = at if forget_at is None else min(forget_at, at)
        return settled, forgotten, forget_at


class ScanGate:
    """When a timer's scan of every stored entry can find something due, and until then it is skipped.

    The inventory's timer read all retired holds under the agent's lock every 10 minutes: in the full
    sale, 750,000 of them at 1.1 us each on an idle core, seen as 2-5 s of p99 raw to routing at every
    beat. The scan reports when the next entry it left comes due; an entry stored at or after the scan
    is not due before the scan time plus the shortest keep time. The next scan waits for the earlier of
    the two. ``reset`` (at the start, and on every assignment, which may restore older entries) scans at
    the next beat.
    """

    def __init__(self, shortest_keep_ms: int) -> None:
        self.shortest, self.scan_from = shortest_keep_ms, 0

    def reset(self) -> None:
        self.scan_from = 0

    def reset_on_assignment(self, app: faust.App, also: Callable[[], None] = lambda: None) -> ScanGate:
        """``reset`` (and ``also``) whenever ``app`` is assigned partitions; returns the gate."""

        async def on_assigned(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
            also()
            self.reset()

        app.on_partitions_assigned.connect(on_assigned)
        return self

    def skip(self, now_ms: int) -> bool:
        return now_ms < self.scan_from

    def scanned(self, now_ms: int, next_due_ms: int | None) -> None:
        """A scan at ``now_ms`` left entries of which the first comes due at ``next_due_ms`` (None: none)."""
        self.scan_from = now_ms + self.shortest
        if next_due_ms is not None:
            self.due(next_due_ms)

    def due(self, at_ms: int) -> None:
        """An entry comes due at ``at_ms``: scan by then."""
        self.scan_from = min(self.scan_from, at_ms)


#: How many closed orders a beat of the settle timer settles or forgets at most, under the agent's lock
#: (about 25 us each with its changelog writes, so ~0.12 s a beat): a week after a sale of 500,000
#: orders, 100 beats (under 2 hours at OMS_CLOSED_ORDER_CHECK_S=60) instead of one 12 s hold.
CLOSED_ORDERS_PER_BEAT = 5_000

#: How often the inventory looks for retired holds to forget.
RETIRED_HOLDS_CHECK_S = 600.0


class PastHolds:
    """One SKU's retired holds (``inventory.SkuStock.retire``) in a table of their own, a key per hold:
    ``sku NUL hold id``, in the SKU's partition (restored with it), written only when a hold changes.
    The value is the hold's fields and when it was retired (epoch ms), for ``due``."""

    SEP = b"\x00"

    def __init__(self, table: KeyedTable, sku: bytes, now_ms: int) -> None:
        self.table, self.prefix, self.now_ms = table, sku + self.SEP, now_ms

    def get(self, hold_id: str) -> inventory.Hold | None:
        raw = self.table.get(self.prefix + hold_id.encode())
        return None if raw is None else inventory.Hold.of(hold_id, orjson.loads(raw)[:-1])

    def put(self, hold: inventory.Hold) -> None:
        key, fields = self.prefix + hold.hold_id.encode(), hold.fields()
        known = self.table.get(key)
        if known is None or orjson.loads(known)[:-1] != fields:  # else a duplicate looked it up, changed nothing
            self.table.set(key, orjson.dumps([*fields, self.now_ms]))

    @staticmethod
    def forget(
        table: KeyedTable,
        items: Iterable[tuple[bytes, bytes]],
        now_ms: int,
        keep_ms: Mapping[inventory.HoldState | None, int],
        mine: Callable[[bytes], bool] = lambda key: True,
    ) -> tuple[int, int | None]:
        """Delete the retired holds among ``items`` that are ``due`` and ``mine``: how many, and when the
        oldest of the others was retired (None if none is left)."""
        shortest = min(keep_ms.values())
        due, oldest = [], None
        for key, raw in items:
            retired = PastHolds.retired_at(raw)
            if PastHolds._due(raw, retired, now_ms, keep_ms, shortest) and mine(key):
                due.append(key)
            elif oldest is None or retired < oldest:
                oldest = retired
        for key in due:
            table.delete(key)
        return len(due), oldest

    @staticmethod
    def retired_at(raw: bytes) -> int:
        """When a stored retired hold was retired: the value's last field, read from its tail."""
        return int(raw[raw.rindex(b",") + 1 : -1])

    @staticmethod
    def due(raw: bytes, now_ms: int, keep_ms: Mapping[inventory.HoldState | None, int]) -> bool:
        """Whether a stored retired hold has been kept long enough: ``keep_ms`` per state, None for the rest."""
        return PastHolds._due(raw, PastHolds.retired_at(raw), now_ms, keep_ms, min(keep_ms.values()))

    @staticmethod
    def _due(
        raw: bytes, retired: int, now_ms: int, keep_ms: Mapping[inventory.HoldState | None, int], shortest: int
    ) -> bool:
        """``due``, with the retire time and the shortest keep time known: only a hold older than that is
        decoded for its state."""
        if now_ms - retired < shortest:
            return False
        state = inventory.HoldState(orjson.loads(raw)[0])
        return bool(now_ms - retired >= keep_ms.get(state, keep_ms[None]))


def _bytes_table(app: faust.App, name: str, settings: Settings) -> KeyedTable:
    return KeyedTable(app, name, settings.partitions)


def _raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _dead_letters(app: faust.App, settings: Settings) -> Any:
    return _raw_topic(app, topics.DEAD_LETTERS.full_name(settings.topic_prefix))


def _undecodable(
    dead: Any, event: EventT[bytes], settings: Settings, stage: str, exc: Exception
) -> tuple[Any, bytes, Any]:
    """A record an agent cannot decode: a dead letter with its original bytes, to send."""
    raw = raw_input_of(event, settings.topic_prefix)
    return _dead_out(dead, dead_letter(raw, settings.tenant, "undecodable", str(exc), stage=stage))


#: An item of an agent's input record: an order change, an operator action, a reserve answer, a stock
#: command or adjustment.
Item = OrderChange | routing_state.Action | inventory.Decision | allocation.StockCommand | StockAdjustment


def _item_bytes(item: Item) -> tuple[bytes, bytes]:
    """An item as a record of its own (key, value): what its source topic would hold had it come alone."""
    if isinstance(item, routing_state.Action):
        return item.order_key.encode(), routing_records.encode_action(item)
    if isinstance(item, inventory.Decision):
        return item.order_key.encode(), stock_records.encode_decision(item)
    if isinstance(item, allocation.StockCommand):
        return item.sku.encode(), stock_records.encode_command(item)
    if isinstance(item, StockAdjustment):
        return item.sku.encode(), item.encode()
    return item.order_key.encode(), item.encode()


def _item_letter(
    event: EventT[bytes], settings: Settings, stage: str, code: str, reason: str, item: Item, n: int | None
) -> DeadLetter:
    """A dead letter for one item of a record: the record itself if it is alone (``n`` None), else the
    item's own bytes and key, with ``:n`` (its place in the batch) on the record's dead-letter id."""
    raw = raw_input_of(event, settings.topic_prefix)
    if n is not None:
        key, value = _item_bytes(item)
        raw = dataclasses.replace(raw, value=value, key=key)
    letter = dead_letter(raw, settings.tenant, code, reason, stage)
    if n is not None:
        letter = letter.model_copy(update={"dead_letter_id": f"{letter.dead_letter_id}:{n}"})
    return letter


async def _items_apart(
    settle: Step,
    event: EventT[bytes],
    items: Sequence[T],
    one: Callable[[int, T], Awaitable[int]],
    dead: Any,
    settings: Settings,
    agent: str,
) -> int:
    """A record whose step failed alone (streams/isolation.py), inside ``settle``, the step over that record
    alone: each item applied by ``one`` in a step of its own; one whose own logic fails again becomes a
    dead letter (sent, and the record's offset moved on, when ``settle`` ends). Items applied before a
    crash are applied again when the record is read again: the agents take a repeated item as a
    duplicate."""
    if not settle.events:
        return 0  # not this record's turn (InOrder): it is read again
    done = 0
    for n, item in enumerate(items):
        try:
            done += await one(n, item)
        except OwnLogicFailed as failed:
            where = f"{event.message.topic}[{event.message.partition}]@{event.message.offset}"
            reason = (
                f"the {agent} agent raised {failed} on this {'item of ' if len(items) > 1 else ''}record "
                f"({where}); its step was undone and the rest went on. Fix the cause (the worker log has the "
                "traceback), then `oms dlq replay --id <dead letter id>`"
            )
            letter = _item_letter(event, settings, agent, "processing_failed", reason, cast(Item, item),
                                  n if len(items) > 1 else None)  # fmt: skip
            settle.send(*_dead_out(dead, letter))
    return done


def _dead_out(dead: Any, letter: DeadLetter) -> tuple[Any, bytes, bytes]:
    """A dead letter as a (topic, key, value) to send, logged once here."""
    log.warning("dead letter %s: %s: %s", letter.dead_letter_id, letter.reason_code, letter.reason)
    return (dead, letter.source_topic.encode(), letter.encode())
