"""oms.alerting without a broker: the alert book (ids, revisions, acks, storm cap) and the webhook body."""

from __future__ import annotations

import threading
from typing import Any

from oms.alerting import AlertBook, DeliveryStats, _deliver, slack_payload
from oms.settings import Settings
from schemas.codec import codec
from streams.detectors import Alert


def _alert(key: str = "oversell:sku:A", state: str = "firing", at: int = 1_000, kind: str = "oversell") -> Alert:
    subject = key.split(":", 1)[1]
    return Alert(key, kind, "critical", subject, state, f"{subject} {state}", {"n": "1"}, at)


def test_an_alert_opens_once_then_resolves_with_the_same_id_and_a_higher_revision() -> None:
    book = AlertBook()
    opened = book.apply(_alert())
    assert opened is not None and opened["state"] == "firing" and opened["revision"] == 1
    assert book.apply(_alert(at=2_000)) is None, "a second firing of an open key is no new alert"
    resolved = book.apply(_alert(state="resolved", at=3_000))
    assert resolved is not None
    assert (resolved["alert_id"], resolved["state"], resolved["revision"]) == (opened["alert_id"], "resolved", 2)
    assert resolved["opened_ms"] == 1_000 and resolved["updated_ms"] == 3_000
    assert book.apply(_alert(state="resolved", at=4_000)) is None
    again = book.apply(_alert(at=5_000))
    assert again is not None and again["alert_id"] != opened["alert_id"], "a new occurrence gets a new id"


def test_ack_marks_an_open_alert_acked_by_someone_and_resolve_keeps_who() -> None:
    book = AlertBook()
    opened = book.apply(_alert())
    assert opened is not None
    assert book.ack("no-such-id", "ana", 1_500) is None
    acked = book.ack(opened["alert_id"], "ana", 1_500)
    assert acked is not None and (acked["state"], acked["acked_by"], acked["revision"]) == ("acked", "ana", 2)
    assert book.ack(opened["alert_id"], "ben", 1_600) is None, "acking twice changes nothing"
    resolved = book.apply(_alert(state="resolved", at=2_000))
    assert resolved is not None and resolved["acked_by"] == "ana" and resolved["revision"] == 3


def test_more_alerts_of_a_kind_than_the_cap_are_counted_in_one_summary_that_resolves_when_all_clear() -> None:
    book = AlertBook(cap_per_kind=3)
    out = [book.apply(_alert(f"oversell:sku:S{i}", at=i)) for i in range(10)]
    published = [r for r in out if r is not None]
    assert len(published) == 4, "three alerts, then one summary for the other seven"
    summary = published[-1]
    assert summary["dedupe_key"] == "oversell:*" and summary["subject"] == "*"
    assert book.open["oversell:*"]["evidence"]["count"] == "7"
    assert book.apply(_alert("price_error:sku:S1", kind="price_error")) is not None, "other kinds have their own cap"
    cleared = [book.apply(_alert(f"oversell:sku:S{i}", state="resolved", at=100 + i)) for i in range(3, 10)]
    assert [r["dedupe_key"] for r in cleared if r is not None] == ["oversell:*"], "the summary clears with the last"


def test_restore_keeps_open_alerts_and_forgets_resolved_ones() -> None:
    first = AlertBook()
    records = [first.apply(_alert("oversell:sku:A")), first.apply(_alert("oversell:sku:B"))]
    records.append(first.apply(_alert("oversell:sku:A", state="resolved", at=2_000)))
    book = AlertBook()
    restored = book.restore([r for r in records if r is not None])
    assert [a.dedupe_key for a in restored] == ["oversell:sku:B"]
    assert book.apply(_alert("oversell:sku:B")) is None, "still open after the restart: not raised again"


def test_every_alert_record_round_trips_through_its_avro_schema() -> None:
    book = AlertBook()
    record = book.apply(_alert())
    assert record is not None
    alert_codec = codec("alert")
    assert alert_codec.decode(alert_codec.encode(record)) == record


def test_the_webhook_body_is_slack_compatible_text_with_the_evidence() -> None:
    record = AlertBook().apply(_alert())
    assert record is not None
    body = slack_payload(record)
    assert body["text"].startswith(":rotating_light: [CRITICAL] oversell firing: sku:A firing")
    assert "n=1" in body["text"] and body["alert"]["alert_id"] == record["alert_id"]


def test_a_failing_webhook_is_retried_until_it_answers() -> None:
    calls: list[dict[str, Any]] = []

    def flaky(url: str, body: dict[str, Any], timeout: float) -> None:
        calls.append(body)
        if len(calls) < 3:
            raise ConnectionError("refused")

    stats = DeliveryStats()
    settings = Settings(alert_retry_max_s=0.01)
    assert _deliver("http://127.0.0.1:9/", {"text": "x"}, settings, threading.Event(), stats, flaky)
    assert (stats.delivered, stats.failed_attempts, len(calls)) == (1, 2, 3)
    stopped = threading.Event()
    stopped.set()
    assert not _deliver("http://127.0.0.1:9/", {"text": "x"}, settings, stopped, stats, flaky), "stop ends retrying"
