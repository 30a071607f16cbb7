"""The non-tidal part: a direct multi-horizon ARX model of the residual, with its errors.

After the tide is removed, what is left (``r = level - tide``) is the river
stage, storm surge, rain run-off and whatever the tide fit missed. For each of
a few anchor leads ``h`` (0.5 h ... 72 h) one linear model per station predicts
the *change* ``r(t + h) - r(t)`` from what is known at ``t``:

* ``r(t) - r(t - 15 min)``, ``r(t) - r(t - 1 h)``, ``r(t - 1 h) - r(t - 3 h)``,
  ``r(t - 3 h) - r(t - 6 h)``: how the water is moving now (lets a rise
  continue, a fall level out, a turn show within the quarter hour);
* ``r(t) - mean r over the last 24 h`` and ``... over the last 7 days``: how far
  it stands from its recent normal (surges and freshets relax back);
* rain totals over the last 3 h, 12 h and 48 h (mm): rain already fallen that
  has not yet reached the gauge, a discrete linear-reservoir response, so a
  storm upstream raises the forecast before the gauge rises;
* tidal gauges only: the residual's change over the same stretch of the tide
  in the last four M2 and K1 cycles (tide-fit errors and tide-surge
  interaction repeat with the tide), and the predicted tidal change over the
  lead (lets the model correct an amplitude the window's fit got wrong).

Direct (one model per lead) rather than iterating a one-step model: errors do
not compound and each lead is fitted for the loss it is scored on. Leads
between anchors are interpolated linearly.

Honest errors: every station's window is split in time. The model fitted on
the first two thirds predicts the last third (targets never overlap), giving
out-of-sample errors per lead; a lead whose ARX does not beat carrying the
residual forward on that holdout falls back to carrying it forward (whose
errors need no holdout: it has no parameters). The final coefficients are
refitted on the whole window. The ARX competes only where its training and
holdout rows each span three leads, and its change stays within three times
the largest rise and fall among its training targets (a linear model far
outside its data would otherwise flood a street that has only ever been dry).
Far ahead, where the training stretch holds too few independent targets for
the ARX's coefficients, damped persistence competes too: the change from the
distances to the 24-hour and 7-day means alone (and, at tidal gauges, from the
residual itself). The winner's error quantiles are widened, never narrowed,
when the holdout third was calmer than the whole window.

Cost: rows are block ends (every ``stride``-th grid time, at most
``max_rows``, 720 by default); lags, window means and rain totals come from
per-block sums (one pass over the grid); the lead-independent Gram matrix is
built once and each lead adds three columns and subtracts the rows it cannot
use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from floodwatch.models._arrays import nan_quantiles

ANCHOR_LEADS_H = (0.5, 1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0)
"""Leads the direct models are fitted at; others are interpolated."""

_LAGS_H = (1.0, 3.0, 6.0)
_SHORT_LAG_H = 0.25
_MEAN_WINDOWS_H = (24.0, 168.0)
_RAIN_WINDOWS_H = (3.0, 12.0, 48.0)
_M2_PERIOD_H = 12.4206012
_ANALOG_PERIODS_H = (_M2_PERIOD_H, 23.9344696)  # M2 and K1 periods
_ANALOG_CYCLES = 4
_N_EXTRA = len(_ANALOG_PERIODS_H) + 1  # analogs and the tidal change
_HOLDOUT_FRACTION = 1.0 / 3.0
MAX_ROWS = 720
"""Default rows per fit after thinning: neighbouring 10-minute rows say almost the same."""
_RIDGE = 1e-3  # on standardised features, per training row
_MIN_LEADS_SPANNED = 3
"""The ARX serves a lead only if its training and holdout rows each span this many leads."""
_EXTRAPOLATION = 3.0
"""The ARX's change at a lead stays within this multiple of the largest rise and fall at
that lead among its training targets: a flood somewhat bigger than any it was trained on is
still forecast to grow, but a linear model far outside its data cannot put a village street
under three metres of water."""
_DAMPED_COLUMNS = list(range(2 + len(_LAGS_H), 2 + len(_LAGS_H) + len(_MEAN_WINDOWS_H)))
"""Base columns of the damped-persistence candidate: the distances from the 24-hour and 7-day
means (``_Series.base`` order: ones, the hourly lags, the quarter-hour lag, the mean distances, ...)."""
_N_DAMPED_MIN_ROWS = 10
_TARGETS_PER_COEFFICIENT = 4
"""Independent training targets per ARX coefficient below which the damped model is offered."""
QUANTILES = np.array([0.05, 0.5, 0.95])
"""Error quantiles kept per lead: lower band, median, upper band."""


@dataclass(frozen=True)
class ResidualFit:
    """Residual model of S stations at A anchor leads (anchor 0 is lead 0).

    Attributes
    ----------
    lead_steps : ndarray, (A,)
        Anchor leads in grid steps, starting with 0.
    change_m : ndarray, (S, A)
        Predicted residual change from the last observation, metres (0 at lead 0).
    error_q_m : ndarray, (S, A, 3)
        Out-of-sample error quantiles (5 %, 50 %, 95 %) per lead, metres; NaN if unknown.
    uses_arx : ndarray of bool, (S, A)
        Whether the ARX (True) or carrying the residual forward (False) serves each lead.
    uses_rain : ndarray of bool, (S, A)
        Whether the ARX serving each lead uses the station's rain input.
    """

    lead_steps: np.ndarray
    change_m: np.ndarray
    error_q_m: np.ndarray
    uses_arx: np.ndarray
    uses_rain: np.ndarray


def anchor_steps(dt_s: float, max_lead_s: float) -> np.ndarray:
    """Anchor leads in whole grid steps up to ``max_lead_s`` (always including it), with 0 first."""
    hours = [h for h in ANCHOR_LEADS_H if h * 3600.0 < max_lead_s] + [max_lead_s / 3600.0]
    steps = np.unique(np.maximum(np.round(np.array(hours) * 3600.0 / dt_s), 1).astype(int))
    return np.concatenate([[0], steps])


def _cumsum0(values: np.ndarray) -> np.ndarray:
    """Cumulative sum along axis 1 with a leading zero column: (S, T + 1), float."""
    out = np.zeros((values.shape[0], values.shape[1] + 1))
    np.cumsum(values, axis=1, out=out[:, 1:])
    return out


def _row_spacing(n_times: int, dt_s: float, max_rows: int) -> tuple[int, int]:
    """Block length and row stride, in grid steps.

    Rows are every ``stride`` steps (at most about ``max_rows`` of them). Window
    sums and lags are taken from per-block aggregates, so a block must divide
    every feature's hour count: it divides the steps in an hour (or is one step).
    """
    target = max(-(-n_times // max(max_rows, 1)), 1)
    per_hour = 3600.0 / dt_s
    steps_per_hour = round(per_hour)
    if steps_per_hour < 1 or abs(per_hour - steps_per_hour) > 1e-6:
        return 1, target
    if target >= steps_per_hour:
        return steps_per_hour, steps_per_hour * -(-target // steps_per_hour)
    # The longest block that keeps the stride within 1.5 x the target (fewer, longer blocks are cheaper).
    block = max(
        b for b in range(1, steps_per_hour + 1) if steps_per_hour % b == 0 and b * -(-target // b) <= 1.5 * target
    )
    return block, block * -(-target // block)


def _shift_right(values: np.ndarray, shift: np.ndarray, width: int) -> np.ndarray:
    """Row s moved right by ``shift[s]`` steps into ``width`` columns, NaN where nothing moved in."""
    distinct, counts = np.unique(shift, return_counts=True)
    common = int(distinct[np.argmax(counts)])
    if distinct.size == 1 and common == 0 and width <= values.shape[1]:
        return values[:, :width]
    # Every row at the most common shift by slicing, then the few others redone.
    out = np.empty((values.shape[0], width))
    n = min(values.shape[1], width - common)
    out[:, :common] = np.nan
    out[:, common : common + n] = values[:, :n]
    out[:, common + n :] = np.nan
    for value in distinct:  # a few distinct staleness values, not stations
        if value == common:
            continue
        rows = np.nonzero(shift == value)[0]
        n = min(values.shape[1], width - int(value))
        out[rows] = np.nan
        if n > 0:
            out[rows, value : value + n] = values[rows, :n]
    return out


class _ByPhase:
    """An (S, W) array regrouped by column modulo ``stride``: (S, stride, ceil(W / stride)).

    Reading every ``stride``-th column from some offset (what the rows need, at dozens of
    offsets per fit) is then one contiguous slice per station instead of a strided sweep
    that pulls the whole array through the cache each time.
    """

    def __init__(self, arr: np.ndarray, stride: int):
        n_stations, self.width = arr.shape
        self.stride = stride
        n_cols = -(-self.width // stride)
        padded = np.full((n_stations, n_cols * stride), np.nan, dtype=arr.dtype)
        padded[:, : self.width] = arr
        self.data = np.ascontiguousarray(padded.reshape(n_stations, n_cols, stride).transpose(0, 2, 1))

    def shifted_sum(self, period: int, count: int) -> _ByPhase:
        """``sum_k arr[:, j - k * period]`` over ``k < count`` with ``j - k * period >= 0``, regrouped
        the same way; built from the slices of each phase, without undoing the regrouping."""
        out = _ByPhase.__new__(_ByPhase)
        out.width, out.stride = self.width, self.stride
        out.data = self.data.copy()
        n_cols = self.data.shape[2]
        for k in range(1, count):  # a few cycles and phases, not stations
            for phase in range(self.stride):
                cols_back, source = divmod(phase - k * period, self.stride)  # cols_back <= 0
                if n_cols + cols_back <= 0:
                    continue
                out.data[:, phase, -cols_back:] += self.data[:, source, : n_cols + cols_back]
        return out

    def take(self, start: int, n_rows: int) -> np.ndarray:
        """Columns ``start, start + stride, ...`` (``n_rows`` of them), (S, n_rows); NaN outside."""
        n_stations, _, n_cols = self.data.shape
        c0, phase = divmod(start, self.stride)
        out = np.full((n_stations, n_rows), np.nan, dtype=self.data.dtype)
        k_lo, k_hi = max(0, -c0), min(n_rows, n_cols - c0)
        if k_hi > k_lo:
            out[:, k_lo:k_hi] = self.data[:, phase, c0 + k_lo : c0 + k_hi]
        return out


class _Series:
    """One window's arrays, aligned and aggregated once, read at the fitted rows.

    Each station's history is moved so that its last observation is the last
    grid sample (a stale gauge is forecast from its last reading), and the
    grid is padded on the left to whole blocks. Rows are block ends, the last
    row being the forecast origin. Lags, window means and rain totals come from
    per-block sums (``block`` steps, an hour or a divisor of it), so they cost
    one pass over the fine grid; the lead-specific features and targets are
    read from the fine grid at the rows by strided slicing.
    """

    def __init__(
        self,
        residual_m: np.ndarray,
        rain_mm: np.ndarray | None,
        tide_m: np.ndarray,
        dt_s: float,
        max_rows: int,
        max_lead: int,
    ):
        n_stations, n_times = residual_m.shape
        self.steps = lambda hours: max(round(hours * 3600.0 / dt_s), 1)
        self.dt_s = dt_s
        self.block, self.stride = _row_spacing(n_times, dt_s, max_rows)
        block = self.block
        n_blocks = -(-n_times // block)
        width = n_blocks * block
        observed = np.isfinite(residual_m)
        self.any_obs = observed.any(axis=1)
        last = np.where(self.any_obs, n_times - 1 - np.argmax(observed[:, ::-1], axis=1), 0)
        first = np.argmax(observed, axis=1)
        shift = np.where(self.any_obs, width - 1 - last, width - n_times)
        self.residual = _shift_right(residual_m, shift, width)
        self.tide = _shift_right(tide_m, shift, width + max_lead + 1)
        self.first = first + shift
        self.split_index = first + ((last - first) * (1.0 - _HOLDOUT_FRACTION)).astype(int) + shift
        observed = np.isfinite(self.residual)

        # Forward fill (causal): the last observed value at or before each grid time.
        pos = np.where(observed, np.arange(width, dtype=np.int32)[None, :], np.int32(-1))
        np.maximum.accumulate(pos, axis=1, out=pos)
        self.filled0 = np.take_along_axis(self.residual, np.maximum(pos, 0), axis=1)
        self.filled0[pos < 0] = 0.0  # before the first observation; counted out in cycle_mean_at
        del pos
        self.filled_end = np.where(
            (self.block - 1 + block * np.arange(n_blocks))[None, :] >= self.first[:, None],
            self.filled0[:, block - 1 :: block],
            np.nan,
        )
        as_blocks = (n_stations, n_blocks, block)
        self.csum = _cumsum0(np.where(observed, self.residual, 0.0).reshape(as_blocks).sum(axis=2))
        # Counts per block fit in 16 bits (a block is at most an hour of samples).
        self.ccount = _cumsum0(observed.view(np.uint8).reshape(as_blocks).sum(axis=2, dtype=np.uint16))
        if rain_mm is None:
            self.rain_csum = np.zeros((n_stations, n_blocks + 1))
        else:
            rain = _shift_right(rain_mm, shift, width)
            self.rain_csum = _cumsum0(np.where(np.isfinite(rain), rain, 0.0).reshape(as_blocks).sum(axis=2))
        k = self.stride // block
        self.row_blocks = np.arange(n_blocks - 1, -1, -k)[::-1]
        self.row_index = (self.row_blocks + 1) * block - 1
        self.n_rows = self.row_blocks.size
        self._cycle_sums: dict[int, _ByPhase] = {}
        self._filled_by_phase: _ByPhase | None = None
        self._cycle_at: dict[tuple[int, int], np.ndarray] = {}
        # Read at the rows at many offsets (one per lead and cycle): regrouped by phase once.
        self.tide = _ByPhase(self.tide, self.stride)
        self.residual_by_phase = _ByPhase(self.residual, self.stride)
        self._tide_now = self.at_rows(self.tide, 0)

    def at_rows(self, arr: np.ndarray | _ByPhase, offset: int) -> np.ndarray:
        """``arr[:, row + offset]`` for every row, (S, R); NaN outside the array."""
        if isinstance(arr, _ByPhase):
            return arr.take(int(self.row_index[0]) + offset, self.n_rows)
        idx = self.row_index + offset
        valid = (idx >= 0) & (idx < arr.shape[1])
        out = np.full((arr.shape[0], self.n_rows), np.nan, dtype=arr.dtype)
        if valid.any():
            i0 = int(np.argmax(valid))
            i1 = self.n_rows - int(np.argmax(valid[::-1]))
            out[:, i0:i1] = arr[:, idx[i0] : idx[i1 - 1] + 1 : self.stride]
        return out

    def _blocks(self, hours: float) -> int:
        return self.steps(hours) // self.block

    def _at_blocks(self, arr: np.ndarray, j: np.ndarray) -> np.ndarray:
        valid = (j >= 0) & (j < arr.shape[1])
        out = arr[:, np.clip(j, 0, arr.shape[1] - 1)]
        out[:, ~valid] = np.nan
        return out

    def _window(self, csum: np.ndarray, j: np.ndarray, width_blocks: float) -> np.ndarray:
        """Sum over the ``width_blocks`` blocks ending with block j (the oldest may count in part)."""
        n = csum.shape[1] - 1
        hi = np.clip(j + 1, 0, n)
        lo_exact = j + 1 - width_blocks
        lo = np.ceil(lo_exact).astype(int)
        part = lo - lo_exact
        whole = csum[:, hi] - csum[:, np.clip(lo, 0, n)]
        if np.any(part > 0):
            whole = whole + part * (csum[:, np.clip(lo, 0, n)] - csum[:, np.clip(lo - 1, 0, n)])
        return whole

    def _mean(self, j: np.ndarray, width_blocks: float) -> np.ndarray:
        total = self._window(self.csum, j, width_blocks)
        count = self._window(self.ccount, j, width_blocks)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)

    def base(self) -> list[np.ndarray]:
        """Lead-independent features at the rows: a list of (S, R), rain totals last."""
        j = self.row_blocks
        now = self._at_blocks(self.filled_end, j)
        points = [now] + [self._at_blocks(self.filled_end, j - self._blocks(h)) for h in _LAGS_H]
        cols = [np.ones_like(now)]
        cols += [points[i] - points[i + 1] for i in range(len(_LAGS_H))]
        # The last quarter hour's change, from the fine grid: the hourly lags see a turn
        # (a surge peaking, a river cresting) only an hour late.
        short = self.steps(_SHORT_LAG_H)
        lagged = self.at_rows(self.filled0, -short)
        cols.append(np.where(self.row_index[None, :] - short >= self.first[:, None], now - lagged, np.nan))
        for hours in _MEAN_WINDOWS_H:
            # Mean of the observed samples in (t - window, t].
            cols.append(now - self._mean(j, self._blocks(hours)))
        # The trend of the tidally averaged residual (means over one M2 period), free of the
        # tide-fit errors that dominate short differences: where a surge or freshet is heading.
        m2_blocks = _M2_PERIOD_H * 3600.0 / (self.dt_s * self.block)  # the oldest block may count in part
        tidal_mean = [self._mean(j - (self._blocks(h) if h else 0), m2_blocks) for h in (0.0, 3.0, 12.0)]
        cols += [tidal_mean[0] - tidal_mean[1], tidal_mean[0] - tidal_mean[2]]
        for hours in _RAIN_WINDOWS_H:
            cols.append(self._window(self.rain_csum, j, self._blocks(hours)))
        return cols

    def cycle_mean_at(self, period: int, offset: int) -> np.ndarray:
        """Mean of the filled residual at t, t - P, t - 2P, ... (``_ANALOG_CYCLES`` points) at
        t = row + offset, (S, R)."""
        if period not in self._cycle_sums:
            if self._filled_by_phase is None:
                self._filled_by_phase = _ByPhase(self.filled0, self.stride)
            self._cycle_sums[period] = self._filled_by_phase.shifted_sum(period, _ANALOG_CYCLES)
        key = (period, offset)
        if key in self._cycle_at:  # leads share offsets (the last full cycle before t)
            return self._cycle_at[key]
        total = self.at_rows(self._cycle_sums[period], offset)
        idx = self.row_index + offset

        def points(first: np.ndarray, at: np.ndarray) -> np.ndarray:
            # Points at or after the station's first observation (before it the fill is
            # undefined, and counted as 0 in the sums): where there are none, 0 / 0 gives NaN.
            count = np.floor((at[None, :] - first[:, None]) * (1.0 / period))
            count += 1.0
            return np.clip(count, 0.0, _ANALOG_CYCLES, out=count)

        # Every point counts except near the start of a record: count only there. Stations
        # that started more than a period after the earliest are counted on every row.
        regular = self.first <= self.first.min(initial=0) + period
        lim = int(np.searchsorted(idx, self.first.min(initial=0) + period + (_ANALOG_CYCLES - 1) * period))
        late = np.nonzero(~regular)[0]
        late_total = total[late]
        with np.errstate(invalid="ignore", divide="ignore"):
            total[:, lim:] /= float(_ANALOG_CYCLES)
            total[:, :lim] /= points(self.first, idx[:lim])
            if late.size:
                total[late] = late_total / points(self.first[late], idx)
        self._cycle_at[key] = total
        return total

    def extra(self, h: int, tidal: np.ndarray) -> list[np.ndarray]:
        """Lead-specific features at the rows for lead ``h`` steps: a list of three (S, R)."""
        cols = []
        for period_h in _ANALOG_PERIODS_H:
            period = self.steps(period_h)
            first_k = max(int(np.ceil(h / period)), 1)
            # Mean change over [t - kP, t + h - kP] for the last cycles wholly in the past.
            analog = self.cycle_mean_at(period, h - first_k * period) - self.cycle_mean_at(period, -first_k * period)
            cols.append(np.where(tidal[:, None] & np.isfinite(analog), analog, 0.0))
        change = self.at_rows(self.tide, h) - self._tide_now
        cols.append(np.nan_to_num(change))
        return cols


def fit_residual(
    residual_m: np.ndarray,
    rain_mm: np.ndarray | None,
    *,
    dt_s: float,
    max_lead_s: float,
    tide_m: np.ndarray | None = None,
    tidal: np.ndarray | None = None,
    max_rows: int = MAX_ROWS,
) -> ResidualFit:
    """Fit the direct ARX models and their out-of-sample errors; predict from the last observation.

    Parameters
    ----------
    residual_m : ndarray, (S, T)
        Level minus tide on the regular grid, metres; NaN where missing.
    rain_mm : ndarray, (S, T) or None
        Rain fallen in the step ending at each grid time, mm; NaN = no input.
    dt_s : float
        Grid step, seconds.
    max_lead_s : float
        Longest lead to fit, seconds from the last observation.
    tide_m : ndarray, (S, T + L), optional
        Predicted tide on the grid, continued past its end far enough for the
        longest lead (L steps); None for no tide.
    tidal : ndarray of bool, (S,), optional
        Stations with a tide; only they get the tidal-analog features.
    max_rows : int
        Rows per fit: the window is thinned to at most this many (cost is
        proportional; fewer rows fit noisier coefficients).

    Returns
    -------
    ResidualFit
    """
    n_stations, n_times = residual_m.shape
    leads = anchor_steps(dt_s, max_lead_s)
    n_anchor = leads.size
    if tide_m is None:
        tide_m = np.zeros((n_stations, n_times + int(leads[-1]) + 1))
    if tidal is None:
        tidal = np.zeros(n_stations, dtype=bool)
    has_rain = np.zeros(n_stations, dtype=bool) if rain_mm is None else np.isfinite(rain_mm).any(axis=1)
    series = _Series(residual_m, rain_mm, tide_m, dt_s, max_rows, int(leads[-1]))
    n_rows = series.n_rows

    base_cols = series.base()  # (S, R) each; the last row is the origin
    r_now = series.at_rows(series.residual_by_phase, 0)
    # Tidal gauges: the residual itself, its distance from the level the tide was fitted
    # around, for the damped model only (a surge has gone a couple of days on). A river's
    # "mean level" over a month is no anchor to relax to, so it gets zeros.
    level_col = len(base_cols) - len(_RAIN_WINDOWS_H)
    base_cols.insert(level_col, np.where(tidal[:, None], np.nan_to_num(r_now), 0.0))
    row_ok = np.isfinite(r_now)
    origin_ok = series.any_obs.copy()
    for col in base_cols:
        row_ok &= np.isfinite(col)
        origin_ok &= np.isfinite(col[:, -1])
    r_now = np.where(row_ok, r_now, 0.0)
    n_ok = np.maximum(row_ok.sum(axis=1), 1)
    n_base = len(base_cols)
    n_feat = n_base + _N_EXTRA
    # Feature-major rows (S, features + target, R): each feature is one contiguous (S, R)
    # block, so writing it and the products over rows run at memory speed. Standardised so
    # one ridge fits all features and units; single precision for the row algebra:
    # standardised, ridge-conditioned features lose nothing that matters at millimetres.
    # The target is the last column, so one product gives a Gram matrix and its right-hand side.
    x = np.empty((n_stations, n_feat + 1, n_rows), dtype=np.float32)
    x0_origin = np.empty((n_stations, n_base))
    for k, col in enumerate(base_cols):
        scale = _put_scaled(x, k, col, row_ok, n_ok)
        x0_origin[:, k] = np.where(origin_ok, col[:, -1], 0.0) / scale
    del base_cols
    xb = x[:, :n_base]

    # Time split per station: holdout = rows in the last third of its observed span.
    row_fine = series.row_index  # (R,) grid index of each row (aligned grid)
    split = series.split_index  # (S,)
    pre = row_ok & (row_fine[None, :] < split[:, None])  # every lead's training rows lie in here
    # Rows before k0 are before every station's split, rows from k1 after it.
    n_before = np.searchsorted(row_fine, split)
    k0, k1 = int(n_before.min(initial=0)), int(n_before.max(initial=0))
    # Gram matrices of the lead-independent columns over all usable rows (x is zero on the
    # others) and over the training part, computed once; each lead subtracts the few rows
    # it cannot use instead of building them again.
    gram_rows = _gram(xb, xb)
    gram_pre = _gram(xb[..., :k0], xb[..., :k0]) + _gram(xb[..., k0:k1], xb[..., k0:k1] * pre[:, None, k0:k1])

    change = np.zeros((n_stations, n_anchor))
    uses_arx = np.zeros((n_stations, n_anchor), dtype=bool)
    uses_rain = np.zeros((n_stations, n_anchor), dtype=bool)
    rain_cols = np.arange(n_base - len(_RAIN_WINDOWS_H), n_base)  # base() puts rain last
    without_rain = np.ones(n_feat, dtype=bool)
    without_rain[rain_cols] = False
    # Damped persistence: the change from the distances to the 24-hour and 7-day means alone,
    # two coefficients where the ARX has a dozen. Far ahead (a day and more) a month holds
    # only a dozen independent targets, and what they support is a surge relaxing back.
    damped = np.zeros(n_feat, dtype=bool)
    damped[_DAMPED_COLUMNS + [level_col]] = True
    without_rain[level_col] = False
    with_rain = np.ones(n_feat, dtype=bool)
    with_rain[level_col] = False
    column_sets = np.stack([damped, without_rain, with_rain])  # (3, P)
    error_q = np.full((n_stations, n_anchor, QUANTILES.size), np.nan)
    error_q[:, 0, :] = np.where(series.any_obs[:, None], 0.0, np.nan)

    # A loop over ~9 anchor leads, never over stations.
    for a in range(1, n_anchor):
        h = int(leads[a])
        x_origin = np.zeros((n_stations, n_feat))
        x_origin[:, :n_base] = x0_origin
        for e, col in enumerate(series.extra(h, tidal)):
            scale = _put_scaled(x, n_base + e, col, row_ok, n_ok)
            x_origin[:, n_base + e] = np.where(origin_ok, col[:, -1], 0.0) / scale

        target = series.at_rows(series.residual_by_phase, h)
        ok = row_ok & np.isfinite(target)
        x[:, n_feat] = np.where(ok, target - r_now, 0.0)
        train = ok & ((row_fine + h)[None, :] < split[:, None])
        hold = ok & (row_fine[None, :] >= split[:, None])
        n_train = train.sum(axis=1)
        n_hold = hold.sum(axis=1)
        # Rows an hour apart whose targets lie a day ahead say nearly the same thing: the
        # training and holdout stretches must each span a few leads, or the holdout can
        # pick a model on what is really one event (a first flood in a short history).
        span_ok = (_span_steps(train, row_fine, series.stride) >= _MIN_LEADS_SPANNED * h) & (
            _span_steps(hold, row_fine, series.stride) >= _MIN_LEADS_SPANNED * h
        )
        can_fit = (n_train >= 3 * n_feat) & (n_hold >= n_feat) & origin_ok & span_ok
        # Damped persistence is offered only where the training rows hold too few independent
        # targets (stretches one lead long) for the ARX's coefficients: at short leads it would
        # only add a candidate for the holdout to pick by luck.
        few_targets = _span_steps(train, row_fine, series.stride) < _TARGETS_PER_COEFFICIENT * n_feat * h
        can_damp = (
            (n_train >= 3 * _N_DAMPED_MIN_ROWS) & (n_hold >= _N_DAMPED_MIN_ROWS) & origin_ok & span_ok & few_targets
        )

        # Three candidates per station and lead, chosen on the holdout: carry the residual
        # forward, the ARX without rain, the ARX with rain (a distant or unrepresentative rain
        # gauge can make a forecast worse; the holdout says whether it does here).
        lead_cols = x[:, n_base:]  # lead-specific features and the target
        # Each row enters one product: before every split, around the splits, after them.
        cross_pre = _gram(x[:, :n_feat, :k0], lead_cols[..., :k0])
        cross_rows = cross_pre + _gram(x[:, :n_feat, k1:], lead_cols[..., k1:])
        if k1 > k0:
            cross_pre = cross_pre + _gram(x[:, :n_feat, k0:k1], lead_cols[..., k0:k1] * pre[:, None, k0:k1])
            cross_rows = cross_rows + _gram(x[:, :n_feat, k0:k1], lead_cols[..., k0:k1])
        gram_train, rhs_train = _normal_equations(x, gram_pre, cross_pre, pre, train)
        # Rows whose target lies past the window are the same for every station (x is zero
        # off row_ok, so they can be taken out as one slice).
        past_end = int(np.count_nonzero(row_fine + h >= series.residual.shape[1]))
        gram_all, rhs_all = _normal_equations(x, gram_rows, cross_rows, row_ok, ok, tail=past_end)
        betas = _ridge_solve(
            np.stack([gram_train, gram_all]), np.stack([rhs_train, rhs_all]),
            np.stack([n_train, ok.sum(axis=1)]), column_sets,
        )  # (2 fits, 3 column sets, S, P)
        n_hold_safe = np.maximum(n_hold, 1)
        # Holdout rows all lie at or after the earliest station's split: score only that slice.
        lo = int(np.argmax(hold.any(axis=0))) if hold.any() else n_rows
        x_h, d_h, hold_h = x[:, :n_feat, lo:], x[:, n_feat, lo:], hold[:, lo:]
        # A linear model far outside the rows it was fitted on extrapolates without limit, and
        # the holdout vouches only for what the training rows showed: the change stays within
        # a multiple of the largest rise and fall at this lead among the training targets,
        # in the holdout scoring and in the forecast alike.
        trained = np.where(train, x[:, n_feat], 0.0)
        low = (_EXTRAPOLATION * trained.min(axis=1))[:, None]
        high = (_EXTRAPOLATION * trained.max(axis=1))[:, None]
        mse = [(np.where(hold_h, d_h, 0.0) ** 2).sum(axis=1) / n_hold_safe]
        fitted_by_candidate = [np.zeros_like(d_h)]
        for beta_train in betas[0]:
            fitted = np.clip(np.matmul(beta_train.astype(np.float32)[:, None, :], x_h)[:, 0, :], low, high)
            fitted_by_candidate.append(fitted)
            mse.append((np.where(hold_h, d_h - fitted, 0.0) ** 2).sum(axis=1) / n_hold_safe)
        allowed = np.stack([np.ones(n_stations, dtype=bool), can_damp, can_fit, can_fit & has_rain])
        pick = np.argmin(np.where(allowed, np.stack(mse), np.inf), axis=0)  # ties keep the simpler
        chosen = [pick[:, None] == c + 1 for c in range(column_sets.shape[0])]
        beta_all = np.select(chosen, list(betas[1]), 0.0)
        change[:, a] = np.clip(np.einsum("sp,sp->s", x_origin, beta_all), low[:, 0], high[:, 0])
        uses_arx[:, a] = pick > 0
        uses_rain[:, a] = pick == column_sets.shape[0]
        # The winner's holdout errors; carrying forward has no parameters, so all its rows count.
        fitted = np.choose(pick[:, None], fitted_by_candidate)
        errors = np.where(ok, x[:, n_feat], np.float32(np.nan))
        errors[:, lo:] = np.where(hold_h, d_h - fitted, errors[:, lo:])
        errors[(pick > 0)[:, None] & ~hold] = np.nan
        q, count = nan_quantiles(errors, QUANTILES)
        # A fitted model's errors come from the holdout third alone; if that stretch was
        # calmer than the whole window (where carrying forward's spread is known without a
        # holdout), the next days need not be as calm: widen by the ratio, never narrow.
        # (Spreads as root mean squares: two sums, where quantiles would cost two sorts.)
        squared = np.square(x[:, n_feat], dtype=np.float64)  # zero off the usable rows
        n_ok_lead = ok.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.sqrt(
                (squared.sum(axis=1) / n_ok_lead) / (np.where(hold, squared, 0.0).sum(axis=1) / n_hold)
            )
        ratio = np.where(np.isfinite(ratio) & (ratio > 1.0) & (pick > 0), ratio, 1.0)[:, None]
        q = q[:, 1:2] + (q - q[:, 1:2]) * ratio
        error_q[:, a, :] = np.where(count[:, None] >= 2, q, np.nan)
    return ResidualFit(
        lead_steps=leads,
        change_m=change,
        error_q_m=error_q,
        uses_arx=uses_arx,
        uses_rain=uses_rain,
    )


def _span_steps(rows: np.ndarray, row_index: np.ndarray, stride: int) -> np.ndarray:
    """Grid steps from each station's first to last selected row, plus one row: (S,); 0 if none."""
    first = row_index[np.argmax(rows, axis=1)]
    last = row_index[rows.shape[1] - 1 - np.argmax(rows[:, ::-1], axis=1)]
    return np.where(rows.any(axis=1), last - first + stride, 0)


