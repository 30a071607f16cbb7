"""The one seam to LINE's Messaging API, through line-bot-sdk v3.

Every call returns or raises floodwatch types: :class:`SendOutcome` for
multicast/push (so the outbox can tell "delivered", "retry" and "give up"
apart) and :class:`floodwatch.errors.LineApiError` for the rest. Nothing
outside this module imports ``linebot``'s messaging client.

Retry rules (LINE's documentation, see ../shared/line-openapi/README.md):
2xx delivered; 409 with a retry key = LINE already accepted that key, so it
was delivered; 5xx, 429 and timeouts/connection errors are retried with the
SAME key; any other 4xx is never retried.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import urllib3
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    MessagingApi,
    MessagingApiBlob,
    MulticastRequest,
    PushMessageRequest,
    ReplyMessageRequest,
    RichMenuRequest,
)

from floodwatch.errors import ConfigError, LineApiError

log = logging.getLogger("floodwatch.alerts.line")

QUOTA_MESSAGE = "You have reached your monthly limit."


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one multicast/push attempt came to."""

    result: Literal["delivered", "retry", "failed", "quota"]
    status: int | None          # HTTP status, None for a timeout or connection error
    message: str = ""
    request_id: str | None = None


def classify(status: int | None, message: str) -> Literal["delivered", "retry", "failed", "quota"]:
    """The retry rule as a pure function of the HTTP status and LINE's message."""
    if status is None:
        return "retry"  # timeout or connection error: the same key makes a resend safe
    if 200 <= status < 300 or status == 409:
        return "delivered"
    if status == 429:
        return "quota" if "monthly limit" in message.lower() else "retry"
    if status >= 500:
        return "retry"
    return "failed"


