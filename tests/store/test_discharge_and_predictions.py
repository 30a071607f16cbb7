"""Both stores keep a dam's release (discharge_m3_s) and let a new prediction replace the old one."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from floodwatch.errors import StoreError
from floodwatch.settings import load_settings
from floodwatch.store import open_store
from floodwatch.store.sqlite import SqliteStore
from floodwatch.vocabulary import QcFlag, Reading, StationId
from tests.store.influx_standin import InfluxStandIn

DAM, TIDE, W1 = StationId("KRASIAO-REL"), StationId("TC-MOUTH-TIDE"), StationId("LP-W01")


@pytest.fixture(params=["sqlite", "influx"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "fw.db")
        yield s
        s.close()
        return
    with InfluxStandIn(token="t0k", org="floodwatch", buckets={"floodwatch"}) as standin:
        settings = load_settings(store={"url": standin.url.replace("http://", "influxdb+http://"),
                                        "influx_token": "t0k", "influx_org": "floodwatch",
                                        "influx_bucket": "floodwatch"})
        s = open_store(settings)
        yield s
        s.close()
        assert not standin.violations, standin.violations


def now_s() -> float:
    return float(int(time.time()) // 3600 * 3600 - 7200)


def test_a_release_round_trips_and_windows_like_any_field(store):
    t0 = now_s()
    stored = store.insert_new([Reading(DAM, t0 + k * 3600, discharge_m3_s=25.0 + 10 * k, qc_flag=QcFlag.PASS)
                               for k in range(3)])
    assert len(stored) == 3
    back = store.read_readings(DAM, t0, t0 + 4 * 3600)
    assert [r.discharge_m3_s for r in back] == [25.0, 35.0, 45.0] and back[0].water_level_m is None
    window = store.read_window([DAM], "discharge_m3_s", t0, t0 + 3 * 3600, 3600.0)
    np.testing.assert_allclose(window.values[0], [25.0, 35.0, 45.0])
    assert store.latest([DAM])[DAM].discharge_m3_s == 45.0


def test_a_new_prediction_replaces_the_old_over_the_times_it_covers_and_nothing_else(store):
    t0 = now_s()
    old = [Reading(TIDE, t0 + k * 3600, water_level_m=1.0 + 0.01 * k, qc_flag=QcFlag.PASS) for k in range(10)]
    store.replace_readings(TIDE, old[0].ts_s, old[-1].ts_s, old)
    store.insert_new([Reading(W1, t0 + 3600, water_level_m=0.5, qc_flag=QcFlag.PASS)])
    new = [Reading(TIDE, t0 + k * 3600, water_level_m=2.0, qc_flag=QcFlag.PASS) for k in (4, 6, 8)]
    assert len(store.replace_readings(TIDE, t0 + 4 * 3600, t0 + 8 * 3600, new)) == 3
    after = {r.ts_s - t0: r.water_level_m for r in store.read_readings(TIDE, t0, t0 + 11 * 3600)}
    # hours 5 and 7 of the old table are gone (the new one skips them), 0-3 and 9 stay as they were
    assert after == {0: 1.0, 3600: 1.01, 7200: 1.02, 10800: 1.03, 4 * 3600: 2.0, 6 * 3600: 2.0, 8 * 3600: 2.0,
                     9 * 3600: 1.09}
    assert [r.water_level_m for r in store.read_readings(W1, t0, t0 + 7200)] == [0.5]  # other stations untouched
    # The newest reading of a predicted series is where the prediction ends, days ahead.
    store.replace_readings(TIDE, t0 + 9 * 86_400, t0 + 9 * 86_400, [Reading(TIDE, t0 + 9 * 86_400, water_level_m=0.7)])
    assert store.latest([TIDE])[TIDE].ts_s == t0 + 9 * 86_400
    with pytest.raises(StoreError, match="outside"):
        store.replace_readings(TIDE, t0, t0 + 3600, [Reading(TIDE, t0 + 7200, water_level_m=1.0)])


def test_an_existing_sqlite_file_gains_the_discharge_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a file written before discharge existed
        conn.execute(
            "CREATE TABLE readings (station TEXT NOT NULL, ts_s REAL NOT NULL, seq INTEGER, boot INTEGER,"
            " water_level_m REAL, rain_mm REAL, battery_v REAL, rssi_dbm REAL, qc_flag INTEGER NOT NULL,"
            " qc_tests TEXT NOT NULL DEFAULT '', received_s REAL, PRIMARY KEY (station, ts_s)) WITHOUT ROWID")
        conn.execute("INSERT INTO readings (station, ts_s, water_level_m, qc_flag) VALUES ('LP-W01', 100.0, 1.2, 1)")
    with SqliteStore(path) as s:
        assert s.read_readings(W1, 0, 200)[0].water_level_m == 1.2
        s.insert_new([Reading(DAM, 100.0, discharge_m3_s=80.0)])
        assert s.read_readings(DAM, 0, 200)[0].discharge_m3_s == 80.0
