"""The webhook in a real process, killed with SIGKILL between receiving a signed webhook and answering it.

An event's effects and its seen-mark are one durable step: after the kill
and a restart on the same state file, LINE's redelivery of the same body
completes what was not done and repeats nothing that was (a toggle is not
flipped back, nobody gets a second reply). Replay protection survives the
restart, and events without a ``webhookEventId`` are handled once too.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from floodwatch.alerts._db import AlertDb
from floodwatch.line_standin import new_user_id, postback_event, text_message_event
from floodwatch.settings import PROJECT_ROOT

from tests.alerts.conftest import SECRET, TOKEN, wait_until

REPLY = "/v2/bot/message/reply"

_SERVER = textwrap.dedent("""
    import sys
    import uvicorn
    from fastapi import FastAPI
    from floodwatch.alerts import AlertService
    from floodwatch.clock import SystemClock
    from floodwatch.settings import load_settings

    service = AlertService(load_settings(), SystemClock())
    service.start()
    app = FastAPI()
    app.include_router(service.webhook_router())
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookProcess:
    """``AlertService`` + its webhook router under uvicorn, in a child process on a state file."""

    def __init__(self, state_path: Path, standin_url: str) -> None:
        self.state_url = f"sqlite:///{state_path}"
        self.env = {**os.environ, "FLOODWATCH_ALERTS__STATE_URL": self.state_url,
                    "FLOODWATCH_LINE__API_BASE_URL": standin_url,
                    "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN": TOKEN, "FLOODWATCH_LINE__CHANNEL_SECRET": SECRET,
                    "FLOODWATCH_LINE__TIMEOUT_S": "120"}
        self.child: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/line/webhook"
        self.child = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)], cwd=PROJECT_ROOT, env=self.env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def listening() -> bool:
            assert self.child is not None and self.child.poll() is None, self.child.stderr.read()[-3000:]
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        assert wait_until(listening, 60), "the webhook process did not start listening"

    def kill(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGKILL)
            self.child.wait(10)
        self.child = None

    def user(self, user_id: str) -> dict | None:
        db = AlertDb(self.state_url)
        try:
            return db.user(user_id)
        finally:
            db.close()

    def zones_of(self, user_id: str) -> list[str]:
        db = AlertDb(self.state_url)
        try:
            return db.zones_of(user_id)
        finally:
            db.close()


@pytest.fixture
def process(tmp_path: Path, standin) -> Iterator[WebhookProcess]:
    proc = WebhookProcess(tmp_path / "alerts.db", standin.base_url)
    try:
        yield proc
    finally:
        proc.kill()


def _redelivered(events: list[dict]) -> list[dict]:
    """LINE's redelivery: the same events (same webhookEventId), flagged as redelivered, signed again."""
    out = copy.deepcopy(events)
    for event in out:
        event["deliveryContext"] = {"isRedelivery": True}
    return out


def _replies_to(standin, user_id: str) -> int:
    return sum(1 for d in standin.delivered_messages() if d.user_id == user_id and d.request_id in
               {r.request_id for r in standin.requests(REPLY)})


def test_sigkill_between_receipt_and_reply_then_redelivery_completes_and_repeats_nothing(standin, process):
    process.start()
    first, second = new_user_id(), new_user_id()
    # one body, two residents: the first turns low-water alerts on (a toggle: handling it twice
    # turns them off again), the second picks a village
    events = [text_message_event(first, "น้ำแล้ง"), postback_event(second, "action=add&zone=moo-2")]
    # LINE executes the first reply but its answer never comes: the process is killed while waiting,
    # the webhook request still unanswered
    standin.delay_next(1, delay_s=120.0, path=REPLY, execute=True)
    answers: list[object] = []
    sender = threading.Thread(target=lambda: answers.append(_send_or_error(standin, process.url, events)),
                              daemon=True)
    sender.start()
    assert wait_until(lambda: len(standin.requests(REPLY)) >= 1, 30), "the first reply never reached LINE"
    time.sleep(0.2)
    process.kill()
    sender.join(15)
    assert answers and not (isinstance(answers[0], int) and answers[0] == 200), \
        f"the webhook must not have been answered before the kill: {answers}"
    standin.clear_faults()
    state_before = (process.user(first), process.zones_of(second))

    process.start()
    again = standin.send_webhook(process.url, SECRET, _redelivered(events))
    assert again.status == 200, again.body
    print(f"after the kill: first={state_before[0]}, second's zones={state_before[1]}; "
          f"after redelivery: low_water={process.user(first)['low_water']}, zones={process.zones_of(second)}")
    assert process.zones_of(second) == ["moo-2"], "the second resident's pick was lost"
    assert process.user(first)["low_water"] is True, "the toggle was handled twice (or never)"
    assert _replies_to(standin, first) == 1, "the first resident was answered twice"
    assert _replies_to(standin, second) == 1


def test_replay_after_a_restart_changes_nothing(standin, process):
    process.start()
    user = new_user_id()
    events = [postback_event(user, "action=add&zone=moo-3"), text_message_event(user, "น้ำแล้ง")]
    assert standin.send_webhook(process.url, SECRET, events).status == 200
    assert process.user(user)["low_water"] is True and process.zones_of(user) == ["moo-3"]
    process.kill()  # the harshest restart: no chance to save anything more

    process.start()
    replies_before = _replies_to(standin, user)
    replay = standin.send_webhook(process.url, SECRET, events)  # captured body, valid signature
    assert replay.status == 200, "LINE (or the attacker) must get 200 so nothing is retried"
    assert process.user(user)["low_water"] is True, "a replayed toggle acted again after the restart"
    assert _replies_to(standin, user) == replies_before


def test_events_without_a_webhook_event_id_act_once(standin, process):
    process.start()
    user = new_user_id()
    toggle = text_message_event(user, "น้ำแล้ง")
    del toggle["webhookEventId"]
    pick = postback_event(user, "action=add&zone=moo-4")
    del pick["webhookEventId"]
    assert standin.send_webhook(process.url, SECRET, [pick, toggle]).status == 200
    assert process.zones_of(user) == ["moo-4"], "an event without an id was ignored"
    assert process.user(user)["low_water"] is True
    assert _replies_to(standin, user) == 2

    # the identical body again (a replay, or a redelivery without ids): recognised, nothing changes
    assert standin.send_webhook(process.url, SECRET, _redelivered([pick, toggle])).status == 200
    assert process.user(user)["low_water"] is True
    assert _replies_to(standin, user) == 2

    # a new event without an id (another tap, another timestamp) is not mistaken for a replay
    tap = text_message_event(user, "น้ำแล้ง", timestamp_ms=int(time.time() * 1000) + 1)
    del tap["webhookEventId"]
    assert standin.send_webhook(process.url, SECRET, [tap]).status == 200
    assert process.user(user)["low_water"] is False


def _send_or_error(standin, url: str, events: list[dict]) -> object:
    try:
        return standin.send_webhook(url, SECRET, events, timeout_s=60).status
    except OSError as exc:  # the connection died with the process
        return exc


def test_a_state_file_locked_too_long_answers_503_and_the_redelivery_is_handled(standin, process):
    import sqlite3

    process.start()
    user = new_user_id()
    events = [postback_event(user, "action=add&zone=moo-5")]
    blocker = sqlite3.connect(process.state_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file past the 5 s busy timeout
    try:
        refused = standin.send_webhook(process.url, SECRET, events, timeout_s=60)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert refused.status == 503, refused.body
    assert process.zones_of(user) == []
    assert standin.send_webhook(process.url, SECRET, _redelivered(events)).status == 200
    assert process.zones_of(user) == ["moo-5"]
