"""Harmonic tide analysis: recovers known constituents, exact without noise, masks respected."""

from __future__ import annotations

import numpy as np
import pytest
from floodwatch.models import fit_tide, predict_tide
from floodwatch.models._tide import (
    CONSTITUENTS,
    FREQ_CPH,
    _design,
    leave_block_out_residual,
    select_constituents,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.models.synthetic import T0_S, grid, tide

MAIN = ("M2", "S2", "K1", "O1", "N2")


def _index(name: str) -> int:
    return CONSTITUENTS.index(name)


@settings(max_examples=15, deadline=None)
@given(
    amps=st.lists(st.floats(0.02, 0.8), min_size=5, max_size=5),
    phases=st.lists(st.floats(0.0, 359.0), min_size=5, max_size=5),
    seed=st.integers(0, 2**31 - 1),
)
def test_recovers_amplitudes_and_phases_from_noisy_series(amps, phases, seed):
    t_s = grid(30, dt_s=1800.0)
    ref_s = float(t_s[-1])
    truth = dict(zip(MAIN, zip(amps, phases, strict=True), strict=True))
    rng = np.random.default_rng(seed)
    level = tide(t_s, truth, ref_s, mean_m=1.2) + rng.normal(0.0, 0.02, t_s.size)

    fit = fit_tide(t_s, level[None, :], ref_s=ref_s)

    for name, (amp, phase) in truth.items():
        c = _index(name)
        assert fit.active[0, c], f"{name} should be resolved by 30 days"
        assert fit.amplitude_m[0, c] == pytest.approx(amp, abs=0.01)
        # Phase error shrinks with amplitude: 1 cm on A metres is about 0.6/A degrees.
        err = (fit.phase_deg[0, c] - phase + 180.0) % 360.0 - 180.0
        assert abs(err) < 1.5 + 1.2 / amp
    assert fit.mean_m[0] == pytest.approx(1.2, abs=0.01)


def test_exact_on_noise_free_input_even_with_gaps():
    t_s = grid(30, dt_s=1200.0)
    ref_s = float(t_s[-1])
    truth = {"M2": (0.61, 40.0), "S2": (0.22, 300.0), "K1": (0.35, 120.0), "O1": (0.18, 10.0), "M4": (0.07, 200.0)}
    level = np.tile(tide(t_s, truth, ref_s, mean_m=0.4), (3, 1))
    rng = np.random.default_rng(3)
    level[1, rng.random(t_s.size) < 0.05] = np.nan  # scattered gaps: the iterative path
    level[2, : t_s.size // 3] = np.nan  # a long outage: the direct path
    level[2, rng.random(t_s.size) < 0.1] = np.nan

    fit = fit_tide(t_s, level, ref_s=ref_s)
    future = ref_s + 600.0 * np.arange(1, 433)
    predicted = predict_tide(fit, future)

    expected = tide(future, truth, ref_s, mean_m=0.4)
    np.testing.assert_allclose(predicted, np.tile(expected, (3, 1)), atol=1e-6)


def test_masked_fit_equals_least_squares_on_the_observed_samples_only():
    t_s = grid(20, dt_s=1800.0)
    ref_s = float(t_s[-1])
    rng = np.random.default_rng(11)
    level = tide(t_s, {"M2": (0.5, 10.0), "K1": (0.2, 80.0)}, ref_s) + rng.normal(0, 0.05, (2, t_s.size))
    level[0, rng.random(t_s.size) < 0.08] = np.nan
    level[1, rng.random(t_s.size) < 0.6] = np.nan

    fit = fit_tide(t_s, level, ref_s=ref_s)

    t_h = (t_s - ref_s) / 3600.0
    x = _design(t_h, float(t_h[-1] - t_h[0]))
    for s in range(2):  # the reference is a plain per-station lstsq
        ok = np.isfinite(level[s])
        cols = [0, 1] + [2 + 2 * c + k for c in np.nonzero(fit.active[s])[0] for k in (0, 1)]
        coef, *_ = np.linalg.lstsq(x[ok][:, cols], level[s, ok], rcond=None)
        harmonic = coef[2:]
        np.testing.assert_allclose(fit.cos_m[s, fit.active[s]], harmonic[0::2], atol=1e-7)
        np.testing.assert_allclose(fit.sin_m[s, fit.active[s]], harmonic[1::2], atol=1e-7)


def test_rayleigh_criterion_picks_constituents_by_record_length():
    dt_h = 1.0 / 6.0
    active = select_constituents(np.array([6.0, 30.0, 16 * 24.0, 30 * 24.0]), dt_h, np.array([10**6] * 4))
    names = np.array(CONSTITUENTS)
    six_hours, day, two_weeks, month = (set(names[a]) for a in active)
    assert "M2" not in six_hours  # half an M2 cycle cannot be told from the mean
    assert {"M2", "K1"} <= day and "S2" not in day and "O1" not in day
    assert {"S2", "O1"} <= two_weeks and "N2" not in two_weeks
    assert {"N2", "Q1"} <= month and "P1" not in month and "K2" not in month  # need half a year


def test_sampling_and_sample_count_limit_the_constituents():
    two_hourly = select_constituents(np.array([720.0]), 2.0, np.array([360]))
    assert two_hourly[0, CONSTITUENTS.index("M4")]
    assert np.all(FREQ_CPH[two_hourly[0]] < 0.2)  # 0.8 x Nyquist at 2-hour sampling
    assert not two_hourly[0, CONSTITUENTS.index("M6")]
    few = select_constituents(np.array([720.0]), 1.0, np.array([40]))
    assert 0 < few[0].sum() <= (40 - 3) // 6  # three samples per fitted parameter at least


def test_river_without_tide_explains_little_and_tidal_gauge_much():
    t_s = grid(30, dt_s=1800.0)
    rng = np.random.default_rng(5)
    river = 2.0 + np.cumsum(rng.normal(0, 0.01, t_s.size))
    tidal = tide(t_s, {"M2": (0.6, 0.0), "K1": (0.3, 0.0)}, float(t_s[-1])) + rng.normal(0, 0.03, t_s.size)
    fit = fit_tide(t_s, np.stack([river, tidal]))
    assert fit.explained[0] < 0.1
    assert fit.explained[1] > 0.9


def test_no_data_gives_nan_mean_and_no_constituents():
    t_s = grid(3, dt_s=1800.0)
    fit = fit_tide(t_s, np.full((2, t_s.size), np.nan))
    assert np.all(np.isnan(fit.mean_m))
    assert not fit.active.any()
    assert np.all(np.isnan(predict_tide(fit, t_s[-1:] + 600.0)))
    assert T0_S < t_s[-1]


def test_leave_block_out_residual_equals_refitting_without_the_block():
    t_s = grid(30, dt_s=1800.0)
    ref_s = float(t_s[-1])
    truth = {"M2": (0.8, 40.0), "S2": (0.2, 100.0), "K1": (0.3, 200.0), "O1": (0.15, 300.0), "N2": (0.1, 10.0)}
    rng = np.random.default_rng(3)
    surge = np.cumsum(rng.normal(0.0, 0.01, t_s.size))  # a random walk: the window's own "surge"
    level = np.stack([tide(t_s, truth, ref_s, mean_m=1.0) + surge, surge])  # a tidal gauge and a pond
    fit = fit_tide(t_s, level, ref_s=ref_s)
    residual = level - predict_tide(fit, t_s)
    level_gappy = level.copy()
    level_gappy[:, 100:110] = np.nan
    residual_gappy = level_gappy - predict_tide(fit, t_s)

    out = leave_block_out_residual(fit, t_s, residual_gappy, 10, np.array([True, False]))

    edges = np.linspace(0, t_s.size, 11).astype(int)
    for k in (3, 6):  # interior blocks: the refit keeps the record's span, so the same constituents
        block = slice(edges[k], edges[k + 1])
        without = level.copy()
        without[:, block] = np.nan
        refit = fit_tide(t_s, without, ref_s=ref_s)
        assert np.array_equal(refit.active[0], fit.active[0])
        expected = level[0, block] - predict_tide(refit, t_s)[0, block]
        assert np.allclose(out[0, block], expected, atol=1e-6)
        assert not np.allclose(out[0, block], residual[0, block], atol=1e-4)  # the fit had absorbed some surge
    last = slice(edges[-2], None)
    assert np.array_equal(out[0, last], residual[0, last])  # the origin's block keeps the full fit
    assert np.array_equal(out[1], residual_gappy[1], equal_nan=True)  # stations not asked for: untouched
    assert np.isnan(out[0, 100:110]).all()  # missing stays missing
