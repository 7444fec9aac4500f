"""The webhook service against real Kafka and Redis: 401 produces nothing, 200 means stored, duplicates once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from connectors.webhooks import WebhookService
from oms.runtime import free_port
from oms.settings import Settings
from schemas.topics import raw_orders
from tests.integration.conftest import read_topic, shopee_order, unique

pytestmark = pytest.mark.integration


def _post_all(settings: Settings, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[int, Any]]:
    """Run the real service on a free loopback port and send the requests in order."""

    async def main() -> list[tuple[int, Any]]:
        runner = web.AppRunner(WebhookService(settings).app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        out = []
        try:
            async with aiohttp.ClientSession() as session:
                for path, body, headers in requests:
                    async with session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as resp:
                        out.append((resp.status, await resp.json()))
        finally:
            await runner.cleanup()
        return out

    return asyncio.run(main())


def test_signed_delivery_is_stored_before_200_duplicates_are_answered_once_and_bad_signatures_get_401(
    kafka_topics: Settings,
) -> None:
    settings = kafka_topics.model_copy(
        update={"shopee_partner_key": SecretStr("pk-test"), "webhook_public_url": "https://oms.example.com"}
    )
    body = shopee_order(unique("HOOK"))
    url = "https://oms.example.com/webhooks/shopee"
    signature = hmac.new(b"pk-test", url.encode() + b"|" + body, hashlib.sha256).hexdigest()
    forged = shopee_order(unique("FORGED"))
    results = _post_all(
        settings,
        [
            ("/webhooks/shopee", body, {"Authorization": signature}),
            ("/webhooks/shopee", body, {"Authorization": signature}),  # the platform retries
            ("/webhooks/shopee", forged, {"Authorization": signature}),  # signature of another body
            ("/webhooks/shopee", forged, {}),
            ("/webhooks/amazon", body, {"Authorization": signature}),
            ("/webhooks/pos", body, {}),  # no secret configured for pos in this test
        ],
    )
    statuses = [status for status, _ in results]
    assert statuses == [200, 200, 401, 401, 404, 503], results
    accepted, duplicate = results[0][1], results[1][1]
    assert accepted["status"] == "accepted" and duplicate["status"] == "duplicate"
    assert "Authorization" in results[2][1]["error"] and "OMS_POS_WEBHOOK_SECRET" in results[5][1]["error"]

    topic = raw_orders("shopee").full_name(settings.topic_prefix)
    delivery = accepted["delivery_id"].encode()
    stored = read_topic(settings, topic, lambda ms: any(m.value() == forged for m in ms), timeout=5)
    assert not any(m.value() == forged for m in stored), "a rejected delivery must produce nothing"
    ours = [m for m in stored if m.key() == delivery]
    assert len(ours) == 1, "the duplicate must not be produced again"
    msg = ours[0]
    assert msg.value() == body, "the body is stored unchanged"
    assert (msg.partition(), msg.offset()) == (accepted["partition"], accepted["offset"])
    headers = dict(msg.headers())
    assert headers["channel"] == b"shopee" and headers["delivery_id"] == delivery
    assert int(headers["received_at"]) > 1_700_000_000_000
