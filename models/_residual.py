"""The non-tidal part: a direct multi-horizon ARX model of the residual, with its errors.

After the tide is removed, what is left (``r = level - tide``) is the river
stage, storm surge, rain run-off and whatever the tide fit missed. For each of
a few anchor leads ``h`` (0.5 h ... 72 h) one linear model per station predicts
the *change* ``r(t + h) - r(t)`` from what is known at ``t``:

* ``r(t) - r(t - 1 h)``, ``r(t - 1 h) - r(t - 3 h)``, ``r(t - 3 h) - r(t - 6 h)``:
  how the water is moving now (lets a rise continue, a fall level out);
* ``r(t) - mean r over the last 24 h`` and ``... over the last 7 days``: how far
  it stands from its recent normal (surges and freshets relax back);
* rain through three linear reservoirs (time constants 3 h, 12 h, 48 h, in
  mm/h): rain already fallen that has not yet reached the gauge, so a storm
  upstream raises the forecast before the gauge rises.

Direct (one model per lead) rather than iterating a one-step model: errors do
not compound and each lead is fitted for the loss it is scored on. Leads
between anchors are interpolated linearly.

Honest errors: every station's window is split in time. The model fitted on
the first two thirds predicts the last third (targets never overlap), giving
out-of-sample errors per lead; a lead whose ARX does not beat carrying the
residual forward on that holdout falls back to carrying it forward (whose
errors need no holdout: it has no parameters). The final coefficients are
refitted on the whole window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from models._arrays import causal_mean, forward_fill, nan_quantiles

ANCHOR_LEADS_H = (0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 9.0, 12.0, 18.0, 24.0, 36.0, 48.0, 72.0)
"""Leads the direct models are fitted at; others are interpolated."""

_LAGS_H = (1.0, 3.0, 6.0)
_MEAN_WINDOWS_H = (24.0, 168.0)
_RAIN_TIME_CONSTANTS_H = (3.0, 12.0, 48.0)
_HOLDOUT_FRACTION = 1.0 / 3.0
_MAX_ROWS = 1500  # rows per fit after thinning: neighbouring 10-min rows say almost the same
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
    has_rain : ndarray of bool, (S,)
        Whether the station had rain input in the window.
    """

    lead_steps: np.ndarray
    change_m: np.ndarray
    error_q_m: np.ndarray
    uses_arx: np.ndarray
    has_rain: np.ndarray


def anchor_steps(dt_s: float, max_lead_s: float) -> np.ndarray:
    """Anchor leads in whole grid steps up to ``max_lead_s`` (always including it), with 0 first."""
    hours = [h for h in ANCHOR_LEADS_H if h * 3600.0 < max_lead_s] + [max_lead_s / 3600.0]
    steps = np.unique(np.maximum(np.round(np.array(hours) * 3600.0 / dt_s), 1).astype(int))
    return np.concatenate([[0], steps])


