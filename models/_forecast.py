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

A station whose model reads its upstream gauges or predicted series at some
lead adds ``+upstream`` / ``+predicted`` (``tide+arx+upstream``), and
``Forecast.inputs_used`` says which inputs served, at what travel time, and
which could not (late, missing, no useful lag).

Fit once, predict often: :func:`fit` is the expensive part (a month of
history, every candidate scored on a holdout); :func:`update` moves a fitted
model to a newer origin from the last days of data alone (the features at the
new origin, the stored coefficients), and :func:`predict` forecasts from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from scipy.special import erfc
from threadpoolctl import threadpool_limits

from floodwatch.errors import ForecastError
from floodwatch.models._arrays import last_valid_index, nan_quantiles
from floodwatch.models._network import (
    INPUT_MAX_GAP_S,
    SMOOTH_S,
    STATUS_TEXT,
    STATUS_USED,
    Inputs,
    check_inputs,
    forward_fill,
    smooth,
)
from floodwatch.models._residual import (
    CHOICE_ARX_RAIN,
    CHOICE_NETWORK,
    CHOICE_NETWORK_RAIN,
    CHOICE_PERSISTENCE,
    MAX_ROWS,
    NetworkData,
    anchor_steps,
    ResidualFit,
    ResidualState,
    apply_at_origin,
    fit_residual,
    history_needed_steps,
    origin_features,
)
from floodwatch.models._tide import TideFit, fit_tide, leave_block_out_residual, predict_tide, retime_tide

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_WINDOW_S = 30 * 86_400.0
"""Fit window: the last 30 days before the origin."""

NETWORK_WINDOW_S = 60 * 86_400.0
"""Fit window of stations that read upstream gauges or predicted series: their models weigh
several inputs, and a month holds too few flood waves to tell them apart."""

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
# The per-block dataclasses _concat joins (ForecastModel and the dataclasses it holds).
D = TypeVar("D", bound="DataclassInstance")


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
    inputs_used : tuple of str, (S,)
        Per station, the upstream gauges and predicted series the forecast read
        (with their travel times) and those it could not, and why; "" for a
        station with none configured. Empty for forecasts made without inputs.
    """

    t_s: np.ndarray
    median_m: np.ndarray
    lower_m: np.ndarray
    upper_m: np.ndarray
    exceed_prob: np.ndarray
    first_crossing_s: np.ndarray
    rise_rate_cm_per_h: np.ndarray
    model_name: tuple[str, ...]
    inputs_used: tuple[str, ...] = ()


@dataclass(frozen=True)
class ForecastModel:
    """A fitted forecaster of S stations and its state at one origin: everything ``predict`` needs.

    The fitted part (``tide``, ``residual``, ``step_sigma_m``, ``seen_m_per_h``, the
    inputs' tide) changes only when :func:`fit` runs; :func:`update` moves the state
    (the fields from ``origin_s`` on) to a newer origin.

    Attributes
    ----------
    dt_s : float
        Grid step of the history, seconds.
    tide : TideFit
        Harmonic fit (``tide.explained`` says how tidal each station is).
    uses_tide : ndarray of bool, (S,)
        Stations whose forecast includes the harmonics.
    residual : ResidualFit
        Residual model coefficients at anchor leads counted from each station's last observation.
    fitted_s : ndarray, (S,)
        When each station's model was fitted (the fit's origin), UTC epoch seconds.
    step_sigma_m : ndarray, (S,)
        Spread of one-step residual changes, for leads without out-of-sample errors.
    seen_m_per_h : ndarray, (S,)
        Fastest hourly residual change in the fit's window before its last 6 h.
    input_tide : TideFit or None
        Harmonic fit of each input series (U), for reading tidal inputs as residuals.
    input_tidal : ndarray of bool, (U,)
        Input series read minus their tide.
    input_predicted : ndarray of bool, (U,)
        Predicted series (known ahead), as opposed to observed ones.
    input_names : tuple of str, (U,)
    origin_s : float
        Forecast origin, UTC epoch seconds (no data after it was read).
    state : ResidualState
        The residual model applied at the origin.
    last_obs_s : ndarray, (S,)
        Time of each station's last valid observation; NaN if none.
    last_level_m : ndarray, (S,)
        That observation, metres.
    last_residual_m : ndarray, (S,)
        Level minus tide at that time, metres.
    unseen_trend_m_per_h : ndarray, (S,)
        The residual's rate of change over the last hour where it is faster than any
        earlier hourly change in the window before its last 6 h (a movement the model
        never saw), else 0.
    rise_rate_cm_per_h : ndarray, (S,)
    model_name : tuple of str, (S,)
    inputs_used : tuple of str, (S,)
    input_last_s : ndarray, (U,)
        Each input's last value at or before the origin (the last announced one for a
        predicted series), UTC epoch seconds; NaN if none.
    """

    dt_s: float
    tide: TideFit
    uses_tide: np.ndarray
    residual: ResidualFit
    fitted_s: np.ndarray
    step_sigma_m: np.ndarray
    seen_m_per_h: np.ndarray
    input_tide: TideFit | None
    input_tidal: np.ndarray
    input_predicted: np.ndarray
    input_names: tuple[str, ...]
    origin_s: float
    state: ResidualState
    last_obs_s: np.ndarray
    last_level_m: np.ndarray
    last_residual_m: np.ndarray
    unseen_trend_m_per_h: np.ndarray
    rise_rate_cm_per_h: np.ndarray
    model_name: tuple[str, ...]
    inputs_used: tuple[str, ...]
    input_last_s: np.ndarray

    @property
    def n_stations(self) -> int:
        return self.last_level_m.shape[0]


def _check_inputs(
    t_s: np.ndarray, level_m: np.ndarray, rain_mm: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t_s = np.asarray(t_s, dtype=float)
    # Single precision is kept as given (10,000 stations x a month is 170 MB instead of 350 MB);
    # each block of stations is computed in double precision.
    level_m = _floats(level_m)
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
        rain_mm = _floats(rain_mm)
        if rain_mm.shape != level_m.shape:
            raise ForecastError(
                f"rain_mm must have the shape of level_m {level_m.shape}, got {rain_mm.shape}"
            )
        if np.any(rain_mm < 0):
            raise ForecastError("rain_mm must not be negative (mm fallen per step); check the rain gauge QC")
    return t_s, level_m, rain_mm


def _floats(values) -> np.ndarray:
    arr = np.asarray(values)
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(float)


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


def _trend_and_seen(t_s: np.ndarray, residual_m: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The last ``window_s``'s trend (m/h, signed) and the fastest change over as long in the window
    before its last ``UNSEEN_TREND_MAX_H`` (m/h; +inf when the window is too short to say, -inf when
    nothing was observed there)."""
    t_s = np.asarray(t_s, dtype=float)
    n_times = t_s.size
    dt_s = float(t_s[1] - t_s[0]) if n_times > 1 else window_s
    lag = max(int(round(window_s / dt_s)), 1)
    trend = np.nan_to_num(rise_rate_cm_per_h(t_s, residual_m, window_s) / 100.0)
    # Every earlier change over the same span that ended before the recent stretch: the
    # first hours of a new regime (a flood's rise) stay news for UNSEEN_TREND_MAX_H.
    recent = max(int(round(UNSEEN_TREND_MAX_H * 3600.0 / dt_s)), lag)
    if n_times <= recent + lag:
        return trend, np.full(residual_m.shape[0], np.inf)
    earlier = np.abs(residual_m[:, lag : n_times - recent] - residual_m[:, : n_times - recent - lag])
    seen = np.nanmax(np.where(np.isfinite(earlier), earlier, -np.inf), axis=1) * 3600.0 / (lag * dt_s)
    return trend, seen


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
    trend, seen = _trend_and_seen(t_s, residual_m, window_s)
    return np.where(np.abs(trend) > seen, trend, 0.0)


