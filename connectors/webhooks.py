"""``oms connectors serve``: POST /webhooks/{channel} -> raw.orders.<channel>, unchanged.

Order of work per delivery: verify the platform's signature (401, nothing produced, when it fails);
answer a delivery id seen before as a duplicate (Redis); produce the body unchanged with the standard
headers and wait for Kafka's acknowledgement (acks=all); only then remember the id and answer 200.
So an accepted delivery is never lost, and a failure answers 503 for the platform to retry. Redis is
an optimisation here: if it is away, duplicates get through and downstream idempotency absorbs them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from confluent_kafka import KafkaError, Message

from connectors.raw_producer import RawProducer
from connectors.signatures import NotConfigured, verify
from oms.settings import Settings
from schemas.topics import CHANNELS, raw_orders

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
ACK_TIMEOUT_S = 15.0


def identity(channel: str, body: bytes, headers: Mapping[str, str]) -> tuple[str, str]:
    """(delivery id, shop) of one delivery: the platform's own id where it sends one, else the body hash."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    doc: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    body_hash = "sha256:" + hashlib.sha256(body).hexdigest()
    if channel == "shopify":
        delivery = headers.get("X-Shopify-Webhook-Id") or headers.get("X-Shopify-Event-Id") or body_hash
        return delivery, headers.get("X-Shopify-Shop-Domain", "")
    if channel == "tiktok":
        return str(doc.get("tts_notification_id") or body_hash), str(doc.get("shop_id") or "")
    if channel == "shopee":
        return body_hash, str(doc.get("shop_id") or "")  # Shopee pushes carry no delivery id
    if channel == "lazada":
        return body_hash, str(doc.get("seller_id") or "")
    return headers.get("X-OMS-Delivery-Id") or body_hash, headers.get("X-OMS-Shop") or str(doc.get("shop_id") or "")


class WebhookService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = RawProducer(settings)
        self.redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="webhook-producer-poll", daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def _dedupe_key(self, channel: str, delivery_id: str) -> str:
        return f"{self.settings.topic_prefix}oms:delivery:{channel}:{delivery_id}"

    async def _seen(self, key: str) -> bool:
        try:
            return bool(await self.redis.exists(key))
        except Exception as exc:  # Redis away: accept, downstream dedupes by stable ids
            log.warning("delivery dedupe unavailable (%s); accepting", exc)
            return False

    async def _remember(self, key: str) -> None:
        try:
            await self.redis.set(key, b"1", ex=int(self.settings.webhook_dedupe_hours * 3600))
        except Exception as exc:
            log.warning("could not remember delivery %s (%s)", key, exc)

    async def _produce(self, channel: str, body: bytes, shop: str, delivery_id: str) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[int, int]] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            def settle() -> None:
                if done.done():
                    return
                if err is not None:
                    done.set_exception(RuntimeError(str(err)))
                else:
                    done.set_result((msg.partition() or 0, msg.offset() or 0))

            loop.call_soon_threadsafe(settle)

        self.producer.send(channel, body, shop=shop, delivery_id=delivery_id, on_delivery=on_delivery)
        return await asyncio.wait_for(done, ACK_TIMEOUT_S)

    async def handle(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        if channel not in CHANNELS:
            return _error(404, f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")
        body = await request.read()
        base = self.settings.webhook_public_url.rstrip("/")
        url = f"{base}{request.path}" if base else str(request.url)
        try:
            verdict = verify(self.settings, channel, url, body, request.headers)
        except NotConfigured as exc:
            return _error(503, str(exc))
        if not verdict.ok:
            log.warning("webhook %s: rejected signature: %s", channel, verdict.reason)
            return _error(401, f"signature check failed: {verdict.reason}")
        delivery_id, shop = identity(channel, body, request.headers)
        key = self._dedupe_key(channel, delivery_id)
        if await self._seen(key):
            return web.json_response({"status": "duplicate", "delivery_id": delivery_id})
        try:
            partition, offset = await self._produce(channel, body, shop, delivery_id)
        except (TimeoutError, RuntimeError, BufferError) as exc:
            log.error("webhook %s: not stored (%s)", channel, exc)
            return _error(503, f"not stored, retry later: {exc}")
        await self._remember(key)
        topic = raw_orders(channel).full_name(self.settings.topic_prefix)
        return web.json_response(
            {"status": "accepted", "delivery_id": delivery_id, "topic": topic, "partition": partition, "offset": offset}
        )

    async def _on_startup(self, _: web.Application) -> None:
        self._poller.start()

    async def _on_cleanup(self, _: web.Application) -> None:
        self._stop.set()
        self._poller.join(5)
        self.producer.flush(10)
        await self.redis.aclose()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/webhooks/{channel}", self.handle)
        app.router.add_get("/healthz", _healthz)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def serve(settings: Settings) -> None:
    """Run the webhook service in the foreground until interrupted."""
    web.run_app(WebhookService(settings).app(), host=settings.webhook_host, port=settings.webhook_port)
