"""The outbox file over time: stale chunks expire before their retry key does, old ones are pruned,
and a state file from an older floodwatch is upgraded in place."""

from __future__ import annotations

import sqlite3
import time

from floodwatch.alerts import AlertService
from floodwatch.alerts._db import AlertDb

from tests.alerts.conftest import feed


def test_a_chunk_pending_longer_than_a_retry_key_lives_expires_and_is_never_sent(alert_settings, standin, clock):
    service = AlertService(alert_settings, clock)  # not started: nothing is sent
    try:
        service.subscribe_many((f"U{i:032x}", "moo-6") for i in range(700))
        feed(service, clock, "LP-W06", [1.62, 1.63], step_s=3600)
        assert service.housekeeping() == {"expired": 0, "pruned": 0}
        with sqlite3.connect(service.db.path) as conn:  # LINE unreachable for a day
            conn.execute("UPDATE outbox SET created_wall_s = created_wall_s - 86400")
        assert service.housekeeping()["expired"] == 2
        entry = service.log(1)[0]
        assert entry["state"] == "failed" and entry["failed"] == 700 and entry["delivered"] == 0
        service.start()
        assert service.wait_delivered(2)
    finally:
        service.close()
    assert standin.requests("/v2/bot/message/multicast") == []


def test_settled_chunks_are_pruned_but_the_decision_log_keeps_its_figures(alert_settings, standin, clock):
    with AlertService(alert_settings, clock) as service:
        service.subscribe("U" + "2c" * 16, "moo-6")
        feed(service, clock, "LP-W06", [1.62, 1.63], step_s=3600)
        assert service.wait_delivered(10)
        with sqlite3.connect(service.db.path) as conn:
            conn.execute("UPDATE outbox SET done_s = done_s - 31 * 86400")
        assert service.housekeeping() == {"expired": 0, "pruned": 1}
        entry = service.log(1)[0]
    assert entry["state"] == "delivered" and entry["delivered"] == 1


def test_a_state_file_from_an_older_version_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_s REAL NOT NULL, kind TEXT NOT NULL,
                audience TEXT NOT NULL, zone_id TEXT, station_id TEXT, level INTEGER NOT NULL, text TEXT NOT NULL,
                recipients INTEGER NOT NULL);
            CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, decision_id INTEGER NOT NULL, chunk INTEGER
                NOT NULL, retry_key TEXT NOT NULL UNIQUE, user_ids TEXT NOT NULL, messages TEXT NOT NULL,
                priority INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
                last_status INTEGER, last_error TEXT, created_s REAL NOT NULL, done_s REAL);
        """)
    db = AlertDb(f"sqlite:///{path}")
    try:
        ids = db.record({}, [({"ts_s": time.time(), "kind": "test", "audience": "officers", "level": 0,
                               "text": "t"}, [(["U" + "3d" * 16], [{"type": "text", "text": "t"}])], 2)], time.time())
        assert db.pending_counts() == (1, 1)
        assert db.log(1)[0]["id"] == ids[0]
    finally:
        db.close()


def test_a_failed_state_write_forgets_the_decision_so_the_next_readings_decide_again(service, standin, clock):
    service.subscribe("U" + "5f" * 16, "moo-6")
    service.db._conn.execute("PRAGMA query_only = ON")  # SQLite now refuses every write, like a full disk
    feed(service, clock, "LP-W06", [1.62, 1.63], step_s=3600)
    assert service.zone_levels()["moo-6"]["level"] == 0, "nothing persisted, nothing believed"
    service.db._conn.execute("PRAGMA query_only = OFF")
    feed(service, clock, "LP-W06", [1.64, 1.65], step_s=3600)
    assert service.wait_delivered(10)
    texts = [m["text"] for m in standin.messages_for("U" + "5f" * 16)]
    assert len(texts) == 1 and "เตือนภัย" in texts[0]
