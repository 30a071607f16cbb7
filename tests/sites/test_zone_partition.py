"""One big site split between two workers by zone: each zone is alerted by exactly one of them.

Both workers share the broker and the readings store; each owns half of the
zones (worker.partition 0/2 and 1/2), subscribes to its own stations only and
keeps its own alert state.
"""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from floodwatch.cli.broker import free_port
from floodwatch.cli.demo import demo_resident_ids
from floodwatch.cli.system import System
from floodwatch.clock import AcceleratedClock
from floodwatch.settings import load_settings
from floodwatch.line_standin import LineStandIn

FLOODS = {"LP-W05": "moo-2", "LP-W03": "moo-4"}  # one zone in each half (crc32 partition)


@pytest.mark.slow
def test_two_zone_workers_never_alert_the_same_zone(mosquitto, tmp_path, monkeypatch):
    with LineStandIn(tokens={"tok-partition"}) as line:
        workers = []
        for k in range(2):
            monkeypatch.setenv("FLOODWATCH_WORKER__PARTITION", f"{k}/2")
            s = load_settings()
            s.mqtt.url = mosquitto.url
            s.mqtt.client_id = f"floodwatch-zone-worker-{k}"
            s.store.url = f"sqlite:///{tmp_path}/floodwatch.db"  # shared readings
            s.alerts.state_url = f"sqlite:///{tmp_path}/alerts-{k}.db"
            s.page.state_url = f"sqlite:///{tmp_path}/page-{k}.db"
            s.page.port = free_port()
            s.line.api_base_url = line.base_url
            s.line.channel_access_token = SecretStr("tok-partition")
            s.line.channel_secret = SecretStr("partition-secret")
            for feed in s.feeds:
                if feed.folder is not None:
                    feed.folder = tmp_path / "inbox"  # not the repository's var/
            workers.append(s)
        owned = [{z.id for z in s.zones} for s in workers]
        assert owned[0].isdisjoint(owned[1]) and len(owned[0] | owned[1]) == 6
        clock = AcceleratedClock(sim_start_s=time.time(), factor=120.0)
        systems = [System(s, clock).start() for s in workers]
        try:
            residents = {}
            for zone in ("moo-1", "moo-2", "moo-3", "moo-4", "moo-5", "moo-6"):
                residents[zone] = demo_resident_ids(f"partition:{zone}", 2)
                # Provisioned to the worker that owns the zone.
                owner = next(sys for sys, zones in zip(systems, owned) if zone in zones)
                for u in residents[zone]:
                    owner.alerts.subscribe(u, zone)
            node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="node-partition")
            node.connect("127.0.0.1", mosquitto.port)
            node.loop_start()
            now_s = time.time()
            for station_id in FLOODS:
                st = workers[0].station(station_id) if any(x.id == station_id for x in workers[0].stations) \
                    else workers[1].station(station_id)
                levels = [st.levels.watch_m - 0.3 + (st.levels.warning_m - st.levels.watch_m + 0.4) * min(1.0, i / 20)
                          for i in range(25)]
                for i, level in enumerate(levels):
                    body = {"ts": now_s - (24 - i) * 600, "seq": i + 1, "water_level_m": round(level, 3)}
                    node.publish(f"floodwatch/{station_id}/telemetry", json.dumps(body), qos=1).wait_for_publish(5)
            flooded = {u for z in FLOODS.values() for u in residents[z]}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not flooded <= {d.user_id for d in line.delivered_messages()}:
                time.sleep(0.1)
            time.sleep(3)
            node.loop_stop()
            node.disconnect()
            logs = [[e for e in sys.alerts.log(500) if e.get("recipients")] for sys in systems]
        finally:
            for sys in reversed(systems):
                sys.stop()
    warnings = {}
    for d in line.delivered_messages():
        text = d.message.get("text", "")
        if "เตือนภัย" in text.splitlines()[0]:
            warnings[d.user_id] = warnings.get(d.user_id, 0) + 1
    zones_by_worker = [{e["zone"] for e in log} for log in logs]
    print(f"partition: owned {owned}; zones alerted by each worker {zones_by_worker}; warnings {warnings}")
    assert {u: 1 for u in flooded} == warnings
    for k in range(2):
        assert zones_by_worker[k] <= owned[k], "a worker alerted a zone it does not own"
    assert set(FLOODS.values()) <= zones_by_worker[0] | zones_by_worker[1]
