"""Forecasts of one gauge from many origins, fitted the way production fits: daily.

:func:`rolling_forecasts` replays a record: at every origin it forecasts from
exactly what the live system would have had. Production fits each station once
a day and moves the fitted model to every new origin (:func:`models.update`),
so here too the models are fitted at daily origins (on the clock) and each
forecast origin is served by the latest fit at or before it: what was fitted
yesterday forecasts today. ``refit_every_s=None`` refits at every origin
instead (the comparison the backtest offers).

Vectorised like the live forecaster: a batch of fit origins is handed to
:func:`models.fit` as if each were a station (each row a window ending at its
own origin, on a time axis relative to that origin), and the forecast origins
they serve go to :func:`models.update` and :func:`models.predict` the same way,
each a copy of its fit with the tide's phases moved to its own time axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from floodwatch.errors import ForecastError
from floodwatch.models._forecast import (
    DEFAULT_WINDOW_S,
    NETWORK_WINDOW_S,
    ForecastModel,
    describe_inputs,
    fit,
    history_needed_s,
    predict,
    take_stations,
    update,
)
from floodwatch.models._network import MAX_LAG_H, STATUS_TEXT
from floodwatch.models._residual import MAX_ROWS
from floodwatch.models._tide import TideFit, predict_tide, retime_tide

_CELLS_PER_BATCH = 1_500_000
"""Origins x window samples per fit call (all series counted): bounds memory."""


@dataclass(frozen=True)
class RollingForecasts:
    """Forecasts of one gauge from O origins at H leads.

    Attributes
    ----------
    origins_s : ndarray, (O,)
        Forecast origins, UTC epoch seconds (grid times).
    fitted_s : ndarray, (O,)
        The origin of the fit that served each forecast (equal to ``origins_s`` when refitting at every origin).
    lead_s : ndarray, (H,)
        Lead times, seconds (``step_s * k``, k = 1..H).
    median_m, lower_m, upper_m : ndarray, (O, H)
        Median forecast and 5-95 % band, metres.
    exceed_prob : ndarray, (O, K, H)
        Chance of being at or above each of ``thresholds_m`` (K = 0 without thresholds).
    first_crossing_s : ndarray, (O, K)
        When the median first reaches each level, UTC epoch seconds; NaN if not within the horizon.
    last_level_m, last_obs_s : ndarray, (O,)
        The last observation at or before each origin.
    tide_m : ndarray, (O, H)
        The harmonic prediction (mean + harmonics) of the serving fit at each lead.
    tide_at_last_m : ndarray, (O,)
        The same at the last observation.
    model_name, inputs_used : tuple of str, (O,)
    lag_h : ndarray, (F, K)
        Each fit's travel time per input link, hours (NaN where the input was not used).
    lag_status : ndarray of int, (F, K)
        Each fit's lag-search status per input (``_network.STATUS_*``).
    input_names : tuple of str, (K,)
    n_fits : int
    """

    origins_s: np.ndarray
    fitted_s: np.ndarray
    lead_s: np.ndarray
    median_m: np.ndarray
    lower_m: np.ndarray
    upper_m: np.ndarray
    exceed_prob: np.ndarray
    first_crossing_s: np.ndarray
    last_level_m: np.ndarray
    last_obs_s: np.ndarray
    tide_m: np.ndarray
    tide_at_last_m: np.ndarray
    model_name: tuple[str, ...]
    inputs_used: tuple[str, ...]
    lag_h: np.ndarray
    lag_status: np.ndarray
    input_names: tuple[str, ...]
    n_fits: int


def _take_tide(tide: TideFit, rows: np.ndarray) -> TideFit:
    return replace(
        tide, active=tide.active[rows], mean_m=tide.mean_m[rows], trend_m_per_h=tide.trend_m_per_h[rows],
        cos_m=tide.cos_m[rows], sin_m=tide.sin_m[rows], explained=tide.explained[rows],
    )


def _as_rows(series: np.ndarray | None, what: str, n_times: int, min_width: int) -> np.ndarray | None:
    if series is None:
        return None
    arr = np.asarray(series, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < min_width:
        raise ForecastError(f"{what} must be shaped (series, {n_times}) on the level's grid, got {arr.shape}")
    return arr


def rolling_forecasts(
    t_s: np.ndarray,
    level_m: np.ndarray,
    rain_mm: np.ndarray | None = None,
    *,
    origin_index: np.ndarray,
    horizon_s: float,
    step_s: float | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    refit_every_s: float | None = 86_400.0,
    thresholds_m: np.ndarray | None = None,
    upstream_m: np.ndarray | None = None,
    predicted_m: np.ndarray | None = None,
    input_names=None,
    max_rows: int = MAX_ROWS,
    network_window_s: float = NETWORK_WINDOW_S,
    progress: Callable[[int, int], None] | None = None,
) -> RollingForecasts:
    """Forecast one gauge's record from many origins with no look-ahead, fitted daily as in production.

    Parameters
    ----------
    t_s : ndarray, (T,)
        Regular grid, UTC epoch seconds.
    level_m : ndarray, (T,)
        The gauge's levels, metres; NaN where missing.
    rain_mm : ndarray, (T,), optional
        Rain credited to the step ending at each grid time (when it was reported), mm.
    origin_index : ndarray of int, (O,)
        Grid indices of the forecast origins, increasing.
    horizon_s : float
        Forecast reach, seconds.
    step_s : float, optional
        Lead step, seconds; the grid step by default.
    window_s : float
        Fit window before each fit origin, seconds.
    refit_every_s : float or None
        Fit at whole multiples of this on the clock (daily by default) and let each
        origin be served by the latest fit at or before it; None fits at every origin.
    thresholds_m : ndarray, (K,), optional
        Warning levels to give exceedance chances and first crossings for.
    upstream_m : ndarray, (U1, T), optional
        Upstream gauges' series on the same grid (only changes are read; nothing after an
        origin is read). The gauge reads them all.
    predicted_m : ndarray, (U2, T2), optional
        Predicted series on the grid continued past its end (``T2 >= T``): their values
        after an origin are known at it.
    input_names : sequence of str, optional
        Names of the upstream then the predicted series.
    max_rows : int
        Rows per residual fit (see :func:`models.fit`).
    network_window_s : float
        Fit window when the gauge reads inputs (see :func:`models.fit`).
    progress : callable(done, total), optional
        Called with the forecast origins done so far.

    Returns
    -------
    RollingForecasts
    """
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float)
    if t_s.ndim != 1 or level_m.shape != t_s.shape or t_s.size < 3:
        raise ForecastError("rolling forecasts need a 1-D time grid and a level series of the same length (>= 3)")
    origin_index = np.asarray(origin_index, dtype=np.int64)
    if origin_index.size == 0 or np.any(np.diff(origin_index) <= 0) or origin_index[0] < 0 \
            or origin_index[-1] >= t_s.size:
        raise ForecastError("origin_index must be increasing grid indices inside the record")
    dt_s = float(t_s[1] - t_s[0])
    step_s = dt_s if step_s is None else float(step_s)
    n_times = t_s.size
    upstream = _as_rows(upstream_m, "upstream_m", n_times, n_times)
    predicted = _as_rows(predicted_m, "predicted_m", n_times, n_times)
    if upstream is not None and upstream.shape[1] != n_times:
        raise ForecastError(f"upstream_m must be on the level's grid: (series, {n_times}), got {upstream.shape}")
    n_up = 0 if upstream is None else upstream.shape[0]
    n_pr = 0 if predicted is None else predicted.shape[0]
    n_in = n_up + n_pr
    names = tuple(input_names) if input_names is not None else tuple(f"input[{k}]" for k in range(n_in))
    if len(names) != n_in:
        raise ForecastError(f"input_names must name all {n_in} upstream and predicted series")
    thresholds = np.zeros(0) if thresholds_m is None else np.asarray(thresholds_m, dtype=float).reshape(-1)

    # Fit origins: on the clock, each serving the forecast origins up to the next one.
    if refit_every_s is None:
        fit_index = origin_index.copy()
        serving = np.arange(origin_index.size)
    else:
        stride = max(int(round(refit_every_s / dt_s)), 1)
        clock = np.round(t_s[origin_index] / dt_s).astype(np.int64)
        # The latest grid time on the clock at or before each origin (but inside the record).
        fit_clock = (clock // stride) * stride
        fit_at = origin_index - (clock - fit_clock)
        fit_at = np.maximum(fit_at, 0)
        fit_index, serving = np.unique(fit_at, return_inverse=True)
    span_s = max(window_s, network_window_s) if n_in else window_s
    width = max(int(round(span_s / dt_s)), 2)
    horizon_steps = max(int(round(horizon_s / dt_s)), 1)
    # Inputs' routed changes reach back up to the longest travel time searched, and the features
    # at an origin about nine days (the 7-day mean, the tidal analogs).
    extra = int(round(MAX_LAG_H * 3600.0 / dt_s)) + horizon_steps if n_in else 0
    fit_width = width + extra
    upd_width = int(round(history_needed_s(dt_s, horizon_s) / dt_s))
    future = horizon_steps + 1 if n_pr else 0
    batch = max(_CELLS_PER_BATCH // (fit_width * (1 + n_in)), 1)

    n_orig = origin_index.size
    n_leads = int(np.floor(horizon_s / step_s + 1e-9))
    out = {
        name: np.full((n_orig, n_leads), np.nan)
        for name in ("median_m", "lower_m", "upper_m", "tide_m")
    }
    exceed = np.full((n_orig, thresholds.size, n_leads), np.nan)
    crossing = np.full((n_orig, thresholds.size), np.nan)
    last_level = np.full(n_orig, np.nan)
    last_obs = np.full(n_orig, np.nan)
    tide_at_last = np.full(n_orig, np.nan)
    model_names: list[str] = [""] * n_orig
    inputs_used: list[str] = [""] * n_orig
    lag_h = np.full((fit_index.size, n_in), np.nan)
    lag_status = np.full((fit_index.size, n_in), -1, dtype=np.int64)
    done = 0

    def windows(idx: np.ndarray, back: int, ahead: int = 0) -> tuple[np.ndarray, np.ndarray]:
        cols = idx[:, None] + np.arange(-(back - 1), 1 + ahead)[None, :]
        return cols, (cols >= 0) & (cols < n_times)

    def take(series: np.ndarray, cols: np.ndarray, inside: np.ndarray) -> np.ndarray:
        return np.where(inside, series[np.clip(cols, 0, n_times - 1)], np.nan)

    def gather_inputs(
        idx: np.ndarray, back: int
    ) -> tuple[np.ndarray | None, list | None, np.ndarray | None, list | None]:
        up = up_of = pr = pr_of = None
        if upstream is not None and n_up:
            cols, inside = windows(idx, back)
            up = np.concatenate([take(upstream[k], cols, inside)[:, None] for k in range(n_up)], axis=1)
            up = up.reshape(idx.size * n_up, back)
            up_of = (np.arange(idx.size)[:, None] * n_up + np.arange(n_up)[None, :]).tolist()
        if predicted is not None and n_pr:
            cols, inside = windows(idx, back, future)
            pr_cols = np.clip(cols, 0, predicted.shape[1] - 1)
            pr_inside = (cols >= 0) & (cols < predicted.shape[1])
            pr = np.stack([np.where(pr_inside, predicted[k][pr_cols], np.nan) for k in range(n_pr)], axis=1)
            pr = pr.reshape(idx.size * n_pr, back + future)
            pr_of = (np.arange(idx.size)[:, None] * n_pr + np.arange(n_pr)[None, :]).tolist()
        return up, up_of, pr, pr_of

    for f0 in range(0, fit_index.size, batch):
        fidx = fit_index[f0 : f0 + batch]
        cols, inside = windows(fidx, fit_width)
        y = take(level_m, cols, inside)
        rain = None if rain_mm is None else take(rain_mm, cols, inside)
        rel_t = (np.arange(fit_width) - (fit_width - 1)) * dt_s  # each window ends at its own origin, time 0
        up, up_of, pr, pr_of = gather_inputs(fidx, fit_width)
        model = fit(
            rel_t, y, rain, origin_s=0.0, horizon_s=horizon_s, window_s=window_s, max_rows=max_rows,
            network_window_s=network_window_s,
            upstream_m=up, upstream_of=up_of, predicted_m=pr, predicted_of=pr_of,
            input_names=_input_row_names(names, n_up, n_pr, fidx.size),
        )
        _record_lags(model, lag_h[f0 : f0 + fidx.size], lag_status[f0 : f0 + fidx.size], n_in, dt_s)
        # The forecast origins these fits serve, in batches of their own.
        served = np.nonzero((serving >= f0) & (serving < f0 + fidx.size))[0]
        parts: list[tuple[np.ndarray, ForecastModel | None]]
        if refit_every_s is None:
            parts = [(served, model)]
        else:
            o_batch = max(_CELLS_PER_BATCH // (upd_width * (1 + n_in)), 1)
            parts = [(served[i : i + o_batch], None) for i in range(0, served.size, o_batch)]
        for rows, direct in parts:
            if rows.size == 0:
                continue
            if direct is None:
                oidx = origin_index[rows]
                fit_rows = serving[rows] - f0
                moved = _serve(model, fit_rows, (t_s[oidx] - t_s[fit_index[serving[rows]]]), n_up, n_pr)
                cols, inside = windows(oidx, upd_width)
                rel = (np.arange(upd_width) - (upd_width - 1)) * dt_s
                up, up_of, pr, pr_of = gather_inputs(oidx, upd_width)
                moved = update(
                    moved, rel, take(level_m, cols, inside),
                    None if rain_mm is None else take(rain_mm, cols, inside), origin_s=0.0,
                    upstream_m=up, upstream_of=up_of, predicted_m=pr, predicted_of=pr_of,
                )
            else:
                moved = direct
            fc = predict(
                moved, thresholds_m=np.broadcast_to(thresholds, (rows.size, thresholds.size)),
                horizon_s=horizon_s, step_s=step_s,
            )
            out["median_m"][rows] = fc.median_m
            out["lower_m"][rows] = fc.lower_m
            out["upper_m"][rows] = fc.upper_m
            out["tide_m"][rows] = predict_tide(moved.tide, fc.t_s)
            exceed[rows] = fc.exceed_prob
            crossing[rows] = fc.first_crossing_s + t_s[origin_index[rows]][:, None]
            last_level[rows] = moved.last_level_m
            last_obs[rows] = moved.last_obs_s + t_s[origin_index[rows]]
            tide_at_last[rows] = predict_tide(moved.tide, np.nan_to_num(moved.last_obs_s)[:, None])[:, 0]
            for j, r in enumerate(rows):  # labels of this batch, no maths
                model_names[r] = moved.model_name[j]
                inputs_used[r] = moved.inputs_used[j] if moved.inputs_used else ""
            done += rows.size
            if progress is not None:
                progress(done, n_orig)

    return RollingForecasts(
        origins_s=t_s[origin_index],
        fitted_s=t_s[fit_index[serving]],
        lead_s=step_s * np.arange(1, n_leads + 1),
        median_m=out["median_m"],
        lower_m=out["lower_m"],
        upper_m=out["upper_m"],
        exceed_prob=exceed,
        first_crossing_s=crossing,
        last_level_m=last_level,
        last_obs_s=last_obs,
        tide_m=out["tide_m"],
        tide_at_last_m=tide_at_last,
        model_name=tuple(model_names),
        inputs_used=tuple(inputs_used),
        lag_h=lag_h,
        lag_status=lag_status,
        input_names=names,
        n_fits=int(fit_index.size),
    )


def _input_row_names(names: tuple[str, ...], n_up: int, n_pr: int, n_rows: int) -> list[str] | None:
    """Names of a batch's input rows: every origin's upstream series, then every origin's predicted ones."""
    if not n_up + n_pr:
        return None
    return [names[k] for _ in range(n_rows) for k in range(n_up)] + [
        names[n_up + k] for _ in range(n_rows) for k in range(n_pr)
    ]


