"""``floodwatch mqtt-config`` gives each loudspeaker controller exactly its own command (read) and reply (write)
topics, and floodwatch's loudspeaker account commands and replies only; checked against a real Mosquitto."""

from __future__ import annotations

import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floodwatch.cli.broker import find_mosquitto, free_port, wait_for_port
from floodwatch.cli.mqtt_config import ALERTS_USER, INGEST_USER, acl_file, read_credentials, write_config
from floodwatch.settings import LoudspeakerController

SPEAKER = "floodwatch/lamphaya/speaker"


@pytest.fixture
def locked(tmp_path, make_settings):
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed; run scripts/setup --test")
    settings = make_settings()
    settings.loudspeakers.controllers = [
        LoudspeakerController(id=c, name_th=c, name_en=c, zones=[z]) for c, z in (("LS-A", "moo-6"), ("LS-B", "moo-5"))]
    port = free_port()
    out = tmp_path / "mqtt"
    write_config(settings, out, port=port, bind_address="127.0.0.1", run_as="root")
    proc = subprocess.Popen([find_mosquitto(), "-c", str(out / "mosquitto.conf")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port)
        yield settings, port, read_credentials(out / "credentials")
    finally:
        proc.terminate()
        proc.wait(5)


class Client:
    def __init__(self, port: int, user: str, password: str, *subscriptions: str) -> None:
        self.received: list[str] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}", protocol=mqtt.MQTTv311)
        self.c.username_pw_set(user, password)
        ready = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: ([c.subscribe(t, qos=1) for t in subscriptions], ready.set())
        self.c.on_message = lambda c, u, m: self.received.append(m.topic)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10), f"{user} could not connect"
        time.sleep(0.3)  # let the subscriptions settle

    def send(self, topic: str) -> None:
        self.c.publish(topic, b'{"message_id": "m"}', qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_the_acl_lists_exactly_the_controllers_own_topics(make_settings):
    settings = make_settings()
    settings.loudspeakers.controllers = [LoudspeakerController(id="LS-A", name_th="a", name_en="a", zones=["moo-6"])]
    acl = acl_file(settings)
    block = acl.split("user LS-A\n")[1].split("\n\n")[0].splitlines()
    assert block == [f"topic read {SPEAKER}/LS-A/command", f"topic write {SPEAKER}/LS-A/reply"]
    alerts_block = acl.split(f"user {ALERTS_USER}\n")[1].split("\n\n")[0].splitlines()
    assert alerts_block == [f"topic write {SPEAKER}/+/command", f"topic read {SPEAKER}/+/reply"]
    assert "user LS-A" not in acl_file(make_settings()), "no controllers, no loudspeaker accounts"


def test_controllers_hear_only_their_commands_and_answer_only_on_their_reply(locked):
    settings, port, creds = locked
    a = Client(port, "LS-A", creds["LS-A"], f"{SPEAKER}/LS-A/command", f"{SPEAKER}/LS-B/command",
               f"{SPEAKER}/+/reply")
    b = Client(port, "LS-B", creds["LS-B"], f"{SPEAKER}/LS-B/command")
    floodwatch = Client(port, ALERTS_USER, creds[ALERTS_USER], f"{SPEAKER}/+/reply", "floodwatch/#")
    ingest = Client(port, INGEST_USER, creds[INGEST_USER], "floodwatch/#")
    try:
        floodwatch.send(f"{SPEAKER}/LS-A/command")
        floodwatch.send(f"{SPEAKER}/LS-B/command")
        floodwatch.send("floodwatch/LP-W01/telemetry")   # the loudspeaker account cannot forge readings
        a.send(f"{SPEAKER}/LS-A/reply")                   # allowed
        a.send(f"{SPEAKER}/LS-B/reply")                   # another controller's reply: refused
        a.send(f"{SPEAKER}/LS-B/command")                 # commanding another controller: refused
        a.send("floodwatch/LP-W01/telemetry")             # a reading: refused
        time.sleep(1.0)
        print(f"acl: LS-A {a.received}; LS-B {b.received}; floodwatch {floodwatch.received}; "
              f"ingest {ingest.received}")
        assert a.received == [f"{SPEAKER}/LS-A/command"]
        assert b.received == [f"{SPEAKER}/LS-B/command"]
        assert floodwatch.received == [f"{SPEAKER}/LS-A/reply"], "reads replies only, and only real ones"
        assert "floodwatch/LP-W01/telemetry" not in ingest.received
        assert f"{SPEAKER}/LS-B/reply" not in ingest.received
    finally:
        for client in (a, b, floodwatch, ingest):
            client.close()