def _put_scaled(x: np.ndarray, k: int, col: np.ndarray, rows: np.ndarray, n_rows: np.ndarray) -> np.ndarray:
    """Write feature ``col`` (S, R), zero off the usable rows and divided by its root mean
    square over them, into ``x[:, k]``; return the scale (S,) (1 for a constant zero)."""
    values = np.where(rows, col, 0.0)
    scale = np.sqrt(np.einsum("sr,sr->s", values, values) / n_rows)
    scale = np.where(scale > 1e-12, scale, 1.0)
    np.divide(values, scale[:, None], out=x[:, k], casting="unsafe")
    return scale


def _gram(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Products over the rows of feature-major arrays (S, P, R) and (S, Q, R): (S, P, Q), float64."""
    if left.shape[2] == 0:
        return np.zeros((left.shape[0], left.shape[1], right.shape[1]))
    return np.matmul(left, right.transpose(0, 2, 1)).astype(np.float64)


_DIRECT_SHARE = 0.25
"""A station dropping more than this share of rows gets its Gram built directly, not by subtraction."""


def _normal_equations(
    x: np.ndarray, gram_base: np.ndarray, cross: np.ndarray, rows: np.ndarray, keep: np.ndarray, tail: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gram (S, P, P) and right-hand side (S, P) over the ``keep`` rows.

    Built from the products over ``rows`` (a superset: the base block, shared by
    all leads, and ``cross``, the lead-specific features and target) minus the
    few rows a lead cannot use (missing targets, targets past the window or the
    split), gathered and subtracted: a fraction of building it again.

    Parameters
    ----------
    x : ndarray, (S, P + 1, R)
        Feature-major rows: features then the target.
    gram_base : ndarray, (S, B, B)
    cross : ndarray, (S, P, P + 1 - B)
        Features x (lead-specific features and target), over ``rows``.
    rows, keep : ndarray of bool, (S, R)
    tail : int
        Trailing rows no station keeps and where ``x`` is zero off ``rows`` (targets past
        the window): subtracted as one slice for every station instead of gathered.
    """
    n_stations, width, n_rows = x.shape
    n_feat, n_base = width - 1, gram_base.shape[-1]
    full = np.empty((n_stations, n_feat, width))
    full[:, :n_base, :n_base] = gram_base
    full[:, :, n_base:] = cross
    full[:, n_base:, :n_base] = cross[:, :n_base, : n_feat - n_base].transpose(0, 2, 1)
    drop = rows & ~keep
    if tail > 0:
        full -= _gram(x[:, :n_feat, n_rows - tail :], x[:, :, n_rows - tail :])
        drop[:, n_rows - tail :] = False
    counts = drop.sum(axis=1)
    small = counts <= _DIRECT_SHARE * n_rows
    if small.any() and counts.max(initial=0) > 0:
        sub = np.nonzero(small)[0]
        index = _row_index(drop[sub], n_rows)  # (B, width), padded with n_rows
        # One flat gather (far cheaper than take_along_axis's broadcast indices).
        flat = ((sub[:, None] * width + np.arange(width)[None, :]) * n_rows)[:, :, None]
        gathered = np.take(x.reshape(-1), flat + np.minimum(index, n_rows - 1)[:, None, :])
        gathered *= (index < n_rows)[:, None, :]
        full[sub] -= _gram(gathered[:, :n_feat], gathered)
    if not small.all():
        big = np.nonzero(~small)[0]
        xk = x[big] * keep[big][:, None, :]
        full[big] = _gram(xk[:, :n_feat], xk)
    return full[..., :n_feat], full[..., n_feat]


def _row_index(pick: np.ndarray, n_rows: int) -> np.ndarray:
    """Indices of each station's True rows, padded with ``n_rows`` (a zero row): (S, width)."""
    counts = pick.sum(axis=1)
    width = max(int(counts.max(initial=0)), 1)
    rows, cols = np.nonzero(pick)
    slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.full((pick.shape[0], width), n_rows, dtype=np.intp)
    index[rows, slot] = cols
    return index


def _ridge_solve(gram: np.ndarray, rhs: np.ndarray, n_rows: np.ndarray, column_sets: np.ndarray) -> np.ndarray:
    """Ridge solutions for every fit and column subset; left-out columns get coefficient 0.

    Parameters
    ----------
    gram : ndarray, (F, S, P, P)
    rhs : ndarray, (F, S, P)
    n_rows : ndarray, (F, S)
        Rows behind each Gram (the ridge grows with them).
    column_sets : ndarray of bool, (C, P)

    Returns
    -------
    ndarray, (F, C, S, P)
    """
    out = np.zeros((gram.shape[0], column_sets.shape[0]) + rhs.shape[1:])
    ridge = _RIDGE * np.maximum(n_rows, 1.0)[..., None] + 1e-12  # (F, S, 1)
    for c, keep in enumerate(column_sets):  # three column sets, not stations
        cols = np.nonzero(keep)[0]
        a = gram[:, :, cols[:, None], cols]
        diag = np.arange(cols.size)
        a[..., diag, diag] += ridge
        # One LAPACK call over the whole batch of small systems.
        out[:, c, :, cols] = np.moveaxis(np.linalg.solve(a, rhs[..., cols][..., None])[..., 0], -1, 0)
    return out
