""""How well did we warn": the site's own past events against the warnings its residents got.

``GET /api/verification`` takes the stored readings (bin means of
``forecast.step_s``, QC-failed readings left out, as the forecaster reads
them) and the alert log, and applies the definitions of ``floodwatch verify``
(:mod:`alerts.verification`, docs/verification.md) per zone: a zone is at a
level when any of its gauges is at or above that gauge's own threshold. For
each past event: when the water got there, which gauge, the first warning of
that level or higher that went out (and why), the lead; and every warning that
came to nothing. The pure part is :func:`warned_report`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Query
from floodwatch.alerts.verification import (
    BELOW_S,
    LATE_S,
    IssuedWarning,
    find_events,
    lead_summary,
    reached_within,
    score_level,
)
from pydantic import BaseModel, Field

from floodwatch.vocabulary import StationId

log = logging.getLogger(__name__)

KIND_NAMES = {"escalate": "observed", "forecast": "forecast", "rise": "rise"}
LEVEL_NAMES = ("watch", "warning", "evacuate")


# ------------------------------------------------------------------ schema (OpenAPI)
class LeadOut(BaseModel):
    median: float | None
    mean: float | None
    p10: float | None = Field(description="the short tail: 10 % of warned events had less lead than this")


class WarnedLevelOut(BaseModel):
    level: int = Field(description="1 watch, 2 warning, 3 evacuate")
    name: str
    events: int
    hits: int
    misses: int
    warnings: int = Field(description="warnings of this level that can be judged")
    false_alarms: int = Field(description="warnings of this level not followed by the level within the window")
    pod: float | None
    far: float | None
    csi: float | None
    lead_h: LeadOut


class WarnedEventOut(BaseModel):
    level: int
    name: str
    crossing_s: float = Field(description="the first stored bin at or above the level")
    station_id: str = Field(description="the gauge that reached it")
    level_m: float | None = Field(description="that gauge's level then (bin mean), m")
    warned: bool
    first_warning_s: float | None = Field(description="the earliest warning of this level or higher that counted")
    first_warning_kind: str | None = Field(description="observed, forecast or rise")
    first_warning_level: int | None
    lead_h: float | None = Field(description="crossing minus first warning; negative when late (up to 1 h)")


class FalseWarningOut(BaseModel):
    ts_s: float
    level: int
    name: str
    kind: str
    station_id: str | None
    decision_id: int | None


class WarnedZoneOut(BaseModel):
    zone_id: str
    name_th: str
    name_en: str
    levels: list[WarnedLevelOut]
    events: list[WarnedEventOut] = Field(description="oldest first")
    false_warnings: list[FalseWarningOut] = Field(description="warnings that came to nothing, oldest first")
    unscored_warnings: int = Field(description="too recent to judge: their window has not ended")


class VerificationOut(BaseModel):
    now_s: float
    from_s: float
    days: float
    window_h: float
    late_h: float
    below_h: float
    step_s: float
    alerts_running: bool = Field(description="without the alert service there is no log: events only")
    zones: list[WarnedZoneOut]
    summary: list[WarnedLevelOut] = Field(description="all zones together, per level")


# ------------------------------------------------------------------ pure
def warned_report(
    zones: list[Any],
    stations: list[Any],
    t_s: np.ndarray,
    level_m: np.ndarray,
    decisions: list[dict[str, Any]],
    *,
    now_s: float,
    from_s: float,
    window_s: float,
    late_s: float = LATE_S,
    below_s: float = BELOW_S,
) -> dict[str, Any]:
    """Score each zone's warnings against its gauges' stored levels.

    Parameters
    ----------
    zones : list of ZoneConfig
    stations : list of StationConfig, (S,)
        The level stations, in the rows' order.
    t_s : ndarray, (T,)
        Bin starts, UTC epoch seconds (reaching ``below_s`` before ``from_s``).
    level_m : ndarray, (S, T)
        Bin means, metres; NaN where nothing was stored.
    decisions : list of dict
        Resident warnings from the alert log (``ts_s, kind, zone_id, station_id, level, id``), oldest first.
    now_s, from_s : float
        The period scored: events from ``from_s``; warnings from ``from_s - window_s``.
    window_s : float

    Returns
    -------
    dict shaped like :class:`VerificationOut` (without the request's fields).
    """
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float).reshape(len(stations), t_s.size)
    zones_out = []
    all_scores: dict[int, list[Any]] = {1: [], 2: [], 3: []}
    for zone in zones:
        rows = [i for i, s in enumerate(stations) if s.zone == zone.id and s.levels is not None]
        mine = [d for d in decisions if d.get("zone_id") == zone.id and d.get("kind") in KIND_NAMES
                and d["ts_s"] >= from_s - window_s]
        warnings = [IssuedWarning(float(d["ts_s"]), int(d["level"]), KIND_NAMES[d["kind"]]) for d in mine]
        levels_out: list[dict[str, Any]] = []
        events_out: list[dict[str, Any]] = []
        false_out: list[dict[str, Any]] = []
        unscored = 0
        margins = {}
        for k in (1, 2, 3):
            if not rows:
                break
            # How far above its own threshold the highest of the zone's gauges is (NaN: no data at all).
            thr = np.array([stations[i].levels.as_tuple()[k - 1] for i in rows])[:, None]
            over = level_m[rows] - thr
            margins[k] = np.fmax.reduce(over, axis=0) if len(rows) > 1 else over[0]
        for k in (1, 2, 3):
            if k not in margins:
                continue
            margin = margins[k]
            events = find_events(t_s, margin, 0.0, below_s=below_s)
            events = events[(events >= from_s) & (events <= now_s)]
            reached = np.full(len(warnings), np.nan)
            for lv in {w.level for w in warnings}:
                if lv in margins:
                    mask = np.array([w.level == lv for w in warnings])
                    reached[mask] = reached_within(t_s, margins[lv], 0.0, np.array([w.ts_s for w in warnings])[mask],
                                                   window_s)
            score = score_level(k, 0.0, events, warnings, reached, window_s=window_s, late_s=late_s)
            all_scores[k].append(score)
            levels_out.append(_level_json(score))
            unscored += score.unscored
            for crossing, first in zip(score.events_s, score.warned_by_s, strict=True):
                col = int(np.searchsorted(t_s, crossing))
                over = level_m[rows, col] - np.array([stations[i].levels.as_tuple()[k - 1] for i in rows])
                who = rows[int(np.nanargmax(over))]
                w = next((x for x in warnings if first is not None and x.ts_s == first and x.level >= k), None)
                events_out.append({
                    "level": k, "name": LEVEL_NAMES[k - 1], "crossing_s": crossing,
                    "station_id": stations[who].id, "level_m": _num(level_m[who, col]),
                    "warned": first is not None, "first_warning_s": first,
                    "first_warning_kind": None if w is None else w.kind,
                    "first_warning_level": None if w is None else w.level,
                    "lead_h": None if first is None else round((crossing - first) / 3600.0, 3),
                })
            false_times = set(score.false_s)
            for d, w in zip(mine, warnings, strict=True):
                if w.level == k and w.ts_s in false_times:
                    false_out.append({"ts_s": w.ts_s, "level": k, "name": LEVEL_NAMES[k - 1], "kind": w.kind,
                                      "station_id": d.get("station_id"), "decision_id": d.get("id")})
        events_out.sort(key=lambda e: (e["crossing_s"], e["level"]))
        false_out.sort(key=lambda f: f["ts_s"])
        zones_out.append({"zone_id": zone.id, "name_th": zone.name_th, "name_en": zone.name_en,
                          "levels": levels_out, "events": events_out, "false_warnings": false_out,
                          "unscored_warnings": unscored})
    summary = []
    for k in (1, 2, 3):
        scores = all_scores[k]
        if not scores:
            continue
        events = sum(s.events for s in scores)
        hits = sum(s.hits for s in scores)
        warnings_n = sum(s.warnings for s in scores)
        false_n = sum(s.false_alarms for s in scores)
        leads = [x for s in scores for x in s.leads_h]
        summary.append({
            "level": k, "name": LEVEL_NAMES[k - 1], "events": events, "hits": hits, "misses": events - hits,
            "warnings": warnings_n, "false_alarms": false_n,
            "pod": None if events == 0 else round(hits / events, 4),
            "far": None if warnings_n == 0 else round(false_n / warnings_n, 4),
            "csi": None if events + false_n == 0 else round(hits / (events + false_n), 4),
            "lead_h": lead_summary(leads),
        })
    return {"zones": zones_out, "summary": summary}


def _level_json(score: Any) -> dict[str, Any]:
    j = score.as_json()
    return {"level": score.level, "name": LEVEL_NAMES[score.level - 1],
            **{k: j[k] for k in ("events", "hits", "misses", "warnings", "false_alarms", "pod", "far", "csi",
                                 "lead_h")}}


def _num(x: float) -> float | None:
    return None if not math.isfinite(float(x)) else round(float(x), 4)


# ------------------------------------------------------------------ route
def warned_router(ctx: Any) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["read"])

    @router.get("/verification", response_model=VerificationOut,
                summary="How well did we warn: each past event, the first warning of its level, the lead, and "
                "the warnings that came to nothing")
    def verification(days: float = Query(90.0, gt=0, le=400), window_h: float = Query(24.0, gt=0, le=72)
                     ) -> dict[str, Any]:
        settings = ctx.settings
        now_s = ctx.clock.now_s()
        days = min(days, float(settings.store.retention_days))
        window_s = window_h * 3600.0
        from_s = now_s - days * 86400.0
        step_s = settings.forecast.step_s
        stations = settings.level_stations
        start_s = math.floor((from_s - BELOW_S) / step_s) * step_s
        window = ctx.store.read_window([StationId(s.id) for s in stations], "water_level_m", start_s,
                                       now_s + step_s, step_s)
        decisions: list[dict[str, Any]] = []
        if ctx.alerts is not None and hasattr(ctx.alerts, "resident_warnings"):
            decisions = ctx.alerts.resident_warnings(from_s - window_s)
        report = warned_report(settings.zones, stations, window.t_s, window.values, decisions,
                               now_s=now_s, from_s=from_s, window_s=window_s)
        return {"now_s": now_s, "from_s": from_s, "days": days, "window_h": window_h, "late_h": LATE_S / 3600.0,
                "below_h": BELOW_S / 3600.0, "step_s": step_s, "alerts_running": ctx.alerts is not None, **report}

    return router


__all__ = ["VerificationOut", "warned_report", "warned_router"]
