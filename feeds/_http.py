"""One HTTP GET with the failures of a real network turned into :class:`FeedError` reasons.

stdlib only (urllib): a feed makes a handful of requests per run, so it needs
no connection pool. ``timeout_s`` bounds the whole answer, not each read, so
a server that drips a byte a second cannot hold a feed for ever.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from floodwatch.errors import FeedError

MAX_BODY_BYTES = 32 * 1024 * 1024
USER_AGENT = "floodwatch/0.1 (flood early warning; +https://github.com/floodwatch)"
_CHUNK = 64 * 1024


def get(url: str, timeout_s: float, *, accept: str = "application/json",
        feed_id: str | None = None) -> tuple[bytes, str]:
    """GET ``url``; return (body, content type). Raises FeedError with reason:

    ``timeout``, ``unreachable``, ``http_5xx``, ``http_4xx``, ``truncated`` (the
    connection closed before the announced length), ``too_large``.
    """
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - configured URLs only
            content_type = response.headers.get("Content-Type", "")
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise FeedError("timeout", f"{url} was still sending after {timeout_s:g} s ({size} bytes); "
                                    "the source is slow: raise the feed's timeout_s if this persists", feed_id)
                chunk = response.read1(_CHUNK) if hasattr(response, "read1") else response.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise FeedError("too_large", f"{url} sent more than {MAX_BODY_BYTES} bytes; is it the right URL?",
                                    feed_id)
                chunks.append(chunk)
            announced = response.headers.get("Content-Length")
            if announced and announced.isdigit() and size < int(announced):
                raise FeedError("truncated", f"{url} closed the connection after {size} of {announced} bytes; "
                                "retrying next run", feed_id)
            return b"".join(chunks), content_type
    except FeedError:
        raise
    except urllib.error.HTTPError as exc:
        body = exc.read(2000) if hasattr(exc, "read") else b""
        hint = _html_title(body) or body[:120].decode("utf-8", "replace").strip()
        if exc.code >= 500:
            raise FeedError("http_5xx", f"{url} answered {exc.code} ({hint}); the source is down, retrying next run",
                            feed_id) from exc
        raise FeedError("http_4xx", f"{url} answered {exc.code} ({hint}); check the feed's url", feed_id) from exc
    except http.client.IncompleteRead as exc:
        raise FeedError("truncated", f"{url} closed the connection after {len(exc.partial)} bytes of the answer; "
                        "retrying next run", feed_id) from exc
    except TimeoutError as exc:
        raise FeedError("timeout", f"{url} did not answer within {timeout_s:g} s; retrying next run", feed_id) from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise FeedError("timeout", f"{url} did not answer within {timeout_s:g} s; retrying next run",
                            feed_id) from exc
        raise FeedError("unreachable", f"{url} cannot be reached ({reason}); check the network and the url",
                        feed_id) from exc
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise FeedError("unreachable", f"{url} failed mid-answer ({exc}); retrying next run", feed_id) from exc


def get_json(url: str, timeout_s: float, *, feed_id: str | None = None) -> Any:
    """GET and decode JSON; an HTML page or half-written JSON is a FeedError, not a traceback."""
    body, content_type = get(url, timeout_s, feed_id=feed_id)
    return decode_json(body, url, content_type, feed_id=feed_id)


def decode_json(body: bytes, where: str, content_type: str = "", *, feed_id: str | None = None) -> Any:
    """JSON from ``body``. Reasons: ``html_not_json``, ``truncated_json``, ``bad_json``, ``empty``."""
    text = body.lstrip()
    if not text:
        raise FeedError("empty", f"{where} answered with an empty body; retrying next run", feed_id)
    if text[:1] == b"<" or "html" in content_type.lower():
        title = _html_title(body)
        raise FeedError("html_not_json", f"{where} answered an HTML page instead of JSON"
                        + (f" ({title!r})" if title else "") + "; the source is probably under maintenance", feed_id)
    try:
        return json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise FeedError("bad_json", f"{where} answered bytes that are not UTF-8 at {exc.start}", feed_id) from exc
    except json.JSONDecodeError as exc:
        if _unfinished(exc.doc):
            raise FeedError("truncated_json", f"{where} answered half-written JSON (it ends at byte {len(body)}, "
                            f"{exc.msg}); retrying next run", feed_id) from exc
        raise FeedError("bad_json", f"{where} answered malformed JSON ({exc.msg} at byte {exc.pos})", feed_id) from exc


def _html_title(body: bytes) -> str:
    text = body[:4000].decode("utf-8", "replace")
    lower = text.lower()
    start = lower.find("<title>")
    if start < 0:
        return ""
    end = lower.find("</title>", start)
    return text[start + 7:end if end > 0 else start + 80].strip()[:80]


def _unfinished(text: str) -> bool:
    """True when ``text`` stops inside a string or with brackets still open: cut off, not malformed."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return in_string or depth > 0
