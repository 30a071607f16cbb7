"""Forecast inputs from other stations: upstream gauges and predicted series.

A station's residual model may read other series on the same grid:

* **upstream** gauges (or the river mouth, a dam's outflow gauge): their
  recent *changes* travel down to the station after a travel time ``tau``;
* **predicted** series (a tide table for the river mouth, an announced dam
  release schedule): values known ahead of time, so their changes over the
  lead are known too.

Only changes are read, never levels: two gauges stand on different datums (a
gauge zero, mean sea level, a discharge in m3/s), and a change means the same
whatever the datum. A tidal input is read as its residual (its level minus its
own harmonic tide), so its tide does not drown the surge or the freshet it
passes on.

Travel times are found from the data, per station and input: the lagged
cross-correlation of the station's residual changes with the input's changes
over the training part of the window (:func:`search_lags`). An input whose
correlation peaks at no lag or at a negative one (it *follows* the station: a
gauge downstream configured as upstream by mistake) or nowhere strongly is not
used, and the reason is reported.

For a direct model at lead ``h`` and an input with travel time ``tau``, the
station's change over ``(t, t + h]`` follows the input's change over
``(t - tau, t + h - tau]``: already observed when ``h <= tau`` (and in part
beyond). :class:`NetworkColumns` reads those routed changes (and neighbouring
windows, :data:`ROUTED_SPREAD`), and each input's recent changes
(:data:`RECENT_CHANGES_H`, for what its travel time does not cover), at the
rows of a fit or at a forecast origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from floodwatch.errors import ForecastError

MAX_LAG_H = 120.0
"""Longest travel time searched, hours (a flood wave from 600 km upstream takes days)."""

MIN_CORRELATION = 0.2
"""An input is used only if its changes correlate with the station's at least this much at its lag."""

CHANGE_WINDOW_H = 6.0
"""Changes over this span are correlated in the lag search (hourly changes are mostly noise)."""

MIN_PAIRS = 48
"""Rows an input and the station must share in the lag search."""

INPUT_MAX_GAP_S = 3600.0
"""An input's last value is carried forward over gaps up to this long, never further: a late
feed is not read as standing still."""

ROUTED_SPREAD = (-0.5, 0.0, 0.5)
"""Routed windows per input and lead, as shifts of the travel time in units of the lead: the
change over ``(t - tau, t + h - tau]`` and the same window half a lead earlier and later. A flood
wave spreads as it travels and its speed changes with the flow, so the station's change is a
blend of neighbouring upstream windows, not one."""

RECENT_CHANGES_H = (1.0, 6.0, 24.0)
"""Each input's changes over the last 1, 6 and 24 h: where the river upstream is heading, for the
part of a lead its travel time does not cover (the water not yet past the input)."""

SMOOTH_S = 3600.0
"""Inputs are read as their mean over the last hour: a change between two single readings
carries both readings' noise (a centimetre at a big river's gauge)."""

STATUS_USED = 0
STATUS_WEAK = 1
STATUS_FOLLOWS = 2
STATUS_NO_LEAD = 3
STATUS_SHORT = 4
STATUS_NO_LINK = 5
STATUS_TEXT = {
    STATUS_USED: "used",
    STATUS_WEAK: "no useful lag",
    STATUS_FOLLOWS: "follows this station",
    STATUS_NO_LEAD: "moves with this station (no lead time)",
    STATUS_SHORT: "too little data shared with this station",
    STATUS_NO_LINK: "",
}


@dataclass(frozen=True)
class Inputs:
    """Input series and per-station links, validated (see :func:`check_inputs`).

    Attributes
    ----------
    values : ndarray, (U, T_in)
        Every input series on the stations' grid, starting at its first time;
        ``T_in >= T``: predicted series run past the grid's end.
    future_known : ndarray of bool, (U,)
        Predicted series (values ahead of the origin are known), as opposed to observed ones.
    links : ndarray of int, (S, K)
        Each station's inputs, as rows of ``values``; -1 pads.
    names : tuple of str, (U,)
        Names used in reports.
    """

    values: np.ndarray
    future_known: np.ndarray
    links: np.ndarray
    names: tuple[str, ...]

    @property
    def n_links(self) -> int:
        return self.links.shape[1]

    def take(self, rows: np.ndarray | slice) -> Inputs:
        """The same inputs for a subset of stations (links re-indexed, series shared)."""
        return Inputs(self.values, self.future_known, self.links[rows], self.names)


