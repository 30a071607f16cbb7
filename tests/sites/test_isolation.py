"""Two municipalities on one broker and one deployment: nothing crosses from one to the other.

Lam Phaya and Nakhon Chai Si both have a zone called moo-1. A flood at Lam
Phaya's Road 346 gauge (moo-1) must warn Lam Phaya's moo-1 residents through
Lam Phaya's LINE channel only; Nakhon Chai Si's residents, LINE channel,
store, alert log and officers never see any of it, even when a node
publishes Lam Phaya's station under Nakhon Chai Si's topic.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from floodwatch import gauge_page
from floodwatch import store
from floodwatch.cli.broker import free_port
from floodwatch.cli.demo import demo_resident_ids
from floodwatch.cli.serve import check_sites
from floodwatch.cli.system import System
from floodwatch.clock import AcceleratedClock
from floodwatch.errors import ConfigError
from floodwatch.settings import PROJECT_ROOT, load_site_settings
from floodwatch.line_standin import LineStandIn

STEP_S = 600.0


def _site(path: Path, tmp: Path, broker_url: str, standin: LineStandIn, token: str):
    s = load_site_settings(path)
    s.mqtt.url = broker_url
    s.store.url = f"sqlite:///{tmp}/{s.site.id}/floodwatch.db"
    s.alerts.state_url = f"sqlite:///{tmp}/{s.site.id}/alerts.db"
    s.page.state_url = f"sqlite:///{tmp}/{s.site.id}/page.db"
    s.page.port = free_port()
    s.line.api_base_url = standin.base_url
    s.line.channel_access_token = SecretStr(token)
    s.line.channel_secret = SecretStr(token + "-secret")
    for feed in s.feeds:
        if feed.folder is not None:
            feed.folder = tmp / s.site.id / "inbox"  # not the repository's var/
    return s


def _publish(client: mqtt.Client, topic: str, start_s: float, levels: list[float]) -> None:
    for i, level in enumerate(levels):
        body = json.dumps({"ts": start_s + i * STEP_S, "seq": i + 1, "water_level_m": level})
        client.publish(topic, body, qos=1).wait_for_publish(5)


def _login(port: int, username: str, password: str) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/login", method="POST",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_two_sites_share_a_broker_and_nothing_crosses(mosquitto, tmp_path):
    with LineStandIn(tokens={"lp-token"}) as lp_line, LineStandIn(tokens={"nc-token"}) as nc_line:
        lp = _site(PROJECT_ROOT / "config/lamphaya.toml", tmp_path, mosquitto.url, lp_line, "lp-token")
        nc = _site(PROJECT_ROOT / "config/nakhonchaisi.toml", tmp_path, mosquitto.url, nc_line, "nc-token")
        check_sites([lp, nc])
        gauge_page.create_officer(lp, "lp-officer", "lamphaya-duty-2026")
        clock = AcceleratedClock(sim_start_s=time.time(), factor=120.0)
        systems = [System(lp, clock).start(), System(nc, clock).start()]
        try:
            lp_sys, nc_sys = systems
            lp_residents = demo_resident_ids("lamphaya:moo-1", 3)
            nc_residents = demo_resident_ids("nakhonchaisi:moo-1", 3)
            for u in lp_residents:
                lp_sys.alerts.subscribe(u, "moo-1")
            for u in nc_residents:
                nc_sys.alerts.subscribe(u, "moo-1")

            node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="node-sites")
            node.connect("127.0.0.1", mosquitto.port)
            node.loop_start()
            now_s = time.time()
            start_s = now_s - 24 * STEP_S
            road = [1.40 + 0.5 * min(1.0, i / 20) for i in range(25)]  # LP-W07: warning 1.85 m
            _publish(node, "floodwatch/lamphaya/LP-W07/telemetry", start_s, road)
            # The same flood published under the other site's name: that site must refuse it.
            _publish(node, "floodwatch/nakhonchaisi/LP-W07/telemetry", start_s, road)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if {d.user_id for d in lp_line.delivered_messages()} >= set(lp_residents):
                    break
                time.sleep(0.1)
            time.sleep(3)
            node.loop_stop()
            node.disconnect()

            lp_got = {d.user_id for d in lp_line.delivered_messages()}
            nc_requests = [r for r in nc_line.requests() if r.method == "POST" and r.path.startswith("/v2/bot/message/")]
            nc_db = store.open_store(nc)
            nc_readings = nc_db.read_readings("LP-W07", 0, 2e9)
            nc_quarantine = [q for q in nc_db.quarantine(100) if "LP-W07" in (q.topic or "")]
            nc_db.close()
            print(f"sites: Lam Phaya residents warned {len(lp_got & set(lp_residents))}/3; "
                  f"Nakhon Chai Si LINE messages sent {len(nc_requests)}, LP readings in its store {len(nc_readings)}, "
                  f"quarantined there {len(nc_quarantine)}; NC alert log {len(nc_sys.alerts.log())}")
            assert set(lp_residents) <= lp_got
            assert not (lp_got & set(nc_residents)), "the other site's moo-1 residents are not Lam Phaya's"
            assert nc_requests == [], "nothing may go out on the other site's LINE channel"
            assert nc_readings == []
            assert nc_quarantine and all(q.reason == "unknown_station" for q in nc_quarantine)
            assert [e for e in nc_sys.alerts.log() if e.get("kind") != "qc"] == []
            assert _login(lp.page.port, "lp-officer", "lamphaya-duty-2026") == 200
            assert _login(nc.page.port, "lp-officer", "lamphaya-duty-2026") == 401
        finally:
            for s in reversed(systems):
                s.stop()


def test_sites_must_not_share_stores_ports_or_unprefixed_topics(tmp_path):
    with LineStandIn(tokens={"t"}) as line:
        a = _site(PROJECT_ROOT / "config/lamphaya.toml", tmp_path, "mqtt://127.0.0.1:1", line, "t")
        b = _site(PROJECT_ROOT / "config/nakhonchaisi.toml", tmp_path, "mqtt://127.0.0.1:1", line, "t")
        b.mqtt.single_site_topics = True
        with pytest.raises(ConfigError, match="single-site topics"):
            check_sites([a, b])
        b.mqtt.single_site_topics = False
        b.store.url = a.store.url
        with pytest.raises(ConfigError, match="store.url"):
            check_sites([a, b])
