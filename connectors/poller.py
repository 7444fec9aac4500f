"""Polling for channels (or shops) without push, and for recovering missed pushes.

A ``Source`` fetches one page of the platform's API from a cursor and returns the response bodies as
they came. ``Poller.poll_once`` produces each body unchanged to raw.orders.<channel>, waits for
Kafka's acknowledgement, and only then stores the next cursor: a crash between the two refetches the
page (duplicates are absorbed downstream by stable event ids); nothing is skipped. Cursors live in
Redis; losing them refetches from the configured start, which is safe for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import redis

from connectors.raw_producer import RawProducer
from oms.settings import Settings


@dataclass(frozen=True)
class Page:
    """One API response: its bodies (usually one, the response itself) and where to continue."""

    bodies: tuple[bytes, ...]
    next_cursor: str | None
    """None when the platform has nothing more right now: keep the cursor, poll again later."""


class Source(Protocol):
    channel: str
    shop: str

    def fetch(self, cursor: str | None) -> Page: ...


class PollError(RuntimeError):
    """A page could not be fetched; the cursor did not move."""


@dataclass
class HttpJsonSource:
    """GET ``url`` with the cursor as a query parameter; the response body is the raw record.

    ``next_cursor`` reads the continuation from the parsed response (each API names it differently:
    Lazada ``offset``, TikTok ``next_page_token``, Shopee ``next_cursor``). Signing requests is the
    caller's ``headers`` function, so a platform's request signature stays out of this class.
    """

    channel: str
    shop: str
    url: str
    cursor_param: str
    next_cursor: Callable[[object], str | None]
    headers: Callable[[str], Mapping[str, str]] = lambda _url: {}
    timeout_s: float = 10.0

    def fetch(self, cursor: str | None) -> Page:
        query = {self.cursor_param: cursor} if cursor else {}
        sep = "&" if "?" in self.url else "?"
        url = self.url + (sep + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers=dict(self.headers(url)))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body: bytes = response.read()
        except OSError as exc:
            raise PollError(f"{self.channel} {self.shop}: GET {url} failed: {exc}") from exc
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None  # still produced: normalization dead-letters it with the original bytes
        return Page(bodies=(body,), next_cursor=self.next_cursor(parsed) if parsed is not None else None)


class Poller:
    def __init__(self, settings: Settings, source: Source, producer: RawProducer, cursors: redis.Redis) -> None:
        self.settings = settings
        self.source = source
        self.producer = producer
        self.cursors = cursors

    @property
    def cursor_key(self) -> str:
        return f"{self.settings.topic_prefix}oms:poll:{self.source.channel}:{self.source.shop}"

    def cursor(self) -> str | None:
        value = self.cursors.get(self.cursor_key)
        return value.decode() if isinstance(value, bytes) else None

    def poll_once(self) -> int:
        """Fetch one page, produce it, and advance the cursor only after Kafka acknowledged it."""
        page = self.source.fetch(self.cursor())
        for body in page.bodies:
            delivery = "sha256:" + hashlib.sha256(body).hexdigest()
            self.producer.send(self.source.channel, body, shop=self.source.shop, delivery_id=delivery)
        self.producer.flush()  # raises ProduceError: the cursor stays, the page is fetched again
        if page.next_cursor is not None:
            self.cursors.set(self.cursor_key, page.next_cursor)
        return len(page.bodies)
