"""The officers' "how well did we warn" view: /api/verification and its panel in a real Chromium.

History is made the way the live system makes it: readings in the real SQLite
store, and the real alert service (SQLite state) deciding on them and on
forecasts at the moments they happened (a FixedClock walked through the past).
Moo 6's street floods two days ago: a forecast warned two hours ahead of watch,
the warning level was only seen when it came (a late warning). Moo 1 got a
forecast warning a day and a half ago that came to nothing.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

from floodwatch import alerts
from floodwatch.clock import FixedClock
from floodwatch.models import Forecast
from floodwatch.scheduler import IssuedForecast
from floodwatch.vocabulary import QcFlag, Reading, StationId

H = 3600.0
STEP_S = 600.0


def _forecast(settings: Any, issued_s: float, station_id: str, level: int) -> IssuedForecast:
    """A forecast saying ``station_id`` reaches warning level ``level`` (1-3) within the hour, others stay low."""
    ids = tuple(StationId(s.id) for s in settings.level_stations)
    t_s = issued_s + STEP_S * np.arange(1, 19)
    n, h = len(ids), t_s.size
    median = np.full((n, h), 0.5)
    exceed = np.zeros((n, 3, h))
    exceed[ids.index(station_id), :level, 6:] = 0.95
    return IssuedForecast(issued_s, ids, Forecast(
        t_s=t_s, median_m=median, lower_m=median - 0.1, upper_m=median + 0.1, exceed_prob=exceed,
        first_crossing_s=np.full((n, 3), np.nan), rise_rate_cm_per_h=np.zeros(n), model_name=("arx",) * n))


@pytest.fixture
def history(page_settings, page_store) -> Iterator[dict[str, Any]]:
    """Three and a half days: Moo 6's street (LP-W06: watch 1.45, warning 1.60) floods two days ago; Moo 1's
    river gauge (LP-W02) stays low."""
    now_s = time.time()
    start = np.floor((now_s - 3.5 * 86400.0) / STEP_S) * STEP_S
    t = np.arange(start, now_s - STEP_S, STEP_S)
    flood_start = start + 1.5 * 86400.0
    ramp = np.clip((t - flood_start) / (3 * H), 0.0, 1.0) - np.clip((t - flood_start - 5 * H) / (3 * H), 0.0, 1.0)
    street = 1.40 + 0.30 * ramp  # 10 cm/h: no fast rise, a plain climb to 1.70 m and back
    river = np.full(t.size, page_settings.station("LP-W02").levels.watch_m - 0.4)
    steps = [[Reading(StationId(sid), float(a), water_level_m=float(level[i]), qc_flag=QcFlag.PASS)
              for sid, level in (("LP-W06", street), ("LP-W02", river))] for i, a in enumerate(t)]
    page_store.write_batch([r for step in steps for r in step])
    watch_s = float(t[np.argmax(street >= 1.45)])
    warning_s = float(t[np.argmax(street >= 1.60)])
    clock = FixedClock(float(t[0]))
    service = alerts.AlertService(page_settings, clock)
    # The alert service lived through those days: each reading and forecast at its own moment.
    forecasts = {watch_s - 2 * H: ("LP-W06", 1), now_s - 1.5 * 86400.0: ("LP-W02", 2)}
    pending = sorted(forecasts)
    for step in steps:
        while pending and pending[0] <= step[0].ts_s:
            issued = pending.pop(0)
            clock.at_s = issued
            service.on_forecast(_forecast(page_settings, issued, *forecasts[issued]))
        clock.at_s = step[0].ts_s
        service.on_readings(step)
        service.tick()  # the ticker's re-decisions (lowering, forecasts expiring)
    try:
        yield {"service": service, "watch_s": watch_s, "warning_s": warning_s, "now_s": now_s}
    finally:
        service.close()


def test_the_api_lists_each_event_its_first_warning_and_the_warnings_for_nothing(history, serve_page):
    server = serve_page(alerts=history["service"])
    with urllib.request.urlopen(f"{server.url}/api/verification?days=30", timeout=10) as r:
        data = json.load(r)
    zones = {z["zone_id"]: z for z in data["zones"]}
    moo6 = zones["moo-6"]
    events = {e["level"]: e for e in moo6["events"]}
    assert set(events) == {1, 2}, moo6["events"]
    watch, warning = events[1], events[2]
    assert watch["station_id"] == "LP-W06" and watch["warned"] and watch["first_warning_kind"] == "forecast"
    assert watch["lead_h"] == pytest.approx(2.0, abs=0.2)
    assert warning["warned"] and warning["first_warning_kind"] == "observed" and -1.0 <= warning["lead_h"] <= 0.0
    assert moo6["false_warnings"] == []
    falses = zones["moo-1"]["false_warnings"]
    assert [(f["level"], f["kind"]) for f in falses] == [(2, "forecast")]
    assert zones["moo-1"]["events"] == []
    summary = {s["level"]: s for s in data["summary"]}
    assert summary[1]["events"] == 1 and summary[1]["hits"] == 1 and summary[1]["pod"] == 1.0
    assert summary[2]["warnings"] == 2 and summary[2]["false_alarms"] == 1 and summary[2]["far"] == 0.5
    assert data["alerts_running"] is True and data["window_h"] == 24.0


def test_without_the_alert_service_the_view_still_lists_events(page_settings, page_store, history, serve_page):
    server = serve_page()
    with urllib.request.urlopen(f"{server.url}/api/verification?days=30", timeout=10) as r:
        data = json.load(r)
    assert data["alerts_running"] is False
    moo6 = next(z for z in data["zones"] if z["zone_id"] == "moo-6")
    assert [(e["level"], e["warned"]) for e in moo6["events"]] == [(1, False), (2, False)]


@pytest.mark.browser
def test_the_panel_shows_events_leads_and_warnings_that_came_to_nothing(history, serve_page, watched_page, tmp_path):
    server = serve_page(alerts=history["service"])
    page = watched_page.page
    page.goto(server.url + "/#warned")
    events = page.locator("#warned-events tr.event")
    expect(events).to_have_count(2)
    # Newest first: the warning level (late: observed once there), then watch (forecast, two hours ahead).
    expect(events.nth(0)).to_have_attribute("data-level", "2")
    expect(events.nth(0).locator(".lead")).to_contain_text("−")
    expect(events.nth(1).locator(".lead")).to_contain_text("2.")
    expect(events.nth(1)).to_contain_text("คาดการณ์")
    expect(page.locator('#warned-zones tr[data-zone="moo-6"]')).to_contain_text("2 / 2")
    falses = page.locator("#warned-false tr.false-warning")
    expect(falses).to_have_count(1)
    expect(falses.first).to_have_attribute("data-zone", "moo-1")
    page.click("#lang-toggle")
    expect(page.locator("#warned h2")).to_have_text("How well did we warn")
    expect(falses.first).to_contain_text("forecast")
    page.click('#warned-range [data-days="30"]')
    expect(page.locator('#warned-range [data-days="30"]')).to_have_class("active")
    expect(events).to_have_count(2)
    page.locator("#warned").screenshot(path=str(tmp_path / "warned.png"))  # for a human to look at on failure
    assert watched_page.console_errors == []
