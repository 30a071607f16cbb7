"""Retained state and Home Assistant discovery on a real Mosquitto locked down by `floodwatch mqtt-config`, over TLS.

The state publisher (account floodwatch-state) keeps each gauge's and zone's
state retained; a consumer account reads it and the discovery messages the
moment it subscribes, and can publish nothing; the state moves when something
meaningful changes and not for a millimetre; if floodwatch dies, its last will
says so.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floodwatch.alerts import AlertService
from floodwatch.cli.broker import find_mosquitto, free_port, wait_for_port
from floodwatch.cli.mqtt_config import CONSUMER_USER, INGEST_USER, STATE_USER, read_credentials, write_config
from floodwatch.clock import SystemClock
from floodwatch.integrations.publisher import StatePublisher
from floodwatch.vocabulary import QcFlag, Reading, StationId
from tests.deploy.test_mqtt_lockdown import _self_signed

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def locked(tmp_path, make_settings):
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed; run scripts/setup --test")
    settings = make_settings()
    cert, key = _self_signed(tmp_path)
    port = free_port()
    out = tmp_path / "mqtt"
    write_config(settings, out, port=port, bind_address="127.0.0.1", certfile=cert, keyfile=key, run_as="root",
                 consumers=[CONSUMER_USER, "node-red"])
    proc = subprocess.Popen([find_mosquitto(), "-c", str(out / "mosquitto.conf")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port)
        creds = read_credentials(out / "credentials")
        settings.mqtt_state.enabled = True
        settings.mqtt_state.url = f"mqtts://127.0.0.1:{port}"
        settings.mqtt_state.username = STATE_USER
        from pydantic import SecretStr

        settings.mqtt_state.password = SecretStr(creds[STATE_USER])
        settings.mqtt_state.ca_file = cert
        yield settings, port, cert, creds
    finally:
        proc.terminate()
        proc.wait(5)


class Subscriber:
    """A consumer as Home Assistant or Node-RED connects: TLS, its own account, subscribe and listen."""

    def __init__(self, port, cert, username, password, topics=("floodwatch/#", "homeassistant/#")):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{username}-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv311)
        self.client.tls_set(ca_certs=str(cert))
        self.client.username_pw_set(username, password)
        self.granted: list = []

        def on_connect(c, u, f, rc, p):
            c.subscribe([(t, 1) for t in topics])

        def on_subscribe(c, u, mid, rcs, p):
            self.granted = list(rcs)
            self.ready.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10), f"{username} could not subscribe"

    def _on_message(self, c, u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, topic: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t == topic]

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, _, _ in self.messages}

    def wait(self, predicate, timeout_s=10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def reading(sid: str, ts_s: float, level_m: float) -> Reading:
    return Reading(StationId(sid), ts_s, water_level_m=level_m, battery_v=3.9, qc_flag=QcFlag.PASS)


def test_retained_state_and_discovery_read_only_for_consumers(locked):
    settings, port, cert, creds = locked
    clock = SystemClock()
    alerts = AlertService(settings, clock)
    publisher = StatePublisher(settings, clock, alerts=alerts)
    alerts.add_decision_listener(publisher.on_decisions)
    publisher.start()
    try:
        assert publisher.wait_connected(10), "the state publisher could not log in over TLS"
        topic = "floodwatch/lamphaya/state/station/LP-W01"
        zone = "floodwatch/lamphaya/state/zone/moo-5"
        now = time.time()
        first = [reading("LP-W01", now - 600, 1.00)]
        alerts.on_readings(first)
        publisher.on_readings(first)

        # A consumer that arrives later gets the retained state and discovery at once.
        ha = Subscriber(port, cert, CONSUMER_USER, creds[CONSUMER_USER])
        assert all(not rc.is_failure for rc in ha.granted), ha.granted  # HA subscribes to homeassistant/#
        assert ha.wait(lambda: ha.on(topic) and ha.on(zone)), ha.topics()
        # The reading above may reach the broker a moment after this consumer's subscription.
        assert ha.wait(lambda: ha.on(topic)[-1]["water_level_m"] == 1.0), ha.on(topic)
        state = ha.on(topic)[-1]
        assert state["water_level_m"] == 1.0 and state["level_name_en"] == "normal"
        assert any(t.startswith("homeassistant/sensor/floodwatch_lamphaya/lp-w01_level/config")
                   for t in ha.topics())
        with ha.lock:
            status = [p for t, p, _ in ha.messages if t == "floodwatch/lamphaya/state/availability"]
        assert status == [b"online"]
        print(f"consumer got {len(ha.topics())} retained topics at subscribe")

        # A millimetre is not news; a centimetre is; crossing watch (twice, confirmed) changes the danger.
        n = len(ha.on(topic))
        for ts, level in ((now - 500, 1.004), (now - 400, 1.02)):
            alerts.on_readings([reading("LP-W01", ts, level)])
            publisher.on_readings([reading("LP-W01", ts, level)])
            time.sleep(1.2)
        levels_seen = [s["water_level_m"] for s in ha.on(topic)[n:]]
        assert levels_seen == [1.02], levels_seen
        for ts in (now - 300, now - 200):
            rs = [reading("LP-W01", ts, 1.65)]
            alerts.on_readings(rs)
            publisher.on_readings(rs)
        assert ha.wait(lambda: ha.on(topic)[-1]["level_name_en"] == "watch")
        assert ha.wait(lambda: ha.on(zone)[-1]["level_name_en"] == "watch"), ha.on(zone)

        # Consumers cannot publish: not the state, not discovery, not telemetry.
        nodered = Subscriber(port, cert, "node-red", creds["node-red"])
        ingest = Subscriber(port, cert, INGEST_USER, creds[INGEST_USER], topics=("floodwatch/#",))
        for t, body in ((topic, b'{"water_level_m": 99}'), ("floodwatch/LP-W01/telemetry", b'{"ts": 1}'),
                        ("homeassistant/sensor/floodwatch_lamphaya/lp-w01_level/config", b"{}")):
            nodered.client.publish(t, body, qos=1, retain=True).wait_for_publish(5)
        time.sleep(1.0)
        assert all(s["water_level_m"] != 99 for s in ha.on(topic))
        with ingest.lock:
            assert not any(t == "floodwatch/LP-W01/telemetry" for t, _, _ in ingest.messages)
        late = Subscriber(port, cert, CONSUMER_USER, creds[CONSUMER_USER])
        assert late.wait(lambda: late.on(topic))
        assert late.on(topic)[-1]["water_level_m"] == 1.65  # the forged retained state never landed
        for s in (ha, nodered, ingest, late):
            s.close()
    finally:
        publisher.stop()
        alerts.close()


def test_last_will_says_offline_when_floodwatch_dies(locked):
    settings, port, cert, creds = locked
    publisher = StatePublisher(settings, SystemClock())
    publisher.start()
    assert publisher.wait_connected(10)
    watcher = Subscriber(port, cert, CONSUMER_USER, creds[CONSUMER_USER],
                         topics=("floodwatch/lamphaya/state/availability",))
    assert watcher.wait(lambda: [p for _, p, _ in watcher.messages] == [b"online"])
    # Kill the connection without a DISCONNECT, as a crashed process would.
    publisher._stop.set()
    publisher._client.loop_stop()
    publisher._client.socket().close()
    assert watcher.wait(lambda: [p for _, p, _ in watcher.messages][-1:] == [b"offline"], timeout_s=60)
    watcher.close()
