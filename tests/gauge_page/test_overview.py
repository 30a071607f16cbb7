"""The overview's decisions as pure functions: level class, rate of rise, danger order, forecast summary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from floodwatch import models
from floodwatch.settings import WarningLevels, load_settings
from floodwatch.vocabulary import AlertLevel, QcFlag, Reading, StationId
from floodwatch.gauge_page import _overview
from floodwatch.scheduler.forecast_job import IssuedForecast

LEVELS = WarningLevels(watch_m=1.20, warning_m=1.45, evacuate_m=1.70)


@pytest.mark.parametrize(
    ("level_m", "expected"),
    [(None, AlertLevel.NORMAL), (math.nan, AlertLevel.NORMAL), (1.19, AlertLevel.NORMAL),
     (1.20, AlertLevel.WATCH), (1.449, AlertLevel.WATCH), (1.45, AlertLevel.WARNING),
     (1.70, AlertLevel.EVACUATE), (9.0, AlertLevel.EVACUATE)],
)
def test_level_class_uses_each_threshold_inclusively(level_m, expected):
    assert _overview.level_class(level_m, LEVELS) == expected


def test_rise_rate_recovers_known_slopes_with_gaps():
    t_s = np.arange(0, 3600 + 1, 60.0)
    rows = np.vstack([0.5 + 0.30 * t_s / 3600.0, 2.0 - 0.05 * t_s / 3600.0, np.full_like(t_s, np.nan)])
    rows[0, ::3] = np.nan  # missing bins must not bias the slope
    rows[2, :2] = [1.0, 1.1]  # two points are too few to call a trend
    rate = _overview.rise_rate_cm_per_h(t_s, rows)
    assert rate[0] == pytest.approx(30.0)
    assert rate[1] == pytest.approx(-5.0)
    assert math.isnan(rate[2])
    assert [_overview.trend_of(r) for r in rate] == ["rising", "falling", "unknown"]


def test_rise_rate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="columns"):
        _overview.rise_rate_cm_per_h(np.arange(5.0), np.zeros((2, 4)))


def _row(station_id: str, level_m: float | None, rate: float | None = None, ts_s: float = 1000.0):
    settings = load_settings()
    station = settings.station(station_id)
    latest = None if level_m is None else Reading(StationId(station_id), ts_s, water_level_m=level_m,
                                                   qc_flag=QcFlag.PASS)
    return _overview.build_row(station, latest, now_s=1000.0, rate_cm_per_h=rate, rain_1h_mm=None,
                               forecast=None, status=None, maintenance=False)


def test_most_dangerous_first_then_closest_to_next_level_then_fastest_rise():
    rows = [
        _row("LP-W01", 1.00),             # normal, far below watch 1.60
        _row("LP-W05", 1.75),             # evacuate (1.70)
        _row("LP-W03", 1.50, rate=3.0),   # watch (1.40), 40 % of the way to warning
        _row("LP-W04", 1.45, rate=25.0),  # watch (1.35), 40 % of the way, rising faster
        _row("LP-W02", None),             # no data at all
        _row("LP-W06", 1.65),             # warning (1.60)
    ]
    order = [r.id for r in _overview.sort_by_danger(rows)]
    assert order == ["LP-W05", "LP-W06", "LP-W04", "LP-W03", "LP-W01", "LP-W02"]


def test_stale_when_three_publish_intervals_missed():
    fresh = _row("LP-W01", 1.0, ts_s=1000.0 - 1799.0)
    stale = _row("LP-W01", 1.0, ts_s=1000.0 - 1801.0)
    assert (fresh.stale, stale.stale) == (False, True)
    assert stale.status == "silent" and stale.data_age_s == pytest.approx(1801.0)


def test_forecast_summary_peak_and_first_crossings():
    t_s = 1000.0 + 600.0 * np.arange(1, 7)
    median = np.array([[1.0, 1.3, 1.5, 1.8, 1.6, 1.2], [0.1, 0.2, 0.1, 0.0, 0.1, 0.2]])
    crossing = np.array([[t_s[1], t_s[2], t_s[3]], [np.nan, np.nan, np.nan]])
    fc = models.Forecast(
        t_s=t_s, median_m=median, lower_m=median - 0.1, upper_m=median + 0.1,
        exceed_prob=np.zeros((2, 3, 6)), first_crossing_s=crossing,
        rise_rate_cm_per_h=np.array([10.0, 0.0]), model_name=("tide+residual", "persistence"),
    )
    issued = IssuedForecast(issued_s=1000.0, station_ids=(StationId("LP-W05"), StationId("LP-W01")), forecast=fc)
    s = _overview.summarize_forecast(issued, "LP-W05", LEVELS)
    assert (s.peak_m, s.peak_s, s.peak_class) == (1.8, t_s[3], AlertLevel.EVACUATE)
    assert s.crossing_s == (t_s[1], t_s[2], t_s[3])
    assert s.model_name == "tide+residual"
    calm = _overview.summarize_forecast(issued, "LP-W01", LEVELS)
    assert calm.crossing_s == (None, None, None) and calm.peak_class == AlertLevel.NORMAL
    assert _overview.summarize_forecast(issued, "LP-W03", LEVELS) is None
    assert _overview.summarize_forecast(None, "LP-W05", LEVELS) is None
