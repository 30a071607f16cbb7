"""Oversized requests are refused before any handler reads them."""

from fastapi.testclient import TestClient

from floodwatch.clock import SystemClock
from floodwatch.gauge_page import EventHub, create_app


def _client(page_settings, page_store) -> TestClient:
    return TestClient(create_app(page_settings, page_store, SystemClock(), hub=EventHub()),
                      base_url="http://127.0.0.1:8000")


def test_two_megabyte_login_is_refused_with_413_and_a_small_one_is_judged(page_settings, page_store):
    with _client(page_settings, page_store) as client:
        huge = client.post("/api/login", content=b"{" + b" " * (2 << 20) + b"}",
                           headers={"Content-Type": "application/json"})
        small = client.post("/api/login", json={"username": "nobody", "password": "wrong"})
        client.app.state.page.state.close()
    assert huge.status_code == 413
    assert small.status_code == 401
