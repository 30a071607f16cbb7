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


# One station's threshold, or (S,) thresholds of stacked stations.
Limit = float | np.ndarray


@dataclass(frozen=True)
class QcLimits:
    """Thresholds for one station, in the units of its main field (m or mm).

    ``fail_min/fail_max``: what the sensor at this site can physically report
    (the registry's min_level_m/max_level_m); outside is FAIL.
    ``suspect_min/suspect_max``: the climatological range; outside is SUSPECT.
    Each threshold is a float for one station, or an (S,) array when :func:`stack_limits`
    judges S stations with the same field at once.
    """

    field: str
    fail_min: Limit
    fail_max: Limit
    suspect_min: Limit
    suspect_max: Limit
    spike_suspect: Limit
    spike_fail: Limit
    rate_suspect_per_s: Limit
    flat_tolerance: Limit
    flat_suspect_s: Limit
    flat_fail_s: Limit
    future_suspect_s: Limit = 120.0
    # A street gauge over dry ground reads the ground: flat at or below this is not a stuck sensor.
    flat_exempt_at_or_below: Limit = -np.inf
    # Level changes at most this large are sensor noise to the rate-of-change test.
    rate_min_change: Limit = 0.0


def limits_for(station: StationConfig) -> QcLimits:
    """Derive QC limits from the station registry.

    The registry has no climatology yet; for levels the suspect band is from
    half a metre below the low-water level (or the sensor floor) to one metre
    above the evacuate level, i.e. wider than anything Lam Phaya has recorded
    since 2011. Replace with the 0.1/99.9 percentiles of a year of the
    station's own record when it exists.
    """
    predicted = station.series == "predicted"
    if station.kind == "water_level":
        assert station.levels is not None
        low_m = station.low_water_m if station.low_water_m is not None else station.min_level_m + 0.5
        # Another agency's gauge reports to the centimetre, often hourly: a slow river holds one
        # value for hours without the gauge being stuck.
        reported = station.sensor == "reported"
        return QcLimits(
            field="water_level_m",
            fail_min=station.min_level_m,
            fail_max=station.max_level_m,
            suspect_min=max(station.min_level_m, low_m - 0.5),
            suspect_max=min(station.max_level_m, station.levels.evacuate_m + 1.0),
            # A prediction is smooth by construction: an hourly tide table moves tens of
            # centimetres between rows, which the one-sided median would call a spike.
            spike_suspect=np.inf if predicted else 0.25,
            spike_fail=np.inf if predicted else 0.50,
            rate_suspect_per_s=1.5 / 3600.0,
            # Ultrasonic and radar gauges jitter by a few millimetres between readings.
            rate_min_change=0.02,
            flat_tolerance=0.002,
            # A published schedule may hold one value for days; only a sensor gets stuck.
            flat_suspect_s=np.inf if predicted else (12 * 3600.0 if reported else 2 * 3600.0),
            flat_fail_s=np.inf if predicted else (36 * 3600.0 if reported else 6 * 3600.0),
            # The sensor's own noise (a few mm) rides on the dry ground level.
            flat_exempt_at_or_below=(station.dry_level_m + 0.02) if station.dry_level_m is not None else -np.inf,
            future_suspect_s=np.inf if predicted else 120.0,
        )
    if station.kind == "discharge":
        # A dam's release: never negative, never above what its gates and spillway pass;
        # suspect above 80 % of that. Gates open in steps, so only a swing of the whole
        # range within three hours is suspect, and a release held for days is normal.
        top = station.max_discharge_m3_s
        return QcLimits(
            field="discharge_m3_s",
            fail_min=0.0,
            fail_max=top,
            suspect_min=0.0,
            suspect_max=0.8 * top,
            spike_suspect=np.inf,
            spike_fail=np.inf,
            rate_suspect_per_s=top / (3 * 3600.0),
            flat_tolerance=0.0,
            flat_suspect_s=np.inf,
            flat_fail_s=np.inf,
            future_suspect_s=np.inf if predicted else 120.0,
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


def _col(x: float | np.ndarray, ndim: int) -> np.ndarray:
    """A per-station threshold (S,) as (S, 1) so it broadcasts along time; scalars unchanged."""
    a = np.asarray(x, dtype=float)
    return a.reshape(a.shape + (1,)) if a.ndim and ndim > 1 else a


def gross_range(values: np.ndarray, limits: QcLimits) -> np.ndarray:
    """FAIL outside the sensor span, SUSPECT outside the climatological span, else PASS.

    Parameters
    ----------
    values : (..., N) float, NaN where missing.
    limits : thresholds as floats, or (S,) arrays for ``values`` of shape (S, N).
    """
    v = np.asarray(values, dtype=float)
    d = v.ndim
    flags = np.full(v.shape, PASS, dtype=np.uint8)
    flags[(v < _col(limits.suspect_min, d)) | (v > _col(limits.suspect_max, d))] = SUSPECT
    flags[(v < _col(limits.fail_min, d)) | (v > _col(limits.fail_max, d))] = FAIL
    flags[~np.isfinite(v)] = MISSING
    return flags


def spike(values: np.ndarray, suspect: float | np.ndarray, fail: float | np.ndarray, window: int = 3,
          last: int | None = None) -> np.ndarray:
    """Deviation from the median of the previous ``window`` values (one-sided, real time).

    Parameters
    ----------
    values : (..., N) float in time order along the last axis, NaN where missing.
    suspect, fail : thresholds in the units of ``values``; floats or (S,) for (S, N) values.

    last : judge only the last ``last`` positions (the rest NOT_EVALUATED); None judges all.

    Returns
    -------
    (..., N) uint8: NOT_EVALUATED where there is no earlier value, and for missing values.
    """
    v = np.asarray(values, dtype=float)
    flags = np.full(v.shape, NOT_EVALUATED, dtype=np.uint8)
    n = v.shape[-1]
    if n < 2:
        return flags
    m = n if last is None else max(1, min(int(last), n))
    pad = np.full(v.shape[:-1] + (window,), np.nan)
    padded = np.concatenate([pad, v], axis=-1)
    prev = np.lib.stride_tricks.sliding_window_view(padded[..., :-1], window, axis=-1)  # (..., N, window)
    ref = _nanmedian_last(prev[..., n - m:, :])
    v_new = v[..., n - m:]
    have = np.isfinite(ref) & np.isfinite(v_new)
    dev = np.abs(v_new - np.where(have, ref, 0.0))
    out = flags[..., n - m:]
    out[have] = PASS
    out[have & (dev > _col(suspect, v.ndim))] = SUSPECT
    out[have & (dev > _col(fail, v.ndim))] = FAIL
    return flags


def _nanmedian_last(x: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN, NaN where all are NaN; (..., W) -> (...).

    np.nanmedian does the same ~20x slower on the short windows used here.
    """
    s = np.sort(x, axis=-1)  # NaN sort last
    k = np.isfinite(x).sum(axis=-1)
    w = x.shape[-1]
    lo = np.clip((k - 1) // 2, 0, w - 1)[..., None]
    hi = np.clip(k // 2, 0, w - 1)[..., None]
    med = 0.5 * (np.take_along_axis(s, lo, -1) + np.take_along_axis(s, hi, -1))[..., 0]
    return np.where(k > 0, med, np.nan)


def _previous_finite(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position, the index of the last finite value before it along the last axis.

    Returns (index, has_previous); index is 0 where there is none.
    """
    n = v.shape[-1]
    positions = np.broadcast_to(np.arange(n), v.shape)
    last_finite = np.maximum.accumulate(np.where(np.isfinite(v), positions, -1), axis=-1)
    prev = np.concatenate([np.full(v.shape[:-1] + (1,), -1), last_finite[..., :-1]], axis=-1)
    return np.maximum(prev, 0), prev >= 0


def rate_of_change(values: np.ndarray, t_s: np.ndarray, suspect_per_s: float | np.ndarray,
                   min_change: float | np.ndarray = 0.0) -> np.ndarray:
    """SUSPECT where |change since the previous finite value| / elapsed time exceeds ``suspect_per_s``.

    Parameters
    ----------
    values : (..., N) float in time order, NaN where missing or excluded (e.g. a failed spike,
        so the reading after a spike is compared with the last good one);
    t_s : (..., N) UTC epoch s.
    min_change : changes no larger than this are sensor noise and never suspect: a node
        reporting every 10 s with a few millimetres of noise would otherwise "rise" at metres
        per hour between every two readings.
    """
    v = np.asarray(values, dtype=float)
    t = np.asarray(t_s, dtype=float)
    flags = np.full(v.shape, NOT_EVALUATED, dtype=np.uint8)
    if v.shape[-1] < 2:
        return flags
    p, has_prev = _previous_finite(v)
    ok = np.isfinite(v) & has_prev
    dv = np.abs(v - np.take_along_axis(v, p, -1))
    dt = np.maximum(t - np.take_along_axis(t, p, -1), 1.0)  # readings 0 s apart (a re-send) count as 1 s
    flags[ok] = PASS
    with np.errstate(invalid="ignore"):
        flags[ok & (dv / dt > _col(suspect_per_s, v.ndim)) & (dv > _col(min_change, v.ndim))] = SUSPECT
    return flags


def rain_intensity(rain_mm: np.ndarray, t_s: np.ndarray, suspect_per_s: float | np.ndarray,
                   default_dt_s: float | np.ndarray) -> np.ndarray:
    """SUSPECT where rain per reading / interval since the previous reading exceeds the limit.

    A reading with no earlier one uses ``default_dt_s`` (the node's publish interval).
    """
    r = np.asarray(rain_mm, dtype=float)
    t = np.asarray(t_s, dtype=float)
    p, has_prev = _previous_finite(t)
    dt = np.where(has_prev, t - np.take_along_axis(t, p, -1), _col(default_dt_s, r.ndim))
    dt = np.maximum(np.nan_to_num(dt, nan=60.0), 60.0)
    flags = np.full(r.shape, PASS, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        flags[r / dt > _col(suspect_per_s, r.ndim)] = SUSPECT
    flags[~np.isfinite(r)] = NOT_EVALUATED
    return flags


def flat_line(values: np.ndarray, t_s: np.ndarray, tolerance: float | np.ndarray,
              suspect_s: float | np.ndarray, fail_s: float | np.ndarray, last: int | None = None) -> np.ndarray:
    """Stuck sensor: how long have the values stayed within ``tolerance`` of the current one.

    SUSPECT when that run lasts ``suspect_s`` or more, FAIL at ``fail_s``. Only the
    ``last`` positions are judged when given (the rest NOT_EVALUATED): ingest needs
    flags for the new readings only, and this test is O(N x last) per station.
    """
    v = np.asarray(values, dtype=float)
    t = np.asarray(t_s, dtype=float)
    n = v.shape[-1]
    flags = np.full(v.shape, NOT_EVALUATED, dtype=np.uint8)
    if n < 2:
        return flags
    m = n if last is None else max(1, min(int(last), n))
    nd = v.ndim
    idx = np.arange(n)
    judged = idx[n - m:]
    v_new = v[..., n - m:]
    with np.errstate(invalid="ignore"):
        not_close = (np.abs(v[..., None, :] - v_new[..., :, None]) > _col(tolerance, nd)[..., None]) | ~np.isfinite(
            v[..., None, :]
        )  # (..., m, N): does value j break the run that ends at judged position i?
    earlier = idx[None, :] <= judged[:, None]
    last_break = np.where(not_close & earlier, idx, -1).max(axis=-1)
    start = np.clip(last_break + 1, 0, n - 1)
    run_s = t[..., n - m:] - np.take_along_axis(t, start, -1)
    # With no break in the history we cannot know how long it has really been
    # flat beyond the history's start: judge it on what we have.
    ok = np.isfinite(v_new)
    out = flags[..., n - m:]
    out[ok] = PASS
    with np.errstate(invalid="ignore"):
        out[ok & (run_s >= _col(suspect_s, nd))] = SUSPECT
        out[ok & (run_s >= _col(fail_s, nd))] = FAIL
    return flags


def timestamp_sanity(t_s: np.ndarray, now_s: float, future_suspect_s: float | np.ndarray) -> np.ndarray:
    """SUSPECT for readings stamped ahead of the receiving clock by more than ``future_suspect_s``.

    (Far-future and beyond-retention timestamps are refused at the boundary.)
    """
    t = np.asarray(t_s, dtype=float)
    flags = np.full(t.shape, PASS, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        flags[t > now_s + _col(future_suspect_s, t.ndim)] = SUSPECT
    return flags


_PRECEDENCE = np.zeros(256, dtype=np.uint8)  # flag -> rank (ioos_qc qartod_compare)
_PRECEDENCE[[MISSING, NOT_EVALUATED, PASS, SUSPECT, FAIL]] = [1, 2, 3, 4, 5]
_BY_RANK = np.array([NOT_EVALUATED, MISSING, NOT_EVALUATED, PASS, SUSPECT, FAIL], dtype=np.uint8)


def aggregate(test_flags: dict[str, np.ndarray], value_missing: np.ndarray | None = None) -> np.ndarray:
    """One flag per reading: fail > suspect > pass > not evaluated > missing (ioos_qc's precedence).

    Parameters
    ----------
    test_flags : name -> (..., N) uint8 flags of each test.
    value_missing : (..., N) bool, readings without the station's main value; these are MISSING.
    """
    stacked = np.stack(list(test_flags.values()))
    worst = _BY_RANK[_PRECEDENCE[stacked].max(axis=0)]
    if value_missing is not None:
        worst = np.where(value_missing, MISSING, worst)
    return worst.astype(np.uint8)


def stack_limits(limits: list[QcLimits]) -> QcLimits:
    """Limits of several stations with the same field as one QcLimits of (S,) arrays."""
    fields = {limit.field for limit in limits}
    if len(fields) != 1:
        raise ValueError(f"cannot stack limits of different fields {sorted(fields)}; group stations by field")
    arrays = {
        name: np.array([getattr(limit, name) for limit in limits], dtype=float)
        for name in QcLimits.__dataclass_fields__
        if name != "field"
    }
    return QcLimits(field=limits[0].field, **arrays)


def run_tests(
    values: np.ndarray,
    t_s: np.ndarray,
    now_s: float,
    limits: QcLimits,
    default_dt_s: float | np.ndarray = 600.0,
    last: int | None = None,
    failed_before: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """All tests for one station's series, or several stations' at once.

    Parameters
    ----------
    values, t_s : (N,) or (S, N): history then new readings, in time order along the last
        axis; rows shorter than N are padded on the left with NaN (values and times).
    limits : one station's, or :func:`stack_limits` of S stations (same field).
    last : judge only the last ``last`` positions with the costly flat-line test (ingest's
        new readings); None judges all.
    failed_before : bool, shape of ``values``, optional
        History positions that failed the spike test when they were judged (in an earlier
        batch, where the spike test no longer sees them as new): the rate of change of the
        readings after them is judged against the last good reading, as within one batch.

    Returns
    -------
    flags : (..., N) uint8 aggregate; tests : name -> (..., N) uint8 per-test flags.
    """
    tests: dict[str, np.ndarray] = {"gross_range": gross_range(values, limits)}
    if limits.field == "water_level_m":
        tests["spike"] = spike(values, limits.spike_suspect, limits.spike_fail, last=last)
        # Judge the rate against the last reading that was not a failed spike.
        excluded = tests["spike"] == FAIL
        if failed_before is not None:
            excluded = excluded | failed_before
        tests["rate_of_change"] = rate_of_change(
            np.where(excluded, np.nan, values), t_s, limits.rate_suspect_per_s, limits.rate_min_change
        )
        tests["flat_line"] = flat_line(values, t_s, limits.flat_tolerance, limits.flat_suspect_s, limits.flat_fail_s,
                                       last=last)
        with np.errstate(invalid="ignore"):
            dry = np.asarray(values, dtype=float) <= _col(limits.flat_exempt_at_or_below, np.ndim(values))
        tests["flat_line"][dry & (tests["flat_line"] != NOT_EVALUATED)] = PASS
    elif limits.field == "discharge_m3_s":
        tests["rate_of_change"] = rate_of_change(values, t_s, limits.rate_suspect_per_s)
    else:
        tests["rate_of_change"] = rain_intensity(values, t_s, limits.rate_suspect_per_s, default_dt_s)
    tests["timestamp"] = timestamp_sanity(t_s, now_s, limits.future_suspect_s)
    return aggregate(tests, ~np.isfinite(np.asarray(values, dtype=float))), tests


def describe(tests: dict[str, np.ndarray], i: int | tuple[int, int]) -> str:
    """'spike=4,rate_of_change=3' for reading ``i`` (or ``(row, i)``): the tests that did not pass."""
    return ",".join(f"{name}={int(f[i])}" for name, f in tests.items() if f[i] in (SUSPECT, FAIL, MISSING))


def as_flag(value: int) -> QcFlag:
    return QcFlag(int(value))
