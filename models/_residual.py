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
from scipy.stats import t as student_t

from floodwatch.models._arrays import nan_quantiles
from floodwatch.models._network import (
    CHANGE_WINDOW_H,
    MAX_LAG_H,
    Inputs,
    Lags,
    NetworkColumns,
    search_lags,
)

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
_NETWORK_RIDGE = 1e-2
"""Ridge on the input columns at a lead of ``_NETWORK_RIDGE_LEAD_H`` (standardised, per training
row), growing with the square of the lead: several upstream gauges of one river move together,
and a month of rows cannot tell their weights apart, the less so the further ahead."""
_NETWORK_RIDGE_LEAD_H = 6.0
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
_Z95 = 1.6448536269514722  # standard normal 95 % quantile


CHOICE_PERSISTENCE, CHOICE_DAMPED, CHOICE_ARX, CHOICE_ARX_RAIN, CHOICE_NETWORK, CHOICE_NETWORK_RAIN = range(6)
"""What serves a lead: carrying the residual forward, damped persistence, the ARX without and
with rain, and the ARX with the station's inputs (upstream gauges, predicted series), without
and with rain."""


@dataclass(frozen=True)
class ResidualFit:
    """Fitted residual model of S stations at A anchor leads (anchor 0 is lead 0).

    Everything a forecast from a later origin needs besides the newest data: the
    coefficients of the model chosen at each lead (on the raw features, so no
    scales are needed), the bounds of its change and its out-of-sample errors;
    for stations with inputs the same again per *variant*: variant 0 uses every
    input, variant ``k`` every input but link ``k - 1`` (so one late feed costs
    only that feed), and without any the station's own model serves.

    Attributes
    ----------
    lead_steps : ndarray of int, (A,)
        Anchor leads in grid steps, starting with 0.
    block_steps : int
        Block length of the window sums behind the features (a forecast reads them the same way).
    coef : ndarray, (S, A, P)
        The station's own model (no inputs) per lead, on the raw features; 0 where carried forward.
    error_q_m : ndarray, (S, A, 3)
        Its out-of-sample error quantiles (5 %, 50 %, 95 %), metres; NaN if unknown.
    choice : ndarray of int8, (S, A)
        ``CHOICE_*`` serving each lead.
    low_m, high_m : ndarray, (S, A)
        The change stays within these (a multiple of the largest training fall and rise).
    net_row : ndarray of int, (S,)
        Row of each station in the ``net_*`` and link arrays; -1 without inputs.
    net_coef : ndarray, (N, A, V, P + C)
        Per variant, the chosen model's coefficients (own features then input columns).
    net_error_q_m : ndarray, (N, A, V, 3)
    net_choice : ndarray of int8, (N, A, V)
    links : ndarray of int, (N, K)
        Input series each station reads (rows of the inputs); -1 pads.
    lag_steps, best_lag_steps, status : ndarray of int, (N, K)
        The lag search's travel time, where its correlation peaked, and ``_network.STATUS_*``.
    correlation : ndarray, (N, K)
    """

    lead_steps: np.ndarray
    block_steps: int
    coef: np.ndarray
    error_q_m: np.ndarray
    choice: np.ndarray
    low_m: np.ndarray
    high_m: np.ndarray
    net_row: np.ndarray
    net_coef: np.ndarray
    net_error_q_m: np.ndarray
    net_choice: np.ndarray
    links: np.ndarray
    lag_steps: np.ndarray
    best_lag_steps: np.ndarray
    status: np.ndarray
    correlation: np.ndarray

    @property
    def n_own(self) -> int:
        """Own features per station (P)."""
        return self.coef.shape[-1]

    def take(self, rows: np.ndarray) -> ResidualFit:
        """The fit of a subset (or a repetition) of stations, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        old = self.net_row[rows]
        keep = old >= 0
        net_row = np.full(rows.size, -1, dtype=np.int64)
        net_row[keep] = np.arange(int(keep.sum()))
        src = old[keep]
        return ResidualFit(
            lead_steps=self.lead_steps, block_steps=self.block_steps,
            coef=self.coef[rows], error_q_m=self.error_q_m[rows], choice=self.choice[rows],
            low_m=self.low_m[rows], high_m=self.high_m[rows], net_row=net_row,
            net_coef=self.net_coef[src], net_error_q_m=self.net_error_q_m[src], net_choice=self.net_choice[src],
            links=self.links[src], lag_steps=self.lag_steps[src], best_lag_steps=self.best_lag_steps[src],
            status=self.status[src], correlation=self.correlation[src],
        )

    @staticmethod
    def concat(parts: list[ResidualFit]) -> ResidualFit:
        """Join fits of consecutive station blocks; the input arrays are padded to the widest."""
        first = parts[0]
        n_links = max(p.links.shape[1] for p in parts)
        n_var = max(p.net_coef.shape[2] for p in parts)
        width = max(p.net_coef.shape[3] for p in parts)
        n_cols_own = first.n_own

        def pad(arr: np.ndarray, shape: tuple[int, ...], fill) -> np.ndarray:
            out = np.full(shape, fill, dtype=arr.dtype)
            out[tuple(slice(0, n) for n in arr.shape)] = arr
            return out

        net_rows, offset = [], 0
        coefs, errs, choices, links, lags, best, status, corr = ([] for _ in range(8))
        for p in parts:
            n = p.links.shape[0]
            net_rows.append(np.where(p.net_row >= 0, p.net_row + offset, -1))
            offset += n
            a = p.lead_steps.size
            # Input columns sit after the own ones; a block with fewer links pads with zero columns
            # placed per spread group exactly as the widest block lays them out.
            coef = np.zeros((n, a, n_var, width))
            coef[..., :n_cols_own] = pad(p.net_coef[..., :n_cols_own], (n, a, n_var, n_cols_own), 0.0)
            k_here = p.links.shape[1]
            if k_here:
                groups = (p.net_coef.shape[3] - n_cols_own) // k_here
                for g in range(groups):  # a few spreads, not stations
                    src = p.net_coef[..., n_cols_own + g * k_here : n_cols_own + (g + 1) * k_here]
                    col0 = n_cols_own + g * n_links  # not `first`: that is the first part, read below
                    coef[:, :, : p.net_coef.shape[2], col0 : col0 + k_here] = src
            # Variants beyond this block's (links it does not have) repeat variant 0.
            coef[:, :, p.net_coef.shape[2] :] = coef[:, :, :1]
            coefs.append(coef)
            err = pad(p.net_error_q_m, (n, a, n_var, 3), np.nan)
            err[:, :, p.net_error_q_m.shape[2] :] = err[:, :, :1]
            errs.append(err)
            ch = pad(p.net_choice, (n, a, n_var), 0)
            ch[:, :, p.net_choice.shape[2] :] = ch[:, :, :1]
            choices.append(ch)
            links.append(pad(p.links, (n, n_links), -1))
            lags.append(pad(p.lag_steps, (n, n_links), 0))
            best.append(pad(p.best_lag_steps, (n, n_links), 0))
            status.append(pad(p.status, (n, n_links), 5))
            corr.append(pad(p.correlation, (n, n_links), np.nan))
        return ResidualFit(
            lead_steps=first.lead_steps, block_steps=first.block_steps,
            coef=np.concatenate([p.coef for p in parts]),
            error_q_m=np.concatenate([p.error_q_m for p in parts]),
            choice=np.concatenate([p.choice for p in parts]),
            low_m=np.concatenate([p.low_m for p in parts]),
            high_m=np.concatenate([p.high_m for p in parts]),
            net_row=np.concatenate(net_rows),
            net_coef=np.concatenate(coefs), net_error_q_m=np.concatenate(errs), net_choice=np.concatenate(choices),
            links=np.concatenate(links), lag_steps=np.concatenate(lags), best_lag_steps=np.concatenate(best),
            status=np.concatenate(status), correlation=np.concatenate(corr),
        )


@dataclass(frozen=True)
class ResidualState:
    """The residual model applied at one origin: what :func:`models.predict` interpolates.

    Attributes
    ----------
    change_m : ndarray, (S, A)
        Predicted residual change from the last observation, metres (0 at lead 0).
    error_q_m : ndarray, (S, A, 3)
        Out-of-sample error quantiles of the model serving each lead; NaN if unknown.
    choice : ndarray of int8, (S, A)
        ``CHOICE_*`` serving each lead.
    variant : ndarray of int8, (S, A)
        Inputs variant serving each lead: 0 all inputs, ``k`` all but link ``k - 1``, -1 none.
    available : ndarray of bool, (S, K, A)
        Whether each link's routed change was known at the origin for each lead.
    """

    change_m: np.ndarray
    error_q_m: np.ndarray
    choice: np.ndarray
    variant: np.ndarray
    available: np.ndarray


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

    def __init__(self, arr: np.ndarray, stride: int, dtype=None):
        n_stations, self.width = arr.shape
        self.stride = stride
        n_cols = -(-self.width // stride)
        padded = np.full((n_stations, n_cols * stride), np.nan, dtype=dtype or arr.dtype)
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
        *,
        origin_only: bool = False,
        block: int | None = None,
    ):
        n_stations, n_times = residual_m.shape
        self.steps = lambda hours: max(round(hours * 3600.0 / dt_s), 1)
        self.dt_s = dt_s
        if block is None:
            self.block, self.stride = _row_spacing(n_times, dt_s, max_rows)
        else:
            # A forecast from a stored fit reads its features with the fit's blocks, so the
            # window sums (whose oldest block may count in part) are the ones it was fitted on.
            self.block, self.stride = block, block
        self.origin_only = origin_only
        block = self.block
        n_blocks = -(-n_times // block)
        width = n_blocks * block
        observed = np.isfinite(residual_m)
        self.any_obs = observed.any(axis=1)
        last = np.where(self.any_obs, n_times - 1 - np.argmax(observed[:, ::-1], axis=1), 0)
        first = np.argmax(observed, axis=1)
        shift = np.where(self.any_obs, width - 1 - last, width - n_times)
        self.shift = shift
        self.width = width
        self.residual = _shift_right(residual_m, shift, width)
        self.tide: np.ndarray | _ByPhase = _shift_right(tide_m, shift, width + max_lead + 1)
        self.first = first + shift
        self.split_index = first + ((last - first) * (1.0 - _HOLDOUT_FRACTION)).astype(int) + shift
        # Cross-fitting: the model fitted on the last two thirds also forecasts the first third.
        self.first_third_end = first + ((last - first) * _HOLDOUT_FRACTION).astype(int) + shift
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
        if origin_only:
            self.row_blocks = self.row_blocks[-1:]
        self.row_index = (self.row_blocks + 1) * block - 1
        self.n_rows = self.row_blocks.size
        self._cycle_sums: dict[int, _ByPhase] = {}
        self._filled_by_phase: _ByPhase | None = None
        self._cycle_at: dict[tuple[int, int], np.ndarray] = {}
        self.residual_by_phase: np.ndarray | _ByPhase
        if origin_only:
            # One row: plain reads are cheaper than regrouping the arrays.
            self.residual_by_phase = self.residual
        else:
            # Read at the rows at many offsets (one per lead and cycle): regrouped by phase once.
            # Single precision: the training rows are single precision anyway, and three copies of
            # a month of 10-minute data for 512 stations are a third of a block's memory.
            self.tide = _ByPhase(self.tide, self.stride, np.float32)
            self.residual_by_phase = _ByPhase(self.residual, self.stride, np.float32)
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
        key = (period, offset)
        if key in self._cycle_at:  # leads share offsets (the last full cycle before t)
            return self._cycle_at[key]
        if self.origin_only:
            # The same sum as the regrouped one, read point by point (0 before the first
            # observation and outside the array, as there).
            total = sum(np.nan_to_num(self.at_rows(self.filled0, offset - k * period)) for k in range(_ANALOG_CYCLES))
        else:
            if period not in self._cycle_sums:
                if self._filled_by_phase is None:
                    self._filled_by_phase = _ByPhase(self.filled0, self.stride, np.float32)
                self._cycle_sums[period] = self._filled_by_phase.shifted_sum(period, _ANALOG_CYCLES)
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
        if offset % period == 0:  # only the whole-cycle offsets are shared by several leads
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


@dataclass(frozen=True)
class NetworkData:
    """The inputs as the residual model reads them.

    Attributes
    ----------
    inputs : Inputs
        Series and this block's links.
    filled : ndarray, (U, T_in)
        Input series (observed tidal ones minus their tide), carried forward over short gaps
        and averaged over the last hour (what the routed changes read).
    window_start : int
        Column in ``filled`` of the stations' window's first sample.
    unsmoothed : ndarray, (U, T_in)
        The same before the hourly mean (what the lag search reads: an hour's trailing mean
        lags the gauge by half an hour, and the travel time reported is the gauge's).
    """

    inputs: Inputs
    filled: np.ndarray
    window_start: int
    unsmoothed: np.ndarray | None = None


def _own_features(series: _Series, tidal: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Lead-independent features at the series' rows: the columns (S, R) each, the residual
    at the rows, and where the level column sits."""
    base_cols = series.base()  # (S, R) each; the last row is the origin
    r_now = series.at_rows(series.residual_by_phase, 0)
    # Tidal gauges: the residual itself, its distance from the level the tide was fitted
    # around, for the damped model only (a surge has gone a couple of days on). A river's
    # "mean level" over a month is no anchor to relax to, so it gets zeros.
    level_col = len(base_cols) - len(_RAIN_WINDOWS_H)
    base_cols.insert(level_col, np.where(tidal[:, None], np.nan_to_num(r_now), 0.0))
    return base_cols, r_now, level_col


def _network_for(series: _Series, network: NetworkData | None, lags: Lags | None) -> NetworkColumns | None:
    if network is None or lags is None:
        return None
    row_pos = network.window_start + series.row_index[None, :] - series.shift[:, None]
    return NetworkColumns(network.inputs, network.filled, lags, row_pos, row_pos[:, -1], series.dt_s)


def history_needed_steps(leads: np.ndarray, dt_s: float) -> int:
    """Grid steps of history the features at an origin look back over (plus a day's margin for
    a stale gauge): the 7-day mean, and the analog cycles behind the longest lead."""
    steps = lambda hours: max(round(hours * 3600.0 / dt_s), 1)  # noqa: E731
    back = steps(max(_MEAN_WINDOWS_H)) + steps(1.0)
    for period_h in _ANALOG_PERIODS_H:
        period = steps(period_h)
        first_k = max(int(np.ceil(int(leads[-1]) / period)), 1)
        back = max(back, (first_k + _ANALOG_CYCLES) * period)
    # Whole hours, so a window of this length needs no padding to whole blocks.
    hour = steps(1.0)
    return -(-(back + steps(24.0)) // hour) * hour


def max_lag_steps(dt_s: float, n_times: int) -> int:
    """Longest travel time searched: ``MAX_LAG_H``, or a third of the window if that is shorter."""
    return int(min(round(MAX_LAG_H * 3600.0 / dt_s), n_times // 3))


def fit_residual(
    residual_m: np.ndarray,
    rain_mm: np.ndarray | None,
    *,
    dt_s: float,
    max_lead_s: float,
    tide_m: np.ndarray | None = None,
    tidal: np.ndarray | None = None,
    max_rows: int = MAX_ROWS,
    network: NetworkData | None = None,
) -> tuple[ResidualFit, ResidualState]:
    """Fit the direct ARX models and their out-of-sample errors; apply them at the last observation.

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
    network : NetworkData, optional
        Upstream and predicted series the stations may read (their routed changes).

    Returns
    -------
    ResidualFit
        The coefficients, bounds and errors a later origin needs.
    ResidualState
        The model applied at the window's last observation.
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

    base_cols, r_now, level_col = _own_features(series, tidal)
    row_ok = np.isfinite(r_now)
    origin_ok = series.any_obs.copy()
    for col in base_cols:
        row_ok &= np.isfinite(col)
        origin_ok &= np.isfinite(col[:, -1])
    r_now = np.where(row_ok, r_now, 0.0)
    n_ok = np.maximum(row_ok.sum(axis=1), 1)
    n_base = len(base_cols)
    n_own = n_base + _N_EXTRA

    # Time split per station: holdout = rows in the last third of its observed span.
    row_fine = series.row_index  # (R,) grid index of each row (aligned grid)
    split = series.split_index  # (S,)
    pre = row_ok & (row_fine[None, :] < split[:, None])  # every lead's training rows lie in here

    # Inputs: travel times from the training rows only (the holdout must not have chosen them).
    lags = None
    if network is not None and (network.inputs.links >= 0).any():
        w = series.steps(CHANGE_WINDOW_H)
        change = series.at_rows(series.filled0, 0) - series.at_rows(series.filled0, -w)
        usable = pre & (row_fine[None, :] - w >= series.first[:, None])
        row_pos = network.window_start + row_fine[None, :] - series.shift[:, None]
        lags = search_lags(
            np.where(usable, change, np.nan), row_pos, series.stride, network.inputs,
            network.filled if network.unsmoothed is None else network.unsmoothed, dt_s, w,
            max_lag_steps(dt_s, n_times),
        )
    net = _network_for(series, network, lags)
    n_links = 0 if net is None else net.inputs.n_links
    n_net = 0 if net is None else net.n_columns
    n_feat = n_own + n_net
    # Stations with a usable input get the network candidates (the others need no extra solves).
    net_sub = np.zeros(0, dtype=np.int64) if net is None else np.nonzero(net.used.any(axis=1))[0]
    linked = np.zeros(0, dtype=np.int64) if net is None else np.nonzero((net.inputs.links >= 0).any(axis=1))[0]

    # Feature-major rows (S, features + target, R): each feature is one contiguous (S, R)
    # block, so writing it and the products over rows run at memory speed. Standardised so
    # one ridge fits all features and units; single precision for the row algebra:
    # standardised, ridge-conditioned features lose nothing that matters at millimetres.
    # The target is the last column, so one product gives a Gram matrix and its right-hand side.
    x = np.empty((n_stations, n_feat + 1, n_rows), dtype=np.float32)
    scales = np.ones((n_stations, n_anchor, n_feat))
    x_raw = np.zeros((n_stations, n_anchor, n_feat))  # the features at the origin, raw units
    for k, col in enumerate(base_cols):
        scales[:, :, k] = _put_scaled(x, k, col, row_ok, n_ok)[:, None]
        x_raw[:, :, k] = np.where(origin_ok, col[:, -1], 0.0)[:, None]
    del base_cols
    xb = x[:, :n_base]

    # Rows before k0 are before every station's split, rows from k1 after it.
    n_before = np.searchsorted(row_fine, split)
    k0, k1 = int(n_before.min(initial=0)), int(n_before.max(initial=0))
    # Gram matrices of the lead-independent columns over all usable rows (x is zero on the
    # others) and over the training part, computed once; each lead subtracts the few rows
    # it cannot use instead of building them again.
    gram_rows = _gram(xb, xb)
    gram_pre = _gram(xb[..., :k0], xb[..., :k0]) + _gram(xb[..., k0:k1], xb[..., k0:k1] * pre[:, None, k0:k1])

    coef = np.zeros((n_stations, n_anchor, n_own))
    choice = np.zeros((n_stations, n_anchor), dtype=np.int8)
    low_m = np.zeros((n_stations, n_anchor))
    high_m = np.zeros((n_stations, n_anchor))
    n_var = n_links + 1 if n_net else 0
    net_coef = np.zeros((linked.size, n_anchor, n_var, n_feat))
    net_choice = np.zeros((linked.size, n_anchor, n_var), dtype=np.int8)
    net_errq = np.full((linked.size, n_anchor, n_var, QUANTILES.size), np.nan)
    rain_cols = np.arange(n_base - len(_RAIN_WINDOWS_H), n_base)  # base() puts rain last
    without_rain = np.zeros(n_feat, dtype=bool)
    without_rain[:n_own] = True
    without_rain[rain_cols] = False
    # Damped persistence: the change from the distances to the 24-hour and 7-day means alone,
    # two coefficients where the ARX has a dozen. Far ahead (a day and more) a month holds
    # only a dozen independent targets, and what they support is a surge relaxing back.
    damped = np.zeros(n_feat, dtype=bool)
    damped[_DAMPED_COLUMNS + [level_col]] = True
    without_rain[level_col] = False
    with_rain = without_rain.copy()
    with_rain[rain_cols] = True
    own_sets = np.stack([damped, without_rain, with_rain])  # (3, P)
    # Inputs: every variant (all inputs; all but one) on top of the ARX without and with rain.
    net_masks: list[np.ndarray] = []
    if net is not None and n_net:
        groups = net.n_groups
        for v in range(n_var):
            cols = np.ones(n_net, dtype=bool)
            if v > 0:
                cols[[v - 1 + g * n_links for g in range(groups)]] = False
            for base_set in (without_rain, with_rain):
                mask = base_set.copy()
                mask[n_own:] = cols
                net_masks.append(mask)
    net_sets = np.stack(net_masks) if net_masks else np.zeros((0, n_feat), dtype=bool)
    column_ridge = np.ones(n_feat)
    column_ridge[n_own:] = _NETWORK_RIDGE / _RIDGE
    error_q = np.full((n_stations, n_anchor, QUANTILES.size), np.nan)
    error_q[:, 0, :] = np.where(series.any_obs[:, None], 0.0, np.nan)
    if linked.size:
        net_errq[:, 0] = error_q[linked, None, 0]

    # A loop over ~9 anchor leads, never over stations.
    for a in range(1, n_anchor):
        h = int(leads[a])
        for e, col in enumerate(series.extra(h, tidal)):
            scales[:, a, n_base + e] = _put_scaled(x, n_base + e, col, row_ok, n_ok)
            x_raw[:, a, n_base + e] = np.where(origin_ok, col[:, -1], 0.0)
        if net is not None and n_net:
            routed = net.columns(h)  # (S, C, R), NaN where unknown
            for c in range(n_net):
                col = routed[:, c]
                # A training row missing an input counts it as no change (a few rows; the
                # holdout scores the result); at a forecast origin a missing input is never
                # guessed: that variant is not used.
                scales[:, a, n_own + c] = _put_scaled(x, n_own + c, np.nan_to_num(col), row_ok, n_ok)
                x_raw[:, a, n_own + c] = col[:, -1]
            del routed

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
        can_fit = (n_train >= 3 * n_own) & (n_hold >= n_own) & origin_ok & span_ok
        # Damped persistence is offered only where the training rows hold too few independent
        # targets (stretches one lead long) for the ARX's coefficients: at short leads it would
        # only add a candidate for the holdout to pick by luck.
        few_targets = _span_steps(train, row_fine, series.stride) < _TARGETS_PER_COEFFICIENT * n_own * h
        can_damp = (
            (n_train >= 3 * _N_DAMPED_MIN_ROWS) & (n_hold >= _N_DAMPED_MIN_ROWS) & origin_ok & span_ok & few_targets
        )

        # Candidates per station and lead, chosen on the holdout: carry the residual forward,
        # damped persistence, the ARX without rain, the ARX with rain (a distant or
        # unrepresentative rain gauge can make a forecast worse; the holdout says whether it
        # does here), and with inputs the ARX reading them.
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
        grams, rhss = np.stack([gram_train, gram_all]), np.stack([rhs_train, rhs_all])
        counts = np.stack([n_train, ok.sum(axis=1)])
        betas = _ridge_solve(grams, rhss, counts, own_sets)  # (2 fits, 3 sets, S, P)
        # The routed changes' ridge grows with the lead: far ahead a month holds few independent
        # targets, and several gauges of one river say nearly the same thing.
        column_ridge[n_own:] = max(_NETWORK_RIDGE * (h * dt_s / 3600.0 / _NETWORK_RIDGE_LEAD_H) ** 2, _RIDGE) / _RIDGE
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
        low_m[:, a], high_m[:, a] = low[:, 0], high[:, 0]
        mse_by_candidate = [(np.where(hold_h, d_h, 0.0) ** 2).sum(axis=1) / n_hold_safe]
        fitted_by_candidate = [np.zeros_like(d_h)]
        for beta_train in betas[0]:
            fitted = np.clip(np.matmul(beta_train.astype(np.float32)[:, None, :], x_h)[:, 0, :], low, high)
            fitted_by_candidate.append(fitted)
            mse_by_candidate.append((np.where(hold_h, d_h - fitted, 0.0) ** 2).sum(axis=1) / n_hold_safe)
        allowed = np.stack([np.ones(n_stations, dtype=bool), can_damp, can_fit, can_fit & has_rain])
        mse = np.stack(mse_by_candidate)
        pick = np.argmin(np.where(allowed, mse, np.inf), axis=0)  # ties keep the simpler
        chosen = [pick[:, None] == c + 1 for c in range(own_sets.shape[0])]
        coef[:, a] = np.select(chosen, list(betas[1][..., :n_own]), 0.0) / scales[:, a, :n_own]
        choice[:, a] = pick
        # The band from out-of-sample errors over two thirds of the window, not one: the holdout
        # (the last third, forecast by the model fitted before it) and the first third, forecast
        # by the same candidate fitted on the last two thirds. A calm last third then cannot
        # promise a calm month, and twice the errors make steadier quantiles (cross-fitting).
        squared = np.square(x[:, n_feat], dtype=np.float64)  # zero off the usable rows
        n_ok_lead = ok.sum(axis=1)
        first_end = series.first_third_end
        rev_hold = ok & ((row_fine + h)[None, :] < first_end[:, None])
        first_rows = ok & (row_fine[None, :] < first_end[:, None])
        kr = int(np.searchsorted(row_fine, int(first_end.max(initial=0))))
        xf = x[..., :kr] * first_rows[:, None, :kr]
        g_first = _gram(xf[:, :n_feat], xf)
        del xf
        rev_gram, rev_rhs = gram_all - g_first[..., :n_feat], rhs_all - g_first[..., n_feat]
        rev_n = n_ok_lead - first_rows.sum(axis=1)
        rev_trained = np.where(ok & ~first_rows, x[:, n_feat], 0.0)
        rev_low = (_EXTRAPOLATION * rev_trained.min(axis=1))[:, None]
        rev_high = (_EXTRAPOLATION * rev_trained.max(axis=1))[:, None]
        del rev_trained
        x_r, d_r, hold_r = x[:, :n_feat, :kr], x[:, n_feat, :kr], rev_hold[:, :kr]
        rev_fit = (rev_n >= 3 * n_own) & (rev_hold.sum(axis=1) >= n_own)

        def rev_errors(beta: np.ndarray, rows: np.ndarray | slice, use: np.ndarray, x_r=x_r, d_r=d_r,
                       hold_r=hold_r, rev_low=rev_low, rev_high=rev_high) -> np.ndarray:
            """Errors over the first third of the candidates ``beta`` (fitted on the rest), NaN elsewhere."""
            fitted = np.clip(np.matmul(beta.astype(np.float32)[:, None, :], x_r[rows])[:, 0, :],
                             rev_low[rows], rev_high[rows])
            return np.where(hold_r[rows] & use[:, None], d_r[rows] - fitted, np.nan)

        rev_betas = _ridge_solve(rev_gram[None], rev_rhs[None], rev_n[None], own_sets)[0]  # (3, S, P)
        rev = rev_errors(np.select(chosen, list(rev_betas), 0.0), slice(None), (pick > 0) & rev_fit)
        error_q[:, a, :] = _winner_errors(
            pick, fitted_by_candidate, x[:, n_feat], d_h, ok, hold, hold_h, lo, squared, n_ok_lead, n_hold, rev,
            h, series.stride,
        )

        if net_sub.size:
            # The stations with inputs: the same candidates plus the ARX with inputs, per variant.
            sub = net_sub
            in_linked = np.searchsorted(linked, sub)
            nbetas = _ridge_solve(grams[:, sub], rhss[:, sub], counts[:, sub], net_sets, column_ridge)
            rain_better = has_rain[sub] & (mse[3, sub] < mse[2, sub])
            low_s, high_s = low[sub], high[sub]
            can_net = can_fit[sub] & (n_train[sub] >= 3 * n_feat) & (n_hold[sub] >= n_feat)
            x_hs, d_hs = x_h[sub], d_h[sub]
            own_fitted = [f[sub] for f in fitted_by_candidate]
            rev_nbetas = _ridge_solve(rev_gram[None, sub], rev_rhs[None, sub], rev_n[None, sub], net_sets,
                                      column_ridge)[0]
            for v in range(n_var):
                pair = nbetas[:, 2 * v : 2 * v + 2]  # (2 fits, without / with rain, N, P)
                beta_train = np.where(rain_better[:, None], pair[0, 1], pair[0, 0])
                beta_all = np.where(rain_better[:, None], pair[1, 1], pair[1, 0])
                fitted = np.clip(np.matmul(beta_train.astype(np.float32)[:, None, :], x_hs)[:, 0, :], low_s, high_s)
                mse_v = (np.where(hold_h[sub], d_hs - fitted, 0.0) ** 2).sum(axis=1) / n_hold_safe[sub]
                allowed_v = np.concatenate([allowed[:, sub], can_net[None]])
                pick_v = np.argmin(np.where(allowed_v, np.concatenate([mse[:, sub], mse_v[None]]), np.inf), axis=0)
                use_net = pick_v == 4
                own_coef = np.select([pick_v[:, None] == c + 1 for c in range(3)], list(betas[1][:, sub]), 0.0)
                beta = np.where(use_net[:, None], beta_all, own_coef)
                net_coef[in_linked, a, v] = beta / scales[sub, a]
                net_choice[in_linked, a, v] = np.where(use_net, np.where(rain_better, 5, 4), pick_v)
                rev_beta = np.select(
                    [pick_v[:, None] == c + 1 for c in range(3)] + [use_net[:, None]],
                    list(rev_betas[:, sub]) + [np.where(rain_better[:, None], rev_nbetas[2 * v + 1],
                                                        rev_nbetas[2 * v])], 0.0,
                )
                net_errq[in_linked, a, v] = _winner_errors(
                    pick_v, own_fitted + [fitted], x[sub, n_feat], d_hs, ok[sub], hold[sub], hold_h[sub], lo,
                    squared[sub], n_ok_lead[sub], n_hold[sub], rev_errors(rev_beta, sub, (pick_v > 0) & rev_fit[sub]),
                    h, series.stride,
                )
        # Linked stations whose inputs are all unusable keep their own model as every variant.
        plain = np.setdiff1d(linked, net_sub)
        if plain.size and n_var:
            rows = np.searchsorted(linked, plain)
            net_coef[rows, a, :, :n_own] = coef[plain, a][:, None, :]
            net_choice[rows, a] = choice[plain, a][:, None]
            net_errq[rows, a] = error_q[plain, a][:, None, :]

    net_row = np.full(n_stations, -1, dtype=np.int64)
    net_row[linked] = np.arange(linked.size)
    empty = np.zeros((0, 0), dtype=np.int64)
    fit = ResidualFit(
        lead_steps=leads,
        block_steps=series.block,
        coef=coef,
        error_q_m=error_q,
        choice=choice,
        low_m=low_m,
        high_m=high_m,
        net_row=net_row,
        net_coef=net_coef,
        net_error_q_m=net_errq,
        net_choice=net_choice,
        links=network.inputs.links[linked] if lags is not None and network is not None else empty,
        lag_steps=lags.lag_steps[linked] if lags is not None else empty,
        best_lag_steps=lags.best_lag_steps[linked] if lags is not None else empty,
        status=lags.status[linked] if lags is not None else empty.astype(np.int8),
        correlation=lags.correlation[linked] if lags is not None else empty.astype(float),
    )
    return fit, apply_at_origin(fit, x_raw, origin_ok)


def _winner_errors(
    pick: np.ndarray,
    fitted_by_candidate: list[np.ndarray],
    target: np.ndarray,
    d_h: np.ndarray,
    ok: np.ndarray,
    hold: np.ndarray,
    hold_h: np.ndarray,
    lo: int,
    squared: np.ndarray,
    n_ok_lead: np.ndarray,
    n_hold: np.ndarray,
    rev: np.ndarray | None = None,
    lead_steps: int = 1,
    stride: int = 1,
) -> np.ndarray:
    """Error quantiles (S, 3) of each station's chosen candidate at one lead.

    A fitted model's errors come from the holdout rows and, cross-fitted, from the first
    third (``rev``: errors there, NaN elsewhere, (S, R') for the first R' rows); carrying
    forward has no parameters, so all its rows count. If those stretches were calmer than
    the whole window (where carrying forward's spread is known without a holdout), the next
    days need not be as calm: the band is widened by the ratio of the spreads, never
    narrowed. (Spreads as root mean squares: two sums, where quantiles would cost two sorts.)
    """
    fitted = np.choose(pick[:, None], fitted_by_candidate)
    errors = np.where(ok, target, np.float32(np.nan))
    errors[:, lo:] = np.where(hold_h, d_h - fitted, errors[:, lo:])
    scored = hold.copy()
    if rev is not None and rev.shape[1]:
        width = rev.shape[1]
        crossed = np.isfinite(rev)
        errors[:, :width] = np.where(crossed, rev, errors[:, :width])
        scored[:, :width] |= crossed
    errors[(pick > 0)[:, None] & ~scored] = np.nan
    q, count = nan_quantiles(errors, QUANTILES)
    n_scored = scored.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt((squared.sum(axis=1) / n_ok_lead) / (np.where(scored, squared, 0.0).sum(axis=1) / n_scored))
    ratio = np.where(np.isfinite(ratio) & (ratio > 1.0) & (pick > 0), ratio, 1.0)
    # Few independent errors make quantiles that promise too much: rows closer than a lead share
    # most of their target, so a month of hourly rows holds a few hundred independent errors an
    # hour ahead and about ten two days ahead, and the 5-95 % of ten errors holds a new one
    # 74 % of the time, not 90 %. The band is widened like a prediction interval from an
    # estimated spread: by sqrt(1 + 1/n) t(0.95, n - 1) / z(0.95), n the independent errors.
    n_errors = np.where(pick > 0, n_scored, count) * stride / max(lead_steps, stride)
    ratio = ratio * finite_sample_factor(n_errors)
    q = q[:, 1:2] + (q - q[:, 1:2]) * ratio[:, None]
    return np.where(count[:, None] >= 2, q, np.nan)


def finite_sample_factor(n_independent: np.ndarray) -> np.ndarray:
    """How much wider a 5-95 % band from ``n`` independent errors must be to hold 90 % of new
    ones: ``sqrt(1 + 1/n) t(0.95, n - 1) / z(0.95)`` (1.17 for 10, 1.04 for 40, 1.01 for 100);
    at most 2 (for fewer than about 4 errors the band is a guess either way)."""
    n = np.maximum(np.asarray(n_independent, dtype=float), 2.0)
    factor = np.sqrt(1.0 + 1.0 / n) * student_t.ppf(0.95, n - 1.0) / _Z95
    return np.minimum(np.where(np.isfinite(factor), factor, 2.0), 2.0)


def apply_at_origin(fit: ResidualFit, x_raw: np.ndarray, origin_ok: np.ndarray) -> ResidualState:
    """The fitted models applied to the features at an origin.

    Parameters
    ----------
    fit : ResidualFit
    x_raw : ndarray, (S, A, P + C)
        Features at the origin in raw units: the own ones, then the routed input changes
        (NaN where an input is not known there).
    origin_ok : ndarray of bool, (S,)
        Stations whose own features are all known at the origin; the others carry the
        residual forward (band from the one-step spread).

    Returns
    -------
    ResidualState
    """
    n_stations, n_anchor = fit.choice.shape
    n_own = fit.n_own
    x_own = np.nan_to_num(x_raw[..., :n_own])
    change = np.clip(np.einsum("sap,sap->sa", fit.coef, x_own), fit.low_m, fit.high_m)
    error_q = fit.error_q_m.copy()
    choice = fit.choice.copy()
    variant = np.full((n_stations, n_anchor), -1, dtype=np.int8)
    n_links = fit.links.shape[1]
    available = np.ones((n_stations, n_links, n_anchor), dtype=bool)
    rows = np.nonzero(fit.net_row >= 0)[0]
    if rows.size and n_links:
        net = fit.net_row[rows]
        n_net = x_raw.shape[-1] - n_own
        groups = n_net // n_links if n_links else 0
        routed = x_raw[rows, :, n_own:].reshape(rows.size, n_anchor, groups, n_links)
        used = fit.status[net] == 0  # _network.STATUS_USED
        # A link is available at a lead when every routed change it feeds is known there.
        known = np.isfinite(routed).all(axis=2) | ~used[:, None, :]  # (N, A, K)
        available[rows] = known.transpose(0, 2, 1)
        missing = ~known
        n_missing = missing.sum(axis=2)
        var = np.where(n_missing == 0, 0, np.where(n_missing == 1, 1 + np.argmax(missing, axis=2), -1))
        var = np.minimum(var, fit.net_coef.shape[2] - 1)
        serve = var >= 0
        v = np.maximum(var, 0)
        c = np.take_along_axis(fit.net_coef[net], v[:, :, None, None], axis=2)[:, :, 0]  # (N, A, P + C)
        x_all = np.nan_to_num(x_raw[rows, :, : c.shape[-1]])
        net_change = np.clip(np.einsum("nap,nap->na", c, x_all), fit.low_m[rows], fit.high_m[rows])
        net_q = np.take_along_axis(fit.net_error_q_m[net], v[:, :, None, None], axis=2)[:, :, 0]
        net_choice = np.take_along_axis(fit.net_choice[net], v[:, :, None], axis=2)[:, :, 0]
        change[rows] = np.where(serve, net_change, change[rows])
        error_q[rows] = np.where(serve[..., None], net_q, error_q[rows])
        choice[rows] = np.where(serve, net_choice, choice[rows])
        variant[rows] = np.where(serve, var, -1)
    change[:, 0] = 0.0
    # Own features unknown at this origin (a gauge back after a long outage): carry forward.
    bad = ~origin_ok
    change[bad] = 0.0
    error_q[bad, 1:] = np.where(choice[bad, 1:, None] == CHOICE_PERSISTENCE, error_q[bad, 1:], np.nan)
    choice[bad] = CHOICE_PERSISTENCE
    variant[bad] = -1
    return ResidualState(change_m=change, error_q_m=error_q, choice=choice, variant=variant, available=available)


def origin_features(
    residual_m: np.ndarray,
    rain_mm: np.ndarray | None,
    tide_m: np.ndarray,
    tidal: np.ndarray,
    fit: ResidualFit,
    dt_s: float,
    network: NetworkData | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The features a fitted model reads, at each station's last observation in a recent window.

    Parameters
    ----------
    residual_m : ndarray, (S, T)
        Level minus the stored tide over the recent window, metres; NaN where missing.
    rain_mm : ndarray, (S, T) or None
    tide_m : ndarray, (S, T + L)
        The stored tide over the window, continued to the longest lead.
    tidal : ndarray of bool, (S,)
    fit : ResidualFit
    dt_s : float
    network : NetworkData, optional

    Returns
    -------
    x_raw : ndarray, (S, A, P + C)
    origin_ok : ndarray of bool, (S,)
    """
    leads = fit.lead_steps
    series = _Series(residual_m, rain_mm, tide_m, dt_s, MAX_ROWS, int(leads[-1]), origin_only=True,
                     block=fit.block_steps)
    base_cols, _, _ = _own_features(series, tidal)
    origin_ok = series.any_obs.copy()
    for col in base_cols:
        origin_ok &= np.isfinite(col[:, -1])
    n_stations = residual_m.shape[0]
    lags = None
    if network is not None and fit.links.shape[1]:
        rows = np.nonzero(fit.net_row >= 0)[0]
        n_links = fit.links.shape[1]

        def spread(arr: np.ndarray, fill) -> np.ndarray:
            out = np.full((n_stations, n_links), fill, dtype=arr.dtype)
            out[rows] = arr[fit.net_row[rows]]
            return out

        lags = Lags(spread(fit.lag_steps, 0), spread(fit.correlation, np.nan), spread(fit.best_lag_steps, 0),
                    spread(fit.status, 5))
    net = _network_for(series, network, lags)
    n_net = 0 if net is None else net.n_columns
    n_own = len(base_cols) + _N_EXTRA
    x_raw = np.zeros((n_stations, leads.size, n_own + n_net))
    for k, col in enumerate(base_cols):
        x_raw[:, :, k] = np.where(origin_ok, col[:, -1], 0.0)[:, None]
    for a in range(1, leads.size):
        h = int(leads[a])
        for e, col in enumerate(series.extra(h, tidal)):
            x_raw[:, a, len(base_cols) + e] = np.where(origin_ok, col[:, -1], 0.0)
        if net is not None and n_net:
            x_raw[:, a, n_own:] = net.columns(h)[:, :, -1]
    return x_raw, origin_ok


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


def _ridge_solve(
    gram: np.ndarray,
    rhs: np.ndarray,
    n_rows: np.ndarray,
    column_sets: np.ndarray,
    column_ridge: np.ndarray | None = None
) -> np.ndarray:
    """Ridge solutions for every fit and column subset; left-out columns get coefficient 0.

    Parameters
    ----------
    gram : ndarray, (F, S, P, P)
    rhs : ndarray, (F, S, P)
    n_rows : ndarray, (F, S)
        Rows behind each Gram (the ridge grows with them).
    column_sets : ndarray of bool, (C, P)
    column_ridge : ndarray, (P,), optional
        Multiplier of the ridge per column (1 by default).

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
        a[..., diag, diag] += ridge if column_ridge is None else ridge * column_ridge[cols]
        # One LAPACK call over the whole batch of small systems.
        out[:, c, :, cols] = np.moveaxis(np.linalg.solve(a, rhs[..., cols][..., None])[..., 0], -1, 0)
    return out