def _links(of, n_stations: int, n_series: int, what: str) -> np.ndarray:
    """Per-station index lists as an (S, K) int array padded with -1."""
    if of is None:
        raise ForecastError(f"{what}_m was given without {what}_of: say which {what} series each station reads")
    if isinstance(of, np.ndarray) and of.ndim == 2 and of.dtype.kind in "iu":
        arr = of.astype(np.int64)
    else:
        rows = [list(r) for r in of]
        width = max((len(r) for r in rows), default=0)
        arr = np.full((len(rows), width), -1, dtype=np.int64)
        for s, r in enumerate(rows):  # building the link table, no maths
            arr[s, : len(r)] = r
    if arr.shape[0] != n_stations:
        raise ForecastError(f"{what}_of must list inputs for each of the {n_stations} stations, got {arr.shape[0]}")
    bad = (arr >= n_series) | (arr < -1)
    if bad.any():
        s = int(np.nonzero(bad.any(axis=1))[0][0])
        raise ForecastError(
            f"{what}_of for station {s} names series {arr[s][bad[s]].tolist()}, but {what}_m has rows 0..{n_series - 1}"
        )
    return arr


def check_inputs(
    n_stations: int,
    n_times: int,
    upstream_m: np.ndarray | None,
    upstream_of,
    predicted_m: np.ndarray | None,
    predicted_of,
    input_names=None,
) -> Inputs | None:
    """Validate the input series and links and merge them into one :class:`Inputs`.

    Parameters
    ----------
    n_stations, n_times : int
        The stations' array shape (S, T).
    upstream_m : ndarray, (U1, T), optional
        Observed input series on the stations' grid; NaN = missing.
    upstream_of : sequence of sequences of int, or ndarray (S, K1)
        Rows of ``upstream_m`` each station reads (-1 pads an array).
    predicted_m : ndarray, (U2, T2), optional
        Predicted series on the grid continued past its end (``T2 >= T``); NaN
        where nothing is predicted (after the last value announced).
    predicted_of : like ``upstream_of``, for ``predicted_m``.
    input_names : sequence of str, optional
        Names of the upstream series then the predicted ones, for reports.

    Returns
    -------
    Inputs or None
        None when no station reads any input.
    """
    parts, known, links, n_rows = [], [], [], 0
    width = n_times
    for what, values, of, future in (
        ("upstream", upstream_m, upstream_of, False),
        ("predicted", predicted_m, predicted_of, True),
    ):
        if values is None:
            if of is not None and np.size(np.asarray(of, dtype=object)) and any(len(r) for r in of):
                raise ForecastError(f"{what}_of was given without {what}_m: pass the {what} series too")
            continue
        values = np.asarray(values, dtype=float)
        if values.ndim != 2:
            raise ForecastError(f"{what}_m must be shaped (series, time), got {values.shape}")
        if future:
            if values.shape[1] < n_times:
                raise ForecastError(
                    f"predicted_m must cover the grid and may run past it: at least {n_times} columns, "
                    f"got {values.shape[1]}"
                )
        elif values.shape[1] != n_times:
            raise ForecastError(
                f"upstream_m must be on the stations' grid, shaped (series, {n_times}), got {values.shape}"
            )
        link = _links(of, n_stations, values.shape[0], what)
        parts.append(values)
        known.append(np.full(values.shape[0], future))
        links.append(np.where(link >= 0, link + n_rows, -1))
        n_rows += values.shape[0]
        width = max(width, values.shape[1])
    if not parts or not any((lk >= 0).any() for lk in links):
        return None
    merged = np.full((n_rows, width), np.nan)
    row = 0
    for values in parts:
        merged[row : row + values.shape[0], : values.shape[1]] = values
        row += values.shape[0]
    names = tuple(input_names) if input_names is not None else tuple(f"input[{i}]" for i in range(n_rows))
    if len(names) != n_rows:
        raise ForecastError(f"input_names must name all {n_rows} input series (upstream then predicted)")
    return Inputs(merged, np.concatenate(known), np.concatenate(links, axis=1), names)


