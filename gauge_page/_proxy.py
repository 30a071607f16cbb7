"""Behind a reverse proxy: believe its X-Forwarded-* headers, and only its.

nginx (docs/operations.md) terminates HTTPS and forwards to the page on
loopback. The page then sees the proxy as the client, ``http`` as the scheme
and, for an upstream block, ``Host: 127.0.0.1:8000``; the browser's address
(scheme, host, its own IP) arrives in ``X-Forwarded-Proto``,
``X-Forwarded-Host`` and ``X-Forwarded-For``. Anyone can send those headers,
so they are believed only from the addresses in ``page.trusted_proxies``
(IPs or networks); from anyone else they are ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class TrustedProxyHeaders:
    """ASGI middleware: from a trusted proxy, take scheme, client and host from its X-Forwarded-* headers.

    Sets ``scope["scheme"]`` and ``scope["client"]``, and the browser's host in
    ``request.state.forwarded_host`` (``Host`` stays the proxy's, as sent).
    """

    def __init__(self, app: Any, trusted: list[str]) -> None:
        self.app = app
        self._names = {t for t in trusted if not _network(t)}
        self._networks = [n for n in (_network(t) for t in trusted) if n is not None]

    def trusts(self, address: str | None) -> bool:
        if not address:
            return False
        if address in self._names:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self.trusts(client[0]):
            headers = {}
            for key, value in scope["headers"]:
                headers.setdefault(key.lower(), value.decode("latin-1"))
            proto = headers.get(b"x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
            forwarded_for = [h.strip() for h in headers.get(b"x-forwarded-for", "").split(",") if h.strip()]
            # The nearest address the trusted proxies did not add themselves is the browser's.
            for hop in reversed(forwarded_for):
                if not self.trusts(hop):
                    scope["client"] = (hop, 0)
                    break
            host = headers.get(b"x-forwarded-host", "").split(",")[0].strip()
            if host:
                scope.setdefault("state", {})["forwarded_host"] = host
        await self.app(scope, receive, send)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def normalize_origin(origin: str) -> str:
    """``HTTPS://Flood.example.go.th:443`` -> ``https://flood.example.go.th`` (default ports dropped)."""
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and DEFAULT_PORTS.get(scheme) != port:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"
