"""Where an allocated order ships from and with whom, or why it waits for an operator. Pure.

Two moments:

- ``preference`` (when the order is first seen, before any stock is held): the market's nodes that
  serve the postcode, best first by zone distance, then whether today's cut-off still meets the
  marketplace ship-by, then the cheapest carrier. The allocation sends it with every reserve, so the
  inventory holds each line in the best node that has the units and an order's lines land together
  in one node whenever one node has them all (then ``*``: a warehouse the rules do not know; never
  another market's node, nor one that does not serve the address: those are listed as ``!node``).
- ``route`` (once the order is allocated and paid): the stock is held, so a node is never chosen
  for units it does not hold. Lines held in one node ship from it; lines held in several nodes are
  a split, shipped in parts or held per the market's ``split`` policy. Each shipment gets the node's
  next handover slot within its capacity per hour and per day and its cut-off (working days and
  public holidays), then the carrier: coverage of the region, the node's zone, COD support and cap,
  weight, the market's delivery promise, then cost. Every node and carrier not chosen is listed with
  the reason it was passed over.

Holds come first: an invalid or unserved postcode, a blacklisted postcode or city, COD above the
market's cap or its review threshold. A held order waits for ``oms holds release`` (risk holds only:
an address no node serves cannot be released into a shipment) or ``oms holds cancel``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import orjson

from schemas.order import CURRENCY_EXPONENT, Market
from streams.inventory import ANY_WAREHOUSE, EXCLUDED
from streams.routing_rules import WEEKDAYS, Carrier, MarketRules, Node, Rules

#: hold codes an operator may waive (risk); any other stays until its cause is gone (the order or the rules
#: change; a release then decides again)
RELEASABLE = frozenset({"cod_review", "blacklisted_postcode", "blacklisted_city", "split_needed"})
_DAY_MS = 86_400_000
_SEARCH_DAYS = 21


@dataclass(frozen=True)
class Line:
    hold_id: str
    sku: str
    quantity: int
    warehouse: str | None  # where its units are held; None: not held (a dropped line of a partial order)


@dataclass(frozen=True)
class Request:
    """What routing needs of an order: kept in every decision, so a what-if replay can route it again."""

    order_key: str
    tenant: str
    channel: str
    market: Market
    postcode: str | None
    city: str | None
    is_cod: bool
    total_minor: int
    currency: str
    ship_by_ms: int | None
    created_ms: int
    lines: tuple[Line, ...]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> Request:
        doc: dict[str, Any] = orjson.loads(data)
        doc["market"] = Market(doc["market"])
        doc["lines"] = tuple(Line(**line) for line in doc["lines"])
        return cls(**doc)


@dataclass(frozen=True)
class HoldReason:
    code: str
    detail: str


@dataclass(frozen=True)
class Passed:
    """A node or carrier that was not chosen, and why."""

    kind: str  # node | carrier
    id: str
    reason: str


@dataclass(frozen=True)
class Shipment:
    node: str
    carrier: str
    service: str
    holds: tuple[str, ...]
    weight_g: int
    cost_minor: int
    handover_ms: int
    delivery_by_ms: int
    meets_ship_by: bool
    slot_day: str  # the node's local date whose capacity it takes
    slot_hour: int  # the local hour, on the day it was routed; -1 on a later day


@dataclass(frozen=True)
class Decision:
    order_key: str
    outcome: str  # routed | held
    rules: str
    decided_ms: int
    shipments: tuple[Shipment, ...] = ()
    holds: tuple[HoldReason, ...] = ()
    passed_over: tuple[Passed, ...] = ()
    released_by: str | None = None

    @property
    def split(self) -> bool:
        return len(self.shipments) > 1

    @property
    def cost_minor(self) -> int:
        return sum(s.cost_minor for s in self.shipments)

    @property
    def misses_ship_by(self) -> bool:
        return any(not s.meets_ship_by for s in self.shipments)

    def summary(self) -> str:
        """One line a person reads: what was decided and why."""
        if self.outcome != "routed":
            return "held: " + "; ".join(f"{h.code} ({h.detail})" for h in self.holds)
        parts = [
            f"{s.node} -> {s.carrier} ({s.service}), handover {_iso(s.handover_ms)}"
            + ("" if s.meets_ship_by else " AFTER SHIP-BY")
            for s in self.shipments
        ]
        return ("split: " if self.split else "") + "; ".join(parts)


class Share(NamedTuple):
    """This partition's slice of every node's capacity: ``partition`` of ``partitions``.

    A capacity C splits into C // N per partition, and the C % N units left over go to different
    partitions on different days (and hours), so the N slices add up to C exactly, every day, and a
    node smaller than N still ships from every partition on some days.
    """

    partition: int = 0
    partitions: int = 1

    def of(self, capacity: int, turn: int) -> int:
        """The slice of ``capacity`` for the day or hour numbered ``turn``."""
        base, left = divmod(capacity, self.partitions)
        return base + (1 if (self.partition + turn) % self.partitions < left else 0)


#: the whole capacity: one partition (replays, tests, a single-partition deployment)
WHOLE = Share()


@dataclass
class Workload:
    """Orders a node has taken per local day and per local hour, in this partition's share."""

    day: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> {YYYY-MM-DD: n}
    hour: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> {YYYY-MM-DDTHH: n}

    def used_day(self, node: str, day: str) -> int:
        return self.day.get(node, {}).get(day, 0)

    def used_hour(self, node: str, hour: str) -> int:
        return self.hour.get(node, {}).get(hour, 0)

    def take(self, shipment: Shipment) -> None:
        days = self.day.setdefault(shipment.node, {})
        days[shipment.slot_day] = days.get(shipment.slot_day, 0) + 1
        if shipment.slot_hour >= 0:
            hours = self.hour.setdefault(shipment.node, {})
            key = f"{shipment.slot_day}T{shipment.slot_hour:02d}"
            hours[key] = hours.get(key, 0) + 1

    def forget_before(self, day: str) -> None:
        """Drop counts of days before ``day`` (ISO dates sort as text)."""
        for counts in (self.day, self.hour):
            for node in list(counts):
                counts[node] = {k: v for k, v in counts[node].items() if k[:10] >= day}

    def to_bytes(self) -> bytes:
        return orjson.dumps({"day": self.day, "hour": self.hour})

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Workload:
        if not data:
            return cls()
        doc = orjson.loads(data)
        return cls(day=doc["day"], hour=doc["hour"])


