"""A local stand-in for LINE's Messaging API, for floodwatch's tests and demo.

It answers the endpoints floodwatch calls the way LINE does (status codes,
error bodies, ``x-line-request-id``), validates bodies against LINE's own
OpenAPI spec (``line_standin/spec/``) and the limits LINE documents beside
it, honours ``X-Line-Retry-Key``, rate limits and a monthly quota, keeps rich
menus and what users sent (content endpoint), can be told to fail, records
what it received, and sends signed webhook events.
See docs/line-standin.md.
"""

from floodwatch.line_standin._limits import utf16_length
from floodwatch.line_standin._server import DeliveredMessage, LineStandIn, RecordedRequest
from floodwatch.line_standin._spec import ErrorDetail, messaging_spec, webhook_spec
from floodwatch.line_standin._webhook import (
    DEFAULT_BOT_USER_ID,
    WebhookResult,
    follow_event,
    location_message_event,
    media_message_event,
    new_reply_token,
    new_user_id,
    new_webhook_event_id,
    postback_event,
    send_webhook,
    sign,
    text_message_event,
    unfollow_event,
    webhook_body,
)

__all__ = [
    "DEFAULT_BOT_USER_ID",
    "DeliveredMessage",
    "ErrorDetail",
    "LineStandIn",
    "RecordedRequest",
    "WebhookResult",
    "follow_event",
    "location_message_event",
    "media_message_event",
    "messaging_spec",
    "new_reply_token",
    "new_user_id",
    "new_webhook_event_id",
    "postback_event",
    "send_webhook",
    "sign",
    "text_message_event",
    "unfollow_event",
    "utf16_length",
    "webhook_body",
    "webhook_spec",
]
