"""Read history from the store, forecast every level station in one call, publish the result.

The forecast is heavy numpy/Python work (seconds for thousands of stations).
In a thread it competes for the interpreter lock with ingest and the alert
path, so ``floodwatch serve`` runs it in a separate process
(``ForecastJob(..., isolated=True)``): that process opens the store itself,
reads the history, forecasts and hands back only the result, which is then
published from this process as before.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from floodwatch import models
from floodwatch import metrics
from floodwatch.clock import Clock
from floodwatch.settings import Settings
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.store.base import Store

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


def departs_from_forecast(
    issued: IssuedForecast | None,
    station_id: StationId,
    ts_s: float,
    level_m: float,
    margin_m: float = 0.0,
) -> bool:
    """True when an observed level lies outside the band the latest forecast gave for its time.

    Such a reading "changes the picture" (a flash flood the forecast did not
    expect, or water falling much faster): the forecast, and the alerts that
    depend on it, must be redone now rather than at the next scheduled run.
    A station with no forecast yet, or a time outside the forecast, counts as
    a departure only when a forecast exists at all for other stations.
    """
    if issued is None or station_id not in issued.station_ids:
        return False
    fc = issued.forecast
    row = issued.station_ids.index(station_id)
    if fc.t_s.size == 0 or ts_s < fc.t_s[0] - (fc.t_s[1] - fc.t_s[0] if fc.t_s.size > 1 else 0) or ts_s > fc.t_s[-1]:
        return False
    lower = float(np.interp(ts_s, fc.t_s, fc.lower_m[row]))
    upper = float(np.interp(ts_s, fc.t_s, fc.upper_m[row]))
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return False
    return level_m > upper + margin_m or level_m < lower - margin_m


def forecast_from_store(
    store: Store,
    settings: Settings,
    station_ids: tuple[StationId, ...],
    thresholds_m: np.ndarray,
    rain_of: Sequence[StationId | None],
    now_s: float,
    floor_m: np.ndarray | None = None,
    include_current_step: bool = False,
) -> tuple[float, models.Forecast]:
    """Read the history window ending at the last complete step before ``now_s`` and forecast it.

    With ``include_current_step`` the window also holds the step ``now_s`` lies in, half
    filled: an early forecast must see the reading that asked for it.
    Returns (origin_s, forecast); ``thresholds_m`` is (S, 3) watch/warning/evacuate, m.
    """
    cfg = settings.forecast
    step_s = cfg.step_s
    # The grid ends at the last complete step so the newest bin is not half-filled; an early
    # forecast takes the half-filled one too, or it would not see the departing reading.
    end_s = (math.floor(now_s / step_s) + (1 if include_current_step else 0)) * step_s
    start_s = end_s - cfg.history_days * 86_400.0
    levels = store.read_window(station_ids, "water_level_m", start_s, end_s, step_s)
    rain_ids = sorted({r for r in rain_of if r is not None})
    rain_mm = np.full_like(levels.values, np.nan)
    if rain_ids:
        rain = store.read_window(tuple(rain_ids), "rain_mm", start_s, end_s, step_s)
        index = {sid: i for i, sid in enumerate(rain.station_ids)}
        for row, rain_id in enumerate(rain_of):
            if rain_id is not None:
                # No reading in a bin while the gauge reported around it means no rain fell.
                rain_mm[row] = rain.values[index[rain_id]]
    forecast = models.forecast_stations(
        levels.t_s,
        levels.values,
        rain_mm,
        thresholds_m=thresholds_m,
        floor_m=floor_m,
        horizon_s=cfg.horizon_h * 3600.0,
        step_s=step_s,
        origin_s=end_s,
    )
    return end_s, forecast


# The forecast process's own store connection, opened on its first run.
_process_store: Any = None


# The forecast process's CPU priority: batch work that must give way to ingest and alerts
# when the cores are busy (on the 2-core test machine no difference was measurable).
FORECAST_NICENESS = 10


def _lower_priority() -> None:
    """Make the forecast process yield the CPU to ingest and alerts (batch work, not urgent)."""
    try:
        os.nice(FORECAST_NICENESS)
    except OSError:  # not permitted here: a forecast at normal priority still works
        pass


def _forecast_in_process(settings: Settings, *args: Any) -> tuple[float, models.Forecast]:
    """:func:`forecast_from_store` in the forecast process, on that process's own store connection."""
    global _process_store
    if _process_store is None:
        from floodwatch.store import open_store

        _process_store = open_store(settings)
    return forecast_from_store(_process_store, settings, *args)


