"""Nakhon Chai Si reads Lam Phaya's river gauges over MQTT: real Mosquitto, the ACL mqtt-config writes.

The peer account may read exactly the stations Lam Phaya's [[peers]] lists, read nothing else and
publish nothing; the feed stores what arrives through ingest's path, and what arrived while it was
down comes over when it reconnects (the broker keeps its persistent session).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floodwatch import store as store_pkg
from floodwatch.cli.broker import find_mosquitto, free_port, wait_for_port
from floodwatch.cli.mqtt_config import INGEST_USER, read_credentials, write_config
from floodwatch.clock import SystemClock
from floodwatch.feeds import FeedService
from floodwatch.settings import PROJECT_ROOT, load_site_settings

PEER = "peer-nakhonchaisi"


@pytest.fixture
def lamphaya_broker(tmp_path, make_settings):
    """Lam Phaya's broker, locked down by its own `floodwatch mqtt-config` (plain TCP on loopback)."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed; run scripts/setup --test")
    port = free_port()
    out = tmp_path / "mqtt"
    write_config(make_settings(), out, port=port, bind_address="127.0.0.1", run_as="root")
    proc = subprocess.Popen([find_mosquitto(), "-c", str(out / "mosquitto.conf")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port)
        yield port, read_credentials(out / "credentials")
    finally:
        proc.terminate()
        proc.wait(5)


class Client:
    """A paho client that records what it receives and the broker's answers to its subscriptions."""

    def __init__(self, port: int, username: str, password: str, name: str) -> None:
        self.received: list[str] = []
        self.suback: list = []
        self._subscribed = threading.Event()
        connected = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        c.username_pw_set(username, password)
        c.on_connect = lambda *a: connected.set()
        c.on_message = lambda cl, u, m: self.received.append(m.topic)

        def on_subscribe(cl, u, mid, codes, props):
            self.suback = list(codes)
            self._subscribed.set()

        c.on_subscribe = on_subscribe
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert connected.wait(10)
        self.c = c

    def subscribe(self, topics: list[str]) -> list:
        self._subscribed.clear()
        self.c.subscribe([(t, mqtt.SubscribeOptions(qos=1)) for t in topics])
        assert self._subscribed.wait(10)
        return self.suback

    def publish(self, topic: str, payload: dict) -> None:
        self.c.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_the_peer_reads_only_its_stations_and_publishes_nothing(lamphaya_broker):
    port, creds = lamphaya_broker
    ingest = Client(port, INGEST_USER, creds[INGEST_USER], "ingest")
    ingest.subscribe(["floodwatch/#"])
    peer = Client(port, PEER, creds[PEER], "nakhonchaisi-peer")
    # Mosquitto grants even the forbidden subscriptions and then delivers nothing they do not allow
    # (other brokers answer 0x87; the feed logs that as "subscribe_refused" with the fix).
    codes = peer.subscribe(["floodwatch/lamphaya/LP-W01/telemetry", "floodwatch/LP-W02/telemetry",
                            "floodwatch/lamphaya/LP-W03/telemetry", "floodwatch/#"])
    print(f"SUBACK: {[str(c) for c in codes]}")
    assert not codes[0].is_failure and not codes[1].is_failure
    nodes = {sid: Client(port, sid, creds[sid], f"node-{sid}") for sid in ("LP-W01", "LP-W02", "LP-W03")}
    reading = {"ts": time.time(), "seq": 1, "distance_m": 3.0}
    nodes["LP-W01"].publish("floodwatch/lamphaya/LP-W01/telemetry", reading)
    nodes["LP-W02"].publish("floodwatch/LP-W02/telemetry", reading)
    nodes["LP-W03"].publish("floodwatch/lamphaya/LP-W03/telemetry", reading)
    nodes["LP-W03"].publish("floodwatch/LP-W03/status", {"status": "online"})
    # The peer tries to write: as a station, as the other site, anywhere.
    for topic in ("floodwatch/LP-W01/telemetry", "floodwatch/nakhonchaisi/NC-W01/telemetry", "anything"):
        peer.publish(topic, {"ts": time.time(), "seq": 99, "water_level_m": 9.9})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(ingest.received) < 4:
        time.sleep(0.05)
    time.sleep(0.5)
    print(f"peer received {peer.received}; ingest received {ingest.received}")
    assert sorted(set(peer.received)) == ["floodwatch/LP-W02/telemetry", "floodwatch/lamphaya/LP-W01/telemetry"]
    assert sorted(ingest.received) == sorted(["floodwatch/lamphaya/LP-W01/telemetry", "floodwatch/LP-W02/telemetry",
                                              "floodwatch/lamphaya/LP-W03/telemetry", "floodwatch/LP-W03/status"])
    for c in (ingest, peer, *nodes.values()):
        c.close()


def test_nakhonchaisi_stores_lamphayas_gauges_and_gets_what_it_missed_while_down(
        lamphaya_broker, tmp_path, monkeypatch):
    port, creds = lamphaya_broker
    monkeypatch.setenv("FLOODWATCH_PEER_LAMPHAYA_PASSWORD", creds[PEER])
    nc = load_site_settings(PROJECT_ROOT / "config" / "nakhonchaisi.toml")
    nc.store.url = f"sqlite:///{tmp_path}/nakhonchaisi.db"
    feed = nc.feed("lamphaya")
    feed.url = f"mqtt://127.0.0.1:{port}"
    db = store_pkg.open_store(nc)
    node = Client(port, "LP-W01", creds["LP-W01"], "node-LP-W01")
    other = Client(port, "LP-W03", creds["LP-W03"], "node-LP-W03")

    def run_until(service: FeedService, n: int) -> int:
        deadline, stored = time.monotonic() + 10, 0
        while time.monotonic() < deadline and stored < n:
            stored += service.run_once("lamphaya").stored
            time.sleep(0.1)
        return stored

    service = FeedService(nc, db, SystemClock()).start()
    try:
        assert service.feeds["lamphaya"].wait_subscribed(10)
        t0 = time.time() - 1800
        node.publish("floodwatch/lamphaya/LP-W01/telemetry", {"ts": t0, "seq": 1, "boot": 1, "distance_m": 3.00})
        assert run_until(service, 1) == 1
        [r] = db.read_readings("LP-W01", t0 - 1, t0 + 1)
        assert r.water_level_m == pytest.approx(4.80 - 3.00)  # Lam Phaya's calibration, copied in NC's file
        assert service.describe("lamphaya")["state"] == "ok"
    finally:
        service.stop()
    # Nakhon Chai Si is down for a while; Lam Phaya's gauges keep reporting.
    for k in range(1, 4):
        node.publish("floodwatch/LP-W01/telemetry", {"ts": t0 + k * 600, "seq": 1 + k, "boot": 1,
                                                     "distance_m": 3.00 - 0.01 * k})
    other.publish("floodwatch/lamphaya/LP-W03/telemetry", {"ts": t0 + 600, "seq": 5, "distance_m": 2.0})
    service = FeedService(nc, db, SystemClock()).start()
    try:
        assert service.feeds["lamphaya"].wait_subscribed(10)
        assert run_until(service, 3) == 3
        levels = [round(x.water_level_m, 2) for x in db.read_readings("LP-W01", t0 - 1, t0 + 3000)]
        assert levels == [1.80, 1.81, 1.82, 1.83]  # each once, none lost
        assert db.read_readings("LP-W03", 0, 4e9) == []  # not shared: never reaches Nakhon Chai Si
    finally:
        service.stop()
        db.close()
        node.close()
        other.close()


def test_a_message_the_store_could_not_take_is_not_acknowledged_and_comes_back_after_a_restart(
        lamphaya_broker, tmp_path, monkeypatch):
    import sqlite3

    port, creds = lamphaya_broker
    monkeypatch.setenv("FLOODWATCH_PEER_LAMPHAYA_PASSWORD", creds[PEER])
    nc = load_site_settings(PROJECT_ROOT / "config" / "nakhonchaisi.toml")
    nc.store.url = f"sqlite:///{tmp_path}/nakhonchaisi.db"
    nc.store.busy_timeout_s = 0.2
    nc.feed("lamphaya").url = f"mqtt://127.0.0.1:{port}"
    db = store_pkg.open_store(nc)
    node = Client(port, "LP-W02", creds["LP-W02"], "node-LP-W02")
    service = FeedService(nc, db, SystemClock()).start()
    t0 = time.time() - 600
    try:
        assert service.feeds["lamphaya"].wait_subscribed(10)
        holder = sqlite3.connect(db.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the store is busy: the message cannot be stored now
        node.publish("floodwatch/lamphaya/LP-W02/telemetry", {"ts": t0, "seq": 7, "boot": 1, "distance_m": 4.5})
        deadline = time.monotonic() + 10
        report = service.run_once("lamphaya")
        while report.fetched == 0 and report.ok and time.monotonic() < deadline:
            time.sleep(0.1)
            report = service.run_once("lamphaya")
        assert not report.ok and report.error.reason == "store_unavailable"
    finally:
        service.stop()  # as if the process died now: the message was never acknowledged
        holder.rollback()
        holder.close()
    service = FeedService(nc, db, SystemClock()).start()
    try:
        assert service.feeds["lamphaya"].wait_subscribed(10)
        deadline, stored = time.monotonic() + 10, 0
        while time.monotonic() < deadline and not stored:
            stored = service.run_once("lamphaya").stored
            time.sleep(0.1)
        [r] = db.read_readings("LP-W02", t0 - 1, t0 + 1)  # redelivered by the broker, stored once
        assert r.water_level_m == pytest.approx(6.20 - 4.5)
    finally:
        service.stop()
        db.close()
        node.close()
