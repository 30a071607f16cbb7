"""Fit every station's model daily, move it to the newest data every cycle, publish the forecast.

Fit once, predict often: a full fit (a month of history per station, every
candidate model scored on a holdout) runs once a day (``forecast.refit_every_h``)
and whenever the fitted model no longer matches the registry; every cycle in
between reads only the last ten days or so and moves the fitted model to the
newest data (:func:`models.update`), which takes a fraction of a second for
thousands of stations. A reading outside the latest band refits its own
station at once (the others keep theirs) before the early forecast.

Where the fitted model lives: in the process that forecasts (``floodwatch
serve`` runs it in a separate process, ``ForecastJob(..., isolated=True)``:
the forecast is heavy numpy work that would otherwise hold the interpreter
lock while ingest and alerts wait), and in a file
(``forecast.model_path``, by default beside the SQLite store) written after
every fit, so a restart forecasts at once from yesterday's fit instead of
fitting first. The file holds plain arrays (``numpy.savez``, no pickles) and a
signature of what it was fitted for (stations, their links, grid, horizon);
a file that does not match is ignored and the model refitted.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from floodwatch import models
from floodwatch import metrics
from floodwatch.clock import Clock
from floodwatch.errors import ForecastError
from floodwatch.settings import Settings, StationConfig
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.store.base import Field, Store

log = logging.getLogger(__name__)

metrics.describe("floodwatch_forecasts_made_total", "counter", "forecast runs completed (all stations at once)")
metrics.describe("floodwatch_forecast_seconds", "gauge", "wall time of the last forecast run")
metrics.describe("floodwatch_forecast_fits_total", "counter", "full fits of every station's forecast model")
metrics.describe("floodwatch_forecast_fit_seconds", "gauge", "wall time of the last full fit")

INPUT_HISTORY_MARGIN_H = 120.0 + 72.0
"""Inputs are read this much further back than the stations' fit window: a routed change reaches
back one travel time (searched up to 120 h) and one lead."""


def input_field(station: StationConfig) -> Field:
    """The stored field a station's readings are read from, by its kind."""
    by_kind: dict[str, Field] = {"rain": "rain_mm", "discharge": "discharge_m3_s"}
    return by_kind.get(station.kind, "water_level_m")


def _warning_levels_m(station: StationConfig) -> tuple[float, float, float]:
    """A level station's watch, warning and evacuate levels, metres."""
    # The settings refuse a water-level station without [stations.levels].
    assert station.levels is not None, f"water-level station {station.id!r} has no warning levels"
    return station.levels.as_tuple()


def model_file(settings: Settings) -> Path | None:
    """Where the fitted model is kept: ``forecast.model_path``; by default beside the SQLite store
    (``<db>.forecast-model.npz``), else ``var/forecast-model.npz``; None for ``""`` (memory only)."""
    path = settings.forecast.model_path
    if path == "":
        return None
    if path:
        return Path(path)
    if settings.store.url.startswith("sqlite:///"):
        return Path(settings.store.url[len("sqlite:///"):] + ".forecast-model.npz")
    return Path("var/forecast-model.npz")


@dataclass(frozen=True)
class IssuedForecast:
    """A forecast for every level station, issued at ``issued_s`` (UTC epoch s)."""

    issued_s: float
    station_ids: tuple[StationId, ...]
    forecast: models.Forecast
    # When each station's model was fitted (UTC epoch s), None if not known.
    fitted_s: np.ndarray | None = None

    def row(self, station_id: StationId) -> int:
        return self.station_ids.index(station_id)


