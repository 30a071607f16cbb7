"""The forecast process (``ForecastJob(isolated=True)``) reads the same store and gives the same forecast."""

from __future__ import annotations

import numpy as np
from floodwatch.scheduler import ForecastJob

from floodwatch import store
from floodwatch.clock import FixedClock
from floodwatch.vocabulary import Reading

M2_PERIOD_S = 12.4206012 * 3600.0


def test_isolated_forecast_matches_the_in_thread_one(make_settings):
    settings = make_settings()
    settings.forecast.history_days = 5.0
    now_s = 1_796_000_400.0
    t_s = np.arange(now_s - 5 * 86_400.0, now_s + 1, 600.0)
    db = store.open_store(settings)
    readings = []
    for k, station in enumerate(settings.level_stations):
        levels = station.levels.watch_m - 1.0 + 0.4 * np.cos(2 * np.pi * t_s / M2_PERIOD_S + k)
        readings += [Reading(station.id, float(t), seq=i, water_level_m=float(v))
                     for i, (t, v) in enumerate(zip(t_s, levels, strict=True))]
    db.write_batch(readings)
    if hasattr(db, "sync"):
        db.sync()
    published = []
    in_thread = ForecastJob(settings, db, FixedClock(now_s)).run_once()
    isolated = ForecastJob(settings, db, FixedClock(now_s), on_forecast=published.append, isolated=True)
    try:
        first = isolated.run_once()
        second = isolated.run_once()  # the same child process answers again
    finally:
        isolated.close()
        db.close()

    assert first is not None and second is not None and published == [first, second]
    assert isolated.latest() is second
    assert first.station_ids == in_thread.station_ids
    np.testing.assert_allclose(first.forecast.median_m, in_thread.forecast.median_m, equal_nan=True)
    np.testing.assert_allclose(first.forecast.exceed_prob, in_thread.forecast.exceed_prob, equal_nan=True)
    assert np.isfinite(first.forecast.median_m).any()