class ForecastJob:
    """Runs the forecaster on demand or on a schedule; keeps the latest result.

    With ``isolated=True`` the reading and forecasting run in a child process
    (started on the first run, kept for the next ones) that opens the store
    named by ``settings.store.url`` itself; ``store`` is then not read here.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        on_forecast: Callable[[IssuedForecast], None] | None = None,
        *,
        isolated: bool = False,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._on_forecast = on_forecast
        self._latest: IssuedForecast | None = None
        self._run_lock = threading.Lock()
        # A predicted series is already a forecast (a tide table): it is an input, not forecast itself.
        stations = [s for s in settings.level_stations if s.series != "predicted"]
        self._station_ids = tuple(s.id for s in stations)
        self._thresholds_m = np.array([s.levels.as_tuple() for s in stations], dtype=float).reshape(-1, 3)
        # Each level station reads the rain of the gauge named in its config.
        self._rain_of = [s.rain_station for s in stations]
        # A street gauge never reads below the dry street: forecasts are clipped there.
        self._floor_m = np.array([np.nan if s.dry_level_m is None else s.dry_level_m for s in stations], dtype=float)
        self.runs = 0
        self.early_runs = 0
        self._wake = threading.Event()
        self._closing = False
        self._early_worker: threading.Thread | None = None
        self._isolated = isolated
        self._pool: ProcessPoolExecutor | None = None

    def latest(self) -> IssuedForecast | None:
        return self._latest

    def check_readings(self, readings: Sequence[Reading]) -> bool:
        """Ask for an early forecast if any reading departs from the latest forecast's band.

        Called on the ingest path, so it only compares numbers and wakes a
        worker; the forecast itself runs on that worker thread.
        """
        issued = self._latest
        if issued is None:
            return False
        for r in readings:
            if r.water_level_m is None or r.qc_flag == QcFlag.FAIL:
                continue
            if departs_from_forecast(issued, r.station_id, r.ts_s, r.water_level_m):
                log.info("reading departs from forecast station=%s ts=%d level_m=%.3f: forecasting now",
                         r.station_id, int(r.ts_s), r.water_level_m)
                self._request_early_run()
                return True
        return False

    def _request_early_run(self) -> None:
        if self._early_worker is None:
            self._early_worker = threading.Thread(target=self._early_loop, name="forecast-early", daemon=True)
            self._early_worker.start()
        self._wake.set()

    def _early_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            try:
                if self.run_once(early=True) is not None:
                    self.early_runs += 1
            except Exception:
                log.exception("early forecast failed; the scheduled run will try again")

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._early_worker is not None:
            self._early_worker.join(10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _compute(self, now_s: float, early: bool = False) -> tuple[float, models.Forecast]:
        args = (self._station_ids, self._thresholds_m, self._rain_of, now_s, self._floor_m, early)
        if not self._isolated:
            return forecast_from_store(self._store, self._settings, *args)
        if self._pool is None:
            # spawn, not fork: this process has MQTT, SQLite and HTTP threads a fork would copy mid-flight.
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_lower_priority)
        try:
            return self._pool.submit(_forecast_in_process, self._settings, *args).result()
        except BrokenProcessPool:
            # The forecast process died (out of memory, killed): start a fresh one next run.
            self._pool = None
            raise

    def run_once(self, *, early: bool = False) -> IssuedForecast | None:
        """Forecast now; skipped (returns None) if a run is already in progress.

        ``early``: asked for by a reading that departs from the latest forecast, so the
        history includes the current, half-filled step that reading is in.
        """
        if not self._station_ids:
            return None
        if not self._run_lock.acquire(blocking=False):
            return None
        try:
            return self._run(early)
        finally:
            self._run_lock.release()

    def _run(self, early: bool = False) -> IssuedForecast:
        now_s = self._clock.now_s()
        started = time.perf_counter()  # wall time of the run, not simulated time
        end_s, forecast = self._compute(now_s, early)
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
