"""Kept forecasts and streamed reads, on both stores: a real SQLite file and InfluxDB's contract (stand-in)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from floodwatch.settings import load_settings
from floodwatch.store import open_store
from floodwatch.vocabulary import QcFlag, Reading, StationId
from tests.store.influx_standin import InfluxStandIn


@pytest.fixture(params=["sqlite", "influx"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(load_settings(store={"url": f"sqlite:///{tmp_path}/fw.db"}))
        yield s
        s.close()
        return
    with InfluxStandIn(token="t0ken-for-tests") as influx:
        s = open_store(load_settings(store={"url": influx.url, "influx_token": "t0ken-for-tests"}))
        yield s
        s.close()
    assert not influx.violations, influx.violations


def test_newest_forecast_per_time_is_kept_with_its_band(store):
    issued = float(int(time.time()) // 600 * 600)
    t = issued + 600 * np.arange(1, 5)
    n = store.write_forecast(issued - 600, ["LP-W01"], t - 600, [[1.0, 1.1, 1.2, 1.3]], [[0.9] * 4], [[1.4] * 4])
    assert n == 4
    med = np.array([[2.0, np.nan, 2.2, 2.3], [0.5, 0.5, 0.5, 0.5]])
    assert store.write_forecast(issued, ["LP-W01", "LP-W02"], t, med, med - 0.1, med + 0.1) == 7
    points = list(store.iter_forecasts(["LP-W01"], issued - 3600, issued + 7200))
    got = [(p.t_s - issued, p.issued_s - issued, p.median_m) for p in points]
    assert got == [(0.0, -600.0, 1.0), (600.0, 0.0, 2.0), (1200.0, -600.0, 1.2), (1800.0, 0.0, 2.2),
                   (2400.0, 0.0, 2.3)]
    assert points[1].lower_m == pytest.approx(1.9) and points[1].upper_m == pytest.approx(2.1)
    assert points[1].lead_s == 600.0
    assert [p.station_id for p in store.iter_forecasts(["LP-W02", "LP-W01"], issued, issued + 7200)][:4] == \
        ["LP-W02"] * 4


def test_iter_readings_streams_the_same_rows_as_read_readings(store):
    now = float(int(time.time()))
    rs = [Reading(StationId(sid), now - 86_400 + 60 * k, seq=k, water_level_m=0.001 * k, qc_flag=QcFlag.PASS)
          for sid in ("LP-W01", "LP-W02") for k in range(700)]
    store.write_batch(rs)
    kwargs = {"chunk": 97} if hasattr(store, "path") else {}
    streamed = list(store.iter_readings(["LP-W02", "LP-W01"], now - 86_400, now, **kwargs))
    expected = store.read_readings("LP-W02", now - 86_400, now) + store.read_readings("LP-W01", now - 86_400, now)
    assert [(r.station_id, r.ts_s, r.water_level_m) for r in streamed] == \
        [(r.station_id, r.ts_s, r.water_level_m) for r in expected]
    assert len(streamed) == 1400
    assert list(store.iter_readings(["LP-W03"], now - 86_400, now)) == []
