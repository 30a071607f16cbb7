"""Rolling-origin evaluation of the forecaster and baselines on one gauge's record.

Pure: arrays in, a plain dict of scores out. ``cli/backtest.py`` reads the CSV
files, calls :func:`rolling_origin_backtest` and writes the JSON.

At every origin (hourly by default) the models see only the data up to and
including the origin, exactly what the live system would have had, and
forecast each horizon. The forecaster runs as in production
(:func:`models._rolling.rolling_forecasts`): fitted once a day, each fit
moved to every origin of the following day; ``refit_every_s=None`` refits at
every origin instead, for comparison.

Models scored (same origins, same targets):

``floodwatch``           the forecaster's median
``persistence``          the last observed level carried forward
``tide_only``            the harmonic prediction alone (mean + harmonics)
``tide_plus_residual``   harmonic prediction plus the residual observed at the
                         origin, carried forward unchanged
``upstream_regression``  (with upstream gauges) a plain least-squares regression,
                         refitted at every origin on the window, of the change at
                         each horizon on the upstream gauges' changes over the
                         last 1, 6 and 24 h: the reference of issue 13
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from floodwatch.errors import ForecastError
from floodwatch.models._forecast import DEFAULT_WINDOW_S
from floodwatch.models._rolling import lag_summary, rolling_forecasts

MODELS = ("floodwatch", "persistence", "tide_only", "tide_plus_residual")
UPSTREAM_BASELINE = "upstream_regression"
REGRESSION_CHANGES_H = (1.0, 6.0, 24.0)
"""The upstream regression's inputs: each upstream gauge's change over the last 1, 6 and 24 h."""


def _origin_indices(t_s: np.ndarray, origin_every_s: float, warmup_s: float, max_lead_steps: int) -> np.ndarray:
    """Grid indices of origins: on whole multiples of ``origin_every_s``, after the warm-up,
    with the longest horizon still inside the record."""
    dt_s = float(t_s[1] - t_s[0])
    stride = max(int(round(origin_every_s / dt_s)), 1)
    first = int(np.searchsorted(t_s, t_s[0] + warmup_s))
    candidates = np.arange(first, t_s.size - max_lead_steps)
    # On the clock (whole hours for hourly origins), so runs on different files line up.
    on_clock = np.mod(np.round(t_s[candidates] / dt_s).astype(np.int64), stride) == 0
    return candidates[on_clock]


def upstream_regression(
    t_s: np.ndarray,
    level_m: np.ndarray,
    upstream_m: np.ndarray,
    origins: np.ndarray,
    lead_steps: Sequence[int],
    window_s: float,
) -> np.ndarray:
    """The plain upstream regression's forecasts: at each origin and lead, least squares on the
    window's hourly rows of the change over the lead on the upstream gauges' recent changes.

    Parameters
    ----------
    t_s : ndarray, (T,)
    level_m : ndarray, (T,)
    upstream_m : ndarray, (U, T)
        Upstream gauges on the same grid.
    origins : ndarray of int, (O,)
        Grid indices of the origins.
    lead_steps : sequence of int, (L,)
        Leads in grid steps.
    window_s : float
        Rows in ``(origin - window_s, origin - lead]``: targets known at the origin.

    Returns
    -------
    ndarray, (O, L)
        Forecast levels, metres; where a gauge's changes are missing at an origin (or the
        window is too short) the last level carried forward, as such a regression would fall back.
    """
    dt_s = float(t_s[1] - t_s[0])
    n_times = t_s.size
    steps = [max(int(round(h * 3600.0 / dt_s)), 1) for h in REGRESSION_CHANGES_H]

    def lagged(series: np.ndarray, k: int) -> np.ndarray:
        out = np.full(n_times, np.nan)
        out[k:] = series[: n_times - k]
        return out

    cols = [np.ones(n_times)]
    for u in np.atleast_2d(upstream_m):
        cols += [u - lagged(u, k) for k in steps]
    x = np.stack(cols, axis=1)  # (T, P)
    n_feat = x.shape[1]
    hour = max(int(round(3600.0 / dt_s)), 1)
    rows = np.nonzero(np.mod(np.round(t_s / dt_s).astype(np.int64), hour) == 0)[0]
    width = int(round(window_s / dt_s))
    out = np.empty((origins.size, len(lead_steps)))
    for j, h in enumerate(lead_steps):  # a few leads, not origins
        target = np.full(n_times, np.nan)
        target[: n_times - h] = level_m[h:] - level_m[: n_times - h]
        z = np.concatenate([x, target[:, None]], axis=1)[rows]  # (R, P + 1)
        ok = np.isfinite(z).all(axis=1)
        z = np.where(ok[:, None], z, 0.0)
        # Prefix sums of the rows' outer products: a window's normal equations are one difference.
        outer = np.cumsum(z[:, :, None] * z[:, None, :], axis=0)
        outer = np.concatenate([np.zeros((1, n_feat + 1, n_feat + 1)), outer])
        count = np.concatenate([[0], np.cumsum(ok)])
        hi = np.searchsorted(rows, origins - h, side="right")  # rows <= origin - h
        lo = np.searchsorted(rows, origins - width, side="right")  # rows > origin - window
        gram = outer[hi] - outer[lo]
        n_rows = count[hi] - count[lo]
        a = gram[:, :n_feat, :n_feat] + 1e-9 * np.eye(n_feat)[None] * np.maximum(n_rows, 1)[:, None, None]
        beta = np.linalg.solve(a, gram[:, :n_feat, n_feat][..., None])[..., 0]
        x0 = x[origins]
        change = np.einsum("op,op->o", x0, beta)
        usable = np.isfinite(change) & (n_rows >= 2 * n_feat)
        out[:, j] = level_m[origins] + np.where(usable, change, 0.0)
    return out


def rolling_origin_backtest(
    t_s: np.ndarray,
    level_m: np.ndarray,
    rain_mm: np.ndarray | None = None,
    *,
    horizons_h: Sequence[float] = (1.0, 3.0, 6.0),
    threshold_m: float | None = None,
    origin_every_s: float = 3600.0,
    window_s: float = DEFAULT_WINDOW_S,
    warmup_s: float | None = None,
    refit_every_s: float | None = 86_400.0,
    upstream_m: np.ndarray | None = None,
    predicted_m: np.ndarray | None = None,
    input_names: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Score forecaster and baselines from many origins with no look-ahead.

    Parameters
    ----------
    t_s : ndarray, (T,)
        Regular grid, UTC epoch seconds.
    level_m : ndarray, (T,)
        Observed level, metres; NaN where missing.
    rain_mm : ndarray, (T,), optional
        Rain credited to the step ending at each grid time (when it was reported), mm.
    horizons_h : sequence of float
        Lead times to score, hours; each is rounded to whole grid steps.
    threshold_m : float, optional
        A warning level: also score crossing warnings against it.
    origin_every_s : float
        Spacing of origins, seconds (hourly by default).
    window_s : float
        Fit window before each fit origin, seconds.
    warmup_s : float, optional
        Record before the first origin, seconds; defaults to ``window_s`` so every
        scored forecast had a full window.
    refit_every_s : float or None
        The forecaster is fitted at whole multiples of this on the clock (daily, as in
        production) and serves the origins until the next fit; None refits at every origin.
    upstream_m : ndarray, (U1, T), optional
        Upstream gauges on the same grid; also scores ``upstream_regression``.
    predicted_m : ndarray, (U2, T2), optional
        Predicted series on the grid continued past its end (``T2 >= T``).
    input_names : sequence of str, optional
        Names of the upstream then the predicted series (for ``input_lags``).
    progress : callable(done, total), optional
        Called after each batch of origins.
    keep_predictions : bool
        Also return ``origins_s`` (O,) and ``predictions`` (model -> (O, max lead steps)
        array, metres), for inspection; not JSON-serialisable.

    Returns
    -------
    dict
        ``horizons_h``, ``n_origins``, ``n_scored`` (per horizon), ``rmse_m`` and
        ``mae_m`` (model -> list per horizon), ``band_coverage`` (share of targets
        inside floodwatch's 5-95 % band, about 0.9 when the band is honest) and
        ``band_width_m`` (its mean width) per horizon, ``model_names`` (how often
        each floodwatch model served), ``refit_every_h`` and ``n_fits``; with inputs
        ``input_lags`` (per input: the travel times chosen, how often used, why not);
        and with a threshold ``hit_rate``, ``false_alarm_ratio`` (model -> list per
        horizon), ``median_lead_time_h`` and ``n_crossings``.
    """
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float)
    if t_s.ndim != 1 or level_m.shape != t_s.shape or t_s.size < 3:
        raise ForecastError("backtest needs a 1-D time grid and a level series of the same length (>= 3)")
    dt_s = float(t_s[1] - t_s[0])
    lead_steps = np.array([max(int(round(h * 3600.0 / dt_s)), 1) for h in horizons_h])
    max_lead = int(lead_steps.max())
    warmup_s = window_s if warmup_s is None else warmup_s
    origins = _origin_indices(t_s, origin_every_s, warmup_s, max_lead)
    if origins.size == 0:
        raise ForecastError(
            f"the record ({(t_s[-1] - t_s[0]) / 86400:.1f} days) is too short for a {warmup_s / 86400:.1f}-day "
            f"warm-up plus a {max_lead * dt_s / 3600:.1f} h horizon; pass a shorter --window-days"
        )
    rolled = rolling_forecasts(
        t_s, level_m, rain_mm, origin_index=origins, horizon_s=max_lead * dt_s, step_s=dt_s, window_s=window_s,
        refit_every_s=refit_every_s, upstream_m=upstream_m, predicted_m=predicted_m, input_names=input_names,
        progress=progress,
    )
    models = MODELS + ((UPSTREAM_BASELINE,) if upstream_m is not None else ())
    preds = {
        "floodwatch": rolled.median_m,
        "persistence": np.repeat(rolled.last_level_m[:, None], max_lead, axis=1),
        "tide_only": rolled.tide_m,
        "tide_plus_residual": rolled.tide_m + (rolled.last_level_m - rolled.tide_at_last_m)[:, None],
    }
    if upstream_m is not None:
        regression = np.full((origins.size, max_lead), np.nan)
        regression[:, lead_steps - 1] = upstream_regression(
            t_s, level_m, np.atleast_2d(upstream_m), origins, list(lead_steps), window_s
        )
        preds[UPSTREAM_BASELINE] = regression
    band = {"lower": rolled.lower_m, "upper": rolled.upper_m}
    now_level = rolled.last_level_m
    names: dict[str, int] = {}
    for name in rolled.model_name:
        names[name] = names.get(name, 0) + 1

    target = level_m[origins[:, None] + np.arange(1, max_lead + 1)[None, :]]  # (O, max_lead)
    scored = np.isfinite(target)
    for m in models:
        # The regression is scored at the horizons only (its other leads are not made).
        scored_m = np.isfinite(preds[m])
        scored_m[:, np.setdiff1d(np.arange(max_lead), lead_steps - 1)] = True
        scored &= scored_m
    result: dict[str, Any] = {
        "horizons_h": [float(h) for h in horizons_h],
        "n_origins": int(origins.size),
        "first_origin_s": float(t_s[origins[0]]),
        "last_origin_s": float(t_s[origins[-1]]),
        "origin_every_h": origin_every_s / 3600.0,
        "window_days": window_s / 86400.0,
        "grid_step_s": dt_s,
        "refit_every_h": None if refit_every_s is None else refit_every_s / 3600.0,
        "n_fits": rolled.n_fits,
        "n_scored": [int(scored[:, k - 1].sum()) for k in lead_steps],
        "rmse_m": {},
        "mae_m": {},
        "model_names": dict(sorted(names.items())),
    }
    for m in models:
        err = np.where(scored, preds[m] - target, np.nan)
        cols = err[:, lead_steps - 1]
        result["rmse_m"][m] = [_round(np.sqrt(np.nanmean(c**2))) for c in cols.T]
        result["mae_m"][m] = [_round(np.nanmean(np.abs(c))) for c in cols.T]
    # Is the band honest? A 5-95 % band should hold the truth about 90 % of the time.
    inside = (target >= band["lower"]) & (target <= band["upper"])
    width = band["upper"] - band["lower"]
    result["band_coverage"] = [
        _round(inside[:, k - 1][scored[:, k - 1]].mean()) if scored[:, k - 1].any() else None for k in lead_steps
    ]
    result["band_width_m"] = [
        _round(width[:, k - 1][scored[:, k - 1]].mean()) if scored[:, k - 1].any() else None for k in lead_steps
    ]
    if rolled.input_names:
        result["input_lags"] = lag_summary(rolled)
    if keep_predictions:
        result["origins_s"] = t_s[origins]
        result["predictions"] = preds
        result["inputs_used"] = rolled.inputs_used
    if threshold_m is not None:
        result.update(
            _crossing_scores(t_s, level_m, origins, preds, target, now_level, lead_steps, threshold_m, dt_s, models)
        )
    return result


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 5)


