"""Fixtures for the gauge page: a real SQLite store, the page on a real port, a real Chromium."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from floodwatch import store as store_pkg
from floodwatch.settings import Settings
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.gauge_page import EventHub, create_app
from floodwatch.gauge_page._serve import BackgroundServer
from floodwatch.gauge_page.screenshots import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
def page_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    return make_settings(page={"state_url": f"sqlite:///{tmp_path}/page.db", "keepalive_s": 1.0})


@pytest.fixture
def page_store(page_settings: Settings) -> Iterator[Any]:
    db = store_pkg.open_store(page_settings)
    yield db
    db.close()


@pytest.fixture
def hub() -> EventHub:
    return EventHub()


def write_levels(db: Any, hub: EventHub | None, levels_m: dict[str, float], ts_s: float | None = None,
                 *, qc_flag: QcFlag = QcFlag.PASS) -> list[Reading]:
    """Store one reading per station and publish it the way ingest's on_stored does."""
    ts_s = time.time() if ts_s is None else ts_s
    readings = [
        Reading(StationId(sid), ts_s, seq=int(ts_s), water_level_m=level, battery_v=3.9, rssi_dbm=-75.0,
                qc_flag=qc_flag, received_s=ts_s)
        for sid, level in levels_m.items()
    ]
    result = db.write_batch(readings)
    assert result.stored == len(readings)
    if hub is not None:
        hub.publish("readings", readings)
    return readings


def seed_history(settings: Settings, db: Any, *, hours: float = 3.0, step_s: float = 600.0) -> None:
    """A quiet few hours at every station: levels a little below watch, some rain."""
    now_s = time.time()
    readings = []
    for k in range(int(hours * 3600 / step_s)):
        ts_s = now_s - hours * 3600 + k * step_s
        for s in settings.stations:
            if s.series == "predicted":
                continue  # a prediction is loaded ahead of time, not written as history
            if s.kind == "water_level":
                readings.append(Reading(StationId(s.id), ts_s, seq=k, water_level_m=s.levels.watch_m - 0.4,
                                        battery_v=3.95, rssi_dbm=-80.0, qc_flag=QcFlag.PASS))
            elif s.kind == "discharge":
                readings.append(Reading(StationId(s.id), ts_s, discharge_m3_s=40.0, qc_flag=QcFlag.PASS))
            else:
                readings.append(Reading(StationId(s.id), ts_s, seq=k, rain_mm=0.4, battery_v=3.95,
                                        rssi_dbm=-80.0, qc_flag=QcFlag.PASS))
    db.write_batch(readings)


@pytest.fixture
def serve_page(page_settings: Settings, page_store: Any, hub: EventHub) -> Iterator[Callable[..., BackgroundServer]]:
    """Start the page (optionally with alerts / forecasts / ingest) on a free loopback port."""
    from floodwatch.clock import SystemClock

    started: list[tuple[BackgroundServer, Any]] = []

    def start(**services: Any) -> BackgroundServer:
        app = create_app(page_settings, page_store, SystemClock(), hub=hub, **services)
        server = BackgroundServer(app, hub).start()
        started.append((server, app))
        return server

    yield start
    for server, app in started:
        server.stop()
        app.state.page.state.close()  # the page's own SQLite file


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@dataclass
class WatchedPage:
    """A browser tab that remembers console errors and every URL it requested."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    requested_urls: list[str] = field(default_factory=list)


@pytest.fixture
def watched_page(browser: Any) -> Iterator[WatchedPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watched = WatchedPage(page)
    page.on("console", lambda m: watched.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watched.console_errors.append(f"page error: {e}"))
    context.on("request", lambda r: watched.requested_urls.append(r.url))
    page.set_default_timeout(10_000)
    yield watched
    context.close()