@dataclass(frozen=True)
class _Links:
    """Each level station's inputs, resolved once from the registry."""

    upstream_ids: tuple[StationId, ...]
    upstream_fields: tuple[Field, ...]
    upstream_of: list[list[int]]
    predicted_ids: tuple[StationId, ...]
    predicted_fields: tuple[Field, ...]
    predicted_of: list[list[int]]

    @property
    def names(self) -> tuple[str, ...]:
        return self.upstream_ids + self.predicted_ids

    @property
    def linked(self) -> np.ndarray:
        return np.array([bool(u or p) for u, p in zip(self.upstream_of, self.predicted_of, strict=True)], dtype=bool)

    @staticmethod
    def of(settings: Settings, stations: Sequence[StationConfig]) -> _Links:
        up_ids: list[StationId] = []
        pr_ids: list[StationId] = []
        up_of, pr_of = [], []
        for station in stations:  # the registry, not maths
            rows = []
            for other in station.upstream:
                if other not in up_ids:
                    up_ids.append(other)
                rows.append(up_ids.index(other))
            up_of.append(rows)
            rows = []
            for other in station.predicted:
                if other not in pr_ids:
                    pr_ids.append(other)
                rows.append(pr_ids.index(other))
            pr_of.append(rows)
        return _Links(
            upstream_ids=tuple(up_ids),
            upstream_fields=tuple(input_field(settings.station(s)) for s in up_ids),
            upstream_of=up_of,
            predicted_ids=tuple(pr_ids),
            predicted_fields=tuple(input_field(settings.station(s)) for s in pr_ids),
            predicted_of=pr_of,
        )

    def signature(self) -> list:
        return [list(self.upstream_ids), self.upstream_of, list(self.predicted_ids), self.predicted_of]


@dataclass
class EngineResult:
    """What one forecast run produced (plain data: it crosses the process boundary)."""

    origin_s: float
    forecast: models.Forecast
    fitted_s: np.ndarray
    fitted: bool = False
    refitted: tuple[StationId, ...] = ()
    loaded: bool = False
    fit_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


