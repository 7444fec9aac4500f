"""Fulfilment rules as data: markets, fulfilment nodes and carriers, read from one TOML file.

An operations team owns this file (``connectors/samples/routing.toml`` is the packaged sample for SG,
MY, ID, TH, VN and PH). It is validated as a whole: every problem is reported at once, each naming the
file, the line and the field, and a file with any problem is refused (a running worker keeps the rules
it has: see ``RulesHolder``). Every routing decision records ``Rules.version`` and ``Rules.digest``.

Pure: no Kafka, no clock. streams/routing.py makes the decisions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.order import Market
from schemas.rules_text import TomlError, TomlLines, load_toml

log = logging.getLogger(__name__)

SAMPLE_RULES = "routing.toml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_OFFSET = re.compile(r"^[+-](0[0-9]|1[0-4]):(00|30|45)$")


class RulesError(ValueError):
    """A routing rules file that cannot be used. ``problems``: one line each, naming line and field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"routing rules {source} refused ({len(problems)} problem(s)); the rules in force stay:\n{listed}"
        )


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PostcodeRange(_Model):
    """Inclusive range of postcodes of the market's length, compared as numbers: ``"520000-529999"``."""

    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> PostcodeRange:
        low, sep, high = text.partition("-")
        if not low.strip().isdigit() or (sep and not high.strip().isdigit()):
            raise ValueError(f"postcode range {text!r} must be digits like '520000-529999' or one postcode '6000'")
        bounds = cls(low=int(low), high=int(high if sep else low))
        if bounds.high < bounds.low:
            raise ValueError(f"postcode range {text!r} ends before it starts")
        return bounds


class Region(_Model):
    name: str = Field(min_length=1)
    postcodes: tuple[str, ...] = Field(min_length=1, description="ranges like '520000-529999'")

    @field_validator("postcodes")
    @classmethod
    def _ranges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            PostcodeRange.parse(text)
        return value

    @cached_property
    def ranges(self) -> tuple[PostcodeRange, ...]:
        return tuple(PostcodeRange.parse(text) for text in self.postcodes)

    def contains(self, code: int) -> bool:
        return any(r.low <= code <= r.high for r in self.ranges)


class HoldRules(_Model):
    """What stops an order from shipping until an operator looks at it."""

    cod_review_above_minor: int | None = Field(default=None, ge=0, description="COD orders above this wait")
    blacklist_postcodes: tuple[str, ...] = ()
    blacklist_cities: tuple[str, ...] = ()


class MarketRules(_Model):
    utc_offset: str = Field(description="local time for cut-offs, e.g. '+08:00' (SEA keeps no daylight saving)")
    postcode_pattern: str = Field(description="a valid postcode, as a regular expression")
    cod_cap_minor: int = Field(ge=0, description="no COD order above this, in the market currency's minor units")
    split: Literal["allow", "hold"] = Field(
        default="allow", description="several nodes hold the order: ship in parts, or hold it for an operator"
    )
    max_delivery_days: int = Field(default=5, ge=0, le=60, description="the promise: carriers slower are passed over")
    default_item_weight_g: int = Field(default=500, gt=0)
    holidays: tuple[dt.date, ...] = ()
    notes: str = ""
    region: tuple[Region, ...] = Field(min_length=1)
    holds: HoldRules = HoldRules()

    @field_validator("utc_offset")
    @classmethod
    def _offset(cls, value: str) -> str:
        if not _OFFSET.match(value):
            raise ValueError(f"utc_offset {value!r} must look like '+08:00'")
        return value

    @field_validator("postcode_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"postcode_pattern {value!r} is not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _distinct_regions(self) -> MarketRules:
        names = [r.name for r in self.region]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"region names must be distinct, repeated: {', '.join(doubled)}")
        return self

    @cached_property
    def tz(self) -> dt.timezone:
        sign = -1 if self.utc_offset[0] == "-" else 1
        hours, minutes = int(self.utc_offset[1:3]), int(self.utc_offset[4:6])
        return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))

    def region_of(self, postcode: str | None) -> Region | None:
        if not postcode or not re.fullmatch(self.postcode_pattern, postcode) or not postcode.isdigit():
            return None
        code = int(postcode)
        return next((r for r in self.region if r.contains(code)), None)

    def valid_postcode(self, postcode: str | None) -> bool:
        return bool(postcode) and re.fullmatch(self.postcode_pattern, postcode or "") is not None


