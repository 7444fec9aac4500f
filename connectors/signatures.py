"""How each platform signs its webhooks, as pure functions over the raw body (never a re-encoded one).

- Shopee push: hex HMAC-SHA256 with the partner key over ``callback_url + "|" + body``, in Authorization.
- Lazada push: hex HMAC-SHA256 with the app secret over ``app_key + body``, in Authorization.
- TikTok Shop webhook: hex HMAC-SHA256 with the app secret over ``app_key + body``, in Authorization.
- Shopify: base64 HMAC-SHA256 with the app secret over the body, in X-Shopify-Hmac-Sha256.
- Ours (Tokopedia legacy relay, Grab relay, POS, social/manual): hex HMAC-SHA256 with the channel's
  shared secret over the body, in X-OMS-Signature.
Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from oms.settings import Settings


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def shopee(partner_key: str, url: str, body: bytes, authorization: str | None) -> Verdict:
    return _compare(_hmac_hex(partner_key, url.encode() + b"|" + body), authorization, "Authorization")


def app_key_prefixed(app_key: str, app_secret: str, body: bytes, authorization: str | None) -> Verdict:
    """Lazada's and TikTok Shop's scheme."""
    return _compare(_hmac_hex(app_secret, app_key.encode() + body), authorization, "Authorization")


def shopify(secret: str, body: bytes, header: str | None) -> Verdict:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return _compare(digest, header, "X-Shopify-Hmac-Sha256", case_sensitive=True)


def oms_shared_secret(secret: str, body: bytes, header: str | None) -> Verdict:
    return _compare(_hmac_hex(secret, body), header, "X-OMS-Signature")


def _compare(expected: str, given: str | None, header: str, case_sensitive: bool = False) -> Verdict:
    if not given:
        return Verdict(False, f"missing {header} header")
    given = given.strip()
    if not case_sensitive:
        expected, given = expected.lower(), given.lower()
    if hmac.compare_digest(expected.encode(), given.encode()):
        return Verdict(True)
    return Verdict(False, f"{header} does not match the body signed with the configured secret")


class NotConfigured(Exception):
    """The channel's secret is not set: we refuse unsigned traffic rather than accept it."""


def verify(settings: Settings, channel: str, url: str, body: bytes, headers: Mapping[str, str]) -> Verdict:
    """Check one delivery's signature with the channel's scheme and configured secret."""
    auth = headers.get("Authorization")
    if channel == "shopee":
        return shopee(_need(settings.shopee_partner_key.get_secret_value(), "OMS_SHOPEE_PARTNER_KEY"), url, body, auth)
    if channel == "lazada":
        secret = _need(settings.lazada_app_secret.get_secret_value(), "OMS_LAZADA_APP_SECRET")
        return app_key_prefixed(_need(settings.lazada_app_key, "OMS_LAZADA_APP_KEY"), secret, body, auth)
    if channel == "tiktok":
        secret = _need(settings.tiktok_app_secret.get_secret_value(), "OMS_TIKTOK_APP_SECRET")
        return app_key_prefixed(_need(settings.tiktok_app_key, "OMS_TIKTOK_APP_KEY"), secret, body, auth)
    if channel == "shopify":
        secret = _need(settings.shopify_webhook_secret.get_secret_value(), "OMS_SHOPIFY_WEBHOOK_SECRET")
        return shopify(secret, body, headers.get("X-Shopify-Hmac-Sha256"))
    shared = {
        "tokopedia": (settings.tokopedia_webhook_secret, "OMS_TOKOPEDIA_WEBHOOK_SECRET"),
        "grab": (settings.grab_webhook_secret, "OMS_GRAB_WEBHOOK_SECRET"),
        "pos": (settings.pos_webhook_secret, "OMS_POS_WEBHOOK_SECRET"),
    }
    if channel not in shared:
        raise KeyError(channel)
    secret_value, variable = shared[channel]
    return oms_shared_secret(_need(secret_value.get_secret_value(), variable), body, headers.get("X-OMS-Signature"))


def _need(value: str, variable: str) -> str:
    if not value:
        raise NotConfigured(f"{variable} is not set; deliveries on this channel are refused until it is")
    return value
