"""What the overview shows, as pure functions of readings, forecasts and the registry.

No I/O here: the app reads the store, the alert service and the forecaster,
then hands plain values to these functions. Tested without a server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from floodwatch.settings import StationConfig, WarningLevels
from floodwatch.vocabulary import AlertLevel, QcFlag, Reading

# A level changing by less than this per hour shows a flat arrow: tides and
# sensor noise move a canal a few cm/h without meaning anything.
STEADY_CM_PER_H = 2.0
# A station is "stale" when it has missed this many publish intervals.
STALE_INTERVALS = 3.0
TREND_WINDOW_S = 3600.0


def level_class(level_m: float | None, levels: WarningLevels | None) -> AlertLevel:
    """The highest warning level ``level_m`` has reached (NORMAL for None, NaN or a rain gauge)."""
    if levels is None or level_m is None or not math.isfinite(level_m):
        return AlertLevel.NORMAL
    if level_m >= levels.evacuate_m:
        return AlertLevel.EVACUATE
    if level_m >= levels.warning_m:
        return AlertLevel.WARNING
    if level_m >= levels.watch_m:
        return AlertLevel.WATCH
    return AlertLevel.NORMAL


def rise_rate_cm_per_h(t_s: np.ndarray, level_m: np.ndarray, *, min_points: int = 3) -> np.ndarray:
    """Least-squares slope of each station's level, ignoring NaNs.

    Parameters
    ----------
    t_s : ndarray, shape (T,)
        Sample times, UTC epoch seconds.
    level_m : ndarray, shape (S, T)
        Levels in metres, NaN where missing.
    min_points : int
        Fewer finite samples than this in a row gives NaN.

    Returns
    -------
    ndarray, shape (S,)
        Rate of rise in centimetres per hour (negative when falling), NaN when unknown.
    """
    t_s = np.asarray(t_s, dtype=float)
    level_m = np.atleast_2d(np.asarray(level_m, dtype=float))
    if level_m.shape[-1] != t_s.shape[0]:
        raise ValueError(f"level_m has {level_m.shape[-1]} columns but t_s has {t_s.shape[0]} times")
    ok = np.isfinite(level_m)
    n = ok.sum(axis=1)
    t_h = np.where(ok, (t_s - (t_s[0] if t_s.size else 0.0)) / 3600.0, 0.0)
    y = np.where(ok, level_m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = t_h.sum(axis=1) / n
        y_mean = y.sum(axis=1) / n
        dt = np.where(ok, t_h - t_mean[:, None], 0.0)
        dy = np.where(ok, y - y_mean[:, None], 0.0)
        slope_m_per_h = (dt * dy).sum(axis=1) / (dt * dt).sum(axis=1)
    slope_cm_per_h = slope_m_per_h * 100.0
    slope_cm_per_h[(n < min_points) | ~np.isfinite(slope_cm_per_h)] = np.nan
    return slope_cm_per_h


def trend_of(rate_cm_per_h: float | None) -> str:
    """'rising', 'falling', 'steady' or 'unknown' for an arrow."""
    if rate_cm_per_h is None or not math.isfinite(rate_cm_per_h):
        return "unknown"
    if rate_cm_per_h >= STEADY_CM_PER_H:
        return "rising"
    if rate_cm_per_h <= -STEADY_CM_PER_H:
        return "falling"
    return "steady"


@dataclass(frozen=True)
class ForecastSummary:
    """One station's forecast as the overview shows it."""

    issued_s: float
    peak_m: float | None
    peak_s: float | None
    peak_class: AlertLevel
    # First forecast crossing of watch / warning / evacuate, None if none.
    crossing_s: tuple[float | None, float | None, float | None]
    model_name: str


