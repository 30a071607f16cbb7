"""Webhook events the stand-in sends are shaped and signed like LINE's: line-bot-sdk verifies and parses them."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from linebot.v3 import WebhookParser
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.webhooks import FollowEvent, MessageEvent, PostbackEvent, TextMessageContent, UnfollowEvent

from floodwatch.line_standin import (
    follow_event,
    new_user_id,
    postback_event,
    send_webhook,
    sign,
    text_message_event,
    unfollow_event,
    webhook_body,
    webhook_spec,
)

SECRET = "0123456789abcdef0123456789abcdef"


def _events(user: str) -> list[dict]:
    return [
        follow_event(user),
        text_message_event(user, "สถานะ"),
        postback_event(user, "zone=moo-4", params={"via": "quick-reply"}),
        unfollow_event(user),
    ]


def test_events_validate_against_lines_webhook_spec():
    body = json.loads(webhook_body(_events(new_user_id())))
    assert webhook_spec().errors("CallbackRequest", body) == []
    # The validator is not a rubber stamp: LINE's spec requires these.
    broken = json.loads(webhook_body([follow_event(new_user_id())]))
    del broken["events"][0]["replyToken"]
    broken["destination"] = "bot"
    properties = {d.property for d in webhook_spec().errors("CallbackRequest", broken)}
    assert properties == {"destination", "events[0].replyToken"}


def test_ids_look_like_lines():
    event = text_message_event(new_user_id(), "hi")
    assert re.fullmatch(r"U[0-9a-f]{32}", event["source"]["userId"])
    assert re.fullmatch(r"[0-9a-f]{32}", event["replyToken"])
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", event["webhookEventId"])  # ULID
    assert event["message"]["id"].isdigit() and event["deliveryContext"] == {"isRedelivery": False}


def test_signature_verifies_with_line_bot_sdk_and_events_parse():
    user = new_user_id()
    body = webhook_body(_events(user)).decode("utf-8")
    parser = WebhookParser(SECRET)
    events = parser.parse(body, sign(SECRET, body.encode("utf-8")))
    assert [type(e) for e in events] == [FollowEvent, MessageEvent, PostbackEvent, UnfollowEvent]
    assert all(e.source.user_id == user for e in events)
    assert isinstance(events[1].message, TextMessageContent) and events[1].message.text == "สถานะ"
    assert events[2].postback.data == "zone=moo-4"
    with pytest.raises(InvalidSignatureError):
        parser.parse(body, sign("another-channel-secret", body.encode("utf-8")))


class _Receiver(BaseHTTPRequestHandler):
    """A bot's webhook endpoint, checked with line-bot-sdk like floodwatch's own."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8")
        try:
            events = WebhookParser(SECRET).parse(body, self.headers.get("x-line-signature", ""))
        except InvalidSignatureError:
            self.send_response(400)
            self.end_headers()
            return
        self.server.received.extend(events)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_send_webhook_posts_signed_events_over_http(receiver):
    url = f"http://127.0.0.1:{receiver.server_address[1]}/callback"
    user = new_user_id()
    result = send_webhook(url, SECRET, [follow_event(user)])
    assert (result.status, result.body) == (200, "OK")
    assert [e.source.user_id for e in receiver.received] == [user]

    forged = send_webhook(url, SECRET, [follow_event(user)], signature="bm90IGEgc2lnbmF0dXJl")
    assert forged.status == 400 and len(receiver.received) == 1


def test_stand_in_webhook_uses_its_bot_id_and_remembers_followers(standin, api, receiver):
    url = f"http://127.0.0.1:{receiver.server_address[1]}/callback"
    stays, leaves = new_user_id(), new_user_id()
    standin.send_webhook(url, SECRET, [follow_event(stays), follow_event(leaves)])
    standin.send_webhook(url, SECRET, [unfollow_event(leaves)])
    assert len(receiver.received) == 3
    assert [w.status for w in standin.webhooks_sent()] == [200, 200]
    assert api.get_profile(stays).user_id == stays
    from linebot.v3.messaging import BroadcastRequest, TextMessage

    api.broadcast(BroadcastRequest(messages=[TextMessage(text="ทดสอบ")]))
    assert [d.user_id for d in standin.delivered_messages()] == [stays]
