"""Oversized requests are refused before any handler reads them: on the wire, against the page on a real socket.

A body declared over 1 MiB is answered 413 while most of it has not even
been sent; a body sent chunked (no Content-Length) is cut off with 413 as
soon as it passes 1 MiB. In both cases the login handler never ran: the
audit log, where every login attempt is written, stays empty.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from floodwatch.clock import SystemClock
from floodwatch.gauge_page import EventHub, create_app
from floodwatch.gauge_page._serve import BackgroundServer

MIB = 1 << 20


@pytest.fixture
def page(page_settings, page_store) -> Iterator[tuple[str, int, object]]:
    hub = EventHub()
    app = create_app(page_settings, page_store, SystemClock(), hub=hub)
    with BackgroundServer(app, hub) as server:
        yield server.host, server.port, app.state.page.state
    app.state.page.state.close()


def _head(port: int, extra: str) -> bytes:
    return (f"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}\r\n").encode()


def _status(conn: socket.socket) -> int:
    return int(conn.makefile("rb").readline().split()[1])


def test_a_declared_two_megabyte_login_is_refused_before_the_body_is_sent(page):
    host, port, state = page
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(_head(port, f"Content-Length: {2 * MIB}\r\n") + b'{"username": "x", "password": "')
        # the answer comes although 2 MiB less a few bytes are still to come
        assert select.select([conn], [], [], 10)[0], "no answer before the body was sent"
        status = _status(conn)
    assert status == 413
    assert state.audit(10) == [], "a handler saw the request"


def test_a_chunked_body_without_length_is_cut_off_at_one_megabyte(page):
    host, port, state = page
    sent = 0
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(_head(port, "Transfer-Encoding: chunked\r\n"))
        chunk = b'{"username": "x", "password": "' + b"p" * (64 * 1024)
        answered = False
        while sent < 4 * MIB:
            try:
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
            sent += len(chunk)
            # a slow sender, so what the server has read is what was sent (not kernel buffers)
            if select.select([conn], [], [], 0.05)[0]:
                answered = True
                break
        status = _status(conn)
    print(f"chunked: answered {status} after {sent} bytes")
    assert answered and status == 413
    assert sent < 2 * MIB, "the server read far past the limit"
    assert state.audit(10) == [], "a handler saw the request"


def test_a_small_login_is_judged(page):
    host, port, state = page
    body = b'{"username": "nobody", "password": "wrong-wrong"}'
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(_head(port, f"Content-Length: {len(body)}\r\n") + body)
        status = _status(conn)
    assert status == 401
    assert [e["action"] for e in state.audit(10)] == ["login_failed"]