def summarize_forecast(issued: Any, station_id: str, levels: WarningLevels | None) -> ForecastSummary | None:
    """Peak of the median forecast and first crossings for one station, or None if not forecast."""
    if issued is None:
        return None
    station_ids = list(issued.station_ids)
    if station_id not in station_ids:
        return None
    row = station_ids.index(station_id)
    fc = issued.forecast
    median_m = np.asarray(fc.median_m, dtype=float)[row]
    t_s = np.asarray(fc.t_s, dtype=float)
    finite = np.isfinite(median_m)
    if not finite.any():
        peak_m = peak_s = None
    else:
        i = int(np.nanargmax(median_m))
        peak_m, peak_s = float(median_m[i]), float(t_s[i])
    crossing = np.asarray(fc.first_crossing_s, dtype=float)[row]
    crossing_s = tuple(float(c) if math.isfinite(c) else None for c in crossing[:3])
    crossing_s = crossing_s + (None,) * (3 - len(crossing_s))
    names = getattr(fc, "model_name", ())
    return ForecastSummary(
        issued_s=float(issued.issued_s),
        peak_m=peak_m,
        peak_s=peak_s,
        peak_class=level_class(peak_m, levels),
        crossing_s=crossing_s,  # type: ignore[arg-type]
        model_name=str(names[row]) if len(names) > row else "",
    )


@dataclass(frozen=True)
class StationStatus:
    """Node connectivity from the MQTT status topic (online / offline) and since when."""

    status: str
    since_s: float


@dataclass(frozen=True)
class StationRow:
    """One line of the overview (and one station on the map)."""

    id: str
    name_th: str
    name_en: str
    kind: str
    zone: str
    lat: float
    lon: float
    levels: tuple[float, float, float] | None
    level_m: float | None
    level_class: int
    level_name_th: str
    level_name_en: str
    fraction_to_next: float | None
    rate_cm_per_h: float | None
    trend: str
    rain_1h_mm: float | None
    ts_s: float | None
    data_age_s: float | None
    stale: bool
    qc_flag: int | None
    qc_name: str | None
    qc_tests: str
    battery_v: float | None
    rssi_dbm: float | None
    status: str
    status_since_s: float | None
    maintenance: bool
    forecast: ForecastSummary | None = None
    danger: tuple[float, ...] = field(default=(), repr=False)
    # External stations (read, not owned): who runs them, which feed brings them, its health.
    external: bool = False
    series: str = "observed"
    agency: str | None = None
    feed: str | None = None
    feed_health: dict[str, Any] | None = None
    discharge_m3_s: float | None = None
    # Predicted series: the last time the loaded prediction covers.
    predicted_until_s: float | None = None


def _fraction_to_next(level_m: float | None, levels: WarningLevels | None) -> float | None:
    """How far the level has gone from the class floor towards the next level (0..1, >1 above evacuate)."""
    if levels is None or level_m is None or not math.isfinite(level_m):
        return None
    steps = (levels.watch_m - 1.0, levels.watch_m, levels.warning_m, levels.evacuate_m)
    cls = int(level_class(level_m, levels))
    if cls == 3:
        return 1.0 + (level_m - levels.evacuate_m)
    lo, hi = steps[cls], steps[cls + 1]
    return max(0.0, (level_m - lo) / (hi - lo))


