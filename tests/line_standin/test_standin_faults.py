"""Failure injection: 5xx and 429 storms, answers held past the client's timeout, acks lost after delivery."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import urllib3
from linebot.v3.messaging import MulticastRequest, TextMessage
from linebot.v3.messaging.exceptions import ApiException

from floodwatch.line_standin import LineStandIn, new_user_id

TOKEN = "test-channel-token"
MULTICAST = "/v2/bot/message/multicast"


def _request(users):
    return MulticastRequest(to=users, messages=[TextMessage(text="อพยพ / Evacuate")])


def test_fail_next_answers_the_status_without_executing(standin, api):
    users = [new_user_id()]
    key = str(uuid.uuid4())
    standin.fail_next(2, status=503)
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            api.multicast(_request(users), x_line_retry_key=key)
        assert caught.value.status == 503 and caught.value.headers["x-line-request-id"]
    api.multicast(_request(users), x_line_retry_key=key)  # the same key still works: nothing was accepted
    assert len(standin.delivered_messages()) == 1
    assert [r.status for r in standin.requests(MULTICAST)] == [503, 503, 200]


def test_injected_429_looks_like_lines_rate_limit(standin, api):
    standin.fail_next(1, status=429)
    with pytest.raises(ApiException) as caught:
        api.multicast(_request([new_user_id()]))
    assert json.loads(caught.value.body) == {"message": "The API rate limit has been exceeded. Try again later."}


def test_faults_can_target_one_endpoint(standin, api):
    standin.fail_next(1, status=500, path=MULTICAST)
    assert api.get_message_quota_consumption().total_usage == 0  # not affected
    with pytest.raises(ApiException) as caught:
        api.multicast(_request([new_user_id()]))
    assert caught.value.status == 500


def test_held_answer_times_out_the_client_but_was_delivered_so_the_retry_gets_409(standin, api):
    users = [new_user_id() for _ in range(3)]
    key = str(uuid.uuid4())
    standin.delay_next(1, delay_s=5.0, execute=True)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        api.multicast(_request(users), x_line_retry_key=key, _request_timeout=0.5)
    assert time.monotonic() - started < 3
    with pytest.raises(ApiException) as again:
        api.multicast(_request(users), x_line_retry_key=key)
    assert again.value.status == 409
    assert len(standin.delivered_messages()) == 3


def test_held_answer_without_execution_lets_the_retry_deliver(standin, api):
    users = [new_user_id()]
    key = str(uuid.uuid4())
    standin.delay_next(1, delay_s=5.0, execute=False)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        api.multicast(_request(users), x_line_retry_key=key, _request_timeout=0.5)
    assert standin.delivered_messages() == []
    api.multicast(_request(users), x_line_retry_key=key)
    assert len(standin.delivered_messages()) == 1


@pytest.mark.parametrize("drop_connection", [True, False])
def test_lost_ack_after_delivery_then_retry_with_same_key_gets_409(standin, api, drop_connection):
    users = [new_user_id() for _ in range(4)]
    key = str(uuid.uuid4())
    standin.lose_ack_next(1, drop_connection=drop_connection)
    if drop_connection:
        with pytest.raises(urllib3.exceptions.HTTPError):
            api.multicast(_request(users), x_line_retry_key=key)
    else:
        with pytest.raises(ApiException) as lost:
            api.multicast(_request(users), x_line_retry_key=key)
        assert lost.value.status == 500
    first = standin.requests(MULTICAST)[0]

    with pytest.raises(ApiException) as again:
        api.multicast(_request(users), x_line_retry_key=key)
    assert again.value.status == 409
    assert again.value.headers["x-line-accepted-request-id"] == first.request_id
    delivered = standin.delivered_messages()
    assert sorted(d.user_id for d in delivered) == sorted(users)  # once each, not twice
    assert {d.request_id for d in delivered} == {first.request_id}


def test_stop_does_not_wait_for_a_held_answer(make_api):
    standin = LineStandIn(tokens={TOKEN}).start()
    api = make_api(standin)
    standin.delay_next(1, delay_s=60.0)
    import threading

    caller = threading.Thread(target=lambda: _swallow(api), daemon=True)
    caller.start()
    deadline = time.monotonic() + 5
    while not standin.requests() and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    standin.stop()
    assert time.monotonic() - started < 3
    caller.join(timeout=5)
    assert not caller.is_alive()


def _swallow(api) -> None:
    try:
        api.get_bot_info(_request_timeout=10)
    except Exception:  # the connection closes under it; that is the point
        pass