def _record_lags(model: ForecastModel, lag_h: np.ndarray, status: np.ndarray, n_in: int, dt_s: float) -> None:
    """Each fit row's travel time and lag-search status per input, in input order."""
    fit_ = model.residual
    if not n_in or not fit_.links.shape[1]:
        return
    rows = np.nonzero(fit_.net_row >= 0)[0]
    for k in range(fit_.links.shape[1]):  # a few links, not origins
        n = fit_.net_row[rows]
        link = fit_.links[n, k]
        ok = link >= 0
        # Every origin reads every input, upstream then predicted: link k is input k.
        lag_h[rows[ok], k] = np.where(fit_.status[n[ok], k] == 0, fit_.lag_steps[n[ok], k] * dt_s / 3600.0, np.nan)
        status[rows[ok], k] = fit_.status[n[ok], k]


def _serve(model: ForecastModel, fit_rows: np.ndarray, shift_s: np.ndarray, n_up: int, n_pr: int) -> ForecastModel:
    """Copies of fit rows, one per forecast origin, on each origin's own time axis (time 0 there)."""
    moved = take_stations(model, fit_rows)
    moved = replace(moved, tide=retime_tide(moved.tide, shift_s), fitted_s=moved.fitted_s - shift_s)
    n_in = n_up + n_pr
    if not n_in or model.input_tide is None:
        return moved
    n_fit = model.n_stations
    # Input rows of the fit batch: upstream (fit row * n_up + j), then predicted (after all upstream).
    up_rows = (fit_rows[:, None] * n_up + np.arange(n_up)[None, :]).reshape(-1)
    pr_rows = (n_fit * n_up + fit_rows[:, None] * n_pr + np.arange(n_pr)[None, :]).reshape(-1)
    in_rows = np.concatenate([up_rows, pr_rows])
    in_shift = np.concatenate([np.repeat(shift_s, n_up), np.repeat(shift_s, n_pr)])
    input_tide = retime_tide(_take_tide(model.input_tide, in_rows), in_shift)
    # The copies read the update batch's inputs, laid out the same way.
    n = fit_rows.size
    new_links = np.concatenate(
        [np.arange(n)[:, None] * n_up + np.arange(n_up)[None, :],
         n * n_up + np.arange(n)[:, None] * n_pr + np.arange(n_pr)[None, :]], axis=1
    )
    res = moved.residual
    res = replace(res, links=new_links[np.nonzero(res.net_row >= 0)[0]])
    return replace(
        moved, residual=res, input_tide=input_tide, input_tidal=model.input_tidal[in_rows],
        input_predicted=model.input_predicted[in_rows], input_last_s=model.input_last_s[in_rows],
        input_names=tuple(model.input_names[i] for i in in_rows),
    )


def lag_summary(result: RollingForecasts) -> dict[str, dict]:
    """Per input: the travel times the fits chose (median, 10th and 90th percentile, hours), how
    often the input was used, and why it was not."""
    out: dict[str, dict] = {}
    for k, name in enumerate(result.input_names):  # a few inputs
        lags = result.lag_h[:, k]
        status = result.lag_status[:, k]
        used = np.isfinite(lags)
        entry: dict = {"fits": int(status.size), "used": int(used.sum())}
        if used.any():
            entry.update(
                median_h=round(float(np.median(lags[used])), 2),
                p10_h=round(float(np.percentile(lags[used], 10)), 2),
                p90_h=round(float(np.percentile(lags[used], 90)), 2),
            )
        reasons: dict[str, int] = {}
        for code in np.unique(status[~used & (status >= 0)]):
            reasons[STATUS_TEXT.get(int(code), str(code))] = int(np.count_nonzero(status == code))
        if reasons:
            entry["not_used"] = reasons
        out[name] = entry
    return out


__all__ = ["RollingForecasts", "describe_inputs", "lag_summary", "rolling_forecasts"]
