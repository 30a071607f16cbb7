"""Login throttling cannot be turned against the officers: both attacks of issue 17, over real sockets.

Clients connect from different loopback addresses (127.0.0.2, 127.0.0.3, ...:
Linux routes all of 127/8 to the loopback device), so the page sees each as
its own client address, as it would see different machines.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from floodwatch import gauge_page
from floodwatch.clock import SystemClock
from floodwatch.gauge_page import EventHub, create_app
from floodwatch.gauge_page._serve import BackgroundServer

PASSWORD = "correct horse battery"
ATTACKER, OFFICER = "127.0.0.2", "127.0.0.3"


def _from(address: str, base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def _login(client: httpx.Client, username: str, password: str, **headers: str) -> int:
    return client.post("/api/login", json={"username": username, "password": password}, headers=headers).status_code


@pytest.fixture
def page(page_settings, page_store) -> Iterator[str]:
    gauge_page.create_officer(page_settings, "officer", PASSWORD)
    hub = EventHub()
    app = create_app(page_settings, page_store, SystemClock(), hub=hub)
    with BackgroundServer(app, hub) as server:
        yield server.url
    app.state.page.state.close()


def test_five_wrong_passwords_from_an_attacker_never_lock_out_the_officer_elsewhere(page):
    with _from(ATTACKER, page) as attacker, _from(OFFICER, page) as officer:
        answers = [_login(attacker, "officer", "guess-guess") for _ in range(6)]
        # the duty officer, from the municipality's own address, throughout the attack
        assert _login(officer, "officer", PASSWORD) == 200
        more = [_login(attacker, "officer", "guess-guess") for _ in range(5)]
        assert _login(officer, "officer", PASSWORD) == 200
        # the attacker is slowed, even with the right password, from its own address only
        assert _login(attacker, "officer", PASSWORD) == 429
    print(f"attacker's answers {answers + more}")
    assert answers[:5] == [401] * 5 and answers[5] == 429 and set(more) == {429}


def test_twelve_wrong_passwords_over_twelve_usernames_from_one_address_get_slowed(page):
    with _from(ATTACKER, page) as attacker, _from(OFFICER, page) as officer:
        answers = []
        for k in range(12):
            answers.append(_login(attacker, f"user{k:02d}", "Summer2026!"))
            assert _login(officer, "officer", PASSWORD) == 200, "the officer must get in throughout"
        retry_after = attacker.post("/api/login", json={"username": "officer", "password": PASSWORD})
    print(f"password spraying answers {answers}")
    assert answers[:10] == [401] * 10 and answers[10:] == [429, 429]
    assert retry_after.status_code == 429 and int(retry_after.headers["Retry-After"]) > 0


def test_behind_a_trusted_proxy_the_forwarded_address_counts_and_a_forged_one_does_not(page_settings, page_store):
    page_settings.page.trusted_proxies = ["127.0.0.1"]  # nginx on the same machine
    gauge_page.create_officer(page_settings, "officer", PASSWORD)
    hub = EventHub()
    app = create_app(page_settings, page_store, SystemClock(), hub=hub)
    with BackgroundServer(app, hub) as server, _from("127.0.0.1", server.url) as proxy, \
            _from("127.0.0.9", server.url) as stranger:
        # through the proxy: the attacker's and the officer's real addresses are told apart
        attacked = [_login(proxy, "officer", "guess-guess", **{"X-Forwarded-For": "203.0.113.5"}) for _ in range(6)]
        officer = _login(proxy, "officer", PASSWORD, **{"X-Forwarded-For": "198.51.100.7"})
        # a client that is not the proxy cannot pick a new address per attempt with the header
        forged = [_login(stranger, f"user{k}", "guess-guess", **{"X-Forwarded-For": f"192.0.2.{k}"})
                  for k in range(12)]
    app.state.page.state.close()
    print(f"through the proxy {attacked}, officer {officer}, forged headers {forged}")
    assert attacked[5] == 429 and officer == 200
    assert forged[10:] == [429, 429]


def test_a_bad_trusted_proxy_setting_names_the_entry(monkeypatch):
    from floodwatch.errors import ConfigError
    from floodwatch.settings import load_settings

    monkeypatch.setenv("FLOODWATCH_PAGE__TRUSTED_PROXIES", '["127.0.0.1", "nginx.local"]')
    with pytest.raises(ConfigError, match="nginx.local"):
        load_settings()