class ForecastEngine:
    """The shell around ``models.fit`` / ``update`` / ``predict`` for one site's level stations.

    Reads the store, decides when to fit (daily, when the registry changed, for a station
    whose readings left the band), keeps the fitted model in memory and in a file, and says
    in the log which configured inputs a station's forecast could not read.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        station_ids: tuple[StationId, ...],
        thresholds_m: np.ndarray,
        rain_of: Sequence[StationId | None],
        floor_m: np.ndarray | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._ids = tuple(station_ids)
        self._thresholds_m = thresholds_m
        self._rain_of = list(rain_of)
        self._floor_m = floor_m
        self._links = _Links.of(settings, [settings.station(s) for s in self._ids])
        self._model: models.ForecastModel | None = None
        self._path = model_file(settings)
        self._said: dict[StationId, str] = {}
        self.fits = 0
        self.refits = 0
        self.loads = 0

    # -- what the model was fitted for; a file fitted for something else is not used
    def _signature(self) -> str:
        cfg = self._settings.forecast
        return json.dumps({
            "stations": list(self._ids), "rain": self._rain_of, "links": self._links.signature(),
            "step_s": cfg.step_s, "horizon_h": cfg.horizon_h, "history_days": cfg.history_days,
            "network_history_days": cfg.network_history_days,
        })

    def _load(self) -> models.ForecastModel | None:
        if self._path is None or not self._path.is_file():
            return None
        try:
            with np.load(self._path, allow_pickle=False) as data:
                if str(data["__signature__"]) != self._signature():
                    log.info("forecast model file %s was fitted for another registry or settings; fitting again",
                             self._path)
                    return None
                model = models.model_from_arrays(data)
        except (OSError, ValueError, KeyError, ForecastError) as exc:
            log.warning("forecast model file %s unreadable (%s); fitting again", self._path, exc)
            return None
        return model

    def _save(self, model: models.ForecastModel) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_name(self._path.name + ".tmp.npz")
            # Any: mypy matches a **dict of arrays against savez's allow_pickle keyword. The keys are
            # field names; passing allow_pickle instead would store it as an array on older numpy.
            arrays: dict[str, Any] = {"__signature__": np.asarray(self._signature()), **models.model_to_arrays(model)}
            np.savez(tmp, **arrays)
            os.replace(tmp, self._path)  # a restart never reads half a file
        except OSError as exc:
            log.warning("could not keep the forecast model in %s (%s); a restart will fit again", self._path, exc)

    # -- reading the store
    def _grid(self, start_s: float, end_s: float) -> tuple[np.ndarray, float]:
        step_s = self._settings.forecast.step_s
        return start_s + step_s * np.arange(int(round((end_s - start_s) / step_s))), step_s

    def _read(self, ids: Sequence[StationId], fields: Sequence[Field], start_s: float, end_s: float) -> np.ndarray:
        step_s = self._settings.forecast.step_s
        n = int(round((end_s - start_s) / step_s))
        out = np.full((len(ids), n), np.nan)
        for name in sorted(set(fields)):  # a few fields, not stations
            rows = [i for i, f in enumerate(fields) if f == name]
            window = self._store.read_window(tuple(ids[i] for i in rows), name, start_s, end_s, step_s)
            out[rows] = window.values[:, :n]
        return out

    def _levels(self, rows: np.ndarray, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        ids = [self._ids[i] for i in rows]
        levels = self._read(ids, ["water_level_m"] * len(ids), start_s, end_s)
        rain_mm = np.full_like(levels, np.nan)
        rain_ids = sorted({self._rain_of[i] for i in rows if self._rain_of[i] is not None})
        if rain_ids:
            rain = self._read(rain_ids, ["rain_mm"] * len(rain_ids), start_s, end_s)
            index = {sid: k for k, sid in enumerate(rain_ids)}
            for j, i in enumerate(rows):
                if self._rain_of[i] is not None:
                    # No reading in a bin while the gauge reported around it means no rain fell.
                    rain_mm[j] = rain[index[self._rain_of[i]]]
        return levels, rain_mm

    def _inputs(self, rows: np.ndarray, start_s: float, end_s: float) -> dict[str, Any]:
        """Upstream and predicted series over the grid (predicted ones a horizon further) and the
        links of ``rows``, as :func:`models.fit` and :func:`models.update` take them."""
        links = self._links
        if not (links.upstream_ids or links.predicted_ids):
            return {}
        horizon_s = self._settings.forecast.horizon_h * 3600.0
        out: dict[str, Any] = {"input_names": links.names}
        out["upstream_m"] = (self._read(links.upstream_ids, links.upstream_fields, start_s, end_s)
                             if links.upstream_ids else None)
        out["upstream_of"] = [links.upstream_of[i] for i in rows] if links.upstream_ids else None
        out["predicted_m"] = (self._read(links.predicted_ids, links.predicted_fields, start_s, end_s + horizon_s)
                              if links.predicted_ids else None)
        out["predicted_of"] = [links.predicted_of[i] for i in rows] if links.predicted_ids else None
        return out

    # -- fitting
    def _fit_rows(self, rows: np.ndarray, end_s: float, input_tide=None) -> models.ForecastModel:
        """Fit the stations ``rows`` on data up to ``end_s``: those without inputs on
        ``history_days``, those with on ``network_history_days`` (their inputs further back)."""
        cfg = self._settings.forecast
        linked = self._links.linked[rows]
        parts, order = [], []
        for group, with_inputs in ((rows[~linked], False), (rows[linked], True)):
            if group.size == 0:
                continue
            days = max(cfg.history_days, cfg.network_history_days) if with_inputs else cfg.history_days
            back_s = days * 86_400.0 + (INPUT_HISTORY_MARGIN_H * 3600.0 if with_inputs else 0.0)
            # At least what a forecast reads at the origin, so the fit starts from the state an update would.
            back_s = max(back_s, models.history_needed_s(cfg.step_s, cfg.horizon_h * 3600.0))
            start_s = end_s - back_s
            t_s, _ = self._grid(start_s, end_s)
            levels, rain = self._levels(group, start_s, end_s)
            extra = self._inputs(group, start_s, end_s) if with_inputs else {}
            if extra and input_tide is not None:
                extra["input_tide"] = input_tide
            parts.append(models.fit(
                t_s, levels, rain, origin_s=end_s, horizon_s=cfg.horizon_h * 3600.0,
                window_s=cfg.history_days * 86_400.0, network_window_s=cfg.network_history_days * 86_400.0,
                # The same leads in every part (a gauge silent up to a day), so the parts combine.
                stale_allowance_s=86_400.0, **extra,
            ))
            order.append(np.arange(rows.size)[np.isin(rows, group)])
        return parts[0] if len(parts) == 1 else models.combine(parts, order)

    def run(self, now_s: float, include_current_step: bool = False,
            refit: Sequence[StationId] = ()) -> EngineResult:
        """Forecast every station at the last complete step before ``now_s`` (with
        ``include_current_step``, the half-filled one ``now_s`` lies in: an early forecast must see
        the reading that asked for it), fitting first where due."""
        cfg = self._settings.forecast
        step_s = cfg.step_s
        # The grid ends at the last complete step so the newest bin is not half-filled; an early
        # forecast takes the half-filled one too, or it would not see the departing reading.
        end_s = (math.floor(now_s / step_s) + (1 if include_current_step else 0)) * step_s
        result_fitted = False
        loaded = False
        refitted: tuple[StationId, ...] = ()
        fit_seconds = 0.0
        if self._model is None:
            self._model = self._load()
            loaded = self._model is not None
            self.loads += int(loaded)
        all_rows = np.arange(len(self._ids))
        due = self._model is None or end_s - float(np.nanmin(self._model.fitted_s)) >= cfg.refit_every_h * 3600.0
        started = time.perf_counter()
        if due or self._model is None:  # (due when there is no model; the check is for the type checker)
            self._model = self._fit_rows(all_rows, end_s)
            result_fitted = True
            self.fits += 1
        elif refit:
            rows = np.array(sorted({self._ids.index(s) for s in refit if s in self._ids}), dtype=np.int64)
            if rows.size:
                part = self._fit_rows(rows, end_s, input_tide=self._model.input_tide)
                others = np.setdiff1d(all_rows, rows)
                self._model = models.combine(
                    [models.take_stations(self._model, others), part] if others.size else [part],
                    [others, rows] if others.size else [rows],
                )
                refitted = tuple(self._ids[i] for i in rows)
                self.refits += rows.size
        if result_fitted or refitted:
            fit_seconds = time.perf_counter() - started
            self._save(self._model)
        # Every cycle (and after a refit of some stations): the fitted model moved to the newest data.
        if not result_fitted:
            start_s = end_s - models.history_needed_s(cfg.step_s, cfg.horizon_h * 3600.0)
            t_s, _ = self._grid(start_s, end_s)
            levels, rain = self._levels(all_rows, start_s, end_s)
            self._model = models.update(self._model, t_s, levels, rain, origin_s=end_s,
                                        **{k: v for k, v in self._inputs(all_rows, start_s, end_s).items()
                                           if k != "input_names"})
        forecast = models.predict(self._model, thresholds_m=self._thresholds_m, floor_m=self._floor_m,
                                  horizon_s=cfg.horizon_h * 3600.0, step_s=step_s)
        return EngineResult(
            origin_s=end_s, forecast=forecast, fitted_s=self._model.fitted_s.copy(), fitted=result_fitted,
            refitted=refitted, loaded=loaded, fit_seconds=fit_seconds, warnings=self._warnings(self._model),
        )

    def _warnings(self, model: models.ForecastModel) -> list[str]:
        """Each station's inputs it could not read, once per change (not every cycle)."""
        out = []
        for sid, text in zip(self._ids, model.inputs_used, strict=True):
            if not text or ("not used" not in text and "late" not in text):
                self._said.pop(sid, None)
                continue
            if self._said.get(sid) != text:
                self._said[sid] = text
                out.append(f"station={sid} inputs: {text}")
        return out


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
    """Fit on the history window ending at the last complete step before ``now_s`` and forecast
    (a one-off: no fitted model is kept or read). Returns (end of the window, forecast)."""
    no_file = settings.model_copy(update={"forecast": settings.forecast.model_copy(update={"model_path": ""})})
    engine = ForecastEngine(store, no_file, station_ids, thresholds_m, rain_of, floor_m)
    result = engine.run(now_s, include_current_step)
    return result.origin_s, result.forecast


