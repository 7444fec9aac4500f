"""The lifecycle never moves an order backwards, ignores duplicates, and loses no early update.

Sequences of orders and status updates are generated with duplicates and any interleaving; the
invariants are checked after every step, through a serialize/deserialize of the state each time (as
the faust table stores it).
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.raw_producer import sample
from schemas.order import OrderChange, OrderEvent, OrderStatus, OrderStatusUpdate, RawRef
from streams import lifecycle
from streams.adapters.base import RawInput
from streams.lifecycle import OrderState, apply, expire
from streams.normalize import normalize

MAIN_CHAIN = [
    ("UNPAID", OrderStatus.PENDING_PAYMENT),
    ("READY_TO_SHIP", OrderStatus.PAID),
    ("PROCESSED", OrderStatus.PROCESSING),
    ("SHIPPED", OrderStatus.SHIPPED),
    ("TO_CONFIRM_RECEIVE", OrderStatus.DELIVERED),
    ("COMPLETED", OrderStatus.COMPLETED),
]
SN = "260101LIFECYCLE"
T0 = 1_795_824_000


def _order(channel_status: str = "READY_TO_SHIP", t: int = T0, offset: int = 1) -> OrderEvent:
    body = orjson.loads(sample("shopee_order_detail.json"))
    order = body["response"]["order_list"][0]
    order.update(order_sn=SN, order_status=channel_status, update_time=t)
    raw = RawInput("shopee", orjson.dumps(body), "raw.orders.shopee", 0, offset, (t + 1) * 1000)
    event = normalize(raw, "t1").events[0]
    assert isinstance(event, OrderEvent)
    return event


def _push(channel_status: str, t: int, offset: int = 100) -> OrderStatusUpdate:
    body = {
        "code": 3,
        "shop_id": 7,
        "timestamp": t,
        "data": {"ordersn": SN, "status": channel_status, "update_time": t},
    }
    raw = RawInput("shopee", orjson.dumps(body), "raw.orders.shopee", 1, offset, (t + 1) * 1000)
    update = normalize(raw, "t1").events[0]
    assert isinstance(update, OrderStatusUpdate)
    return update


def _run(changes: list[OrderChange]) -> tuple[OrderState, list[OrderEvent]]:
    state, emitted = OrderState(), []
    for change in changes:
        step = apply(OrderState.from_bytes(state.to_bytes()), change)
        state = step.state
        emitted.extend(step.emit)
        _check_forward_only(emitted)
    return state, emitted


def _check_forward_only(emitted: list[OrderEvent]) -> None:
    for before, after in itertools.pairwise(emitted):
        moved = before.status.can_advance_to(after.status)
        refreshed = before.status == after.status and after.event_time_ms > before.event_time_ms
        assert moved or refreshed, f"{before.status} -> {after.status} is not forward"


def test_a_push_that_arrives_before_its_order_is_applied_when_the_order_arrives() -> None:
    state, emitted = _run([_push("SHIPPED", T0 + 100), _order("READY_TO_SHIP", T0)])
    assert [e.status for e in emitted] == [OrderStatus.PAID, OrderStatus.SHIPPED]
    assert state.pending == ()
    assert emitted[-1].lines == emitted[0].lines, "a push keeps the order's lines and money"
    assert emitted[-1].channel_status == "SHIPPED"


def test_a_duplicate_push_is_a_no_op() -> None:
    push = _push("SHIPPED", T0 + 100)
    _, emitted = _run([_order(), push, push])
    assert [e.status for e in emitted] == [OrderStatus.PAID, OrderStatus.SHIPPED]


def test_a_late_older_status_never_moves_the_order_backwards() -> None:
    _, emitted = _run([_order(), _push("TO_CONFIRM_RECEIVE", T0 + 300), _push("SHIPPED", T0 + 200)])
    assert [e.status for e in emitted] == [OrderStatus.PAID, OrderStatus.DELIVERED]


def test_a_stale_full_order_after_a_push_changes_nothing() -> None:
    _, emitted = _run([_order(t=T0), _push("SHIPPED", T0 + 100), _order("READY_TO_SHIP", T0, offset=9)])
    assert [e.status for e in emitted] == [OrderStatus.PAID, OrderStatus.SHIPPED]


def test_cancelled_is_terminal_and_shipped_after_cancel_is_ignored() -> None:
    _, emitted = _run([_order(), _push("CANCELLED", T0 + 50), _push("SHIPPED", T0 + 100)])
    assert [e.status for e in emitted] == [OrderStatus.PAID, OrderStatus.CANCELLED]


def test_same_status_with_a_newer_time_refreshes_the_order_content() -> None:
    _, emitted = _run([_order(t=T0), _order(t=T0 + 5, offset=2)])
    assert [e.event_time_ms for e in emitted] == [T0 * 1000, (T0 + 5) * 1000]


def test_updates_that_wait_too_long_become_dead_letters_with_the_original_push() -> None:
    push = _push("SHIPPED", T0 + 100)
    state, _ = _run([push])
    still = expire(state, now_ms=push.ingest_time_ms + 999, wait_ms=1000)
    assert still.dead == () and still.state.pending == (push,)
    gone = expire(state, now_ms=push.ingest_time_ms + 1000, wait_ms=1000)
    assert gone.state.pending == ()
    assert [(d.reason_code, d.original, d.stage) for d in gone.dead] == [
        ("order_not_found", push.original, "lifecycle")
    ]
    assert gone.dead[0].dead_letter_id == f"{push.raw.topic}:{push.raw.partition}:{push.raw.offset}"


def test_pending_updates_are_bounded_per_order() -> None:
    state = OrderState()
    dead = []
    for i in range(lifecycle.MAX_PENDING + 3):
        step = apply(state, _push("SHIPPED", T0 + i, offset=i))
        state, dead = step.state, dead + list(step.dead)
    assert len(state.pending) == lifecycle.MAX_PENDING
    assert [d.reason_code for d in dead] == ["too_many_pending"] * 3


def _line_update(line_id: str, status: OrderStatus, t: int) -> OrderStatusUpdate:
    return OrderStatusUpdate(
        event_id=f"{line_id}-{status}-{t}", tenant="t1", channel="shopee", shop_id="7", order_key=_order().order_key,
        channel_order_id=SN, line_id=line_id, status=status, channel_status=status.value, event_time_ms=t * 1000,
        ingest_time_ms=t * 1000, raw=RawRef(topic="raw", partition=0, offset=t), original=b"{}",
    )  # fmt: skip


def test_per_line_updates_move_the_order_to_its_least_advanced_live_line() -> None:
    order = _order()
    first, second = (line.line_id for line in order.lines)
    _, emitted = _run(
        [
            order,
            _line_update(first, OrderStatus.SHIPPED, T0 + 10),  # other line still paid: order stays paid
            _line_update(second, OrderStatus.CANCELLED, T0 + 20),  # only live line shipped: shipped
        ]
    )
    assert [e.status for e in emitted] == [OrderStatus.PAID, OrderStatus.SHIPPED]
    _, all_cancelled = _run(
        [
            order,
            _line_update(first, OrderStatus.CANCELLED, T0 + 10),
            _line_update(second, OrderStatus.CANCELLED, T0 + 20),
        ]
    )
    assert all_cancelled[-1].status is OrderStatus.CANCELLED


changes = st.lists(
    st.one_of(
        st.builds(lambda i, t: _order(MAIN_CHAIN[i][0], T0 + t, offset=t), st.integers(0, 5), st.integers(0, 50)),
        st.builds(lambda i, t: _push(MAIN_CHAIN[i][0], T0 + t, offset=1000 + t), st.integers(0, 5), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(changes, st.randoms(use_true_random=False))
def test_any_interleaving_with_duplicates_is_forward_only_and_ends_at_the_most_advanced_state(
    sequence: list[OrderChange], rnd: Any
) -> None:
    with_duplicates = sequence + [rnd.choice(sequence) for _ in range(len(sequence) // 2)]
    rnd.shuffle(with_duplicates)
    state, emitted = _run(with_duplicates)  # forward-only is checked at every step inside
    has_order = any(isinstance(c, OrderEvent) for c in with_duplicates)
    if not has_order:
        assert emitted == [] and len(state.pending) == len({c.event_id for c in with_duplicates})
        return
    assert state.pending == (), "once the order is known nothing waits"
    best = max(c.status.rank for c in with_duplicates)
    assert state.order is not None
    assert state.order.status.rank == best, "nothing lost: the most advanced state wins"
    again = apply(state, rnd.choice(with_duplicates))
    assert again.emit == (), "re-applying any change already seen emits nothing"
    replay_state, replay_emitted = _run(with_duplicates)
    assert replay_emitted == emitted and replay_state == state, "replaying the same input rebuilds the same state"


def test_a_state_stored_with_the_bytes_of_its_order_already_sent_is_the_same_state() -> None:
    step = apply(OrderState(), _push("COMPLETED", T0 + 50))
    step = apply(step.state, _order("READY_TO_SHIP", T0 + 10))
    state = step.state
    assert state.order is not None and step.emit, "the order arrived: it is emitted"
    assert state.to_bytes(state.order.encode()) == state.to_bytes()
    assert OrderState.from_bytes(state.to_bytes(state.order.encode())) == state
