"""Stock per SKU and warehouse, and the holds placed on it: the oversell-proof core. Pure.

One ``SkuStock`` holds everything about one SKU, so the stream keyed by SKU owns it whole: every
decision about a unit of that SKU is made in one place, in order, whatever channel sold it.

Every command names what it acts on with a stable id (the hold id is ``order_key|line_id``, an
adjustment has its own id), so applying it twice changes nothing, and a command that arrives before
the one it follows leaves a mark that the later one respects:
- reserve:  on the first warehouse (in the caller's preference order) with enough available units;
            otherwise short (pre-order SKUs may go below zero down to their cap). The decision is
            remembered, so a duplicate reserve gets the same answer; the reserve of a hold that was
            released first is answered "released" and takes nothing.
- pay:      the hold no longer expires.
- release:  cancel, expiry or a rejected order gives the units back, once. A release that arrives
            before its reserve marks the hold released, and the reserve is then refused.
- ship:     the units leave on hand, exactly once (a ship before its reserve waits for it).
- restock:  a return that passed quality check puts them back, once, and only after shipping (a
            restock before its ship waits for it).
- snapshot: an absolute on-hand count from a WMS or POS, applied only if its version is newer.
- delta:    a receipt, damage or count correction, applied once per adjustment id.

A hold that holds no units any more (short, released, shipped, returned) still answers for its id,
but it does not stay in the SKU's value: ``retire`` takes it out after each command, the agent keeps
it in a table of its own, and ``past`` finds it again when a command names it. So the value a step
rewrites is the size of what is held now, not of every order the SKU ever saw: the 100 x 1,000 flash
sale with ten times the demand retired 733,604 holds, some 7,300 per SKU, which the value would
otherwise have carried and rewritten whole on every step.

Invariant (tests/unit/test_inventory.py checks it after every step): per warehouse, ``reserved`` is
the sum of the held units, and a reservation is granted only while ``reserved <= on_hand + cap``. A
snapshot or damage can still push on hand below what is held (units lost in the warehouse): then
available is negative, nothing more is granted, and ``short_by`` says how many units to find.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

#: in a reserve's warehouse preference, after the ranked ones: then any other warehouse with the units,
#: except those named after it as ``!warehouse`` (nodes that must not ship this order)
ANY_WAREHOUSE = "*"
EXCLUDED = "!"


class HoldState(enum.StrEnum):
    RESERVED = "reserved"
    SHORT = "short"  # refused: not enough stock
    RELEASED = "released"
    SHIPPED = "shipped"
    RETURNED = "returned"


@dataclass
class Hold:
    hold_id: str
    state: HoldState
    quantity: int
    warehouse: str | None = None
    expires_at_ms: int | None = None
    paid: bool = False

    def fields(self) -> list[Any]:
        """Everything but the id (the key it is stored under), as a JSON array."""
        return [self.state.value, self.quantity, self.warehouse, self.expires_at_ms, self.paid]

    @classmethod
    def of(cls, hold_id: str, fields: list[Any]) -> Hold:
        state, quantity, warehouse, expires, paid = fields
        return cls(hold_id, HoldState(state), quantity, warehouse, expires, paid)


class PastHolds(Protocol):
    """Where one SKU's retired holds are kept between commands (``SkuStock.retire``)."""

    def get(self, hold_id: str) -> Hold | None: ...


@dataclass
class Row:
    """One warehouse's count of one SKU."""

    on_hand: int = 0
    reserved: int = 0
    snapshot_version: int = -1

    def available(self, cap: int = 0) -> int:
        return self.on_hand + cap - self.reserved


@dataclass(frozen=True)
class Movement:
    """One change of a row, for the inventory ledger: before, after and why."""

    sku: str
    warehouse: str
    cause: str
    ref: str
    on_hand: tuple[int, int]
    reserved: tuple[int, int]


@dataclass(frozen=True)
class Decision:
    """What a reserve decided. ``warehouse`` is None when short."""

    hold_id: str
    sku: str
    quantity: int
    state: HoldState
    warehouse: str | None
    available: int

    @property
    def order_key(self) -> str:
        return order_key_of(self.hold_id)


def order_key_of(hold_id: str) -> str:
    """The order a hold belongs to: hold ids are ``order_key|line_id`` (a bundle's: ``...#component``)."""
    return hold_id.rsplit("|", 1)[0]


