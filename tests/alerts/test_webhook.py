"""Residents subscribe themselves: signed LINE webhooks into a real uvicorn server, replies to the stand-in."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI

from floodwatch.alerts import AlertService
from floodwatch.vocabulary import AlertLevel
from floodwatch.line_standin import follow_event, new_user_id, postback_event, text_message_event, unfollow_event

from tests.alerts.conftest import SECRET, feed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webhook_url(service: AlertService) -> Iterator[str]:
    app = FastAPI()
    app.include_router(service.webhook_router())
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/line/webhook"
    server.should_exit = True
    thread.join(5)


def _last_reply(standin, user_id) -> dict:
    replies = [r for r in standin.requests("/v2/bot/message/reply") if r.status == 200
               and standin_user(standin, r) == user_id]
    assert replies, f"no reply reached {user_id}"
    return replies[-1].body["messages"][0]


def standin_user(standin, request) -> str | None:
    for d in standin.delivered_messages():
        if d.request_id == request.request_id:
            return d.user_id
    return None


def test_follow_pick_zones_status_english_leave_and_unfollow(service, standin, webhook_url, clock):
    user = new_user_id()
    r = standin.send_webhook(webhook_url, SECRET, [follow_event(user)])
    assert r.status == 200
    welcome = _last_reply(standin, user)
    assert welcome["text"].startswith("สวัสดี"), "Thai first"
    assert "Hello" in welcome["text"]
    buttons = welcome["quickReply"]["items"]
    assert 6 <= len(buttons) <= 13
    datas = [b["action"].get("data") for b in buttons if b["action"]["type"] == "postback"]
    assert "action=add&zone=moo-1" in datas and "action=add&zone=moo-6" in datas

    # pick two villages with the buttons
    for zone in ("moo-1", "moo-5"):
        response = standin.send_webhook(webhook_url, SECRET, [postback_event(user, f"action=add&zone={zone}")])
        assert response.status == 200
    assert service.subscribers("moo-1") == [user] and service.subscribers("moo-5") == [user]
    confirm = _last_reply(standin, user)
    assert "หมู่ 5" in confirm["text"] and "หมู่ 1" in confirm["text"]
    labels = [b["action"]["label"] for b in confirm["quickReply"]["items"]]
    assert any(label.startswith("✓") for label in labels), "picked zones are marked"

    # status: the current level and forecast of both villages
    feed(service, clock, "LP-W02", [2.05, 2.06], step_s=3600)
    standin.send_webhook(webhook_url, SECRET, [text_message_event(user, "สถานะ")])
    status = _last_reply(standin, user)["text"]
    assert "หมู่ 1 เชิงสะพานท่าจีน ถนน 346: เตือนภัย" in status
    assert "2.06 ม.รทก." in status and "หมู่ 5" in status

    # change: leave moo-1 only
    standin.send_webhook(webhook_url, SECRET, [postback_event(user, "action=remove&zone=moo-1")])
    assert service.subscribers("moo-1") == [] and service.subscribers("moo-5") == [user]

    # English on request: replies and alerts now come English first
    standin.send_webhook(webhook_url, SECRET, [text_message_event(user, "English")])
    assert _last_reply(standin, user)["text"].startswith("Messages will now come in English first")
    feed(service, clock, "LP-W01", [1.95, 1.96], step_s=3600)  # moo-5 warning (1.90)
    assert service.wait_delivered(10)
    alert = [m for m in standin.messages_for(user) if "WARNING" in m.get("text", "")][-1]["text"]
    assert alert.index("WARNING") < alert.index("เตือนภัย")

    # unfollow: forgotten, nothing more is sent
    assert standin.send_webhook(webhook_url, SECRET, [unfollow_event(user)]).status == 200
    assert service.subscribers("moo-5") == []
    before = len(standin.messages_for(user))
    feed(service, clock, "LP-W01", [2.25, 2.26], step_s=3600)  # evacuate level in moo-5
    assert service.wait_delivered(10)
    assert len(standin.messages_for(user)) == before


def test_bad_or_missing_signature_changes_nothing(service, standin, webhook_url):
    user = new_user_id()
    events = [follow_event(user), postback_event(user, "action=add&zone=moo-2")]
    bad = standin.send_webhook(webhook_url, SECRET, events, signature="bm90IHRoZSBzaWduYXR1cmU=")
    missing = standin.send_webhook(webhook_url, SECRET, events, signature="")
    wrong_secret = standin.send_webhook(webhook_url, "not-the-secret", events)
    assert (bad.status, missing.status, wrong_secret.status) == (401, 400, 401)
    assert service.subscribers("moo-2") == []
    assert service.db.user(user) is None
    assert standin.requests("/v2/bot/message/reply") == []


def test_several_residents_in_one_webhook_and_a_redelivery_are_idempotent(service, standin, webhook_url):
    users = [new_user_id() for _ in range(5)]
    events = [follow_event(u) for u in users] + [postback_event(u, "action=add&zone=moo-3") for u in users]
    assert standin.send_webhook(webhook_url, SECRET, events).status == 200
    again = [postback_event(u, "action=add&zone=moo-3", redelivery=True) for u in users]
    assert standin.send_webhook(webhook_url, SECRET, again).status == 200
    assert sorted(service.subscribers("moo-3")) == sorted(users)
    standin.send_webhook(webhook_url, SECRET, [text_message_event(users[0], "เลิก")])
    assert sorted(service.subscribers("moo-3")) == sorted(users[1:])
    assert "หยุดการแจ้งเตือนทุกหมู่บ้านแล้ว" in _last_reply(standin, users[0])["text"]


def test_low_water_opt_in_and_tide_outlook(service, standin, webhook_url, clock):
    import numpy as np

    from tests.alerts.test_service import _issued

    user = new_user_id()
    service.add_officer("Uofficer0000000000000000000000001")
    standin.send_webhook(webhook_url, SECRET, [follow_event(user), postback_event(user, "action=add&zone=moo-3"),
                                               text_message_event(user, "น้ำแล้ง")])
    assert service.db.user(user)["low_water"] is True
    # LP-W04 (moo-3) low-water line 0.10 m
    feed(service, clock, "LP-W04", [0.30, 0.05, 0.04], step_s=3600)
    assert service.wait_delivered(10)
    low = [m["text"] for m in standin.messages_for(user) if "ระดับน้ำต่ำ" in m["text"]]
    assert len(low) == 1 and low[0].startswith("💧 ระดับน้ำต่ำ")
    assert len(standin.messages_for("Uofficer0000000000000000000000001")) == 1

    issued = _issued(service, clock, station="LP-W04", level_index=-1, prob=0.0, at_h=99, h=145)
    row = issued.station_ids.index("LP-W04")
    t_h = (issued.forecast.t_s - clock.now_s()) / 3600
    issued.forecast.median_m[row] = 0.6 + 0.7 * np.sin(2 * np.pi * (t_h - 1.0) / 12.42)
    service.on_forecast(issued)
    standin.send_webhook(webhook_url, SECRET, [text_message_event(user, "น้ำขึ้นลง")])
    tide = _last_reply(standin, user)["text"]
    assert "น้ำขึ้นสูงสุด" in tide and "น้ำลงต่ำสุด" in tide and "หมู่ 3" in tide
    assert service.zone_levels()["moo-3"]["level"] == int(AlertLevel.NORMAL)
