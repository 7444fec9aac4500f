"""Normalization: a raw channel record becomes canonical changes or exactly one dead letter.

Pure: no Kafka here. The faust agent in streams/app.py feeds it and sends what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.order import DeadLetter, OrderChange
from streams.adapters import grab, lazada, pos, shopee, shopify, tiktok, tokopedia
from streams.adapters.base import RawInput, Rejected, parse_json

STAGE = "normalize"

#: An adapter turns one parsed body into canonical changes: full orders and/or status updates.
Adapter = Callable[[RawInput, Any, str], Sequence[OrderChange]]

#: Channel -> adapter. A record on a channel without one is dead-lettered with a reason, never dropped.
ADAPTERS: dict[str, Adapter] = {
    shopee.CHANNEL: shopee.normalize,
    lazada.CHANNEL: lazada.normalize,
    tiktok.CHANNEL: tiktok.normalize,
    tokopedia.CHANNEL: tokopedia.normalize,
    shopify.CHANNEL: shopify.normalize,
    grab.CHANNEL: grab.normalize,
    pos.CHANNEL: pos.normalize,
}


@dataclass(frozen=True)
class Outcome:
    """What one raw record became: canonical changes (orders, status updates), or one dead letter."""

    events: tuple[OrderChange, ...] = ()
    dead_letter: DeadLetter | None = None


def normalize(raw: RawInput, tenant: str) -> Outcome:
    """Never raises: any failure, ours included, becomes a dead letter that keeps the original bytes."""
    try:
        adapter = ADAPTERS.get(raw.channel)
        if adapter is None:
            raise Rejected("no_adapter", f"no adapter for channel {raw.channel!r} yet")
        events = adapter(raw, parse_json(raw.value), tenant)
        if not events:
            raise Rejected("empty", "the payload holds no order")
        return Outcome(events=tuple(events))
    except Rejected as exc:
        return Outcome(dead_letter=dead_letter(raw, tenant, exc.code, exc.reason))
    except Exception as exc:  # a bug of ours must not stop the worker nor lose the input
        return Outcome(dead_letter=dead_letter(raw, tenant, "internal_error", f"{type(exc).__name__}: {exc}"))


def dead_letter(raw: RawInput, tenant: str, code: str, reason: str, stage: str = STAGE) -> DeadLetter:
    return DeadLetter.of(
        tenant=tenant,
        channel=raw.channel,
        stage=stage,
        reason_code=code,
        reason=reason,
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=raw.key,
        headers=dict(raw.headers),
        original=raw.value,
    )