# ------------------------------------------------------------------------------------------- holds


def hold_reasons(request: Request, market: MarketRules, released: bool = False) -> list[HoldReason]:
    """Why this order must wait for an operator. ``released``: an operator let the risk holds go."""
    reasons: list[HoldReason] = []
    code = request.postcode or ""
    total = money(request.total_minor, request.currency)
    if not market.valid_postcode(request.postcode):
        reasons.append(HoldReason("postcode_invalid", f"{code!r} is not a {request.market.value} postcode"))
    elif market.region_of(code) is None:
        reasons.append(HoldReason("postcode_not_served", f"{code} is in no region of the rules"))
    if not released:
        if code and code in market.holds.blacklist_postcodes:
            reasons.append(HoldReason("blacklisted_postcode", f"{code} is on the blacklist"))
        city = (request.city or "").strip().casefold()
        if city and city in {c.casefold() for c in market.holds.blacklist_cities}:
            reasons.append(HoldReason("blacklisted_city", f"{request.city} is on the blacklist"))
        review = market.holds.cod_review_above_minor
        if request.is_cod and review is not None and request.total_minor > review:
            reasons.append(
                HoldReason(
                    "cod_review",
                    f"COD {total} above the review line {money(review, request.currency)}",
                )
            )
    if request.is_cod and request.total_minor > market.cod_cap_minor:
        reasons.append(
            HoldReason(
                "cod_over_cap",
                f"COD {total} above the market cap {money(market.cod_cap_minor, request.currency)}",
            )
        )
    return reasons


# -------------------------------------------------------------------------------------- preference


