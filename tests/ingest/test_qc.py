"""QARTOD-style tests on synthetic series with known faults."""

from __future__ import annotations

import numpy as np
import pytest
from floodwatch.ingest import QcChecker, qc

from floodwatch.settings import load_settings
from floodwatch.vocabulary import QcFlag, Reading, StationId

T0 = 1_795_000_000.0


def tidal(n, dt_s=600.0):
    t = T0 + dt_s * np.arange(n)
    return t, 0.8 + 0.6 * np.sin(2 * np.pi * (t - T0) / (12.42 * 3600))


def limits():
    return qc.limits_for(load_settings().station("LP-W01"))


def test_gross_range_fails_outside_sensor_span_and_suspects_outside_climatology():
    lim = limits()
    v = np.array([1.0, lim.fail_max + 0.1, lim.suspect_max + 0.05, lim.fail_min - 0.1, np.nan])
    np.testing.assert_array_equal(qc.gross_range(v, lim), [1, 4, 3, 4, 9])


def test_a_single_spike_fails_on_arrival_and_a_real_step_passes_after_two_readings():
    t, v = tidal(20)
    v[10] += 1.0  # one bad echo
    flags = qc.spike(v, 0.25, 0.5)
    assert flags[10] == qc.FAIL
    assert (np.delete(flags, [0, 10, 11, 12]) == qc.PASS).all()
    step = np.r_[np.full(6, 1.0), np.full(6, 1.8)]  # sluice gate opened
    sf = qc.spike(step, 0.25, 0.5)
    assert list(sf[6:9]) == [qc.FAIL, qc.FAIL, qc.PASS]


def test_rate_of_change_suspects_an_impossible_rise():
    t = T0 + 600.0 * np.arange(4)
    v = np.array([1.0, 1.05, 1.5, 1.55])  # 45 cm in 10 min = 2.7 m/h
    np.testing.assert_array_equal(qc.rate_of_change(v, t, 1.5 / 3600), [2, 1, 3, 1])


def test_flat_line_suspect_then_fail_for_a_stuck_sensor():
    t = T0 + 600.0 * np.arange(50)
    v = np.r_[np.linspace(0.5, 1.0, 10), np.full(40, 1.234)]
    flags = qc.flat_line(v, t, 0.002, 2 * 3600, 6 * 3600)
    run_s = t - t[10]  # the stuck value starts at index 10
    assert (flags[1:][run_s[1:] < 2 * 3600] == qc.PASS).all()
    assert (flags[(run_s >= 2 * 3600) & (run_s < 6 * 3600)] == qc.SUSPECT).all()
    assert (flags[run_s >= 6 * 3600] == qc.FAIL).all()


def test_aggregate_follows_ioos_qc_precedence_and_a_missing_value_is_missing():
    a = np.array([1, 3, 2, 4, 2, 9, 1], np.uint8)
    b = np.array([1, 1, 2, 3, 9, 9, 1], np.uint8)
    np.testing.assert_array_equal(qc.aggregate({"a": a, "b": b}), [1, 3, 2, 4, 2, 9, 1])
    missing = np.array([False] * 6 + [True])
    np.testing.assert_array_equal(qc.aggregate({"a": a, "b": b}, missing), [1, 3, 2, 4, 2, 9, 9])


def test_checker_uses_history_across_batches_and_names_the_tests():
    checker = QcChecker(load_settings())
    t, v = tidal(12)
    sid = StationId("LP-W01")
    first = checker.check([Reading(sid, float(a), water_level_m=float(b))
                           for a, b in zip(t[:6], v[:6], strict=True)], T0 + 1e5)
    assert [r.qc_flag for r in first[1:]] == [QcFlag.PASS] * 5
    spike_at = float(t[6])
    second = checker.check([Reading(sid, spike_at, water_level_m=float(v[6]) + 1.0)], T0 + 1e5)
    assert second[0].qc_flag == QcFlag.FAIL
    assert "spike=4" in second[0].qc_tests
    future = checker.check([Reading(sid, T0 + 1e5 + 600, water_level_m=float(v[6]))], T0 + 1e5)
    assert future[0].qc_flag == QcFlag.SUSPECT and "timestamp=3" in future[0].qc_tests


