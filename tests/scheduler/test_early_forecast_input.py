"""An early forecast sees the reading that asked for it, even inside an unfinished 10-minute step."""

from __future__ import annotations

import time

import numpy as np
from floodwatch.scheduler import ForecastJob

from floodwatch import store
from floodwatch.clock import FixedClock
from floodwatch.vocabulary import Reading, StationId


def test_early_forecast_includes_the_departing_reading(make_settings):
    settings = make_settings()
    settings.forecast.history_days = 5.0
    step_s = settings.forecast.step_s
    now_s = 1_796_000_400.0 + step_s / 2  # halfway through a step, as readings usually are
    t_s = np.arange(now_s - 5 * 86_400.0, now_s - 1, step_s)
    db = store.open_store(settings)
    readings = []
    for station in settings.level_stations:
        level = station.levels.watch_m - 1.0 + 0.3 * np.sin(2 * np.pi * t_s / (12.42 * 3600))
        readings += [Reading(station.id, float(t), seq=i, water_level_m=float(v))
                     for i, (t, v) in enumerate(zip(t_s, level, strict=True))]
    db.write_batch(readings)
    job = ForecastJob(settings, db, FixedClock(now_s))
    try:
        before = job.run_once()
        sid = StationId("LP-W03")
        row = before.station_ids.index(sid)
        flash = Reading(sid, now_s - 10, seq=10**6, water_level_m=float(before.forecast.upper_m[row, 0]) + 0.5)
        db.write_batch([flash])
        scheduled = job.run_once()  # a scheduled run waits for the step to finish
        assert job.check_readings([flash]) is True
        deadline = time.monotonic() + 30
        while job.early_runs < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        early = job.latest()
    finally:
        job.close()
        db.close()

    assert job.early_runs == 1
    # The same to within a micrometre (a moved model sums the harmonics in single precision).
    np.testing.assert_allclose(scheduled.forecast.median_m[row], before.forecast.median_m[row], rtol=0, atol=1e-6)
    # The early forecast starts from the flash, not from the tide it interrupted.
    assert early.forecast.median_m[row, 0] > before.forecast.median_m[row, 0] + 0.3
