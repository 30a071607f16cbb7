"""Forecasts that read other stations: upstream gauges and predicted series, and what goes wrong with them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from floodwatch import models
from floodwatch.errors import ForecastError
from tests.models.synthetic import grid

DT_S = 600.0
LAG_STEPS = 72  # 12 h from the upstream gauge to the station
HORIZON_S = 24 * 3600.0
LEVELS = np.array([9.0, 9.5, 10.0])  # never reached: these tests are about levels, not warnings


def _river(n_stations: int, days: float = 40.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stations that are each a lagged, damped copy of their own upstream gauge plus local noise:
    (t_s, station levels (S, T + 1 day), upstream levels (S, T + 1 day)); the last day is the truth
    to score against, never passed to a forecast."""
    t_s = grid(days + 1.0, DT_S)
    rng = np.random.default_rng(seed)
    n = t_s.size + LAG_STEPS
    # Flood waves upstream: smoothed random pulses, one every few days.
    pulses = np.where(rng.random((n_stations, n)) < 0.004, rng.exponential(0.15, (n_stations, n)), 0.0)
    upstream = 2.0 + lfilter([1.0], [1.0, -0.995], lfilter([0.1], [1.0, -0.9], pulses, axis=1), axis=1)
    local = lfilter([1.0], [1.0, -0.99], rng.normal(0, 0.002, (n_stations, n)), axis=1)
    station = 1.0 + 0.8 * upstream[:, :-LAG_STEPS] + local[:, LAG_STEPS:] + rng.normal(0, 0.003, (n_stations, t_s.size))
    return t_s, station, upstream[:, LAG_STEPS:]


def _split(t_s: np.ndarray, *series: np.ndarray, days_ahead: float = 1.0):
    cut = t_s.size - int(days_ahead * 86400 / DT_S)
    return cut, t_s[:cut], [s[:, :cut] for s in series]


def _forecast(t_s, level, **kw) -> models.Forecast:
    thresholds = np.tile(LEVELS, (level.shape[0], 1))
    return models.forecast_stations(t_s, level, thresholds_m=thresholds, horizon_s=HORIZON_S, step_s=DT_S, **kw)


def test_the_travel_time_is_found_and_the_forecast_beats_the_gauge_alone():
    t_all, station, upstream = _river(6)
    cut, t_s, (level, up) = _split(t_all, station, upstream)
    alone = _forecast(t_s, level)
    linked = _forecast(t_s, level, upstream_m=up, upstream_of=[[k] for k in range(6)],
                       input_names=[f"UP{k}" for k in range(6)])
    for s, text in enumerate(linked.inputs_used):
        assert f"UP{s} (lag 12 h)" in text, text
        assert linked.model_name[s].endswith("+upstream")
    six_h = int(6 * 3600 / DT_S) - 1
    truth = station[:, cut + six_h]
    err_alone = np.sqrt(np.mean((alone.median_m[:, six_h] - truth) ** 2))
    err_linked = np.sqrt(np.mean((linked.median_m[:, six_h] - truth) ** 2))
    print(f"6 h RMSE: gauge alone {err_alone:.3f} m, with its upstream gauge {err_linked:.3f} m")
    assert err_linked < 0.6 * err_alone
    # The band knows the upstream gauge tells the next hours: it is narrower.
    width = lambda fc: np.mean(fc.upper_m[:, six_h] - fc.lower_m[:, six_h])  # noqa: E731
    assert width(linked) < 0.7 * width(alone)


def test_another_datum_changes_nothing():
    # Levels of two gauges stand on different zeros (or one is a discharge): only changes are read.
    t_all, station, upstream = _river(2, seed=1)
    _, t_s, (level, up) = _split(t_all, station, upstream)
    a = _forecast(t_s, level, upstream_m=up, upstream_of=[[0], [1]])
    b = _forecast(t_s, level, upstream_m=up + np.array([[100.0], [-3.7]]), upstream_of=[[0], [1]])
    np.testing.assert_allclose(a.median_m, b.median_m, atol=1e-7)
    np.testing.assert_allclose(a.upper_m, b.upper_m, atol=1e-7)


def test_a_late_feed_is_not_used_and_the_forecast_says_so():
    t_all, station, upstream = _river(4, seed=2)
    cut, t_s, (level, up) = _split(t_all, station, upstream)
    fresh = _forecast(t_s, level, upstream_m=up, upstream_of=[[k] for k in range(4)], input_names=list("ABCD"))
    late = up.copy()
    late[0, -int(30 * 3600 / DT_S):] = np.nan  # feed A has served nothing newer than yesterday
    stale = _forecast(t_s, level, upstream_m=late, upstream_of=[[k] for k in range(4)], input_names=list("ABCD"))
    assert "A (lag 12 h) late (last reading 30.0 h before the origin): not used" in stale.inputs_used[0]
    assert not stale.model_name[0].endswith("+upstream"), "a station whose only input is late forecasts alone"
    six_h = int(6 * 3600 / DT_S) - 1
    # Honest: without its upstream gauge the band is as wide as the gauge alone makes it.
    assert stale.upper_m[0, six_h] - stale.lower_m[0, six_h] > 1.5 * (fresh.upper_m[0, six_h] - fresh.lower_m[0, six_h])
    # The other stations are untouched by A's feed.
    np.testing.assert_allclose(stale.median_m[1:], fresh.median_m[1:])


