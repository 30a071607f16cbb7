"""The SQLite store on real files: dedup keys, binned windows, retention, quarantine, a locked file."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from floodwatch.errors import StoreUnavailable
from floodwatch.settings import load_settings
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.store import Rejection, open_store
from floodwatch.store.sqlite import SqliteStore

T0 = 1_795_000_000.0
W1, R1 = StationId("LP-W01"), StationId("LP-R01")


def level(ts_s, value, seq=None, boot=None, flag=QcFlag.PASS):
    return Reading(W1, ts_s, seq=seq, boot=boot, water_level_m=value, qc_flag=flag)


def test_a_relative_store_path_lives_in_the_data_dir_whatever_the_working_directory(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("FLOODWATCH_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings(store={"url": "sqlite:///var/sub/fw.db"})
    assert settings.store.url == f"sqlite:///{tmp_path}/data/var/sub/fw.db"
    s = open_store(settings)
    try:
        assert (tmp_path / "data" / "var" / "sub" / "fw.db").is_file()
        assert not (elsewhere / "var").exists()
        mode = sqlite3.connect(tmp_path / "data" / "var" / "sub" / "fw.db").execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        s.close()


def test_duplicates_by_time_and_by_boot_seq_are_dropped(tmp_path):
    with SqliteStore(tmp_path / "fw.db") as s:
        first = s.write_batch([level(T0, 1.0, seq=1, boot=1), level(T0 + 600, 1.1, seq=2, boot=1)])
        again = s.write_batch([
            level(T0, 1.0, seq=1, boot=1),            # QoS 1 redelivery: same ts
            level(T0 + 601, 1.1, seq=2, boot=1),      # node re-sent its buffer with a new stamp
            level(T0 + 1200, 1.2, seq=2, boot=2),     # same seq after a reboot: new reading
            level(T0 + 1800, 1.3),                    # no seq/boot: keyed by time only
            level(T0 + 1800, 1.3),                    # duplicate inside one batch
        ])
        assert (first.stored, first.duplicates) == (2, 0)
        assert (again.stored, again.duplicates) == (2, 3)
        print(f"published 7, stored {first.stored + again.stored}, duplicates {first.duplicates + again.duplicates}")
        assert [r.ts_s for r in s.read_readings(W1, T0, T0 + 3600)] == [T0, T0 + 600, T0 + 1200, T0 + 1800]


def test_rain_is_never_double_counted_in_a_window(tmp_path):
    with SqliteStore(tmp_path / "fw.db") as s:
        rain = [Reading(R1, T0 + 600 * i, seq=i, boot=1, rain_mm=1.0, qc_flag=QcFlag.PASS) for i in range(6)]
        s.write_batch(rain)
        s.write_batch(rain[2:5])  # redelivered
        w = s.read_window([R1], "rain_mm", T0, T0 + 3600, 3600)
        assert w.values[0, 0] == pytest.approx(6.0)


def test_window_bins_means_excludes_failed_and_marks_gaps(tmp_path):
    with SqliteStore(tmp_path / "fw.db") as s:
        s.write_batch([
            level(T0 + 0, 1.0), level(T0 + 300, 2.0),          # bin 0 mean 1.5
            level(T0 + 700, 9.0, flag=QcFlag.FAIL),           # bin 1: only a failed reading
            level(T0 + 1900, 3.0, flag=QcFlag.SUSPECT),       # bin 3: suspect still counts
        ])
        w = s.read_window([W1, StationId("LP-W02")], "water_level_m", T0, T0 + 2400, 600)
        assert w.station_ids == (W1, "LP-W02")
        np.testing.assert_array_equal(w.t_s, T0 + np.array([0, 600, 1200, 1800]))
        np.testing.assert_allclose(w.values[0], [1.5, np.nan, np.nan, 3.0])
        assert np.isnan(w.values[1]).all()
        with_failed = s.read_window([W1], "water_level_m", T0, T0 + 2400, 600, include_failed=True)
        assert with_failed.values[0, 1] == 9.0


def test_latest_and_retention(tmp_path):
    with SqliteStore(tmp_path / "fw.db", retention_days=1) as s:
        s.write_batch([level(T0 - 2 * 86400, 0.5), level(T0, 1.0), level(T0 + 60, 1.1),
                       Reading(R1, T0, rain_mm=0.2, qc_flag=QcFlag.PASS)])
        latest = s.latest()
        assert latest[W1].water_level_m == 1.1 and latest[R1].rain_mm == 0.2
        assert s.apply_retention(T0 + 60) == 1
        assert s.stats().readings == 3


def test_quarantine_lists_newest_first_and_counts_per_reason_and_station(tmp_path):
    with SqliteStore(tmp_path / "fw.db") as s:
        s.write_rejections([
            Rejection(T0, "floodwatch/LP-W01/telemetry", "bad_json", "payload is not JSON", b"{x", "LP-W01"),
            Rejection(T0 + 1, "floodwatch/LP-ZZ/telemetry", "unknown_station", "not in registry", b"{}", None),
            Rejection(T0 + 2, "floodwatch/LP-W01/telemetry", "bad_json", "payload is not JSON", b"\xff", "LP-W01"),
        ])
        q = s.quarantine(limit=2)
        assert [r.received_s for r in q] == [T0 + 2, T0 + 1]
        assert q[0].payload == b"\xff"
        assert s.quarantine_counts() == {("bad_json", "LP-W01"): 2, ("unknown_station", ""): 1}


def test_a_locked_file_raises_store_unavailable_then_recovers(tmp_path):
    path = tmp_path / "fw.db"
    with SqliteStore(path, busy_timeout_s=0.1) as s:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked"):
            s.write_batch([level(T0, 1.0)])
        other.execute("ROLLBACK")
        other.close()
        assert s.write_batch([level(T0, 1.0)]).stored == 1
