"""Fleets against a real Mosquitto: counts, determinism, the demo's early warning, the CLI."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest

from floodwatch import firmware_sim
from floodwatch.cli import simulate
from floodwatch.firmware_sim import Fleet, load_scenario
from floodwatch.clock import AcceleratedClock

from .conftest import Recorder

pytestmark = pytest.mark.timeout(120)


def test_fleet_of_500_nodes_publishes_the_expected_count(broker, settings):
    recorder = Recorder(broker.port)
    clock = AcceleratedClock(sim_start_s=time.time(), factor=3000.0)
    fleet = Fleet(settings, load_scenario("tidal_normal"), broker.url, clock, seed=3, extra_nodes=489)
    assert len(fleet.nodes) == 500 and len(fleet.links) == len(settings.own_stations) + 1
    fleet.start()
    time.sleep(2.0)
    fleet.stop()
    stats = fleet.stats()
    # Every node publishes every 600 scenario s from a random phase: ~reached_s / 600 each,
    # counted up to where the scheduler got (a slow machine falls behind the accelerated
    # clock; how fast it keeps up is a benchmark's figure, not this test's).
    reached_s = stats["reached_s"]
    per_node = reached_s / 600.0
    assert 500 * (per_node - 1.5) <= stats["published"] <= 500 * (per_node + 1)
    assert stats["published"] >= 2000
    assert stats["dropped"] == 0 and stats["buffered"] == 0
    assert stats["acknowledged"] == stats["messages_sent"]
    assert recorder.wait_for(lambda: len(recorder.telemetry_messages()) >= stats["messages_sent"])
    time.sleep(0.2)
    received = Counter(t.split("/")[1] for t, _ in recorder.telemetry_messages())
    assert received == Counter(stats["per_station"])
    assert recorder.statuses("SIM-00489")[-1] == "offline" and "online" in recorder.statuses("SIM-00001")
    recorder.close()


def _first_readings(broker, settings, seed: int, start_s: float) -> dict[str, list[dict]]:
    recorder = Recorder(broker.port)
    clock = AcceleratedClock(sim_start_s=start_s, factor=6000.0)
    with Fleet(settings, load_scenario("monsoon_flood"), broker.url, clock, seed=seed, extra_nodes=20):
        ids = [s.id for s in settings.own_stations] + ["SIM-00020"]
        assert recorder.wait_for(lambda: all(len(recorder.readings(n)) >= 3 for n in ids))
    out = {n: recorder.readings(n)[:3] for n in ids}
    recorder.close()
    return out


def test_fleets_are_deterministic_with_a_seed(broker, settings):
    start_s = 1_795_000_000.0
    a = _first_readings(broker, settings, seed=9, start_s=start_s)
    b = _first_readings(broker, settings, seed=9, start_s=start_s)
    c = _first_readings(broker, settings, seed=10, start_s=start_s)
    assert a == b
    assert a != c


def test_demo_fleet_warns_within_the_first_real_minute(broker, settings):
    """At the demo's 600x the readings a node sends cross WARNING within a real minute (here: faster)."""
    scenario = load_scenario("monsoon_flood")
    first = next(c for c in scenario.crossings(settings) if c.level_name == "warning")
    assert first.ts_s / 600.0 < 60.0
    station = settings.station(first.station_id)
    recorder = Recorder(broker.port)
    clock = AcceleratedClock(sim_start_s=time.time(), factor=12_000.0)  # 20x the demo, same readings
    with Fleet(settings, scenario, broker.url, clock, seed=7, stations=[station.id]) as fleet:
        assert recorder.wait_for(
            lambda: any(station.mount_height_m - r["distance_m"] >= station.levels.warning_m + 0.05
                        for r in recorder.readings(station.id) if "distance_m" in r),
            timeout_s=10,
        ), "the flooded station's readings never showed the WARNING level"
        elapsed_scenario_s = clock.now_s() - fleet.start_s
    assert elapsed_scenario_s < 60 * 600.0
    recorder.close()


def test_cli_runs_a_fleet_and_summarises_what_was_sent(broker, tmp_path, capsys):
    recorder = Recorder(broker.port)
    summary_path = tmp_path / "sim.json"
    rc = simulate.main(["--broker", broker.url, "--nodes", "40", "--acceleration", "6000",
                        "--duration", "1.5", "--progress-every", "0.5", "--seed", "2",
                        "--summary-json", str(summary_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "40 nodes (11 registry, 29 synthetic)" in out and "published=" in out and "sent " in out
    summary = json.loads(summary_path.read_text())
    assert summary["nodes"] == 40 and summary["published"] > 40
    assert recorder.wait_for(lambda: len(recorder.telemetry_messages()) >= summary["messages_sent"])
    assert sum(summary["per_station"].values()) + summary["synthetic_published"] == summary["published"]
    recorder.close()


def test_cli_lists_scenarios_and_refuses_a_bad_broker_url(capsys):
    assert simulate.main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in firmware_sim.list_scenarios():
        assert name in listed
    assert simulate.main(["--broker", "http://nowhere", "--duration", "1"]) == 2
    assert "mqtt://HOST:PORT" in capsys.readouterr().err


def test_rate_sets_the_acceleration_from_publish_intervals():
    assert simulate.acceleration_for_rate(100.0, [600.0] * 1000) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="positive"):
        simulate.acceleration_for_rate(0.0, [600.0])


def test_synthetic_stations_copy_the_registry_calibration(settings):
    extra = firmware_sim.synthetic_stations(settings, 25)
    assert [s.id for s in extra[:2]] == ["SIM-00001", "SIM-00002"]
    template = settings.stations[0]
    assert extra[0].mount_height_m == template.mount_height_m and extra[0].kind == template.kind
    assert len({s.id for s in extra}) == 25
    assert np.isfinite([s.publish_interval_s for s in extra]).all()


def test_ingestion_stores_synthetic_nodes_once_told_about_them(broker, settings, tmp_path):
    """The load-test path: SIM-* stations added to ingestion's registry are converted and stored."""
    from floodwatch.ingest import IngestService
    from floodwatch.store import open_store

    settings.mqtt.url = broker.url
    settings.mqtt.client_id = "fw-test-ingest-load"
    settings.store.url = f"sqlite:///{tmp_path}/load.db"
    extended = firmware_sim.with_synthetic_stations(settings, 300)
    assert len(extended.stations) == len(settings.stations) + 300
    clock = AcceleratedClock(sim_start_s=time.time(), factor=3000.0)
    store = open_store(extended)
    service = IngestService(extended, store, clock)
    service.start()
    try:
        assert service.wait_connected(10)
        with Fleet(extended, load_scenario("tidal_normal"), broker.url, clock, seed=1, extra_nodes=300) as fleet:
            assert len(fleet.nodes) == len(settings.own_stations) + 300
            time.sleep(1.5)
        published = fleet.stats()["published"]
        deadline = time.monotonic() + 20
        while service.stats()["stored"] < published and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.stats()["stored"] == published and service.stats()["rejected"] == 0
        latest = store.latest()
        assert "SIM-00300" in latest and latest["SIM-00001"].water_level_m is not None
    finally:
        service.stop()
        store.close()
