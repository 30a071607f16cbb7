"""What every route needs: settings, store, clock, hub and the optional services.

The read side (:meth:`PageContext.station_rows`, :meth:`PageContext.station_series`)
gathers data from the store and the services, then hands it to the pure
functions in :mod:`gauge_page._overview`.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from floodwatch.clock import Clock
from floodwatch.settings import Settings
from floodwatch.vocabulary import QcFlag, StationId
from floodwatch.gauge_page import _overview
from floodwatch.gauge_page._hub import EventHub, to_jsonable
from floodwatch.gauge_page._state import PageState

log = logging.getLogger(__name__)

MAX_HISTORY_H = 24.0 * 14
# How far ahead the chart of a predicted series (a tide table) reaches.
PREDICTED_AHEAD_H = 72.0


@dataclass
class PageContext:
    settings: Settings
    store: Any
    clock: Clock
    hub: EventHub
    state: PageState
    alerts: Any = None
    forecasts: Any = None
    ingest: Any = None
    feeds: Any = None
    _status_lock: threading.Lock = field(default_factory=threading.Lock)
    _status: dict[str, _overview.StationStatus] = field(default_factory=dict)

    # ------------------------------------------------------------- live status
    def on_hub_event(self, event_type: str, data: Any) -> None:
        """Remember each node's online/offline status as ingest publishes it."""
        if event_type != "status" or not isinstance(data, dict):
            return
        station_id, status = data.get("station_id"), data.get("status")
        ts_s = data.get("ts_s")
        if not isinstance(station_id, str) or not isinstance(status, str):
            return
        since_s = float(ts_s) if isinstance(ts_s, (int, float)) else self.clock.now_s()
        with self._status_lock:
            previous = self._status.get(station_id)
            if previous is None or previous.status != status:
                self._status[station_id] = _overview.StationStatus(status, since_s)

    def statuses(self) -> dict[str, _overview.StationStatus]:
        with self._status_lock:
            return dict(self._status)

    # --------------------------------------------------------------- forecasts
    def latest_forecast(self) -> Any:
        if self.forecasts is None:
            return None
        try:
            return self.forecasts.latest()
        except Exception:  # the page must keep showing observations
            log.exception("event=forecast_latest_failed")
            return None

    # ------------------------------------------------------------------- feeds
    def feed_health(self) -> dict[str, dict[str, Any]]:
        """Each running feed's health (``feeds.FeedService.health``), by feed id; {} without feeds."""
        if self.feeds is None:
            return {}
        try:
            return {f["id"]: f for f in self.feeds.health()}
        except Exception:  # the page must keep showing observations
            log.exception("event=feed_health_failed")
            return {}

    def _predicted_now(self, station_ids: list[str], now_s: float) -> dict[str, Any]:
        """Each predicted series' value at or before now (its newest reading lies in the future)."""
        out = {}
        for sid in station_ids:
            rows = self.store.read_readings(StationId(sid), now_s - 6 * 3600.0, now_s + 1.0)
            if rows:
                out[sid] = rows[-1]
        return out

    # ---------------------------------------------------------------- overview
    def station_rows(self) -> list[_overview.StationRow]:
        """Every station's overview row, most dangerous first."""
        now_s = self.clock.now_s()
        stations = self.settings.stations
        latest = self.store.latest([s.id for s in stations])
        predicted_ids = [s.id for s in stations if s.series == "predicted"]
        predicted_until = {sid: latest[sid].ts_s for sid in predicted_ids if sid in latest}
        latest.update(self._predicted_now(predicted_ids, now_s))
        for sid in predicted_ids:
            if sid in latest and latest[sid].ts_s > now_s + 1.0:
                del latest[sid]  # the prediction starts later: nothing to show "now"
        feeds = self.feed_health()
        level_ids = [StationId(s.id) for s in self.settings.level_stations]
        rain_ids = [StationId(s.id) for s in self.settings.rain_stations]
        rates: dict[str, float] = {}
        if level_ids:
            window = self.store.read_window(
                level_ids, "water_level_m", now_s - _overview.TREND_WINDOW_S, now_s + 1.0, 60.0
            )
            for sid, rate in zip(window.station_ids, _overview.rise_rate_cm_per_h(window.t_s, window.values)):
                rates[sid] = float(rate)
        rain_1h: dict[str, float | None] = {}
        if rain_ids:
            window = self.store.read_window(rain_ids, "rain_mm", now_s - 3600.0, now_s + 1.0, 3601.0)
            for sid, row in zip(window.station_ids, np.atleast_2d(window.values)):
                total_mm = float(np.nansum(row)) if np.isfinite(row).any() else None
                rain_1h[sid] = total_mm
        issued = self.latest_forecast()
        statuses = self.statuses()
        maintenance = self.state.maintenance()
        rows = [
            _overview.build_row(
                s,
                latest.get(s.id),
                now_s=now_s,
                rate_cm_per_h=rates.get(s.id),
                rain_1h_mm=rain_1h.get(s.id),
                forecast=_overview.summarize_forecast(issued, s.id, s.levels) if s.kind == "water_level" else None,
                status=statuses.get(s.id),
                maintenance=s.id in maintenance,
                feed_health=_overview.feed_health_for(s.id, feeds.get(s.feed or "")) if s.external else None,
                predicted_until_s=predicted_until.get(s.id),
            )
            for s in stations
        ]
        return _overview.sort_by_danger(rows)

    def zone_levels(self, rows: list[_overview.StationRow]) -> tuple[dict[str, int], dict[str, int], str]:
        """Each zone's alert level, its subscriber count, and where the levels came from ('alerts' or 'observed')."""
        if self.alerts is not None and hasattr(self.alerts, "zone_levels"):
            try:
                levels = dict(self.alerts.zone_levels())
                # alerts.AlertService gives {zone: {"level": int, "subscribers": n, ...}}; a bare int is accepted too.
                by_zone = {str(z): int(v["level"] if isinstance(v, dict) else v) for z, v in levels.items()}
                subscribers = {str(z): int(v["subscribers"]) for z, v in levels.items()
                               if isinstance(v, dict) and v.get("subscribers") is not None}
                return by_zone, subscribers, "alerts"
            except Exception:
                log.exception("event=zone_levels_failed")
        return _overview.zone_levels_from_rows(rows), {}, "observed"

    # ----------------------------------------------------------- station detail
    def station_series(self, station_id: str, hours: float) -> dict[str, Any]:
        """Observed history, QC-flagged points, rain bars and the forecast band for one chart."""
        station = self.settings.station(station_id)
        hours = min(max(hours, 0.5), MAX_HISTORY_H)
        now_s = self.clock.now_s()
        start_s = now_s - hours * 3600.0
        # A predicted series is drawn ahead too: what it says for the coming days.
        end_s = now_s + (PREDICTED_AHEAD_H * 3600.0 if station.series == "predicted" else 1.0)
        readings = self.store.read_readings(StationId(station_id), start_s, end_s)
        field_name = {"water_level": "water_level_m", "rain": "rain_mm", "discharge": "discharge_m3_s"}[station.kind]
        obs_t, obs_m, flagged_m, flags = [], [], [], []
        for r in readings:
            level = getattr(r, field_name)
            if station.kind != "rain" and level is None:
                continue
            obs_t.append(r.ts_s)
            flag = int(r.qc_flag)
            flags.append(flag)
            good = flag in (int(QcFlag.PASS), int(QcFlag.NOT_EVALUATED))
            obs_m.append(level if good else None)
            flagged_m.append(None if good else level)
        rain_station = station.id if station.kind == "rain" else None if station.external else station.rain_station
        rain: dict[str, Any] = {"station_id": rain_station, "t_s": [], "rain_mm": []}
        if rain_station is not None:
            step_s = 3600.0 if hours > 6 else 600.0
            grid_start_s = math.floor(start_s / step_s) * step_s
            window = self.store.read_window([StationId(rain_station)], "rain_mm", grid_start_s, now_s + 1.0, step_s)
            rain = {
                "station_id": rain_station,
                "step_s": step_s,
                "t_s": window.t_s,
                "rain_mm": np.atleast_2d(window.values)[0] if len(window.t_s) else [],
            }
        forecast: dict[str, Any] | None = None
        issued = self.latest_forecast()
        if issued is not None and station_id in issued.station_ids:
            row = list(issued.station_ids).index(station_id)
            fc = issued.forecast
            forecast = {
                "issued_s": issued.issued_s,
                "t_s": fc.t_s,
                "median_m": np.asarray(fc.median_m)[row],
                "lower_m": np.asarray(fc.lower_m)[row],
                "upper_m": np.asarray(fc.upper_m)[row],
                "exceed_prob": np.asarray(fc.exceed_prob)[row],
                "first_crossing_s": np.asarray(fc.first_crossing_s)[row],
                "model_name": fc.model_name[row] if len(fc.model_name) > row else "",
            }
        return to_jsonable(
            {
                "station_id": station_id,
                "kind": station.kind,
                "series": station.series,
                "external": station.external,
                "unit": {"water_level": "m MSL", "rain": "mm", "discharge": "m3/s"}[station.kind],
                "now_s": now_s,
                "start_s": start_s,
                "levels": station.levels.as_tuple() if station.levels else None,
                "observed": {"t_s": obs_t, "value": obs_m, "flagged": flagged_m, "qc_flag": flags},
                "rain": rain,
                "forecast": forecast,
            }
        )
