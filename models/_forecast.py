"""Fit and predict every station at once: tide + residual model + honest uncertainty.

``fit`` validates and masks, fits the harmonic tide (``_tide``), then the
residual model (``_residual``) on what the tide leaves, and returns one
:class:`ForecastModel`. ``predict`` turns it into a :class:`Forecast` at any
lead times and warning levels. ``forecast_stations`` does both.

Graceful degradation, per station, reported in ``model_name``:

=====================  ======================================================
``tide+arx[+rain]``    tide fitted and the residual model beats carrying the
                       residual forward on the station's own holdout
``tide+persistence``   tide fitted; the residual (level minus tide) carried
                       forward unchanged
``arx[+rain]``         no tide detected (a river, a pond) or too short a record
                       to resolve one; the residual model alone
``persistence``        too little history for either: the last level carried
                       forward
``no-data``            no valid sample in the window: NaN forecast
=====================  ======================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import TypeVar

import numpy as np
from scipy.special import erfc
from threadpoolctl import threadpool_limits

from floodwatch.errors import ForecastError
from floodwatch.models._arrays import last_valid_index, nan_quantiles
from floodwatch.models._residual import MAX_ROWS, ResidualFit, fit_residual
from floodwatch.models._tide import TideFit, fit_tide, leave_block_out_residual, predict_tide

DEFAULT_WINDOW_S = 30 * 86_400.0
"""Fit window: the last 30 days before the origin."""

TIDE_MIN_EXPLAINED = 0.1
"""A station uses its harmonics only if they explain at least this share of the detrended variance."""

RATE_WINDOW_S = 3600.0
"""Rate of rise: Theil-Sen slope over the last hour of observations."""

LBO_BLOCKS = 10
"""The residual model trains on leave-block-out tide residuals: the window in this many blocks."""

LBO_MAX_MISSING = 0.25
"""Stations missing more than this share of the window train on the in-sample residual."""

UNSEEN_TREND_MAX_H = 6.0
"""How long an unprecedented trend is assumed able to go on when widening the band (hours)."""

_Z95 = 1.6448536269514722  # standard normal 95 % quantile
T = TypeVar("T")


@dataclass(frozen=True)
class Forecast:
    """Forecast of S stations at H lead times against K warning levels.

    Attributes
    ----------
    t_s : ndarray, (H,)
        UTC epoch seconds of each lead step (origin + k * step_s, k = 1..H).
    median_m : ndarray, (S, H)
        Central forecast, metres.
    lower_m, upper_m : ndarray, (S, H)
        5 % and 95 % quantiles, metres.
    exceed_prob : ndarray, (S, K, H)
        Chance of being at or above each warning level at each lead, 0..1.
    first_crossing_s : ndarray, (S, K)
        Expected UTC epoch seconds the median first reaches each level (the
        origin if already there); NaN if not within the horizon.
    rise_rate_cm_per_h : ndarray, (S,)
        Robust (Theil-Sen) slope of the observed level over the last hour.
    model_name : tuple of str, (S,)
        Which model produced each station's forecast (see module docstring).
    """

    t_s: np.ndarray
    median_m: np.ndarray
    lower_m: np.ndarray
    upper_m: np.ndarray
    exceed_prob: np.ndarray
    first_crossing_s: np.ndarray
    rise_rate_cm_per_h: np.ndarray
    model_name: tuple[str, ...]


@dataclass(frozen=True)
class ForecastModel:
    """Everything ``predict`` needs, fitted at one origin for S stations.

    Attributes
    ----------
    origin_s : float
        Forecast origin, UTC epoch seconds (no data after it was read).
    dt_s : float
        Grid step of the history, seconds.
    tide : TideFit
        Harmonic fit (``tide.explained`` says how tidal each station is).
    uses_tide : ndarray of bool, (S,)
        Stations whose forecast includes the harmonics.
    residual : ResidualFit
        Residual model at anchor leads counted from each station's last observation.
    last_obs_s : ndarray, (S,)
        Time of each station's last valid observation; NaN if none.
    last_level_m : ndarray, (S,)
        That observation, metres.
    last_residual_m : ndarray, (S,)
        Level minus tide at that time, metres.
    step_sigma_m : ndarray, (S,)
        Spread of one-step residual changes, for leads without out-of-sample errors.
    unseen_trend_m_per_h : ndarray, (S,)
        The residual's rate of change over the last hour where it is faster than any
        earlier hourly change in the window before its last 6 h (a movement the model
        never saw), else 0.
    rise_rate_cm_per_h : ndarray, (S,)
    model_name : tuple of str, (S,)
    """

    origin_s: float
    dt_s: float
    tide: TideFit
    uses_tide: np.ndarray
    residual: ResidualFit
    last_obs_s: np.ndarray
    last_level_m: np.ndarray
    last_residual_m: np.ndarray
    step_sigma_m: np.ndarray
    unseen_trend_m_per_h: np.ndarray
    rise_rate_cm_per_h: np.ndarray
    model_name: tuple[str, ...]


def _check_inputs(
    t_s: np.ndarray, level_m: np.ndarray, rain_mm: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float)
    if t_s.ndim != 1 or t_s.size < 1:
        raise ForecastError(f"t_s must be a 1-D time grid with at least one time, got shape {t_s.shape}")
    if level_m.ndim != 2 or level_m.shape[1] != t_s.size:
        raise ForecastError(
            f"level_m must be shaped (stations, {t_s.size}) to match t_s, got {level_m.shape}"
        )
    if t_s.size > 1:
        dt = np.diff(t_s)
        if not (dt[0] > 0 and np.allclose(dt, dt[0], rtol=1e-6, atol=1e-3)):
            raise ForecastError(
                "t_s must be a regular, increasing grid (resample readings onto fixed steps first)"
            )
    if rain_mm is not None:
        rain_mm = np.asarray(rain_mm, dtype=float)
        if rain_mm.shape != level_m.shape:
            raise ForecastError(
                f"rain_mm must have the shape of level_m {level_m.shape}, got {rain_mm.shape}"
            )
        if np.any(rain_mm < 0):
            raise ForecastError("rain_mm must not be negative (mm fallen per step); check the rain gauge QC")
    return t_s, level_m, rain_mm


def rise_rate_cm_per_h(t_s: np.ndarray, level_m: np.ndarray, window_s: float = RATE_WINDOW_S) -> np.ndarray:
    """Theil-Sen slope of each station's observed level over the last ``window_s``.

    Parameters
    ----------
    t_s : ndarray, (T,)
        Regular grid, UTC epoch seconds.
    level_m : ndarray, (S, T)
        Levels, metres; NaN where missing.
    window_s : float
        Look-back from the last grid time, seconds.

    Returns
    -------
    ndarray, (S,)
        Median of pairwise slopes, cm per hour; NaN with fewer than two observations in the window.
    """
    t_s = np.asarray(t_s, dtype=float)
    keep = t_s > t_s[-1] - window_s - 1e-6
    t_h = t_s[keep][-64:] / 3600.0  # cap pairs; an hour at 1-min steps is 61 points
    y = level_m[:, keep][:, -64:]
    i, j = np.triu_indices(t_h.size, k=1)
    if i.size == 0:
        return np.full(level_m.shape[0], np.nan)
    slopes = (y[:, j] - y[:, i]) / (t_h[j] - t_h[i])[None, :]
    q, _ = nan_quantiles(slopes, np.array([0.5]))
    return q[:, 0] * 100.0


def unseen_trend_m_per_h(t_s: np.ndarray, residual_m: np.ndarray, window_s: float = RATE_WINDOW_S) -> np.ndarray:
    """The last hour's trend where no earlier hour in the window moved as fast, else 0.

    A model fitted on a dry week has only ever seen a flat street: its holdout
    errors are millimetres and its band would stay millimetres wide while the
    first flood of the season rises. Where the water now moves faster than over
    any earlier ``window_s`` of the window (before the last ``UNSEEN_TREND_MAX_H``,
    so a flood's first hours stay news), that movement is something the errors
    do not cover, and :func:`predict` widens the band by the distance it would
    cover if it went on (for at most ``UNSEEN_TREND_MAX_H``).

    Parameters
    ----------
    t_s : ndarray, (T,)
        Regular grid, UTC epoch seconds.
    residual_m : ndarray, (S, T)
        Level minus tide (or minus nothing), metres; NaN where missing.
    window_s : float
        The span a trend is measured over, seconds.

    Returns
    -------
    ndarray, (S,)
        Metres per hour, signed (rising positive); 0 where the trend is not
        unprecedented or cannot be measured.
    """
    t_s = np.asarray(t_s, dtype=float)
    n_times = t_s.size
    dt_s = float(t_s[1] - t_s[0]) if n_times > 1 else window_s
    lag = max(int(round(window_s / dt_s)), 1)
    trend = np.nan_to_num(rise_rate_cm_per_h(t_s, residual_m, window_s) / 100.0)
    # Every earlier change over the same span that ended before the recent stretch: the
    # first hours of a new regime (a flood's rise) stay news for UNSEEN_TREND_MAX_H.
    recent = max(int(round(UNSEEN_TREND_MAX_H * 3600.0 / dt_s)), lag)
    if n_times <= recent + lag:
        return np.zeros(residual_m.shape[0])
    earlier = np.abs(residual_m[:, lag : n_times - recent] - residual_m[:, : n_times - recent - lag])
    seen_m_per_h = np.nanmax(np.where(np.isfinite(earlier), earlier, -np.inf), axis=1) * 3600.0 / (lag * dt_s)
    return np.where(np.abs(trend) > seen_m_per_h, trend, 0.0)


def fit(
    t_s: np.ndarray,
    level_m: np.ndarray,
    rain_mm: np.ndarray | None = None,
    *,
    origin_s: float | None = None,
    horizon_s: float = 72 * 3600.0,
    window_s: float = DEFAULT_WINDOW_S,
    max_rows: int = MAX_ROWS,
) -> ForecastModel:
    """Fit tide and residual models of all stations on data up to the origin.

    Parameters
    ----------
    t_s : ndarray, (T,)
        Regular grid, UTC epoch seconds.
    level_m : ndarray, (S, T)
        Levels, metres; NaN where missing or QC-failed (never read).
    rain_mm : ndarray, (S, T), optional
        Rain fallen in the step ending at each grid time, driving each station, mm;
        NaN (or None for all) means no rain input.
    origin_s : float, optional
        Forecast origin; data after it are ignored. Defaults to the last grid time.
    horizon_s : float
        Longest lead the residual model is fitted for, seconds.
    window_s : float
        Fit on the samples in ``(origin - window_s, origin]``.
    max_rows : int
        Rows per residual fit after thinning the window (720: hourly rows for
        30 days); fewer is proportionally faster and noisier.

    Returns
    -------
    ForecastModel

    Raises
    ------
    ForecastError
        If shapes or the grid break the rules above.
    """
    t_s, level_m, rain_mm = _check_inputs(t_s, level_m, rain_mm)
    origin_s = float(t_s[-1]) if origin_s is None else float(origin_s)
    if horizon_s <= 0 or window_s <= 0:
        raise ForecastError(f"horizon_s and window_s must be positive, got {horizon_s}, {window_s}")
    in_window = (t_s <= origin_s + 1e-6) & (t_s > origin_s - window_s)
    if not in_window.any():
        in_window = t_s <= origin_s + 1e-6
    if not in_window.any():
        raise ForecastError(f"origin_s {origin_s} is before the first grid time {t_s[0]}")
    # The window is a contiguous run of the grid: a slice is a view, not a copy of every series.
    inside = np.nonzero(in_window)[0]
    window = slice(int(inside[0]), int(inside[-1]) + 1)
    t_w = t_s[window]
    y = level_m[:, window]
    rain = None if rain_mm is None else rain_mm[:, window]
    dt_s = float(t_w[1] - t_w[0]) if t_w.size > 1 else float(np.diff(t_s)[0]) if t_s.size > 1 else 600.0
    observed = np.isfinite(y)
    last = last_valid_index(observed)
    has = last >= 0
    # Leads count from each station's last observation; a stale gauge needs longer
    # ones (up to a day of staleness is modelled, beyond that the last anchor holds).
    stale_s = float(np.max(origin_s - t_w[last[has]], initial=0.0))
    max_lead_s = horizon_s + min(stale_s, 86_400.0)

    def fit_rows(i: int) -> ForecastModel:
        part = None if rain is None else rain[i : i + _BLOCK]
        return _fit_block(t_w, y[i : i + _BLOCK], part, origin_s, dt_s, max_lead_s, max_rows)

    blocks = _over_blocks(y.shape[0], fit_rows)
    return blocks[0] if len(blocks) == 1 else _concat(blocks)


_BLOCK = 512
"""Stations fitted together. Bounds the (stations x rows x features) temporaries and keeps
them under the allocator's 32 MB mmap threshold, so they reuse memory instead of paying
page faults on every block (1,024 stations cost a third more)."""


def _over_blocks(n_stations: int, work: Callable[[int], T]) -> list[T]:
    """``work(start)`` for each block of ``_BLOCK`` stations, in order.

    Blocks bound the temporaries (memory blocking, not per-station maths). numpy
    releases the GIL inside its array operations, so blocks run on threads use
    every core, each with one BLAS thread.
    """
    starts = range(0, max(n_stations, 1), _BLOCK)
    workers = min(len(starts), os.cpu_count() or 1)
    if workers == 1:
        return [work(start) for start in starts]
    # The blocks already fill the cores: BLAS's own threads on top of them would only
    # fight for the same cores (a quarter of the time went to that on two cores).
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, starts))


def _concat(parts: list) -> object:
    """Join per-block dataclasses along the station axis; shared fields are taken from the first."""
    first = parts[0]
    values = {}
    for field in fields(first):
        items = [getattr(p, field.name) for p in parts]
        if is_dataclass(items[0]):
            values[field.name] = _concat(items)
        elif field.name == "model_name":
            values[field.name] = tuple(name for item in items for name in item)
        elif field.name in _SHARED_FIELDS:
            values[field.name] = items[0]
        else:
            values[field.name] = np.concatenate(items, axis=0)
    return replace(first, **values)


_SHARED_FIELDS = {"origin_s", "dt_s", "ref_s", "names", "freq_cph", "lead_steps"}


def _fit_block(
    t_w: np.ndarray,
    y: np.ndarray,
    rain: np.ndarray | None,
    origin_s: float,
    dt_s: float,
    max_lead_s: float,
    max_rows: int,
) -> ForecastModel:
    n_stations = y.shape[0]
    # errstate, not warnings.catch_warnings: it is per thread, and blocks run on threads.
    with np.errstate(all="ignore"):
        tide = fit_tide(t_w, y, ref_s=origin_s)
        uses_tide = tide.active.any(axis=1) & (tide.explained >= TIDE_MIN_EXPLAINED)
        # The tide over the window, continued past it so lead-specific features can see it.
        n_ahead = int(np.ceil(max_lead_s / dt_s)) + 1
        t_ext = np.concatenate([t_w, t_w[-1] + dt_s * np.arange(1, n_ahead + 1)])
        tide_ext = predict_tide(tide, t_ext, harmonics=uses_tide)
        observed = np.isfinite(y)
        # Without harmonics the residual is the level minus its mean.
        residual = y - tide_ext[:, : t_w.size]
        last = last_valid_index(observed)
        rows = np.arange(n_stations)
        has = last >= 0
        # The residual model learns from what a forecast faces: tide-fit errors outside the
        # fit. Each tenth of the window (but the last, which holds the origin) gets the
        # residual of a fit without it; gappy records (Gram approximated) keep their own.
        few_gaps = observed.sum(axis=1) >= (1.0 - LBO_MAX_MISSING) * t_w.size
        resid_train = leave_block_out_residual(tide, t_w, residual, LBO_BLOCKS, uses_tide & few_gaps)
        res = fit_residual(
            resid_train, rain, dt_s=dt_s, max_lead_s=max_lead_s, tide_m=tide_ext, tidal=uses_tide, max_rows=max_rows
        )
        last_obs_s = np.where(has, t_w[np.maximum(last, 0)], np.nan)
        last_level = np.where(has, y[rows, np.maximum(last, 0)], np.nan)
        last_res = np.where(has, residual[rows, np.maximum(last, 0)], np.nan)
        steps = np.diff(residual, axis=1)
        stepped = ~np.isnan(steps)
        n_steps = stepped.sum(axis=1)
        np.copyto(steps, 0.0, where=~stepped)
        step_sigma = np.sqrt(np.einsum("st,st->s", steps, steps) / np.where(n_steps > 0, n_steps, np.nan))
        rate = rise_rate_cm_per_h(t_w, y)
        unseen = unseen_trend_m_per_h(t_w, residual)

    names = []
    for s in range(n_stations):  # labels only, no maths
        if not has[s]:
            names.append("no-data")
            continue
        arx = bool(res.uses_arx[s].any())
        core = ("arx+rain" if res.uses_rain[s].any() else "arx") if arx else "persistence"
        names.append(f"tide+{core}" if uses_tide[s] else core)
    return ForecastModel(
        origin_s=origin_s,
        dt_s=dt_s,
        tide=tide,
        uses_tide=uses_tide,
        residual=res,
        last_obs_s=last_obs_s,
        last_level_m=last_level,
        last_residual_m=last_res,
        step_sigma_m=step_sigma,
        unseen_trend_m_per_h=unseen,
        rise_rate_cm_per_h=rate,
        model_name=tuple(names),
    )


def _interp_anchors(values: np.ndarray, anchor_steps: np.ndarray, lead_steps: np.ndarray) -> np.ndarray:
    """Linear interpolation of per-station anchor values (S, A, ...) at leads (S, H); clamped at the ends."""
    pos = np.clip(lead_steps, anchor_steps[0], anchor_steps[-1])
    hi = np.clip(np.searchsorted(anchor_steps, pos, side="left"), 1, anchor_steps.size - 1)
    lo = hi - 1
    w = (pos - anchor_steps[lo]) / (anchor_steps[hi] - anchor_steps[lo])
    v_lo = np.take_along_axis(values, lo.reshape(lo.shape + (1,) * (values.ndim - 2)), axis=1)
    v_hi = np.take_along_axis(values, hi.reshape(hi.shape + (1,) * (values.ndim - 2)), axis=1)
    w = w.reshape(w.shape + (1,) * (values.ndim - 2))
    return v_lo + w * (v_hi - v_lo)


def exceedance_probability(
    median_m: np.ndarray, lower_m: np.ndarray, upper_m: np.ndarray, thresholds_m: np.ndarray
) -> np.ndarray:
    """Chance of being at or above each threshold, from a split normal matching the band.

    The 5 % / 50 % / 95 % quantiles fix one normal spread below the median and
    another above it, so a skewed error distribution keeps its skew.

    Parameters
    ----------
    median_m, lower_m, upper_m : ndarray, (S, H)
    thresholds_m : ndarray, (S, K)

    Returns
    -------
    ndarray, (S, K, H)
    """
    med = median_m[:, None, :]
    thr = thresholds_m[:, :, None]
    sigma_up = np.maximum(upper_m - median_m, 0.0)[:, None, :] / _Z95
    sigma_lo = np.maximum(median_m - lower_m, 0.0)[:, None, :] / _Z95
    above = thr >= med
    sigma = np.where(above, sigma_up, sigma_lo)
    gap = np.abs(thr - med)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = 0.5 * erfc(gap / (sigma * np.sqrt(2.0)))
    tail = np.where(sigma > 0, tail, np.where(gap > 0, 0.0, 0.5))
    prob = np.where(above, tail, 1.0 - tail)
    # Exactly at a level counts as at/above it when there is no spread.
    prob = np.where((sigma <= 0) & (gap == 0), 1.0, prob)
    return np.where(np.isfinite(med) & np.isfinite(thr), prob, np.nan)


def first_crossing_time(
    t_s: np.ndarray, median_m: np.ndarray, origin_s: float, now_m: np.ndarray, thresholds_m: np.ndarray
) -> np.ndarray:
    """When the median path first reaches each level, interpolated between steps.

    Parameters
    ----------
    t_s : ndarray, (H,)
    median_m : ndarray, (S, H)
    origin_s : float
    now_m : ndarray, (S,)
        Level at the origin (last observation); at or above a level means "now".
    thresholds_m : ndarray, (S, K)

    Returns
    -------
    ndarray, (S, K)
        UTC epoch seconds, NaN if the level is not reached within the horizon.
    """
    path = np.concatenate([now_m[:, None], median_m], axis=1)[:, None, :]  # (S, 1, H+1)
    times = np.concatenate([[origin_s], t_s])
    thr = thresholds_m[:, :, None]
    at_or_above = path >= thr
    reached = at_or_above.any(axis=2)
    k = np.argmax(at_or_above, axis=2)  # (S, K)
    prev = np.maximum(k - 1, 0)
    v1 = np.take_along_axis(np.broadcast_to(path, at_or_above.shape), k[..., None], axis=2)[..., 0]
    v0 = np.take_along_axis(np.broadcast_to(path, at_or_above.shape), prev[..., None], axis=2)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(k > 0, (thresholds_m - v0) / (v1 - v0), 0.0)
    frac = np.clip(np.nan_to_num(frac, nan=1.0), 0.0, 1.0)
    crossing = times[prev] + frac * (times[k] - times[prev])
    return np.where(reached, crossing, np.nan)


def predict(
    model: ForecastModel,
    *,
    thresholds_m: np.ndarray,
    horizon_s: float,
    step_s: float,
    floor_m: np.ndarray | None = None,
) -> Forecast:
    """Forecast levels, bands, exceedance and first crossings at ``origin + k * step_s``.

    Parameters
    ----------
    model : ForecastModel
    thresholds_m : ndarray, (S, K)
        Warning levels per station (watch, warning, evacuate), metres; NaN to skip one.
    horizon_s : float
        Forecast reach, seconds.
    step_s : float
        Lead step, seconds; H = floor(horizon_s / step_s) leads.
    floor_m : ndarray, (S,), optional
        Each gauge's dry ground level, metres (a street or road sensor reads its
        surface when dry); NaN or None for no floor. The water cannot fall below
        it, so the median and both band edges are clipped at it before the
        exceedance chances and first crossings are worked out.

    Returns
    -------
    Forecast
    """
    n_stations = model.last_level_m.shape[0]
    thresholds_m = np.asarray(thresholds_m, dtype=float)
    if thresholds_m.ndim == 1:
        thresholds_m = np.broadcast_to(thresholds_m, (n_stations, thresholds_m.size))
    if thresholds_m.ndim != 2 or thresholds_m.shape[0] != n_stations:
        raise ForecastError(
            f"thresholds_m must be shaped (stations={n_stations}, levels), got {thresholds_m.shape}"
        )
    if step_s <= 0 or horizon_s < step_s:
        raise ForecastError(f"need 0 < step_s <= horizon_s, got step_s={step_s}, horizon_s={horizon_s}")
    if floor_m is None:
        floor_m = np.full(n_stations, np.nan)
    floor_m = np.asarray(floor_m, dtype=float)
    if floor_m.shape != (n_stations,):
        raise ForecastError(
            f"floor_m must be shaped (stations={n_stations},): one dry ground level per station "
            f"(NaN for none), got {floor_m.shape}"
        )
    n_leads = int(np.floor(horizon_s / step_s + 1e-9))
    t_out = model.origin_s + step_s * np.arange(1, n_leads + 1)

    tide = predict_tide(model.tide, t_out, harmonics=model.uses_tide)  # (S, H)
    n_levels = thresholds_m.shape[1]
    median = np.empty((n_stations, n_leads))
    lower = np.empty_like(median)
    upper = np.empty_like(median)
    exceed = np.empty((n_stations, n_levels, n_leads))
    first = np.empty((n_stations, n_levels))

    def predict_rows(start: int) -> None:
        rows = slice(start, start + _BLOCK)
        res = model.residual
        lead_steps = (t_out[None, :] - model.last_obs_s[rows, None]) / model.dt_s  # (B, H), NaN if no data
        lead_steps = np.nan_to_num(lead_steps, nan=0.0)
        anchors = res.lead_steps.astype(float)
        change = _interp_anchors(res.change_m[rows], anchors, lead_steps)
        errq = res.error_q_m[rows]
        # Leads without out-of-sample errors: a random walk of the one-step spread.
        walk = model.step_sigma_m[rows, None] * np.sqrt(anchors)[None, :]
        fallback = np.stack([-_Z95 * walk, np.zeros_like(walk), _Z95 * walk], axis=-1)
        errq = np.where(np.isfinite(errq), errq, np.nan_to_num(fallback, nan=0.0))
        q = _interp_anchors(errq, anchors, lead_steps)  # (B, H, 3)
        # Quantile curves may cross after interpolation; keep them ordered.
        q = np.sort(q, axis=-1)
        # A trend faster than any in the window is news the errors above never saw:
        # the band reaches at least as far as the water would go if it kept it up.
        lead_h = np.clip(lead_steps * (model.dt_s / 3600.0), 0.0, UNSEEN_TREND_MAX_H)
        reach = model.unseen_trend_m_per_h[rows, None] * lead_h
        q[..., 2] = np.maximum(q[..., 2], q[..., 1] + np.maximum(reach, 0.0))
        q[..., 0] = np.minimum(q[..., 0], q[..., 1] + np.minimum(reach, 0.0))
        centre = tide[rows] + model.last_residual_m[rows, None] + change
        # The ground is a hard floor (NaN floors leave values alone: fmax ignores NaN).
        ground = floor_m[rows, None]
        median[rows] = np.fmax(centre + q[..., 1], ground)
        lower[rows] = np.fmax(centre + q[..., 0], ground)
        upper[rows] = np.fmax(centre + q[..., 2], ground)
        exceed[rows] = exceedance_probability(median[rows], lower[rows], upper[rows], thresholds_m[rows])
        first[rows] = first_crossing_time(
            t_out, median[rows], model.origin_s, model.last_level_m[rows], thresholds_m[rows]
        )

    _over_blocks(n_stations, predict_rows)
    return Forecast(
        t_s=t_out,
        median_m=median,
        lower_m=lower,
        upper_m=upper,
        exceed_prob=exceed,
        first_crossing_s=first,
        rise_rate_cm_per_h=model.rise_rate_cm_per_h,
        model_name=model.model_name,
    )


def forecast_stations(
    t_s: np.ndarray,
    level_m: np.ndarray,
    rain_mm: np.ndarray | None = None,
    *,
    thresholds_m: np.ndarray,
    horizon_s: float,
    step_s: float,
    origin_s: float | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    max_rows: int = MAX_ROWS,
    floor_m: np.ndarray | None = None,
) -> Forecast:
    """Fit and forecast all stations in one call (see :func:`fit` and :func:`predict`).

    Parameters
    ----------
    t_s : ndarray, (T,)
        Regular grid, UTC epoch seconds.
    level_m : ndarray, (S, T)
        Levels, metres; NaN = missing or QC-failed.
    rain_mm : ndarray, (S, T), optional
        Rain per step driving each station, mm; NaN / None = no rain input.
    thresholds_m : ndarray, (S, K)
        Warning levels per station (watch, warning, evacuate), metres.
    horizon_s, step_s : float
        Forecast reach and lead step, seconds.
    origin_s : float, optional
        Forecast origin; defaults to the last grid time.
    window_s : float
        Fit window before the origin, seconds (30 days by default).
    max_rows : int
        Rows per residual fit (see :func:`fit`).
    floor_m : ndarray, (S,), optional
        Dry ground level per station, metres; forecasts never go below it
        (NaN or None: no floor; see :func:`predict`).

    Returns
    -------
    Forecast
    """
    t_arr = np.asarray(t_s, dtype=float)
    origin = float(t_arr[-1]) if origin_s is None and t_arr.size else origin_s
    model = fit(
        t_s, level_m, rain_mm, origin_s=origin, horizon_s=horizon_s, window_s=window_s, max_rows=max_rows
    )
    return predict(model, thresholds_m=thresholds_m, horizon_s=horizon_s, step_s=step_s, floor_m=floor_m)
