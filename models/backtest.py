"""Rolling-origin evaluation of the forecaster and three baselines on one gauge's record.

Pure: arrays in, a plain dict of scores out. ``cli/backtest.py`` reads the CSV
files, calls :func:`rolling_origin_backtest` and writes the JSON.

At every origin (hourly by default) the models see only the window of data
up to and including the origin, exactly what the live system would have had,
and forecast each horizon. Origins are batched: a batch of origins is handed
to :func:`models.fit` as if they were stations (each row a window ending at
its own origin, on a time axis relative to that origin), so the backtest runs
the same vectorised code the live forecaster runs.

Models scored (same origins, same targets):

``floodwatch``          the forecaster's median
``persistence``         the last observed level carried forward
``tide_only``           the harmonic prediction alone (mean + harmonics)
``tide_plus_residual``  harmonic prediction plus the residual observed at the
                        origin, carried forward unchanged
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from floodwatch.errors import ForecastError
from floodwatch.models._forecast import DEFAULT_WINDOW_S, fit, predict
from floodwatch.models._tide import predict_tide

MODELS = ("floodwatch", "persistence", "tide_only", "tide_plus_residual")
_CELLS_PER_BATCH = 1_500_000  # origins x window samples per fit call: bounds memory


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
        Fit window before each origin, seconds.
    warmup_s : float, optional
        Record before the first origin, seconds; defaults to ``window_s`` so every
        scored forecast had a full window.
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
        each floodwatch model served), and with a threshold ``hit_rate``,
        ``false_alarm_ratio`` (model -> list per horizon), ``median_lead_time_h``
        and ``n_crossings``.
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
    width = max(int(round(window_s / dt_s)), 2)
    rel_t = (np.arange(width) - (width - 1)) * dt_s  # each window ends at its own origin, time 0
    batch = max(_CELLS_PER_BATCH // width, 1)

    n_orig = origins.size
    preds = {m: np.full((n_orig, max_lead), np.nan) for m in MODELS}
    band = {edge: np.full((n_orig, max_lead), np.nan) for edge in ("lower", "upper")}
    now_level = np.full(n_orig, np.nan)
    names: dict[str, int] = {}
    for start in range(0, n_orig, batch):
        idx = origins[start : start + batch]
        cols = idx[:, None] + np.arange(-(width - 1), 1)[None, :]
        inside = cols >= 0
        y = np.where(inside, level_m[np.clip(cols, 0, None)], np.nan)
        rain = None
        if rain_mm is not None:
            rain = np.where(inside, rain_mm[np.clip(cols, 0, None)], np.nan)
        model = fit(rel_t, y, rain, origin_s=0.0, horizon_s=max_lead * dt_s, window_s=window_s)
        fc = predict(model, thresholds_m=np.full((idx.size, 1), np.nan), horizon_s=max_lead * dt_s, step_s=dt_s)
        rows = slice(start, start + idx.size)
        preds["floodwatch"][rows] = fc.median_m
        band["lower"][rows] = fc.lower_m
        band["upper"][rows] = fc.upper_m
        preds["persistence"][rows] = model.last_level_m[:, None]
        harmonic = predict_tide(model.tide, fc.t_s)
        at_last = predict_tide(model.tide, np.nan_to_num(model.last_obs_s)[:, None])[:, 0]
        preds["tide_only"][rows] = harmonic
        preds["tide_plus_residual"][rows] = harmonic + (model.last_level_m - at_last)[:, None]
        now_level[rows] = model.last_level_m
        for name in model.model_name:
            names[name] = names.get(name, 0) + 1
        if progress is not None:
            progress(min(start + batch, n_orig), n_orig)

    target = level_m[origins[:, None] + np.arange(1, max_lead + 1)[None, :]]  # (O, max_lead)
    scored = np.isfinite(target)
    for m in MODELS:
        scored &= np.isfinite(preds[m])
    result: dict[str, Any] = {
        "horizons_h": [float(h) for h in horizons_h],
        "n_origins": int(n_orig),
        "first_origin_s": float(t_s[origins[0]]),
        "last_origin_s": float(t_s[origins[-1]]),
        "origin_every_h": origin_every_s / 3600.0,
        "window_days": window_s / 86400.0,
        "grid_step_s": dt_s,
        "n_scored": [int(scored[:, k - 1].sum()) for k in lead_steps],
        "rmse_m": {},
        "mae_m": {},
        "model_names": dict(sorted(names.items())),
    }
    for m in MODELS:
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
    if keep_predictions:
        result["origins_s"] = t_s[origins]
        result["predictions"] = preds
    if threshold_m is not None:
        result.update(
            _crossing_scores(t_s, level_m, origins, preds, target, now_level, lead_steps, threshold_m, dt_s)
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
    out: dict[str, Any] = {"threshold_m": threshold_m, "hit_rate": {}, "false_alarm_ratio": {}, "median_lead_time_h": {}}
    # Observed upward crossings (times in the scored span).
    y = level_m
    up = np.nonzero((y[:-1] < threshold_m) & (y[1:] >= threshold_m))[0] + 1
    max_lead = preds["floodwatch"].shape[1]
    up = up[(up > origins[0]) & (up <= origins[-1] + max_lead)]
    out["n_crossings"] = int(up.size)
    for m in MODELS:
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