def preference(request: Request, rules: Rules, now_ms: int) -> tuple[str, ...]:
    """Nodes to hold this order's stock in, best first, then ``*`` and ``!node`` for every other node.

    Only nodes of the order's market that serve its postcode are ranked; after them any warehouse the
    rules do not know (stock counted before its node was added, say), never another market's node or
    one that does not serve the address. An unknown market or an unserved postcode ranks none (the
    order is held at routing, with its stock kept).
    """
    market = rules.markets.get(request.market)
    region = market.region_of(request.postcode) if market else None
    if market is None or region is None:
        return (ANY_WAREHOUSE, *(EXCLUDED + n.id for n in rules.nodes if n.market is not request.market))
    weight = _weight(request.lines, rules, request.market)
    ranked = []
    for node in rules.nodes_in(request.market):
        zone = node.zones.get(region.name)
        if zone is None:
            continue
        handover = _first_handover(node, market, now_ms)
        late = request.ship_by_ms is not None and handover > request.ship_by_ms
        carriers = [
            c
            for c in rules.carriers_in(request.market)
            if not _carrier_problem(c, request, region.name, zone, weight, market)
        ]
        cost = min((_cost(c, weight, request.is_cod) for c in carriers), default=math.inf)
        ranked.append((zone, late, cost, node.id))
    best = tuple(node for *_, node in sorted(ranked))
    return (*best, ANY_WAREHOUSE, *(EXCLUDED + n.id for n in rules.nodes if n.id not in best))


# ------------------------------------------------------------------------------------------- route


def route(
    request: Request,
    rules: Rules,
    workload: Workload,
    now_ms: int,
    capacity_share: Share = WHOLE,
    released_by: str | None = None,
) -> Decision:
    """The routing decision for an allocated order. Does not change ``workload``: apply ``take``.

    Never raises: a failure (a bug of ours, rules nobody foresaw) holds this one order with the error as
    its reason, so the agent goes on with the others instead of failing on it again and again.
    """
    try:
        return _route(request, rules, workload, now_ms, capacity_share, released_by)
    except Exception as exc:
        why = (
            f"routing failed: {type(exc).__name__}: {exc}; the order is held so that the others keep flowing: "
            "report it, fix the rules or the code, then release the order"
        )
        decided = _decision_base(request, rules, now_ms, released_by)
        return Decision(**decided, outcome="held", holds=(HoldReason("routing_error", why),))


def _route(
    request: Request,
    rules: Rules,
    workload: Workload,
    now_ms: int,
    capacity_share: Share,
    released_by: str | None,
) -> Decision:
    decided = _decision_base(request, rules, now_ms, released_by)
    market = rules.markets.get(request.market)
    if market is None:
        why = HoldReason("market_not_configured", f"the rules have no [market.{request.market.value}]")
        return Decision(**decided, outcome="held", holds=(why,))
    holds = hold_reasons(request, market, released=released_by is not None)
    region = market.region_of(request.postcode)
    held_lines = [line for line in request.lines if line.warehouse]
    if not held_lines:
        holds.append(HoldReason("nothing_held", "no line of the order holds stock"))
    groups: dict[str, list[Line]] = {}
    for line in held_lines:
        groups.setdefault(str(line.warehouse), []).append(line)
    passed = list(_passed_nodes(request, rules, region.name if region else None, groups))
    if region is None or holds:
        return Decision(**decided, outcome="held", holds=tuple(holds), passed_over=tuple(passed))
    for warehouse in groups:
        node = rules.node(warehouse)
        if node is None or node.market is not request.market:
            holds.append(
                HoldReason(
                    "stock_at_unknown_node",
                    f"units are held at {warehouse}, not a {request.market.value} node of the rules",
                )
            )
        elif region.name not in node.zones:
            holds.append(
                HoldReason("node_does_not_serve", f"units are held at {warehouse}, which does not serve {region.name}")
            )
    if len(groups) > 1 and market.split == "hold" and released_by is None:
        where = ", ".join(f"{w} ({len(lines)} line(s))" for w, lines in groups.items())
        holds.append(
            HoldReason(
                "split_needed", f"no one node holds the whole order: {where}; the market's split policy holds it"
            )
        )
    if holds:
        return Decision(**decided, outcome="held", holds=tuple(holds), passed_over=tuple(passed))
    shipments: list[Shipment] = []
    taken = Workload(
        day={k: dict(v) for k, v in workload.day.items()}, hour={k: dict(v) for k, v in workload.hour.items()}
    )
    for warehouse, lines in sorted(groups.items()):
        node = rules.node(warehouse)
        assert node is not None
        shipment, carriers_passed = _ship(
            request, rules, market, node, region.name, lines, taken, now_ms, capacity_share
        )
        passed += carriers_passed
        if isinstance(shipment, HoldReason):
            holds.append(shipment)
            continue
        taken.take(shipment)
        shipments.append(shipment)
    if holds:
        return Decision(**decided, outcome="held", holds=tuple(holds), passed_over=tuple(passed))
    return Decision(**decided, outcome="routed", shipments=tuple(shipments), passed_over=tuple(passed))


