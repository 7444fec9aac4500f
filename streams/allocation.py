"""Per-order allocation: turn an order's lifecycle into stock commands, and line decisions into one outcome.

Pure; the stream keyed by order key owns one ``Allocation`` per order. It asks the SKU-keyed
inventory (streams/inventory.py) to reserve each line, gathers the answers, and decides the order:
- every line reserved: allocated;
- a line short: by the channel's policy (rules are data; default ``reject``):
  - ``reject``: the order is refused and the other lines' holds are released;
  - ``backorder``: keep what is held and wait for stock on the short lines;
  - ``partial``: ship what is held, the short lines are dropped.
  An order the channel already shipped is never rejected: it is partial (the held units left). If
  the shipped status comes after a rejection or expiry, the stock is asked what became of the held
  lines (``_ask_fate``): units that left with the parcel make the order partial (or allocated).
Lifecycle events become commands on every held line: paid -> pay (no more expiry), shipped -> ship,
cancelled -> release, returned -> nothing until quality check passes (``restock``).

Every command carries the hold id ``order_key|line_id``, so the inventory applies each once, and a
command may safely be sent again after a crash.

A line whose SKU is a bundle (streams/bundles.py) is held as one hold per component, hold id
``order_key|line_id#component_sku`` for line quantity x units, and is reserved as one: the line counts
as reserved only when every component is. When one is short, the whole line is short: ``partial``
releases the line's other components (cause ``bundle-short``), ``reject`` releases the order,
``backorder`` keeps them. Lifecycle commands act on every component hold. The expansion is fixed when
the order is first seen and kept in the state (``parts``), so a later change of the rules never
changes what an order holds.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.order import OrderEvent, OrderLine, OrderStatus
from streams.bundles import Bundles
from streams.inventory import Decision, HoldState, order_key_of

#: statuses after the parcel left the warehouse (a return came back from a shipment)
SHIPPED = frozenset({OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.COMPLETED, OrderStatus.RETURNED})
#: answers that mean nothing is held for a hold
UNHELD = frozenset({HoldState.SHORT, HoldState.RELEASED})
#: statuses after which no change of the order moves stock or routes it (a return waits for a quality check)
DONE = frozenset({OrderStatus.DELIVERED, OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.RETURNED})
#: when a stored allocation closed, its first field: ``"closed":ms`` in a full one, ``"settled":ms`` settled
_CLOSED_AT = re.compile(rb'\{"(?:closed|settled)":(\d+)')
_SETTLED = b'{"settled":'


class ShortPolicy(enum.StrEnum):
    REJECT = "reject"
    BACKORDER = "backorder"
    PARTIAL = "partial"


class Outcome(enum.StrEnum):
    PENDING = "pending"  # waiting for line decisions
    ALLOCATED = "allocated"
    PARTIAL = "partial"
    BACKORDERED = "backordered"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # unpaid past the channel's hold time: the stock went back on sale


class Verb(enum.StrEnum):
    RESERVE = "reserve"
    PAY = "pay"
    RELEASE = "release"
    SHIP = "ship"
    RESTOCK = "restock"


@dataclass(frozen=True)
class StockCommand:
    """A command for the inventory stream, keyed by SKU there."""

    verb: Verb
    sku: str
    hold_id: str
    quantity: int = 0
    cause: str = ""
    warehouses: tuple[str, ...] = ()
    expires_at_ms: int | None = None

    @property
    def order_key(self) -> str:
        return order_key_of(self.hold_id)


@dataclass
class Allocation:
    order_key: str
    policy: ShortPolicy = ShortPolicy.REJECT
    #: hold id -> (sku, quantity): one per order line, or one per component of a bundle line
    lines: dict[str, tuple[str, int]] = field(default_factory=dict)
    decisions: dict[str, HoldState] = field(default_factory=dict)
    outcome: Outcome = Outcome.PENDING
    status: OrderStatus | None = None
    #: while unpaid: when the holds are released (order creation + the channel's unpaid hold time)
    expires_at_ms: int | None = None
    #: bundle lines only: the line's own id (``order_key|line_id``) -> its component hold ids; any other
    #: line is the one hold of that id
    parts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: reserved holds: hold id -> the warehouse holding its units (what routing ships from)
    warehouses: dict[str, str] = field(default_factory=dict)
    #: the order's routing stage (streams/routing_state.py), kept here so one write saves both
    routing: dict[str, Any] | None = None
    #: while ``_ask_fate`` waits for the stock's answers: the outcome it reconsiders (rejected or expired)
    asked: Outcome | None = None
    #: the holds ``_ask_fate`` asked about (an answer for another hold is an ordinary first answer)
    asking: tuple[str, ...] = ()
    #: since when the order is ``closed`` (epoch ms, the orders agent's clock), else None
    closed_ms: int | None = None

    @property
    def closed(self) -> bool:
        """Nothing more moves stock or routes this order: it was delivered, completed, cancelled or returned,
        or it holds nothing (refused, expired, cancelled), with every answer in."""
        if self.outcome is Outcome.PENDING or self.asked is not None:
            return False
        return self.status in DONE or self.outcome in (Outcome.REJECTED, Outcome.EXPIRED, Outcome.CANCELLED)

    def mark_closed(self, now_ms: int) -> None:
        """Keep ``closed_ms`` true to ``closed``: set when the order closes, cleared if it opens again."""
        self.closed_ms = (self.closed_ms or now_ms) if self.closed else None

    @staticmethod
    def settled(closed_ms: int) -> bytes:
        """What a closed allocation is replaced with once kept long enough: when it closed, nothing else."""
        return _SETTLED + str(closed_ms).encode() + b"}"

    @staticmethod
    def is_settled(data: bytes) -> bool:
        return data.startswith(_SETTLED)

    @staticmethod
    def closed_at(data: bytes) -> int | None:
        """When a stored allocation (full or settled) closed, without decoding it; None if it is open."""
        found = _CLOSED_AT.match(data)
        return int(found.group(1)) if found else None

    def to_bytes(self) -> bytes:
        """The table value: compact JSON (internal state, not a topic contract)."""
        return orjson.dumps(
            {
                **({"closed": self.closed_ms} if self.closed_ms is not None else {}),  # first: ``closed_at``
                "order_key": self.order_key,
                "policy": self.policy.value,
                "lines": {hold: [sku, qty] for hold, (sku, qty) in self.lines.items()},
                "decisions": {hold: state.value for hold, state in self.decisions.items()},
                "outcome": self.outcome.value,
                "status": self.status.value if self.status else None,
                "expires": self.expires_at_ms,
                **({"parts": {line: list(holds) for line, holds in self.parts.items()}} if self.parts else {}),
                **({"wh": self.warehouses} if self.warehouses else {}),
                **({"rt": self.routing} if self.routing else {}),
                **({"asked": self.asked.value, "asking": list(self.asking)} if self.asked else {}),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Allocation:
        doc: dict[str, Any] = orjson.loads(data)
        return cls(
            order_key=doc["order_key"],
            policy=ShortPolicy(doc["policy"]),
            lines={hold: (sku, qty) for hold, (sku, qty) in doc["lines"].items()},
            decisions={hold: HoldState(state) for hold, state in doc["decisions"].items()},
            outcome=Outcome(doc["outcome"]),
            status=OrderStatus(doc["status"]) if doc["status"] else None,
            expires_at_ms=doc.get("expires"),
            parts={line: tuple(holds) for line, holds in doc.get("parts", {}).items()},  # absent before bundles
            warehouses=dict(doc.get("wh", {})),  # absent before routing
            routing=doc.get("rt"),
            asked=Outcome(doc["asked"]) if doc.get("asked") else None,
            asking=tuple(doc.get("asking", ())),
            closed_ms=doc.get("closed"),
        )

    @staticmethod
    def hold_id(order_key: str, line_id: str) -> str:
        return f"{order_key}|{line_id}"

    def on_order(
        self,
        order: OrderEvent,
        unpaid_hold_ms: int | None = None,
        bundles: Bundles | None = None,
        prefer: tuple[str, ...] = (),
    ) -> list[StockCommand]:
        """A canonical order state (forward-only, as the lifecycle emits it). Returns commands to send.

        An unpaid order's holds expire ``unpaid_hold_ms`` after its creation (see ``expire``). A line
        whose SKU is in ``bundles`` is held as its components, when the order is first seen. ``prefer``:
        the warehouses to hold the lines in, best first (streams/routing.py ``preference``).
        """
        commands: list[StockCommand] = []
        if not self.lines:
            for line in order.lines:
                self._add_line(order.order_key, line, bundles)
            if order.status is OrderStatus.PENDING_PAYMENT and unpaid_hold_ms is not None:
                self.expires_at_ms = order.created_ms + unpaid_hold_ms
            if order.status is not OrderStatus.CANCELLED:
                commands += [
                    StockCommand(Verb.RESERVE, sku, hold, qty, "order", prefer, self.expires_at_ms)
                    for hold, (sku, qty) in self.lines.items()
                ]
        if order.status == self.status:
            return commands
        previous, self.status = self.status, order.status
        if order.status is not OrderStatus.PENDING_PAYMENT:
            self.expires_at_ms = None  # paid, cancelled or beyond: nothing left to expire
        if order.status is OrderStatus.CANCELLED:
            self.outcome = Outcome.CANCELLED
            return commands + self._all(Verb.RELEASE, "cancel")
        if self.outcome in (Outcome.REJECTED, Outcome.EXPIRED) and order.status in SHIPPED and previous not in SHIPPED:
            return commands + self._ask_fate()
        if self.outcome in (Outcome.REJECTED, Outcome.CANCELLED, Outcome.EXPIRED):
            return commands  # every hold is already short or released: a pay or ship has nothing to act on
        paid_sent = previous is OrderStatus.PAID or previous in SHIPPED
        if order.status is OrderStatus.PAID:
            return commands + self._all(Verb.PAY, "paid")
        if order.status in SHIPPED and previous not in SHIPPED:  # delivered/completed after shipped: no news
            return commands + ([] if paid_sent else self._all(Verb.PAY, "paid")) + self._all(Verb.SHIP, "shipped")
        return commands

    def expire(self, now_ms: int) -> list[StockCommand]:
        """Release the holds of an order still unpaid at its deadline, once."""
        if self.expires_at_ms is None or now_ms < self.expires_at_ms:
            return []
        self.expires_at_ms = None
        if self.outcome in (Outcome.REJECTED, Outcome.CANCELLED, Outcome.EXPIRED):
            return []  # its holds are already released
        self.outcome = Outcome.EXPIRED
        return self._all(Verb.RELEASE, "expire")

    def on_operator_cancel(self) -> list[StockCommand]:
        """An operator cancelled the held order (``oms holds cancel``): its stock goes back on sale."""
        if self.outcome in (Outcome.REJECTED, Outcome.CANCELLED, Outcome.EXPIRED) or self.status in SHIPPED:
            return []  # nothing held any more, or the parcel already left
        self.outcome = Outcome.CANCELLED
        self.expires_at_ms = None
        return self._all(Verb.RELEASE, "operator-cancel")

    def on_quality_check(self, passed: bool) -> list[StockCommand]:
        """A returned parcel was checked: only units that passed go back on sale."""
        return self._all(Verb.RESTOCK, "return-qc") if passed else []

    def on_decision(self, decision: Decision) -> list[StockCommand]:
        """The inventory's answer for one hold. Decides the order once every hold has one.

        An order line is short when any of its holds is (a bundle is reserved as one).
        """
        if decision.hold_id not in self.lines or decision.hold_id in self.decisions:
            return []  # not ours, or a duplicate answer
        if decision.hold_id in self.asking and decision.state is HoldState.RESERVED:
            return []  # an old answer: the refusal's release reached the stock before the question
        self.decisions[decision.hold_id] = decision.state
        if decision.warehouse and decision.state not in UNHELD:
            self.warehouses[decision.hold_id] = decision.warehouse
        if self.outcome is not Outcome.PENDING or len(self.decisions) < len(self.lines):
            return []
        order_lines = self.order_lines()
        short = [line for line, holds in order_lines.items() if any(self.decisions[h] in UNHELD for h in holds)]
        if self.asked is not None:
            refused, self.asked, self.asking = self.asked, None, ()
            left = any(state not in UNHELD for state in self.decisions.values())  # shipped (or returned)
            self.outcome = Outcome.ALLOCATED if not short else Outcome.PARTIAL if left else refused
            return []  # the refusal's releases went out already
        if not short:
            self.outcome = Outcome.ALLOCATED
            return []
        if self.policy is ShortPolicy.BACKORDER:
            self.outcome = Outcome.BACKORDERED  # a short bundle keeps its held components: it waits whole
            return []
        if self.policy is ShortPolicy.PARTIAL and len(short) < len(order_lines):
            self.outcome = Outcome.PARTIAL
            if self.status in SHIPPED:
                return []  # the parcel left with what was held: a release now would be refused
            return self._drop([h for line in short for h in order_lines[line] if self.decisions[h] not in UNHELD])
        if self.status in SHIPPED and len(short) < len(order_lines):
            # The channel says the parcel already left: the held lines shipped (a release now would
            # be refused), so the order is what it physically is, partial. The short lines left from
            # stock we did not count: a drift for the stock alerts, not something to undo here.
            self.outcome = Outcome.PARTIAL
            return []
        self.outcome = Outcome.REJECTED
        return self._all(Verb.RELEASE, "rejected")

    def _ask_fate(self) -> list[StockCommand]:
        """A refused or expired order the channel says it shipped: ask the stock what its held lines became.

        The refusal or expiry released them, but the channel's ship may have reached the stock first:
        a worker that crashed had sent it, and its successor, re-reading order-changes.v1 and reservations.v1
        in another interleaving (and running the expiry timer before its backlog), decided the order
        before it saw the paid or shipped status. A reserve of a known hold takes nothing and answers
        its state; the order is decided again on those answers: partial (or allocated) if units left
        with the parcel, as it physically is, else refused or expired as before.
        """
        # every hold not known to hold nothing: also those whose first answer is still on its way
        held = [hold for hold in sorted(self.lines) if self.decisions.get(hold) not in UNHELD]
        if not held:
            return []
        self.asked, self.asking, self.outcome = self.outcome, tuple(held), Outcome.PENDING
        for hold in held:
            self.decisions.pop(hold, None)
            self.warehouses.pop(hold, None)
        cause = "shipped-after-refusal"
        return [StockCommand(Verb.RESERVE, self.lines[h][0], h, self.lines[h][1], cause) for h in held]

    def order_lines(self) -> dict[str, tuple[str, ...]]:
        """Order line (``order_key|line_id``) -> the holds it is made of: itself, or a bundle's components."""
        in_bundles = {hold for holds in self.parts.values() for hold in holds}
        lines = {hold: (hold,) for hold in self.lines if hold not in in_bundles}
        return {**lines, **self.parts}

    def _add_line(self, order_key: str, line: OrderLine, bundles: Bundles | None) -> None:
        hold = self.hold_id(order_key, line.line_id)
        components = bundles.get(line.sku) if bundles else None
        if not components:
            self.lines[hold] = (line.sku, line.quantity)
            return
        parts = tuple(f"{hold}#{c.sku}" for c in components)
        self.lines.update({part: (c.sku, line.quantity * c.units) for part, c in zip(parts, components, strict=True)})
        self.parts[hold] = parts

    def _drop(self, holds: list[str]) -> list[StockCommand]:
        """Release the held components of bundle lines that are short: a bundle is never sent incomplete."""
        for hold in holds:
            self.decisions[hold] = HoldState.RELEASED
        return self._all(Verb.RELEASE, "bundle-short", holds)

    def _all(self, verb: Verb, cause: str, holds: Iterable[str] | None = None) -> list[StockCommand]:
        """``verb`` on every hold of the order (every component of a bundle), or on ``holds``."""
        chosen = self.lines if holds is None else holds
        return [StockCommand(verb, self.lines[hold][0], hold, self.lines[hold][1], cause) for hold in sorted(chosen)]
