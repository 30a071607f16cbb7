"""The whole warning path with real parts: Mosquitto, ingest, SQLite, forecast, alerts, LINE stand-in.

A node on the Khlong Lam Phaya canal (LP-W03, zone moo-4) reports a rise
through its watch and warning levels; every other gauge stays low. Each
resident subscribed to moo-4 must get exactly one warning message, in Thai
first, and nobody in another zone may get anything.
"""

from __future__ import annotations

import json
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from floodwatch.cli.broker import free_port
from floodwatch.cli.demo import demo_resident_ids
from floodwatch.cli.system import System
from floodwatch.clock import AcceleratedClock
from floodwatch.line_standin import LineStandIn

FLOODED_ZONE = "moo-4"
FLOODED_STATION = "LP-W03"  # watch 1.40, warning 1.65, evacuate 1.90 m MSL
ACCELERATION = 120.0  # one real second is two simulated minutes
STEP_S = 600.0


def _publish_series(client: mqtt.Client, station_id: str, start_s: float, levels_m: list[float]) -> None:
    for i, level in enumerate(levels_m):
        payload = {"ts": start_s + i * STEP_S, "seq": i + 1, "water_level_m": round(level, 3), "battery_v": 4.0}
        info = client.publish(f"floodwatch/{station_id}/telemetry", json.dumps(payload), qos=1)
        info.wait_for_publish(5)


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.mark.slow
def test_canal_flood_warns_each_resident_of_its_zone_exactly_once(mosquitto, make_settings):
    token, secret = "e2e-token", "e2e-secret"
    with LineStandIn(tokens={token}) as standin:
        settings = make_settings(
            mqtt={"url": mosquitto.url, "client_id": "floodwatch-e2e"},
            line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(token),
                  "channel_secret": SecretStr(secret)},
            page={"port": free_port()},
        )
        now_s = time.time()
        clock = AcceleratedClock(sim_start_s=now_s, factor=ACCELERATION)
        system = System(settings, clock).start()
        try:
            residents = {z.id: demo_resident_ids(z.id, 3 if z.id == FLOODED_ZONE else 2) for z in settings.zones}
            for zone_id, users in residents.items():
                for user_id in users:
                    system.alerts.subscribe(user_id, zone_id)

            node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="node-e2e")
            node.connect("127.0.0.1", mosquitto.port)
            node.loop_start()
            # Six hours of history ending now: the canal climbs 1.00 -> 1.80 m; others sit low.
            start_s = now_s - 36 * STEP_S
            rise = [1.00 + 0.8 * min(1.0, i / 30) for i in range(37)]
            _publish_series(node, FLOODED_STATION, start_s, rise)
            for station in settings.level_stations:
                if station.id != FLOODED_STATION:
                    calm = station.levels.watch_m - 0.6
                    _publish_series(node, station.id, start_s, [calm] * 37)

            def warned_everyone() -> bool:
                got = {m["user_id"] for m in standin.delivered_messages() if "เตือนภัย" in _text(m)}
                return set(residents[FLOODED_ZONE]) <= got

            _wait_for(warned_everyone, 30, "the warning to reach moo-4's residents")
            # Let forecasts and reminders run a while (30 simulated minutes) to catch repeats.
            time.sleep(30 * 60 / ACCELERATION)
            node.loop_stop()
            node.disconnect()

            delivered = standin.delivered_messages()
            warnings = [m for m in delivered if "เตือนภัย" in _text(m) and "อพยพ" not in _first_line(m)]
            per_user = {u: sum(1 for m in warnings if m["user_id"] == u) for u in residents[FLOODED_ZONE]}
            others = {u for z, users in residents.items() if z != FLOODED_ZONE for u in users}
            stray = [m for m in delivered if m["user_id"] in others]
            print(f"e2e: warning messages per moo-4 resident {per_user}; messages to other zones {len(stray)}")
            assert per_user == {u: 1 for u in residents[FLOODED_ZONE]}
            assert stray == []
            first = _text(warnings[0])
            thai_at = first.find("เตือนภัย")
            english_at = first.lower().find("warning")
            assert 0 <= thai_at < english_at, "Thai comes first, English second"

            # The page knows too.
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.page.port}/api/stations", timeout=5) as r:
                overview = json.load(r)
            rows = {row["id"]: row for row in overview["stations"]}
            assert rows[FLOODED_STATION]["level_class"] == 2 and rows[FLOODED_STATION]["level_m"] > 1.65
            assert overview["stations"][0]["id"] == FLOODED_STATION, "the most dangerous station comes first"
        finally:
            system.stop()


def _text(message: dict) -> str:
    body = message["message"]
    if body.get("type") == "text":
        return body["text"]
    return json.dumps(body, ensure_ascii=False)


def _first_line(message: dict) -> str:
    return _text(message).splitlines()[0] if _text(message) else ""
