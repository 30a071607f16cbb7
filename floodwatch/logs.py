"""Structured logs: one event per line, key=value text or JSON with the fields as keys, secrets scrubbed.

Log calls write their fields as ``key=%s`` pairs in the format string::

    log.info("event=line_delivered chunk=%s recipients=%d status=%s", chunk.id, n, status)

Text lines keep them as written. JSON lines (``floodwatch --log-json``) carry
each pair as its own key with its own type, beside the message, so jq and
Loki select on them without parsing text::

    {"ts": "2026-11-29T07:05:00.123Z", "level": "info", "logger": "floodwatch.alerts.delivery",
     "msg": "event=line_delivered chunk=12 recipients=500 status=200",
     "event": "line_delivered", "chunk": 12, "recipients": 500, "status": 200}

A field named like one of the line's own keys (``ts``, ``level``, ``logger``,
``msg``, ``exc``) is written as ``field_<name>``. ``extra={"fields": {...}}``
adds fields that are not in the message.

Secrets (the LINE channel token and secret, MQTT and InfluxDB passwords,
a password written into the broker's or the store's URL) are registered
with :func:`redact` when settings load; any log line that contains one, by
a library's debug output or a careless format string, has it replaced
before it is written. Error messages that quote a URL use :func:`redact_url`.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

_secrets: set[str] = set()
_lock = threading.Lock()
REDACTED = "[REDACTED]"
_RESERVED = ("ts", "level", "logger", "msg", "exc")
# printf conversions as logging's %-formatting understands them (``%%`` is a literal percent sign).
_CONVERSION = re.compile(
    r"%(?:\((?P<mapkey>[^)]*)\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<kind>[diouxXeEfFgGcrsa%])")
_KEY = re.compile(r"(?:^|(?<=[\s,;(\[]))(?P<key>[A-Za-z_][A-Za-z0-9_.]*)=$")
_LITERAL = re.compile(r"(?:^|(?<=\s))(?P<key>[A-Za-z_][A-Za-z0-9_.]*)=(?P<value>[^\s%\"']+)")


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


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else str(number)  # NaN is not JSON; jq refuses it
    return str(value)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The ``key=value`` fields of a log call, each with the value's own type (numbers stay numbers)."""
    template = record.msg if isinstance(record.msg, str) else str(record.msg)
    args: Any = record.args
    fields: dict[str, Any] = {}
    for match in _LITERAL.finditer(template):
        literal = match["value"]
        fields[match["key"]] = int(literal) if literal.isdigit() else literal
    position = 0
    for match in _CONVERSION.finditer(template):
        kind = match["kind"]
        if kind == "%":
            continue
        if match["mapkey"] is not None:
            value = args.get(match["mapkey"]) if isinstance(args, dict) else None
        else:
            if not isinstance(args, tuple) or position >= len(args):
                break
            value = args[position]
            position += 1
        key = _KEY.search(template, 0, match.start())
        if key is None:
            continue
        shown = value
        if kind in "diouxXeEfFgG" and isinstance(value, numbers.Real):
            spec = match.group(0)
            if match["mapkey"] is not None:
                spec = "%" + spec[spec.index(")") + 1:]
            try:  # the precision the message shows, as a number
                text = spec % value
                shown = int(text) if kind in "diu" else float(text) if kind in "eEfFgG" else text
            except (TypeError, ValueError):
                shown = value
        elif kind in "rsa" and not isinstance(value, str | numbers.Number | bool) and value is not None:
            shown = repr(value) if kind in "ra" else str(value)
        fields[key["key"]] = _jsonable(shown)
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        fields.update({str(k): _jsonable(v) for k, v in extra.items()})
    return fields


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        if self.json_lines:
            line: dict[str, Any] = {"ts": stamp, "level": record.levelname.lower(), "logger": record.name,
                                    "msg": message}
            try:
                fields = fields_of(record)
            except Exception:  # a malformed call still logs its message
                fields = {}
            for key, value in fields.items():
                line[f"field_{key}" if key in _RESERVED else key] = value
            if record.exc_info:
                line["exc"] = self.formatException(record.exc_info)
            return scrub(json.dumps(line, ensure_ascii=False))
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return scrub(f"{stamp} level={record.levelname.lower()} logger={record.name} {message}")


def configure(level: int = logging.INFO, json_lines: bool = False, *, stream: TextIO | None = None,
              file: Path | None = None, terminal_level: int | None = None) -> None:
    """Send every logger's records through the scrubbing formatter.

    ``stream`` (stderr by default) gets records at ``terminal_level`` and above
    (``level`` by default; ``logging.CRITICAL + 1`` keeps the terminal quiet);
    ``file``, when given, gets every record at ``level`` and above, appended.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, logging.FileHandler):
            old.close()
    terminal = logging.StreamHandler(stream or sys.stderr)
    terminal.setFormatter(_ScrubbingFormatter(json_lines))
    terminal.setLevel(level if terminal_level is None else max(level, terminal_level))
    root.addHandler(terminal)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(_ScrubbingFormatter(json_lines))
        to_file.setLevel(level)
        root.addHandler(to_file)
    root.setLevel(level)
    for noisy in ("amqtt", "transitions", "apscheduler", "urllib3", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def json_lines_configured() -> bool:
    """True when the log is written as JSON lines (``--log-json``)."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(formatter, _ScrubbingFormatter):
            return formatter.json_lines
    return False
