"""Logs: key=value text, or JSON lines whose fields are keys with their own types, never a secret."""

from __future__ import annotations

import io
import json
import logging

import numpy as np

from floodwatch import logs


def _json_line(fmt: str, *args, exc: bool = False, **extra) -> dict:
    stream = io.StringIO()
    logs.configure(logging.INFO, json_lines=True, stream=stream)
    log = logging.getLogger("floodwatch.test")
    try:
        if exc:
            try:
                raise RuntimeError("the store is closed")
            except RuntimeError:
                log.exception(fmt, *args, **extra)
        else:
            log.warning(fmt, *args, **extra)
    finally:
        logs.configure(logging.INFO)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_json_lines_carry_each_field_as_a_typed_key():
    line = _json_line("event=line_delivered chunk=%s recipients=%d status=%s retry_key=%s took_s=%.2f",
                      12, 500, 200, "6b0c1e2a-1111", 0.123456)
    assert line["level"] == "warning" and line["logger"] == "floodwatch.test"
    assert line["msg"] == "event=line_delivered chunk=12 recipients=500 status=200 retry_key=6b0c1e2a-1111 took_s=0.12"
    assert line["event"] == "line_delivered"
    assert line["chunk"] == 12 and line["recipients"] == 500 and line["status"] == 200
    assert line["retry_key"] == "6b0c1e2a-1111" and line["took_s"] == 0.12


def test_values_with_spaces_quotes_and_numpy_types_stay_whole():
    line = _json_line("event=line_failed message=%r fix=%s level_m=%.3f count=%s gap=%s",
                      "The request body has 2 error(s)", "check the token; then retry", np.float64(1.23456),
                      np.int64(7), float("nan"))
    assert line["message"] == "The request body has 2 error(s)"
    assert line["fix"] == "check the token; then retry"
    assert line["level_m"] == 1.235 and line["count"] == 7 and line["gap"] == "nan"


def test_fields_named_like_the_line_keys_do_not_overwrite_them():
    line = _json_line("event=alert_decided zone=%s level=%s ts_s=%.0f", "moo-1", "WARNING", 1790000000.4)
    assert line["level"] == "warning", "the log level stays the log level"
    assert line["field_level"] == "WARNING" and line["zone"] == "moo-1" and line["ts_s"] == 1790000000.0


def test_extra_fields_and_exceptions_are_keys_too():
    line = _json_line("event=store_failed station=%s", "LP-W01", exc=True, extra={"fields": {"attempt": 3}})
    assert line["station"] == "LP-W01" and line["attempt"] == 3
    assert "RuntimeError: the store is closed" in line["exc"]


def test_a_message_that_is_not_key_value_is_just_a_message():
    line = _json_line("gauge page on http://%s:%d", "127.0.0.1", 8000)
    assert line["msg"] == "gauge page on http://127.0.0.1:8000"
    assert set(line) == {"ts", "level", "logger", "msg"}


def test_secrets_are_scrubbed_from_fields_and_text():
    logs.redact("sec-0123456789abcdef")
    line = _json_line("event=login token=%s", "sec-0123456789abcdef")
    assert "sec-0123456789abcdef" not in json.dumps(line)
    assert line["token"] == logs.REDACTED


def test_the_file_gets_everything_while_the_terminal_stays_quiet(tmp_path):
    terminal = io.StringIO()
    logs.configure(logging.INFO, stream=terminal, file=tmp_path / "demo.log", terminal_level=logging.CRITICAL + 1)
    try:
        logging.getLogger("floodwatch.test").info("event=reading_stored station=%s", "LP-W01")
        logging.getLogger("floodwatch.test").error("event=line_failed status=%d", 401)
    finally:
        logs.configure(logging.INFO)
    written = (tmp_path / "demo.log").read_text()
    assert "event=reading_stored station=LP-W01" in written and "event=line_failed status=401" in written
    assert terminal.getvalue() == ""
