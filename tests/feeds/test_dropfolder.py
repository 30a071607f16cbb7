"""The officers' drop folder: each file imported once, sorted into done/ or failed/ with a reason."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from floodwatch.feeds.dropfolder import import_file, sha256_of
from floodwatch.vocabulary import QcFlag
from tests.feeds.conftest import NOW_S, rows

BKK = ZoneInfo("Asia/Bangkok")


def drop(folder: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    """Put a file in the folder the way a copy finishes: whole, and a moment ago."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    past = time.time() - 30
    os.utime(path, (past, past))
    return path


def be(ts_s: float) -> str:
    """'29/11/2569 14:00': day first, Buddhist era, Bangkok time (how RID and HD exports print it)."""
    t = datetime.fromtimestamp(ts_s, tz=BKK)
    return f"{t:%d/%m}/{t.year + 543} {t:%H:%M}"


@pytest.fixture
def folder(service) -> Path:
    return Path(service.settings.feed("officer-drop").folder)


def rid_export(hours: int = 6, start_s: float = NOW_S - 6 * 3600, level_m: float = 4.1) -> str:
    lines = ["station_code,date_time,water_level"]
    for k in range(hours):
        lines.append(f"T.13,{be(start_s + k * 3600)},{level_m + 0.01 * k:.2f}")
    return "\n".join(lines) + "\n"


def test_an_rid_export_with_buddhist_era_dates_and_rid_codes_is_imported_once(service, db, folder):
    drop(folder, "rid_tha_chin_2569.csv", rid_export())
    report = service.run_once("officer-drop")
    assert report.ok and report.stored == 6
    samchuk = rows(db, "TC-SAMCHUK")
    assert [r.ts_s for r in samchuk] == [NOW_S - 6 * 3600 + k * 3600 for k in range(6)]
    assert samchuk[0].water_level_m == 4.1
    assert not list(folder.glob("*.csv")) and (folder / "done" / "rid_tha_chin_2569.csv").exists()
    assert "stored 6" in (folder / "done" / "rid_tha_chin_2569.csv.result.txt").read_text()

    # The same export dropped again under another name: recognised, not counted twice.
    drop(folder, "copy of rid_tha_chin_2569.csv", rid_export())
    again = service.run_once("officer-drop")
    assert again.stored == 0 and any(p.reason == "already_imported" for p in again.problems)
    assert len(rows(db, "TC-SAMCHUK")) == 6 and (folder / "done" / "copy of rid_tha_chin_2569.csv").exists()


@pytest.mark.parametrize(("name", "content", "reason", "says"), [
    ("levels.xlsx", b"PK\x03\x04" + b"\x00" * 64, "unknown_format", "CSV UTF-8"),
    ("levels.json", '{"waterlevel_data": {"data": []}}', "unknown_format", "CSV"),
    ("no_time.csv", "station_code,water_level\nT.13,4.1\n", "bad_header", "no time column"),
    ("wrong_station.csv", "station_code,date_time,water_level\nX.99,29/11/2569 13:00,4.1\n", "no_usable_rows",
     "unknown_station"),
])
def test_a_file_that_cannot_be_read_goes_to_failed_with_a_reason_and_loses_nothing_else(
        service, db, folder, name, content, reason, says):
    drop(folder, name, content)
    drop(folder, "good.csv", rid_export(hours=2))
    report = service.run_once("officer-drop")
    assert report.ok and report.stored == 2  # the good file beside it is imported
    [problem] = [p for p in report.problems if p.reason == reason]
    assert name in problem.detail and says in problem.detail
    assert (folder / "failed" / name).exists()
    assert says in (folder / "failed" / f"{name}.reason.txt").read_text()
    assert len(rows(db, "TC-SAMCHUK")) == 2


