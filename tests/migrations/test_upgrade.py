"""Upgrades keep data: the files release 0.1.0 made open with today's code, every row still there.

The fixtures in fixtures/0.1.0-72e53d0/ were made by make_fixtures.py with
that release's code. Each is copied, opened the way floodwatch opens it (so
its migrations run), and then compared table by table, column by column, with
what the release had written, and read back through the public API.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from floodwatch import migrations
from floodwatch.alerts import _db as alerts_db
from floodwatch.errors import SchemaError
from floodwatch.gauge_page import _state as page_state
from floodwatch.ingest import spool as spool_module
from floodwatch.store import sqlite as store_sqlite
from floodwatch.vocabulary import StationId

FIXTURES = Path(__file__).parent / "fixtures"
RELEASES = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
T0_S = 1_790_000_000.0

# file name -> (the module that owns its schema, how floodwatch opens it)
OWNERS = {
    "floodwatch.db": (store_sqlite, lambda p: store_sqlite.SqliteStore(p)),
    "floodwatch.db.spool": (spool_module, lambda p: spool_module.Spool(p)),
    "alerts.db": (alerts_db, lambda p: alerts_db.AlertDb(f"sqlite:///{p}")),
    "page.db": (page_state, lambda p: page_state.PageState(p)),
}


def _rows(path: Path, table: str, columns: list[str]) -> list[list]:
    with sqlite3.connect(path) as db:
        cols = ", ".join(f'"{c}"' for c in columns)
        rows = db.execute(f'SELECT {cols} FROM "{table}"').fetchall()
    return sorted([[v.hex() if isinstance(v, bytes) else v for v in row] for row in rows], key=repr)


@pytest.fixture(params=RELEASES, ids=[p.name for p in RELEASES])
def old_release(request, tmp_path) -> Path:
    copy = tmp_path / request.param.name
    shutil.copytree(request.param, copy)
    return copy


def test_every_database_of_the_previous_release_upgrades_and_keeps_every_row(old_release):
    before = json.loads((old_release / "contents.json").read_text())
    assert set(before) == set(OWNERS), "a database floodwatch keeps has no fixture (or the other way round)"
    for name, (owner, open_) in OWNERS.items():
        path = old_release / name
        assert migrations.file_version(path) == 0
        opened = open_(path)
        opened.close()
        assert migrations.file_version(path) == len(owner.MIGRATIONS), name
        for table, old in before[name].items():
            assert _rows(path, table, old["columns"]) == old["rows"], f"{name}: table {table} changed in the upgrade"


def test_upgraded_files_read_back_through_the_api(old_release):
    store = store_sqlite.SqliteStore(old_release / "floodwatch.db")
    try:
        levels = store.read_readings(StationId("LP-W01"), T0_S - 1, T0_S + 48 * 600.0)
        assert [round(r.water_level_m, 2) for r in levels] == [round(1.2 + 0.01 * k, 2) for k in range(48)]
        assert {r.reason for r in store.quarantine()} == {"unknown_station", "bad_json"}
    finally:
        store.close()
    spool = spool_module.Spool(old_release / "floodwatch.db.spool")
    try:
        batch_id, readings, rejections = spool.oldest()
        assert [(r.station_id, r.water_level_m) for r in readings] == [("LP-W02", 1.55)]
        assert spool.load_tips()["LP-R01"] == (1, T0_S + 3000.0, 417)
    finally:
        spool.close()
    db = alerts_db.AlertDb(f"sqlite:///{old_release / 'alerts.db'}")
    try:
        assert len(db.subscribers("moo-1")) == 3 and len(db.subscribers("moo-5")) == 3
        assert db.officers() == ["U" + "f" * 32]
        assert db.pending_chunks() == 1, "the undelivered chunk is still waiting to be sent"
        assert {e["text"] for e in db.log(10)} >= {"เตือนภัย หมู่ 1"}
    finally:
        db.close()
    state = page_state.PageState(old_release / "page.db")
    try:
        assert state.authenticate("somchai", "correct horse battery") == "สมชาย ใจดี"
        assert state.maintenance()["LP-W04"]["note"] == "sensor cleaning"
        assert [a["action"] for a in state.audit()] == ["manual_message", "login"]
    finally:
        state.close()


def test_opening_twice_changes_nothing_more(old_release):
    path = old_release / "alerts.db"
    alerts_db.AlertDb(f"sqlite:///{path}").close()
    first = path.read_bytes()
    alerts_db.AlertDb(f"sqlite:///{path}").close()
    assert migrations.file_version(path) == len(alerts_db.MIGRATIONS)
    assert _rows(path, "outbox", ["id", "status"]) == [[1, "delivered"], [2, "pending"]]
    assert len(first) == path.stat().st_size


def test_a_file_from_a_newer_floodwatch_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "page.db"
    page_state.PageState(path).close()
    newer = len(page_state.MIGRATIONS) + 3
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {newer}")
    before = path.read_bytes()
    with pytest.raises(SchemaError) as caught:
        page_state.PageState(path)
    message = str(caught.value)
    assert str(path) in message and f"version {newer}" in message and "newer floodwatch" in message
    assert "floodwatch restore" in message
    assert path.read_bytes() == before


def test_a_failing_step_leaves_the_file_at_its_old_version(tmp_path):
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path, isolation_level=None)
    steps = ["CREATE TABLE a (x INTEGER);", "INSERT INTO a VALUES (1);"]
    assert migrations.migrate(conn, steps, name="x.db") == 0
    broken = steps + ["CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (2);", "INSERT INTO nowhere VALUES (3);"]
    with pytest.raises(SchemaError, match="version 4 failed.*unchanged at version 2"):
        migrations.migrate(conn, broken, name="x.db")
    assert migrations.version(conn) == 2
    assert conn.execute("SELECT x FROM a").fetchall() == [(1,)], "step 3's insert was rolled back with the rest"
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'b'").fetchall() == []
    fixed = steps + ["CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (2);", "INSERT INTO b VALUES (3);"]
    assert migrations.migrate(conn, fixed, name="x.db") == 2
    assert migrations.version(conn) == 4 and conn.execute("SELECT y FROM b").fetchall() == [(3,)]


def test_statements_keep_semicolons_inside_strings_and_triggers():
    script = """
    CREATE TABLE t (note TEXT DEFAULT 'a;b');  -- a comment; with a semicolon
    CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
        UPDATE t SET note = 'x;y' WHERE rowid = new.rowid;
    END;
    """
    assert len(list(migrations.statements(script))) == 2


def test_a_one_line_step_may_leave_off_its_semicolon_but_a_broken_one_is_refused():
    import pytest

    from floodwatch.errors import SchemaError

    assert list(migrations.statements("ALTER TABLE readings ADD COLUMN discharge_m3_s REAL")) == [
        "ALTER TABLE readings ADD COLUMN discharge_m3_s REAL"
    ]
    with pytest.raises(SchemaError, match="incomplete statement"):
        list(migrations.statements("CREATE TRIGGER t AFTER INSERT ON x BEGIN UPDATE x SET a = 1;"))
