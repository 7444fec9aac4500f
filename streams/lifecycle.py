"""The order lifecycle: turns normalized changes into a forward-only canonical order stream.

Pure: the faust agent in streams/app.py keeps one ``OrderState`` per order key in a table, calls
``apply`` for each change and ``expire`` on a timer, and sends what they return.

Rules (schemas.order.OrderStatus.can_advance_to has the transition table):
- A full order starts the state, or replaces it when it moves the status forward, or carries the
  same status with a newer event time (an edited address, say). Anything else is a no-op: duplicates
  and stale copies change nothing and emit nothing.
- A status update applies to the known order, forward only. Per-line updates (Lazada) move their
  line; the order's status is then the least advanced of its live lines, or cancelled when all are.
- An update whose order is not known yet waits in the state (at most ``MAX_PENDING``) and is applied
  when the order arrives; after the configured wait it becomes a dead letter.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from schemas.order import (
    DeadLetter,
    OrderChange,
    OrderEvent,
    OrderStatus,
    OrderStatusUpdate,
    decode_change,
)

STAGE = "lifecycle"
MAX_PENDING = 50


@dataclass(frozen=True)
class OrderState:
    """What the lifecycle remembers of one order."""

    order: OrderEvent | None = None
    #: per channel unit/line id, for channels that report status per line
    line_status: dict[str, OrderStatus] = field(default_factory=dict)
    #: updates that arrived before their order, oldest first
    pending: tuple[OrderStatusUpdate, ...] = ()

    def to_bytes(self, order_bytes: bytes | None = None) -> bytes:
        """``order_bytes``: ``self.order`` already encoded, if the caller has it (it was just sent)."""
        if order_bytes is None and self.order is not None:
            order_bytes = self.order.encode()
        return orjson.dumps(
            {
                "order": _b64(order_bytes) if order_bytes is not None else None,
                "lines": {k: v.value for k, v in self.line_status.items()},
                "pending": [_b64(u.encode()) for u in self.pending],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | None) -> OrderState:
        if not data:
            return cls()
        doc: dict[str, Any] = orjson.loads(data)
        order = decode_change(base64.b64decode(doc["order"])) if doc.get("order") else None
        pending = tuple(decode_change(base64.b64decode(p)) for p in doc.get("pending", []))
        return cls(
            order=order if isinstance(order, OrderEvent) else None,
            line_status={k: OrderStatus(v) for k, v in doc.get("lines", {}).items()},
            pending=tuple(p for p in pending if isinstance(p, OrderStatusUpdate)),
        )

    @property
    def oldest_pending_ms(self) -> int | None:
        return min((u.ingest_time_ms for u in self.pending), default=None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Step:
    """The result of one change: the new state, canonical events to emit, dead letters to send."""

    state: OrderState
    emit: tuple[OrderEvent, ...] = ()
    dead: tuple[DeadLetter, ...] = ()


def apply(state: OrderState, change: OrderChange) -> Step:
    if isinstance(change, OrderEvent):
        return _apply_order(state, change)
    return _apply_update(state, change)


def _apply_order(state: OrderState, order: OrderEvent) -> Step:
    current = state.order
    if current is not None and not _supersedes(current, order):
        return Step(state)
    emitted = [order]
    new = replace(state, order=order, pending=())
    for update in sorted(state.pending, key=lambda u: (u.event_time_ms, u.event_id)):
        step = _apply_update(new, update)
        new = step.state
        emitted.extend(step.emit)
    return Step(new, tuple(emitted))


def _supersedes(current: OrderEvent, new: OrderEvent) -> bool:
    if new.event_id == current.event_id:
        return False
    if current.status.can_advance_to(new.status):
        return True
    return new.status == current.status and new.event_time_ms > current.event_time_ms


def _apply_update(state: OrderState, update: OrderStatusUpdate) -> Step:
    current = state.order
    if current is None:
        if any(p.event_id == update.event_id for p in state.pending):
            return Step(state)
        if len(state.pending) >= MAX_PENDING:
            reason = f"{MAX_PENDING} updates already wait for order {update.order_key}, which has not arrived"
            return Step(state, dead=(update_dead_letter(update, "too_many_pending", reason),))
        return Step(replace(state, pending=(*state.pending, update)))

    lines = state.line_status
    if update.line_id is not None:
        before = lines.get(update.line_id, current.status)
        if not before.can_advance_to(update.status):
            return Step(state)
        lines = {**lines, update.line_id: update.status}
        target = _order_status_from_lines(current, lines)
    else:
        target = update.status
    new_state = replace(state, line_status=lines)
    if not current.status.can_advance_to(target):
        return Step(new_state)
    moved = current.model_copy(
        update={
            "status": target,
            "channel_status": update.channel_status,
            "event_id": update.event_id,
            "event_time_ms": max(update.event_time_ms, current.event_time_ms),
            "ingest_time_ms": update.ingest_time_ms,
            "raw": update.raw,
        }
    )
    return Step(replace(new_state, order=moved), (moved,))


def _order_status_from_lines(order: OrderEvent, lines: dict[str, OrderStatus]) -> OrderStatus:
    """Least advanced live line; units never pushed keep the order's status. All cancelled: cancelled."""
    units = [unit for line in order.lines for unit in line.line_id.split("+")]
    statuses = [lines.get(unit, order.status) for unit in units]
    statuses += [s for unit, s in lines.items() if unit not in units]
    live = [s for s in statuses if s is not OrderStatus.CANCELLED]
    if not live:
        return OrderStatus.CANCELLED
    return min(live, key=lambda s: s.rank)


def expire(state: OrderState, now_ms: int, wait_ms: int) -> Step:
    """Updates that waited longer than ``wait_ms`` for their order become dead letters."""
    keep = tuple(u for u in state.pending if now_ms - u.ingest_time_ms < wait_ms)
    gone = tuple(u for u in state.pending if now_ms - u.ingest_time_ms >= wait_ms)
    if not gone:
        return Step(state)
    reason = f"order never arrived within {wait_ms // 1000}s of this status update"
    return Step(
        replace(state, pending=keep), dead=tuple(update_dead_letter(u, "order_not_found", reason) for u in gone)
    )


def update_dead_letter(update: OrderStatusUpdate, code: str, reason: str) -> DeadLetter:
    return DeadLetter.of(
        tenant=update.tenant,
        channel=update.channel,
        stage=STAGE,
        reason_code=code,
        reason=f"{update.order_key}: {reason}",
        topic=update.raw.topic,
        partition=update.raw.partition,
        offset=update.raw.offset,
        key=None,
        headers={},
        original=update.original,
    )
