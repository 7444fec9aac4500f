"""Bundles and kits: the rules file, and a bundle line reserved as one (streams/bundles.py, streams/allocation.py).

A bundle SKU on an order line becomes one hold per component (``order_key|line_id#component_sku``);
the line counts as reserved only when every component is. The flash sales at the end mix bundle and
single-SKU lines that compete for the same components, and check after the dust settles that no
component is oversold, that the allocation's view of what is held is the inventory's, and that a
bundle is never left half held (except under ``backorder``, which keeps what it has on purpose).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms.settings import SettingsError, load_settings
from schemas.order import OrderEvent, OrderStatus
from streams.allocation import UNHELD, Allocation, Outcome, ShortPolicy, Verb
from streams.bundles import BundleError, Bundles, Component
from streams.inventory import Decision, HoldState
from streams.stock_records import decode_allocation, encode_allocation
from tests.unit.test_allocation import CHANNELS, Pipeline, _order

SAMPLE = Path(__file__).resolve().parents[2] / "connectors" / "samples" / "bundles.toml"
GIFTSET = Bundles({"GIFTSET-01": [("EARBUD", 1), ("CABLE", 2)]})


class BundlePipeline(Pipeline):
    """The broker-free pipeline of tests/unit/test_allocation.py, with bundle rules on every order."""

    def __init__(self, seed: int, policy: ShortPolicy = ShortPolicy.REJECT, bundles: Bundles = GIFTSET) -> None:
        super().__init__(seed, policy)
        self.bundles = bundles

    def order(self, event: OrderEvent) -> None:
        allocation = self.allocations.setdefault(event.order_key, Allocation(event.order_key, self.policy))
        self._send(allocation.on_order(event, bundles=self.bundles))

    def reserved(self, sku: str) -> int:
        return sum(r.reserved for r in self.stock[sku].rows.values())

    def on_hand(self, sku: str) -> int:
        return sum(r.on_hand for r in self.stock[sku].rows.values())


# ---------------------------------------------------------------------------------------------- the rules file


def test_the_sample_rules_file_loads() -> None:
    bundles = Bundles.load(SAMPLE)
    assert bundles["GIFTSET-01"] == (("EARBUD-PRO-BLK", 1), ("CABLE-USBC-1M", 2))
    assert bundles["GIFTSET-01"][1] == Component(sku="CABLE-USBC-1M", units=2)
    assert "EARBUD-PRO-BLK" not in bundles, "a component is not a bundle"
    assert all(units >= 1 for parts in bundles.values() for _, units in parts)


def test_no_file_means_no_bundles() -> None:
    assert len(Bundles.empty()) == 0
    assert Bundles.parse("# nothing yet\n", "empty.toml") == Bundles.empty()


GOOD = '[bundle."KIT"]\ncomponents = [{sku = "A", units = 1}, {sku = "B", units = 2}]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[bundle."KIT"]\ncomponent = [{sku = "A", units = 1}]\n',
            ["bundle 'KIT' (line 1): unknown key 'component'; did you mean 'components'?"],
            id="unknown-bundle-key",
        ),
        pytest.param(
            '[bundle."KIT"]\ncomponents = [{sku = "A", units = 1, qty = 2}]\n',
            ["bundle 'KIT' (line 1): components[0]: unknown key 'qty'"],
            id="unknown-component-key",
        ),
        pytest.param(
            '[bundles."KIT"]\ncomponents = [{sku = "A", units = 1}]\n',
            ["unknown key 'bundles' at the top level; did you mean 'bundle'?"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            '# kits\n\n[bundle."KIT"]\ncomponents = []\n',
            ["bundle 'KIT' (line 3): components: empty"],
            id="empty-components",
        ),
        pytest.param('[bundle."KIT"]\n', ["bundle 'KIT' (line 1): components: missing"], id="no-components"),
        pytest.param(
            GOOD.replace("units = 2", "units = 0"),
            ["bundle 'KIT' (line 1): components[1].units: must be at least 1", "got 0"],
            id="units-zero",
        ),
        pytest.param(
            GOOD.replace("units = 2", "units = -3"),
            ["bundle 'KIT' (line 1): components[1].units: must be at least 1", "got -3"],
            id="units-negative",
        ),
        pytest.param(
            GOOD.replace("units = 2", 'units = "2"'),
            ["bundle 'KIT' (line 1): components[1].units: must be a whole number, got a string ('2')"],
            id="units-string",
        ),
        pytest.param(
            GOOD.replace("units = 2", "units = 1.5"),
            ["bundle 'KIT' (line 1): components[1].units: must be a whole number"],
            id="units-float",
        ),
        pytest.param(
            '[bundle."KIT"]\ncomponents = [{units = 1}]\n',
            ["bundle 'KIT' (line 1): components[0].sku: missing"],
            id="no-sku",
        ),
        pytest.param(
            '[bundle."KIT"]\ncomponents = [{sku = "KIT", units = 1}]\n',
            ["bundle 'KIT' (line 1): components[0].sku: 'KIT' is the bundle itself; a bundle cannot contain itself"],
            id="contains-itself",
        ),
        pytest.param(
            GOOD + '\n[bundle."MEGA"]\ncomponents = [{sku = "KIT", units = 1}, {sku = "C", units = 1}]\n',
            ["bundle 'MEGA' (line 4): components[0].sku: 'KIT' is itself a bundle; bundles do not nest"],
            id="nested",
        ),
        pytest.param(
            '[bundle."KIT"]\ncomponents = [{sku = "A", units = 1}, {sku = "B", units = 1}, {sku = "A", units = 2}]\n',
            ["bundle 'KIT' (line 1): components[2].sku: 'A' is listed twice (also components[0])"],
            id="duplicate-component",
        ),
        pytest.param(
            '[bundle."KIT"]\ncomponents = [{sku = "A|B", units = 1}]\n',
            ["bundle 'KIT' (line 1): components[0].sku: SKU 'A|B' must not contain '|'"],
            id="separator-in-sku",
        ),
        pytest.param(
            "[bundle]\nKIT = 3\n",
            ["bundle 'KIT' (line 2): must be a table with components, got int (3)"],
            id="bundle-not-a-table",
        ),
        pytest.param(
            '[bundle."KIT"]\ncomponents = [{sku = "A", units = 1}\n',
            ["not valid TOML: Unclosed array"],
            id="toml-syntax",
        ),
        pytest.param(
            GOOD + '[bundle."KIT"]\ncomponents = []\n',
            ["not valid TOML:", "(at line 3, column"],
            id="toml-bundle-twice",
        ),
    ],
)
def test_a_bad_rules_file_is_refused_naming_file_bundle_and_field(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "kits.toml"
    path.write_text(text)
    with pytest.raises(BundleError) as info:
        Bundles.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), "the file is named first"
    for fragment in expected:
        assert fragment in message


def test_every_problem_is_reported_at_once_one_per_line() -> None:
    text = (
        '[bundle."A"]\ncomponents = [{sku = "X", units = 0}]\n'
        '[bundle."B"]\ncomponents = [{sku = "A", units = 1}, {sku = "Y", units = 1, colour = "red"}]\n'
    )
    with pytest.raises(BundleError) as info:
        Bundles.parse(text, "kits.toml")
    assert info.value.problems == [
        "kits.toml: bundle 'A' (line 1): components[0].units: must be at least 1 and at most 10000, got 0",
        "kits.toml: bundle 'B' (line 3): components[0].sku: 'A' is itself a bundle; bundles do not nest, "
        "list its components here instead",
        "kits.toml: bundle 'B' (line 3): components[1]: unknown key 'colour'; known: sku, units",
    ]
    assert str(info.value) == "\n".join(info.value.problems)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(BundleError, match=r"^/nowhere/kits\.toml: no such file$"):
        Bundles.load("/nowhere/kits.toml")


def test_rules_built_in_code_are_checked_the_same_way() -> None:
    with pytest.raises(BundleError, match="bundles do not nest"):
        Bundles({"KIT": [("A", 1)], "MEGA": [("KIT", 1)]})
    with pytest.raises(BundleError, match=r"components\[0\]\.units: must be at least 1"):
        Bundles({"KIT": [("A", 0)]})


# ---------------------------------------------------------------------------------------------- settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("OMS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_settings_read_the_bundles_file_once(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().bundles() == Bundles.empty(), "unset: no bundles"
    clean_env.setenv("OMS_BUNDLES_FILE", str(SAMPLE))
    settings = load_settings()
    assert settings.bundles() == Bundles.load(SAMPLE)
    assert settings.bundles() is settings.bundles(), "parsed once"


def test_settings_resolve_a_relative_bundles_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "kits.toml").write_text(GOOD)
    clean_env.chdir(tmp_path)
    clean_env.setenv("OMS_BUNDLES_FILE", "kits.toml")
    settings = load_settings()
    assert settings.bundles_file == str(tmp_path / "kits.toml"), "absolute: child processes may run elsewhere"
    assert list(settings.bundles()) == ["KIT"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "no such file"),
        ('[bundle."KIT"]\ncomponents = []\n', "bundle 'KIT' (line 1): components: empty"),
        ("[bundle\n", "not valid TOML"),
    ],
)
def test_a_missing_or_invalid_bundles_file_stops_the_start_naming_the_variable(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, text: str | None, expected: str
) -> None:
    path = tmp_path / "kits.toml"
    if text is not None:
        path.write_text(text)
    clean_env.setenv("OMS_BUNDLES_FILE", str(path))
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert f"OMS_BUNDLES_FILE={str(path)!r}" in message
    assert f"{path}: " in message and expected in message


# ---------------------------------------------------------------------------------------------- allocation


def test_a_bundle_line_becomes_one_hold_per_component() -> None:
    allocation = Allocation("t1:shopee:1")
    order = _order("shopee", 1, [("GIFTSET-01", 3), ("EARBUD", 1)])
    reserves = allocation.on_order(order, bundles=GIFTSET)
    assert [(c.verb, c.sku, c.hold_id, c.quantity) for c in reserves if c.verb is Verb.RESERVE] == [
        (Verb.RESERVE, "EARBUD", "t1:shopee:1|0#EARBUD", 3),
        (Verb.RESERVE, "CABLE", "t1:shopee:1|0#CABLE", 6),  # 3 bundles x 2 cables
        (Verb.RESERVE, "EARBUD", "t1:shopee:1|1", 1),  # the single earbud is its own hold
    ]
    assert all(c.order_key == "t1:shopee:1" for c in reserves)
    assert allocation.parts == {"t1:shopee:1|0": ("t1:shopee:1|0#EARBUD", "t1:shopee:1|0#CABLE")}
    assert allocation.order_lines() == {
        "t1:shopee:1|0": ("t1:shopee:1|0#EARBUD", "t1:shopee:1|0#CABLE"),
        "t1:shopee:1|1": ("t1:shopee:1|1",),
    }


@pytest.mark.parametrize("bundles", [None, Bundles.empty()])
def test_without_rules_a_bundle_sku_is_an_ordinary_sku(bundles: Bundles | None) -> None:
    allocation = Allocation("t1:shopee:2")
    reserves = allocation.on_order(_order("shopee", 2, [("GIFTSET-01", 1)]), bundles=bundles)
    first = reserves[0]
    assert (first.verb, first.sku, first.hold_id, first.quantity) == (Verb.RESERVE, "GIFTSET-01", "t1:shopee:2|0", 1)
    assert allocation.parts == {}
    assert b"parts" not in allocation.to_bytes(), "states of orders without bundles are written as before"


def test_the_expansion_is_fixed_when_the_order_is_first_seen() -> None:
    allocation = Allocation("t1:shopee:3")
    allocation.on_order(_order("shopee", 3, [("GIFTSET-01", 1)]), bundles=GIFTSET)
    changed = Bundles({"GIFTSET-01": [("EARBUD", 1), ("CABLE", 1), ("POUCH", 1)]})
    shipped = _order("shopee", 3, [("GIFTSET-01", 1)], OrderStatus.SHIPPED)
    ships = [c for c in allocation.on_order(shipped, bundles=changed) if c.verb is Verb.SHIP]
    assert [(c.sku, c.quantity) for c in ships] == [("CABLE", 2), ("EARBUD", 1)], "what was reserved ships"


def _decide(allocation: Allocation, states: dict[str, HoldState]) -> list[list[tuple[Verb, str, str]]]:
    out = []
    for hold, state in states.items():
        sku, quantity = allocation.lines[hold]
        decision = Decision(hold, sku, quantity, state, "WH-SG-1" if state is HoldState.RESERVED else None, 0)
        out.append([(c.verb, c.hold_id, c.cause) for c in allocation.on_decision(decision)])
    return out


KIT_AND_MUG = [("GIFTSET-01", 1), ("MUG", 1)]
CABLE_SHORT = {"t1:lazada:1|0#EARBUD": HoldState.RESERVED, "t1:lazada:1|0#CABLE": HoldState.SHORT}


def test_partial_releases_the_held_components_of_a_short_bundle_and_keeps_the_other_lines() -> None:
    allocation = Allocation("t1:lazada:1", ShortPolicy.PARTIAL)
    allocation.on_order(_order("lazada", 1, KIT_AND_MUG), bundles=GIFTSET)
    answers = _decide(allocation, {**CABLE_SHORT, "t1:lazada:1|1": HoldState.RESERVED})
    assert answers[-1] == [(Verb.RELEASE, "t1:lazada:1|0#EARBUD", "bundle-short")], "only the bundle's held part"
    assert allocation.outcome is Outcome.PARTIAL
    assert allocation.decisions["t1:lazada:1|0#EARBUD"] is HoldState.RELEASED, "the record says it went back"
    record = decode_allocation(encode_allocation(allocation))
    assert [(ln["hold_id"], ln["sku"], ln["quantity"], ln["state"]) for ln in record["lines"]] == [
        ("t1:lazada:1|0#CABLE", "CABLE", 2, "short"),
        ("t1:lazada:1|0#EARBUD", "EARBUD", 1, "released"),
        ("t1:lazada:1|1", "MUG", 1, "reserved"),
    ], "one record line per hold: analytics see the components"


def test_partial_with_only_short_lines_rejects_and_releases_everything() -> None:
    allocation = Allocation("t1:lazada:1", ShortPolicy.PARTIAL)
    allocation.on_order(_order("lazada", 1, [("GIFTSET-01", 1)]), bundles=GIFTSET)
    answers = _decide(allocation, CABLE_SHORT)
    assert allocation.outcome is Outcome.REJECTED
    assert {(verb, hold) for verb, hold, _ in answers[-1]} == {
        (Verb.RELEASE, "t1:lazada:1|0#CABLE"),
        (Verb.RELEASE, "t1:lazada:1|0#EARBUD"),
    }


def test_partial_after_the_parcel_left_releases_nothing() -> None:
    allocation = Allocation("t1:lazada:1", ShortPolicy.PARTIAL)
    allocation.on_order(_order("lazada", 1, KIT_AND_MUG), bundles=GIFTSET)
    allocation.on_order(_order("lazada", 1, KIT_AND_MUG, OrderStatus.SHIPPED), bundles=GIFTSET)
    answers = _decide(allocation, {**CABLE_SHORT, "t1:lazada:1|1": HoldState.RESERVED})
    assert answers[-1] == [] and allocation.outcome is Outcome.PARTIAL


def test_a_bundle_is_allocated_only_when_every_component_is_reserved() -> None:
    allocation = Allocation("t1:lazada:1", ShortPolicy.PARTIAL)
    allocation.on_order(_order("lazada", 1, [("GIFTSET-01", 1)]), bundles=GIFTSET)
    _decide(allocation, {"t1:lazada:1|0#EARBUD": HoldState.RESERVED})
    assert allocation.outcome is Outcome.PENDING, "one component decided is not the line decided"
    _decide(allocation, {"t1:lazada:1|0#CABLE": HoldState.RESERVED})
    assert allocation.outcome is Outcome.ALLOCATED


@pytest.mark.parametrize(
    ("policy", "outcome", "earbuds", "mugs"),
    [
        (ShortPolicy.REJECT, Outcome.REJECTED, 0, 0),  # everything released
        (ShortPolicy.PARTIAL, Outcome.PARTIAL, 0, 1),  # the bundle released whole, the mug kept
        (ShortPolicy.BACKORDER, Outcome.BACKORDERED, 1, 1),  # kept, waiting for cables
    ],
)
def test_a_bundle_with_a_short_component_is_short_as_a_whole(
    policy: ShortPolicy, outcome: Outcome, earbuds: int, mugs: int
) -> None:
    pipe = BundlePipeline(seed=5, policy=policy)
    pipe.load("EARBUD", 5)
    pipe.load("CABLE", 0)
    pipe.load("MUG", 5)
    pipe.order(_order("lazada", 1, KIT_AND_MUG))
    pipe.drain()
    assert pipe.allocations["t1:lazada:1"].outcome is outcome
    assert (pipe.reserved("EARBUD"), pipe.reserved("CABLE"), pipe.reserved("MUG")) == (earbuds, 0, mugs)


def test_the_last_units_of_a_component_go_to_whole_bundles_or_single_lines_never_half_a_bundle() -> None:
    pipe = BundlePipeline(seed=6, policy=ShortPolicy.PARTIAL)
    pipe.load("EARBUD", 1)  # 3 earbuds
    pipe.load("CABLE", 1)  # 3 cables: one gift set (2 cables) and one single cable at most
    pipe.order(_order("shopee", 1, [("GIFTSET-01", 1), ("EARBUD", 1)]))
    pipe.order(_order("tiktok", 2, [("GIFTSET-01", 1), ("CABLE", 1)]))
    pipe.order(_order("lazada", 3, [("CABLE", 2)]))
    pipe.drain()
    assert pipe.reserved("CABLE") <= 3 and pipe.reserved("EARBUD") <= 3
    _assert_settled(pipe, whole_bundles=True)


def test_cancel_ship_and_expiry_act_on_every_component() -> None:
    pipe = BundlePipeline(seed=7)
    pipe.load("EARBUD", 2)  # 6 in all
    pipe.load("CABLE", 4)  # 12: a hold is taken from one warehouse, and 2 sets need 4 cables
    pipe.order(_order("pos", 1, [("GIFTSET-01", 2)]))
    pipe.order(_order("pos", 2, [("GIFTSET-01", 1)]))
    pipe.drain()
    assert (pipe.reserved("EARBUD"), pipe.reserved("CABLE")) == (3, 6)
    pipe.order(_order("pos", 1, [("GIFTSET-01", 2)], OrderStatus.SHIPPED))
    pipe.order(_order("pos", 2, [("GIFTSET-01", 1)], OrderStatus.CANCELLED))
    pipe.drain()
    assert (pipe.on_hand("EARBUD"), pipe.on_hand("CABLE")) == (4, 8), "two gift sets left: 2 earbuds, 4 cables"
    assert (pipe.reserved("EARBUD"), pipe.reserved("CABLE")) == (0, 0), "the cancelled set went back whole"
    restock = pipe.allocations["t1:pos:1"].on_quality_check(passed=True)
    assert sorted((c.verb, c.sku, c.quantity) for c in restock) == [
        (Verb.RESTOCK, "CABLE", 4),
        (Verb.RESTOCK, "EARBUD", 2),
    ]

    unpaid = _order("lazada", 3, [("GIFTSET-01", 1)], OrderStatus.PENDING_PAYMENT).model_copy(
        update={"created_ms": 1_000}
    )
    allocation = Allocation("t1:lazada:3")
    assert {c.expires_at_ms for c in allocation.on_order(unpaid, 60_000, GIFTSET)} == {61_000}
    assert [(c.verb, c.hold_id, c.cause) for c in allocation.expire(61_000)] == [
        (Verb.RELEASE, "t1:lazada:3|0#CABLE", "expire"),
        (Verb.RELEASE, "t1:lazada:3|0#EARBUD", "expire"),
    ]


# ---------------------------------------------------------------------------------------------- stored state


def test_the_bundle_expansion_survives_the_table_encoding() -> None:
    allocation = Allocation("t1:shopee:1", ShortPolicy.PARTIAL)
    allocation.on_order(_order("shopee", 1, KIT_AND_MUG), bundles=GIFTSET)
    _decide(allocation, {"t1:shopee:1|0#CABLE": HoldState.RESERVED})
    stored = Allocation.from_bytes(allocation.to_bytes())
    assert stored == allocation
    assert stored.order_lines() == allocation.order_lines()
    assert orjson.loads(allocation.to_bytes())["parts"] == {
        "t1:shopee:1|0": ["t1:shopee:1|0#EARBUD", "t1:shopee:1|0#CABLE"]
    }
    # decided after a restart: still as one
    _decide(stored, {"t1:shopee:1|0#EARBUD": HoldState.SHORT, "t1:shopee:1|1": HoldState.RESERVED})
    assert stored.outcome is Outcome.PARTIAL
    assert stored.decisions["t1:shopee:1|0#CABLE"] is HoldState.RELEASED


def test_a_state_stored_before_bundles_still_loads_and_works() -> None:
    old = (
        b'{"order_key":"t1:shopee:9","policy":"partial","lines":{"t1:shopee:9|0":["SKU-A",2],'
        b'"t1:shopee:9|1":["SKU-B",1]},"decisions":{"t1:shopee:9|0":"reserved"},"outcome":"pending",'
        b'"status":"paid","expires":null}'
    )
    allocation = Allocation.from_bytes(old)
    assert allocation.parts == {}
    assert allocation.order_lines() == {"t1:shopee:9|0": ("t1:shopee:9|0",), "t1:shopee:9|1": ("t1:shopee:9|1",)}
    assert _decide(allocation, {"t1:shopee:9|1": HoldState.SHORT}) == [[]]
    assert allocation.outcome is Outcome.PARTIAL
    assert Allocation.from_bytes(allocation.to_bytes()) == allocation


# ---------------------------------------------------------------------------------------------- flash sales

#: bundles that share components with each other and with the single-SKU lines
KITS = Bundles(
    {
        "KIT-A": [("SKU-00", 1), ("SKU-01", 2)],
        "KIT-B": [("SKU-01", 1), ("SKU-02", 1), ("SKU-03", 3)],
        "KIT-C": [("SKU-04", 2)],
        "KIT-D": [("SKU-00", 1), ("SKU-04", 1), ("SKU-05", 1)],
    }
)
SINGLES = [f"SKU-{i:02d}" for i in range(6)]
HELD = (HoldState.RESERVED, HoldState.SHIPPED)


def _assert_settled(pipe: BundlePipeline, whole_bundles: bool) -> None:
    """Every order decided; the allocations and the inventory agree on every hold; nothing oversold."""
    assert all(a.outcome is not Outcome.PENDING for a in pipe.allocations.values()), "every order is decided"
    held_units: dict[str, int] = defaultdict(int)
    for allocation in pipe.allocations.values():
        keeps = allocation.outcome in (Outcome.ALLOCATED, Outcome.PARTIAL, Outcome.BACKORDERED)
        for hold, (sku, quantity) in allocation.lines.items():
            stocked = pipe.stock[sku].holds.get(hold)
            in_inventory = stocked is not None and stocked.state in HELD
            thinks = keeps and allocation.decisions[hold] not in UNHELD
            assert thinks == in_inventory, f"{hold}: allocation says held={thinks}, inventory {stocked}"
            held_units[sku] += quantity if in_inventory else 0
        if whole_bundles:
            for line, holds in allocation.parts.items():
                states = {pipe.stock[allocation.lines[h][0]].holds[h].state in HELD for h in holds}
                assert len(states) == 1, f"bundle line {line} is partly held: {holds}"
    for sku, stock in pipe.stock.items():
        reserved = sum(h.quantity for h in stock.holds.values() if h.state is HoldState.RESERVED)
        shipped = sum(h.quantity for h in stock.holds.values() if h.state is HoldState.SHIPPED)
        assert reserved == pipe.reserved(sku) <= pipe.on_hand(sku), f"{sku} oversold"
        assert held_units[sku] == reserved + shipped, f"{sku}: the allocations hold what the inventory holds"


def _sale(pipe: BundlePipeline, orders: list[tuple[list[tuple[str, int]], str]], steps: list[int]) -> None:
    """Place the orders (each then paid, or later cancelled or shipped), stepping the pipeline in between."""
    events: list[OrderEvent] = []
    for n, (lines, fate) in enumerate(orders):
        event = _order(CHANNELS[n % len(CHANNELS)], n, lines)
        events.append(event)
        pipe.order(event)
        for _ in range(steps[n % len(steps)]):
            pipe.step()
        if fate == "cancel" and n % 2:  # some are cancelled before they are decided
            pipe.order(event.model_copy(update={"status": OrderStatus.CANCELLED}))
    pipe.drain()
    for event, (_, fate) in zip(events, orders, strict=True):
        outcome = pipe.allocations[event.order_key].outcome
        if fate == "cancel" and outcome is not Outcome.CANCELLED:
            pipe.order(event.model_copy(update={"status": OrderStatus.CANCELLED}))
        elif fate == "ship" and outcome in (Outcome.ALLOCATED, Outcome.PARTIAL, Outcome.BACKORDERED):
            pipe.order(event.model_copy(update={"status": OrderStatus.SHIPPED}))
        pipe.step()
    pipe.drain()


POLICIES = [ShortPolicy.REJECT, ShortPolicy.PARTIAL, ShortPolicy.BACKORDER]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(3))
def test_flash_sale_of_bundles_and_their_components_never_oversells_or_splits_a_bundle(
    seed: int, policy: ShortPolicy
) -> None:
    pipe = BundlePipeline(seed, policy, KITS)
    for sku in SINGLES:
        pipe.load(sku, 20)  # 60 units each, across 3 warehouses
    rnd = random.Random(seed)
    skus = SINGLES + list(KITS)
    orders = [
        (
            [(rnd.choice(skus), rnd.choice((1, 1, 2, 3))) for _ in range(rnd.choice((1, 1, 2, 3)))],
            rnd.choice(("pay", "pay", "pay", "cancel", "ship")),
        )
        for _ in range(600)  # several times the stock
    ]
    _sale(pipe, orders, [rnd.randint(0, 3) for _ in range(50)])
    _assert_settled(pipe, whole_bundles=policy is not ShortPolicy.BACKORDER)
    sold = {sku: pipe.reserved(sku) + 60 - pipe.on_hand(sku) for sku in SINGLES}
    assert sum(sold.values()) > 60 * len(SINGLES) // 2, f"demand far above stock sells most of it: {sold}"


_line = st.tuples(st.sampled_from(SINGLES + list(KITS)), st.integers(1, 3))
_orders = st.lists(
    st.tuples(st.lists(_line, min_size=1, max_size=3), st.sampled_from(("pay", "cancel", "ship"))),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orders=_orders,
    stock=st.lists(st.integers(0, 3), min_size=len(SINGLES), max_size=len(SINGLES)),
    seed=st.integers(0, 2**16),
    steps=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    policy=st.sampled_from(POLICIES),
)
def test_any_small_sale_of_bundles_settles_consistently(
    orders: list[tuple[list[tuple[str, int]], str]],
    stock: list[int],
    seed: int,
    steps: list[int],
    policy: ShortPolicy,
) -> None:
    pipe = BundlePipeline(seed, policy, KITS)
    for sku, per_warehouse in zip(SINGLES, stock, strict=True):
        pipe.load(sku, per_warehouse)
    _sale(pipe, orders, steps)
    _assert_settled(pipe, whole_bundles=policy is not ShortPolicy.BACKORDER)