def _features(residual_m: np.ndarray, rain_mm: np.ndarray | None, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Features known at each grid time, shape (S, T, P), and whether rain was available (S,)."""
    filled, _ = forward_fill(residual_m)
    n_stations, n_times = residual_m.shape
    lag = [max(int(round(h * 3600.0 / dt_s)), 1) for h in _LAGS_H]

    def lagged(k: int) -> np.ndarray:
        out = np.full_like(filled, np.nan)
        out[:, k:] = filled[:, : n_times - k]
        return out

    columns = [np.ones_like(filled)]
    points = [filled] + [lagged(k) for k in lag]
    columns += [points[i] - points[i + 1] for i in range(len(lag))]
    for hours in _MEAN_WINDOWS_H:
        columns.append(filled - causal_mean(residual_m, max(int(round(hours * 3600.0 / dt_s)), 1)))
    if rain_mm is None:
        rain = np.zeros_like(filled)
    else:
        rain = np.where(np.isfinite(rain_mm), rain_mm, 0.0) * (3600.0 / dt_s)  # mm/h
    has_rain = (
        np.zeros(n_stations, dtype=bool) if rain_mm is None else np.isfinite(rain_mm).any(axis=1)
    )
    for tau_h in _RAIN_TIME_CONSTANTS_H:
        alpha = np.exp(-dt_s / (tau_h * 3600.0))
        columns.append(lfilter([1.0 - alpha], [1.0, -alpha], rain, axis=1))
    return np.stack(columns, axis=-1), has_rain


def fit_residual(
    residual_m: np.ndarray,
    rain_mm: np.ndarray | None,
    *,
    dt_s: float,
    max_lead_s: float,
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

    Returns
    -------
    ResidualFit
    """
    n_stations, n_times = residual_m.shape
    leads = anchor_steps(dt_s, max_lead_s)
    n_anchor = leads.size
    observed = np.isfinite(residual_m)
    features, has_rain = _features(residual_m, rain_mm, dt_s)
    n_feat = features.shape[-1]
    last = n_times - 1 - np.argmax(observed[:, ::-1], axis=1)
    any_obs = observed.any(axis=1)

    # Rows: every `stride`-th grid time; the row must be observed with all lags known.
    stride = max(n_times // _MAX_ROWS, 1)
    row_t = np.arange(n_times - 1, -1, -stride)[::-1]
    x = features[:, row_t, :]  # (S, R, P)
    row_ok = observed[:, row_t] & np.isfinite(x).all(axis=-1)
    x = np.where(row_ok[..., None], x, 0.0)
    r_now = np.where(row_ok, residual_m[:, row_t], 0.0)

    # Standardise so one ridge fits all features and units.
    n_ok = np.maximum(row_ok.sum(axis=1), 1)
    scale = np.sqrt((x**2).sum(axis=1) / n_ok[:, None])
    scale[:, 0] = 1.0
    scale = np.where(scale > 1e-12, scale, 1.0)
    x = x / scale[:, None, :]

    # Time split per station: holdout = rows in the last third of its observed span.
    first = np.argmax(observed, axis=1)
    split_t = first + ((last - first) * (1.0 - _HOLDOUT_FRACTION)).astype(int)

    change = np.zeros((n_stations, n_anchor))
    uses_arx = np.zeros((n_stations, n_anchor), dtype=bool)
    error_q = np.full((n_stations, n_anchor, QUANTILES.size), np.nan)
    error_q[:, 0, :] = np.where(any_obs[:, None], 0.0, np.nan)
    x_origin = np.where(any_obs[:, None], features[np.arange(n_stations), last, :], np.nan)
    x_origin = x_origin / scale
    origin_ok = np.isfinite(x_origin).all(axis=1)
    x_origin = np.where(origin_ok[:, None], x_origin, 0.0)
    diag = np.arange(n_feat)

    # A loop over ~13 anchor leads, never over stations.
    for a in range(1, n_anchor):
        h = int(leads[a])
        target_t = row_t + h
        inside = target_t < n_times
        target = np.full((n_stations, row_t.size), np.nan)
        target[:, inside] = residual_m[:, target_t[inside]]
        ok = row_ok & np.isfinite(target)
        d = np.where(ok, target - r_now, 0.0)
        train = ok & (target_t[None, :] < split_t[:, None])
        hold = ok & (row_t[None, :] >= split_t[:, None])

        def solve(weight: np.ndarray) -> np.ndarray:
            xw = x * weight[..., None]
            gram = np.matmul(xw.transpose(0, 2, 1), x)
            rhs = np.einsum("srp,sr->sp", xw, d)
            gram[:, diag, diag] += _RIDGE * np.maximum(weight.sum(axis=1), 1.0)[:, None] + 1e-12
            return np.linalg.solve(gram, rhs[..., None])[..., 0]

        n_train = train.sum(axis=1)
        n_hold = hold.sum(axis=1)
        can_fit = (n_train >= 3 * n_feat) & (n_hold >= n_feat) & origin_ok
        beta_train = solve(train.astype(float))
        err_arx = np.where(hold, d - np.einsum("srp,sp->sr", x, beta_train), np.nan)
        err_cf_hold = np.where(hold, d, np.nan)
        n_hold_safe = np.maximum(n_hold, 1)
        mse_arx = (np.where(hold, err_arx, 0.0) ** 2).sum(axis=1) / n_hold_safe
        mse_cf = (np.where(hold, err_cf_hold, 0.0) ** 2).sum(axis=1) / n_hold_safe
        choose = can_fit & (mse_arx < mse_cf)
        beta_all = solve(ok.astype(float))
        change[:, a] = np.where(choose, np.einsum("sp,sp->s", x_origin, beta_all), 0.0)
        uses_arx[:, a] = choose
        # Carrying forward has no parameters: all its rows are out-of-sample.
        errors = np.where(choose[:, None], err_arx, np.where(ok, d, np.nan))
        q, count = nan_quantiles(errors, QUANTILES)
        error_q[:, a, :] = np.where(count[:, None] >= 2, q, np.nan)
    return ResidualFit(
        lead_steps=leads,
        change_m=change,
        error_q_m=error_q,
        uses_arx=uses_arx,
        has_rain=has_rain,
    )
