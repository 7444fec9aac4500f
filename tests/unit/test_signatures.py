"""Webhook signature schemes, one per platform, checked against independently built signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import SecretStr

from connectors import signatures
from connectors.webhooks import identity
from oms.settings import Settings

BODY = b'{"code":3,"shop_id":123,"timestamp":1795824000,"data":{"ordersn":"X1","status":"SHIPPED"}}'


def _settings(**kw: object) -> Settings:
    return Settings(**kw)  # type: ignore[arg-type]


def test_shopee_signature_covers_the_callback_url_and_the_body() -> None:
    url = "https://oms.example.com/webhooks/shopee"
    good = hmac.new(b"pk", f"{url}|".encode() + BODY, hashlib.sha256).hexdigest()
    assert signatures.shopee("pk", url, BODY, good).ok
    assert signatures.shopee("pk", url, BODY, good.upper()).ok, "hex case does not matter"
    assert not signatures.shopee("pk", url + "x", BODY, good).ok, "another URL must not verify"
    assert not signatures.shopee("pk", url, BODY + b" ", good).ok, "a changed body must not verify"


def test_lazada_and_tiktok_sign_app_key_plus_body_with_the_secret() -> None:
    good = hmac.new(b"secret", b"appkey" + BODY, hashlib.sha256).hexdigest()
    assert signatures.app_key_prefixed("appkey", "secret", BODY, good).ok
    assert not signatures.app_key_prefixed("other", "secret", BODY, good).ok


def test_shopify_signature_is_base64_and_case_sensitive() -> None:
    good = base64.b64encode(hmac.new(b"s3cret", BODY, hashlib.sha256).digest()).decode()
    assert signatures.shopify("s3cret", BODY, good).ok
    assert not signatures.shopify("s3cret", BODY, good.swapcase()).ok


def test_missing_signature_header_is_named_in_the_reason() -> None:
    verdict = signatures.shopify("s3cret", BODY, None)
    assert not verdict.ok and "X-Shopify-Hmac-Sha256" in verdict.reason


def test_a_channel_without_a_configured_secret_refuses_instead_of_accepting_unsigned() -> None:
    with pytest.raises(signatures.NotConfigured, match="OMS_POS_WEBHOOK_SECRET"):
        signatures.verify(_settings(), "pos", "http://x/webhooks/pos", BODY, {})


def test_verify_uses_each_channels_scheme_and_secret() -> None:
    settings = _settings(pos_webhook_secret=SecretStr("possecret"), tiktok_app_key="k", tiktok_app_secret="t")
    pos_sig = hmac.new(b"possecret", BODY, hashlib.sha256).hexdigest()
    assert signatures.verify(settings, "pos", "u", BODY, {"X-OMS-Signature": pos_sig}).ok
    tiktok_sig = hmac.new(b"t", b"k" + BODY, hashlib.sha256).hexdigest()
    assert signatures.verify(settings, "tiktok", "u", BODY, {"Authorization": tiktok_sig}).ok
    assert not signatures.verify(settings, "tiktok", "u", BODY, {"Authorization": pos_sig}).ok


def test_delivery_identity_prefers_the_platforms_own_id_and_falls_back_to_the_body_hash() -> None:
    assert identity("shopify", BODY, {"X-Shopify-Webhook-Id": "w-1", "X-Shopify-Shop-Domain": "s.myshopify.com"}) == (
        "w-1",
        "s.myshopify.com",
    )
    assert identity("tiktok", b'{"tts_notification_id":"n-9","shop_id":"77"}', {}) == ("n-9", "77")
    delivery, shop = identity("shopee", BODY, {})
    assert delivery == "sha256:" + hashlib.sha256(BODY).hexdigest() and shop == "123"
    assert identity("shopee", b"not json", {})[0].startswith("sha256:"), "a malformed body still gets an id"
