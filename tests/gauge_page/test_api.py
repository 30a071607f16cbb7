"""The JSON API, login, CSRF and officer actions over HTTP against the real app and a real SQLite store.

Every request goes over a real socket to the page served by uvicorn on a
free loopback port (``over_http``), with httpx as the client: cookies,
headers and status codes are what a browser would get.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from floodwatch import alerts
from floodwatch import gauge_page
from floodwatch import scheduler
from floodwatch import metrics
from floodwatch.clock import SystemClock
from floodwatch.gauge_page import EventHub, create_app
from floodwatch.gauge_page._serve import BackgroundServer
from floodwatch.line_standin import LineStandIn
from tests.gauge_page.conftest import seed_history, write_levels

TOKEN = "api-test-token"
PASSWORD = "correct horse battery"


@contextmanager
def over_http(app) -> Iterator[httpx.Client]:
    """The app served by uvicorn on a free loopback port, and an HTTP client talking to it over the socket."""
    with BackgroundServer(app, app.state.page.hub) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def client(page_settings, page_store) -> Iterator[httpx.Client]:
    seed_history(page_settings, page_store)
    gauge_page.create_officer(page_settings, "somchai", PASSWORD)
    app = create_app(page_settings, page_store, SystemClock(), hub=EventHub())
    with over_http(app) as c:
        yield c
    app.state.page.state.close()


@pytest.fixture
def service_client(page_settings, page_store) -> Iterator[tuple[httpx.Client, Any, LineStandIn]]:
    seed_history(page_settings, page_store)
    gauge_page.create_officer(page_settings, "somchai", PASSWORD)
    with LineStandIn(tokens={TOKEN}) as line:
        page_settings.line.api_base_url = line.base_url
        page_settings.line.channel_access_token = SecretStr(TOKEN)
        service = alerts.AlertService(page_settings, SystemClock())
        service.subscribe_many([(f"U{n:032d}", "moo-3") for n in range(4)])
        service.start()
        app = create_app(page_settings, page_store, SystemClock(), hub=EventHub(), alerts=service)
        try:
            with over_http(app) as c:
                yield c, service, line
        finally:
            service.close()
            app.state.page.state.close()


def log_in(c: httpx.Client) -> dict[str, str]:
    r = c.post("/api/login", json={"username": "somchai", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


def test_stations_report_levels_classes_and_danger_order(client, page_store):
    write_levels(page_store, None, {"LP-W06": 1.85, "LP-W01": 1.95})  # evacuate 1.80; warning 1.90
    body = client.get("/api/stations").json()
    ids = [s["id"] for s in body["stations"]]
    assert ids[:2] == ["LP-W06", "LP-W01"]
    w06 = body["stations"][0]
    assert (w06["level_m"], w06["level_class"], w06["level_name_th"]) == (1.85, 3, "อพยพ")
    assert w06["levels"] == [1.45, 1.60, 1.80]
    assert w06["trend"] == "rising" and w06["rate_cm_per_h"] > 0
    assert w06["qc_name"] == "pass" and w06["stale"] is False
    zones = {z["id"]: z["level"] for z in body["zones"]}
    assert zones["moo-6"] == 3 and zones["moo-5"] == 2 and zones["moo-3"] == 0
    assert body["zone_level_source"] == "observed"


def test_unknown_station_is_404_with_the_fix_and_bad_hours_is_422(client):
    r = client.get("/api/stations/LP-W99/readings")
    assert r.status_code == 404 and "add it under [[stations]]" in r.json()["detail"]
    assert client.get("/api/stations/LP-W01/readings?hours=0").status_code == 422
    readings = client.get("/api/stations/LP-W01/readings?hours=1").json()["readings"]
    assert 5 <= len(readings) <= 7 and readings[0]["ts_s"] < readings[-1]["ts_s"]


def test_forecast_series_and_band_from_the_real_forecaster(page_settings, page_store):
    seed_history(page_settings, page_store, hours=30.0)
    clock = SystemClock()
    forecaster = scheduler.ForecastJob(page_settings, page_store, clock)
    forecaster.run_once()
    app = create_app(page_settings, page_store, clock, hub=EventHub(), forecasts=forecaster)
    with over_http(app) as c:
        fc = c.get("/api/forecasts").json()
        assert fc["running"] is True
        issued = fc["issued"]
        # Every level station but a predicted series (a tide table is an input, not forecast).
        assert issued["station_ids"] == [s.id for s in page_settings.level_stations if s.series != "predicted"]
        horizon_h = (issued["t_s"][-1] - issued["issued_s"]) / 3600.0
        assert horizon_h == pytest.approx(page_settings.forecast.horizon_h, abs=1.0)
        series = c.get("/api/stations/LP-W03/series?hours=24").json()
        band = series["forecast"]
        assert len(band["t_s"]) == len(band["median_m"]) == len(band["lower_m"]) == len(band["upper_m"])
        assert all(lo <= med <= hi for lo, med, hi in zip(band["lower_m"], band["median_m"], band["upper_m"]))
        assert series["levels"] == [1.40, 1.65, 1.90]
        assert len(series["observed"]["t_s"]) >= 140
        # The newest bin may still be empty (null) depending on where "now" falls.
        assert series["rain"]["station_id"] == "LP-R03" and sum(v for v in series["rain"]["rain_mm"] if v is not None) > 0
        row = c.get("/api/stations/LP-W03").json()["station"]
        assert row["forecast"]["peak_m"] is not None
    app.state.page.state.close()


def test_services_not_running_say_so(client):
    assert client.get("/api/forecasts").json() == {"running": False, "issued": None}
    assert client.get("/api/alerts").json() == {"running": False, "entries": []}
    health = client.get("/api/health").json()
    assert health["ok"] is True and health["ingest"] == {"running": False}
    assert {s["id"] for s in health["stations"]} >= {"LP-W01", "LP-R01"}


def test_metrics_in_prometheus_text(client):
    metrics.inc("floodwatch_readings_ingested_total", station="LP-W01")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'floodwatch_last_reading_age_seconds{station="LP-W01"}' in r.text
    assert 'floodwatch_readings_ingested_total{station="LP-W01"}' in r.text


def test_openapi_documents_the_api_and_docs_are_served_locally(client):
    spec = client.get("/openapi.json").json()
    for path in ("/api/stations", "/api/stations/{station_id}/readings", "/api/forecasts", "/api/alerts",
                 "/api/health", "/api/messages/send", "/api/events"):
        assert path in spec["paths"], path
    docs = client.get("/docs").text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()


def test_login_rules(client):
    wrong = client.post("/api/login", json={"username": "somchai", "password": "nope-nope"})
    assert wrong.status_code == 401
    unknown = client.post("/api/login", json={"username": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401
    cross = client.post("/api/login", json={"username": "somchai", "password": PASSWORD},
                        headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    form = client.post("/api/login", content=f"username=somchai&password={PASSWORD}",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code in (415, 422)
    assert client.get("/api/me").json() == {"logged_in": False}
    ok = client.post("/api/login", json={"username": "somchai", "password": PASSWORD})
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    me = client.get("/api/me").json()
    assert me["logged_in"] is True and me["csrf_token"] == ok.json()["csrf_token"]
    actions = [a["action"] for a in client.get("/api/audit").json()["entries"]]
    assert actions == ["login", "login_failed", "login_failed"]
    headers = {"X-CSRF-Token": me["csrf_token"]}
    assert client.post("/api/logout", headers=headers).status_code == 200
    assert client.get("/api/me").json() == {"logged_in": False}
    assert client.get("/api/audit").status_code == 401


def test_maintenance_is_recorded_and_shown(client):
    headers = log_in(client)
    r = client.post("/api/stations/LP-W04/maintenance", json={"on": True, "note": "sensor cleaning"},
                    headers=headers)
    assert r.status_code == 200
    rows = {s["id"]: s for s in client.get("/api/stations").json()["stations"]}
    assert rows["LP-W04"]["maintenance"] is True and rows["LP-W03"]["maintenance"] is False
    entry = client.get("/api/audit").json()["entries"][0]
    assert (entry["action"], entry["target"], entry["username"]) == ("maintenance_on", "LP-W04", "somchai")
    assert entry["detail"]["note"] == "sensor cleaning"
    assert client.post("/api/stations/LP-W99/maintenance", json={"on": True}, headers=headers).status_code == 404


def test_manual_message_needs_the_previewed_content_and_is_acknowledgeable(service_client):
    c, service, line = service_client
    stations = c.get("/api/stations").json()
    assert stations["zone_level_source"] == "alerts"
    assert {z["id"]: z["subscribers"] for z in stations["zones"]}["moo-3"] == 4
    headers = log_in(c)
    message = {"zones": ["moo-3"], "text_th": "ปิดประตูระบายน้ำ 18:00 น.", "text_en": "Sluice closes 18:00"}
    preview = c.post("/api/messages/preview", json=message, headers=headers).json()
    assert preview["total_recipients"] == 4
    assert preview["text"] == "ปิดประตูระบายน้ำ 18:00 น.\n\nSluice closes 18:00"
    changed = dict(message, text_th="ข้อความอื่น", confirm_token=preview["confirm_token"])
    assert c.post("/api/messages/send", json=changed, headers=headers).status_code == 409
    assert c.post("/api/messages/preview", json=dict(message, zones=["moo-99"]), headers=headers).status_code == 422

    sent = c.post("/api/messages/send", json=dict(message, confirm_token=preview["confirm_token"]), headers=headers)
    assert sent.status_code == 200, sent.text
    assert service.wait_delivered(10.0)
    delivered = [d for d in line.delivered_messages() if d.message.get("text", "").startswith("ปิดประตู")]
    assert sorted(d.user_id for d in delivered) == [f"U{n:032d}" for n in range(4)]

    entry = c.get("/api/alerts").json()["entries"][0]
    assert (entry["kind"], entry["zone"], entry["recipients"], entry["state"]) == ("manual", "moo-3", 4, "delivered")
    ack = c.post(f"/api/alerts/{entry['id']}/acknowledge", headers=headers)
    assert ack.status_code == 200
    assert c.post(f"/api/alerts/{entry['id']}/acknowledge", headers=headers).status_code == 409
    assert c.post("/api/alerts/999999/acknowledge", headers=headers).status_code == 404
    entry = c.get("/api/alerts").json()["entries"][0]
    assert entry["acknowledged_by"] == "somchai"
    actions = [a["action"] for a in c.get("/api/audit").json()["entries"]]
    assert actions[:2] == ["acknowledge", "manual_message"]


def test_actions_need_a_running_alert_service(client):
    headers = log_in(client)
    r = client.post("/api/test-alert", json={"text": ""}, headers=headers)
    assert r.status_code == 503 and "not running" in r.json()["detail"]
    assert [a["action"] for a in client.get("/api/audit").json()["entries"]] == ["login"]


def test_officers_from_settings_log_in_with_their_hash(page_settings, page_store):
    page_settings.page.officers = {"duty": gauge_page.hash_password("night shift 24h")}
    app = create_app(page_settings, page_store, SystemClock(), hub=EventHub())
    with over_http(app) as c:
        assert c.post("/api/login", json={"username": "duty", "password": "night shift 24h"}).status_code == 200
        assert c.post("/api/login", json={"username": "duty", "password": "night shift 25h"}).status_code == 401
    app.state.page.state.close()
    page_settings.page.officers = {"duty": "plain-text-password"}
    with pytest.raises(Exception, match="not a password hash"):
        create_app(page_settings, page_store, SystemClock(), hub=EventHub())


def test_passwords_are_salted_scrypt_and_short_ones_refused():
    a, b = gauge_page.hash_password(PASSWORD), gauge_page.hash_password(PASSWORD)
    assert a != b and a.startswith("scrypt$16384$8$1$") and PASSWORD not in a
    from floodwatch.gauge_page._state import verify_password

    assert verify_password(PASSWORD, a) and not verify_password(PASSWORD + "x", a)
    assert not verify_password(PASSWORD, "md5$abc")
    with pytest.raises(ValueError, match="at least 8"):
        gauge_page.hash_password("short")


def test_password_guessing_from_one_address_is_slowed_down_for_that_username(client):
    for _ in range(5):
        assert client.post("/api/login", json={"username": "somchai", "password": "guess-guess"}).status_code == 401
    locked = client.post("/api/login", json={"username": "somchai", "password": PASSWORD})
    assert locked.status_code == 429 and "wait" in locked.json()["detail"]
    assert client.get("/api/me").json() == {"logged_in": False}


def test_a_store_that_cannot_be_read_answers_503_with_the_reason(client, page_store):
    page_store.close()
    r = client.get("/api/stations")
    assert r.status_code == 503 and "store" in r.json()["detail"]


def test_public_surface_is_pinned():
    assert sorted(gauge_page.__all__) == [
        "EventHub", "PageState", "create_app", "create_officer", "hash_password", "to_jsonable"]


def test_a_station_in_maintenance_alerts_nobody_until_it_is_back(service_client):
    from floodwatch.vocabulary import QcFlag, Reading, StationId

    c, service, line = service_client
    headers = log_in(c)
    on = c.post("/api/stations/LP-W04/maintenance", json={"on": True, "note": "cleaning the sensor"},
                headers=headers)
    assert on.json()["alert_service_told"] is True
    residents = [f"U{n:032d}" for n in range(4)]  # moo-3, LP-W04's zone

    def flood(start_s: float) -> None:
        # What ingest's on_stored hands the alert service: readings far above evacuate (1.85 m).
        service.on_readings([Reading(StationId("LP-W04"), start_s + 60.0 * k, seq=k, water_level_m=2.10,
                                     qc_flag=QcFlag.PASS) for k in range(6)])
        assert service.wait_delivered(10.0)

    flood(time.time() - 900.0)
    assert [d for d in line.delivered_messages() if d.user_id in residents] == []

    assert c.post("/api/stations/LP-W04/maintenance", json={"on": False}, headers=headers).status_code == 200
    flood(time.time() - 400.0)
    texts = [d.message.get("text", "") for d in line.delivered_messages() if d.user_id in residents]
    assert len(texts) == 4 and all("อพยพ" in t for t in texts)
    actions = [a["action"] for a in c.get("/api/audit").json()["entries"]]
    assert actions[:2] == ["maintenance_off", "maintenance_on"]


def test_officer_commands_then_log_in(page_settings, page_store, monkeypatch, capsys, tmp_path):
    """floodwatch officer add / list / passwd / remove against the page's state, as the page then sees it."""
    import io

    from floodwatch.cli.main import main

    monkeypatch.setenv("FLOODWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLOODWATCH_PAGE__STATE_URL", "sqlite:///officers/page.db")  # relative: in the data dir
    page_settings.page.state_url = f"sqlite:///{tmp_path}/officers/page.db"

    def run(*argv: str, stdin: str | None = None) -> tuple[int, str]:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        status = main(list(argv))
        return status, capsys.readouterr().out

    assert run("officer", "add", "nid", "--display-name", "นิด", "--password-stdin", stdin="river rising 2569\n") == (
        0, f"officer 'nid' can now log in to the page of Lam Phaya Subdistrict Municipality (stored in "
           f"{tmp_path}/officers/page.db)\n")
    assert (tmp_path / "officers" / "page.db").is_file()
    status, out = run("officer", "add", "nid", "--password-stdin", stdin="another password\n")
    assert status == 1 and "already exists" in out and "floodwatch officer passwd nid" in out
    status, out = run("officer", "add", "short", "--password-stdin", stdin="short\n")
    assert status == 1 and "at least 8 characters" in out
    status, out = run("officer", "add", "nopipe", stdin="")
    assert status == 1 and "--password-stdin" in out
    status, out = run("officer", "list")
    assert status == 0 and "nid" in out and "นิด" in out and "short" not in out

    app = create_app(page_settings, page_store, SystemClock(), hub=EventHub())
    with over_http(app) as c:
        me = c.post("/api/login", json={"username": "nid", "password": "river rising 2569"}).json()
        assert me["display_name"] == "นิด"
        assert c.get("/api/me").json()["logged_in"] is True
        assert run("officer", "passwd", "nid", "--password-stdin", stdin="tide turning 2569\n")[0] == 0
        assert c.get("/api/me").json() == {"logged_in": False}, "a new password ends the open sessions"
        assert c.post("/api/login", json={"username": "nid", "password": "river rising 2569"}).status_code == 401
        assert c.post("/api/login", json={"username": "nid", "password": "tide turning 2569"}).status_code == 200
        assert run("officer", "remove", "nid")[0] == 0
        assert c.get("/api/me").json() == {"logged_in": False}
        assert c.post("/api/login", json={"username": "nid", "password": "tide turning 2569"}).status_code == 401
    app.state.page.state.close()
    status, out = run("officer", "remove", "nid")
    assert status == 1 and "there is no officer 'nid'" in out
    status, out = run("officer", "passwd", "ghost", "--password-stdin", stdin="whatever 12345\n")
    assert status == 1 and "there is no officer 'ghost'" in out


def test_a_message_of_only_spaces_is_refused(client):
    headers = log_in(client)
    r = client.post("/api/messages/preview", json={"zones": ["moo-1"], "text_th": "   ", "text_en": ""},
                    headers=headers)
    assert r.status_code == 422
