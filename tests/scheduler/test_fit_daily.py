"""The forecast job fits every station once a day and only moves the fitted model every cycle (real SQLite store)."""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.signal import lfilter

from floodwatch import store
from floodwatch.clock import FixedClock
from floodwatch.scheduler import ForecastJob
from floodwatch.scheduler.forecast_job import model_file
from floodwatch.vocabulary import Reading, StationId

M2_PERIOD_S = 12.4206012 * 3600.0
NOW_S = 1_796_000_400.0
STEP_S = 600.0


def _seed(settings, days_before: float, days_after: float) -> None:
    """Every level station a tide with a slow wave; LP-W03 follows LP-W01 three hours later."""
    t_s = np.arange(NOW_S - days_before * 86_400.0, NOW_S + days_after * 86_400.0, STEP_S)
    # Freshets: a pulse of run-off every day or so, rising over hours and draining over a day.
    rng = np.random.default_rng(5)
    pulses = np.where(rng.random(t_s.size) < 0.008, rng.uniform(0.05, 0.15, t_s.size), 0.0)
    wave = lfilter([1.0], [1.0, -0.985], lfilter([0.2], [1.0, -0.8], pulses))
    db = store.open_store(settings)
    readings = []
    for k, station in enumerate(settings.level_stations):
        base = station.levels.watch_m - 1.0 + 0.3 * np.cos(2 * np.pi * t_s / M2_PERIOD_S + k)
        level = base + (np.interp(t_s - 3 * 3600.0, t_s, wave) if station.id == "LP-W03" else wave)
        readings += [Reading(station.id, float(t), seq=i, water_level_m=float(v))
                     for i, (t, v) in enumerate(zip(t_s, level, strict=True))]
    db.write_batch(readings)
    db.close()


def test_fits_daily_predicts_every_cycle_and_a_restart_needs_no_fit(make_settings):
    settings = make_settings()
    settings.forecast.history_days = 5.0
    settings.forecast.network_history_days = 6.0
    settings.station("LP-W03").upstream = [StationId("LP-W01")]
    _seed(settings, days_before=8.0, days_after=1.5)
    db = store.open_store(settings)
    clock = FixedClock(NOW_S)
    job = ForecastJob(settings, db, clock)
    first = job.run_once()
    assert (job.fits, job.loads) == (1, 0)
    path = model_file(settings)
    assert path is not None and path.is_file(), "the fitted model is kept beside the store"
    assert path.parent == store_dir(settings)

    clock.advance(STEP_S)
    started = time.perf_counter()
    second = job.run_once()
    cycle_s = time.perf_counter() - started
    assert job.fits == 1, "ten minutes later the model is moved, not fitted again"
    np.testing.assert_array_equal(second.fitted_s, first.fitted_s)
    assert second.forecast.t_s[0] == first.forecast.t_s[0] + STEP_S
    assert np.isfinite(second.forecast.median_m).all()
    row = second.station_ids.index(StationId("LP-W03"))
    assert "LP-W01 (lag 3 h)" in second.forecast.inputs_used[row], second.forecast.inputs_used
    assert second.forecast.model_name[row].endswith("+upstream")
    print(f"one cycle from the stored fit: {cycle_s * 1000:.0f} ms for {len(second.station_ids)} stations")

    clock.advance(86_400.0)
    third = job.run_once()
    assert job.fits == 2, "a day later every station is fitted again"
    assert np.all(third.fitted_s > first.fitted_s)

    # A restart (a new forecast process) reads the model file instead of fitting.
    restarted = ForecastJob(settings, db, clock)
    again = restarted.run_once()
    db.close()
    assert (restarted.fits, restarted.loads) == (0, 1)
    np.testing.assert_array_equal(again.fitted_s, third.fitted_s)
    # The same to within a micrometre (the harmonics are summed in single precision).
    np.testing.assert_allclose(again.forecast.median_m, third.forecast.median_m, rtol=0, atol=1e-6)


def store_dir(settings):
    return model_file(settings).parent


def test_a_reading_outside_the_band_refits_its_station_only(make_settings):
    settings = make_settings()
    settings.forecast.history_days = 5.0
    # Readings up to the clock's time only: the departing reading is the first at its time
    # (the store keeps the first reading of a station at a time, so a later one would be a duplicate).
    _seed(settings, days_before=6.0, days_after=(3 * 3600.0 + STEP_S) / 86_400.0)
    db = store.open_store(settings)
    clock = FixedClock(NOW_S + 3 * 3600.0)
    job = ForecastJob(settings, db, clock)
    first = job.run_once()
    sid = StationId("LP-W05")
    row = first.station_ids.index(sid)
    t_next = float(first.forecast.t_s[0])
    flash = Reading(sid, t_next, seq=10**6, water_level_m=float(first.forecast.upper_m[row, 0]) + 0.5)
    db.write_batch([flash])
    clock.advance(t_next + 60.0 - clock.now_s())
    try:
        assert job.check_readings([flash]) is True
        deadline = time.monotonic() + 60
        while job.early_runs < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        early = job.latest()
    finally:
        job.close()
        db.close()
    assert job.early_runs == 1 and job.refits == 1 and job.fits == 1
    assert early.fitted_s[row] > first.fitted_s[row], "the departing station was refitted"
    others = np.arange(len(early.station_ids)) != row
    np.testing.assert_array_equal(early.fitted_s[others], first.fitted_s[others])
    assert early.forecast.median_m[row, 0] > first.forecast.median_m[row, 0] + 0.3


def test_an_input_that_cannot_help_is_named_in_the_log(make_settings, caplog):
    settings = make_settings()
    settings.forecast.history_days = 5.0
    settings.forecast.network_history_days = 5.0
    # Configured the wrong way round: LP-W01 is upstream of LP-W03, not downstream.
    settings.station("LP-W01").upstream = [StationId("LP-W03")]
    _seed(settings, days_before=7.0, days_after=0.1)
    db = store.open_store(settings)
    with caplog.at_level(logging.WARNING, logger="floodwatch.scheduler.forecast_job"):
        issued = ForecastJob(settings, db, FixedClock(NOW_S)).run_once()
    db.close()
    row = issued.station_ids.index(StationId("LP-W01"))
    assert "LP-W03: not used, follows this station" in issued.forecast.inputs_used[row]
    assert any("station=LP-W01" in r.message and "follows this station" in r.message for r in caplog.records)
