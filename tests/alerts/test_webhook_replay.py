"""A captured webhook replayed (valid signature and all) changes nothing; an oversized body is refused unread."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from line_standin import postback_event, new_user_id, sign

from tests.alerts.conftest import SECRET
from tests.alerts.test_webhook import webhook_url  # noqa: F401 - the fixture


def test_replayed_event_acts_once(service, standin, webhook_url):  # noqa: F811
    user = new_user_id()
    event = postback_event(user, "action=add&zone=moo-3")
    first = standin.send_webhook(webhook_url, SECRET, [event])
    assert first.status == 200 and user in service.subscribers("moo-3")
    service.unsubscribe(user, "moo-3")
    replies_before = len(standin.requests("/v2/bot/message/reply"))
    replay = standin.send_webhook(webhook_url, SECRET, [event])  # same webhookEventId, freshly signed
    time.sleep(0.3)
    print(f"replay: status {replay.status}; subscribed again {user in service.subscribers('moo-3')}")
    assert replay.status == 200, "LINE must not keep redelivering it"
    assert user not in service.subscribers("moo-3")
    assert len(standin.requests("/v2/bot/message/reply")) == replies_before


def test_stale_event_is_ignored(service, standin, webhook_url):  # noqa: F811
    user = new_user_id()
    event = postback_event(user, "action=add&zone=moo-2")
    event["timestamp"] = int((time.time() - 3 * 86_400) * 1000)
    assert standin.send_webhook(webhook_url, SECRET, [event]).status == 200
    assert user not in service.subscribers("moo-2")


def test_oversized_body_is_refused_before_anything_else(service, webhook_url):  # noqa: F811
    body = b'{"destination":"x","events":[' + b" " * (2 << 20) + b"]}"
    request = urllib.request.Request(webhook_url, data=body, method="POST",
                                     headers={"x-line-signature": sign(SECRET, body), "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10)
        status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 413
