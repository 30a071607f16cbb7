"""One supervisor that starts every stage in data-flow order and stops them in reverse.

Used by ``floodwatch serve`` (a municipality's production process) and by
``floodwatch demo`` (which adds a broker, simulated nodes and a LINE
stand-in around it). Stages are wired by callbacks so data flows one way:
ingest -> store -> forecast -> alerts -> LINE and the page.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from floodwatch import alerts
from floodwatch import feeds as feeds_module
from floodwatch import gauge_page
from floodwatch import ingest
from floodwatch import store as store_module
from floodwatch.clock import Clock
from floodwatch.settings import Settings
from floodwatch.vocabulary import Reading, StationId
from floodwatch.scheduler import ForecastJob, IssuedForecast, OfflineCheck, PeriodicWork

log = logging.getLogger(__name__)

OFFLINE_CHECK_INTERVAL_S = 600.0
INGEST_CONNECT_WAIT_S = 10.0


def _reading_event(r: Reading) -> dict[str, Any]:
    return {
        "station_id": r.station_id,
        "ts_s": r.ts_s,
        "water_level_m": r.water_level_m,
        "rain_mm": r.rain_mm,
        "battery_v": r.battery_v,
        "rssi_dbm": r.rssi_dbm,
        "qc_flag": int(r.qc_flag),
        "discharge_m3_s": r.discharge_m3_s,
    }


@dataclass
class System:
    settings: Settings
    clock: Clock
    serve_page: bool = True
    # Forecasts in their own process: in a thread they hold the interpreter lock for
    # seconds at a time and every alert waits behind them (docs/performance.md).
    isolate_forecasts: bool = True
    _stoppers: list[tuple[str, Any]] = field(default_factory=list)
    _feed_states: dict[str, Any] = field(default_factory=dict)

    def start(self) -> System:
        try:
            return self._start()
        except BaseException:
            self.stop()  # what did start is stopped again: no thread or open file is left behind
            raise

    def _start(self) -> System:
        settings, clock = self.settings, self.clock
        self.store = store_module.open_store(settings)
        self._stoppers.append(("store", self.store.close))
        self.hub = gauge_page.EventHub()
        self.alerts = alerts.AlertService(settings, clock)
        self.alerts.start()
        self._stoppers.append(("alerts", self.alerts.close))
        self.forecaster = ForecastJob(settings, self.store, clock, on_forecast=self._forecast_issued,
                                      isolated=self.isolate_forecasts)
        self._stoppers.append(("early forecasts", self.forecaster.close))
        self.ingest = ingest.IngestService(
            settings, self.store, clock, on_stored=self._readings_stored, on_status=self._status_changed
        )
        # External stations' feeds store through the same path and call back like ingest does.
        self.feeds = feeds_module.FeedService(settings, self.store, clock, on_stored=self._readings_stored,
                                              on_health=self._feed_health)
        self.feeds.start()
        self._stoppers.append(("feeds", self.feeds.stop))
        # Their own scheduler, stopped without waiting: a source that hangs must not hold the shutdown.
        self.feed_schedule = PeriodicWork(clock)
        self.feeds.schedule(self.feed_schedule.every)
        self.periodic = PeriodicWork(clock)
        self.periodic.every("forecast", settings.forecast.interval_s, self.forecaster.run_once)
        self.offline_check = OfflineCheck(settings, self.store, clock, on_status=self._status_changed)
        # The first check waits one interval so nodes have time to report after a restart.
        self.periodic.every("offline-check", OFFLINE_CHECK_INTERVAL_S, self.offline_check.run_once, run_now=False)
        self.app = gauge_page.create_app(
            settings, self.store, clock, hub=self.hub, alerts=self.alerts,
            forecasts=self.forecaster, ingest=self.ingest, feeds=self.feeds,
        )
        self.app.include_router(self.alerts.webhook_router())
        # Ingest after everything it calls back into, and before the page: once the
        # page answers, the broker has acknowledged our subscriptions, so readings
        # published from then on are ours (a first-ever start has no session yet).
        self.ingest.start()
        self._stoppers.append(("ingest", self.ingest.stop))
        if not self.ingest.wait_connected(INGEST_CONNECT_WAIT_S):
            log.warning("broker %s not reachable yet; ingest keeps retrying in the background", settings.mqtt.url)
        if self.serve_page:
            self._start_page()
        self.periodic.start()
        self._stoppers.append(("scheduler", self.periodic.stop))
        self.feed_schedule.start()
        self._stoppers.append(("feed schedule", lambda: self.feed_schedule.stop(wait=False)))
        return self

    def _start_page(self) -> None:
        page = self.settings.page
        # proxy_headers off: the page's TrustedProxyHeaders decides whom to believe (page.trusted_proxies).
        config = uvicorn.Config(self.app, host=page.host, port=page.port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=3, proxy_headers=False)
        self._server = uvicorn.Server(config)
        thread = threading.Thread(target=self._server.run, name="gauge-page", daemon=True)
        thread.start()
        for _ in range(200):
            if self._server.started:
                break
            if not thread.is_alive():
                raise RuntimeError(
                    f"the gauge page could not start on {page.host}:{page.port}; is the port in use? "
                    "choose another with --port or FLOODWATCH_PAGE__PORT"
                )
            threading.Event().wait(0.05)
        log.info("gauge page on http://%s:%d", page.host, page.port)

        def stop_page() -> None:
            # Open event streams would hold uvicorn's graceful shutdown until they end: end them first.
            self.hub.close()
            self._server.should_exit = True
            thread.join(10)

        self._stoppers.append(("page", stop_page))

    def stop(self) -> None:
        while self._stoppers:
            name, stop = self._stoppers.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping %s failed; stopping the rest", name)

    # Callbacks: each hands plain data to the next stages.
    def _readings_stored(self, readings: list[Reading]) -> None:
        self.alerts.on_readings(readings)
        self.hub.publish("readings", [_reading_event(r) for r in readings])
        # A reading outside the forecast's band re-forecasts now, not at the next scheduled run.
        self.forecaster.check_readings(readings)

    def _status_changed(self, station_id: StationId, status: str, ts_s: float) -> None:
        self.alerts.on_status(station_id, status, ts_s)
        self.hub.publish("status", {"station_id": station_id, "status": status, "ts_s": ts_s})

    def _feed_health(self, feed_id: str, health: dict[str, Any]) -> None:
        self.alerts.on_feed_health(feed_id, health)
        # Pages refetch on a change of state; what a run stored reaches them as "readings" already.
        state = health.get("state")
        if self._feed_states.get(feed_id) != state:
            self._feed_states[feed_id] = state
            self.hub.publish("feeds", {"feed": feed_id, "state": state})

    def _forecast_issued(self, issued: IssuedForecast) -> None:
        self.alerts.on_forecast(issued)
        self.hub.publish("forecast", {"issued_s": issued.issued_s})
