"""The whole warning path with real parts: Mosquitto, ingest, SQLite, forecast, alerts, LINE stand-in.

A node on the Khlong Lam Phaya canal (LP-W03, zone moo-4) reports a rise
through its watch and warning levels (never its evacuation level); every
other gauge stays low. Each resident of moo-4 must get exactly one WATCH and
one WARNING message and no EVACUATE (every level is counted from the
message's own headline), in Thai first; nobody in another zone may get
anything; a forecast must have run on the stored readings and been applied
by the alert rules; and nothing may repeat while the system runs on for
longer than the alert cooldown.
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

            def everyone_heard_twice() -> bool:
                # the two messages the rise calls for; which levels they announce is checked below
                got = [m["user_id"] for m in standin.delivered_messages()]
                return all(got.count(u) >= 2 for u in residents[FLOODED_ZONE])

            _wait_for(everyone_heard_twice, 180, "two messages to reach each of moo-4's residents")
            # Run on for longer than the cooldown (and past several forecasts) to catch repeats.
            watch_sim_s = 1.5 * settings.alerts.cooldown_s
            time.sleep(watch_sim_s / ACCELERATION)
            node.loop_stop()
            node.disconnect()

            delivered = standin.delivered_messages()
            levels = {u: _levels(m for m in delivered if m["user_id"] == u) for u in residents[FLOODED_ZONE]}
            others = {u for z, users in residents.items() if z != FLOODED_ZONE for u in users}
            stray = [m for m in delivered if m["user_id"] in others]
            warnings = [m for m in delivered if _level_of(m) == "WARNING"]
            print(f"e2e: messages per moo-4 resident by level {levels}; to other zones {len(stray)}; "
                  f"watched {watch_sim_s / 3600:.1f} simulated hours")
            # LP-W03 reached watch (1.40) and warning (1.65), never evacuate (1.90): one of each, no more
            assert levels == {u: {"WATCH": 1, "WARNING": 1} for u in residents[FLOODED_ZONE]}
            assert stray == []

            # A forecast ran on the stored readings, and the alert rules applied it to the station.
            issued = system.forecaster.latest()
            assert issued is not None and FLOODED_STATION in issued.station_ids, "no forecast was issued"
            first_m = float(issued.forecast.median_m[issued.station_ids.index(FLOODED_STATION)][0])
            assert abs(first_m - rise[-1]) < 0.4, f"the forecast starts at {first_m:.2f} m: it did not see the rise"
            row = system.alerts.station_levels()[FLOODED_STATION]
            print(f"e2e: forecast issued at {issued.issued_s:.0f}, station's forecast level {row['forecast_level']}, "
                  f"probability {row['forecast_probability']}, peak reach {row['forecast_reach_s']}")
            assert row["forecast_level"] is not None and row["forecast_probability"] is not None, \
                "the alert rules never applied a forecast to the flooded station"
            kinds = sorted({e["kind"] for e in system.alerts.log(100) if e["audience"] == "residents"})
            assert set(kinds) <= {"escalate", "forecast", "rise"}, kinds

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


LEVEL_WORDS = (("EVACUATE", "อพยพ"), ("WARNING", "เตือนภัย"), ("WATCH", "เฝ้าระวัง"))


def _level_of(message: dict) -> str:
    """The level a message announces, from its headline (each level names only its own word)."""
    first = _first_line(message)
    for level, word in LEVEL_WORDS:
        if word in first:
            return level
    return f"other: {first}"


def _levels(messages) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in messages:
        out[_level_of(m)] = out.get(_level_of(m), 0) + 1
    return out
