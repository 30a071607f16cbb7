"""Serve the page with uvicorn on a background thread (tests, screenshots, embedding)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from floodwatch.gauge_page._hub import EventHub


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """uvicorn on ``host:port`` in a daemon thread; a context manager that stops it cleanly.

    Open event streams would keep uvicorn waiting at shutdown, so stopping
    first closes the hub (every stream ends), then asks uvicorn to exit.
    """

    def __init__(self, app: Any, hub: EventHub, *, host: str = "127.0.0.1", port: int | None = None,
                 start_timeout_s: float = 10.0) -> None:
        self.hub = hub
        self.host = host
        self.port = port or free_port()
        # proxy_headers off: the page's TrustedProxyHeaders decides whom to believe (page.trusted_proxies).
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=2, access_log=False, proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"page-{self.port}", daemon=True)
        self._start_timeout_s = start_timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the page did not start on {self.url}; is the port taken?")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.hub.close()
        self._server.should_exit = True
        self._thread.join(10.0)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
