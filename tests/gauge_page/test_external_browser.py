"""External stations on the live page, in a real Chromium: marked external, their feed's health, predictions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from floodwatch.clock import SystemClock
from floodwatch.feeds import FeedService
from floodwatch.feeds.standin import ThaiWaterStandIn
from tests.feeds.conftest import DAMS, GAUGES, level_of, release_of
from tests.feeds.test_dropfolder import drop, tide_table

pytestmark = pytest.mark.browser
EXTERNAL = ("TC-SAMCHUK", "TC-SUPHAN", "KRASIAO-REL", "TC-MOUTH-TIDE")


@pytest.fixture
def feeds(page_settings, page_store) -> Iterator[tuple[FeedService, ThaiWaterStandIn]]:
    with ThaiWaterStandIn(GAUGES, DAMS, level_m=level_of, release_m3_s=release_of, now_s=time.time) as standin:
        tw = page_settings.feed("thaiwater")
        tw.enabled, tw.url, tw.timeout_s = True, standin.url, 2.0
        service = FeedService(page_settings, page_store, SystemClock()).start()
        try:
            yield service, standin
        finally:
            service.stop()


def test_external_stations_show_who_runs_them_their_feeds_health_and_the_tide_prediction(
        page_settings, page_store, serve_page, watched_page, feeds):
    service, standin = feeds
    assert service.run_once("thaiwater").ok
    hour = (time.time() // 3600) * 3600
    drop(page_settings.feed("officer-drop").folder, "TC-MOUTH-TIDE_hd.csv", tide_table(hour - 6 * 3600, 48))
    assert service.run_once("officer-drop").stored == 48
    standin.fail("html", times=None, path="waterlevel_load")  # ThaiWater under maintenance from now on
    for _ in range(3):
        service.run_once("thaiwater")
    server = serve_page(feeds=service)
    page = watched_page.page
    page.goto(server.url + "/")
    page.click("#lang-toggle")  # English

    panel = page.locator("#external")
    expect(panel).to_be_visible()
    for sid in EXTERNAL:
        row = panel.locator(f'#external-rows tr[data-station="{sid}"]')
        expect(row.locator(".badge.external")).to_contain_text("external")
        expect(page.locator(f'#station-rows tr[data-station="{sid}"]')).to_have_count(0)  # not this town's gauges
        expect(page.locator(f'#health-rows tr[data-station="{sid}"]')).to_have_count(0)
    samchuk = panel.locator('#external-rows tr[data-station="TC-SAMCHUK"]')
    expect(samchuk).to_contain_text("RID / ThaiWater")
    expect(samchuk.locator(".feed-state")).to_have_attribute("data-feed-state", "failing")
    expect(samchuk).to_contain_text("html_not_json")
    expect(samchuk).not_to_contain_text("silent")
    krasiao = panel.locator('#external-rows tr[data-station="KRASIAO-REL"]')
    expect(krasiao.locator(".level")).to_have_text("60")
    expect(krasiao).to_contain_text("m³/s")
    tide = panel.locator('#external-rows tr[data-station="TC-MOUTH-TIDE"]')
    expect(tide.locator(".badge.predicted")).to_have_text("predicted")
    expect(tide).to_contain_text("predicted until")
    expect(tide.locator(".feed-state")).to_have_attribute("data-feed-state", "ok")
    expect(panel.locator('#feed-list li[data-feed="thaiwater"] .feed-state')).to_have_text("failing")
    own_levels = [s for s in page_settings.own_stations if s.kind == "water_level"]
    expect(page.locator("#map-svg circle.station")).to_have_count(len(own_levels))
    expect(page.locator("#health-rows")).not_to_contain_text("TC-")

    tide.click()  # the prediction's chart: drawn ahead of "now", labelled as a prediction
    expect(page.locator("#chart canvas").first).to_be_visible()
    expect(page.locator("#chart .u-legend")).to_contain_text("predicted")
    expect(page.locator("#detail-title")).to_contain_text("TC-MOUTH-TIDE")
    assert watched_page.console_errors == []
    port = int(server.url.rsplit(":", 1)[1])
    outside = [u for u in watched_page.requested_urls if f"127.0.0.1:{port}" not in u]
    assert outside == [], outside


def test_the_api_documents_and_serves_the_external_fields(page_settings, page_store, feeds):
    from fastapi.testclient import TestClient

    from floodwatch.gauge_page import EventHub, create_app

    service, _ = feeds
    service.run_once("thaiwater")
    app = create_app(page_settings, page_store, SystemClock(), hub=EventHub(), feeds=service)
    with TestClient(app) as client:
        rows = {r["id"]: r for r in client.get("/api/stations").json()["stations"]}
        feeds_out = client.get("/api/feeds").json()
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    app.state.page.state.close()
    krasiao: dict[str, Any] = rows["KRASIAO-REL"]
    assert krasiao["external"] and krasiao["kind"] == "discharge" and krasiao["discharge_m3_s"] == 60.0
    assert krasiao["status"] == "external" and krasiao["feed_health"]["state"] == "ok"
    assert rows["LP-W01"]["external"] is False and rows["LP-W01"]["feed_health"] is None
    assert [f["id"] for f in feeds_out["feeds"]] == ["thaiwater", "officer-drop"] and feeds_out["running"]
    assert {"external", "series", "agency", "feed", "feed_health", "discharge_m3_s",
            "predicted_until_s"} <= set(schema["StationRowOut"]["properties"])
    assert "FeedsOut" in schema
