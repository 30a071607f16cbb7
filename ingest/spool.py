"""A durable local queue for readings the store could not take yet.

One SQLite file (WAL, synchronous=FULL) holding batches in arrival order.
Ingest appends a batch here when the store is unavailable, acknowledges the
broker (the batch is on disk), and replays oldest-first when the store
answers again; a batch leaves the spool only after the store committed it.
A crash between the two replays that batch once more, and the store's
(station, ts) / (station, boot, seq) keys drop the copies, so nothing is lost
and nothing is counted twice.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from floodwatch import migrations
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.store.base import Rejection


# The spool file's schema versions, oldest first (floodwatch/migrations.py); append to change.
MIGRATIONS: list[migrations.Step] = [
    # 1: release 0.1.0's tables. tip_counters is ingest's own small state: the last tip counter
    # per rain gauge, so a restart does not lose the first interval's rain.
    """
    CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS tip_counters (station TEXT PRIMARY KEY, boot INTEGER, ts_s REAL, tips INTEGER);
    """,
]


class Spool:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        migrations.migrate(self._conn, MIGRATIONS, name=str(self.path))
        self._pending = self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0]

    def load_tips(self) -> dict[str, tuple[int | None, float, int]]:
        with self._lock:
            rows = self._conn.execute("SELECT station, boot, ts_s, tips FROM tip_counters").fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def save_tips(self, counters: dict[str, tuple[int | None, float, int]]) -> None:
        if not counters:
            return
        with self._lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO tip_counters (station, boot, ts_s, tips) VALUES (?,?,?,?)",
                [(sid, *v) for sid, v in counters.items()],
            )

    def __len__(self) -> int:
        """Batches waiting."""
        return self._pending

    def append(self, readings: Sequence[Reading], rejections: Sequence[Rejection]) -> None:
        body = json.dumps(
            {
                "readings": [_reading_to_json(r) for r in readings],
                "rejections": [_rejection_to_json(r) for r in rejections],
            }
        )
        with self._lock:
            self._conn.execute("INSERT INTO spool (body) VALUES (?)", (body,))
            self._pending += 1

    def oldest(self) -> tuple[int, list[Reading], list[Rejection]] | None:
        with self._lock:
            row = self._conn.execute("SELECT id, body FROM spool ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        body = json.loads(row[1])
        return (
            row[0],
            [_reading_from_json(d) for d in body["readings"]],
            [_rejection_from_json(d) for d in body["rejections"]],
        )

    def remove(self, batch_id: int) -> None:
        with self._lock:
            cur = self._conn.execute("DELETE FROM spool WHERE id = ?", (batch_id,))
            self._pending -= cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _reading_to_json(r: Reading) -> dict:
    d = dataclasses.asdict(r)
    d["qc_flag"] = int(r.qc_flag)
    return d


def _reading_from_json(d: dict) -> Reading:
    d = dict(d)
    d["station_id"] = StationId(d["station_id"])
    d["qc_flag"] = QcFlag(d["qc_flag"])
    return Reading(**d)


def _rejection_to_json(r: Rejection) -> dict:
    d = dataclasses.asdict(r)
    d["payload"] = r.payload.hex()
    return d


def _rejection_from_json(d: dict) -> Rejection:
    d = dict(d)
    d["payload"] = bytes.fromhex(d["payload"])
    return Rejection(**d)