def test_one_late_feed_of_two_costs_only_that_feed():
    # Two upstream gauges on two branches feed one station; one feed is late: the station keeps
    # the other (the model fitted without the late one), not its own history alone.
    t_all, a_station, a_up = _river(1, seed=3)
    _, b_station, b_up = _river(1, seed=4)
    station = a_station + b_station
    cut, t_s, (level, ups) = _split(t_all, station, np.concatenate([a_up, b_up]))
    both = _forecast(t_s, level, upstream_m=ups, upstream_of=[[0, 1]], input_names=["A", "B"])
    late = ups.copy()
    late[1, -int(8 * 3600 / DT_S):] = np.nan
    one = _forecast(t_s, level, upstream_m=late, upstream_of=[[0, 1]], input_names=["A", "B"])
    alone = _forecast(t_s, level)
    assert one.model_name[0].endswith("+upstream")
    assert "B (lag 12 h) late (last reading 8.0 h before the origin)" in one.inputs_used[0]
    six_h = int(6 * 3600 / DT_S) - 1
    truth = station[0, cut + six_h]
    errors = {name: abs(fc.median_m[0, six_h] - truth) for name, fc in (("both", both), ("one", one), ("alone", alone))}
    width = {name: fc.upper_m[0, six_h] - fc.lower_m[0, six_h] for name, fc in (("both", both), ("one", one),
                                                                                ("alone", alone))}
    print("6 h error", errors, "band", width)
    assert width["both"] < width["one"] < width["alone"]


def test_a_gauge_downstream_configured_as_upstream_is_reported_and_not_used():
    t_all, station, upstream = _river(2, seed=5)
    _, t_s, (level, up) = _split(t_all, station, upstream)
    # Swapped: the "station" is the upstream gauge and its "input" lags it by 12 h.
    fc = _forecast(t_s, up, upstream_m=level, upstream_of=[[0], [1]], input_names=["DOWN0", "DOWN1"])
    for s in range(2):
        assert "not used, follows this station" in fc.inputs_used[s], fc.inputs_used[s]
        assert "-12 h" in fc.inputs_used[s], "the report says where the correlation peaked"
        assert not fc.model_name[s].endswith("+upstream")


def test_an_unrelated_series_finds_no_useful_lag():
    t_all, station, _ = _river(1, seed=6)
    _, t_s, (level,) = _split(t_all, station)
    noise = np.cumsum(np.random.default_rng(7).normal(0, 0.01, (1, t_s.size)), axis=1)
    fc = _forecast(t_s, level, upstream_m=noise, upstream_of=[[0]], input_names=["ELSEWHERE"])
    assert "ELSEWHERE: not used, no useful lag" in fc.inputs_used[0]


def test_a_predicted_series_that_ends_early_is_used_as_far_as_it_reaches():
    # An announced release schedule reaches the station 2 h after it is made; it was announced
    # for the next 12 h only.
    t_s = grid(41.0, DT_S)
    rng = np.random.default_rng(8)
    release = np.cumsum(np.where(rng.random(t_s.size) < 0.01, rng.normal(0, 0.3, t_s.size), 0.0))
    lag = 12  # 2 h
    level = 1.0 + 0.5 * np.concatenate([np.full(lag, release[0]), release[:-lag]]) + rng.normal(0, 0.003, t_s.size)
    cut = t_s.size - 144
    # Make the next hours interesting: a step in the schedule one hour after the origin.
    release[cut + 6 :] += 1.0
    level[cut + 6 + lag :] += 0.5
    predicted = np.full((1, cut + 72), np.nan)  # announced up to 12 h past the origin
    predicted[0] = release[: cut + 72]
    fc = _forecast(t_s[:cut], level[None, :cut], predicted_m=predicted, predicted_of=[[0]], input_names=["RELEASE"])
    alone = _forecast(t_s[:cut], level[None, :cut])
    text = fc.inputs_used[0]
    assert "RELEASE (lag 2 h) ends +12.0 h from the origin: used where it reaches, not at" in text, text
    assert fc.model_name[0].endswith("+upstream")
    six_h = int(6 * 3600 / DT_S) - 1
    truth = level[cut + six_h]
    print(f"6 h ahead, a release step announced for the first hour: truth {truth:.3f}, with the schedule "
          f"{fc.median_m[0, six_h]:.3f}, alone {alone.median_m[0, six_h]:.3f}")
    assert abs(fc.median_m[0, six_h] - truth) < 0.05 and abs(alone.median_m[0, six_h] - truth) > 0.3


