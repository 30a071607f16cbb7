"""The alert rules over a recorded timeline: what residents would have been told, and when.

Pure: the readings of one gauge and the forecasts the live job would have
issued go through exactly the functions the alert service calls
(:func:`~alerts.rules.observe_station`, :func:`~alerts.rules.station_forecast`,
:func:`~alerts.rules.apply_forecast`, :func:`~alerts.rules.decide_zone`), in
time order, for a zone of that one gauge. The service also re-decides every
zone on a ticker; here a zone is decided at every reading and every forecast
(every ``forecast.interval_s``), so timers (lowering, reminders) resolve to
that interval, and escalations, the moments verification scores, are exact.

Years of forecasts make :func:`~alerts.rules.station_forecast` the slow part,
and most forecasts raise nothing. A forecast whose chance of every level stays
below ``exceed_probability`` throughout its lead window (found for all of them
at once by :func:`forecast_peaks`, the same window and comparison) that would
replace a forecast which raised nothing either changes nothing the rules
decide, so it is not reduced; the zone is still decided at its time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from floodwatch.vocabulary import AlertLevel, StationId, ZoneId
from floodwatch.models import OriginForecasts

from floodwatch.alerts.rules import (
    Action,
    RuleConfig,
    StationState,
    Thresholds,
    ZoneState,
    apply_forecast,
    decide_zone,
    observe_station,
    station_forecast,
)
from floodwatch.alerts.verification import IssuedWarning

WARNING_KINDS = {"escalate": "observed", "forecast": "forecast", "rise": "rise"}
"""Resident actions that raise a zone, and the ``kind`` verification calls them."""


@dataclass(frozen=True)
class ReplayResult:
    """What the rules decided over the timeline.

    ``warnings`` are the raising messages (what verification scores), ``actions``
    every resident message (also reminders, lowerings, all-clears) for the plot.
    """

    warnings: list[IssuedWarning]
    actions: list[Action]
    readings: int
    forecasts: int


def thresholds_for(levels_m: list[float] | tuple[float, ...], station_id: str = "record",
                   zone_id: str = "record") -> Thresholds:
    """1-3 levels onto watch / warning / evacuate, lowest first; missing ones never reached (NaN)."""
    padded = list(levels_m) + [math.nan] * (3 - len(levels_m))
    return Thresholds(StationId(station_id), ZoneId(zone_id), padded[0], padded[1], padded[2])


def replay_station(
    thresholds: Thresholds,
    cfg: RuleConfig,
    t_s: np.ndarray,
    level_m: np.ndarray,
    forecasts: OriginForecasts | None = None,
    *,
    station_cfg: RuleConfig | None = None,
    start_s: float = -math.inf,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay one gauge's readings and forecasts through the rules, for a zone of that gauge.

    Parameters
    ----------
    thresholds : Thresholds
    cfg : RuleConfig
        The site's rules (zone timers).
    t_s, level_m : ndarray, (N,)
        Readings as ingest would have stored them (QC-usable), time order.
    forecasts : OriginForecasts, optional
        The forecasts the job would have issued; None replays observed levels only.
    station_cfg : RuleConfig, optional
        The station's own rules (its warning profile); default ``cfg``.
    start_s : float
        The rules start fresh here; earlier readings and forecasts are skipped.
    progress : callable(done, total), optional
        Called every few thousand steps.

    Returns
    -------
    ReplayResult
    """
    station_cfg = station_cfg or cfg
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float)
    keep = (t_s >= start_s) & np.isfinite(level_m)
    t_s, level_m = t_s[keep], level_m[keep]
    fc = forecasts if station_cfg.use_forecast else None
    n_fc = len(fc) if fc is not None else 0
    first_fc = int(np.searchsorted(fc.issued_s, start_s, side="left")) if fc is not None else 0
    station = StationState(thresholds.station_id)
    zone = ZoneState(thresholds.zone_id)
    actions: list[Action] = []
    raises = np.asarray((forecast_peaks(fc, station_cfg.lead_s) >= station_cfg.exceed_probability).any(axis=1)) \
        if fc is not None else np.zeros(0, dtype=bool)
    i, j = 0, first_fc
    total = t_s.size + n_fc - first_fc
    done = 0
    cfgs = [station_cfg]
    while i < t_s.size or j < n_fc:
        # A reading and a forecast at the same second: the reading was stored first.
        if fc is None or j >= n_fc or (i < t_s.size and t_s[i] <= fc.issued_s[j]):
            now_s = float(t_s[i])
            station, _ = observe_station(station, thresholds, now_s, float(level_m[i]), station_cfg)
            i += 1
        else:
            now_s = float(fc.issued_s[j])
            if raises[j] or (station.forecast is not None and station.forecast.level > AlertLevel.NORMAL):
                sf = station_forecast(thresholds, now_s, fc.t_s(j), fc.median_m[j],
                                      fc.exceed_prob[j], float(fc.rise_rate_cm_per_h[j]), station_cfg)
                station = apply_forecast(station, sf)
            j += 1
        zone, acts = decide_zone(zone, [(station, thresholds)], now_s, cfg, cfgs)
        actions.extend(acts)
        done += 1
        if progress is not None and (done % 20_000 == 0 or done == total):
            progress(done, total)
    warnings = [
        IssuedWarning(a.ts_s, int(a.level), WARNING_KINDS[a.kind], thresholds.threshold_m(a.level))
        for a in actions if a.kind in WARNING_KINDS and a.level > AlertLevel.NORMAL
    ]
    return ReplayResult(warnings=warnings, actions=actions, readings=int(t_s.size), forecasts=n_fc - first_fc)


def forecast_peaks(forecasts: OriginForecasts, lead_s: float) -> np.ndarray:
    """Each forecast's highest chance of each level within the rules' lead window, (O, K).

    The window and the values are :func:`~alerts.rules.station_forecast`'s: leads after
    the issue time up to ``lead_s`` past it, NaN counted as 0, in the forecasts' own
    precision, so ``peaks >= exceed_probability`` is what it would find.
    """
    t_s = forecasts.origin_s[:, None] + forecasts.lead_s[None, :]
    issued = forecasts.issued_s[:, None]
    within = (t_s > issued - 1e-6) & (t_s <= issued + lead_s)
    n_orig, n_levels, n_leads = forecasts.exceed_prob.shape
    peaks = np.zeros((n_orig, n_levels), dtype=forecasts.exceed_prob.dtype)
    for k in range(n_levels if n_leads else 0):  # one level at a time: years of origins stay small
        peaks[:, k] = np.where(within, np.nan_to_num(forecasts.exceed_prob[:, k], nan=0.0), 0.0).max(axis=1)
    return peaks


def store_grid(first_s: float, last_s: float, step_s: float, window_s: float) -> tuple[float, float]:
    """Start and end of a grid on which every forecast window is a slice.

    The job's windows start at ``end - window_s`` with ``end`` a multiple of
    ``step_s``, so bins are aligned to ``-window_s`` modulo ``step_s``.
    """
    phase = (-window_s) % step_s
    start = math.floor((first_s - phase) / step_s) * step_s + phase
    return start, last_s + step_s


def issue_times(grid_start_s: float, last_s: float, interval_s: float, window_s: float) -> np.ndarray:
    """When the job would have run: every ``interval_s`` (on the clock), from the first full window to the end."""
    first = math.ceil((grid_start_s + window_s) / interval_s) * interval_s
    if first > last_s:
        return np.empty(0)
    return first + interval_s * np.arange(int((last_s - first) // interval_s) + 1, dtype=float)