class Node(_Model):
    """A place that ships: a warehouse, a store or a 3PL. ``id`` is the warehouse id in the stock."""

    id: str = Field(min_length=1, max_length=64)
    name: str = ""
    market: Market
    kind: Literal["warehouse", "store", "3pl"] = "warehouse"
    zones: dict[str, int] = Field(min_length=1, description="region -> distance (0 = same zone); absent: not served")
    capacity_per_hour: int = Field(gt=0)
    capacity_per_day: int = Field(gt=0)
    cutoff: str = Field(description="local time: orders routed before leave the same working day")
    work_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat")

    @field_validator("cutoff")
    @classmethod
    def _cutoff(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"cutoff {value!r} must be a 24-hour time like '14:00'")
        return value

    @field_validator("work_days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in value if d not in WEEKDAYS]
        if bad or not value:
            raise ValueError(f"work_days must be some of {', '.join(WEEKDAYS)}, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _zones(self) -> Node:
        bad = {name: d for name, d in self.zones.items() if d < 0}
        if bad:
            raise ValueError(f"zone distances cannot be negative: {bad}")
        return self

    @property
    def cutoff_time(self) -> dt.time:
        hours, minutes = self.cutoff.split(":")
        return dt.time(int(hours), int(minutes))


class Cost(_Model):
    base_minor: int = Field(ge=0)
    per_kg_minor: int = Field(default=0, ge=0, description="for each started kg above the first")
    cod_fee_minor: int = Field(default=0, ge=0)


class Carrier(_Model):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    market: Market
    service: Literal["express", "same_day", "standard", "postal", "cross_border"]
    regions: tuple[str, ...] = Field(default=("*",), min_length=1, description="regions served; '*' = all")
    max_zone: int | None = Field(default=None, ge=0, description="farthest node zone it picks up for (same-day: 0)")
    cod: bool = False
    cod_cap_minor: int | None = Field(default=None, ge=0)
    max_weight_g: int = Field(gt=0)
    service_days: int = Field(ge=0, le=60, description="working days from handover to delivery")
    cost: Cost

    def serves(self, region: str) -> bool:
        return "*" in self.regions or region in self.regions


class _Document(_Model):
    version: str = Field(min_length=1)
    market: dict[Market, MarketRules] = Field(min_length=1)
    node: tuple[Node, ...] = Field(min_length=1)
    carrier: tuple[Carrier, ...] = Field(min_length=1)
    weights: dict[str, int] = Field(default_factory=dict, description="SKU -> grams per unit")


@dataclass(frozen=True)
class Rules:
    """Validated routing rules. ``label`` (version and content digest) goes on every decision."""

    version: str
    digest: str
    source: str
    markets: Mapping[Market, MarketRules]
    nodes: tuple[Node, ...]
    carriers: tuple[Carrier, ...]
    weights: Mapping[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.version}@{self.digest}"

    def nodes_in(self, market: Market) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.market is market)

    def carriers_in(self, market: Market) -> tuple[Carrier, ...]:
        return tuple(c for c in self.carriers if c.market is market)

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def weight_g(self, sku: str, market: Market) -> int:
        return self.weights.get(sku, self.markets[market].default_item_weight_g)


def parse_rules(text: str, source: str = "<routing rules>") -> Rules:
    """Rules from TOML text, or ``RulesError`` naming every problem with its line and field."""
    try:
        raw = load_toml(text, source)
    except TomlError as exc:
        where = f"line {exc.line}, column {exc.column}: " if exc.line else ""
        raise RulesError(source, [f"{where}not valid TOML: {exc.message}"]) from None
    lines = TomlLines(text)
    try:
        doc = _Document.model_validate(raw)
    except ValidationError as exc:
        raise RulesError(source, [_problem(error, lines) for error in exc.errors()]) from None
    problems = _cross_checks(doc, lines)
    if problems:
        raise RulesError(source, problems)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return Rules(doc.version, digest, source, doc.market, doc.node, doc.carrier, doc.weights)


def _problem(error: Mapping[str, Any], lines: TomlLines) -> str:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (a typo?)"
    elif error["type"] == "missing":
        message = "missing"
    got = error.get("input")
    quiet = error["type"] in ("missing", "extra_forbidden", "value_error") or isinstance(got, dict | list)
    shown = "" if quiet else f" (got {got!r})"
    return _at(loc, lines, message + shown)


def _at(path: tuple[str | int, ...], lines: TomlLines, message: str) -> str:
    """``line N: a.b[2].c: message``, the line when the text defines that path."""
    line = lines.locate(path)
    shown = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")
    return f"{f'line {line}: ' if line else ''}{shown or '(top level)'}: {message}"


def _cross_checks(doc: _Document, lines: TomlLines) -> list[str]:
    """What no single field can check: references between nodes, carriers, regions and markets."""
    problems: list[str] = []

    def add(path: tuple[str | int, ...], message: str) -> None:
        problems.append(_at(path, lines, message))

    ids = [n.id for n in doc.node]
    for i, node in enumerate(doc.node):
        if ids.count(node.id) > 1:
            add(("node", i, "id"), f"node id {node.id!r} is used more than once")
        market = doc.market.get(node.market)
        if market is None:
            add(("node", i, "market"), f"market {node.market.value} has no [market.{node.market.value}] table")
            continue
        known = {r.name for r in market.region}
        for name in node.zones:
            if name not in known:
                add(("node", i, "zones"), f"region {name!r} is not a region of {node.market.value}: {sorted(known)}")
    carrier_ids = [c.id for c in doc.carrier]
    for i, carrier in enumerate(doc.carrier):
        if carrier_ids.count(carrier.id) > 1:
            add(("carrier", i, "id"), f"carrier id {carrier.id!r} is used more than once")
        market = doc.market.get(carrier.market)
        if market is None:
            add(("carrier", i, "market"), f"market {carrier.market.value} has no [market.{carrier.market.value}] table")
            continue
        known = {r.name for r in market.region}
        for name in carrier.regions:
            if name != "*" and name not in known:
                add(("carrier", i, "regions"), f"region {name!r} is not a region of {carrier.market.value}")
        if carrier.cod and carrier.cod_cap_minor is None:
            add(("carrier", i, "cod_cap_minor"), "a COD carrier needs its COD cap (cod_cap_minor)")
    for code in doc.market:
        if not any(n.market is code for n in doc.node):
            add(("market", code.value), f"no node ships in {code.value}: add a [[node]] with market = {code.value!r}")
        if not any(c.market is code for c in doc.carrier):
            add(("market", code.value), f"no carrier in {code.value}: add a [[carrier]] with market = {code.value!r}")
    for sku, grams in doc.weights.items():
        if grams <= 0:
            add(("weights", sku), f"weight must be positive grams, got {grams}")
    return problems


def sample_rules_path() -> Path:
    return Path(str(resources.files("connectors").joinpath("samples", SAMPLE_RULES)))


def load_rules(path: str | Path) -> Rules:
    source = str(path)
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(source, ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(source, [f"cannot be read: {exc}"]) from None
    return parse_rules(text, source)


class RulesHolder:
    """The rules in force for a running process, reloaded when the file changes.

    ``current()`` checks the file's modification time and size; a changed file is parsed, and a bad
    one is refused with a logged error while the previous rules stay in force.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.rules = load_rules(self.path)
        self._stamp = _stamp(self.path)
        self.refused: str | None = None

    def current(self) -> Rules:
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return self.rules
        self._stamp = stamp
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self.refused = str(exc)
            log.error("%s", exc)
            return self.rules
        if rules.label != self.rules.label:
            log.info("routing rules reloaded: %s -> %s (%s)", self.rules.label, rules.label, self.path)
        self.rules, self.refused = rules, None
        return rules


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