def test_fit_then_update_equals_a_refit_where_nothing_changed_and_tracks_one_later():
    t_all, station, upstream = _river(3, seed=9)
    cut, t_s, (level, up) = _split(t_all, station, upstream)
    links = {"upstream_m": up, "upstream_of": [[0], [1], [2]]}
    model = models.fit(t_s, level, horizon_s=HORIZON_S, **links)
    same = models.update(model, t_s, level, **links)
    kw = {"thresholds_m": np.tile(LEVELS, (3, 1)), "horizon_s": HORIZON_S, "step_s": DT_S}
    # Within a micrometre: the harmonics behind the features are summed in single precision.
    np.testing.assert_allclose(models.predict(same, **kw).median_m, models.predict(model, **kw).median_m,
                               rtol=0, atol=1e-6)
    # Six hours later: the day-old fit, moved to the new data, forecasts about what a refit does.
    later = cut + 36
    t6, level6, up6 = t_all[:later], station[:, :later], upstream[:, :later]
    moved = models.predict(models.update(model, t6, level6, upstream_m=up6, upstream_of=links["upstream_of"]), **kw)
    refit = models.predict(models.fit(t6, level6, horizon_s=HORIZON_S, upstream_m=up6,
                                      upstream_of=links["upstream_of"]), **kw)
    np.testing.assert_allclose(moved.t_s, refit.t_s)
    gap = np.abs(moved.median_m - refit.median_m)[:, :72].max()
    print(f"12 h ahead, fitted 6 h earlier vs refitted: largest difference {gap * 1000:.1f} mm")
    assert gap < 0.02


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"upstream_m": np.ones((1, 10)), "upstream_of": [[0], [0]]}, "upstream_m must be on the stations' grid"),
        ({"upstream_m": np.ones((1, 144)), "upstream_of": [[1], [0]]}, "names series \\[1\\]"),
        ({"upstream_m": np.ones((1, 144)), "upstream_of": [[0]]}, "each of the 2 stations"),
        ({"upstream_m": np.ones((1, 144))}, "without upstream_of"),
        ({"predicted_m": np.ones((1, 100)), "predicted_of": [[0], []]}, "at least 144 columns"),
    ],
)
def test_bad_links_are_refused_with_the_rule(kw, message):
    t_s = grid(1, DT_S)
    with pytest.raises(ForecastError, match=message):
        models.fit(t_s, np.ones((2, t_s.size)), **kw)


def test_update_refuses_other_stations_or_links():
    t_all, station, upstream = _river(2, days=12, seed=10)
    model = models.fit(t_all, station, upstream_m=upstream, upstream_of=[[0], [1]])
    with pytest.raises(ForecastError, match="links changed"):
        models.update(model, t_all, station, upstream_m=upstream, upstream_of=[[1], [0]])
    with pytest.raises(ForecastError, match="fitted with upstream/predicted inputs"):
        models.update(model, t_all, station)
    with pytest.raises(ForecastError, match="fitted on 2"):
        models.update(model, t_all, station[:1], upstream_m=upstream, upstream_of=[[0]])


def test_a_stored_model_forecasts_exactly_as_the_fitted_one():
    t_all, station, upstream = _river(2, days=12, seed=11)
    model = models.fit(t_all, station, upstream_m=upstream, upstream_of=[[0], [1]], input_names=["A", "B"])
    arrays = models.model_to_arrays(model)
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values()), "no pickles"
    again = models.model_from_arrays(dict(arrays))
    kw = {"thresholds_m": np.tile(LEVELS, (2, 1)), "horizon_s": HORIZON_S, "step_s": DT_S}
    a, b = models.predict(model, **kw), models.predict(again, **kw)
    np.testing.assert_array_equal(a.median_m, b.median_m)
    assert a.inputs_used == b.inputs_used and a.model_name == b.model_name
    arrays["__format__"] = np.asarray(-1)
    with pytest.raises(ForecastError, match="fit again"):
        models.model_from_arrays(arrays)


def test_a_refit_of_some_stations_combines_with_the_daily_fit():
    t_all, station, upstream = _river(3, days=12, seed=12)
    links = {"upstream_m": upstream, "upstream_of": [[0], [1], [2]]}
    daily = models.fit(t_all[:-36], station[:, :-36], **links | {"upstream_m": upstream[:, :-36]})
    part = models.fit(t_all, station[1:2], upstream_m=upstream, upstream_of=[[1]], input_tide=daily.input_tide)
    merged = models.combine([models.take_stations(daily, np.array([0, 2])), part], [np.array([0, 2]), np.array([1])])
    assert merged.fitted_s[1] == t_all[-1] and merged.fitted_s[0] == t_all[-37]
    moved = models.update(merged, t_all, station, **links)
    kw = {"thresholds_m": np.tile(LEVELS, (3, 1)), "horizon_s": HORIZON_S, "step_s": DT_S}
    fc = models.predict(moved, **kw)
    alone = models.predict(part, thresholds_m=np.tile(LEVELS, (1, 1)), horizon_s=HORIZON_S, step_s=DT_S)
    # The refitted station forecasts as its own fit does (its tide moved to the daily fit's clock).
    np.testing.assert_allclose(fc.median_m[1], alone.median_m[0], atol=1e-9)
