"""X-Line-Retry-Key, the rate limit and the monthly quota, as LINE enforces them."""

from __future__ import annotations

import json
import uuid

import pytest
from linebot.v3.messaging import (
    MulticastRequest,
    PushMessageRequest,
    QuotaType,
    ReplyMessageRequest,
    TextMessage,
)
from linebot.v3.messaging.exceptions import ApiException

from floodwatch.line_standin import LineStandIn, new_user_id
from floodwatch.line_standin._policy import MonthlyQuota, RetryKeyLedger, TokenBucket

TOKEN = "test-channel-token"


def _multicast(users, text="เตือนภัย"):
    return MulticastRequest(to=users, messages=[TextMessage(text=text)])


def test_reused_retry_key_gets_409_with_the_accepted_request_id_and_is_not_executed(standin, api):
    users = [new_user_id() for _ in range(2)]
    key = str(uuid.uuid4())
    first = api.multicast_with_http_info(_multicast(users), x_line_retry_key=key)

    with pytest.raises(ApiException) as again:
        api.multicast(_multicast(users), x_line_retry_key=key)
    assert again.value.status == 409
    assert json.loads(again.value.body) == {"message": "The retry key is already accepted"}
    assert again.value.headers["x-line-accepted-request-id"] == first.headers["x-line-request-id"]
    assert again.value.headers["x-line-request-id"] != first.headers["x-line-request-id"]
    assert len(standin.delivered_messages()) == 2
    assert standin.quota_used() == 2


def test_retry_key_must_be_a_uuid(standin, api):
    with pytest.raises(ApiException) as caught:
        api.multicast(_multicast([new_user_id()]), x_line_retry_key="alert-42-chunk-1")
    assert caught.value.status == 400 and "UUID" in json.loads(caught.value.body)["message"]
    assert standin.delivered_messages() == []


def test_retry_key_is_refused_on_reply(standin, raw):
    key = str(uuid.uuid4())
    body = {"replyToken": "0" * 32, "messages": [{"type": "text", "text": "x"}]}
    status, _, answer = raw(standin, "POST", "/v2/bot/message/reply", body, headers={"X-Line-Retry-Key": key})
    assert status == 400 and "push, multicast, narrowcast and broadcast only" in answer["message"]


def test_a_rejected_request_does_not_use_up_its_retry_key(standin, api, raw):
    key = str(uuid.uuid4())
    bad = {"to": [new_user_id()], "messages": [{"type": "text"}]}
    assert raw(standin, "POST", "/v2/bot/message/multicast", bad, headers={"X-Line-Retry-Key": key})[0] == 400
    api.multicast(_multicast([new_user_id()]), x_line_retry_key=key)
    assert len(standin.delivered_messages()) == 1


def test_retry_keys_are_honoured_for_24_hours():
    ledger = RetryKeyLedger()
    key = str(uuid.uuid4())
    ledger.accept(key, "req-1", now_s=1000.0)
    assert ledger.accepted_request_id(key.upper(), now_s=1000.0 + 24 * 3600 - 1) == "req-1"
    assert ledger.accepted_request_id(key, now_s=1000.0 + 24 * 3600) is None


def test_multicast_rate_limit_answers_429_then_recovers(make_api):
    # 1 request/s with room for a burst of 3: the 4th request in a burst is refused.
    with LineStandIn(tokens={TOKEN}, multicast_rate_per_s=1.0, burst_s=3.0) as standin:
        api = make_api(standin)
        for _ in range(3):
            api.multicast(_multicast([new_user_id()]))
        with pytest.raises(ApiException) as caught:
            api.multicast(_multicast([new_user_id()]))
        assert caught.value.status == 429
        assert json.loads(caught.value.body) == {"message": "The API rate limit has been exceeded. Try again later."}
        assert "retry-after" not in {k.lower() for k in caught.value.headers}
        # Push has its own, much larger bucket.
        api.push_message(PushMessageRequest(to=new_user_id(), messages=[TextMessage(text="x")]))
        assert len(standin.delivered_messages()) == 4


def test_token_bucket_refills_at_the_rate():
    bucket = TokenBucket(rate_per_s=200.0, capacity=20.0)
    taken = sum(bucket.try_take(now_s=0.0) for _ in range(50))
    assert taken == 20
    assert bucket.try_take(now_s=0.004) is False  # 0.8 of a token
    assert bucket.try_take(now_s=0.005) is True
    # Over one simulated second at 1 request per ms, 200 more get through.
    accepted = sum(bucket.try_take(now_s=0.005 + i / 1000) for i in range(1, 1001))
    assert 199 <= accepted <= 201


def test_monthly_quota_counts_recipients_and_refuses_past_the_limit(make_api):
    with LineStandIn(tokens={TOKEN}, monthly_quota=10) as standin:
        api = make_api(standin)
        quota = api.get_message_quota()
        assert (quota.type, quota.value) == (QuotaType.LIMITED, 10)

        # Five message objects to two residents count as two messages, as at LINE.
        api.multicast(MulticastRequest(to=[new_user_id(), new_user_id()], messages=[TextMessage(text="x")] * 5))
        api.multicast(_multicast([new_user_id() for _ in range(6)]))
        assert api.get_message_quota_consumption().total_usage == 8

        with pytest.raises(ApiException) as caught:
            api.multicast(_multicast([new_user_id() for _ in range(3)]))
        assert caught.value.status == 429
        assert json.loads(caught.value.body) == {"message": "You have reached your monthly limit."}
        assert api.get_message_quota_consumption().total_usage == 8

        api.multicast(_multicast([new_user_id(), new_user_id()]))
        assert api.get_message_quota_consumption().total_usage == 10
        assert len(standin.delivered_messages()) == 2 * 5 + 6 + 2


def test_quota_without_a_limit_reports_none(standin, api):
    assert api.get_message_quota().type == QuotaType.NONE
    assert api.get_message_quota_consumption().total_usage == 0


def test_quota_resets_with_the_month_in_japan_time():
    quota = MonthlyQuota(limit=5)
    end_of_march_jst = 1743433200.0 - 1  # 2025-03-31T23:59:59+09:00
    assert quota.try_consume(5, end_of_march_jst)
    assert not quota.try_consume(1, end_of_march_jst)
    assert quota.try_consume(1, end_of_march_jst + 2)  # April in Japan, still 31 March in Bangkok
    assert quota.total_usage(end_of_march_jst + 2) == 1


def test_reply_does_not_count_against_the_quota(make_api):
    from floodwatch.line_standin import text_message_event

    with LineStandIn(tokens={TOKEN}, monthly_quota=1) as standin:
        api = make_api(standin)
        user = new_user_id()
        event = text_message_event(user, "สถานะ")
        standin.send_webhook(standin.base_url + "/nowhere", "secret", [event])
        api.reply_message(ReplyMessageRequest(reply_token=event["replyToken"], messages=[TextMessage(text="ok")]))
        assert api.get_message_quota_consumption().total_usage == 0
