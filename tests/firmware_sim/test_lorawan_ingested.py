"""Nodes behind a LoRaWAN network server, through real Mosquitto and the real ingestion, into SQLite.

The simulator publishes every reading as ChirpStack v4 or The Things Stack v3
would (with the codec's object, or only the bytes); ingest subscribes to the
servers' uplink topics beside its own, and every reading lands once, calibrated
and QC-flagged, as a reading from our own nodes would. Bad uplinks (an unknown
device, a replayed frame counter, bytes no decoder reads, a codec output without
the level) are quarantined with their reason and nothing else is lost.
"""

from __future__ import annotations

import base64
import json
import time

import paho.mqtt.client as mqtt
import pytest

from floodwatch.clock import AcceleratedClock
from floodwatch.firmware_sim import Fleet, load_scenario
from floodwatch.vocabulary import QcFlag

pytestmark = pytest.mark.timeout(180)

DEVICES = {
    "70b3d57ed0001a01": "LP-W01", "70b3d57ed0001a03": "LP-W03", "70b3d57ed0001a06": "LP-W06",
    "70b3d57ed0001a05": "LP-W05",
    "70b3d57ed0001b01": "LP-R01", "70b3d57ed0001b02": "LP-R02",
    "70b3d57ed0001a07": "LP-W07",
    "70b3d57ed0001a04": "LP-W04",  # not simulated: the bad uplinks below name it
}
STATIONS = ["LP-W01", "LP-W03", "LP-W05", "LP-W06", "LP-W07", "LP-R01", "LP-R02"]


def run_fleet(broker, settings, tmp_path, server: str, codec: bool, scenario_name: str = "faults_mixed",
              factor: float = 12_000.0, extra=None):
    from floodwatch.ingest import IngestService
    from floodwatch.store import open_store

    settings.mqtt.url = broker.url
    settings.mqtt.client_id = f"fw-test-ingest-{server}"
    settings.store.url = f"sqlite:///{tmp_path}/floodwatch-{server}.db"
    settings.store.spool_path = str(tmp_path / f"spool-{server}.db")
    settings.lorawan.devices = dict(DEVICES)
    scenario = load_scenario(scenario_name)
    start_s = time.time()
    clock = AcceleratedClock(sim_start_s=start_s, factor=factor)
    store = open_store(settings)
    service = IngestService(settings, store, clock)
    service.start()
    assert service.wait_connected(10), "ingest did not connect"
    fleet = Fleet(settings, scenario, broker.url, clock, seed=7, start_s=start_s, stations=STATIONS,
                  lorawan=server, lorawan_codec=codec)
    fleet.start()
    if extra is not None:
        extra(clock)
    deadline = time.monotonic() + 40
    while clock.now_s() - start_s < scenario.duration_s and time.monotonic() < deadline:
        time.sleep(0.1)
    fleet.stop()
    stats = fleet.stats()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = service.stats()
        if s["stored"] + s["duplicates"] + s["rejected"] >= stats["messages_sent"] and s["queue_depth"] == 0:
            break
        time.sleep(0.1)
    time.sleep(0.3)
    return scenario, fleet, service, store, start_s


@pytest.mark.parametrize("server, codec", [("chirpstack", True), ("tts", True), ("chirpstack", False)])
def test_lorawan_nodes_land_in_the_store_like_our_own(broker, settings, tmp_path, server, codec):
    scenario, fleet, service, store, start_s = run_fleet(broker, settings, tmp_path, server, codec)
    try:
        nodes = {n.station_id: n for n in fleet.nodes}
        stats = fleet.stats()
        print(f"{server} codec={codec}: made {stats['readings_made']}, sent {stats['published']} uplinks, "
              f"duplicates {stats['duplicates_sent']}, ingest {service.stats()}")
        assert stats["published"] > 100
        # Every uplink is one reading, stored once; the future-clock fault of faults_mixed does not
        # apply (a LoRaWAN node keeps no wall clock: the server's reception time is used).
        assert service.stats()["rejected"] == 0, store.quarantine(5)
        total = 0
        for sid in STATIONS:
            rs = store.read_readings(sid, start_s - 86_400, start_s + 2 * 86_400)
            total += len(rs)
            assert len(rs) == nodes[sid].readings_sent, sid
        assert total == stats["published"]
        # Calibrated like a node's distance_m (level = mount height - distance), stamped with the
        # server's reception time less the age: close to the truth at that time.
        w01 = store.read_readings("LP-W01", start_s - 86_400, start_s + 2 * 86_400)
        truth = scenario.truth_level_m(["LP-W01"], [r.ts_s - start_s for r in w01])[0]
        errors_m = sorted(abs(r.water_level_m - t) for r, t in zip(w01, truth, strict=True)
                          if r.qc_flag == QcFlag.PASS)
        assert errors_m and errors_m[int(0.9 * len(errors_m))] < 0.05, errors_m[-5:]
        # QC ran: the spike of faults_mixed is flagged, the stuck sensor is flagged as a flat line.
        assert any("spike" in r.qc_tests for r in w01)
        w03 = store.read_readings("LP-W03", start_s - 86_400, start_s + 2 * 86_400)
        assert any("flat" in r.qc_tests for r in w03)
        # Rain across the reboots equals the truth to within a tip, as for MQTT nodes.
        for gauge in ("LP-R01", "LP-R02"):
            rs = store.read_readings(gauge, start_s - 86_400, start_s + 2 * 86_400)
            stored_mm = sum(r.rain_mm or 0.0 for r in rs)
            truth_mm = scenario.truth_rain_mm([gauge], rs[0].ts_s - start_s, rs[-1].ts_s - start_s)[0]
            assert abs(stored_mm - truth_mm) <= settings.station(gauge).mm_per_tip + 0.01, gauge
        # Out of reach of a gateway for an hour: the node kept its readings and sent them late, each
        # with its age, so they are stored at the time they were taken.
        w07 = store.read_readings("LP-W07", start_s - 86_400, start_s + 2 * 86_400)
        gaps_s = [b.ts_s - a.ts_s for a, b in zip(w07, w07[1:], strict=False)]
        assert len(w07) == nodes["LP-W07"].core.readings_made and max(gaps_s) < 700
        # Duplicated uplinks (the fault's QoS 1 redelivery) were dropped as duplicates, not stored twice.
        assert service.stats()["duplicates"] >= stats["duplicates_sent"] > 0
    finally:
        service.stop()
        store.close()


