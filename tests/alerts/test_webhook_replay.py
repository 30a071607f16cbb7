"""A captured webhook replayed (valid signature and all) changes nothing; an oversized body is refused unread."""

from __future__ import annotations

import socket
import time
import urllib.parse

from floodwatch.line_standin import postback_event, new_user_id, sign

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
    # Declare 2 MiB and send only the start: the server must answer 413 without reading the rest.
    # (Sending it all races the early answer: the client may get a broken pipe instead.)
    url = urllib.parse.urlsplit(webhook_url)
    head = (f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"x-line-signature: {sign(SECRET, b'x')}\r\nContent-Length: {2 << 20}\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(head + b'{"destination":"x","events":[')
        status_line = conn.makefile("rb").readline().decode()
    assert status_line.split()[1] == "413", status_line

