"""The stand-in answers line-bot-sdk like LINE: accepted sends are recorded, bad tokens get 401."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from linebot.v3.messaging import (
    MulticastRequest,
    PushMessageRequest,
    ReplyMessageRequest,
    TextMessage,
)
from linebot.v3.messaging.exceptions import ApiException

from floodwatch.line_standin import LineStandIn, follow_event, new_user_id

WARNING_TH = "เตือนภัย: ระดับน้ำคลองลำพญา 1.42 ม.รทก. / Warning: Lam Phaya canal at 1.42 m MSL"


def test_multicast_is_accepted_and_recorded_per_recipient(standin, api):
    residents = [new_user_id() for _ in range(3)]
    key = str(uuid.uuid4())
    response = api.multicast_with_http_info(
        MulticastRequest(to=residents, messages=[TextMessage(text=WARNING_TH)]), x_line_retry_key=key
    )

    assert response.status_code == 200
    request_id = response.headers["x-line-request-id"]
    uuid.UUID(request_id)
    delivered = standin.delivered_messages()
    assert [(d.user_id, d.message["text"], d.retry_key, d.request_id) for d in delivered] == [
        (user, WARNING_TH, key, request_id) for user in residents
    ]
    assert standin.messages_for(residents[1]) == [{"type": "text", "text": WARNING_TH}]
    (recorded,) = standin.requests("/v2/bot/message/multicast")
    assert recorded.status == 200 and recorded.headers["x-line-retry-key"] == key
    assert recorded.body["to"] == residents and recorded.token_valid


def test_push_answers_sent_message_ids(standin, api):
    user = new_user_id()
    response = api.push_message(PushMessageRequest(to=user, messages=[TextMessage(text="a"), TextMessage(text="b")]))
    assert len(response.sent_messages) == 2
    assert all(m.id.isdigit() for m in response.sent_messages)
    assert [m["text"] for m in standin.messages_for(user)] == ["a", "b"]


def test_wrong_token_gets_401_with_lines_body_and_nothing_is_sent(standin, make_api):
    intruder = make_api(standin, token="stolen-or-stale")
    with pytest.raises(ApiException) as caught:
        intruder.multicast(MulticastRequest(to=[new_user_id()], messages=[TextMessage(text="x")]))
    assert caught.value.status == 401
    assert json.loads(caught.value.body) == {
        "message": "Authentication failed. Confirm that the access token in the authorization header is valid."
    }
    assert caught.value.headers["x-line-request-id"]
    assert standin.delivered_messages() == []
    assert standin.requests()[0].token_valid is False


def test_missing_authorization_header_gets_401(standin, raw):
    status, headers, body = raw(standin, "GET", "/v2/bot/info", token=None)
    assert status == 401
    assert body["message"].startswith("Authorization header required")
    assert "x-line-request-id" in headers


def test_unknown_endpoint_gets_404_like_line(standin, raw):
    status, headers, body = raw(standin, "GET", "/v2/bot/insight/followers")
    assert (status, body) == (404, {"message": "Not found"})
    assert "x-line-request-id" in headers


def test_reply_needs_a_reply_token_the_platform_issued_and_uses_it_once(standin, api):
    # A real HTTP receiver is not needed to issue a token: the stand-in learns it
    # when it sends the event; here the receiver is the stand-in's own 404.
    user = new_user_id()
    event = follow_event(user)
    standin.send_webhook(standin.base_url + "/nowhere", "secret", [event])

    api.reply_message(ReplyMessageRequest(reply_token=event["replyToken"], messages=[TextMessage(text="ยินดีต้อนรับ")]))
    assert standin.messages_for(user) == [{"type": "text", "text": "ยินดีต้อนรับ"}]

    with pytest.raises(ApiException) as again:
        api.reply_message(ReplyMessageRequest(reply_token=event["replyToken"], messages=[TextMessage(text="x")]))
    assert again.value.status == 400 and json.loads(again.value.body)["message"] == "Invalid reply token"
    assert len(standin.messages_for(user)) == 1


def test_bot_info_and_profiles(standin, api):
    info = api.get_bot_info()
    assert info.user_id == standin.bot_user_id and info.chat_mode == "bot"

    user = new_user_id()
    with pytest.raises(ApiException) as unknown:
        api.get_profile(user)
    assert unknown.value.status == 404
    standin.add_profile(user, "สมชาย", language="th")
    profile = api.get_profile(user)
    assert (profile.display_name, profile.language) == ("สมชาย", "th")


def test_received_endpoint_lets_another_process_read_what_arrived(standin, api):
    user = new_user_id()
    api.multicast(MulticastRequest(to=[user], messages=[TextMessage(text=WARNING_TH)]))
    with urllib.request.urlopen(standin.base_url + "/_standin/received", timeout=5) as response:
        received = json.load(response)
    assert received["counts"]["delivered_messages"] == 1
    assert received["delivered"][0]["user_id"] == user
    assert received["delivered"][0]["message"]["text"] == WARNING_TH
    assert received["requests"][0]["path"] == "/v2/bot/message/multicast"


def test_reset_forgets_everything(standin, api):
    api.multicast(MulticastRequest(to=[new_user_id()], messages=[TextMessage(text="x")]))
    standin.reset()
    assert standin.requests() == [] and standin.delivered_messages() == [] and standin.quota_used() == 0


def test_two_stand_ins_run_side_by_side_and_stop_cleanly():
    with LineStandIn(tokens={"a"}) as first, LineStandIn(tokens={"b"}) as second:
        assert first.base_url != second.base_url
        port = first.port
    with pytest.raises(RuntimeError, match="not running"):
        first.base_url
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/bot/info", timeout=2)


def test_received_endpoint_can_answer_counts_only_or_one_user(standin, api):
    users = [new_user_id() for _ in range(3)]
    api.multicast(MulticastRequest(to=users, messages=[TextMessage(text="x")]))
    with urllib.request.urlopen(standin.base_url + "/_standin/received?only=counts", timeout=5) as response:
        assert json.load(response) == {
            "counts": {"requests": 1, "accepted": 1, "delivered_messages": 3, "recipients": 3, "quota_used": 3}
        }
    with urllib.request.urlopen(f"{standin.base_url}/_standin/received?user_id={users[1]}", timeout=5) as response:
        assert [d["user_id"] for d in json.load(response)["delivered"]] == [users[1]]
