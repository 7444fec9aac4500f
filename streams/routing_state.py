"""One order's routing stage: when to route, when a hold ends, what an operator's action does. Pure.

The orders agent (streams/app.py) keeps one ``OrderRouting`` per order key next to the order's
allocation. It learns the order from its canonical states (address, payment, ship-by), the stock from the
allocation (which line is held in which warehouse) and operator actions from hold-actions.v1, in any
order and any number of times:

- allocated or partial, and paid or beyond (COD counts as paid) -> routed or held, once;
- held + ``release`` -> routed again, with the operator's name, risk holds waived (an address no node
  serves stays held: the order has to change);
- held or routed + ``cancel`` -> cancelled by the operator: the allocation releases the stock;
- the order cancelled, or its stock released (rejected, expired) after a decision -> cancelled.

Every step that emits returns a ``Step``; replaying the same inputs emits nothing new (decisions are
numbered per order, actions are applied once by id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.order import Market, OrderEvent, OrderStatus
from streams import routing
from streams.routing_rules import Rules
from streams.stock_records import HELD_STATES

#: allocation outcomes that have stock to ship
SHIPPABLE = frozenset({"allocated", "partial"})
#: allocation outcomes after which nothing is held any more
RELEASED = frozenset({"rejected", "cancelled", "expired"})
#: paid or beyond (COD counts as paid: the channel says "go ahead"). An order the channel reports as
#: shipped before it was routed (fulfilled outside the OMS, or a fast simulation) is still routed: the
#: decision records where its units were held and what the rules would have shipped it with.
ROUTABLE_STATUS = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.PROCESSING,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.COMPLETED,
        OrderStatus.RETURNED,
    }
)


@dataclass(frozen=True)
class Action:
    action_id: str
    order_key: str
    action: str  # release | cancel
    actor: str
    note: str
    at_ms: int


@dataclass(frozen=True)
class Step:
    """What the stage emits for one input: a decision (with its sequence number), or nothing."""

    seq: int
    outcome: str  # routed | held | cancelled
    decision: routing.Decision | None  # None for cancelled
    request: routing.Request
    actor: str | None = None
    note: str | None = None
    summary: str = ""


@dataclass
class OrderRouting:
    order_key: str
    order: dict[str, Any] | None = None  # the Request fields without lines
    status: str | None = None
    allocation: str | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    last: str | None = None  # routed | held | cancelled
    seq: int = 0
    actions: list[str] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)  # hold codes of the last held decision

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_bytes(cls, key: str, data: bytes | None) -> OrderRouting:
        return cls(**orjson.loads(data)) if data else cls(key)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, kept inside the order's allocation state (one table write per event, not two)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, key: str, data: dict[str, Any] | None) -> OrderRouting:
        return cls(**data) if data else cls(key)

    def may_route(self, action: Action | None) -> bool:
        """Whether ``step`` could call the router now (only then is the node workload needed)."""
        return self.last is None or (action is not None and action.action == "release")

    # ------------------------------------------------------------------------------------ inputs

    def on_order(self, order: OrderEvent) -> None:
        self.status = order.status.value
        self.order = order_fields(order)

    def on_allocation(self, record: dict[str, Any]) -> None:
        """An allocations.v1 record (allocation.v2 fields; v1 records have no warehouse)."""
        self.allocation = str(record["outcome"])
        self.lines = [
            {
                "hold_id": line["hold_id"],
                "sku": line["sku"],
                "quantity": int(line["quantity"]),
                "warehouse": line.get("warehouse") if line["state"] in HELD_STATES else None,
            }
            for line in record["lines"]
        ]

    def request(self) -> routing.Request | None:
        if self.order is None:
            return None
        lines = tuple(routing.Line(**line) for line in self.lines)
        return routing.Request(**{**self.order, "market": Market(self.order["market"]), "lines": lines})

    # ----------------------------------------------------------------------------------- decide

    def step(
        self,
        rules: Rules,
        workload: routing.Workload,
        now_ms: int,
        share: routing.Share = routing.WHOLE,
        action: Action | None = None,
    ) -> Step | None:
        """After any input: the decision to emit now, if there is one. Applies ``take`` to ``workload``."""
        request = self.request()
        if request is None or self.last == "cancelled":
            return None
        if action is not None:
            if action.action_id in self.actions:
                return None
            self.actions.append(action.action_id)
            if action.action == "cancel" and self.last in ("held", "routed", None):
                return self._emit("cancelled", None, request, action.actor, action.note or "cancelled by an operator")
            if action.action == "release" and self.last == "held" and self._ready():
                decision = routing.route(request, rules, workload, now_ms, share, released_by=action.actor)
                return self._decided(decision, workload, request, action)
            return None
        if self.last in ("routed", "held") and (
            self.status == OrderStatus.CANCELLED.value or self.allocation in RELEASED
        ):
            cancelled = self.status == OrderStatus.CANCELLED.value
            why = "the order was cancelled" if cancelled else f"stock {self.allocation}"
            return self._emit("cancelled", None, request, None, why)
        if self.last is None and self._ready():
            return self._decided(routing.route(request, rules, workload, now_ms, share), workload, request, None)
        return None

    def _ready(self) -> bool:
        return (
            self.allocation in SHIPPABLE
            and self.status is not None
            and OrderStatus(self.status) in ROUTABLE_STATUS
            and bool(self.lines)
        )

    def _decided(
        self, decision: routing.Decision, workload: routing.Workload, request: routing.Request, action: Action | None
    ) -> Step:
        for shipment in decision.shipments:
            workload.take(shipment)
        self.holds = [h.code for h in decision.holds]
        actor = action.actor if action else None
        note = action.note if action else None
        return self._emit(decision.outcome, decision, request, actor, note)

    def _emit(
        self,
        outcome: str,
        decision: routing.Decision | None,
        request: routing.Request,
        actor: str | None,
        note: str | None,
    ) -> Step:
        self.seq += 1
        self.last = outcome
        summary = decision.summary() if decision else f"cancelled: {note}"
        return Step(self.seq, outcome, decision, request, actor, note, summary)


def order_fields(order: OrderEvent) -> dict[str, Any]:
    """The Request fields of an order, without lines (JSON-ready)."""
    return {
        "order_key": order.order_key,
        "tenant": order.tenant,
        "channel": order.channel,
        "market": order.market.value,
        "postcode": order.shipping.postcode,
        "city": order.shipping.city,
        "is_cod": order.is_cod,
        "total_minor": order.total_minor,
        "currency": order.currency,
        "ship_by_ms": order.ship_by_ms,
        "created_ms": order.created_ms,
    }


def request_of_order(order: OrderEvent) -> routing.Request:
    """A Request for an order not yet held anywhere (for ``routing.preference``)."""
    lines = tuple(
        routing.Line(f"{order.order_key}|{line.line_id}", line.sku, line.quantity, None) for line in order.lines
    )
    return routing.Request(**{**order_fields(order), "market": order.market, "lines": lines})
