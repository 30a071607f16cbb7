"""Officer actions in a real Chromium: login, a manual message to chosen zones, refusals without login."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from pydantic import SecretStr

from floodwatch import alerts
from floodwatch import gauge_page
from floodwatch.clock import SystemClock
from floodwatch.line_standin import LineStandIn
from tests.gauge_page.conftest import seed_history

pytestmark = pytest.mark.browser

TOKEN = "page-test-token"
MOO6 = [f"U{'6' * 8}{n:024d}" for n in range(3)]
MOO1 = [f"U{'1' * 8}{n:024d}" for n in range(2)]
OFFICER_LINE_ID = "U" + "f" * 32


@pytest.fixture
def alert_service(page_settings) -> Iterator[tuple[Any, LineStandIn]]:
    with LineStandIn(tokens={TOKEN}) as line:
        page_settings.line.api_base_url = line.base_url
        page_settings.line.channel_access_token = SecretStr(TOKEN)
        page_settings.alerts.officers = [OFFICER_LINE_ID]
        service = alerts.AlertService(page_settings, SystemClock())
        service.subscribe_many([(u, "moo-6") for u in MOO6] + [(u, "moo-1") for u in MOO1])
        service.start()
        try:
            yield service, line
        finally:
            service.close()


def _log_in(page: Any, username: str, password: str) -> None:
    page.click("#login-open")
    page.fill("#login-user", username)
    page.fill("#login-password", password)
    page.click("#login-submit")


def _texts_to(line: LineStandIn, user_ids: list[str]) -> list[str]:
    return [d.message.get("text", "") for d in line.delivered_messages() if d.user_id in user_ids]


def test_officer_logs_in_and_sends_a_previewed_message_to_one_zone(
    page_settings, page_store, serve_page, watched_page, alert_service
):
    service, line = alert_service
    seed_history(page_settings, page_store)
    gauge_page.create_officer(page_settings, "somchai", "correct horse battery", display_name="สมชาย ใจดี")
    server = serve_page(alerts=service)
    page = watched_page.page
    page.goto(server.url + "/")

    _log_in(page, "somchai", "wrong password")
    expect(page.locator("#login-error")).not_to_be_empty()
    page.fill("#login-password", "correct horse battery")
    page.click("#login-submit")
    expect(page.locator("#officer-name")).to_have_text("สมชาย ใจดี")
    expect(page.locator("#officer")).to_be_visible()

    page.check('#zone-picks input[value="moo-6"]')
    page.fill("#text-th", "น้ำท่วมถนนหมู่ 6 งดใช้เส้นทาง")
    page.fill("#text-en", "Moo 6 street flooded, avoid it")
    page.click("#preview-btn")
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#preview-text")).to_contain_text("น้ำท่วมถนนหมู่ 6 งดใช้เส้นทาง")
    expect(page.locator("#preview-recipients")).to_contain_text("= 3")
    assert _texts_to(line, MOO6 + MOO1) == []  # a preview sends nothing

    page.click("#confirm-send")
    expect(page.locator("#message-result")).to_contain_text("ส่งแล้ว")
    assert service.wait_delivered(10.0)
    sent = _texts_to(line, MOO6)
    assert len(sent) == 3
    assert all(t.startswith("น้ำท่วมถนนหมู่ 6 งดใช้เส้นทาง") and "Moo 6 street flooded" in t for t in sent)
    assert _texts_to(line, MOO1) == []  # the other zone hears nothing
    expect(page.locator("#audit-rows")).to_contain_text("manual_message")
    expect(page.locator("#alert-rows tr").first).to_contain_text("3")

    page.click("#test-alert")
    expect(page.locator("#test-result")).to_have_text("ส่งแล้ว")
    assert service.wait_delivered(10.0)
    assert len(_texts_to(line, [OFFICER_LINE_ID])) == 1
    assert len(_texts_to(line, MOO6 + MOO1)) == 3  # residents did not get the test


def test_actions_without_login_are_refused_and_change_nothing(
    page_settings, page_store, serve_page, watched_page, alert_service
):
    service, line = alert_service
    seed_history(page_settings, page_store)
    gauge_page.create_officer(page_settings, "somchai", "correct horse battery")
    server = serve_page(alerts=service)
    page = watched_page.page
    page.goto(server.url + "/")
    expect(page.locator("#login-open")).to_be_visible()
    expect(page.locator("#officer")).to_be_hidden()

    post = """async ([path, body, csrf]) => {
        const headers = {"Content-Type": "application/json"};
        if (csrf) headers["X-CSRF-Token"] = csrf;
        const r = await fetch(path, {method: "POST", headers, body: JSON.stringify(body)});
        return r.status;
    }"""
    message = {"zones": ["moo-6"], "text_th": "ข้อความปลอม", "text_en": "fake", "confirm_token": "x"}
    attempts = [
        ("/api/messages/send", message),
        ("/api/messages/preview", message),
        ("/api/test-alert", {"text": "fake"}),
        ("/api/stations/LP-W06/maintenance", {"on": True}),
    ]
    for path, body in attempts:
        assert page.evaluate(post, [path, body, None]) == 401, path

    # Logged in but without the CSRF token (what a forged cross-site request would look like): 403.
    _log_in(page, "somchai", "correct horse battery")
    expect(page.locator("#officer")).to_be_visible()
    for path, body in attempts:
        assert page.evaluate(post, [path, body, None]) == 403, path
        assert page.evaluate(post, [path, body, "not-the-token"]) == 403, path

    assert service.wait_delivered(5.0)
    assert _texts_to(line, MOO6 + MOO1 + [OFFICER_LINE_ID]) == []
    stations = json.loads(page.evaluate("async () => (await fetch('/api/stations')).text()"))["stations"]
    assert not any(s["maintenance"] for s in stations)
    audit = json.loads(page.evaluate("async () => (await fetch('/api/audit')).text()"))["entries"]
    assert [a["action"] for a in audit] == ["login"]
