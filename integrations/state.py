"""What the broker's retained state says about each station and zone, and when it is worth saying again.

Pure: plain data in, JSON-ready dicts and booleans out. The shell
(:mod:`integrations.publisher`) gathers the inputs (newest readings, the alert
service's levels, the latest forecast) and publishes what :func:`worth_publishing`
lets through. The payloads are a contract (docs/integrations.md): keep the keys.

Topics, under ``{mqtt.topic_prefix}/{site}/state/``:

- ``station/{station_id}``: one gauge (water level or rain), retained;
- ``zone/{zone_id}``: one village's alert level, retained;
- ``availability``: ``online`` while floodwatch publishes, ``offline`` (its last will).
  Not ``status``: ingest subscribes to ``{prefix}/{site}/+/status`` for the nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from floodwatch.timefmt import to_bangkok
from floodwatch.vocabulary import AlertLevel, QcFlag

if TYPE_CHECKING:
    from floodwatch.settings import MqttStateSettings, Settings, StationConfig

# Slower than this either way is "steady" (the page's arrow uses the same).
STEADY_CM_PER_H = 2.0


def state_root(settings: Settings) -> str:
    """``floodwatch/lamphaya/state``."""
    return f"{settings.mqtt.topic_prefix}/{settings.site.id}/state"


def station_topic(settings: Settings, station_id: str) -> str:
    return f"{state_root(settings)}/station/{station_id}"


def zone_topic(settings: Settings, zone_id: str) -> str:
    return f"{state_root(settings)}/zone/{zone_id}"


def status_topic(settings: Settings) -> str:
    """``floodwatch/lamphaya/state/availability``: four levels, so it matches none of ingest's subscriptions."""
    return f"{state_root(settings)}/availability"


def bangkok_iso(ts_s: float | None) -> str | None:
    """``2026-11-29T14:05:00+07:00`` (seconds), or None."""
    if ts_s is None or not math.isfinite(ts_s):
        return None
    return to_bangkok(ts_s).isoformat(timespec="seconds")


def trend_word(rate_cm_per_h: float | None) -> str | None:
    if rate_cm_per_h is None or not math.isfinite(rate_cm_per_h):
        return None
    if rate_cm_per_h >= STEADY_CM_PER_H:
        return "rising"
    if rate_cm_per_h <= -STEADY_CM_PER_H:
        return "falling"
    return "steady"


@dataclass(frozen=True)
class Latest:
    """A station's newest usable reading (QC pass or not yet judged), as the publisher keeps it."""

    ts_s: float
    value: float | None  # water_level_m, or rain_mm of that reading
    qc_flag: QcFlag
    battery_v: float | None
    rain_1h_mm: float | None = None