def forward_fill(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Each series' last value carried forward over gaps of at most ``max_gap`` steps, (U, T)."""
    n_series, n_times = values.shape
    observed = np.isfinite(values)
    idx = np.where(observed, np.arange(n_times)[None, :], -1)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = np.take_along_axis(values, np.maximum(idx, 0), axis=1)
    age = np.arange(n_times)[None, :] - idx
    return np.where((idx >= 0) & (age <= max_gap), filled, np.nan)


def smooth(values: np.ndarray, steps: int) -> np.ndarray:
    """Each series' mean over the last ``steps`` samples (those observed), (U, T); NaN where none."""
    if steps <= 1:
        return values
    observed = np.isfinite(values)
    total = np.cumsum(np.where(observed, values, 0.0), axis=1)
    count = np.cumsum(observed, axis=1)
    total[:, steps:] = total[:, steps:] - total[:, :-steps].copy()
    count[:, steps:] = count[:, steps:] - count[:, :-steps].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _gather(series: np.ndarray, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``series[rows[s, k], pos[s, k, ...]]`` with NaN outside the series or for unlinked rows (-1)."""
    n_times = series.shape[1]
    inside = (pos >= 0) & (pos < n_times)
    r = rows.reshape(rows.shape + (1,) * (pos.ndim - rows.ndim))
    out = series[np.maximum(r, 0), np.clip(pos, 0, n_times - 1)]
    return np.where(inside & (r >= 0), out, np.nan)


def _masked_xcorr(x: np.ndarray, z: np.ndarray, n_neg: int, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of ``x[r]`` with ``z[r + n_pos - j]`` over the rows both observe, for lags
    ``j = -n_neg .. n_pos`` (rows of ``z`` are ``x``'s shifted by ``n_pos``), by FFT.

    Parameters
    ----------
    x : ndarray, (..., R)
        NaN where not used.
    z : ndarray, (..., R + n_pos + n_neg)
        ``z[i]`` is at row ``i - n_pos``; NaN where missing.

    Returns
    -------
    corr, pairs : ndarray, (..., n_neg + n_pos + 1)
        Correlation and number of pairs at lags ``-n_neg .. n_pos``.
    """
    n_rows = x.shape[-1]
    n_lags = n_neg + n_pos + 1
    nfft = 1 << int(np.ceil(np.log2(n_rows + z.shape[-1])))
    mx, mz = np.isfinite(x), np.isfinite(z)
    x0, z0 = np.where(mx, x, 0.0), np.where(mz, z, 0.0)

    def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # sum_r a[r] b[r + n_pos - j]: a cross-correlation read at the offsets n_pos - j.
        c = np.fft.irfft(np.conj(np.fft.rfft(a, nfft)) * np.fft.rfft(b, nfft), nfft)
        offsets = n_pos - np.arange(-n_neg, n_pos + 1)
        return c[..., offsets]

    fm_x, fm_z = mx.astype(float), mz.astype(float)
    n = np.rint(corr(fm_x, fm_z))
    sx, sz = corr(x0, fm_z), corr(fm_x, z0)
    sxx, szz = corr(x0 * x0, fm_z), corr(fm_x, z0 * z0)
    sxz = corr(x0, z0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxz - sx * sz / n
        var = (sxx - sx * sx / n) * (szz - sz * sz / n)
        out = np.where((n >= 3) & (var > 0), cov / np.sqrt(np.maximum(var, 1e-300)), np.nan)
    assert out.shape[-1] == n_lags
    return out, n


@dataclass(frozen=True)
class Lags:
    """Travel times of each station's inputs, from the lag search.

    Attributes
    ----------
    lag_steps : ndarray of int, (S, K)
        Grid steps from the input to the station (0 where not used).
    correlation : ndarray, (S, K)
        Correlation of changes at that lag (at the best lag found, if not used); NaN if none.
    best_lag_steps : ndarray of int, (S, K)
        Where the correlation peaked over the whole search, negative if the input follows the station.
    status : ndarray of int, (S, K)
        ``STATUS_*``: used, or why not.
    """

    lag_steps: np.ndarray
    correlation: np.ndarray
    best_lag_steps: np.ndarray
    status: np.ndarray

    @property
    def used(self) -> np.ndarray:
        return self.status == STATUS_USED


def search_lags(
    change_m: np.ndarray,
    row_pos: np.ndarray,
    stride: int,
    inputs: Inputs,
    filled: np.ndarray,
    dt_s: float,
    change_steps: int,
    max_lag_steps: int,
) -> Lags:
    """Choose each station's travel time per input by lagged cross-correlation of changes.

    Parameters
    ----------
    change_m : ndarray, (S, R)
        The station's residual change over ``change_steps`` at each row; NaN at rows
        not to use (missing, or after the training part).
    row_pos : ndarray of int, (S, R)
        Each row's column in the input series (rows are ``stride`` steps apart).
    stride : int
        Steps between rows; lags are searched in whole rows.
    inputs : Inputs
    filled : ndarray, (U, T_in)
        The input series, forward filled over short gaps (:func:`forward_fill`).
    dt_s : float
    change_steps : int
        Span of the changes correlated, steps.
    max_lag_steps : int
        Longest travel time searched, steps.

    Returns
    -------
    Lags
    """
    n_stations, n_links = inputs.links.shape
    n_rows = change_m.shape[1]
    n_pos = max(int(max_lag_steps // stride), 1)
    n_neg = n_pos // 2
    # The input's change at rows -n_pos .. R-1+n_neg (stride apart), per station and link.
    offsets = np.arange(-n_pos, n_rows + n_neg) * stride
    pos = row_pos[:, :1, None] + offsets[None, None, :]  # (S, 1, R')
    pos = np.broadcast_to(pos, (n_stations, n_links, offsets.size))
    links = inputs.links
    later = _gather(filled, links, pos)
    earlier = _gather(filled, links, pos - change_steps)
    dz = later - earlier
    # Observed inputs are unknown after the origin: the last row's position bounds what may be read.
    future = inputs.future_known[np.maximum(links, 0)]
    dz = np.where(future[..., None] | (pos <= row_pos[:, -1:, None]), dz, np.nan)
    x = np.broadcast_to(change_m[:, None, :], (n_stations, n_links, n_rows))
    corr, pairs = _masked_xcorr(x, dz, n_neg, n_pos)  # lags -n_neg .. n_pos rows
    corr = np.where(pairs >= MIN_PAIRS, corr, np.nan)
    lags = np.arange(-n_neg, n_pos + 1)
    has = np.isfinite(corr).any(axis=-1)
    safe = np.where(np.isfinite(corr), corr, -np.inf)
    best = np.argmax(safe, axis=-1)
    best_corr = np.take_along_axis(safe, best[..., None], axis=-1)[..., 0]
    best_lag = lags[best]
    positive = np.where(lags[None, None, :] >= 1, safe, -np.inf)
    best_pos = np.argmax(positive, axis=-1)
    pos_corr = np.take_along_axis(positive, best_pos[..., None], axis=-1)[..., 0]
    status = np.full((n_stations, n_links), STATUS_USED)
    status = np.where(best_corr < MIN_CORRELATION, STATUS_WEAK, status)
    observed_input = ~future
    # An observed input must lead the station: a peak at a negative lag means it follows it
    # (a gauge downstream), at zero that it moves with it and gives no warning time.
    status = np.where(observed_input & (status == STATUS_USED) & (best_lag < 0), STATUS_FOLLOWS, status)
    status = np.where(observed_input & (status == STATUS_USED) & (best_lag == 0), STATUS_NO_LEAD, status)
    status = np.where(~has, STATUS_SHORT, status)
    status = np.where(links < 0, STATUS_NO_LINK, status)
    # Observed inputs use their best positive lag; predicted ones their best lag of any sign.
    chosen = np.where(observed_input, lags[best_pos], best_lag)
    lag_steps = np.where(status == STATUS_USED, chosen * stride, 0)
    correlation = np.where(has, np.where(observed_input & (status == STATUS_USED), pos_corr, best_corr), np.nan)
    return Lags(
        lag_steps=lag_steps.astype(np.int64),
        correlation=correlation,
        best_lag_steps=(best_lag * stride).astype(np.int64),
        status=status.astype(np.int8),
    )


class NetworkColumns:
    """Routed input changes at the rows of a fit (or at one origin), per lead.

    For input ``k`` of a station with travel time ``tau`` and a lead ``h`` (steps),
    the column is the input's change over ``(t - tau, t + h - tau]``; for an
    observed input the part after ``t`` is not known yet and the window ends at
    ``t`` (a predicted input's is known). NaN where the input is missing there.
    """

    def __init__(
        self, inputs: Inputs, filled: np.ndarray, lags: Lags, row_pos: np.ndarray, origin_pos: np.ndarray, dt_s: float
    ):
        """
        Parameters
        ----------
        inputs : Inputs
        filled : ndarray, (U, T_in)
            Input series forward filled over short gaps.
        lags : Lags
        row_pos : ndarray of int, (S, R)
            Each row's column in the input series.
        origin_pos : ndarray of int, (S,)
            The origin's column (the station's last observation): observed inputs are unknown after it.
        """
        self.inputs, self.filled, self.lags, self.dt_s = inputs, filled, lags, dt_s
        self.row_pos, self.origin_pos = row_pos, origin_pos
        self.used = lags.used  # (S, K)
        self.future = inputs.future_known[np.maximum(inputs.links, 0)] & (inputs.links >= 0)

    @property
    def n_groups(self) -> int:
        """Columns per input: the routed windows, then the recent changes."""
        return len(ROUTED_SPREAD) + len(RECENT_CHANGES_H)

    @property
    def n_columns(self) -> int:
        return self.inputs.n_links * self.n_groups

    def columns(self, h: int) -> np.ndarray:
        """Routed and recent changes at lead ``h`` steps: (S, K * n_groups, R), group-major (group
        ``g``, link ``k`` at column ``g * K + k``); NaN where unknown or the input is unused."""
        cols = []
        tau0 = self.lags.lag_steps  # (S, K)
        row = self.row_pos[:, None, :]
        windows = []
        for spread in ROUTED_SPREAD:
            tau = np.maximum(tau0 + int(round(spread * h)), np.where(self.future, -(10**9), 1))
            start = row - tau[..., None]  # (S, K, R)
            end = start + h
            # Observed inputs: the window stops at the row (what is known at t).
            end = np.where(self.future[..., None], end, np.minimum(end, row))
            windows.append((start, end))
        for hours in RECENT_CHANGES_H:
            back = max(int(round(hours * 3600.0 / self.dt_s)), 1)
            windows.append((row - back + 0 * tau0[..., None], row + 0 * tau0[..., None]))
        for start, end in windows:
            # Nothing after the origin of an observed input is known (the fit's own window ends there).
            late = ~self.future[..., None] & (end > self.origin_pos[:, None, None])
            value = _gather(self.filled, self.inputs.links, end) - _gather(self.filled, self.inputs.links, start)
            value = np.where(late | ~self.used[..., None] | (end <= start), np.nan, value)
            cols.append(value)
        return np.concatenate(cols, axis=1)
