"""Rolling-origin backtest core: no look-ahead, scores computed on the right pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from floodwatch.errors import ForecastError
from floodwatch.models import rolling_origin_backtest
from tests.models.synthetic import grid, tide

DT_S = 1800.0


def _tidal_record(days: float = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    t_s = grid(days, DT_S)
    rng = np.random.default_rng(seed)
    astro = tide(t_s, {"M2": (0.6, 30.0), "K1": (0.3, 100.0)}, float(t_s[-1]), mean_m=1.0)
    surge = lfilter([1.0], [1.0, -0.98], rng.normal(0, 0.01, t_s.size))
    level = astro + surge
    level[rng.random(t_s.size) < 0.03] = np.nan
    return t_s, level


def test_scores_every_model_at_every_horizon():
    t_s, level = _tidal_record()
    out = rolling_origin_backtest(t_s, level, horizons_h=(1, 3, 6), window_s=5 * 86400.0, origin_every_s=3 * 3600.0)
    assert out["horizons_h"] == [1.0, 3.0, 6.0]
    assert set(out["rmse_m"]) == {"floodwatch", "persistence", "tide_only", "tide_plus_residual"}
    for table in (out["rmse_m"], out["mae_m"]):
        for values in table.values():
            assert len(values) == 3 and all(v is not None and v >= 0 for v in values)
    # Origins every 3 h from day 5 until 6 h before the end.
    expected = np.arange(t_s.size)[(t_s >= t_s[0] + 5 * 86400.0) & (np.arange(t_s.size) < t_s.size - 12)]
    expected = expected[np.round(t_s[expected] / DT_S).astype(int) % 6 == 0]
    assert out["n_origins"] == expected.size
    # On a tidal record persistence is poor at 3-6 h and the forecaster is not.
    assert out["rmse_m"]["floodwatch"][2] < 0.5 * out["rmse_m"]["persistence"][2]


def test_persistence_score_matches_a_direct_computation():
    t_s, level = _tidal_record(seed=1)
    out = rolling_origin_backtest(
        t_s, level, horizons_h=(2,), window_s=4 * 86400.0, origin_every_s=3600.0, keep_predictions=True
    )
    origins = np.searchsorted(t_s, out["origins_s"])
    last = np.array([np.nonzero(np.isfinite(level[: o + 1]))[0][-1] for o in origins])
    target = level[origins + 4]
    ok = np.isfinite(target) & np.isfinite(out["predictions"]["floodwatch"][:, 3])
    direct = np.sqrt(np.mean((level[last][ok] - target[ok]) ** 2))
    assert out["rmse_m"]["persistence"][0] == pytest.approx(direct, rel=1e-4)
    assert out["n_scored"] == [int(ok.sum())]


def test_no_look_ahead():
    t_s, level = _tidal_record(seed=2)
    out = rolling_origin_backtest(t_s, level, horizons_h=(3,), window_s=4 * 86400.0, keep_predictions=True)
    changed = level.copy()
    late = t_s.size - 40
    changed[late:] += 5.0  # a different future
    again = rolling_origin_backtest(t_s, changed, horizons_h=(3,), window_s=4 * 86400.0, keep_predictions=True)
    before = out["origins_s"] < t_s[late]
    assert before.sum() > 20
    for model, pred in out["predictions"].items():
        np.testing.assert_array_equal(pred[before], again["predictions"][model][before], err_msg=model)
    assert not np.allclose(out["predictions"]["floodwatch"][~before], again["predictions"]["floodwatch"][~before])


def test_crossing_warnings_are_scored():
    t_s = grid(16, DT_S)
    rng = np.random.default_rng(4)
    # Spring tides reach 1.5 m, neaps do not: a warning level crossed on some high waters only.
    level = tide(t_s, {"M2": (0.6, 0.0), "S2": (0.3, 90.0)}, float(t_s[-1]), mean_m=1.0)
    level = level + rng.normal(0, 0.01, t_s.size)
    out = rolling_origin_backtest(t_s, level, horizons_h=(1, 3), threshold_m=1.6, window_s=6 * 86400.0)
    assert out["n_crossings"] > 3
    assert out["hit_rate"]["floodwatch"][1] > 0.8
    assert out["false_alarm_ratio"]["floodwatch"][1] < 0.2
    assert out["median_lead_time_h"]["floodwatch"] >= 1.0
    assert out["hit_rate"]["persistence"] == [0.0, 0.0], "persistence never forecasts a crossing from below"


def test_too_short_a_record_is_refused_with_the_fix():
    t_s, level = _tidal_record(days=3)
    with pytest.raises(ForecastError, match="--window-days"):
        rolling_origin_backtest(t_s, level, horizons_h=(1,), window_s=30 * 86400.0)