def _crossing_scores(
    t_s: np.ndarray,
    level_m: np.ndarray,
    origins: np.ndarray,
    preds: dict[str, np.ndarray],
    target: np.ndarray,
    now_level: np.ndarray,
    lead_steps: np.ndarray,
    threshold_m: float,
    dt_s: float,
    models: Sequence[str] = MODELS,
) -> dict[str, Any]:
    """Hit rate and false-alarm ratio of "will be at/above the level at lead h" warnings,
    issued only while the water is below it, and the lead time of upward crossings.

    A crossing is an observed step from below to at/above the level. Its lead
    time is how long before it an unbroken run of warnings (the forecast path
    reaching the level within the longest horizon, at every origin up to the
    last one before the crossing) began; a crossing whose last origin issued no
    warning is missed and has no lead time.
    """
    below_now = now_level < threshold_m
    observed_above = target >= threshold_m
    has_target = np.isfinite(target)
    out: dict[str, Any] = {"threshold_m": threshold_m, "hit_rate": {}, "false_alarm_ratio": {},
                           "median_lead_time_h": {}}
    # Observed upward crossings (times in the scored span).
    y = level_m
    up = np.nonzero((y[:-1] < threshold_m) & (y[1:] >= threshold_m))[0] + 1
    max_lead = preds["floodwatch"].shape[1]
    up = up[(up > origins[0]) & (up <= origins[-1] + max_lead)]
    out["n_crossings"] = int(up.size)
    for m in models:
        warn_at = preds[m] >= threshold_m  # (O, max_lead)
        hr, far = [], []
        for k in lead_steps:
            use = below_now & has_target[:, k - 1] & np.isfinite(preds[m][:, k - 1])
            warn = warn_at[:, k - 1] & use
            event = observed_above[:, k - 1] & use
            hits = int((warn & event).sum())
            misses = int((~warn & event).sum())
            false = int((warn & ~event).sum())
            hr.append(None if hits + misses == 0 else round(hits / (hits + misses), 4))
            far.append(None if hits + false == 0 else round(false / (hits + false), 4))
        out["hit_rate"][m] = hr
        out["false_alarm_ratio"][m] = far
        warns = warn_at.any(axis=1) & below_now
        leads_h = []
        for c in up:  # a loop over crossing events of one record, not over stations
            before = np.nonzero((origins < c) & (origins >= c - max_lead))[0]
            if before.size == 0 or not warns[before[-1]]:
                continue
            run = before[-1]
            while run - 1 >= before[0] and warns[run - 1]:
                run -= 1
            leads_h.append((c - origins[run]) * dt_s / 3600.0)
        out["median_lead_time_h"][m] = None if not leads_h else round(float(np.median(leads_h)), 3)
    return out
