"""The page in a real headless Chromium, as an officer would use it."""

from __future__ import annotations

import re
import time
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from tests.gauge_page.conftest import seed_history, write_levels

pytestmark = pytest.mark.browser

GREEN, YELLOW, ORANGE, RED = "rgb(46, 125, 50)", "rgb(249, 168, 37)", "rgb(239, 108, 0)", "rgb(198, 40, 40)"


def _only_local(urls: list[str], port: int) -> list[str]:
    return [u for u in urls if not (urlparse(u).hostname == "127.0.0.1" and urlparse(u).port == port)]


def test_page_loads_without_console_errors_or_outside_requests(page_settings, page_store, serve_page, watched_page):
    seed_history(page_settings, page_store)
    server = serve_page()
    page = watched_page.page
    page.goto(server.url + "/")
    expect(page.locator('#station-rows tr[data-station="LP-W01"]')).to_be_visible()
    # The map shows this site's own gauges; external ones have their own panel.
    own_levels = [s for s in page_settings.own_stations if s.kind == "water_level"]
    expect(page.locator("#map-svg circle.station")).to_have_count(len(own_levels))
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    page.goto(server.url + "/#station=LP-W01")
    expect(page.locator("#chart canvas").first).to_be_visible()
    page.click("#lang-toggle")
    expect(page.locator("#overview h2")).to_have_text("All stations, most dangerous first")
    page.goto(server.url + "/public")
    expect(page.locator('#station-rows tr[data-station="LP-W06"]')).to_be_visible()
    expect(page.locator("#login-open")).to_have_count(0)
    page.goto(server.url + "/docs")
    expect(page.locator(".opblock").first).to_be_visible()

    assert watched_page.console_errors == []
    assert _only_local(watched_page.requested_urls, server.port) == []
    assert any(u.endswith("/static/vendor/uplot/uPlot.iife.min.js") for u in watched_page.requested_urls)


def test_published_reading_appears_without_reload(page_settings, page_store, hub, serve_page, watched_page):
    seed_history(page_settings, page_store)
    server = serve_page()
    page = watched_page.page
    page.goto(server.url + "/")
    level = page.locator('#station-rows tr[data-station="LP-W04"] .level')
    expect(level).to_have_text("0.95")  # watch 1.35 - 0.4 from the seeded history
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    page.evaluate("window.__sameDocument = true")

    started = time.monotonic()
    write_levels(page_store, hub, {"LP-W04": 1.23})
    expect(level).to_have_text("1.23", timeout=5_000)
    shown_after_s = time.monotonic() - started

    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
    assert shown_after_s < 5.0


def test_station_crossing_levels_turns_the_right_colour(page_settings, page_store, hub, serve_page, watched_page):
    seed_history(page_settings, page_store)
    server = serve_page()
    page = watched_page.page
    page.goto(server.url + "/")
    row = page.locator('#station-rows tr[data-station="LP-W05"]')  # watch 1.20, warning 1.45, evacuate 1.70
    box = row.locator(".lvlbox")
    dot = page.locator('#map-svg circle[data-station="LP-W05"]')
    expect(row).to_have_attribute("data-level", "0")
    expect(box).to_have_css("background-color", GREEN)

    for level_m, cls, colour in ((1.25, "1", YELLOW), (1.50, "2", ORANGE), (1.75, "3", RED)):
        write_levels(page_store, hub, {"LP-W05": level_m})
        expect(row).to_have_attribute("data-level", cls, timeout=5_000)
        expect(box).to_have_css("background-color", colour)
        expect(dot).to_have_attribute("fill", re.compile(colour_hex(colour), re.I))
    # The most dangerous station is listed first.
    expect(page.locator("#station-rows tr").first).to_have_attribute("data-station", "LP-W05")


def colour_hex(rgb: str) -> str:
    r, g, b = (int(v) for v in re.findall(r"\d+", rgb))
    return f"#{r:02x}{g:02x}{b:02x}"


def test_page_reconnects_by_itself_after_the_server_drops(page_settings, page_store, watched_page):
    from floodwatch.clock import SystemClock
    from floodwatch.gauge_page import EventHub, create_app
    from floodwatch.gauge_page._serve import BackgroundServer

    seed_history(page_settings, page_store)
    first_hub = EventHub()
    first_app = create_app(page_settings, page_store, SystemClock(), hub=first_hub)
    server = BackgroundServer(first_app, first_hub).start()
    page = watched_page.page
    page.goto(server.url + "/")
    live = page.locator("#live")
    expect(live).to_have_class(re.compile(r"\bon\b"))
    page.evaluate("window.__sameDocument = true")

    server.stop()  # the control room's link to the server drops
    expect(live).to_have_class(re.compile(r"\boff\b"), timeout=5_000)

    second_hub = EventHub()
    second_app = create_app(page_settings, page_store, SystemClock(), hub=second_hub,
                            state=first_app.state.page.state)
    with BackgroundServer(second_app, second_hub, port=server.port):
        expect(live).to_have_class(re.compile(r"\bon\b"), timeout=10_000)
        write_levels(page_store, second_hub, {"LP-W07": 1.91})
        expect(page.locator('#station-rows tr[data-station="LP-W07"] .level')).to_have_text("1.91", timeout=5_000)
        assert page.evaluate("window.__sameDocument") is True
    first_app.state.page.state.close()
