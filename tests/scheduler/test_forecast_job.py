"""The forecast job reads a real SQLite store and forecasts every level station in one call."""

from __future__ import annotations

import numpy as np
from floodwatch.scheduler import ForecastJob

from floodwatch import store
from floodwatch.clock import FixedClock
from floodwatch.vocabulary import Reading

M2_PERIOD_S = 12.4206012 * 3600.0
K1_PERIOD_S = 23.9344696 * 3600.0


def _tide_m(t_s: np.ndarray, mean_m: float) -> np.ndarray:
    return mean_m + 0.45 * np.cos(2 * np.pi * t_s / M2_PERIOD_S) + 0.30 * np.cos(2 * np.pi * t_s / K1_PERIOD_S + 1.0)


def test_forecast_follows_the_tide_for_every_station(make_settings):
    settings = make_settings()
    settings.forecast.history_days = 10.0
    now_s = 1_796_000_400.0
    t_s = np.arange(now_s - 10 * 86_400.0, now_s + 1, 600.0)
    db = store.open_store(settings)
    readings = []
    means = {}
    for station in settings.level_stations:
        means[station.id] = station.levels.watch_m - 1.0  # peaks 0.25 m below watch
        levels = _tide_m(t_s, means[station.id])
        readings += [Reading(station.id, float(t), seq=i, water_level_m=float(v))
                     for i, (t, v) in enumerate(zip(t_s, levels, strict=True))]
    db.write_batch(readings)
    issued_seen = []
    job = ForecastJob(settings, db, FixedClock(now_s), on_forecast=issued_seen.append)
    issued = job.run_once()
    db.close()

    assert issued is not None and issued_seen == [issued] and job.latest() is issued
    fc = issued.forecast
    # A predicted series (the tide table at the mouth) is an input, not forecast itself.
    assert issued.station_ids == tuple(s.id for s in settings.level_stations if s.series != "predicted")
    assert fc.median_m.shape == (len(issued.station_ids), fc.t_s.size)
    assert fc.exceed_prob.shape[:2] == (len(issued.station_ids), 3)
    six_hours = fc.t_s <= fc.t_s[0] + 6 * 3600
    for row, sid in enumerate(issued.station_ids):
        if settings.station(sid).dry_level_m is not None:
            continue  # a street gauge has no tide below its street; see the floor test
        truth = _tide_m(fc.t_s[six_hours], means[sid])
        err = np.abs(fc.median_m[row, six_hours] - truth)
        assert err.max() < 0.05, f"{sid}: tide forecast off by {err.max():.3f} m"
        # Far below every warning level: no chance of crossing.
        assert fc.exceed_prob[row].max() < 0.05


def test_street_forecast_never_goes_below_the_dry_street(make_settings):
    settings = make_settings()
    settings.forecast.history_days = 3.0
    now_s = 1_796_000_400.0
    t_s = np.arange(now_s - 3 * 86_400.0, now_s + 1, 600.0)
    street = settings.station("LP-W06")  # dry_level_m 1.40
    # Dry for days, then a shower floods the street and it drains fast towards the ground.
    level = np.full(t_s.shape, street.dry_level_m)
    level[-12:] = np.linspace(1.60, 1.42, 12)
    db = store.open_store(settings)
    db.write_batch([Reading(street.id, float(t), seq=i, water_level_m=float(v))
                    for i, (t, v) in enumerate(zip(t_s, level, strict=True))])
    issued = ForecastJob(settings, db, FixedClock(now_s)).run_once()
    db.close()
    row = issued.station_ids.index(street.id)
    lowest = float(np.nanmin(issued.forecast.lower_m[row]))
    print(f"street: lowest forecast band edge {lowest:.3f} m (street {street.dry_level_m} m)")
    assert lowest >= street.dry_level_m - 1e-9
