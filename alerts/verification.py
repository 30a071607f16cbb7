"""Categorical verification of warnings against what the water did: pure functions over arrays.

The definitions (docs/verification.md), after the NWS's categorical flood
verification:

- **event**: an observed upward crossing of a level (the first reading at or
  above it) after the series stayed below it for at least ``below_s`` (24 h):
  the first reading below it (after the last one at or above it, or the
  record's first reading) is at least ``below_s`` before the crossing.
- **warning**: a resident message raising the zone to a level (observed,
  forecast or fast rise; reminders and lowerings are not warnings). It is
  *for* its level.
- a warning is **verified** if its level is reached (a reading at or above it)
  within ``window_s`` of its issue; otherwise it is a **false alarm**. A
  warning whose window runs past the end of the record without the level being
  reached cannot be judged and is left out (``unscored``).
- an event is **warned** (a hit) if a warning for its level *or higher* was
  issued in ``[crossing - window_s, crossing + late_s]`` (late by up to an
  hour still counts, with a negative lead); otherwise it is a **miss**.
- **lead** = crossing time minus the earliest such warning.

Scores per level: POD = hits / events, FAR = false alarms / scored warnings,
CSI = hits / (hits + misses + false alarms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WINDOW_S = 24 * 3600.0
"""A warning counts for an event up to this long before its crossing (``--window-h``)."""
LATE_S = 3600.0
"""A warning up to this long after the crossing still counts (a negative lead)."""
BELOW_S = 24 * 3600.0
"""The series must stay below a level this long before a crossing is a new event."""
LEAD_BUCKETS_H = (1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0)
"""Upper edges of the lead buckets band coverage is reported for, hours."""


@dataclass(frozen=True, slots=True)
class IssuedWarning:
    """One warning issued: when, for which level (1 watch, 2 warning, 3 evacuate), why."""

    ts_s: float
    level: int
    kind: str  # "observed", "forecast" or "rise"
    level_m: float = math.nan


@dataclass(frozen=True)
class LevelScore:
    """Scores of one level (see the module docstring); ``leads_h`` of the hits, in event order."""

    level: int
    level_m: float
    events_s: tuple[float, ...]
    warned_by_s: tuple[float | None, ...]  # earliest counting warning per event, None if missed
    warnings: int
    false_alarms: int
    unscored: int
    late: int  # hits whose earliest warning came after the crossing
    verified_s: tuple[float, ...] = field(default=())
    false_s: tuple[float, ...] = field(default=())

    @property
    def events(self) -> int:
        return len(self.events_s)

    @property
    def hits(self) -> int:
        return sum(w is not None for w in self.warned_by_s)

    @property
    def misses(self) -> int:
        return self.events - self.hits

    @property
    def leads_h(self) -> list[float]:
        return [(e - w) / 3600.0 for e, w in zip(self.events_s, self.warned_by_s, strict=True) if w is not None]

    @property
    def pod(self) -> float | None:
        return None if self.events == 0 else self.hits / self.events

    @property
    def far(self) -> float | None:
        return None if self.warnings == 0 else self.false_alarms / self.warnings

    @property
    def csi(self) -> float | None:
        denominator = self.hits + self.misses + self.false_alarms
        return None if denominator == 0 else self.hits / denominator

    def as_json(self) -> dict[str, Any]:
        """The contract keys (``events`` ... ``lead_h``) and a few more."""
        leads = self.leads_h
        return {
            "level_m": self.level_m,
            "events": self.events,
            "hits": self.hits,
            "misses": self.misses,
            "warnings": self.warnings,
            "false_alarms": self.false_alarms,
            "pod": _round(self.pod),
            "far": _round(self.far),
            "csi": _round(self.csi),
            "lead_h": lead_summary(leads),
            "late_warnings": self.late,
            "unscored_warnings": self.unscored,
            "event_times_s": list(self.events_s),
            "leads_h": [round(x, 3) for x in leads],
            "false_alarm_times_s": list(self.false_s),
        }


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def lead_summary(leads_h: Sequence[float]) -> dict[str, float | None]:
    """``{"median", "mean", "p10"}`` of lead times in hours (None without hits); p10 is the short tail."""
    if not len(leads_h):
        return {"median": None, "mean": None, "p10": None}
    x = np.asarray(leads_h, dtype=float)
    return {"median": _round(float(np.median(x)), 3), "mean": _round(float(np.mean(x)), 3),
            "p10": _round(float(np.percentile(x, 10)), 3)}


def find_events(t_s: np.ndarray, level_m: np.ndarray, threshold_m: float, *, below_s: float = BELOW_S) -> np.ndarray:
    """Times of the upward crossings of ``threshold_m`` that are events (see the module docstring).

    Parameters
    ----------
    t_s : ndarray, (N,)
        Reading times, UTC epoch seconds, increasing.
    level_m : ndarray, (N,)
        Levels, metres (NaN readings are ignored).
    threshold_m : float
    below_s : float
        How long the series must have stayed below before.

    Returns
    -------
    ndarray, (E,)
        The time of the first reading at or above the level of each event.
    """
    t_s, level_m = _finite(t_s, level_m)
    if t_s.size < 2 or not math.isfinite(threshold_m):
        return np.empty(0)
    above = level_m >= threshold_m
    up = np.flatnonzero(~above[:-1] & above[1:]) + 1
    if up.size == 0:
        return np.empty(0)
    # Below since the first reading after the last one at or above the level (or since the record began).
    above_idx = np.flatnonzero(above)
    k = np.searchsorted(above_idx, up) - 1
    first_below = np.where(k >= 0, above_idx[np.maximum(k, 0)] + 1, 0)
    quiet = t_s[up] - t_s[first_below] >= below_s
    return t_s[up[quiet]]


def reached_within(
    t_s: np.ndarray, level_m: np.ndarray, threshold_m: float, from_s: np.ndarray, window_s: float
) -> np.ndarray:
    """Whether some reading in ``[from_s, from_s + window_s]`` is at or above the level, per time.

    Returns an (W,) array of 1.0 (reached), 0.0 (not reached, the window is inside
    the record) or NaN (not reached yet when the record ends: cannot be judged).
    """
    t_s, level_m = _finite(t_s, level_m)
    from_s = np.asarray(from_s, dtype=float)
    if t_s.size == 0:
        return np.full(from_s.shape, np.nan)
    above_t = t_s[level_m >= threshold_m] if math.isfinite(threshold_m) else np.empty(0)
    first = np.searchsorted(above_t, from_s, side="left")
    hit = first < above_t.size
    hit[hit] = above_t[first[hit]] <= from_s[hit] + window_s
    inside = from_s + window_s <= t_s[-1]
    return np.where(hit, 1.0, np.where(inside, 0.0, np.nan))


def score_level(
    level: int,
    level_m: float,
    events_s: np.ndarray,
    warnings: Sequence[IssuedWarning],
    reached: np.ndarray,
    *,
    window_s: float = WINDOW_S,
    late_s: float = LATE_S,
) -> LevelScore:
    """Score one level from its events, every warning issued and whether each warning's level was reached.

    Parameters
    ----------
    level : int
        1 watch, 2 warning, 3 evacuate.
    events_s : ndarray, (E,)
        Crossing times of this level (:func:`find_events`).
    warnings : sequence of IssuedWarning, (W,)
        Every warning issued, any level, in time order.
    reached : ndarray, (W,)
        For each warning, :func:`reached_within` of *its own* level (1, 0 or NaN).
    """
    times = np.array([w.ts_s for w in warnings], dtype=float)
    levels = np.array([w.level for w in warnings], dtype=int)
    reached = np.asarray(reached, dtype=float)
    counting = times[levels >= level]  # increasing: warnings are in time order
    warned_by: list[float | None] = []
    late = 0
    for crossing in np.asarray(events_s, dtype=float):  # a loop over one record's events
        i = int(np.searchsorted(counting, crossing - window_s, side="left"))
        if i < counting.size and counting[i] <= crossing + late_s:
            warned_by.append(float(counting[i]))
            late += counting[i] > crossing
        else:
            warned_by.append(None)
    own = levels == level
    scored = own & np.isfinite(reached)
    false = scored & (reached == 0.0)
    return LevelScore(
        level=level,
        level_m=float(level_m),
        events_s=tuple(float(x) for x in events_s),
        warned_by_s=tuple(warned_by),
        warnings=int(scored.sum()),
        false_alarms=int(false.sum()),
        unscored=int((own & ~np.isfinite(reached)).sum()),
        late=int(late),
        verified_s=tuple(float(x) for x in times[scored & (reached == 1.0)]),
        false_s=tuple(float(x) for x in times[false]),
    )


def verify_warnings(
    t_s: np.ndarray,
    level_m: np.ndarray,
    thresholds_m: Sequence[float],
    warnings: Sequence[IssuedWarning],
    *,
    window_s: float = WINDOW_S,
    late_s: float = LATE_S,
    below_s: float = BELOW_S,
    events_from_s: float = -math.inf,
    warnings_from_s: float = -math.inf,
) -> list[LevelScore]:
    """Score every level of one gauge's record against the warnings issued for it.

    Parameters
    ----------
    t_s, level_m : ndarray, (N,)
        The observed record (readings, in time order).
    thresholds_m : sequence of float, (K,)
        Watch, warning, evacuate levels (1-3 of them; NaN for a level not used).
    warnings : sequence of IssuedWarning
        In time order.
    events_from_s : float
        Only crossings from here on are scored (the replay's start plus a window,
        so every scored event had a whole window of warnings).
    warnings_from_s : float
        Only warnings from here on are scored.

    Returns
    -------
    list of LevelScore, one per finite threshold, lowest first.
    """
    kept = [w for w in warnings if w.ts_s >= warnings_from_s]
    out = []
    for k, threshold in enumerate(thresholds_m, start=1):
        if not math.isfinite(threshold):
            continue
        events = find_events(t_s, level_m, threshold, below_s=below_s)
        events = events[events >= events_from_s]
        own_times = np.array([w.ts_s for w in kept], dtype=float)
        reached = np.full(len(kept), np.nan)
        for level in {w.level for w in kept}:
            mask = np.array([w.level == level for w in kept])
            level_threshold = thresholds_m[level - 1] if level - 1 < len(thresholds_m) else math.nan
            reached[mask] = reached_within(t_s, level_m, level_threshold, own_times[mask], window_s)
        out.append(score_level(k, threshold, events, kept, reached, window_s=window_s, late_s=late_s))
    return out


def band_coverage(
    t_s: np.ndarray,
    level_m: np.ndarray,
    origin_s: np.ndarray,
    lead_s: np.ndarray,
    lower_m: np.ndarray,
    upper_m: np.ndarray,
    *,
    buckets_h: Sequence[float] = LEAD_BUCKETS_H,
) -> list[dict[str, Any]]:
    """Share of observations inside the forecast's 5-95 % band, per lead bucket.

    An honest band holds the truth about 90 % of the time at every lead.

    Parameters
    ----------
    t_s, level_m : ndarray, (T,)
        The grid the forecasts were made on (bin starts) and its bin means.
    origin_s : ndarray, (O,)
        Each forecast's origin (lead ``k`` is grid time ``origin_s + lead_s[k]``).
    lead_s : ndarray, (H,)
    lower_m, upper_m : ndarray, (O, H)
    buckets_h : sequence of float
        Upper edges of the buckets, hours; the first bucket starts at 0.

    Returns
    -------
    list of ``{"lead_h_from", "lead_h_to", "n", "coverage"}`` for buckets with leads.
    """
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float)
    lead_s = np.asarray(lead_s, dtype=float)
    if t_s.size < 2 or lead_s.size == 0 or np.asarray(origin_s).size == 0:
        return []
    step = float(t_s[1] - t_s[0])
    out = []
    lo_h = 0.0
    for hi_h in buckets_h:
        cols = np.flatnonzero((lead_s > lo_h * 3600.0 + 1e-6) & (lead_s <= hi_h * 3600.0 + 1e-6))
        if cols.size:
            idx = np.round((np.asarray(origin_s)[:, None] + lead_s[None, cols] - t_s[0]) / step).astype(np.int64)
            ok = (idx >= 0) & (idx < t_s.size)
            truth = np.where(ok, level_m[np.clip(idx, 0, t_s.size - 1)], np.nan)
            lower = np.asarray(lower_m)[:, cols]
            upper = np.asarray(upper_m)[:, cols]
            judged = np.isfinite(truth) & np.isfinite(lower) & np.isfinite(upper)
            n = int(judged.sum())
            inside = int((judged & (truth >= lower) & (truth <= upper)).sum())
            out.append({"lead_h_from": lo_h, "lead_h_to": hi_h, "n": n,
                        "coverage": None if n == 0 else round(inside / n, 4)})
        lo_h = hi_h
        if hi_h * 3600.0 >= lead_s[-1] - 1e-6:
            break
    return out


def _finite(t_s: np.ndarray, level_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.asarray(level_m, dtype=float)
    keep = np.isfinite(level_m) & np.isfinite(t_s)
    return t_s[keep], level_m[keep]
