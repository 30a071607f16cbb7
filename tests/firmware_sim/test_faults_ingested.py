"""Every fault, through the real broker and the real ingestion into a real SQLite store.

The ground truth says what ingestion should conclude: spikes and flat lines
flagged, duplicates stored once, a buffered hour stored complete, rain across
reboots equal to the truth, a clock seven hours ahead refused.
"""

from __future__ import annotations

import time

import pytest
from floodwatch.firmware_sim import Fleet, load_scenario

from floodwatch.clock import AcceleratedClock
from floodwatch.vocabulary import QcFlag

pytestmark = pytest.mark.timeout(120)

HOUR_S = 3600.0


@pytest.fixture
def ingested(broker, settings, tmp_path):
    from floodwatch.ingest import IngestService
    from floodwatch.store import open_store

    settings.mqtt.url = broker.url
    settings.mqtt.client_id = "fw-test-ingest"
    settings.store.url = f"sqlite:///{tmp_path}/floodwatch.db"
    scenario = load_scenario("faults_mixed")
    start_s = time.time()
    clock = AcceleratedClock(sim_start_s=start_s, factor=12_000.0)  # ten scenario hours in 3 s
    store = open_store(settings)
    service = IngestService(settings, store, clock)
    service.start()
    assert service.wait_connected(10), "ingest did not connect"
    fleet = Fleet(settings, scenario, broker.url, clock, seed=5, start_s=start_s)
    fleet.start()
    deadline = time.monotonic() + 30
    while clock.now_s() - start_s < scenario.duration_s and time.monotonic() < deadline:
        time.sleep(0.1)
    fleet.stop()
    stats = fleet.stats()
    # Wait until ingestion has handled everything that was sent.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = service.stats()
        handled = s["stored"] + s["duplicates"] + s["rejected"]
        if handled >= stats["published"] + stats["duplicates_sent"] and s["queue_depth"] == 0:
            break
        time.sleep(0.1)
    time.sleep(0.3)
    yield scenario, fleet, service, store, start_s
    service.stop()
    store.close()


def _readings(store, station_id, start_s):
    return store.read_readings(station_id, start_s - HOUR_S, start_s + 20 * HOUR_S)


def test_faults_reach_the_store_as_the_truth_says(ingested, settings):
    scenario, fleet, service, store, start_s = ingested
    nodes = {n.station_id: n for n in fleet.nodes}

    # Offline for an hour, then flushed: every reading made is stored, none lost.
    w07 = _readings(store, "LP-W07", start_s)
    assert nodes["LP-W07"].stats()["batches_sent"] >= 1
    assert len(w07) == nodes["LP-W07"].core.readings_made

    # Duplicates: sent twice, stored once.
    assert nodes["LP-W05"].duplicates_sent > 5
    assert len(_readings(store, "LP-W05", start_s)) == nodes["LP-W05"].core.readings_made
    assert service.stats()["duplicates"] >= nodes["LP-W05"].duplicates_sent

    # Dropout: a three-hour hole, no invented readings.
    w02_h = [(r.ts_s - start_s) / HOUR_S for r in _readings(store, "LP-W02", start_s)]
    assert not any(2.01 < h < 4.99 for h in w02_h)
    assert len(w02_h) == nodes["LP-W02"].core.readings_made

    # Reboots in the rain: converted rain equals the truth, to within one tip.
    for gauge in ("LP-R01", "LP-R02"):
        rs = _readings(store, gauge, start_s)
        assert len({r.boot for r in rs}) == 2
        stored_mm = sum(r.rain_mm or 0.0 for r in rs)
        truth_mm = scenario.truth_rain_mm([gauge], rs[0].ts_s - start_s, rs[-1].ts_s - start_s)[0]
        assert truth_mm > 25
        assert abs(stored_mm - truth_mm) <= settings.station(gauge).mm_per_tip + 0.01, gauge

    # A spike is flagged; the readings around it are not.
    w01 = _readings(store, "LP-W01", start_s)
    truth = scenario.truth_level_m(["LP-W01"], [r.ts_s - start_s for r in w01])[0]
    spiked = [r for r, t in zip(w01, truth, strict=True) if r.water_level_m - t > 0.8]
    assert len(spiked) == 1
    assert spiked[0].qc_flag in (QcFlag.SUSPECT, QcFlag.FAIL) and "spike" in spiked[0].qc_tests
    clean = [r for r, t in zip(w01, truth, strict=True) if abs(r.water_level_m - t) < 0.1]
    assert sum(r.qc_flag == QcFlag.PASS for r in clean) >= 0.8 * len(clean)

    # A sensor stuck for six hours is flagged as a flat line before it recovers.
    w03 = _readings(store, "LP-W03", start_s)
    late_stuck = [r for r in w03 if 5 * HOUR_S <= r.ts_s - start_s < 8 * HOUR_S]
    assert late_stuck and all(r.qc_flag in (QcFlag.SUSPECT, QcFlag.FAIL) for r in late_stuck)
    assert all("flat" in r.qc_tests for r in late_stuck)

    # A clock seven hours ahead: those readings are refused with the reason, the rest stored.
    refused = store.quarantine(limit=1000, station_id="LP-W06")
    assert refused and {q.reason for q in refused} == {"future_ts"}
    w06_h = [(r.ts_s - start_s) / HOUR_S for r in _readings(store, "LP-W06", start_s)]
    assert not any(2.01 < h < 5.99 for h in w06_h)
    assert len(w06_h) + len(refused) == nodes["LP-W06"].core.readings_made

    # The truth crosses no level: there is nothing to alert on.
    assert scenario.crossings(settings) == []
