"""The integrations wired in `floodwatch serve`'s supervisor, with real parts end to end.

One Mosquitto; three ways in (our MQTT contract, a logger's HTTP post, a
ChirpStack uplink event) and the ways out (retained MQTT state with Home
Assistant discovery, kept forecasts, the page's exports) all on the one
System that cli/system.py builds.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import pytest

from floodwatch.cli.broker import free_port
from floodwatch.cli.system import System
from floodwatch.clock import SystemClock
from floodwatch.firmware_sim.reference_node import uplink
from floodwatch.ingest.http import hash_token, new_token
from tests.ingest.test_lorawan import fixture, rfc3339

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_mqtt_http_and_lorawan_in_retained_state_forecasts_and_exports_out(mosquitto, make_settings):
    token = new_token("LP-W02")
    settings = make_settings(
        mqtt={"url": mosquitto.url, "client_id": "floodwatch-integrations"},
        page={"port": free_port()},
        mqtt_state={"enabled": True},
        http_ingest={"tokens": {"LP-W02": hash_token(token)}},
        lorawan={"devices": {"70b3d57ed0001a03": "LP-W03"}},
    )
    received: dict[str, bytes] = {}
    lock = threading.Lock()
    consumer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="home-assistant")
    consumer.on_connect = lambda c, u, f, rc, p: c.subscribe([("floodwatch/lamphaya/state/#", 1),
                                                             ("homeassistant/#", 1)])

    def on_message(c, u, msg):
        with lock:
            received[msg.topic] = msg.payload

    consumer.on_message = on_message
    system = System(settings, SystemClock(), isolate_forecasts=False).start()
    try:
        page = f"http://127.0.0.1:{settings.page.port}"
        now = time.time()
        node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="node-LP-W01")
        node.connect("127.0.0.1", mosquitto.port)
        node.loop_start()
        for i in range(12):  # two hours of an MQTT node
            body = {"ts": now - 7200 + 600 * i, "seq": i, "boot": 1, "water_level_m": 1.0 + 0.01 * i}
            node.publish("floodwatch/LP-W01/telemetry", json.dumps(body), qos=1).wait_for_publish(5)
        # A logger posting HTTP.
        r = httpx.post(f"{page}/api/v1/ingest/LP-W02", headers={"Authorization": f"Bearer {token}"},
                       json={"readings": [{"ts": now - 1200, "seq": 1, "distance_m": 5.0},
                                          {"ts": now - 600, "seq": 2, "distance_m": 4.9}]}, timeout=30)
        assert r.status_code == 200 and r.json()["stored"] == 2, r.text
        # A LoRaWAN node behind ChirpStack (no codec: the bytes are decoded by ingest).
        event = fixture("chirpstack_v4_up_no_codec.json")
        event["time"] = rfc3339(now - 60)
        event["data"] = base64.b64encode(uplink.encode(uplink.quantize({"distance_m": 2.1, "battery_v": 3.7},
                                                                       boot=2))).decode()
        node.publish("application/x/device/70b3d57ed0001a03/event/up", json.dumps(event), qos=1).wait_for_publish(5)
        node.loop_stop()
        node.disconnect()

        store = system.store
        _wait_for(lambda: len(store.read_readings("LP-W01", now - 8000, now + 1)) == 12, 20, "MQTT readings")
        _wait_for(lambda: len(store.read_readings("LP-W03", now - 8000, now + 1)) == 1, 20, "the LoRaWAN reading")
        assert store.read_readings("LP-W03", now - 8000, now + 1)[0].water_level_m == pytest.approx(3.60 - 2.1)

        # Forecasts are kept in the store (exports, Grafana) and reach the retained state.
        assert system.forecaster.run_once() is not None
        _wait_for(lambda: list(store.iter_forecasts(["LP-W01"], now, now + 4 * 86_400)), 30, "a kept forecast")

        consumer.connect("127.0.0.1", mosquitto.port)
        consumer.loop_start()
        w01 = "floodwatch/lamphaya/state/station/LP-W01"

        def state(topic: str) -> dict:
            with lock:
                return json.loads(received[topic]) if topic in received else {}

        _wait_for(lambda: state(w01).get("forecast_peak_m") is not None, 30, "LP-W01's state with its forecast")
        assert state(w01)["water_level_m"] == pytest.approx(1.11)
        _wait_for(lambda: state("floodwatch/lamphaya/state/station/LP-W02").get("water_level_m") is not None, 10,
                  "the HTTP station's state")
        _wait_for(lambda: state("floodwatch/lamphaya/state/station/LP-W03").get("water_level_m") is not None, 10,
                  "the LoRaWAN station's state")
        assert state("floodwatch/lamphaya/state/station/LP-W03")["water_level_m"] == pytest.approx(1.5)
        _wait_for(lambda: state("floodwatch/lamphaya/state/zone/moo-5").get("level_name_en") == "normal", 10,
                  "a zone's state")
        with lock:
            assert received["floodwatch/lamphaya/state/availability"] == b"online"
            assert "homeassistant/sensor/floodwatch_lamphaya/lp-w01_level/config" in received

        # Ingest never mistook the published state for a node's message.
        assert store.quarantine(100) == []

        # The page exports what came in every way.
        export = httpx.get(f"{page}/api/export/readings.csv", params={"start": str(now - 8000)}, timeout=30)
        rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
        assert {r["station_id"] for r in rows} == {"LP-W01", "LP-W02", "LP-W03"} and len(rows) == 15
    finally:
        consumer.loop_stop()
        consumer.disconnect()
        system.stop()
