"""Avro conversion of the routing stage's records (routing.v1, hold-actions.v1), at the Kafka edge."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any

from schemas.codec import codec
from streams import routing
from streams.routing_state import Action, Step


def encode_step(step: Step) -> bytes:
    return codec("routing_decision").encode(step_record(step))


def step_record(step: Step) -> dict[str, Any]:
    request, decision = step.request, step.decision
    return {
        "decision_id": f"{request.order_key}#{step.seq}",
        "order_key": request.order_key,
        "tenant": request.tenant,
        "channel": request.channel,
        "market": request.market.value,
        "outcome": step.outcome,
        "rules": decision.rules if decision else "",
        "decided_ms": decision.decided_ms if decision else int(time.time() * 1000),
        "summary": step.summary,
        "shipments": [asdict(s) | {"holds": list(s.holds)} for s in decision.shipments] if decision else [],
        "holds": [asdict(h) for h in decision.holds] if decision else [],
        "passed_over": [asdict(p) for p in decision.passed_over] if decision else [],
        "actor": step.actor,
        "note": step.note,
        "currency": request.currency,
        "request": request.to_json(),
    }


def decode_decision(data: bytes) -> dict[str, Any]:
    """A routing.v1 record as a dict (the Avro fields)."""
    return codec("routing_decision").decode(data)


def decision_of(record: dict[str, Any]) -> routing.Decision:
    """The routing.Decision inside a routed or held routing.v1 record (for replay and reports)."""
    return routing.Decision(
        order_key=record["order_key"],
        outcome=record["outcome"],
        rules=record["rules"],
        decided_ms=record["decided_ms"],
        shipments=tuple(routing.Shipment(**(s | {"holds": tuple(s["holds"])})) for s in record["shipments"]),
        holds=tuple(routing.HoldReason(**h) for h in record["holds"]),
        passed_over=tuple(routing.Passed(**p) for p in record["passed_over"]),
        released_by=record["actor"] if record["outcome"] != "cancelled" else None,
    )


def new_action(order_key: str, action: str, actor: str, note: str) -> Action:
    if action not in ("release", "cancel"):
        raise ValueError(f"action must be release or cancel, got {action!r}")
    return Action(uuid.uuid4().hex, order_key, action, actor, note, int(time.time() * 1000))


def encode_action(action: Action) -> bytes:
    return codec("hold_action").encode(asdict(action))


def decode_action(data: bytes) -> Action:
    return Action(**codec("hold_action").decode(data))