def test_a_thai_windows_export_in_cp874_is_read(service, db, folder):
    content = "รหัสสถานี,station_code,date_time,water_level\nสามชุก,T.13,29/11/2569 12:00,4.20\n"
    drop(folder, "tis620.csv", content, encoding="cp874")
    report = service.run_once("officer-drop")
    assert report.stored == 1 and rows(db, "TC-SAMCHUK")[0].water_level_m == 4.2


def test_a_restart_between_store_and_ledger_or_ledger_and_move_neither_loses_nor_doubles(
        service, db, folder, feed_settings):
    path = drop(folder, "rid.csv", rid_export())
    # A crash after the store committed but before the ledger said so: the file is still in the folder.
    import_file(path, feed_settings, db, NOW_S)
    assert len(rows(db, "TC-SAMCHUK")) == 6
    report = service.run_once("officer-drop")
    assert report.stored == 0 and report.duplicates == 6 and (folder / "done" / "rid.csv").exists()
    # A crash after the ledger but before the move: only moved, not imported again.
    path = drop(folder, "rid-again.csv", rid_export())
    service.state.record_drop_file("officer-drop", sha256_of(path), "rid-again.csv", "done", {"summary": "x"}, NOW_S)
    report = service.run_once("officer-drop")
    assert report.fetched == 0 and (folder / "done" / "rid-again.csv").exists()
    assert len(rows(db, "TC-SAMCHUK")) == 6


def test_a_file_still_being_copied_waits_for_the_next_run(service, folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arriving.csv").write_text(rid_export())  # modified just now
    assert service.run_once("officer-drop").fetched == 0 and (folder / "arriving.csv").exists()


def tide_table(start_s: float, hours: int, offset_m: float = 0.0) -> str:
    """Hourly heights above chart datum for the Tha Chin mouth, as the Hydrographic Department prints them."""
    import math

    lines = ["date_time,water_level"]
    for k in range(hours):
        t = start_s + k * 3600
        height = 1.60 + offset_m + 1.1 * math.cos(2 * math.pi * k / 12.42) + 0.6 * math.cos(2 * math.pi * k / 23.93)
        lines.append(f"{be(t)},{height:.2f}")
    return "\n".join(lines) + "\n"


def test_a_tide_table_is_a_predicted_series_that_a_new_load_replaces_where_it_overlaps(service, db, folder):
    drop(folder, "TC-MOUTH-TIDE_hd_2569.csv", tide_table(NOW_S, 72))
    report = service.run_once("officer-drop")
    assert report.ok and report.stored == 72
    first = rows(db, "TC-MOUTH-TIDE")
    assert first[0].ts_s == NOW_S and first[-1].ts_s == NOW_S + 71 * 3600  # future times are the point
    # Chart datum -> mean sea level (feed_offset_m = -1.60); smooth, so QC passes every row.
    assert first[0].water_level_m == pytest.approx(1.1 + 0.6)
    assert {r.qc_flag for r in first} == {QcFlag.PASS}, [r.qc_tests for r in first if r.qc_flag != QcFlag.PASS]
    assert service.describe("officer-drop")["stations"]["TC-MOUTH-TIDE"]["last_data_s"] == NOW_S + 71 * 3600

    # A revised table for the second and third days, 10 cm higher: it replaces those times, nothing else.
    drop(folder, "TC-MOUTH-TIDE_hd_2569_revised.csv", tide_table(NOW_S + 24 * 3600, 48, offset_m=0.10))
    service.run_once("officer-drop")
    second = {r.ts_s: r.water_level_m for r in rows(db, "TC-MOUTH-TIDE")}
    assert len(second) == 72
    old = {r.ts_s: r.water_level_m for r in first}
    for ts_s, level in second.items():
        if ts_s < NOW_S + 24 * 3600:
            assert level == old[ts_s]
        else:
            k = round((ts_s - NOW_S - 24 * 3600) / 3600)
            import math

            expect = 0.10 + 1.1 * math.cos(2 * math.pi * k / 12.42) + 0.6 * math.cos(2 * math.pi * k / 23.93)
            assert level == pytest.approx(round(expect + 1.60, 2) - 1.60)
