"""Webhook events as LINE sends them: builders, the signature, and delivery over HTTP.

Every builder returns a plain dict shaped like the event LINE posts (valid
against ``spec/webhook.yml``): a ``webhookEventId`` in ULID form, a 32-hex
``replyToken`` where the event carries one, a millisecond ``timestamp``,
``mode: active`` and ``deliveryContext``. :func:`send_webhook` posts them
with ``x-line-signature = base64(HMAC-SHA256(channel secret, raw body))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DEFAULT_BOT_USER_ID = "U" + "f100d" + "0" * 27  # a stable, valid-looking bot id for the demo


def new_user_id() -> str:
    """A fresh LINE user id: ``U`` and 32 lowercase hex digits."""
    return "U" + secrets.token_hex(16)


def new_reply_token() -> str:
    return secrets.token_hex(16)


def new_message_id() -> str:
    # LINE message ids are decimal strings of about 18 digits.
    return str(secrets.randbelow(9 * 10**17) + 10**17)


def new_webhook_event_id(now_ms: int | None = None) -> str:
    """A ULID: 48-bit millisecond time and 80 random bits in Crockford base32 (26 characters)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (now_ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _common(kind: str, user_id: str, timestamp_ms: int | None, redelivery: bool) -> dict[str, Any]:
    now_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return {
        "type": kind,
        "mode": "active",
        "timestamp": now_ms,
        "source": {"type": "user", "userId": user_id},
        "webhookEventId": new_webhook_event_id(now_ms),
        "deliveryContext": {"isRedelivery": redelivery},
    }


def follow_event(
    user_id: str,
    *,
    is_unblocked: bool = False,
    reply_token: str | None = None,
    timestamp_ms: int | None = None,
    redelivery: bool = False,
) -> dict[str, Any]:
    """A resident added the account as a friend (or unblocked it: ``is_unblocked=True``)."""
    event = _common("follow", user_id, timestamp_ms, redelivery)
    event["replyToken"] = reply_token or new_reply_token()
    event["follow"] = {"isUnblocked": is_unblocked}
    return event


def unfollow_event(user_id: str, *, timestamp_ms: int | None = None, redelivery: bool = False) -> dict[str, Any]:
    """A resident blocked the account. No reply token: LINE sends none."""
    return _common("unfollow", user_id, timestamp_ms, redelivery)


def text_message_event(
    user_id: str,
    text: str,
    *,
    reply_token: str | None = None,
    timestamp_ms: int | None = None,
    redelivery: bool = False,
) -> dict[str, Any]:
    """A resident typed ``text`` in the chat."""
    event = _common("message", user_id, timestamp_ms, redelivery)
    event["replyToken"] = reply_token or new_reply_token()
    event["message"] = {
        "type": "text",
        "id": new_message_id(),
        "text": text,
        "quoteToken": secrets.token_urlsafe(48),
    }
    return event


def location_message_event(
    user_id: str,
    latitude: float,
    longitude: float,
    *,
    title: str | None = None,
    address: str | None = None,
    reply_token: str | None = None,
    timestamp_ms: int | None = None,
    redelivery: bool = False,
) -> dict[str, Any]:
    """A resident shared a location (the chat's "+" > Location, or a quick-reply location button)."""
    event = _common("message", user_id, timestamp_ms, redelivery)
    event["replyToken"] = reply_token or new_reply_token()
    message: dict[str, Any] = {"type": "location", "id": new_message_id(), "latitude": latitude,
                               "longitude": longitude}
    if title is not None:
        message["title"] = title
    if address is not None:
        message["address"] = address
    event["message"] = message
    return event


def media_message_event(
    user_id: str,
    kind: str = "image",
    *,
    message_id: str | None = None,
    duration_ms: int | None = None,
    reply_token: str | None = None,
    timestamp_ms: int | None = None,
    redelivery: bool = False,
) -> dict[str, Any]:
    """A resident sent an image, video or audio clip; its bytes are at the content endpoint.

    Use :meth:`LineStandIn.media_event` to register the bytes the content
    endpoint then serves under this event's message id.
    """
    if kind not in ("image", "video", "audio"):
        raise ValueError(f"media kind must be image, video or audio, got {kind!r}")
    event = _common("message", user_id, timestamp_ms, redelivery)
    event["replyToken"] = reply_token or new_reply_token()
    message: dict[str, Any] = {"type": kind, "id": message_id or new_message_id(), "contentProvider": {"type": "line"}}
    if kind != "audio":
        message["quoteToken"] = secrets.token_urlsafe(48)
    if kind in ("video", "audio"):
        message["duration"] = 10_000 if duration_ms is None else duration_ms
    event["message"] = message
    return event


def postback_event(
    user_id: str,
    data: str,
    *,
    params: dict[str, str] | None = None,
    reply_token: str | None = None,
    timestamp_ms: int | None = None,
    redelivery: bool = False,
) -> dict[str, Any]:
    """A resident tapped a postback action (a quick-reply button) carrying ``data``."""
    event = _common("postback", user_id, timestamp_ms, redelivery)
    event["replyToken"] = reply_token or new_reply_token()
    event["postback"] = {"data": data} if params is None else {"data": data, "params": params}
    return event


def webhook_body(events: Sequence[dict[str, Any]], destination: str = DEFAULT_BOT_USER_ID) -> bytes:
    """The raw request body LINE posts: compact UTF-8 JSON (Thai stays Thai, not ``\\u`` escapes)."""
    payload = {"destination": destination, "events": list(events)}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(channel_secret: str, body: bytes) -> str:
    """``x-line-signature``: base64 of HMAC-SHA256 keyed with the channel secret over the raw body."""
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What the webhook receiver answered."""

    status: int
    body: str
    events: tuple[dict[str, Any], ...]


def send_webhook(
    url: str,
    channel_secret: str,
    events: Sequence[dict[str, Any]],
    *,
    destination: str = DEFAULT_BOT_USER_ID,
    timeout_s: float = 10.0,
    signature: str | None = None,
) -> WebhookResult:
    """POST ``events`` to ``url`` the way LINE does, signed with ``channel_secret``.

    ``signature`` overrides the computed one (to test that a receiver rejects a
    bad signature). A 4xx/5xx answer is returned, not raised: the caller
    asserts on it. Only a failure to connect raises (``OSError``).
    """
    body = webhook_body(events, destination)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "LineBotWebhook/2.0",
            "x-line-signature": sign(channel_secret, body) if signature is None else signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return WebhookResult(response.status, response.read().decode("utf-8", "replace"), tuple(events))
    except urllib.error.HTTPError as exc:
        return WebhookResult(exc.code, exc.read().decode("utf-8", "replace"), tuple(events))
