"""Routing through the real broker: orders routed from the node holding their stock, holds answered by an
operator (`oms holds release|cancel`), and the rules file reloaded while the worker runs."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.raw_producer import RawProducer
from connectors.stock_load import load
from infra.process import ManagedProcess, ServiceError
from infra.topics import ensure_topics
from oms import routing_ops
from oms.runtime import spawn_worker
from oms.settings import Settings
from schemas.codec import codec
from schemas.order import DeadLetter, order_key
from schemas.topics import DEAD_LETTERS, HOLD_ACTIONS, INVENTORY, ROUTING
from streams import routing, routing_records
from streams.routing_rules import load_rules, sample_rules_path
from tests.conftest import own_settings
from tests.integration.conftest import read_topic, shopee_order, unique, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture()
def routing_worker(services: Settings, tmp_path: Path) -> Iterator[tuple[Settings, ManagedProcess]]:
    rules = tmp_path / "routing.toml"
    shutil.copy(sample_rules_path(), rules)
    settings = own_settings(
        services,
        tmp_path / "oms",
        "rt",
        routing_rules=str(rules),
        routing_reload_s=0.5,
    )
    ensure_topics(settings)
    csv = tmp_path / "stock.csv"
    # The sample Shopee order (SG, postcode 238859, Central) buys 1 EARBUD-PRO-BLK and 2 CABLE-USBC-1M.
    # The Orchard store is zone 0 for Central and holds enough for 3 orders; Jurong (zone 1) has more.
    csv.write_text(
        "sku,warehouse,on_hand,version\n"
        "EARBUD-PRO-BLK,SG-ORCH,3,1\nCABLE-USBC-1M,SG-ORCH,6,1\n"
        "EARBUD-PRO-BLK,SG-JUR,50,1\nCABLE-USBC-1M,SG-JUR,100,1\n"
    )
    load(settings, csv)
    worker = spawn_worker(settings, "routing-worker")
    yield settings, worker
    worker.stop()


def _decisions(settings: Settings, done: Any, timeout: float = 90) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in read_topic(settings, ROUTING.full_name(settings.topic_prefix), done, timeout):
        record = routing_records.decode_decision(m.value())
        out.setdefault(record["order_key"], []).append(record)
    return out


def _decided(keys: set[str]) -> Any:
    def done(messages: list[Any]) -> bool:
        return keys <= {m.key().decode() for m in messages}

    return done


def test_orders_ship_from_the_node_holding_them_and_holds_wait_for_an_operator(
    routing_worker: tuple[Settings, ManagedProcess],
) -> None:
    settings, worker = routing_worker
    producer = RawProducer(settings)
    plain, cod, blacklisted = unique("PLAIN"), unique("COD"), unique("BLACK")
    address = {"name": "Tan", "phone": "6591234567", "city": "Singapore", "state": "Central", "region": "SG"}
    bodies = {
        plain: shopee_order(plain),
        # COD of SGD 400: the sample rules review COD above SGD 300 before it ships
        cod: shopee_order(cod, cod=True, payment_method="Cash on Delivery", total_amount=400.0),
        blacklisted: shopee_order(blacklisted, recipient_address={**address, "zipcode": "018989"}),
    }
    for sn, body in bodies.items():
        producer.send("shopee", body, shop="9", delivery_id=f"o-{sn}")
    producer.flush()
    keys = {sn: order_key(settings.tenant, "shopee", sn) for sn in bodies}
    found = _decisions(settings, _decided(set(keys.values())))
    assert set(keys.values()) <= set(found), worker.log_tail()

    routed = found[keys[plain]]
    assert [r["outcome"] for r in routed] == ["routed"], routed
    [shipment] = routed[0]["shipments"]
    # the reserve preferred the zone-0 store, which had both lines: one parcel from it, never a node
    # without the units
    assert shipment["node"] == "SG-ORCH", routed[0]["summary"]
    assert len(shipment["holds"]) == 2
    # the carrier is what the rules choose for the recorded input, and every other option has a reason
    request = routing.Request.from_json(routed[0]["request"])
    rules = load_rules(settings.routing_rules)
    again = routing.route(request, rules, routing.Workload(), routed[0]["decided_ms"])
    assert shipment["carrier"] == again.shipments[0].carrier
    assert routed[0]["rules"] == rules.label
    assert routed[0]["passed_over"] and all(p["reason"] for p in routed[0]["passed_over"])

    held_cod = found[keys[cod]]
    assert [r["outcome"] for r in held_cod] == ["held"]
    assert [h["code"] for h in held_cod[0]["holds"]] == ["cod_review"], held_cod[0]["summary"]
    assert [h["code"] for h in found[keys[blacklisted]][0]["holds"]] == ["blacklisted_postcode"]
    listed = {r["order_key"] for r in routing_ops.held(settings)}
    assert {keys[cod], keys[blacklisted]} <= listed and keys[plain] not in listed

    # the operator called the COD buyer: it ships, and the decision names who released it
    released = routing_ops.act(settings, keys[cod], "release", "tester", "buyer confirmed by phone", wait_s=60)
    assert released["outcome"] == "routed" and released["actor"] == "tester", released
    assert released["note"] == "buyer confirmed by phone"

    # the blacklisted one is cancelled: its stock goes back on sale through the inventory ledger
    cancelled = routing_ops.act(settings, keys[blacklisted], "cancel", "tester", "fraud", wait_s=60)
    assert cancelled["outcome"] == "cancelled" and cancelled["actor"] == "tester"

    def released_stock(messages: list[Any]) -> bool:
        return sum(_move(m)["cause"] == "operator-cancel" for m in messages) >= 2

    moves = [_move(m) for m in read_topic(settings, INVENTORY.full_name(settings.topic_prefix), released_stock, 60)]
    refs = sorted(m["ref"].rsplit("|", 1)[0] for m in moves if m["cause"] == "operator-cancel")
    assert refs == [keys[blacklisted]] * 2, worker.log_tail()
    assert keys[blacklisted] not in {r["order_key"] for r in routing_ops.held(settings)}

    with pytest.raises(ServiceError, match="is not held"):
        routing_ops.act(settings, keys[plain], "release", "tester", "", wait_s=5)

    # a hold action that is not one is a dead letter with its bytes, and the agent goes on
    garbage = b"\x00 not a hold action"
    actions = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    actions.produce(HOLD_ACTIONS.full_name(settings.topic_prefix), key=keys[plain].encode(), value=garbage)
    assert actions.flush(15) == 0

    def dead(messages: list[Any]) -> bool:
        return any(bool(DeadLetter.decode(m.value()).original == garbage) for m in messages)

    letters = [
        DeadLetter.decode(m.value())
        for m in read_topic(settings, DEAD_LETTERS.full_name(settings.topic_prefix), dead, 60)
    ]
    [letter] = [x for x in letters if x.original == garbage]
    assert letter.stage == "allocation" and letter.reason_code == "undecodable"
    assert letter.source_topic == HOLD_ACTIONS.full_name(settings.topic_prefix)


def _move(message: Any) -> dict[str, Any]:
    return codec("stock_movement").decode(message.value())


def test_a_bad_rules_edit_is_refused_while_running_and_a_good_one_is_used(
    routing_worker: tuple[Settings, ManagedProcess],
) -> None:
    settings, worker = routing_worker
    path = Path(settings.routing_rules)
    first = load_rules(path)
    producer = RawProducer(settings)

    def decide() -> str:
        sn = unique("RELOAD")
        producer.send("shopee", shopee_order(sn), shop="9", delivery_id=f"o-{sn}")
        producer.flush()
        key = order_key(settings.tenant, "shopee", sn)
        found = _decisions(settings, _decided({key}), 90)
        assert key in found, worker.log_tail()
        return str(found[key][0]["rules"])

    assert decide() == first.label  # the worker is up and routing
    path.write_text(path.read_text().replace("capacity_per_hour = 20", "capacity_per_hour = -1"))
    deadline = time.monotonic() + 30
    wait_until(lambda: "refused" in worker.log_tail(), 30)
    assert "node[2].capacity_per_hour" in worker.log_tail(), "the refusal names the field"
    assert decide() == first.label, "a bad edit is refused: the rules in force stay"

    good = sample_rules_path().read_text().replace('version = "2026-11-28.1"', 'version = "ops-edit-2"')
    path.write_text(good)
    new_label = load_rules(path).label
    labels = [decide()]
    while labels[-1] != new_label and time.monotonic() < deadline + 60:
        labels.append(decide())
    assert labels[-1] == new_label, f"the good edit must be picked up: {labels}"
    assert set(labels) <= {first.label, new_label}
