"""QARTOD-style quality control: pure, vectorised tests over one station's series.

Each test takes arrays for one station in time order and returns flags
``(N,) uint8`` with IOOS QARTOD values: 1 pass, 2 not evaluated, 3 suspect,
4 fail, 9 missing. :func:`aggregate` follows ioos_qc's ``qartod_compare``
precedence (fail > suspect > pass > not evaluated > missing), except that a
reading whose main value is missing is MISSING whatever the other tests say. The definitions follow the
IOOS QARTOD manuals for water level (2021) and in-situ data, as implemented
by ``ioos_qc.qartod`` (gross_range_test, spike_test, rate_of_change_test,
flat_line_test), with one deliberate change: QARTOD's spike test compares a
point with the mean of BOTH neighbours, so it can only judge a reading once
the next one has arrived; floodwatch must decide when the reading arrives (a
resident alert may depend on it), so :func:`spike` compares with the median
of the previous readings. A single spike is therefore FAILED on arrival and
never reaches an alert; a genuine step change passes again after two
readings, once the median has caught up. See docs/ingest.md.

Nothing here does I/O or reads a clock; ``now_s`` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from floodwatch.vocabulary import QcFlag

if TYPE_CHECKING:
    from floodwatch.settings import StationConfig

PASS, NOT_EVALUATED, SUSPECT, FAIL, MISSING = 1, 2, 3, 4, 9


@dataclass(frozen=True)
class QcLimits:
    """Thresholds for one station, in the units of its main field (m or mm).

    ``fail_min/fail_max``: what the sensor at this site can physically report
    (the registry's min_level_m/max_level_m); outside is FAIL.
    ``suspect_min/suspect_max``: the climatological range; outside is SUSPECT.
    """

    field: str
    fail_min: float
    fail_max: float
    suspect_min: float
    suspect_max: float
    spike_suspect: float
    spike_fail: float
    rate_suspect_per_s: float
    flat_tolerance: float
    flat_suspect_s: float
    flat_fail_s: float
    future_suspect_s: float = 120.0


def limits_for(station: "StationConfig") -> QcLimits:
    """Derive QC limits from the station registry.

    The registry has no climatology yet; for levels the suspect band is from
    half a metre below the low-water level (or the sensor floor) to one metre
    above the evacuate level, i.e. wider than anything Lam Phaya has recorded
    since 2011. Replace with the 0.1/99.9 percentiles of a year of the
    station's own record when it exists.
    """
    if station.kind == "water_level":
        assert station.levels is not None
        low_m = station.low_water_m if station.low_water_m is not None else station.min_level_m + 0.5
        return QcLimits(
            field="water_level_m",
            fail_min=station.min_level_m,
            fail_max=station.max_level_m,
            suspect_min=max(station.min_level_m, low_m - 0.5),
            suspect_max=min(station.max_level_m, station.levels.evacuate_m + 1.0),
            spike_suspect=0.25,
            spike_fail=0.50,
            rate_suspect_per_s=1.5 / 3600.0,
            flat_tolerance=0.002,
            flat_suspect_s=2 * 3600.0,
            flat_fail_s=6 * 3600.0,
        )
    # Rain: per-reading totals. Intensities are judged by rate_of_change below
    # as mm per second (150 mm/h suspect: Thailand's heaviest hours reach ~120).
    return QcLimits(
        field="rain_mm",
        fail_min=0.0,
        fail_max=200.0,
        suspect_min=0.0,
        suspect_max=60.0,
        spike_suspect=np.inf,
        spike_fail=np.inf,
        rate_suspect_per_s=150.0 / 3600.0,
        flat_tolerance=0.0,
        flat_suspect_s=np.inf,
        flat_fail_s=np.inf,
    )


def gross_range(values: np.ndarray, limits: QcLimits) -> np.ndarray:
    """FAIL outside the sensor span, SUSPECT outside the climatological span, else PASS.

    Parameters
    ----------
    values : (N,) float, NaN where missing.
    """
    v = np.asarray(values, dtype=float)
    flags = np.full(v.shape, PASS, dtype=np.uint8)
    flags[(v < limits.suspect_min) | (v > limits.suspect_max)] = SUSPECT
    flags[(v < limits.fail_min) | (v > limits.fail_max)] = FAIL
    flags[~np.isfinite(v)] = MISSING
    return flags


def spike(values: np.ndarray, suspect: float, fail: float, window: int = 3) -> np.ndarray:
    """Deviation from the median of the previous ``window`` values (one-sided, real time).

    Parameters
    ----------
    values : (N,) float in time order, NaN where missing.
    suspect, fail : thresholds in the units of ``values``.

    Returns
    -------
    (N,) uint8: NOT_EVALUATED for the first value (no history) and missing values.
    """
    v = np.asarray(values, dtype=float)
    n = v.size
    flags = np.full(n, NOT_EVALUATED, dtype=np.uint8)
    if n < 2:
        return flags
    padded = np.concatenate([np.full(window, np.nan), v])
    prev = np.lib.stride_tricks.sliding_window_view(padded[:-1], window)  # (N, window): the values before i
    ref = _nanmedian_rows(prev)
    have = np.isfinite(ref) & np.isfinite(v)
    dev = np.abs(v - np.where(have, ref, 0.0))
    flags[have] = PASS
    flags[have & (dev > suspect)] = SUSPECT
    flags[have & (dev > fail)] = FAIL
    return flags


def _nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN, NaN for all-NaN rows; (N, W) -> (N,).

    np.nanmedian does the same ~20x slower on the short rows used here.
    """
    s = np.sort(x, axis=1)  # NaN sort last
    k = np.isfinite(x).sum(axis=1)
    rows = np.arange(x.shape[0])
    lo = np.clip((k - 1) // 2, 0, x.shape[1] - 1)
    hi = np.clip(k // 2, 0, x.shape[1] - 1)
    med = 0.5 * (s[rows, lo] + s[rows, hi])
    return np.where(k > 0, med, np.nan)


def rate_of_change(values: np.ndarray, t_s: np.ndarray, suspect_per_s: float) -> np.ndarray:
    """SUSPECT where |change since the previous finite value| / elapsed time exceeds ``suspect_per_s``.

    Parameters
    ----------
    values : (N,) float in time order, NaN where missing or excluded (e.g. a failed spike,
        so the reading after a spike is compared with the last good one);
    t_s : (N,) UTC epoch s.
    """
    v = np.asarray(values, dtype=float)
    t = np.asarray(t_s, dtype=float)
    n = v.size
    flags = np.full(n, NOT_EVALUATED, dtype=np.uint8)
    if n < 2:
        return flags
    finite = np.isfinite(v)
    last_finite = np.maximum.accumulate(np.where(finite, np.arange(n), -1))
    prev = np.empty(n, dtype=np.int64)
    prev[0] = -1
    prev[1:] = last_finite[:-1]
    ok = finite & (prev >= 0)
    p = np.where(ok, prev, 0)
    dv = np.abs(v - v[p])
    dt = np.maximum(t - t[p], 1.0)  # readings 0 s apart (a re-send) count as 1 s
    flags[ok] = PASS
    flags[ok & (dv / dt > suspect_per_s)] = SUSPECT
    return flags


def rain_intensity(rain_mm: np.ndarray, t_s: np.ndarray, suspect_per_s: float, default_dt_s: float) -> np.ndarray:
    """SUSPECT where rain per reading / interval since the previous reading exceeds the limit.

    The first reading uses ``default_dt_s`` (the node's publish interval).
    """
    r = np.asarray(rain_mm, dtype=float)
    t = np.asarray(t_s, dtype=float)
    dt = np.empty_like(t)
    dt[0] = default_dt_s
    dt[1:] = np.diff(t)
    dt = np.maximum(dt, 60.0)
    flags = np.full(r.size, PASS, dtype=np.uint8)
    flags[r / dt > suspect_per_s] = SUSPECT
    flags[~np.isfinite(r)] = NOT_EVALUATED
    return flags


def flat_line(values: np.ndarray, t_s: np.ndarray, tolerance: float, suspect_s: float, fail_s: float) -> np.ndarray:
    """Stuck sensor: how long have the values stayed within ``tolerance`` of the current one.

    SUSPECT when that run lasts ``suspect_s`` or more, FAIL at ``fail_s``.
    O(N^2) in memory over the short history ingest keeps (N <= a few hundred).
    """
    v = np.asarray(values, dtype=float)
    t = np.asarray(t_s, dtype=float)
    n = v.size
    flags = np.full(n, NOT_EVALUATED, dtype=np.uint8)
    if n < 2 or not np.isfinite(suspect_s):
        return flags
    idx = np.arange(n)
    not_close = (np.abs(v[None, :] - v[:, None]) > tolerance) | ~np.isfinite(v[None, :])
    earlier = idx[None, :] <= idx[:, None]
    last_break = np.where(not_close & earlier, idx[None, :], -1).max(axis=1)
    start = np.clip(last_break + 1, 0, n - 1)
    run_s = t - t[start]
    # With no break in the history we cannot know how long it has really been
    # flat beyond the history's start: judge it on what we have.
    ok = np.isfinite(v)
    flags[ok] = PASS
    flags[ok & (run_s >= suspect_s)] = SUSPECT
    flags[ok & (run_s >= fail_s)] = FAIL
    return flags


def timestamp_sanity(t_s: np.ndarray, now_s: float, future_suspect_s: float) -> np.ndarray:
    """SUSPECT for readings stamped ahead of the receiving clock by more than ``future_suspect_s``.

    (Far-future and beyond-retention timestamps are refused at the boundary.)
    """
    t = np.asarray(t_s, dtype=float)
    flags = np.full(t.size, PASS, dtype=np.uint8)
    flags[t > now_s + future_suspect_s] = SUSPECT
    return flags


_PRECEDENCE = np.zeros(256, dtype=np.uint8)  # flag -> rank (ioos_qc qartod_compare)
_PRECEDENCE[[MISSING, NOT_EVALUATED, PASS, SUSPECT, FAIL]] = [1, 2, 3, 4, 5]
_BY_RANK = np.array([NOT_EVALUATED, MISSING, NOT_EVALUATED, PASS, SUSPECT, FAIL], dtype=np.uint8)


def aggregate(test_flags: dict[str, np.ndarray], value_missing: np.ndarray | None = None) -> np.ndarray:
    """One flag per reading: fail > suspect > pass > not evaluated > missing (ioos_qc's precedence).

    Parameters
    ----------
    test_flags : name -> (N,) uint8 flags of each test.
    value_missing : (N,) bool, readings without the station's main value; these are MISSING.
    """
    stacked = np.stack(list(test_flags.values()))
    worst = _BY_RANK[_PRECEDENCE[stacked].max(axis=0)]
    if value_missing is not None:
        worst = np.where(value_missing, MISSING, worst)
    return worst.astype(np.uint8)


def run_tests(
    values: np.ndarray,
    t_s: np.ndarray,
    now_s: float,
    limits: QcLimits,
    default_dt_s: float = 600.0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """All tests for one station's series (history then new readings, in time order).

    Returns
    -------
    flags : (N,) uint8 aggregate; tests : name -> (N,) uint8 per-test flags.
    """
    tests: dict[str, np.ndarray] = {"gross_range": gross_range(values, limits)}
    if limits.field == "water_level_m":
        tests["spike"] = spike(values, limits.spike_suspect, limits.spike_fail)
        # Judge the rate against the last reading that was not a failed spike.
        tests["rate_of_change"] = rate_of_change(
            np.where(tests["spike"] == FAIL, np.nan, values), t_s, limits.rate_suspect_per_s
        )
        tests["flat_line"] = flat_line(values, t_s, limits.flat_tolerance, limits.flat_suspect_s, limits.flat_fail_s)
    else:
        tests["rate_of_change"] = rain_intensity(values, t_s, limits.rate_suspect_per_s, default_dt_s)
    tests["timestamp"] = timestamp_sanity(t_s, now_s, limits.future_suspect_s)
    return aggregate(tests, ~np.isfinite(np.asarray(values, dtype=float))), tests


def describe(tests: dict[str, np.ndarray], i: int) -> str:
    """'spike=4,rate_of_change=3' for reading ``i``: the tests that did not pass."""
    return ",".join(f"{name}={int(f[i])}" for name, f in tests.items() if f[i] in (SUSPECT, FAIL, MISSING))


def as_flag(value: int) -> QcFlag:
    return QcFlag(int(value))
