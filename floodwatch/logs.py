"""Structured logs: one event per line, key=value text or JSON, secrets scrubbed.

Secrets (the LINE channel token and secret, MQTT and InfluxDB passwords)
are registered with :func:`redact` when settings load; any log line that
contains one, by a library's debug output or a careless format string,
has it replaced before it is written.
"""

from __future__ import annotations

import json
import logging
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


def scrub(text: str) -> str:
    with _lock:
        secrets = list(_secrets)
    for s in secrets:
        if s in text:
            text = text.replace(s, REDACTED)
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