def forecast_peak(issued: Any, station_id: str) -> tuple[float | None, float | None, float | None]:
    """(peak median m, its time s, issued s) of the latest forecast for one station, Nones when there is none."""
    if issued is None or station_id not in issued.station_ids:
        return None, None, None
    row = list(issued.station_ids).index(station_id)
    median = np.asarray(issued.forecast.median_m, dtype=float)[row]
    if not np.isfinite(median).any():
        return None, None, float(issued.issued_s)
    i = int(np.nanargmax(median))
    return round(float(median[i]), 3), float(np.asarray(issued.forecast.t_s, dtype=float)[i]), float(issued.issued_s)


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def station_state(
    station: StationConfig,
    latest: Latest | None,
    level_info: dict[str, Any] | None,
    issued: Any,
    online: bool | None,
    now_s: float,
) -> dict[str, Any]:
    """The retained JSON of one station.

    ``level_info`` is the alert service's view (``AlertService.station_levels()[id]``:
    ``level``, ``reason``, ``trend_cm_per_h``...), None for rain gauges; ``issued``
    the latest ``scheduler.IssuedForecast``; ``online`` the node's last status.
    """
    out: dict[str, Any] = {
        "station_id": station.id,
        "name_th": station.name_th,
        "name_en": station.name_en,
        "zone_id": station.zone,
        "kind": station.kind,
        "ts": bangkok_iso(latest.ts_s) if latest else None,
        "ts_s": latest.ts_s if latest else None,
        "qc": latest.qc_flag.name.lower() if latest else None,
        "battery_v": _round(latest.battery_v, 2) if latest else None,
        "online": online,
    }
    if station.kind == "rain":
        out["rain_mm"] = _round(latest.value, 2) if latest else None
        out["rain_1h_mm"] = _round(latest.rain_1h_mm, 2) if latest else None
    else:
        info = level_info or {}
        rate = info.get("trend_cm_per_h")
        peak_m, peak_s, issued_s = forecast_peak(issued, station.id)
        level = AlertLevel(int(info.get("level", 0)))
        levels = station.levels
        out.update({
            "water_level_m": _round(latest.value, 3) if latest else None,
            "trend": trend_word(rate),
            "trend_cm_per_h": _round(rate, 1),
            "forecast_peak_m": peak_m,
            "forecast_peak_at": bangkok_iso(peak_s),
            "forecast_peak_s": peak_s,
            "forecast_issued_s": issued_s,
            "level": int(level),
            "level_name_en": level.name_en,
            "level_name_th": level.name_th,
            "level_reason": info.get("reason"),
            "watch_m": levels.watch_m if levels else None,
            "warning_m": levels.warning_m if levels else None,
            "evacuate_m": levels.evacuate_m if levels else None,
        })
    out["updated_s"] = round(now_s, 3)
    return out


def zone_state(zone_id: str, name_th: str, name_en: str, level: int, since_s: float | None,
               now_s: float) -> dict[str, Any]:
    """The retained JSON of one zone (a village residents subscribe to)."""
    lvl = AlertLevel(int(level))
    return {
        "zone_id": zone_id,
        "name_th": name_th,
        "name_en": name_en,
        "level": int(lvl),
        "level_name_en": lvl.name_en,
        "level_name_th": lvl.name_th,
        "since": bangkok_iso(since_s),
        "since_s": since_s,
        "updated_s": round(now_s, 3),
    }


def _moved(old: Any, new: Any, step: float) -> bool:
    if old is None or new is None:
        return old is not new
    return abs(float(new) - float(old)) >= step - 1e-9


def worth_publishing(old: dict[str, Any] | None, new: dict[str, Any], cfg: MqttStateSettings,
                     last_published_s: float | None, now_s: float) -> bool:
    """Whether ``new`` differs from the retained ``old`` enough to publish.

    What counts (docs/integrations.md): anything about the level of danger (a
    station's or zone's ``level``), the node going on- or offline, the QC
    verdict, the level moving ``level_step_m`` (1 cm), the trend changing
    direction or by ``trend_step_cm_per_h`` (5 cm/h), the forecast peak moving
    ``peak_step_m`` (2 cm) or ``peak_time_step_s`` (30 min), a rain gauge's last
    hour changing by 0.1 mm; and, whatever happens, every ``refresh_s`` (1 h), so a
    consumer can tell quiet from dead. Smaller moves wait.
    """
    if old is None or last_published_s is None:
        return True
    if now_s - last_published_s >= cfg.refresh_s:
        return True
    for key in ("level", "online", "qc", "trend", "kind", "since_s"):
        if old.get(key) != new.get(key):
            return True
    return (
        _moved(old.get("water_level_m"), new.get("water_level_m"), cfg.level_step_m)
        or _moved(old.get("trend_cm_per_h"), new.get("trend_cm_per_h"), cfg.trend_step_cm_per_h)
        or _moved(old.get("forecast_peak_m"), new.get("forecast_peak_m"), cfg.peak_step_m)
        or _moved(old.get("forecast_peak_s"), new.get("forecast_peak_s"), cfg.peak_time_step_s)
        or _moved(old.get("rain_1h_mm"), new.get("rain_1h_mm"), 0.1)
    )