def fit(
    t_s: np.ndarray,
    level_m: np.ndarray,
    rain_mm: np.ndarray | None = None,
    *,
    origin_s: float | None = None,
    horizon_s: float = 72 * 3600.0,
    window_s: float = DEFAULT_WINDOW_S,
    max_rows: int = MAX_ROWS,
    upstream_m: np.ndarray | None = None,
    upstream_of=None,
    predicted_m: np.ndarray | None = None,
    predicted_of=None,
    input_names=None,
    input_tide: TideFit | None = None,
    network_window_s: float = NETWORK_WINDOW_S,
    stale_allowance_s: float | None = None,
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
    upstream_m : ndarray, (U1, T), optional
        Observed series of other gauges on the same grid (levels, or discharges:
        only their changes are read); NaN where missing. Values after the origin
        are never read.
    upstream_of : sequence of sequences of int, or ndarray of int (S, K1)
        Rows of ``upstream_m`` each station may read (-1 pads an array). Their
        travel times are chosen from the data; see ``inputs_used`` of the result.
    predicted_m : ndarray, (U2, T2), optional
        Predicted series (values known ahead: a tide table, an announced release)
        on the grid continued past its end, ``T2 >= T`` (column ``j`` is at
        ``t_s[0] + j * dt``); NaN where nothing was predicted.
    predicted_of : like ``upstream_of``, for ``predicted_m``.
    input_names : sequence of str, optional
        Names of the upstream series then the predicted ones, for ``inputs_used``.
    input_tide : TideFit, optional
        The inputs' harmonic fit to read them by (a refit of some stations reuses the
        daily fit's); fitted on the window when None.
    network_window_s : float
        Stations that read inputs are fitted on ``(origin - max(window_s, network_window_s),
        origin]`` with proportionally more rows: their models weigh several gauges, and a
        month holds too few flood waves to tell them apart (:data:`NETWORK_WINDOW_S`).
    stale_allowance_s : float, optional
        How long a gauge may have been silent with its leads still modelled, seconds (at most a
        day). By default the stalest station of this call decides; fits that :func:`combine`
        joins must share it (their lead anchors must match), so the forecast job passes a day.

    Returns
    -------
    ForecastModel

    Raises
    ------
    ForecastError
        If shapes, the grid or the links break the rules above.
    """
    t_s, level_m, rain_mm = _check_inputs(t_s, level_m, rain_mm)
    inputs = check_inputs(level_m.shape[0], t_s.size, upstream_m, upstream_of, predicted_m, predicted_of, input_names)
    origin_s = float(t_s[-1]) if origin_s is None else float(origin_s)
    if horizon_s <= 0 or window_s <= 0:
        raise ForecastError(f"horizon_s and window_s must be positive, got {horizon_s}, {window_s}")
    window = _window(t_s, origin_s, window_s)
    dt_s = _grid_step(t_s)
    observed = np.isfinite(level_m[:, window])
    last = last_valid_index(observed)
    has = last >= 0
    # Leads count from each station's last observation; a stale gauge needs longer
    # ones (up to a day of staleness is modelled, beyond that the last anchor holds).
    stale_s = float(np.max(origin_s - t_s[window][last[has]], initial=0.0))
    if stale_allowance_s is not None:
        stale_s = float(stale_allowance_s)
    max_lead_s = horizon_s + min(stale_s, 86_400.0)
    linked = np.zeros(level_m.shape[0], dtype=bool) if inputs is None else np.any(inputs.links >= 0, axis=1)
    groups = [(np.nonzero(~linked)[0], window_s, max_rows)]
    if linked.any():
        # Stations with inputs: a longer window, rows as dense as the others'.
        long_s = max(window_s, network_window_s)
        groups = [groups[0], (np.nonzero(linked)[0], long_s, int(round(max_rows * long_s / window_s)))]
    # The state at the origin is read from the last days before it, exactly as update() reads it
    # (the fit window may be shorter or start elsewhere): a fit and an update at the same origin agree.
    state_win = _window(t_s, origin_s, history_needed_steps(anchor_steps(dt_s, max_lead_s), dt_s) * dt_s)
    input_window = _window(t_s, origin_s, max(g[1] for g in groups))
    network, input_tide, input_tidal, input_last_s = _prepare_inputs(
        inputs, t_s, input_window, origin_s, dt_s, input_tide
    )
    parts: list[ForecastModel] = []
    orders: list[np.ndarray] = []
    for stations, span_s, rows_max in groups:
        if stations.size == 0:
            continue
        win = _window(t_s, origin_s, span_s)
        t_w = t_s[win]
        net_group = None
        if network is not None and linked[stations].any():
            net_group = replace(network, inputs=network.inputs.take(stations), window_start=win.start)

        def fit_rows(i: int, stations=stations, win=win, t_w=t_w, net_group=net_group, rows_max=rows_max):
            sel = stations[i : i + _BLOCK]
            part = None if rain_mm is None else rain_mm[sel, win]
            net = None if net_group is None else replace(net_group, inputs=net_group.inputs.take(slice(i, i + _BLOCK)))
            state = (t_s[state_win], level_m[sel, state_win], None if rain_mm is None else rain_mm[sel, state_win],
                     None if net is None else replace(net, window_start=state_win.start))
            return _fit_block(t_w, level_m[sel, win], part, origin_s, dt_s, max_lead_s, rows_max, net, state)

        parts += _over_blocks(stations.size, fit_rows)
        orders.append(stations)
    model = parts[0] if len(parts) == 1 else _concat(parts)
    order = np.concatenate(orders)
    if not np.array_equal(order, np.arange(order.size)):
        model = take_stations(model, np.argsort(order))
    model = replace(
        model, input_tide=input_tide, input_tidal=input_tidal, input_last_s=input_last_s,
        input_predicted=inputs.future_known if inputs is not None else np.zeros(0, dtype=bool),
        input_names=inputs.names if inputs is not None else (),
    )
    return replace(model, inputs_used=describe_inputs(model))


def _grid_step(t_s: np.ndarray) -> float:
    return float(t_s[1] - t_s[0]) if t_s.size > 1 else 600.0


def _window(t_s: np.ndarray, origin_s: float, window_s: float) -> slice:
    """The grid's samples in ``(origin - window_s, origin]`` as a slice (a view, not a copy)."""
    in_window = (t_s <= origin_s + 1e-6) & (t_s > origin_s - window_s)
    if not in_window.any():
        in_window = t_s <= origin_s + 1e-6
    if not in_window.any():
        raise ForecastError(f"origin_s {origin_s} is before the first grid time {t_s[0]}")
    inside = np.nonzero(in_window)[0]
    return slice(int(inside[0]), int(inside[-1]) + 1)


def _prepare_inputs(
    inputs: Inputs | None,
    t_s: np.ndarray,
    window: slice,
    origin_s: float,
    dt_s: float,
    input_tide: TideFit | None,
) -> tuple[NetworkData | None, TideFit | None, np.ndarray, np.ndarray]:
    """The inputs as the residual model reads them: observed ones cut at the origin and, if
    tidal, minus their tide (fitted on the window unless given), carried over short gaps."""
    if inputs is None:
        return None, input_tide, np.zeros(0, dtype=bool), np.zeros(0)
    values = inputs.values.copy()
    t_in = t_s[0] + dt_s * np.arange(values.shape[1])
    observed_rows = ~inputs.future_known
    # An observed series has nothing after the origin (a backtest's record does: never read it).
    values[np.ix_(observed_rows, t_in > origin_s + 1e-6)] = np.nan
    with np.errstate(all="ignore"):
        if input_tide is None:
            input_tide = fit_tide(t_s[window], values[:, window], ref_s=origin_s)
        tidal = (
            input_tide.active.any(axis=1) & (input_tide.explained >= TIDE_MIN_EXPLAINED) & observed_rows
        )
        if tidal.any():
            rows = np.nonzero(tidal)[0]
            sub = TideFit(**{f.name: getattr(input_tide, f.name) if f.name in ("ref_s", "names", "freq_cph")
                             else getattr(input_tide, f.name)[rows] for f in fields(input_tide)})
            values[rows] -= predict_tide(sub, t_in)
    unsmoothed = forward_fill(values, max(int(round(INPUT_MAX_GAP_S / dt_s)), 1))
    filled = smooth(unsmoothed, max(int(round(SMOOTH_S / dt_s)), 1))
    seen = np.isfinite(values)
    last = last_valid_index(seen)
    last_s = np.where(last >= 0, t_in[np.maximum(last, 0)], np.nan)
    network = NetworkData(inputs=inputs, filled=filled, window_start=window.start, unsmoothed=unsmoothed)
    return network, input_tide, tidal, last_s


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


def _concat(parts: Sequence[D]) -> D:
    """Join per-block dataclasses along the station axis; shared fields are taken from the first."""
    first = parts[0]
    values: dict[str, object] = {}
    for field in fields(first):
        items = [getattr(p, field.name) for p in parts]
        if field.name in _SHARED_FIELDS or items[0] is None:
            values[field.name] = items[0]
        elif field.name == "available":
            width = max(item.shape[1] for item in items)
            padded = []
            for item in items:  # blocks, not stations: pad the links axis to the widest
                out = np.ones((item.shape[0], width, item.shape[2]), dtype=bool)
                out[:, : item.shape[1]] = item
                padded.append(out)
            values[field.name] = np.concatenate(padded, axis=0)
        elif isinstance(items[0], ResidualFit):
            values[field.name] = ResidualFit.concat(items)
        elif is_dataclass(items[0]):
            values[field.name] = _concat(items)
        elif field.name in ("model_name", "inputs_used"):
            values[field.name] = tuple(name for item in items for name in item)
        else:
            values[field.name] = np.concatenate(items, axis=0)
    return replace(first, **values)


_SHARED_FIELDS = {
    "origin_s", "dt_s", "ref_s", "names", "freq_cph", "lead_steps", "input_tide", "input_tidal", "input_names",
    "input_predicted", "input_last_s",
}


def _fit_block(
    t_w: np.ndarray,
    y: np.ndarray,
    rain: np.ndarray | None,
    origin_s: float,
    dt_s: float,
    max_lead_s: float,
    max_rows: int,
    network: NetworkData | None = None,
    state: tuple[np.ndarray, np.ndarray, np.ndarray | None, NetworkData | None] | None = None,
) -> ForecastModel:
    """Fit one block of stations on its window; ``state`` is (t, levels, rain, network) of the
    last days before the origin, where the state is read (the fit's own window by default)."""
    y = np.asarray(y, dtype=float)
    rain = None if rain is None else np.asarray(rain, dtype=float)
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
        # The residual model learns from what a forecast faces: tide-fit errors outside the
        # fit. Each tenth of the window (but the last, which holds the origin) gets the
        # residual of a fit without it; gappy records (Gram approximated) keep their own.
        few_gaps = observed.sum(axis=1) >= (1.0 - LBO_MAX_MISSING) * t_w.size
        resid_train = leave_block_out_residual(tide, t_w, residual, LBO_BLOCKS, uses_tide & few_gaps)
        res, _ = fit_residual(
            resid_train, rain, dt_s=dt_s, max_lead_s=max_lead_s, tide_m=tide_ext, tidal=uses_tide,
            max_rows=max_rows, network=network,
        )
        steps = np.diff(residual, axis=1)
        stepped = ~np.isnan(steps)
        n_steps = stepped.sum(axis=1)
        np.copyto(steps, 0.0, where=~stepped)
        step_sigma = np.sqrt(np.einsum("st,st->s", steps, steps) / np.where(n_steps > 0, n_steps, np.nan))
        _, seen = _trend_and_seen(t_w, residual, RATE_WINDOW_S)
    # The forecast starts from the same state :func:`update` would compute at this origin from
    # the same data: one path for every forecast, whether the fit is a minute or a day old.
    if state is None:
        need = history_needed_steps(res.lead_steps, dt_s)
        cut = max(t_w.size - need, 0)
        net = None if network is None else replace(network, window_start=network.window_start + cut)
        state = (t_w[cut:], y[:, cut:], None if rain is None else rain[:, cut:], net)
    t_recent, y_recent, rain_recent, net_recent = state
    y_recent, residual_recent, origin_state = _origin_state(
        dt_s, tide, uses_tide, res, t_recent, y_recent, rain_recent, net_recent
    )
    fitted = ForecastModel(
        dt_s=dt_s, tide=tide, uses_tide=uses_tide, residual=res,
        fitted_s=np.full(n_stations, origin_s), step_sigma_m=step_sigma, seen_m_per_h=seen,
        input_tide=None, input_tidal=np.zeros(0, dtype=bool), input_predicted=np.zeros(0, dtype=bool),
        input_names=(), origin_s=origin_s, state=origin_state,
        last_obs_s=np.zeros(n_stations), last_level_m=np.zeros(n_stations), last_residual_m=np.zeros(n_stations),
        unseen_trend_m_per_h=np.zeros(n_stations), rise_rate_cm_per_h=np.zeros(n_stations),
        model_name=(), inputs_used=(), input_last_s=np.zeros(0),
    )
    return _with_origin(fitted, t_recent, y_recent, residual_recent, origin_state, origin_s)


def _state_at(
    model: ForecastModel,
    t_w: np.ndarray,
    y: np.ndarray,
    rain: np.ndarray | None,
    network: NetworkData | None,
    origin_s: float,
) -> ForecastModel:
    """A fitted block's state at the end of a recent window (``history_needed_steps`` long)."""
    y, residual, state = _origin_state(model.dt_s, model.tide, model.uses_tide, model.residual, t_w, y, rain, network)
    return _with_origin(model, t_w, y, residual, state, origin_s)


def _origin_state(
    dt_s: float,
    tide: TideFit,
    uses_tide: np.ndarray,
    fit: ResidualFit,
    t_w: np.ndarray,
    y: np.ndarray,
    rain: np.ndarray | None,
    network: NetworkData | None,
) -> tuple[np.ndarray, np.ndarray, ResidualState]:
    """The residual model applied at the end of a recent window, from the fitted parts alone (a
    fresh fit has no state yet). Returns the levels as floats (S, T), their residual from the
    tide (S, T), metres, and the state."""
    y = np.asarray(y, dtype=float)
    rain = None if rain is None else np.asarray(rain, dtype=float)
    leads = fit.lead_steps
    t_ext = np.concatenate([t_w, t_w[-1] + dt_s * np.arange(1, int(leads[-1]) + 2)])
    with np.errstate(all="ignore"):
        tide_ext = predict_tide(tide, t_ext, harmonics=uses_tide, single=True)
        residual = y - tide_ext[:, : t_w.size]
        x_raw, ok = origin_features(residual, rain, tide_ext, uses_tide, fit, dt_s, network)
        state = apply_at_origin(fit, x_raw, ok)
    return y, residual, state


def _with_origin(
    model: ForecastModel, t_w: np.ndarray, y: np.ndarray, residual: np.ndarray, state: ResidualState, origin_s: float
) -> ForecastModel:
    """The model's state at the window's end: last observations, trends, names."""
    n_stations = y.shape[0]
    with np.errstate(all="ignore"):
        last = last_valid_index(np.isfinite(y))
        rows = np.arange(n_stations)
        has = last >= 0
        last_obs_s = np.where(has, t_w[np.maximum(last, 0)], np.nan)
        last_level = np.where(has, y[rows, np.maximum(last, 0)], np.nan)
        last_res = np.where(has, residual[rows, np.maximum(last, 0)], np.nan)
        rate = rise_rate_cm_per_h(t_w, y)
        # The fit remembers the fastest change in its window; only what came after needs reading.
        since = float(np.nanmax(origin_s - model.fitted_s, initial=0.0)) + (UNSEEN_TREND_MAX_H + 2.0) * 3600.0
        recent = t_w > t_w[-1] - since
        trend, seen = _trend_and_seen(t_w[recent], residual[:, recent], RATE_WINDOW_S)
        seen = np.fmax(seen, model.seen_m_per_h)
        unseen = np.where(np.abs(trend) > seen, trend, 0.0)
    return replace(
        model, origin_s=origin_s, state=state, last_obs_s=last_obs_s, last_level_m=last_level,
        last_residual_m=last_res, unseen_trend_m_per_h=unseen, rise_rate_cm_per_h=rate,
        model_name=_model_names(state, model.uses_tide, has, model.residual),
    )


def _model_names(state: ResidualState, uses_tide: np.ndarray, has: np.ndarray, fit: ResidualFit) -> tuple[str, ...]:
    choice = state.choice[:, 1:]
    arx = np.any(choice > CHOICE_PERSISTENCE, axis=1)
    rain = np.any((choice == CHOICE_ARX_RAIN) | (choice == CHOICE_NETWORK_RAIN), axis=1)
    network = np.any(choice >= CHOICE_NETWORK, axis=1)
    names = []
    for s in range(has.size):  # labels only, no maths
        if not has[s]:
            names.append("no-data")
            continue
        core = ("arx+rain" if rain[s] else "arx") if arx[s] else "persistence"
        name = f"tide+{core}" if uses_tide[s] else core
        if network[s]:
            name += "+upstream"
        names.append(name)
    return tuple(names)


def describe_inputs(model: ForecastModel) -> tuple[str, ...]:
    """Per station, in words: the inputs its forecast read (with travel times) and those it could
    not at some lead, and why; "" for a station without inputs."""
    fit = model.residual
    out = [""] * model.n_stations
    rows = np.nonzero(fit.net_row >= 0)[0]
    if not rows.size:
        return tuple(out)
    names = model.input_names
    leads_h = fit.lead_steps[1:] * model.dt_s / 3600.0
    for s in rows:  # text for the report, no maths
        n = fit.net_row[s]
        parts = []
        served = model.state.choice[s, 1:] >= CHOICE_NETWORK
        for k, link in enumerate(fit.links[n]):
            if link < 0:
                continue
            name = names[link] if link < len(names) else f"input[{link}]"
            status = int(fit.status[n, k])
            if status != STATUS_USED:
                best = fit.best_lag_steps[n, k] * model.dt_s / 3600.0
                corr = fit.correlation[n, k]
                why = STATUS_TEXT[status]
                if np.isfinite(corr):
                    why += f" (best correlation {corr:.2f} at {best:+g} h)"
                parts.append(f"{name}: not used, {why}")
                continue
            lag_h = fit.lag_steps[n, k] * model.dt_s / 3600.0
            avail = model.state.available[s, k, 1:]
            text = f"{name} (lag {lag_h:g} h)"
            if not avail.all():
                missing = leads_h[~avail]
                span = f"{missing.min():g}-{missing.max():g} h" if missing.size > 1 else f"{missing[0]:g} h"
                last_s = model.input_last_s[link] if link < model.input_last_s.size else np.nan
                predicted = link < model.input_predicted.size and bool(model.input_predicted[link])
                if predicted:
                    ahead = (last_s - model.origin_s) / 3600.0
                    reach = ("ends before the horizon" if not np.isfinite(ahead)
                             else f"ends {ahead:+.1f} h from the origin")
                    text += f" {reach}: used where it reaches, not at {span}"
                else:
                    age = (model.origin_s - last_s) / 3600.0
                    late = "no reading" if not np.isfinite(age) else f"last reading {age:.1f} h before the origin"
                    text += f" late ({late}): not used at {span}"
            elif not served.any():
                text += " read, not better than the gauge alone"
            parts.append(text)
        out[s] = "; ".join(parts)
    return tuple(out)


def history_needed_s(dt_s: float, horizon_s: float) -> float:
    """Seconds of history before an origin that :func:`update` reads for a model fitted for
    ``horizon_s`` on a ``dt_s`` grid (about ten days for 72 h): the 7-day mean, the tidal analogs
    behind the longest lead (the horizon plus up to a day a gauge may have been silent)."""
    return history_needed_steps(anchor_steps(dt_s, horizon_s + 86_400.0), dt_s) * dt_s


def combine(parts: Sequence[ForecastModel], rows: Sequence[np.ndarray]) -> ForecastModel:
    """One model from the models of disjoint sets of stations: row ``rows[j][k]`` of the result
    is station ``k`` of ``parts[j]`` (a daily fit and a refit of some of its stations; stations fitted
    on windows of different lengths). Tides are moved to the first part's reference time; the inputs'
    parts are taken from the first part that has them. Call :func:`update` before :func:`predict`:
    the parts' states may be at different origins."""
    ref = parts[0].tide.ref_s
    aligned = []
    for p in parts:
        if p.tide.ref_s != ref:
            tide = replace(retime_tide(p.tide, np.full(p.n_stations, ref - p.tide.ref_s)), ref_s=ref)
            p = replace(p, tide=tide)
        aligned.append(p)
    for p in aligned[1:]:
        if not np.array_equal(p.residual.lead_steps, aligned[0].residual.lead_steps):
            raise ForecastError(
                "combine needs parts fitted for the same leads; fit them with the same horizon_s and "
                "stale_allowance_s"
            )
    with_inputs = next((p for p in aligned if p.input_tide is not None), aligned[0])
    merged = aligned[0] if len(aligned) == 1 else _concat(aligned)
    merged = replace(merged, **{name: getattr(with_inputs, name) for name in (
        "input_tide", "input_tidal", "input_predicted", "input_names", "input_last_s")})
    order = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    if order.size != merged.n_stations or not np.array_equal(np.sort(order), np.arange(order.size)):
        raise ForecastError("combine needs each station of the result exactly once")
    return take_stations(merged, np.argsort(order))


def update(
    model: ForecastModel,
    t_s: np.ndarray,
    level_m: np.ndarray,
    rain_mm: np.ndarray | None = None,
    *,
    origin_s: float | None = None,
    upstream_m: np.ndarray | None = None,
    upstream_of=None,
    predicted_m: np.ndarray | None = None,
    predicted_of=None,
) -> ForecastModel:
    """Move a fitted model to a newer origin: new features, stored coefficients.

    Only the last days of data are read (what the features look back over, about
    nine days); a month-long history may be passed and is cut. The tide, the
    coefficients, the travel times and the errors stay as fitted.

    Parameters
    ----------
    model : ForecastModel
        From :func:`fit` on the same stations (in the same order) and the same links.
    t_s, level_m, rain_mm, upstream_m, upstream_of, predicted_m, predicted_of
        As for :func:`fit`, ending at (or after) the new origin.
    origin_s : float, optional
        The new origin; defaults to the last grid time.

    Returns
    -------
    ForecastModel
        The same fit, its state at ``origin_s``.
    """
    t_s, level_m, rain_mm = _check_inputs(t_s, level_m, rain_mm)
    n_stations = level_m.shape[0]
    if n_stations != model.n_stations:
        raise ForecastError(
            f"level_m has {n_stations} stations but the model was fitted on {model.n_stations}; "
            "update with the fitted stations in their order, or fit again"
        )
    dt_s = _grid_step(t_s)
    if abs(dt_s - model.dt_s) > 1e-6 * model.dt_s:
        raise ForecastError(f"the grid step {dt_s:g} s differs from the fitted model's {model.dt_s:g} s; fit again")
    inputs = check_inputs(n_stations, t_s.size, upstream_m, upstream_of, predicted_m, predicted_of, model.input_names
                          or None)
    _check_same_links(model, inputs)
    origin_s = float(t_s[-1]) if origin_s is None else float(origin_s)
    leads = model.residual.lead_steps
    window = _window(t_s, origin_s, history_needed_steps(leads, dt_s) * dt_s)
    t_w = t_s[window]
    y = level_m[:, window]
    rain = None if rain_mm is None else rain_mm[:, window]
    network, _, _, input_last_s = _prepare_inputs(inputs, t_s, window, origin_s, dt_s, model.input_tide)

    def update_rows(i: int) -> ForecastModel:
        rows = slice(i, i + _BLOCK)
        part = take_stations(model, np.arange(n_stations)[rows])
        net = None if network is None else replace(network, inputs=network.inputs.take(rows))
        return _state_at(part, t_w, y[rows], None if rain is None else rain[rows], net, origin_s)

    blocks = _over_blocks(n_stations, update_rows)
    moved = blocks[0] if len(blocks) == 1 else _concat(blocks)
    # The fitted parts stay the model's own (the blocks only computed the state).
    fitted = {name: getattr(model, name) for name in (
        "tide", "uses_tide", "residual", "fitted_s", "step_sigma_m", "seen_m_per_h", "input_tide", "input_tidal",
        "input_predicted", "input_names")}
    moved = replace(moved, **fitted, input_last_s=input_last_s)
    return replace(moved, inputs_used=describe_inputs(moved))


def _check_same_links(model: ForecastModel, inputs: Inputs | None) -> None:
    fit = model.residual
    rows = np.nonzero(fit.net_row >= 0)[0]
    if inputs is None:
        if rows.size:
            raise ForecastError(
                "the model was fitted with upstream/predicted inputs: pass the same series and links to update"
            )
        return
    stored = np.full((model.n_stations, fit.links.shape[1]), -1, dtype=np.int64)
    stored[rows] = fit.links[fit.net_row[rows]]
    given = inputs.links
    width = max(stored.shape[1], given.shape[1])
    a = np.full((model.n_stations, width), -1)
    b = np.full((model.n_stations, width), -1)
    a[:, : stored.shape[1]] = stored
    b[:, : given.shape[1]] = given
    if not np.array_equal(a, b):
        s = int(np.nonzero((a != b).any(axis=1))[0][0])
        raise ForecastError(
            f"station {s} reads inputs {b[s][b[s] >= 0].tolist()} but was fitted with {a[s][a[s] >= 0].tolist()}; "
            "the links changed: fit again"
        )


def take_stations(model: ForecastModel, rows: np.ndarray) -> ForecastModel:
    """The model of a subset (or a repetition) of its stations, in that order; shared parts kept."""
    rows = np.asarray(rows, dtype=np.int64)

    def pick(value, name: str):
        if name in _SHARED_FIELDS or value is None:
            return value
        if isinstance(value, ResidualFit):
            return value.take(rows)
        if is_dataclass(value) and not isinstance(value, type):
            return replace(value, **{f.name: pick(getattr(value, f.name), f.name) for f in fields(value)})
        if name in ("model_name", "inputs_used"):
            return tuple(value[i] for i in rows) if len(value) else value
        return value[rows]

    return replace(model, **{f.name: pick(getattr(model, f.name), f.name) for f in fields(model)})


def _interp_anchors(values: np.ndarray, anchor_steps: np.ndarray, lead_steps: np.ndarray) -> np.ndarray:
    """Linear interpolation of per-station anchor values (S, A, ...) at leads (S, H); clamped at the ends.

    A station's leads are the forecast times less its last observation: stations silent for the
    same time share them, so the interpolation weights are worked out once per such group (a
    few groups, not stations) and applied as one weighted sum of two anchor columns.
    """
    start, inverse = np.unique(lead_steps[:, 0], return_inverse=True)
    if start.size <= _INTERP_GROUPS:
        out = np.empty(values.shape[:1] + lead_steps.shape[1:] + values.shape[2:])
        for k in range(start.size):  # a few staleness groups, not stations
            rows = np.nonzero(inverse.reshape(-1) == k)[0]
            pos = np.clip(lead_steps[rows[0]], anchor_steps[0], anchor_steps[-1])
            hi = np.clip(np.searchsorted(anchor_steps, pos, side="left"), 1, anchor_steps.size - 1)
            lo = hi - 1
            w = (pos - anchor_steps[lo]) / (anchor_steps[hi] - anchor_steps[lo])
            w = w.reshape((-1,) + (1,) * (values.ndim - 2))
            group = values if rows.size == values.shape[0] else values[rows]
            v_lo = group[:, lo]
            part = v_lo + w * (group[:, hi] - v_lo)
            if rows.size == values.shape[0]:
                return part
            out[rows] = part
        return out
    pos = np.clip(lead_steps, anchor_steps[0], anchor_steps[-1])
    hi = np.clip(np.searchsorted(anchor_steps, pos, side="left"), 1, anchor_steps.size - 1)
    lo = hi - 1
    w = (pos - anchor_steps[lo]) / (anchor_steps[hi] - anchor_steps[lo])
    v_lo = np.take_along_axis(values, lo.reshape(lo.shape + (1,) * (values.ndim - 2)), axis=1)
    v_hi = np.take_along_axis(values, hi.reshape(hi.shape + (1,) * (values.ndim - 2)), axis=1)
    w = w.reshape(w.shape + (1,) * (values.ndim - 2))
    return v_lo + w * (v_hi - v_lo)


_INTERP_GROUPS = 32
"""Above this many distinct staleness groups, interpolation is done per station."""


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
    # Spreads scaled once so the tail is erfc of one ratio (few passes over (S, K, H)).
    scale = 1.0 / (_Z95 * np.sqrt(2.0))
    sigma_up = np.maximum(upper_m - median_m, 0.0)[:, None, :] * scale
    sigma_lo = np.maximum(median_m - lower_m, 0.0)[:, None, :] * scale
    diff = thr - med
    above = diff >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # No spread: a level away from the median gives erfc(inf) = 0; at the median 0/0 = NaN.
        ratio = np.abs(diff) / np.where(above, sigma_up, sigma_lo)
    # Most levels lie many spreads from the median: erfc(6) is 2e-17, so only the others need it.
    near = ~(ratio > 6.0)
    tail = np.zeros_like(ratio)
    tail[near] = 0.5 * erfc(ratio[near])
    prob = np.where(above, tail, 1.0 - tail)
    # Exactly at a level counts as at/above it when there is no spread.
    known = np.isfinite(med) & np.isfinite(thr)
    return np.where(known, np.where(np.isnan(prob), 1.0, prob), np.nan)


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
        state = model.state
        lead_steps = (t_out[None, :] - model.last_obs_s[rows, None]) / model.dt_s  # (B, H), NaN if no data
        lead_steps = np.nan_to_num(lead_steps, nan=0.0)
        anchors = model.residual.lead_steps.astype(float)
        change = _interp_anchors(state.change_m[rows], anchors, lead_steps)
        errq = state.error_q_m[rows]
        # Leads without out-of-sample errors: a random walk of the one-step spread.
        walk = model.step_sigma_m[rows, None] * np.sqrt(anchors)[None, :]
        fallback = np.stack([-_Z95 * walk, np.zeros_like(walk), _Z95 * walk], axis=-1)
        errq = np.where(np.isfinite(errq), errq, np.nan_to_num(fallback, nan=0.0))
        # Ordered at the anchors (the random-walk fill may cross a fitted edge): interpolation
        # between ordered triples keeps them ordered.
        # (Each quantile interpolated on its own: three 2-D reads are cheaper than one 3-D one.)
        errq = np.sort(errq, axis=-1)
        q_lo, q_mid, q_hi = (_interp_anchors(np.ascontiguousarray(errq[..., i]), anchors, lead_steps) for i in range(3))
        # A trend faster than any in the window is news the errors above never saw:
        # the band reaches at least as far as the water would go if it kept it up.
        lead_h = np.clip(lead_steps * (model.dt_s / 3600.0), 0.0, UNSEEN_TREND_MAX_H)
        reach = model.unseen_trend_m_per_h[rows, None] * lead_h
        q_hi = np.maximum(q_hi, q_mid + np.maximum(reach, 0.0))
        q_lo = np.minimum(q_lo, q_mid + np.minimum(reach, 0.0))
        centre = tide[rows] + model.last_residual_m[rows, None] + change
        # The ground is a hard floor (NaN floors leave values alone: fmax ignores NaN).
        ground = floor_m[rows, None]
        median[rows] = np.fmax(centre + q_mid, ground)
        lower[rows] = np.fmax(centre + q_lo, ground)
        upper[rows] = np.fmax(centre + q_hi, ground)
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
        inputs_used=model.inputs_used if any(model.inputs_used) else (),
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
    upstream_m: np.ndarray | None = None,
    upstream_of=None,
    predicted_m: np.ndarray | None = None,
    predicted_of=None,
    input_names=None,
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
    upstream_m, upstream_of, predicted_m, predicted_of, input_names
        Other stations' series the forecast may read (see :func:`fit`).

    Returns
    -------
    Forecast
    """
    t_arr = np.asarray(t_s, dtype=float)
    origin = float(t_arr[-1]) if origin_s is None and t_arr.size else origin_s
    model = fit(
        t_s, level_m, rain_mm, origin_s=origin, horizon_s=horizon_s, window_s=window_s, max_rows=max_rows,
        upstream_m=upstream_m, upstream_of=upstream_of, predicted_m=predicted_m, predicted_of=predicted_of,
        input_names=input_names,
    )
    return predict(model, thresholds_m=thresholds_m, horizon_s=horizon_s, step_s=step_s, floor_m=floor_m)