def _bad_uplinks(port: int, now_s: float) -> None:
    """A client publishing what a broken or hostile network server would."""
    from tests.ingest.test_lorawan import fixture, rfc3339

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bad-lns", protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()

    def send(dev_eui: str, body: dict) -> None:
        body["deviceInfo"]["devEui"] = dev_eui
        client.publish(f"application/x/device/{dev_eui}/event/up", json.dumps(body), qos=1).wait_for_publish(5)

    base = fixture("chirpstack_v4_up.json")
    unknown = json.loads(json.dumps(base), parse_float=float)
    unknown["time"] = rfc3339(now_s)
    send("00000000000000aa", unknown)
    undecodable = json.loads(json.dumps(base))
    del undecodable["object"]
    undecodable["data"] = base64.b64encode(b"\x07\x00").decode()
    undecodable["time"] = rfc3339(now_s)
    send("70b3d57ed0001a04", undecodable)
    missing = json.loads(json.dumps(base))
    missing["object"] = {"temperature": 30.2}
    missing["time"] = rfc3339(now_s)
    send("70b3d57ed0001a04", missing)
    # A replay: a frame counter the device used long ago, with a new time, in the current session.
    replay = json.loads(json.dumps(base))
    replay["fCnt"] = 1
    replay["time"] = rfc3339(now_s)
    replay["devAddr"] = "replay00"
    first = json.loads(json.dumps(replay))
    first["fCnt"] = 5
    first["time"] = rfc3339(now_s - 5)
    first["deviceInfo"]["devEui"] = "70b3d57ed0001a04"
    send("70b3d57ed0001a04", first)
    send("70b3d57ed0001a04", replay)
    client.loop_stop()
    client.disconnect()


def test_bad_uplinks_are_quarantined_with_their_reason_and_nothing_else_is_lost(broker, settings, tmp_path):
    sent: list[float] = []

    def extra(clock):
        time.sleep(0.5)
        sent.append(clock.now_s())
        _bad_uplinks(broker.port, clock.now_s())

    scenario, fleet, service, store, start_s = run_fleet(broker, settings, tmp_path, "chirpstack", True, extra=extra)
    try:
        reasons = sorted(q.reason for q in store.quarantine(100))
        print(f"quarantined: {reasons}")
        assert reasons == ["codec_missing_field", "replayed_fcnt", "undecodable", "unknown_device"]
        unknown = [q for q in store.quarantine(100) if q.reason == "unknown_device"][0]
        assert unknown.station_id is None and unknown.topic.startswith("application/x/device/00000000000000aa")
        assert json.loads(unknown.payload)["deviceInfo"]["devEui"] == "00000000000000aa"
        # Everything the simulated nodes sent is stored, and the one good injected frame (fCnt 5) too.
        nodes = {n.station_id: n for n in fleet.nodes}
        for sid in STATIONS:
            stored = store.read_readings(sid, start_s - 86_400, start_s + 5 * 86_400)
            assert len(stored) == nodes[sid].readings_sent, sid
        assert len(store.read_readings("LP-W04", start_s - 86_400, start_s + 5 * 86_400)) == 1
    finally:
        service.stop()
        store.close()


def test_cli_publishes_as_the_things_stack_when_the_site_maps_devices(broker, tmp_path, capsys, monkeypatch):
    from floodwatch.cli import simulate
    from floodwatch.settings import DEFAULT_CONFIG_FILE
    from tests.firmware_sim.conftest import Recorder

    site = tmp_path / "site.toml"
    mapping = "\n".join(f'"{k}" = "{v}"' for k, v in DEVICES.items())
    site.write_text(DEFAULT_CONFIG_FILE.read_text() + f"\n[lorawan.devices]\n{mapping}\n")
    monkeypatch.setenv("FLOODWATCH_CONFIG", str(site))
    recorder = Recorder(broker.port, topic="v3/#")
    summary_path = tmp_path / "sim.json"
    # LP-W01 and LP-W02: W02 has no device, so the whole registry cannot run behind a server.
    assert simulate.main(["--broker", broker.url, "--lorawan", "tts", "--duration", "1"]) == 2
    assert "LP-W02 has no LoRaWAN device" in capsys.readouterr().err
    rc = simulate.main(["--broker", broker.url, "--lorawan", "tts", "--nodes", "1", "--acceleration", "6000",
                        "--duration", "1.5", "--progress-every", "0", "--summary-json", str(summary_path)])
    assert rc == 0
    assert "behind a tts network server" in capsys.readouterr().out
    summary = json.loads(summary_path.read_text())
    assert summary["published"] > 5
    assert recorder.wait_for(lambda: len(recorder.messages) >= summary["messages_sent"])
    topics = {t for t, _ in recorder.messages}
    assert topics == {"v3/floodwatch@ttn/devices/eui-70b3d57ed0001a01/up"}
    body = json.loads(recorder.messages[-1][1])
    assert body["end_device_ids"]["dev_eui"] == "70B3D57ED0001A01"
    assert "decoded_payload" in body["uplink_message"] and "frm_payload" in body["uplink_message"]
    recorder.close()