def _decision_base(request: Request, rules: Rules, now_ms: int, released_by: str | None) -> dict[str, Any]:
    return {"order_key": request.order_key, "rules": rules.label, "decided_ms": now_ms, "released_by": released_by}


def _passed_nodes(
    request: Request, rules: Rules, region: str | None, groups: dict[str, list[Line]]
) -> Iterable[Passed]:
    """Every node of the market not shipping this order, nearest first, with the reason."""
    total = len([line for line in request.lines if line.warehouse])
    others = [node for node in rules.nodes_in(request.market) if node.id not in groups]
    far = 1 << 30
    for node in sorted(others, key=lambda n: (n.zones.get(region, far) if region else far, n.id)):
        if region is not None and region not in node.zones:
            yield Passed("node", node.id, f"does not serve {region}")
        else:
            zone = f" (zone {node.zones[region]})" if region is not None else ""
            yield Passed("node", node.id, f"holds none of this order's {total} held line(s){zone}")


def _ship(
    request: Request,
    rules: Rules,
    market: MarketRules,
    node: Node,
    region: str,
    lines: list[Line],
    workload: Workload,
    now_ms: int,
    share: Share,
) -> tuple[Shipment | HoldReason, list[Passed]]:
    """The cheapest carrier from ``node`` and its first slot with room, or why not (no carrier, no room)."""
    weight = _weight(lines, rules, request.market)
    zone = node.zones[region]
    passed: list[Passed] = []
    eligible: list[tuple[int, int, str, Carrier]] = []
    for carrier in rules.carriers_in(request.market):
        problem = _carrier_problem(carrier, request, region, zone, weight, market)
        if problem:
            passed.append(Passed("carrier", carrier.id, f"from {node.id}: {problem}"))
        else:
            eligible.append((_cost(carrier, weight, request.is_cod), carrier.service_days, carrier.id, carrier))
    if not eligible:
        return HoldReason("no_carrier", f"no carrier can take the parcel from {node.id}: see passed_over"), passed
    eligible.sort(key=lambda e: e[:3])
    cost, days, _, chosen = eligible[0]
    for other_cost, other_days, other_id, _c in eligible[1:]:
        if other_cost > cost:
            why = f"costs {money(other_cost - cost, request.currency)} more"
        elif other_days > days:
            why = f"same cost, {other_days} working day(s) against {days}"
        else:
            why = "same cost and days; the first by id was taken"
        passed.append(Passed("carrier", other_id, f"from {node.id}: {why}"))
    slot = _slot(node, market, workload, now_ms, share)
    if slot is None:
        days = _SEARCH_DAYS * 4
        return HoldReason(
            "no_capacity",
            f"{node.id} has no working day with room in the next {days} days ({node.capacity_per_day} orders a day, "
            f"work days {', '.join(node.work_days) or 'none'}): raise its capacity_per_day or work_days in the "
            "routing rules, or move the stock, then release the order",
        ), passed
    slot_day, slot_hour, handover = slot
    delivery = _add_working_days(handover, chosen.service_days, market)
    return (
        Shipment(
            node=node.id,
            carrier=chosen.id,
            service=chosen.service,
            holds=tuple(line.hold_id for line in lines),
            weight_g=weight,
            cost_minor=cost,
            handover_ms=handover,
            delivery_by_ms=delivery,
            meets_ship_by=request.ship_by_ms is None or handover <= request.ship_by_ms,
            slot_day=slot_day,
            slot_hour=slot_hour,
        ),
        passed,
    )


