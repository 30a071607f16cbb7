"""Each site's page is its own: its name in the title, its zones and river on the map, nothing of another site."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from floodwatch import store as store_pkg
from floodwatch.clock import SystemClock
from floodwatch.gauge_page import EventHub, create_app
from floodwatch.gauge_page._serve import BackgroundServer
from floodwatch.settings import example_site, load_site_settings
from tests.gauge_page.conftest import seed_history

pytestmark = pytest.mark.browser


@pytest.fixture
def nakhonchaisi_page(tmp_path):
    settings = load_site_settings(example_site("nakhonchaisi"))
    settings.store.url = f"sqlite:///{tmp_path}/fw.db"
    settings.page.state_url = f"sqlite:///{tmp_path}/page.db"
    db = store_pkg.open_store(settings)
    seed_history(settings, db)
    hub = EventHub()
    app = create_app(settings, db, SystemClock(), hub=hub)
    with BackgroundServer(app, hub) as server:
        yield server
    app.state.page.state.close()
    db.close()


def test_nakhon_chai_si_sees_its_own_name_zones_and_river(nakhonchaisi_page, watched_page):
    page = watched_page.page
    page.goto(nakhonchaisi_page.url + "/")
    expect(page.locator("#site-name")).to_have_text("เทศบาลตำบลนครชัยศรี")
    expect(page).to_have_title("ระดับน้ำ · เทศบาลตำบลนครชัยศรี")
    zones = page.locator("#map-svg path.zone")
    expect(zones).to_have_count(3)
    assert sorted(zones.evaluate_all("els => els.map(e => e.dataset.zone)")) == ["moo-1", "moo-2", "moo-3"]
    expect(page.locator("#map-svg path.river")).to_have_count(1)
    expect(page.locator("#map-svg path.river title")).to_have_text("แม่น้ำท่าจีน")
    page.click("#lang-toggle")
    expect(page.locator("#site-name")).to_have_text("Nakhon Chai Si Subdistrict Municipality")
    expect(page).to_have_title("Water levels · Nakhon Chai Si Subdistrict Municipality")
    text = page.locator("body").inner_text()
    assert "Lam Phaya" not in text and "ลำพญา" not in text
    assert not [u for u in watched_page.requested_urls if "lamphaya" in u]
    assert watched_page.console_errors == []


def test_the_public_view_is_the_site_s_too(nakhonchaisi_page, watched_page):
    page = watched_page.page
    page.goto(nakhonchaisi_page.url + "/public")
    expect(page.locator("#site-name")).to_have_text("เทศบาลตำบลนครชัยศรี")
    expect(page.locator("#map-svg path.zone")).to_have_count(3)