@dataclass
class SkuStock:
    sku: str
    preorder_cap: int = 0
    rows: dict[str, Row] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    adjustments: set[str] = field(default_factory=set)
    #: commands that arrived before they could apply (pay/ship before the reserve, restock before the
    #: ship): applied the moment they can be, so delivery order never loses one
    early: dict[str, set[str]] = field(default_factory=dict)
    #: the retired holds (not part of the value); None: every hold is in ``holds``
    past: PastHolds | None = field(default=None, compare=False, repr=False)

    def to_bytes(self) -> bytes:
        """The table value: compact JSON (internal state, not a topic contract)."""
        return orjson.dumps(
            {
                "sku": self.sku,
                "cap": self.preorder_cap,
                "rows": {w: [r.on_hand, r.reserved, r.snapshot_version] for w, r in self.rows.items()},
                "holds": {h.hold_id: h.fields() for h in self.holds.values()},
                "adjustments": sorted(self.adjustments),
                "early": {k: sorted(v) for k, v in self.early.items()},
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SkuStock:
        doc: dict[str, Any] = orjson.loads(data)
        return cls(
            sku=doc["sku"],
            preorder_cap=doc["cap"],
            rows={w: Row(*values) for w, values in doc["rows"].items()},
            holds={hold_id: Hold.of(hold_id, fields) for hold_id, fields in doc["holds"].items()},
            adjustments=set(doc["adjustments"]),
            early={k: set(v) for k, v in doc["early"].items()},
        )

    def row(self, warehouse: str) -> Row:
        return self.rows.setdefault(warehouse, Row())

    def available(self, warehouses: tuple[str, ...] | None = None) -> int:
        names = self.rows if warehouses is None else warehouses
        return sum(max(0, self.rows[w].available()) for w in names if w in self.rows)

    def short_by(self, warehouse: str) -> int:
        """Units held beyond what the warehouse has (after a loss); 0 when all holds are covered."""
        row = self.rows.get(warehouse)
        return max(0, -row.available(self.preorder_cap)) if row else 0

    def retire(self) -> list[Hold]:
        """Take the holds that hold no units out of ``holds`` and return them, to keep in ``past``.

        Call it after a command, before the value is stored. A retired hold a later command names is
        found in ``past`` and comes back into ``holds`` for that command (and is retired again).
        """
        done = [hold for hold in self.holds.values() if hold.state is not HoldState.RESERVED]
        for hold in done:
            del self.holds[hold.hold_id]
        return done

    def _hold(self, hold_id: str) -> Hold | None:
        hold = self.holds.get(hold_id)
        if hold is None and self.past is not None:
            hold = self.past.get(hold_id)
            if hold is not None:
                self.holds[hold_id] = hold
        return hold

    # -- commands: each returns the ledger movements it caused (none when it was a no-op) --

    def reserve(
        self, hold_id: str, quantity: int, warehouses: tuple[str, ...], expires_at_ms: int | None = None
    ) -> tuple[Decision, list[Movement]]:
        if quantity <= 0:
            raise ValueError(f"{hold_id}: quantity must be positive, got {quantity}")
        known = self._hold(hold_id)
        if known is not None:  # a duplicate, or the reserve of a hold released before it arrived
            return self._decision(known), []
        if not warehouses or ANY_WAREHOUSE in warehouses:
            # no preference, or "then any other": the other warehouses, most available units first
            cut = warehouses.index(ANY_WAREHOUSE) if warehouses else 0
            ranked, excluded = warehouses[:cut], {w[1:] for w in warehouses[cut + 1 :] if w.startswith(EXCLUDED)}
            others = sorted(
                (w for w in self.rows if w not in ranked and w not in excluded),
                key=lambda w: (-self.rows[w].available(self.preorder_cap), w),
            )
            warehouses = (*ranked, *others)
        for warehouse in warehouses:
            row = self.rows.get(warehouse)
            if row is not None and row.available(self.preorder_cap) >= quantity:
                waiting = self.early.pop(hold_id, set())
                paid = "pay" in waiting
                hold = Hold(hold_id, HoldState.RESERVED, quantity, warehouse, None if paid else expires_at_ms, paid)
                self.holds[hold_id] = hold
                moves = [self._move(warehouse, "reserve", hold_id, reserved=quantity)]
                if "ship" in waiting:
                    moves += self._ship(hold, waiting)
                return self._decision(hold), moves
        self.early.pop(hold_id, None)  # nothing was held: a waiting pay or ship has nothing to act on
        hold = Hold(hold_id, HoldState.SHORT, quantity)
        self.holds[hold_id] = hold
        return self._decision(hold), []

    def pay(self, hold_id: str) -> list[Movement]:
        hold = self._hold(hold_id)
        if hold is None:  # paid before reserved: remember, so the reserve does not expire
            self.early.setdefault(hold_id, set()).add("pay")
            return []
        if hold.state is HoldState.RESERVED:  # a short or released hold has nothing to keep
            hold.paid = True
            hold.expires_at_ms = None
        return []

    def release(self, hold_id: str, cause: str = "release") -> list[Movement]:
        hold = self._hold(hold_id)
        if hold is None:  # released before reserved: the reserve, when it comes, is refused
            self.holds[hold_id] = Hold(hold_id, HoldState.RELEASED, 0)
            return []
        if hold.state is not HoldState.RESERVED or hold.warehouse is None:
            return []
        hold.state = HoldState.RELEASED
        return [self._move(hold.warehouse, cause, hold_id, reserved=-hold.quantity)]

    def ship(self, hold_id: str) -> list[Movement]:
        hold = self._hold(hold_id)
        if hold is None:  # shipped before reserved: ship as soon as the reserve lands
            self.early.setdefault(hold_id, set()).add("ship")
            return []
        if hold.state is not HoldState.RESERVED:
            return []  # short, released or already shipped: nothing leaves twice
        return self._ship(hold, self.early.pop(hold_id, set()))

    def restock(self, hold_id: str) -> list[Movement]:
        """A return that passed quality check: once, and only for units that left."""
        hold = self._hold(hold_id)
        if hold is None or hold.state is HoldState.RESERVED:  # before its ship: apply when it ships
            self.early.setdefault(hold_id, set()).add("restock")
            return []
        if hold.state is not HoldState.SHIPPED or hold.warehouse is None:
            return []
        hold.state = HoldState.RETURNED
        return [self._move(hold.warehouse, "restock", hold_id, on_hand=hold.quantity)]

    def _ship(self, hold: Hold, waiting: set[str]) -> list[Movement]:
        assert hold.warehouse is not None
        hold.state = HoldState.SHIPPED
        moves = [self._move(hold.warehouse, "ship", hold.hold_id, on_hand=-hold.quantity, reserved=-hold.quantity)]
        if "restock" in waiting:
            moves += self.restock(hold.hold_id)
        return moves

    def expire(self, now_ms: int) -> list[Movement]:
        due = [h.hold_id for h in self.holds.values() if h.state is HoldState.RESERVED and _expired(h, now_ms)]
        return [move for hold_id in sorted(due) for move in self.release(hold_id, "expire")]

    def snapshot(self, adjustment_id: str, warehouse: str, on_hand: int, version: int) -> list[Movement]:
        row = self.row(warehouse)
        if version <= row.snapshot_version:
            return []  # an older or repeated count never overwrites a newer one
        row.snapshot_version = version  # the version is what makes a count apply once: its id is not kept
        return [self._move(warehouse, "snapshot", adjustment_id, on_hand=on_hand - row.on_hand)]

    def delta(self, adjustment_id: str, warehouse: str, delta: int, cause: str) -> list[Movement]:
        if adjustment_id in self.adjustments:
            return []
        self.adjustments.add(adjustment_id)
        return [self._move(warehouse, cause, adjustment_id, on_hand=delta)]

    # -- internals --

    def _move(self, warehouse: str, cause: str, ref: str, on_hand: int = 0, reserved: int = 0) -> Movement:
        row = self.row(warehouse)
        before = (row.on_hand, row.reserved)
        row.on_hand += on_hand
        row.reserved += reserved
        return Movement(self.sku, warehouse, cause, ref, (before[0], row.on_hand), (before[1], row.reserved))

    def _decision(self, hold: Hold) -> Decision:
        available = self.rows[hold.warehouse].available(self.preorder_cap) if hold.warehouse else self.available()
        return Decision(hold.hold_id, self.sku, hold.quantity, hold.state, hold.warehouse, available)


def _expired(hold: Hold, now_ms: int) -> bool:
    return not hold.paid and hold.expires_at_ms is not None and hold.expires_at_ms <= now_ms