def test_many_stations_in_one_call_give_the_same_flags_as_one_by_one():
    settings = load_settings()
    stations = settings.level_stations[:3]
    rng = np.random.default_rng(7)
    series = []
    for k, n in enumerate((40, 25, 60)):
        t = T0 + 600.0 * np.arange(n)
        v = 1.0 + 0.4 * np.sin(np.arange(n) / 9.0 + k) + rng.normal(0, 0.01, n)
        v[rng.integers(5, n, 2)] += rng.choice([-1.0, 0.35, 0.8])  # spikes of several sizes
        v[15] += 1.0  # and one certain spike
        v[3] = np.nan  # a reading without its level
        v[-12:] = v[-12]  # a stuck sensor at the end
        series.append((t, v))
    width = max(t.size for t, _ in series)
    t_mat = np.full((3, width), np.nan)
    v_mat = np.full((3, width), np.nan)
    for row, (t, v) in enumerate(series):
        t_mat[row, width - t.size:] = t
        v_mat[row, width - v.size:] = v
    limits = [qc.limits_for(s) for s in stations]
    flags, _ = qc.run_tests(v_mat, t_mat, T0 + 1e6, qc.stack_limits(limits))
    for row, ((t, v), lim) in enumerate(zip(series, limits, strict=True)):
        alone, _ = qc.run_tests(v, t, T0 + 1e6, lim)
        np.testing.assert_array_equal(flags[row, width - t.size:], alone)
        assert {1, 4, 9} <= set(alone.tolist())


def test_rate_of_change_ignores_millimetre_noise_between_readings_seconds_apart():
    rng = np.random.default_rng(3)
    t = T0 + 10.0 * np.arange(360)  # a node reporting every 10 s for an hour
    v = 0.8 + rng.normal(0.0, 0.004, t.size)  # 4 mm of sensor noise: up to ~5 m/h between readings
    noisy = qc.rate_of_change(v, t, 1.5 / 3600, min_change=0.02)
    assert (noisy[1:] == qc.PASS).all()
    # Without the noise floor the same series looks like an impossible rise on many readings.
    assert (qc.rate_of_change(v, t, 1.5 / 3600)[1:] == qc.SUSPECT).mean() > 0.2
    # A real jump still stands out.
    v[200] += 0.10
    assert qc.rate_of_change(v, t, 1.5 / 3600, min_change=0.02)[200] == qc.SUSPECT


@pytest.mark.parametrize("series", ["spike", "step"])
def test_flags_do_not_depend_on_how_the_readings_were_batched(series):
    """Live nodes send one reading at a time; a catch-up sends many. The flags must be the same:
    a spike that ended one batch must not make the next batch's first reading a 'rate of change'."""
    sid = StationId("LP-W01")
    t = T0 + 600.0 * np.arange(48)
    if series == "spike":
        v = 1.0 + 0.5 * np.sin(2 * np.pi * np.arange(48) / 74.5)
        v[30] += 1.2  # a bird under the radar
    else:
        v = np.r_[np.full(24, 1.0), np.full(24, 1.8)]  # a sluice gate opened
    readings = [Reading(sid, float(a), seq=i, water_level_m=float(b))
                for i, (a, b) in enumerate(zip(t, v, strict=True))]
    now = float(t[-1]) + 600.0
    whole = [r.qc_flag for r in QcChecker(load_settings()).check(readings, now)]
    one_by_one = QcChecker(load_settings())
    assert [one_by_one.check([r], now)[0].qc_flag for r in readings] == whole
    for split in range(1, 48):
        checker = QcChecker(load_settings())
        got = [r.qc_flag for r in checker.check(readings[:split], now) + checker.check(readings[split:], now)]
        assert got == whole, f"split after reading {split - 1}"
