"""The non-tidal part: a direct multi-horizon ARX model of the residual, with its errors.

After the tide is removed, what is left (``r = level - tide``) is the river
stage, storm surge, rain run-off and whatever the tide fit missed. For each of
a few anchor leads ``h`` (0.5 h ... 72 h) one linear model per station predicts
the *change* ``r(t + h) - r(t)`` from what is known at ``t``:

* ``r(t) - r(t - 1 h)``, ``r(t - 1 h) - r(t - 3 h)``, ``r(t - 3 h) - r(t - 6 h)``:
  how the water is moving now (lets a rise continue, a fall level out);
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
refitted on the whole window.

Cost: features are gathered only at the fitted rows (every ``stride``-th grid
time, at most ``max_rows``, 720 by default) from cumulative sums, so a 30-day, 10-minute
window costs a few hundred rows per station and lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models._arrays import forward_fill, nan_quantiles

ANCHOR_LEADS_H = (0.5, 1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0)
"""Leads the direct models are fitted at; others are interpolated."""

_LAGS_H = (1.0, 3.0, 6.0)
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


class _Series:
    """One window's arrays, prepared once, gathered at any indices.

    ``idx`` is either shared by all stations, shape (R,), or one per station,
    shape (S, 1); out-of-range indices give NaN.
    """

    def __init__(self, residual_m: np.ndarray, rain_mm: np.ndarray | None, tide_m: np.ndarray, dt_s: float):
        self.n_stations, self.n_times = residual_m.shape
        self.filled, _ = forward_fill(residual_m)
        self.residual = residual_m
        finite = np.isfinite(residual_m)
        self.csum = _cumsum0(np.where(finite, residual_m, 0.0))
        self.ccount = _cumsum0(finite)
        self.rain_csum = (
            np.zeros((self.n_stations, self.n_times + 1))
            if rain_mm is None
            else _cumsum0(np.where(np.isfinite(rain_mm), rain_mm, 0.0))
        )
        self.tide = tide_m
        self.steps = lambda hours: max(int(round(hours * 3600.0 / dt_s)), 1)
        self._cycle_means: dict[int, np.ndarray] = {}
        self._filled0: tuple[np.ndarray, np.ndarray] | None = None

    def take(self, arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
        n = arr.shape[1]
        valid = (idx >= 0) & (idx < n)
        safe = np.clip(idx, 0, n - 1)
        if idx.ndim == 1:
            out = arr[:, safe]
            if not valid.all():
                out[:, ~valid] = np.nan
            return out
        out = np.take_along_axis(arr, np.broadcast_to(safe, (arr.shape[0], safe.shape[1])), axis=1)
        return np.where(valid, out, np.nan)

    def base(self, idx: np.ndarray) -> np.ndarray:
        """Lead-independent features at ``idx``: (S, R, 9)."""
        now = self.take(self.filled, idx)
        points = [now] + [self.take(self.filled, idx - self.steps(h)) for h in _LAGS_H]
        cols = [np.ones_like(now)]
        cols += [points[i] - points[i + 1] for i in range(len(_LAGS_H))]
        for hours in _MEAN_WINDOWS_H:
            # Mean of the observed samples in (t - window, t], from cumulative sums.
            hi, lo = idx + 1, np.maximum(idx + 1 - self.steps(hours), 0)
            total = self.take(self.csum, hi) - self.take(self.csum, lo)
            count = self.take(self.ccount, hi) - self.take(self.ccount, lo)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols.append(now - np.where(count > 0, total / count, np.nan))
        # The trend of the tidally averaged residual (means over one M2 period), free of the
        # tide-fit errors that dominate short differences: where a surge or freshet is heading.
        tidal_mean = [self.window_mean(idx - self.steps(h), self.steps(_M2_PERIOD_H)) for h in (0.0, 3.0, 12.0)]
        cols += [tidal_mean[0] - tidal_mean[1], tidal_mean[0] - tidal_mean[2]]
        for hours in _RAIN_WINDOWS_H:
            hi, lo = idx + 1, np.maximum(idx + 1 - self.steps(hours), 0)
            cols.append(self.take(self.rain_csum, hi) - self.take(self.rain_csum, lo))
        return np.stack(cols, axis=-1)

    def window_mean(self, idx: np.ndarray, width: int) -> np.ndarray:
        """Mean of the observed residual in (idx - width, idx], from cumulative sums."""
        hi, lo = idx + 1, np.maximum(idx + 1 - width, 0)
        total = self.take(self.csum, hi) - self.take(self.csum, lo)
        count = self.take(self.ccount, hi) - self.take(self.ccount, lo)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / count, np.nan)

    def cycle_mean(self, period: int) -> np.ndarray:
        """Mean of the filled residual at t, t - P, t - 2P, ... (``_ANALOG_CYCLES`` points), (S, T)."""
        if period not in self._cycle_means:
            if self._filled0 is None:
                known = np.isfinite(self.filled)
                self._filled0 = (np.where(known, self.filled, 0.0), known.astype(np.float64))
            filled0, known = self._filled0
            total = filled0.copy()
            count = known.copy()
            for k in range(1, _ANALOG_CYCLES):  # in-place shifted adds, no temporaries
                lag = k * period
                if lag >= self.n_times:
                    break
                total[:, lag:] += filled0[:, :-lag]
                count[:, lag:] += known[:, :-lag]
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(total, count, out=total)
            total[count == 0] = np.nan
            self._cycle_means[period] = total
        return self._cycle_means[period]

    def extra(self, idx: np.ndarray, h: int, tidal: np.ndarray) -> np.ndarray:
        """Lead-specific features at ``idx`` for lead ``h`` steps: (S, R, 3)."""
        cols = []
        for period_h in _ANALOG_PERIODS_H:
            period = self.steps(period_h)
            first_k = max(int(np.ceil(h / period)), 1)
            means = self.cycle_mean(period)
            # Mean change over [t - kP, t + h - kP] for the last cycles wholly in the past.
            analog = self.take(means, idx + h - first_k * period) - self.take(means, idx - first_k * period)
            cols.append(np.where(tidal[:, None] & np.isfinite(analog), analog, 0.0))
        change = self.take(self.tide, idx + h) - self.take(self.tide, idx)
        cols.append(np.nan_to_num(change))
        return np.stack(cols, axis=-1)


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
    series = _Series(residual_m, rain_mm, tide_m, dt_s)
    observed = np.isfinite(residual_m)
    any_obs = observed.any(axis=1)
    last = np.where(any_obs, n_times - 1 - np.argmax(observed[:, ::-1], axis=1), 0)
    first = np.argmax(observed, axis=1)

    # Rows: every `stride`-th grid time; the row must be observed with all lags known.
    stride = max(int(np.ceil(n_times / max(max_rows, 1))), 1)
    row_t = np.arange(n_times - 1, -1, -stride)[::-1]
    x_base = series.base(row_t)  # (S, R, P0)
    row_ok = observed[:, row_t] & np.isfinite(x_base).all(axis=-1)
    x_base = np.where(row_ok[..., None], x_base, 0.0)
    r_now = np.where(row_ok, residual_m[:, row_t], 0.0)
    origin_idx = last[:, None]
    x0_origin = series.base(origin_idx)[:, 0, :]
    origin_ok = any_obs & np.isfinite(x0_origin).all(axis=1)
    x0_origin = np.where(origin_ok[:, None], x0_origin, 0.0)
    n_ok = np.maximum(row_ok.sum(axis=1), 1)
    # Standardise so one ridge fits all features and units; single precision for the row
    # algebra: standardised, ridge-conditioned features lose nothing that matters at
    # millimetres, and memory traffic halves.
    base_scale = _scale(x_base, n_ok)
    n_base = x_base.shape[-1]
    x = np.empty(x_base.shape[:2] + (n_base + _N_EXTRA,), dtype=np.float32)  # lead-specific columns last
    x[..., :n_base] = x_base / base_scale[:, None, :]
    del x_base
    x0_origin = x0_origin / base_scale

    # Time split per station: holdout = rows in the last third of its observed span.
    split_t = first + ((last - first) * (1.0 - _HOLDOUT_FRACTION)).astype(int)

    change = np.zeros((n_stations, n_anchor))
    uses_arx = np.zeros((n_stations, n_anchor), dtype=bool)
    uses_rain = np.zeros((n_stations, n_anchor), dtype=bool)
    rain_cols = np.arange(n_base - len(_RAIN_WINDOWS_H), n_base)  # base() puts rain last
    error_q = np.full((n_stations, n_anchor, QUANTILES.size), np.nan)
    error_q[:, 0, :] = np.where(any_obs[:, None], 0.0, np.nan)

    # A loop over ~9 anchor leads, never over stations.
    for a in range(1, n_anchor):
        h = int(leads[a])
        extra = np.where(row_ok[..., None], series.extra(row_t, h, tidal), 0.0)
        extra_scale = _scale(extra, n_ok)
        x[..., n_base:] = extra / extra_scale[:, None, :]
        extra_origin = series.extra(origin_idx, h, tidal)[:, 0, :] / extra_scale
        x_origin = np.where(origin_ok[:, None], np.concatenate([x0_origin, extra_origin], axis=-1), 0.0)
        n_feat = x.shape[-1]

        target = series.take(residual_m, row_t + h)
        ok = row_ok & np.isfinite(target)
        d = np.where(ok, target - r_now, 0.0).astype(np.float32)
        train = ok & ((row_t + h)[None, :] < split_t[:, None])
        hold = ok & (row_t[None, :] >= split_t[:, None])
        n_train = train.sum(axis=1)
        n_hold = hold.sum(axis=1)
        can_fit = (n_train >= 3 * n_feat) & (n_hold >= n_feat) & origin_ok

        # Three candidates per station and lead, chosen on the holdout: carry the residual
        # forward, the ARX without rain, the ARX with rain (a distant or unrepresentative rain
        # gauge can make a forecast worse; the holdout says whether it does here).
        without_rain = np.ones(n_feat, dtype=bool)
        without_rain[rain_cols] = False
        fits = _ridge_fits(x, d, train, ok, [without_rain, np.ones(n_feat, dtype=bool)])
        n_hold_safe = np.maximum(n_hold, 1)
        # Holdout rows all lie at or after the earliest station's split: score only that slice.
        lo = int(np.argmax(hold.any(axis=0))) if hold.any() else x.shape[1]
        x_h, d_h, hold_h = x[:, lo:], d[:, lo:], hold[:, lo:]
        mse = [(np.where(hold_h, d_h, 0.0) ** 2).sum(axis=1) / n_hold_safe]
        for beta_train, _ in fits:
            fitted = np.matmul(x_h, beta_train.astype(np.float32)[..., None])[..., 0]
            mse.append((np.where(hold_h, d_h - fitted, 0.0) ** 2).sum(axis=1) / n_hold_safe)
        allowed = np.stack([np.ones(n_stations, dtype=bool), can_fit, can_fit & has_rain])
        pick = np.argmin(np.where(allowed, np.stack(mse), np.inf), axis=0)  # ties keep the simpler
        beta_train = np.select([pick[:, None] == 1, pick[:, None] == 2], [fits[0][0], fits[1][0]], 0.0)
        beta_all = np.select([pick[:, None] == 1, pick[:, None] == 2], [fits[0][1], fits[1][1]], 0.0)
        change[:, a] = np.einsum("sp,sp->s", x_origin, beta_all)
        uses_arx[:, a] = pick > 0
        uses_rain[:, a] = pick == 2
        # The winner's holdout errors; carrying forward has no parameters, so all its rows count.
        fitted = np.matmul(x_h, beta_train.astype(np.float32)[..., None])[..., 0]
        errors = np.where(ok, d, np.nan)
        errors[:, lo:] = np.where(hold_h, d_h - fitted, errors[:, lo:])
        errors[(pick > 0)[:, None] & ~hold] = np.nan
        q, count = nan_quantiles(errors, QUANTILES)
        error_q[:, a, :] = np.where(count[:, None] >= 2, q, np.nan)
    return ResidualFit(
        lead_steps=leads,
        change_m=change,
        error_q_m=error_q,
        uses_arx=uses_arx,
        uses_rain=uses_rain,
    )


def _scale(x: np.ndarray, n_rows: np.ndarray) -> np.ndarray:
    """Root mean square of each feature over the usable rows (S, P); 1 for the intercept and constants."""
    scale = np.sqrt(np.einsum("srp,srp->sp", x, x) / n_rows[:, None])
    return np.where(scale > 1e-12, scale, 1.0)


def _ridge_fits(
    x: np.ndarray, d: np.ndarray, train: np.ndarray, rows: np.ndarray, column_sets: list[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-station ridge regressions of ``d`` on subsets of the columns of ``x``.

    For each boolean column set, one fit on the training rows and one on all
    usable rows; left-out columns get coefficient 0. Training rows are a time
    prefix of all rows, so the shared prefix's Gram matrix is computed once,
    and every column set reuses the same Gram matrices: the fits cost little
    more than one pass over the rows.

    Returns
    -------
    list of (beta_train, beta_all), each ndarray (S, P)
    """
    n_feat = x.shape[-1]
    # Rows before `cut` are training rows wherever they are usable, for every station.
    not_train = rows & ~train
    cut = int(np.argmax(not_train.any(axis=0))) if not_train.any() else x.shape[1]
    last_train = int(np.nonzero(train.any(axis=0))[0].max(initial=-1)) + 1

    def gram_rhs(weight: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        if hi <= lo:
            return np.zeros((x.shape[0], n_feat, n_feat)), np.zeros((x.shape[0], n_feat))
        xw = np.where(weight[:, lo:hi, None], x[:, lo:hi], 0.0)
        xt = xw.transpose(0, 2, 1)
        return (
            np.matmul(xt, xw).astype(np.float64),
            np.matmul(xt, d[:, lo:hi, None])[..., 0].astype(np.float64),
        )

    g_pre, b_pre = gram_rhs(rows, 0, cut)
    g_tr, b_tr = gram_rhs(train, cut, max(last_train, cut))
    g_rest, b_rest = gram_rhs(rows, cut, x.shape[1])
    diag = np.arange(n_feat)

    def solve(gram: np.ndarray, rhs: np.ndarray, n_rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
        gram = np.where(keep[:, None] & keep[None, :], gram, 0.0)
        gram[:, diag, diag] += np.where(keep, _RIDGE * np.maximum(n_rows, 1.0)[:, None] + 1e-12, 1.0)
        return np.linalg.solve(gram, np.where(keep, rhs, 0.0)[..., None])[..., 0]

    n_train, n_all = train.sum(axis=1), rows.sum(axis=1)
    return [
        (solve(g_pre + g_tr, b_pre + b_tr, n_train, keep), solve(g_pre + g_rest, b_pre + b_rest, n_all, keep))
        for keep in column_sets
    ]
