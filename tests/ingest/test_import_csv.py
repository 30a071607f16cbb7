"""`floodwatch import-csv` on a ThaiWater-style export, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from floodwatch.vocabulary import QcFlag
from floodwatch.store.sqlite import SqliteStore

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BANGKOK = timezone(timedelta(hours=7))


def run_import(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLOODWATCH_STORE__URL": f"sqlite:///{tmp_path}/fw.db"}
    return subprocess.run([sys.executable, "-m", "floodwatch.cli.import_csv", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_import_thaiwater_style_export_twice(tmp_path):
    start = datetime.now(BANGKOK).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    lines = ["station_code,datetime,waterlevel_msl"]
    for i in range(144):
        t = start + timedelta(minutes=10 * i)
        # Buddhist-era year and local time, as Thai exports write them
        lines.append(f"LP-W01,{t.year + 543}-{t:%m-%d %H:%M},{1.0 + 0.001 * i:.3f}")
    lines += ["LP-W01,not a time,1.0", "LP-W01,2026-11-01 00:00,high", "LP-ZZ,2026-11-01 00:00,1.0",
              "LP-W01,2026-11-01 00:10,250"]
    csv = tmp_path / "thachin.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")

    first = run_import(tmp_path, str(csv))
    print(first.stdout)
    assert first.returncode == 0, first.stderr
    assert "rows 148, stored 144, duplicates 0, rejected 4" in first.stdout
    for reason in ("bad_ts", "invalid_field", "unknown_station", "out_of_physics"):
        assert f"rejected {reason}: 1" in first.stdout
    second = run_import(tmp_path, str(csv))
    assert "stored 0, duplicates 144, rejected 4" in second.stdout

    with SqliteStore(tmp_path / "fw.db") as store:
        rs = store.read_readings("LP-W01", 0, time.time() + 1)
        assert len(rs) == 144
        assert rs[0].ts_s == start.timestamp() and rs[0].water_level_m == 1.0
        assert all(r.qc_flag in (QcFlag.PASS, QcFlag.NOT_EVALUATED) for r in rs)