def _carrier_problem(
    carrier: Carrier, request: Request, region: str, zone: int, weight: int, market: MarketRules
) -> str | None:
    if not carrier.serves(region):
        return f"does not serve {region}"
    if carrier.max_zone is not None and zone > carrier.max_zone:
        return f"picks up only within zone {carrier.max_zone} of the node; this order is zone {zone}"
    if request.is_cod and not carrier.cod:
        return "does not collect cash on delivery"
    if request.is_cod and carrier.cod_cap_minor is not None and request.total_minor > carrier.cod_cap_minor:
        cap, total = money(carrier.cod_cap_minor, request.currency), money(request.total_minor, request.currency)
        return f"COD cap {cap} below the order's {total}"
    if weight > carrier.max_weight_g:
        return f"parcel {weight} g above its {carrier.max_weight_g} g limit"
    if carrier.service_days > market.max_delivery_days:
        return f"{carrier.service_days} working days, slower than the market's {market.max_delivery_days}-day promise"
    return None


def _cost(carrier: Carrier, weight_g: int, cod: bool) -> int:
    extra_kg = max(0, math.ceil(weight_g / 1000) - 1)
    return carrier.cost.base_minor + extra_kg * carrier.cost.per_kg_minor + (carrier.cost.cod_fee_minor if cod else 0)


def money(minor: int, currency: str) -> str:
    exponent = CURRENCY_EXPONENT.get(currency, 2)
    return f"{currency} {minor / 10**exponent:,.{exponent}f}"


def _weight(lines: Iterable[Line], rules: Rules, market: Market) -> int:
    return sum(line.quantity * rules.weight_g(line.sku, market) for line in lines)


# ------------------------------------------------------------------------------------ time and slots


def _local(now_ms: int, market: MarketRules) -> dt.datetime:
    return dt.datetime.fromtimestamp(now_ms / 1000, market.tz)


def _ms(day: dt.date, at: dt.time, market: MarketRules) -> int:
    return int(dt.datetime.combine(day, at, market.tz).timestamp() * 1000)


def _working(day: dt.date, node: Node, market: MarketRules) -> bool:
    return WEEKDAYS[day.weekday()] in node.work_days and day not in market.holidays


def _first_handover(node: Node, market: MarketRules, now_ms: int) -> int:
    """The next cut-off this node can still make, ignoring capacity (for the preference)."""
    local = _local(now_ms, market)
    day = local.date()
    for i in range(_SEARCH_DAYS):
        if _working(day, node, market) and (i > 0 or local.time() < node.cutoff_time):
            return _ms(day, node.cutoff_time, market)
        day += dt.timedelta(days=1)
    return now_ms + _SEARCH_DAYS * _DAY_MS


def _slot(
    node: Node, market: MarketRules, workload: Workload, now_ms: int, share: Share
) -> tuple[str, int, int] | None:
    """(local day, local hour or -1, handover ms): the first slot with room in this partition's share.
    None when there is none in ``_SEARCH_DAYS * 4`` days (a flash sale can fill a small store's months).

    Today counts only before the cut-off, and an hour that is full moves the order to the next hour
    with room before the cut-off; a later working day has all of its day capacity.
    """
    local = _local(now_ms, market)
    day = local.date()
    for i in range(_SEARCH_DAYS * 4):
        key = day.isoformat()
        per_day = share.of(node.capacity_per_day, day.toordinal())
        if _working(day, node, market) and workload.used_day(node.id, key) < per_day:
            if i > 0:
                return key, -1, _ms(day, node.cutoff_time, market)
            for hour in range(local.hour, node.cutoff_time.hour + (1 if node.cutoff_time.minute else 0)):
                if hour == local.hour and local.time() >= node.cutoff_time:
                    break
                per_hour = share.of(node.capacity_per_hour, day.toordinal() * 24 + hour)
                if workload.used_hour(node.id, f"{key}T{hour:02d}") < per_hour:
                    return key, hour, _ms(day, node.cutoff_time, market)
        day += dt.timedelta(days=1)
    return None


def _add_working_days(start_ms: int, days: int, market: MarketRules) -> int:
    """Delivery by 21:00 local after ``days`` working days (carriers deliver Monday to Saturday)."""
    day = _local(start_ms, market).date()
    added = 0
    while added < days:
        day += dt.timedelta(days=1)
        if WEEKDAYS[day.weekday()] != "sun" and day not in market.holidays:
            added += 1
    return _ms(day, dt.time(21, 0), market)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
