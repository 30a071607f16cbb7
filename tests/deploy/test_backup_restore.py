"""Backup while the store is being written, lose the files, restore, read everything back."""

from __future__ import annotations

import sqlite3
import threading

from floodwatch import store
from floodwatch.cli.backup import backup, databases, restore
from floodwatch.vocabulary import Reading, StationId


def _readings(start: int, n: int) -> list[Reading]:
    return [Reading(StationId("LP-W01"), float(1_796_000_000 + 600 * i), seq=i, water_level_m=1.0 + i / 1000)
            for i in range(start, start + n)]


def test_backup_taken_during_writes_restores_every_row_it_saw(tmp_path, make_settings):
    settings = make_settings()
    live = store.open_store(settings)
    live.write_batch(_readings(0, 2_000))
    writer_done = threading.Event()

    def keep_writing() -> None:
        w = store.open_store(settings)
        for k in range(20):
            w.write_batch(_readings(2_000 + 100 * k, 100))
        w.close()
        writer_done.set()

    t = threading.Thread(target=keep_writing)
    t.start()
    manifest = backup(settings, tmp_path / "backup")
    t.join()
    live.close()
    backed_up = manifest["databases"]["floodwatch.db"]["rows"]
    n_backed = max(backed_up.values())
    assert 2_000 <= n_backed <= 4_000

    # Disaster: the live files are gone.
    for path in databases(settings).values():
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    restore(settings, tmp_path / "backup")
    restored = store.open_store(settings)
    got = restored.read_readings(StationId("LP-W01"), 0, 2e9)
    restored.close()
    print(f"backup: rows in backup {n_backed}, restored readings {len(got)}")
    assert len(got) >= 2_000
    assert [r.seq for r in got[:2_000]] == list(range(2_000))
    with sqlite3.connect(tmp_path / "backup" / "floodwatch.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_restore_refuses_a_folder_that_is_not_a_backup(tmp_path, make_settings):
    import pytest

    from floodwatch.errors import ConfigError

    (tmp_path / "junk").mkdir()
    with pytest.raises(ConfigError, match="not a floodwatch backup"):
        restore(make_settings(), tmp_path / "junk")


def test_restore_refuses_a_backup_from_a_newer_floodwatch_and_replaces_nothing(tmp_path, make_settings):
    import pytest

    from floodwatch import gauge_page
    from floodwatch.errors import ConfigError

    settings = make_settings()
    live = store.open_store(settings)
    live.write_batch(_readings(0, 10))
    live.close()
    gauge_page.create_officer(settings, "somchai", "correct horse battery")
    manifest = backup(settings, tmp_path / "backup")
    assert manifest["databases"]["floodwatch.db"]["schema_version"] >= 1
    with sqlite3.connect(tmp_path / "backup" / "page.db") as db:
        db.execute("PRAGMA user_version = 999")
    live = store.open_store(settings)
    live.write_batch(_readings(10, 5))  # written after the backup: must survive the refused restore
    live.close()
    with pytest.raises(ConfigError, match="schema version 999, newer than this floodwatch"):
        restore(settings, tmp_path / "backup")
    live = store.open_store(settings)
    assert len(live.read_readings(StationId("LP-W01"), 0, 2e9)) == 15
    live.close()


def test_keep_days_prunes_only_old_floodwatch_backups(tmp_path, make_settings, monkeypatch, capsys):
    import json
    import time

    from floodwatch.cli.main import main

    settings = make_settings()
    live = store.open_store(settings)
    live.write_batch(_readings(0, 5))
    live.close()
    monkeypatch.setenv("FLOODWATCH_STORE__URL", settings.store.url)
    monkeypatch.setenv("FLOODWATCH_ALERTS__STATE_URL", settings.alerts.state_url)
    monkeypatch.setenv("FLOODWATCH_PAGE__STATE_URL", settings.page.state_url)
    backups = tmp_path / "backups"
    for name, age_days in (("old", 40), ("recent", 3)):
        assert main(["backup", "--out", str(backups / name)]) == 0
        manifest = json.loads((backups / name / "manifest.json").read_text())
        manifest["created_s"] = time.time() - age_days * 86_400
        (backups / name / "manifest.json").write_text(json.dumps(manifest))
    (backups / "notes-by-a-person").mkdir()
    (backups / "notes-by-a-person" / "readme.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["backup", "--out", str(backups / "tonight"), "--keep-days", "30"]) == 0
    assert f"deleted {backups / 'old'}" in capsys.readouterr().out
    assert sorted(p.name for p in backups.iterdir()) == ["notes-by-a-person", "recent", "tonight"]
