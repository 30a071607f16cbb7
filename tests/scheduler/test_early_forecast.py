"""A reading outside the forecast's band re-forecasts at once instead of at the next scheduled run."""

from __future__ import annotations

import time

import numpy as np
from floodwatch.scheduler import ForecastJob, departs_from_forecast

from floodwatch import store
from floodwatch.clock import FixedClock
from floodwatch.vocabulary import QcFlag, Reading, StationId


def _seed(settings, now_s: float) -> None:
    t_s = np.arange(now_s - 5 * 86_400.0, now_s + 1, 600.0)
    db = store.open_store(settings)
    readings = []
    for station in settings.level_stations:
        level = station.levels.watch_m - 1.0 + 0.3 * np.sin(2 * np.pi * t_s / (12.42 * 3600))
        readings += [Reading(station.id, float(t), seq=i, water_level_m=float(v))
                     for i, (t, v) in enumerate(zip(t_s, level, strict=True))]
    db.write_batch(readings)
    db.close()


def test_reading_far_above_the_band_triggers_one_early_forecast(make_settings):
    settings = make_settings()
    settings.forecast.history_days = 5.0
    now_s = 1_796_000_400.0
    _seed(settings, now_s)
    db = store.open_store(settings)
    clock = FixedClock(now_s)
    issued: list = []
    job = ForecastJob(settings, db, clock, on_forecast=issued.append)
    first = job.run_once()
    sid = StationId("LP-W03")
    row = first.station_ids.index(sid)
    t_next = float(first.forecast.t_s[0])
    expected = float(first.forecast.median_m[row, 0])
    upper = float(first.forecast.upper_m[row, 0])

    inside = Reading(sid, t_next, water_level_m=expected)
    assert not departs_from_forecast(first, sid, t_next, expected)
    assert job.check_readings([inside]) is False

    flash = Reading(sid, t_next, water_level_m=upper + 0.30)
    spike = Reading(sid, t_next, water_level_m=upper + 3.0, qc_flag=QcFlag.FAIL)
    assert job.check_readings([spike]) is False, "a QC-failed spike must not drive forecasts"
    started = time.perf_counter()
    assert job.check_readings([flash]) is True
    deadline = time.monotonic() + 10
    while job.early_runs < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    took_s = time.perf_counter() - started
    job.close()
    db.close()
    print(f"early forecast: issued {took_s * 1000:.0f} ms after the departing reading")
    assert job.early_runs == 1 and len(issued) == 2
