"""HTTP ingestion on the page's real FastAPI app, through the real ingest service, into a real SQLite file.

A logger posts the MQTT contract's JSON to POST /api/v1/ingest/{station} with its
own token and gets 2xx only once the reading is durable; refusals carry the
quarantine's reasons; tokens are per node, rate-limited, never logged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

import httpx
import pytest

from floodwatch import store as store_pkg
from floodwatch.clock import SystemClock
from floodwatch.gauge_page import EventHub, create_app
from floodwatch.gauge_page._serve import BackgroundServer
from floodwatch.ingest import IngestService
from floodwatch.ingest.http import hash_token, new_token, token_matches, token_station
from floodwatch.vocabulary import QcFlag

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tokens():
    return {sid: new_token(sid) for sid in ("LP-W01", "LP-W02", "LP-R01")}


@pytest.fixture
def running(settings, tokens, tmp_path):
    """The page app with the ingest router, as cli/system.py wires it, on a free loopback port."""
    from floodwatch.ingest.http import http_router

    settings.http_ingest.tokens = {sid: hash_token(t) for sid, t in tokens.items()}
    settings.http_ingest.burst = 5
    settings.http_ingest.rate_per_min = 6.0
    settings.page.state_url = f"sqlite:///{tmp_path}/page.db"
    db = store_pkg.open_store(settings)
    stored_events: list = []
    service = IngestService(settings, db, SystemClock(), on_stored=stored_events.extend)
    service.start()
    hub = EventHub()
    app = create_app(settings, db, SystemClock(), hub=hub, ingest=service)
    app.include_router(http_router(settings, service))
    server = BackgroundServer(app, hub).start()
    yield server.url, db, service, stored_events
    server.stop()
    app.state.page.state.close()
    service.stop()
    db.close()


def post(url: str, station: str, body, token: str | None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{url}/api/v1/ingest/{station}", content=content, headers=headers, timeout=30, **kw)


def test_token_format_and_hash():
    token = new_token("LP-W01")
    assert token.startswith("fwi.LP-W01.") and len(token) > 50 and token_station(token) == "LP-W01"
    stored = hash_token(token)
    assert stored.startswith("sha256$") and token not in stored
    assert token_matches(token, stored) and not token_matches(token + "x", stored)
    assert hash_token(token) != stored  # salted


def test_single_and_batch_readings_are_stored_like_mqtt(running, tokens):
    url, db, service, stored_events = running
    now = time.time()
    r = post(url, "LP-W01", {"ts": now - 60, "seq": 1, "boot": 1, "distance_m": 3.2, "battery_v": 3.9},
             tokens["LP-W01"])
    assert r.status_code == 200, r.text
    assert r.json() == {"station_id": "LP-W01", "stored": 1, "duplicates": 0, "spooled": False, "rejected": []}
    [reading] = db.read_readings("LP-W01", now - 3600, now + 60)
    assert reading.water_level_m == pytest.approx(4.80 - 3.2)  # the registry's mount height, as over MQTT
    assert reading.qc_flag != QcFlag.NOT_EVALUATED  # QC ran on the one path
    assert [e.station_id for e in stored_events] == ["LP-W01"]  # and alerts/page were told

    batch = {"readings": [
        {"ts": now - 1200, "seq": 2, "boot": 1, "distance_m": 3.3},
        {"ts": now - 600, "seq": 3, "boot": 1, "distance_m": -1.0},  # no sensor reports that
        {"ts": now - 300, "seq": 4, "boot": 1, "distance_m": 3.25},
    ]}
    r = post(url, "LP-W01", batch, tokens["LP-W01"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["stored"], body["duplicates"]) == (2, 0)
    assert [x["reason"] for x in body["rejected"]] == ["out_of_physics"]
    again = post(url, "LP-W01", batch, tokens["LP-W01"]).json()
    assert (again["stored"], again["duplicates"]) == (0, 2)  # a logger re-sending its batch is harmless
    [q, q2] = db.quarantine(10, station_id="LP-W01")
    assert q.reason == q2.reason == "out_of_physics" and q.topic == "http:/api/v1/ingest/LP-W01"
    assert len(db.read_readings("LP-W01", now - 3600, now + 60)) == 3


@pytest.mark.parametrize("body, status, reason", [
    (b"{not json", 400, "bad_json"),
    (b"\xff\xfe", 400, "not_utf8"),
    (json.dumps({"ts": time.time() + 7200, "seq": 1, "distance_m": 3.0}), 422, "future_ts"),
    (json.dumps({"ts": time.time(), "seq": 1, "rain_tips": 3}), 422, "wrong_sensor"),
    (json.dumps({"seq": 1, "distance_m": 3.0}), 422, "missing_ts"),
], ids=["bad_json", "not_utf8", "future_ts", "wrong_sensor", "missing_ts"])
def test_refused_payloads_answer_the_quarantine_reason_and_are_quarantined(running, tokens, body, status, reason):
    url, db, service, _ = running
    r = post(url, "LP-W02", body, tokens["LP-W02"])
    assert r.status_code == status, r.text
    assert [x["reason"] for x in r.json()["rejected"]] == [reason]
    assert r.json()["stored"] == 0
    [q] = db.quarantine(10, station_id="LP-W02")
    assert q.reason == reason


def test_tokens_are_per_node(running, tokens, caplog):
    url, db, service, _ = running
    reading = {"ts": time.time() - 30, "seq": 9, "distance_m": 3.0}
    caplog.set_level(logging.DEBUG)
    cases = [
        (None, 401, "missing_token"),
        ("fwi.LP-W01.not-the-secret", 401, "bad_token"),
        (tokens["LP-W02"], 403, "wrong_station_token"),  # a real token, another node's
        (tokens["LP-W01"][:-2] + "xx", 401, "bad_token"),
    ]
    for token, status, reason in cases:
        r = post(url, "LP-W01", reading, token)
        assert r.status_code == status and r.json()["rejected"][0]["reason"] == reason, (token, r.text)
    assert "LP-W02" in post(url, "LP-W01", reading, tokens["LP-W02"]).json()["rejected"][0]["detail"]
    r = post(url, "LP-W03", reading, tokens["LP-W03"] if "LP-W03" in tokens else new_token("LP-W03"))
    assert r.status_code == 403 and r.json()["rejected"][0]["reason"] == "no_token_configured"
    assert post(url, "LP-ZZ", reading, tokens["LP-W01"]).status_code == 404
    # Nothing from an unauthenticated post is stored or quarantined, and no token reaches the log.
    assert db.read_readings("LP-W01", time.time() - 3600, time.time() + 60) == []
    assert db.quarantine(10) == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "http_ingest_refused" in logged
    for token in tokens.values():
        assert token not in logged and token.split(".")[-1] not in logged


def test_a_10_mb_body_is_refused_unread_and_a_chunked_one_stops_at_the_limit(running, tokens):
    url, db, service, _ = running
    big = b'{"readings": [' + b" " * (10 * 1024 * 1024) + b"]}"
    r = post(url, "LP-W01", big, tokens["LP-W01"])
    assert r.status_code == 413 and r.json()["reason"] == "oversized"

    def chunks():
        yield b'{"readings": ['
        for _ in range(200):
            yield b'{"ts": 1, "seq": 1, "distance_m": 3.0},' * 20

    r = httpx.post(f"{url}/api/v1/ingest/LP-W01", content=chunks(), timeout=30,
                   headers={"Authorization": f"Bearer {tokens['LP-W01']}"})
    assert r.status_code == 413 and r.json()["rejected"][0]["reason"] == "oversized"
    [q] = db.quarantine(10, station_id="LP-W01")
    assert q.reason == "oversized" and len(q.payload) == 4096
    # The service is unharmed: the next post is stored.
    assert post(url, "LP-W01", {"ts": time.time() - 5, "seq": 5, "distance_m": 3.0},
                tokens["LP-W01"]).status_code == 200


def test_rate_limit_is_per_node(running, tokens):
    url, db, service, _ = running
    now = time.time()
    codes = [post(url, "LP-W01", {"ts": now - 100 + i, "seq": i, "distance_m": 3.0}, tokens["LP-W01"]).status_code
             for i in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    limited = post(url, "LP-W01", {"ts": now - 50, "seq": 50, "distance_m": 3.0}, tokens["LP-W01"])
    assert limited.json()["rejected"][0]["reason"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
    assert post(url, "LP-R01", {"ts": now - 10, "seq": 1, "rain_tips": 0}, tokens["LP-R01"]).status_code == 200


def test_answer_waits_for_a_durable_write_spool_while_the_store_is_locked(running, tokens, settings):
    url, db, service, _ = running
    path = settings.store.url[len("sqlite:///"):]
    locker = sqlite3.connect(path, timeout=5, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        r = post(url, "LP-W02", {"ts": time.time() - 30, "seq": 1, "distance_m": 3.1}, tokens["LP-W02"])
        assert r.status_code == 202 and r.json()["spooled"] is True  # durable in the spool, not yet in the store
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not db.read_readings("LP-W02", time.time() - 3600, time.time() + 60):
        time.sleep(0.1)
    assert len(db.read_readings("LP-W02", time.time() - 3600, time.time() + 60)) == 1


def test_tokens_come_from_the_environment_as_json(tmp_path, monkeypatch, tokens):
    from floodwatch.settings import load_settings

    hashes = {"LP-W01": hash_token(tokens["LP-W01"])}
    monkeypatch.setenv("FLOODWATCH_HTTP_INGEST__TOKENS", json.dumps(hashes))
    assert load_settings().http_ingest.tokens == hashes
    monkeypatch.setenv("FLOODWATCH_HTTP_INGEST__TOKENS", json.dumps({"LP-W01": tokens["LP-W01"]}))
    from floodwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="not a token hash"):
        load_settings()


def test_concurrent_posts_from_many_nodes_all_land(running, tokens, settings):
    url, db, service, _ = running
    now = time.time()
    results: list[int] = []

    def node(sid: str) -> None:
        for i in range(4):
            body = {"ts": now - 1000 + i * 10, "seq": i}
            body.update({"rain_tips": i} if sid.startswith("LP-R") else {"distance_m": 3.0 + i / 100})
            results.append(post(url, sid, body, tokens[sid]).status_code)

    threads = [threading.Thread(target=node, args=(sid,)) for sid in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 12
    assert sum(len(db.read_readings(sid, now - 3600, now + 60)) for sid in tokens) == 12


def test_ingest_token_command_writes_private_tokens_and_prints_only_hashes(tmp_path, capsys):
    from floodwatch.cli.main import main

    out = tmp_path / "tokens"
    assert main(["ingest-token", "LP-W01", "LP-R01", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    tokens = dict(line.split() for line in out.read_text().splitlines() if not line.startswith("#"))
    assert set(tokens) == {"LP-W01", "LP-R01"}
    hashes = dict(line.replace('"', "").split(" = ") for line in printed.splitlines() if line.startswith('"LP-'))
    assert all(token_matches(tokens[s], hashes[s]) for s in tokens)
    assert not any(t in printed for t in tokens.values())  # the clear tokens went to the file only
    assert main(["ingest-token", "LP-ZZ"]) == 2
    assert "LP-ZZ not in" in capsys.readouterr().err
