"""Login behind a reverse proxy: the browser's origin is matched with what a *trusted* proxy forwards."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from floodwatch import gauge_page
from floodwatch.clock import SystemClock
from floodwatch.gauge_page import EventHub, create_app
from floodwatch.gauge_page._proxy import normalize_origin

PASSWORD = "correct horse battery"
PUBLIC = "https://flood.example.go.th"
# What nginx sends with `proxy_pass http://127.0.0.1:8000` and the forwarding headers of docs/operations.md.
BEHIND_NGINX = {"Host": "127.0.0.1:8000", "Origin": PUBLIC, "X-Forwarded-Host": "flood.example.go.th",
                "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


@pytest.fixture
def login(page_settings, page_store):
    gauge_page.create_officer(page_settings, "somchai", PASSWORD)
    apps = []

    def attempt(headers: dict[str, str], **page: object):
        for key, value in page.items():
            setattr(page_settings.page, key, value)
        app = create_app(page_settings, page_store, SystemClock(), hub=EventHub())
        apps.append(app)
        with TestClient(app, base_url="http://127.0.0.1:8000") as c:  # the client's address is "testclient"
            return c.post("/api/login", json={"username": "somchai", "password": PASSWORD}, headers=headers)

    yield attempt
    for app in apps:
        app.state.page.state.close()


def test_direct_login_on_the_page_s_own_address(login):
    assert login({"Origin": "http://127.0.0.1:8000"}).status_code == 200


def test_behind_a_proxy_without_trusting_it_the_login_is_refused_as_the_issue_found(login):
    refused = login({"Host": "127.0.0.1:8000", "Origin": PUBLIC})
    assert refused.status_code == 403 and "page.public_origin" in refused.json()["detail"]


def test_forwarded_host_and_proto_from_a_trusted_proxy_let_the_officer_in_with_a_secure_cookie(login):
    ok = login(BEHIND_NGINX, trusted_proxies=["testclient"])
    assert ok.status_code == 200
    cookie = ok.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_the_same_headers_from_anyone_else_are_ignored(login):
    assert login(BEHIND_NGINX).status_code == 403  # default trusted: 127.0.0.1 and ::1, not this client


def test_a_trusted_proxy_does_not_make_a_cross_site_origin_acceptable(login):
    evil = dict(BEHIND_NGINX, Origin="https://evil.example")
    assert login(evil, trusted_proxies=["testclient"]).status_code == 403


def test_a_configured_public_origin_is_accepted_whatever_the_proxy_forwards(login):
    assert login({"Host": "127.0.0.1:8000", "Origin": PUBLIC}, public_origin=PUBLIC).status_code == 200
    assert login({"Host": "127.0.0.1:8000", "Origin": "http://flood.example.go.th"},
                 public_origin=PUBLIC).status_code == 403


def test_trusted_proxies_may_be_networks(login):
    assert login(BEHIND_NGINX, trusted_proxies=["10.0.0.0/8"]).status_code == 403


def test_origins_compare_without_default_ports_or_case():
    assert normalize_origin("HTTPS://Flood.Example.go.th:443") == "https://flood.example.go.th"
    assert normalize_origin("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert normalize_origin("https://localhost:8443") == "https://localhost:8443"
    assert normalize_origin("http://[::1]:80") == "http://[::1]"
