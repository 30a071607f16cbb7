"""A reading published over MQTT reaches an open page without reload: Mosquitto -> ingest -> store -> hub -> page."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import expect

from floodwatch import ingest
from floodwatch.clock import SystemClock
from tests.gauge_page.conftest import seed_history

pytestmark = pytest.mark.browser


def test_reading_published_over_mqtt_appears_on_the_page(
    mosquitto, page_settings, page_store, hub, serve_page, watched_page
):
    page_settings.mqtt.url = mosquitto.url
    page_settings.mqtt.client_id = "page-test-ingest"
    seed_history(page_settings, page_store)
    # Wired as cli/ wires it: ingest's callbacks publish to the page's hub.
    service = ingest.IngestService(
        page_settings, page_store, SystemClock(),
        on_stored=lambda readings: hub.publish("readings", readings),
        on_status=lambda station_id, status, ts_s: hub.publish(
            "status", {"station_id": station_id, "status": status, "ts_s": ts_s}),
    )
    service.start()
    node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="node-LP-W02", protocol=mqtt.MQTTv5)
    try:
        assert service.wait_connected(10.0)
        server = serve_page(ingest=service)
        page = watched_page.page
        page.goto(server.url + "/")
        level = page.locator('#station-rows tr[data-station="LP-W02"] .level')
        expect(level).to_have_text("1.30")  # seeded: watch 1.70 - 0.4

        node.connect("127.0.0.1", mosquitto.port)
        node.loop_start()
        body = {"ts": time.time(), "seq": 900_001, "water_level_m": 2.07, "battery_v": 3.71, "rssi_dbm": -88}
        started = time.monotonic()
        node.publish("floodwatch/LP-W02/telemetry", json.dumps(body), qos=1).wait_for_publish(5.0)
        node.publish("floodwatch/LP-W02/status", "offline", qos=1, retain=True).wait_for_publish(5.0)

        expect(level).to_have_text("2.07", timeout=5_000)
        shown_after_s = time.monotonic() - started
        row = page.locator('#station-rows tr[data-station="LP-W02"]')
        expect(row).to_have_attribute("data-level", "2")  # warning 2.00 <= 2.07 < evacuate 2.30
        health = page.locator('#health-rows tr[data-station="LP-W02"]')
        expect(health).to_contain_text("3.71 V")
        expect(health).to_contain_text("ออฟไลน์ตั้งแต่")
        assert shown_after_s < 5.0
        health_json = json.loads(page.evaluate("async () => (await fetch('/api/health')).text()"))
        assert health_json["ingest"]["running"] is True
    finally:
        node.loop_stop()
        node.disconnect()
        service.stop()
