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
