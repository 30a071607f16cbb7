"""One gauge's forecasts from many origins at once, as the production job would have made them.

``floodwatch verify`` replays years of a gauge's record through the alert
rules, and the rules need the forecast the live system would have issued at
every run of its schedule (every ``forecast.interval_s``). Fitting one origin
at a time would take hours; here a batch of origins goes to :func:`fit` and
:func:`predict` as if each origin were a station (each row a window ending at
its own origin, on a time axis relative to that origin), so the replay runs
the same vectorised code the live forecaster runs, on every core, in minutes.

What each row sees is what ``scheduler.forecast_job.forecast_from_store``
reads from the store: the bins of ``step_s`` in ``[end - window_s, end)``
where ``end`` is the last complete step before the forecast is issued, bin
means labelled by their start (:func:`bin_like_store` builds that grid from
raw readings the way ``store.read_window`` does). Only the leads the rules can
use are kept, in single precision: years of origins stay a few tens of
megabytes.

This module is the one seam between the replay and the forecaster: when the
forecaster gains inputs (upstream gauges) or a fit-once / predict-often split,
only :func:`forecast_origins` changes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from floodwatch.errors import ForecastError
from floodwatch.models._arrays import last_valid_index
from floodwatch.models._forecast import DEFAULT_WINDOW_S, fit, predict
from floodwatch.models._residual import ANCHOR_LEADS_H

ORIGINS_PER_BLOCK = 512
"""Origins per block of the vectorised core (its ``_BLOCK``); a batch is one block per core."""


@dataclass(frozen=True)
class OriginForecasts:
    """Forecasts of one gauge issued at O times, H lead steps each, against K warning levels.

    Attributes
    ----------
    issued_s : ndarray, (O,) float64
        When each forecast was issued (the job's "now"), UTC epoch seconds.
    origin_s : ndarray, (O,) float64
        End of the window each forecast read (the last complete step before
        ``issued_s``); lead ``k`` is the grid time ``origin_s + lead_s[k]``.
    lead_s : ndarray, (H,) float64
        ``step_s, 2 * step_s, ...``, seconds after ``origin_s``.
    median_m, lower_m, upper_m : ndarray, (O, H) float32
        Median and 5 % / 95 % band, metres; NaN where the gauge had no data.
    exceed_prob : ndarray, (O, K, H) float32
        Chance of being at or above each level at each lead, 0..1.
    rise_rate_cm_per_h : ndarray, (O,) float32
        Theil-Sen slope of the last hour of the window, cm/h.
    model_name : tuple of str, (O,)
        Which model served each forecast (see ``models._forecast``).
    """

    issued_s: np.ndarray
    origin_s: np.ndarray
    lead_s: np.ndarray
    median_m: np.ndarray
    lower_m: np.ndarray
    upper_m: np.ndarray
    exceed_prob: np.ndarray
    rise_rate_cm_per_h: np.ndarray
    model_name: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.issued_s.size)

    def t_s(self, i: int) -> np.ndarray:
        """Grid times (H,) of forecast ``i``'s leads, UTC epoch seconds."""
        return self.origin_s[i] + self.lead_s


def bin_like_store(
    ts_s: np.ndarray, values: np.ndarray, start_s: float, end_s: float, step_s: float, *, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Readings onto the store's grid: bins ``[start + k * step, start + (k + 1) * step)``.

    The same arithmetic as ``store.read_window`` (bin ``floor((ts - start) / step)``,
    labelled by its start; readings outside ``[start, end)`` and NaN values left out;
    empty bins NaN), so a replay sees the windows the live forecaster reads.

    Parameters
    ----------
    ts_s : ndarray, (N,)
        Reading times, UTC epoch seconds, any order.
    values : ndarray, (N,)
        Levels (m) or rain (mm).
    start_s, end_s, step_s : float
        Grid start, end (exclusive) and step, seconds.
    how : "mean" or "sum"
        Levels are averaged per bin, rain summed.

    Returns
    -------
    t_s : ndarray, (ceil((end - start) / step),)
    binned : ndarray, same shape; NaN for bins without a reading.
    """
    if not (step_s > 0 and end_s > start_s):
        raise ForecastError(f"need end_s > start_s and step_s > 0, got {start_s}, {end_s}, {step_s}")
    if how not in ("mean", "sum"):
        raise ForecastError(f"how must be 'mean' or 'sum', got {how!r}")
    n_bins = int(math.ceil((end_s - start_s) / step_s))
    t_s = start_s + step_s * np.arange(n_bins, dtype=float)
    ts_s = np.asarray(ts_s, dtype=float)
    values = np.asarray(values, dtype=float)
    keep = (ts_s >= start_s) & (ts_s < end_s) & np.isfinite(values)
    bins = np.floor((ts_s[keep] - start_s) / step_s).astype(np.int64)
    inside = (bins >= 0) & (bins < n_bins)
    bins, kept = bins[inside], values[keep][inside]
    total = np.bincount(bins, weights=kept, minlength=n_bins)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        binned = np.where(count > 0, total / np.maximum(count, 1) if how == "mean" else total, np.nan)
    return t_s, binned


def forecast_origins(
    t_s: np.ndarray,
    level_m: np.ndarray,
    rain_mm: np.ndarray | None = None,
    *,
    origins_s: np.ndarray,
    thresholds_m: np.ndarray,
    horizon_s: float,
    step_s: float,
    window_s: float,
    floor_m: float | None = None,
    fit_window_s: float = DEFAULT_WINDOW_S,
    job_horizon_s: float = 72 * 3600.0,
    progress: Callable[[int, int], None] | None = None,
    batch: int | None = None,
) -> OriginForecasts:
    """Forecast one gauge at every issue time in ``origins_s``, as the live job would have.

    Parameters
    ----------
    t_s : ndarray, (T,)
        The store's grid: regular, spacing ``step_s``, bin starts (see :func:`bin_like_store`).
    level_m : ndarray, (T,)
        Bin means of the level, metres; NaN = no reading in the bin.
    rain_mm : ndarray, (T,), optional
        Bin sums of the rain gauge driving this one, mm; NaN = no reading.
    origins_s : ndarray, (O,)
        Issue times, UTC epoch seconds, increasing (every ``forecast.interval_s``).
    thresholds_m : ndarray, (K,)
        Watch / warning / evacuate levels, metres; NaN for a level not used.
    horizon_s : float
        Longest lead kept, seconds (the rules read ``forecast.lead_h``; the leads
        up to it are the same as in a 72-hour forecast, each lead being its own fit).
    step_s : float
        ``forecast.step_s``.
    window_s : float
        History each forecast reads, seconds (``forecast.history_days``).
    floor_m : float, optional
        The gauge's dry ground level (``dry_level_m``): forecasts never go below it.
    fit_window_s : float
        The forecaster's own fit window (30 days; ``forecast_from_store`` leaves it
        at the default).
    job_horizon_s : float
        The live job's horizon (``forecast.horizon_h``). Each lead is its own fit and
        leads between fitted ones are interpolated, so the leads kept here equal the
        job's as long as the fit reaches the job's next fitted lead beyond them
        (counted from the last reading); fitting that far and no further is what
        makes years of origins cheap.
    progress : callable(done, total), optional
        Called after each batch.
    batch : int, optional
        Origins per fit call; default one block of 512 per core (both cores busy,
        memory bounded to a few hundred megabytes).

    Returns
    -------
    OriginForecasts
    """
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float)
    origins_s = np.asarray(origins_s, dtype=float)
    thresholds_m = np.asarray(thresholds_m, dtype=float).reshape(-1)
    if t_s.ndim != 1 or level_m.shape != t_s.shape or t_s.size < 2:
        raise ForecastError("t_s and level_m must be 1-D of the same length (at least 2 bins)")
    if not np.allclose(np.diff(t_s), step_s, rtol=0, atol=1e-3):
        raise ForecastError(f"t_s must be a regular grid of step_s={step_s} s (see bin_like_store)")
    if rain_mm is not None:
        rain_mm = np.asarray(rain_mm, dtype=float)
        if rain_mm.shape != t_s.shape:
            raise ForecastError(f"rain_mm must have the shape of level_m {t_s.shape}, got {rain_mm.shape}")
    if origins_s.ndim != 1 or (origins_s.size > 1 and np.any(np.diff(origins_s) <= 0)):
        raise ForecastError("origins_s must be 1-D and increasing")
    if horizon_s < step_s:
        raise ForecastError(f"horizon_s ({horizon_s}) must be at least one step ({step_s})")
    width = int(math.ceil(window_s / step_s - 1e-9))
    n_leads = int(math.floor(horizon_s / step_s + 1e-9))
    # Each window ends at the last complete step before its issue time and starts window_s earlier.
    ends_s = np.floor(origins_s / step_s) * step_s
    first = (ends_s - window_s - t_s[0]) / step_s
    start_index = np.round(first).astype(np.int64)
    if origins_s.size and not np.allclose(first, start_index, atol=1e-6):
        raise ForecastError(
            "the grid is not aligned with the windows the forecast job reads: start it at a multiple of "
            f"step_s minus window_s (window_s={window_s}, step_s={step_s}); bin_like_store does"
        )
    n_orig = origins_s.size
    median = np.full((n_orig, n_leads), np.nan, dtype=np.float32)
    lower = np.full_like(median, np.nan)
    upper = np.full_like(median, np.nan)
    exceed = np.full((n_orig, thresholds_m.size, n_leads), np.nan, dtype=np.float32)
    rate = np.full(n_orig, np.nan, dtype=np.float32)
    names: list[str] = []
    # Each window on a time axis relative to its own end, as forecast_from_store's window is
    # relative to nothing but that end: origin 0, bins at -window_s ... -step_s.
    rel_t = -window_s + step_s * np.arange(width, dtype=float)
    per_call = batch or ORIGINS_PER_BLOCK * max(1, os.cpu_count() or 1)
    columns = np.arange(width)[None, :]
    for lo in range(0, n_orig, per_call):
        hi = min(lo + per_call, n_orig)
        cols = start_index[lo:hi, None] + columns
        inside = (cols >= 0) & (cols < t_s.size)
        safe = np.clip(cols, 0, t_s.size - 1)
        y = np.where(inside, level_m[safe], np.nan)
        rain = None if rain_mm is None else np.where(inside, rain_mm[safe], np.nan)
        fit_horizon_s = _fit_horizon_s(rel_t, y, n_leads * step_s, job_horizon_s, fit_window_s)
        model = fit(rel_t, y, rain, origin_s=0.0, horizon_s=fit_horizon_s, window_s=fit_window_s)
        del y, rain, cols, inside, safe
        floors = None if floor_m is None else np.full(hi - lo, floor_m, dtype=float)
        fc = predict(model, thresholds_m=np.broadcast_to(thresholds_m, (hi - lo, thresholds_m.size)),
                     horizon_s=n_leads * step_s, step_s=step_s, floor_m=floors)
        median[lo:hi] = fc.median_m
        lower[lo:hi] = fc.lower_m
        upper[lo:hi] = fc.upper_m
        exceed[lo:hi] = fc.exceed_prob
        rate[lo:hi] = fc.rise_rate_cm_per_h
        names.extend(fc.model_name)
        if progress is not None:
            progress(hi, n_orig)
    return OriginForecasts(
        issued_s=origins_s,
        origin_s=ends_s,
        lead_s=step_s * np.arange(1, n_leads + 1, dtype=float),
        median_m=median,
        lower_m=lower,
        upper_m=upper,
        exceed_prob=exceed,
        rise_rate_cm_per_h=rate,
        model_name=tuple(names),
    )


def _fit_horizon_s(rel_t: np.ndarray, y: np.ndarray, horizon_s: float, job_horizon_s: float,
                   fit_window_s: float) -> float:
    """The shortest fit horizon whose fitted leads agree with the job's up to ``horizon_s``.

    Leads count from each row's last reading, so a window ending in empty bins needs
    leads up to ``horizon_s`` plus that staleness (``fit`` caps it at a day); the fit
    must reach the first of the job's fitted leads at or beyond them.
    """
    seen = (rel_t <= 1e-6) & (rel_t > -fit_window_s)
    last = last_valid_index(np.isfinite(y[:, seen]))
    t_seen = rel_t[seen]
    stale_s = float(np.max(-t_seen[last[last >= 0]], initial=0.0))
    needed_h = (horizon_s + min(stale_s, 86_400.0)) / 3600.0
    for anchor_h in ANCHOR_LEADS_H:
        if anchor_h >= needed_h - 1e-9 and anchor_h * 3600.0 < job_horizon_s:
            return anchor_h * 3600.0
    return job_horizon_s