# The forecast process's own store connection and fitted model, made on its first run.
_process_engine: ForecastEngine | None = None


# The forecast process's CPU priority: batch work that must give way to ingest and alerts
# when the cores are busy (on the 2-core test machine no difference was measurable).
FORECAST_NICENESS = 10


def _lower_priority() -> None:
    """Make the forecast process yield the CPU to ingest and alerts (batch work, not urgent)."""
    try:
        os.nice(FORECAST_NICENESS)
    except OSError:  # not permitted here: a forecast at normal priority still works
        pass


def _forecast_in_process(
    settings: Settings,
    station_ids: tuple[StationId, ...],
    thresholds_m: np.ndarray,
    rain_of: Sequence[StationId | None],
    floor_m: np.ndarray | None,
    now_s: float,
    early: bool,
    refit: tuple[StationId, ...],
) -> EngineResult:
    """:meth:`ForecastEngine.run` in the forecast process, which keeps the fitted model between runs."""
    global _process_engine
    if _process_engine is None:
        from floodwatch.store import open_store

        _process_engine = ForecastEngine(open_store(settings), settings, station_ids, thresholds_m, rain_of, floor_m)
    return _process_engine.run(now_s, early, refit)


class ForecastJob:
    """Runs the forecaster on demand or on a schedule; keeps the latest result.

    With ``isolated=True`` the reading and forecasting run in a child process
    (started on the first run, kept for the next ones) that opens the store
    named by ``settings.store.url`` itself and keeps the fitted model; ``store``
    is then not read here. ``fits``, ``refits`` and ``loads`` count full fits,
    stations refitted after a departing reading, and fitted models read from
    the model file.
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
        self._thresholds_m = np.array([_warning_levels_m(s) for s in stations], dtype=float).reshape(-1, 3)
        # Each level station reads the rain of the gauge named in its config.
        self._rain_of = [s.rain_station for s in stations]
        # A street gauge never reads below the dry street: forecasts are clipped there.
        self._floor_m = np.array([np.nan if s.dry_level_m is None else s.dry_level_m for s in stations], dtype=float)
        self.runs = 0
        self.early_runs = 0
        self.fits = 0
        self.refits = 0
        self.loads = 0
        self._departed: set[StationId] = set()
        self._engine: ForecastEngine | None = None
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
                log.info("reading departs from forecast station=%s ts=%d level_m=%.3f: "
                         "refitting it and forecasting now",
                         r.station_id, int(r.ts_s), r.water_level_m)
                # Its model has just been shown wrong: the early run refits it (the others keep theirs).
                self._departed.add(r.station_id)
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

    def _compute(self, now_s: float, early: bool = False) -> EngineResult:
        refit = tuple(sorted(self._departed)) if early else ()
        self._departed.difference_update(refit)
        if not self._isolated:
            if self._engine is None:
                self._engine = ForecastEngine(self._store, self._settings, self._station_ids, self._thresholds_m,
                                              self._rain_of, self._floor_m)
            return self._engine.run(now_s, early, refit)
        if self._pool is None:
            # spawn, not fork: this process has MQTT, SQLite and HTTP threads a fork would copy mid-flight.
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_lower_priority)
        try:
            return self._pool.submit(
                _forecast_in_process, self._settings, self._station_ids, self._thresholds_m, self._rain_of,
                self._floor_m, now_s, early, refit,
            ).result()
        except BrokenProcessPool:
            # The forecast process died (out of memory, killed): start a fresh one next run (it
            # reads the model file, so it need not fit first).
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
        result = self._compute(now_s, early)
        forecast = result.forecast
        issued = IssuedForecast(issued_s=now_s, station_ids=self._station_ids, forecast=forecast,
                                fitted_s=result.fitted_s)
        self._latest = issued
        self.runs += 1
        self.fits += int(result.fitted)
        self.refits += len(result.refitted)
        self.loads += int(result.loaded)
        metrics.inc("floodwatch_forecasts_made_total")
        metrics.set_gauge("floodwatch_forecast_seconds", time.perf_counter() - started)
        if result.loaded:
            log.info("forecast model read from its file stations=%d fitted=%s", len(self._station_ids),
                     int(np.nanmin(result.fitted_s)))
        if result.fitted:
            metrics.inc("floodwatch_forecast_fits_total")
            metrics.set_gauge("floodwatch_forecast_fit_seconds", result.fit_seconds)
            log.info("forecast fitted stations=%d origin=%s seconds=%.3f", len(self._station_ids),
                     int(result.origin_s), result.fit_seconds)
        if result.refitted:
            log.info("forecast refitted stations=%s origin=%s seconds=%.3f", ",".join(result.refitted),
                     int(result.origin_s), result.fit_seconds)
        for warning in result.warnings:
            log.warning("forecast %s", warning)
        log.info(
            "forecast issued stations=%d origin=%s models=%s seconds=%.3f",
            len(self._station_ids),
            int(result.origin_s),
            ",".join(sorted(set(forecast.model_name))),
            time.perf_counter() - started,
        )
        if self._on_forecast is not None:
            self._on_forecast(issued)
        return issued
