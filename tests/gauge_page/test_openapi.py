"""The page's own OpenAPI document is valid, and real answers from real endpoints match it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from floodwatch import gauge_page
from floodwatch import scheduler
from floodwatch.clock import SystemClock
from floodwatch.gauge_page import EventHub, create_app
from tests.gauge_page.conftest import seed_history, write_levels

PASSWORD = "correct horse battery"


@pytest.fixture
def client(page_settings, page_store):
    seed_history(page_settings, page_store, hours=30.0)
    write_levels(page_store, None, {"LP-W06": 1.85})
    gauge_page.create_officer(page_settings, "somchai", PASSWORD)
    forecaster = scheduler.ForecastJob(page_settings, page_store, SystemClock())
    forecaster.run_once()
    app = create_app(page_settings, page_store, SystemClock(), hub=EventHub(), forecasts=forecaster)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        yield c
    app.state.page.state.close()


def test_openapi_document_is_valid_and_answers_match_it(client):
    spec = client.get("/openapi.json").json()
    openapi = OpenAPI.from_dict(spec)  # validates the document itself (OpenAPI 3.1)
    csrf = client.post("/api/login", json={"username": "somchai", "password": PASSWORD}).json()["csrf_token"]
    calls = [
        ("GET", "/api/stations", None),
        ("GET", "/api/stations/LP-W06", None),
        ("GET", "/api/stations/LP-W06/readings?hours=2", None),
        ("GET", "/api/stations/LP-W06/series?hours=24", None),
        ("GET", "/api/stations/LP-R01/series?hours=3", None),
        ("GET", "/api/forecasts", None),
        ("GET", "/api/alerts", None),
        ("GET", "/api/health", None),
        ("GET", "/api/feeds", None),
        ("GET", "/api/stations/KRASIAO-REL", None),
        ("GET", "/api/stations/TC-MOUTH-TIDE/series?hours=6", None),
        ("GET", "/api/me", None),
        ("GET", "/api/audit", None),
        ("GET", "/api/reports", None),
        ("GET", "/api/quota", None),
        ("GET", "/api/loudspeakers", None),
        ("POST", "/api/stations/LP-W04/maintenance", {"on": True, "note": "cleaning"}),
    ]
    for method, url, body in calls:
        response = client.request(method, url, json=body, headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200, (url, response.text)
        parts = urlsplit(url)
        request = MockRequest("http://127.0.0.1:8000", method.lower(), parts.path,
                              args=dict(parse_qsl(parts.query)), data=response.request.content or None)
        openapi.validate_response(request, MockResponse(response.content, response.status_code))