def build_row(
    station: StationConfig,
    latest: Reading | None,
    *,
    now_s: float,
    rate_cm_per_h: float | None,
    rain_1h_mm: float | None,
    forecast: ForecastSummary | None,
    status: StationStatus | None,
    maintenance: bool,
    feed_health: dict[str, Any] | None = None,
    predicted_until_s: float | None = None,
) -> StationRow:
    """Everything the overview shows about one station.

    For an external station ``feed_health`` is its feed's health (see
    :func:`feed_health_for`): it replaces the node status ("silent" is a node's
    word). For a predicted series ``latest`` is the prediction at or before
    now and ``predicted_until_s`` the end of the loaded prediction.
    """
    level_m = latest.water_level_m if latest is not None else None
    if level_m is not None and not math.isfinite(level_m):
        level_m = None
    cls = level_class(level_m, station.levels) if station.kind == "water_level" else AlertLevel.NORMAL
    age_s = (now_s - latest.ts_s) if latest is not None else None
    stale = latest is None or (age_s is not None and age_s > STALE_INTERVALS * station.publish_interval_s)
    qc = QcFlag(latest.qc_flag) if latest is not None else None
    rate = rate_cm_per_h if rate_cm_per_h is not None and math.isfinite(rate_cm_per_h) else None
    fraction = _fraction_to_next(level_m, station.levels)
    forecast_cls = int(forecast.peak_class) if forecast is not None else 0
    if station.series == "predicted":
        # A prediction is current while it still covers "now".
        stale = predicted_until_s is None or predicted_until_s < now_s
    elif station.external and feed_health is not None:
        stale = bool(feed_health.get("stale")) or stale
    if station.external:
        status_name, since = "external", None
    elif status is not None:
        status_name, since = status.status, status.since_s
    elif latest is None:
        status_name, since = "unknown", None
    else:
        status_name, since = ("silent" if stale else "online"), None
    danger = (
        # This site's own gauges first: an upstream gauge's level is context, not this town's danger.
        0.0 if station.external else 1.0,
        float(cls),
        float(forecast_cls),
        # Rounded so two stations equally close to their next level are ordered by rise rate.
        round(fraction, 2) if fraction is not None else -1.0,
        rate if rate is not None else 0.0,
        1.0 if station.kind == "water_level" else 0.0,
    )
    return StationRow(
        id=station.id,
        name_th=station.name_th,
        name_en=station.name_en,
        kind=station.kind,
        zone=station.zone,
        lat=station.lat,
        lon=station.lon,
        levels=station.levels.as_tuple() if station.levels is not None else None,
        level_m=level_m,
        level_class=int(cls),
        level_name_th=cls.name_th,
        level_name_en=cls.name_en,
        fraction_to_next=fraction,
        rate_cm_per_h=rate,
        trend=trend_of(rate),
        rain_1h_mm=rain_1h_mm,
        ts_s=latest.ts_s if latest is not None else None,
        data_age_s=age_s,
        stale=stale,
        qc_flag=int(qc) if qc is not None else None,
        qc_name=qc.name.lower() if qc is not None else None,
        qc_tests=latest.qc_tests if latest is not None else "",
        battery_v=latest.battery_v if latest is not None else None,
        rssi_dbm=latest.rssi_dbm if latest is not None else None,
        status=status_name,
        status_since_s=since,
        maintenance=maintenance,
        forecast=forecast,
        danger=danger,
        external=station.external,
        series=station.series,
        agency=station.agency,
        feed=station.feed,
        feed_health=feed_health,
        discharge_m3_s=latest.discharge_m3_s if latest is not None else None,
        predicted_until_s=predicted_until_s,
    )


def feed_health_for(station_id: str, feed: dict[str, Any] | None) -> dict[str, Any] | None:
    """One station's view of its feed's health (a dict from ``feeds.describe_feed``), for the page."""
    if feed is None:
        return None
    mine = feed.get("stations", {}).get(station_id, {})
    error = feed.get("last_error")
    return {
        "feed": feed.get("id"),
        "name_th": feed.get("name_th"),
        "name_en": feed.get("name_en"),
        "kind": feed.get("kind"),
        "state": feed.get("state"),
        "last_success_s": feed.get("last_success_s"),
        "last_attempt_s": feed.get("last_attempt_s"),
        "consecutive_failures": feed.get("consecutive_failures", 0),
        "last_error": None if not error else f"{error.get('reason')}: {error.get('detail')}",
        "last_data_s": mine.get("last_data_s"),
        "lag_s": mine.get("lag_s"),
        "stale": bool(mine.get("stale")),
        "missing": bool(mine.get("missing")),
    }


def sort_by_danger(rows: list[StationRow]) -> list[StationRow]:
    """Most dangerous first: observed class, forecast class, closeness to the next level, rise rate."""
    return sorted(rows, key=lambda r: tuple(-d for d in r.danger) + (r.id,))


def zone_levels_from_rows(rows: list[StationRow]) -> dict[str, int]:
    """Each zone's worst observed class, for the map when the alert service is not running."""
    levels: dict[str, int] = {}
    for row in rows:
        if row.external:
            continue  # another agency's gauge does not set this site's zone levels
        levels[row.zone] = max(levels.get(row.zone, 0), row.level_class)
    return levels
