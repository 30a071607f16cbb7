"""Fixtures for the LINE stand-in tests: a real stand-in on a free loopback port, real line-bot-sdk clients."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from linebot.v3.messaging import ApiClient, Configuration, MessagingApi

from floodwatch.line_standin import LineStandIn

TOKEN = "test-channel-token"


@pytest.fixture
def standin() -> Iterator[LineStandIn]:
    with LineStandIn(tokens={TOKEN}) as running:
        yield running


@pytest.fixture
def make_api() -> Iterator[Callable[..., MessagingApi]]:
    """Build line-bot-sdk MessagingApi clients pointed at a stand-in, closed after the test."""
    clients: list[ApiClient] = []

    def make(standin: LineStandIn, token: str = TOKEN) -> MessagingApi:
        client = ApiClient(Configuration(host=standin.base_url, access_token=token))
        clients.append(client)
        return MessagingApi(client)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def api(standin: LineStandIn, make_api: Callable[..., MessagingApi]) -> MessagingApi:
    return make_api(standin)


@pytest.fixture
def raw() -> Callable[..., tuple[int, dict[str, str], Any]]:
    """``raw(standin, method, path, body, token=..., headers=..., raw=b"...")`` sends exactly these bytes."""
    return _raw_request


def _raw_request(
    standin: LineStandIn,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    """Send exactly these bytes (for bodies line-bot-sdk refuses to build); return status, headers, JSON."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
    request = urllib.request.Request(standin.base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.load(exc)