class LineClient:
    """line-bot-sdk's MessagingApi with floodwatch's error handling; thread-safe."""

    def __init__(self, api_base_url: str, channel_access_token: str | None, timeout_s: float = 10.0,
                 pool_size: int = 8, data_api_base_url: str | None = None) -> None:
        if not channel_access_token:
            raise ConfigError(
                "LINE channel access token is not set; set FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN "
                "(LINE Developers console > your channel > Messaging API > Channel access token)"
            )
        config = Configuration(host=api_base_url.rstrip("/"), access_token=channel_access_token)
        config.retries = urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0)  # we retry, with the key
        config.connection_pool_maxsize = pool_size
        self._client = ApiClient(config)
        self._api = MessagingApi(self._client)
        self.timeout_s = timeout_s
        # LINE's data API (content, rich menu images) has its own host; the SDK's blob client
        # uses Configuration.host, so it gets its own client (api-data.line.me, or a stand-in).
        data_config = Configuration(host=(data_api_base_url or api_base_url).rstrip("/"),
                                    access_token=channel_access_token)
        data_config.retries = urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0)
        self._data_client = ApiClient(data_config)
        self._blob = MessagingApiBlob(self._data_client)

    def close(self) -> None:
        for client in (self._client, self._data_client):
            try:
                client.close()
            except Exception:  # pragma: no cover - closing a pool never matters enough to fail
                pass

    def __enter__(self) -> "LineClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- sending
    def multicast(self, user_ids: list[str], messages: list[dict[str, Any]], retry_key: str) -> SendOutcome:
        request = MulticastRequest.from_dict({"to": user_ids, "messages": messages})
        return self._send(lambda: self._api.multicast_with_http_info(
            request, x_line_retry_key=retry_key, _request_timeout=self.timeout_s))

    def push(self, user_id: str, messages: list[dict[str, Any]], retry_key: str) -> SendOutcome:
        request = PushMessageRequest.from_dict({"to": user_id, "messages": messages})
        return self._send(lambda: self._api.push_message_with_http_info(
            request, x_line_retry_key=retry_key, _request_timeout=self.timeout_s))

    def _send(self, call) -> SendOutcome:  # noqa: ANN001
        try:
            response = call()
        except ApiException as exc:
            message = _error_message(exc.body)
            return SendOutcome(classify(exc.status, message), exc.status, message, _request_id(exc.headers))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return SendOutcome("retry", None, f"{type(exc).__name__}: {exc}")
        return SendOutcome("delivered", response.status_code, "", _request_id(response.headers))

    def reply(self, reply_token: str, messages: list[dict[str, Any]]) -> None:
        request = ReplyMessageRequest.from_dict({"replyToken": reply_token, "messages": messages})
        try:
            self._api.reply_message(request, _request_timeout=self.timeout_s)
        except ApiException as exc:
            raise LineApiError(exc.status or 0, _error_message(exc.body)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LineApiError(0, f"LINE API unreachable: {exc}") from exc

    # ------------------------------------------------------ content, menus
    def message_content(self, message_id: str) -> tuple[bytes, str]:
        """What a user sent (image, video, audio): (bytes, Content-Type), from the data API."""
        try:
            response = self._blob.get_message_content_with_http_info(message_id, _request_timeout=self.timeout_s)
        except ApiException as exc:
            raise LineApiError(exc.status or 0, _error_message(exc.body)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LineApiError(0, f"LINE data API unreachable: {exc}; check FLOODWATCH_LINE__DATA_API_BASE_URL"
                               ) from exc
        content_type = ""
        for name, value in dict(response.headers or {}).items():
            if name.lower() == "content-type":
                content_type = value.split(";")[0].strip().lower()
        return bytes(response.data or b""), content_type

    def rich_menus(self) -> list[dict[str, Any]]:
        """Every rich menu of the channel (``GET /v2/bot/richmenu/list``), as LINE's JSON."""
        return self._read(self._api.get_rich_menu_list).get("richmenus", [])

    def create_rich_menu(self, menu: dict[str, Any]) -> str:
        request = RichMenuRequest.from_dict(menu)
        return self._call(lambda: self._api.create_rich_menu(request, _request_timeout=self.timeout_s)).rich_menu_id

    def upload_rich_menu_image(self, rich_menu_id: str, image: bytes, content_type: str) -> None:
        self._call(lambda: self._blob.set_rich_menu_image(rich_menu_id, image, _headers={"Content-Type": content_type},
                                                          _request_timeout=self.timeout_s))

    def rich_menu_has_image(self, rich_menu_id: str) -> bool:
        try:
            self._blob.get_rich_menu_image(rich_menu_id, _request_timeout=self.timeout_s)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise LineApiError(exc.status or 0, _error_message(exc.body)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LineApiError(0, f"LINE data API unreachable: {exc}") from exc
        return True

    def set_default_rich_menu(self, rich_menu_id: str) -> None:
        self._call(lambda: self._api.set_default_rich_menu(rich_menu_id, _request_timeout=self.timeout_s))

    def default_rich_menu(self) -> str | None:
        try:
            return self._api.get_default_rich_menu_id(_request_timeout=self.timeout_s).rich_menu_id
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise LineApiError(exc.status or 0, _error_message(exc.body)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LineApiError(0, f"LINE API unreachable: {exc}") from exc

    def delete_rich_menu(self, rich_menu_id: str) -> None:
        self._call(lambda: self._api.delete_rich_menu(rich_menu_id, _request_timeout=self.timeout_s))

    def _call(self, call) -> Any:  # noqa: ANN001
        try:
            return call()
        except ApiException as exc:
            raise LineApiError(exc.status or 0, _error_message(exc.body)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LineApiError(0, f"LINE API unreachable: {exc}; check FLOODWATCH_LINE__API_BASE_URL") from exc

    # ---------------------------------------------------------------- reads
    def bot_info(self) -> dict[str, Any]:
        return self._read(self._api.get_bot_info)

    def quota(self) -> dict[str, Any]:
        """``{"type": "limited"|"none", "value": int|None, "totalUsage": int}``."""
        limit = self._read(self._api.get_message_quota)
        usage = self._read(self._api.get_message_quota_consumption)
        return {"type": limit.get("type"), "value": limit.get("value"), "totalUsage": usage.get("totalUsage", 0)}

    def _read(self, call) -> dict[str, Any]:  # noqa: ANN001
        try:
            return call(_request_timeout=self.timeout_s).to_dict()
        except ApiException as exc:
            raise LineApiError(exc.status or 0, _error_message(exc.body)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LineApiError(0, f"LINE API unreachable: {exc}; check FLOODWATCH_LINE__API_BASE_URL") from exc


def _request_id(headers: Any) -> str | None:
    # header names are case-insensitive; LINE's casing is not promised
    for name, value in dict(headers or {}).items():
        if name.lower() == "x-line-request-id":
            return value
    return None


def _error_message(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return str(json.loads(body).get("message", body))
    except (ValueError, AttributeError):
        return str(body)[:300]


class Pacer:
    """Spaces request starts ``1/rate_per_s`` apart across threads (LINE's per-channel rate limit).

    A sender that stalled (a slow answer, the interpreter busy) may catch up by
    at most ``catch_up`` requests sent back to back, so the average never
    exceeds the rate and a burst stays far inside any sane limiter's bucket.
    """

    def __init__(self, rate_per_s: float, catch_up: int = 4) -> None:
        self.interval_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.catch_up_s = catch_up * self.interval_s
        self._next_s = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.interval_s <= 0:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now - self.catch_up_s, self._next_s)
            self._next_s = slot + self.interval_s
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
