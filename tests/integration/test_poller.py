"""The poller against recorded responses served on loopback, real Kafka and Redis: pages are produced
unchanged, the cursor moves only after Kafka acknowledged, a failed fetch or produce moves nothing."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis

from connectors.poller import HttpJsonSource, Poller, PollError
from connectors.raw_producer import ProduceError, RawProducer
from oms.settings import Settings
from schemas.topics import raw_orders
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

PAGES: dict[str, Any] = json.loads((Path(__file__).parent / "recorded" / "shopee_pages.json").read_text())
BODIES = {cursor: json.dumps(page).encode() for cursor, page in PAGES.items()}


@pytest.fixture()
def recorded_api() -> Iterator[tuple[str, list[str]]]:
    """Serves the recorded pages by ?cursor=; records what was asked. 127.0.0.1 only."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            cursor = parse_qs(urlsplit(self.path).query).get("cursor", [""])[0]
            asked.append(cursor)
            body = BODIES.get(cursor)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v2/order/get_order_detail", asked
    server.shutdown()


def _source(url: str, shop: str) -> HttpJsonSource:
    def next_cursor(parsed: object) -> str | None:
        response = parsed.get("response", {}) if isinstance(parsed, dict) else {}
        return str(response["next_cursor"]) if response.get("more") else None

    return HttpJsonSource(channel="shopee", shop=shop, url=url, cursor_param="cursor", next_cursor=next_cursor)


def test_pages_are_produced_unchanged_and_the_cursor_follows_only_acknowledged_pages(
    kafka_topics: Settings, recorded_api: tuple[str, list[str]], redis_client: redis.Redis
) -> None:
    url, asked = recorded_api
    shop = f"shop-{uuid.uuid4().hex[:6]}"
    poller = Poller(kafka_topics, _source(url, shop), RawProducer(kafka_topics), redis_client)

    assert [poller.poll_once() for _ in range(4)] == [1, 1, 1, 1]
    assert asked == ["", "c1", "c2", "c2"], "the last page has no continuation: poll it again later"
    assert poller.cursor() == "c2"

    topic = raw_orders("shopee").full_name(kafka_topics.topic_prefix)
    mine = read_topic(kafka_topics, topic, lambda ms: sum(dict(m.headers())["shop"] == shop.encode() for m in ms) >= 4)
    bodies = [m.value() for m in mine if dict(m.headers())["shop"] == shop.encode()]
    expected = [BODIES[""], BODIES["c1"], BODIES["c2"], BODIES["c2"]]
    assert sorted(bodies) == sorted(expected), "bodies exactly as the API returned (partitions interleave)"


def test_a_failed_fetch_or_an_unacknowledged_produce_leaves_the_cursor_where_it_was(
    kafka_topics: Settings, recorded_api: tuple[str, list[str]], redis_client: redis.Redis
) -> None:
    url, _ = recorded_api
    shop = f"shop-{uuid.uuid4().hex[:6]}"
    poller = Poller(kafka_topics, _source(url, shop), RawProducer(kafka_topics), redis_client)
    poller.poll_once()
    assert poller.cursor() == "c1"

    broken = Poller(kafka_topics, _source("http://127.0.0.1:9/closed", shop), poller.producer, redis_client)
    with pytest.raises(PollError):
        broken.poll_once()
    assert poller.cursor() == "c1"

    unreachable = Settings(kafka_bootstrap="127.0.0.1:9", topic_prefix=kafka_topics.topic_prefix)
    no_kafka = RawProducer(unreachable, {"message.timeout.ms": 2000, "log_level": 0})
    cut_off = Poller(kafka_topics, _source(url, shop), no_kafka, redis_client)
    with pytest.raises(ProduceError):
        cut_off.poll_once()
    assert poller.cursor() == "c1", "a page Kafka did not acknowledge must be fetched again"
