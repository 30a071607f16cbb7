"""Structured logs: one event per line, key=value text or JSON, secrets scrubbed.

Secrets (the LINE channel token and secret, MQTT and InfluxDB passwords,
a password written into the broker's or the store's URL) are registered
with :func:`redact` when settings load; any log line that contains one, by
a library's debug output or a careless format string, has it replaced
before it is written. Error messages that quote a URL use :func:`redact_url`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time

_secrets: set[str] = set()
_lock = threading.Lock()
REDACTED = "[REDACTED]"


def redact(*values: str | None) -> None:
    """Never let these strings reach a log line."""
    with _lock:
        for v in values:
            if v and len(v) >= 6:  # short strings would blank out ordinary words
                _secrets.add(v)


def url_password(url: str | None) -> str | None:
    """The password in a URL's userinfo (``mqtt://user:PASSWORD@host``), or None."""
    if not url or "@" not in url:
        return None
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo replaced, for error messages that quote it."""
    password = url_password(url)
    return url.replace(f":{password}@", f":{REDACTED}@") if password else url


# Credentials that are not configured secrets (officers' session cookies, a token a library
# echoes back) still travel in these headers: their values are blanked wherever a library's
# debug output or an exception prints them, in any of the usual shapes.
_SENSITIVE_HEADERS = r"(?:authorization|proxy-authorization|cookie|set-cookie|x-line-signature)"
_HEADER_VALUES = (
    re.compile(rf"(\(b?['\"]{_SENSITIVE_HEADERS}['\"],\s*b?['\"])([^'\"]+)", re.I),  # (b'set-cookie', b'v')
    re.compile(rf"(['\"]{_SENSITIVE_HEADERS}['\"]\s*:\s*['\"])([^'\"]+)", re.I),     # {'Authorization': 'v'}
    re.compile(rf"({_SENSITIVE_HEADERS}\s*:\s*)([^\r\n\\'\",}}]+)", re.I),            # Authorization: v
    re.compile(r"(fw_session=)([^;\s'\"]+)"),                                       # the page's session cookie
)
_HEADER_HINT = re.compile(r"authorization|cookie|x-line-signature|fw_session", re.I)


def scrub(text: str) -> str:
    with _lock:
        secrets = list(_secrets)
    for s in secrets:
        if s in text:
            text = text.replace(s, REDACTED)
    if _HEADER_HINT.search(text):
        for pattern in _HEADER_VALUES:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if self.json_lines:
            line = json.dumps(
                {
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "msg": message,
                },
                ensure_ascii=False,
            )
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            line = f"{stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} logger={record.name} {message}"
        return scrub(line)


def configure(level: int = logging.INFO, json_lines: bool = False) -> None:
    """Send every logger's records to stderr through the scrubbing formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubbingFormatter(json_lines))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("amqtt", "transitions", "apscheduler", "urllib3", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
