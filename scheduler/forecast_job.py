"""Read history from the store, forecast every level station in one call, publish the result."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import models
from floodwatch import metrics
from floodwatch.clock import Clock
from floodwatch.settings import Settings
from floodwatch.vocabulary import StationId
from store.base import Store

log = logging.getLogger(__name__)

metrics.describe("floodwatch_forecasts_made_total", "counter", "forecast runs completed (all stations at once)")
metrics.describe("floodwatch_forecast_seconds", "gauge", "wall time of the last forecast run")


@dataclass(frozen=True)
class IssuedForecast:
    """A forecast for every level station, issued at ``issued_s`` (UTC epoch s)."""

    issued_s: float
    station_ids: tuple[StationId, ...]
    forecast: models.Forecast

    def row(self, station_id: StationId) -> int:
        return self.station_ids.index(station_id)


class ForecastJob:
    """Runs the forecaster on demand or on a schedule; keeps the latest result."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        on_forecast: Callable[[IssuedForecast], None] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._on_forecast = on_forecast
        self._latest: IssuedForecast | None = None
        self._run_lock = threading.Lock()
        stations = settings.level_stations
        self._station_ids = tuple(s.id for s in stations)
        self._thresholds_m = np.array([s.levels.as_tuple() for s in stations], dtype=float).reshape(-1, 3)
        # Each level station reads the rain of the gauge named in its config.
        self._rain_of = [s.rain_station for s in stations]
        self.runs = 0

    def latest(self) -> IssuedForecast | None:
        return self._latest

    def run_once(self) -> IssuedForecast | None:
        """Forecast now; skipped (returns None) if a run is already in progress."""
        if not self._station_ids:
            return None
        if not self._run_lock.acquire(blocking=False):
            return None
        try:
            return self._run()
        finally:
            self._run_lock.release()

    def _run(self) -> IssuedForecast:
        cfg = self._settings.forecast
        step_s = cfg.step_s
        now_s = self._clock.now_s()
        # The grid ends at the last complete step so the newest bin is not half-filled.
        end_s = math.floor(now_s / step_s) * step_s
        start_s = end_s - cfg.history_days * 86_400.0
        started = time.perf_counter()  # wall time of the run, not simulated time
        levels = self._store.read_window(self._station_ids, "water_level_m", start_s, end_s, step_s)
        rain_ids = sorted({r for r in self._rain_of if r is not None})
        rain_mm = np.full_like(levels.values, np.nan)
        if rain_ids:
            rain = self._store.read_window(tuple(rain_ids), "rain_mm", start_s, end_s, step_s)
            index = {sid: i for i, sid in enumerate(rain.station_ids)}
            for row, rain_id in enumerate(self._rain_of):
                if rain_id is not None:
                    # No reading in a bin while the gauge reported around it means no rain fell.
                    rain_mm[row] = rain.values[index[rain_id]]
        forecast = models.forecast_stations(
            levels.t_s,
            levels.values,
            rain_mm,
            thresholds_m=self._thresholds_m,
            horizon_s=cfg.horizon_h * 3600.0,
            step_s=step_s,
            origin_s=end_s,
        )
        issued = IssuedForecast(issued_s=now_s, station_ids=self._station_ids, forecast=forecast)
        self._latest = issued
        self.runs += 1
        metrics.inc("floodwatch_forecasts_made_total")
        metrics.set_gauge("floodwatch_forecast_seconds", time.perf_counter() - started)
        log.info(
            "forecast issued stations=%d origin=%s models=%s seconds=%.3f",
            len(self._station_ids),
            int(end_s),
            ",".join(sorted(set(forecast.model_name))),
            time.perf_counter() - started,
        )
        if self._on_forecast is not None:
            self._on_forecast(issued)
        return issued
