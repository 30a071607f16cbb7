"""Make the SQLite files of a floodwatch release, to prove later releases upgrade them losslessly.

Run it with the code of the release being frozen, not with the current code:

    git worktree add /tmp/fw-release <commit>          # e.g. 72e53d0, the last release before versioned schemas
    cd /tmp/fw-release && python -m venv .venv && .venv/bin/pip install -q -e .
    .venv/bin/python /path/to/tests/migrations/make_fixtures.py /path/to/tests/migrations/fixtures/<release>

It writes one file per database floodwatch keeps (the readings store, ingest's
spool, the alert state, the page's state), each with rows in every table, and
``contents.json``: what each table holds, which the upgrade test compares against.
The times are fixed so the files are the same on every run (except random keys).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from floodwatch.alerts._db import AlertDb
from floodwatch.gauge_page._state import PageState
from floodwatch.ingest.spool import Spool
from floodwatch.store.base import Rejection
from floodwatch.store.sqlite import SqliteStore
from floodwatch.vocabulary import QcFlag, Reading, StationId

T0_S = 1_790_000_000.0  # 2026-09-21, monsoon season


def make_store(path: Path) -> None:
    store = SqliteStore(path)
    readings = []
    for k in range(48):
        ts_s = T0_S + k * 600.0
        readings.append(Reading(StationId("LP-W01"), ts_s, seq=k, boot=3, water_level_m=1.2 + 0.01 * k,
                                battery_v=3.9, rssi_dbm=-70.0, qc_flag=QcFlag.PASS, qc_tests="",
                                received_s=ts_s + 2.0))
        readings.append(Reading(StationId("LP-R01"), ts_s, seq=k, boot=1, rain_mm=0.2 * (k % 3),
                                qc_flag=QcFlag.SUSPECT if k == 7 else QcFlag.PASS,
                                qc_tests="spike" if k == 7 else "", received_s=ts_s + 1.0))
    store.write_batch(readings)
    store.write_rejections([
        Rejection(T0_S + 30.0, "floodwatch/LP-ZZ/telemetry", "unknown_station",
                  "station 'LP-ZZ' is not in the registry", b'{"ts": 1, "seq": 1}', "LP-ZZ"),
        Rejection(T0_S + 60.0, "floodwatch/LP-W01/telemetry", "bad_json", "not JSON", b"\xff\x00", "LP-W01"),
    ])
    store.close()


def make_spool(path: Path) -> None:
    spool = Spool(path)
    spool.append(
        [Reading(StationId("LP-W02"), T0_S + 3600.0, seq=9, boot=2, water_level_m=1.55, qc_flag=QcFlag.PASS,
                 received_s=T0_S + 3601.0)],
        [Rejection(T0_S + 3602.0, "floodwatch/LP-W02/telemetry", "out_of_physics", "above max_level_m",
                   b'{"water_level_m": 99}', "LP-W02")],
    )
    spool.save_tips({"LP-R01": (1, T0_S + 3000.0, 417), "LP-R02": (None, T0_S + 3000.0, 12)})
    spool.close()


def make_alerts(path: Path) -> None:
    db = AlertDb(f"sqlite:///{path}")
    residents = [f"U{i:032x}" for i in range(1, 6)]
    db.subscribe_many([(u, "moo-1") for u in residents[:3]] + [(u, "moo-5") for u in residents[2:]], T0_S)
    db.set_user_flag(residents[0], "lang", "en", T0_S)
    db.set_user_flag(residents[1], "low_water", 1, T0_S)
    db.set_user_flag(residents[2], "tide_daily", 1, T0_S)
    db.add_officer("U" + "f" * 32, T0_S)
    db.first_sight_of_event("01HWEBHOOKEVENT", T0_S, keep_s=86_400.0)
    ids = db.record(
        {"zone:moo-1": {"level": 2, "since_s": T0_S + 600.0}, "maintenance": {"stations": ["LP-W04"]}},
        [({"ts_s": T0_S + 600.0, "kind": "level", "audience": "residents", "zone_id": "moo-1",
           "station_id": "LP-W07", "level": 2, "text": "เตือนภัย หมู่ 1"},
          [(residents[:3], [{"type": "text", "text": "เตือนภัย หมู่ 1 / warning Moo 1"}])], 2),
         ({"ts_s": T0_S + 700.0, "kind": "officer", "audience": "officers", "zone_id": None,
           "station_id": "LP-W03", "level": 0, "text": "LP-W03 offline"},
          [(["U" + "f" * 32], [{"type": "text", "text": "LP-W03 offline"}])], 1)],
        T0_S + 600.0,
    )
    first_chunk = db.pending_ids(10, set())[0]
    db.mark_attempt(first_chunk, 200, None)
    db.mark_done(first_chunk, "delivered", 200, None, T0_S + 601.0)
    assert len(ids) == 2
    db.close()


def make_page(path: Path) -> None:
    state = PageState(path)
    state.add_officer("somchai", "correct horse battery", display_name="สมชาย ใจดี", now_s=T0_S)
    state.add_officer("nid", "another long password", now_s=T0_S + 1.0)
    state.create_session("somchai", "สมชาย ใจดี")
    state.record(ts_s=T0_S + 5.0, username="somchai", action="login", target="", detail={})
    state.record(ts_s=T0_S + 9.0, username="somchai", action="manual_message", target="moo-1",
                 detail={"text_th": "ทดสอบ", "text_en": "test"})
    state.acknowledge("1", ts_s=T0_S + 10.0, username="somchai")
    state.set_maintenance("LP-W04", True, now_s=T0_S + 11.0, username="nid", note="sensor cleaning")
    state.close()


def contents(path: Path) -> dict[str, dict[str, list]]:
    """Every user table's column names and rows (sorted; BLOBs as hex), JSON-able."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out = {}
        for table in tables:
            cur = db.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cur.description]
            rows = sorted([[v.hex() if isinstance(v, bytes) else v for v in row] for row in cur.fetchall()], key=repr)
            out[table] = {"columns": columns, "rows": rows}
    return out


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    makers = {"floodwatch.db": make_store, "floodwatch.db.spool": make_spool, "alerts.db": make_alerts,
              "page.db": make_page}
    summary = {}
    for name, make in makers.items():
        path = out_dir / name
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        make(path)
        with sqlite3.connect(path) as db:  # fold the write-ahead log into the file: one file per database
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        summary[name] = contents(path)
    # One row per line: small, and a diff shows which row changed.
    parts = []
    for name, tables in summary.items():
        body = ",\n".join(
            f"  {json.dumps(table)}: {{\"columns\": {json.dumps(t['columns'])}, \"rows\": [\n"
            + ",\n".join("   " + json.dumps(row, ensure_ascii=False) for row in t["rows"]) + "]}"
            for table, t in tables.items())
        parts.append(f" {json.dumps(name)}: {{\n{body}}}")
    (out_dir / "contents.json").write_text("{\n" + ",\n".join(parts) + "\n}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
