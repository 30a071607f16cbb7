"""The embedded default store: one SQLite file in WAL mode.

Schema (see docs/storage.md):

- ``readings`` keyed by (station, ts_s), WITHOUT ROWID so one station's
  readings sit together on disk and a window read is one range scan; a
  partial unique index on (station, boot, seq) catches a node re-sending its
  buffer with fresh timestamps. ``INSERT OR IGNORE`` drops duplicates of
  either key, so a QoS 1 redelivery or a replayed spool never counts twice.
- ``quarantine``: every payload ingest refused, with its reason.
- predicted series (a tide table, a release schedule) are written with
  :meth:`SqliteStore.replace_readings`: a new load replaces the previous
  prediction over the times it covers, in one transaction.

Writes go through one connection under a lock; every reading thread gets its
own connection, so WAL lets the page and the forecaster read while ingest
writes. A lock held by another process longer than ``busy_timeout_s`` raises
:class:`~floodwatch.errors.StoreUnavailable` so ingest can spool.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from floodwatch.logs import redact_url
from floodwatch import migrations
from floodwatch.errors import StoreError, StoreUnavailable
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.store.base import Field, Rejection, StoreStats, Window, WriteResult, empty_window

log = logging.getLogger(__name__)

_FIELDS = ("water_level_m", "rain_mm", "battery_v", "rssi_dbm", "discharge_m3_s")
_SUMMED_FIELDS = ("rain_mm",)

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS readings (
    station       TEXT NOT NULL,
    ts_s          REAL NOT NULL,
    seq           INTEGER,
    boot          INTEGER,
    water_level_m REAL,
    rain_mm       REAL,
    battery_v     REAL,
    rssi_dbm      REAL,
    qc_flag       INTEGER NOT NULL,
    qc_tests      TEXT NOT NULL DEFAULT '',
    received_s    REAL,
    PRIMARY KEY (station, ts_s)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS readings_boot_seq
    ON readings (station, boot, seq) WHERE boot IS NOT NULL AND seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS stations_seen (station TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id         INTEGER PRIMARY KEY,
    received_s REAL NOT NULL,
    station    TEXT,
    topic      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    payload    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_reason ON quarantine (reason, station);
"""

# The readings file's schema versions, oldest first (floodwatch/migrations.py). To change the
# schema, append a step; never edit one that has shipped.
MIGRATIONS: list[migrations.Step] = [
    _SCHEMA_1,  # 1: release 0.1.0's tables (adopted as they are in files made before versions)
    "ALTER TABLE readings ADD COLUMN discharge_m3_s REAL",  # 2: a dam's release, m3/s (external feeds)
]

_INSERT = (
    "INSERT OR IGNORE INTO readings (station, ts_s, seq, boot, water_level_m, rain_mm, battery_v,"
    " rssi_dbm, qc_flag, qc_tests, received_s, discharge_m3_s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
_COLUMNS = ("station, ts_s, seq, boot, water_level_m, rain_mm, battery_v, rssi_dbm, qc_flag, qc_tests, received_s,"
            " discharge_m3_s")


def path_from_url(url: str) -> Path:
    """``sqlite:///var/x.db`` -> ``var/x.db`` (relative to the working directory);
    ``sqlite:////srv/x.db`` -> ``/srv/x.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise StoreError(f"store url {redact_url(url)!r} is not a SQLite url; write it as sqlite:///relative/path.db")
    rest = url[len(prefix):]
    if not rest:
        raise StoreError(f"store url {url!r} names no file; write it as sqlite:///var/floodwatch.db")
    return Path(rest)


def _row(r: Reading) -> tuple:
    return (r.station_id, r.ts_s, r.seq, r.boot, r.water_level_m, r.rain_mm, r.battery_v, r.rssi_dbm,
            int(r.qc_flag), r.qc_tests, r.received_s, r.discharge_m3_s)


def _row_to_reading(row: tuple) -> Reading:
    return Reading(
        station_id=StationId(row[0]),
        ts_s=row[1],
        seq=row[2],
        boot=row[3],
        water_level_m=row[4],
        rain_mm=row[5],
        battery_v=row[6],
        rssi_dbm=row[7],
        qc_flag=QcFlag(row[8]),
        qc_tests=row[9],
        received_s=row[10],
        discharge_m3_s=row[11],
    )


class SqliteStore:
    """Readings and the quarantine in one SQLite file; thread-safe."""

    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: float = 400.0,
        busy_timeout_s: float = 2.0,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = Path(path)
        self.retention_days = retention_days
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all_connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._dir_synced = False
        try:
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            migrations.migrate(conn, MIGRATIONS, name=str(self.path))
        except sqlite3.OperationalError as exc:
            raise _as_store_error(exc, self.path) from exc
        self._writer = self._new_connection()

    # -- connections ---------------------------------------------------------
    def _new_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_s, check_same_thread=False, isolation_level=None
        )
        # NORMAL in WAL mode: a commit survives a process crash at once, and
        # :meth:`sync` makes it survive power loss (ingest calls it before its
        # PUBACKs), so readings reach alerts without waiting for the disk.
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        with self._connections_lock:
            self._all_connections.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self.path} is closed; open a new one with store.open_store(settings)")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._new_connection()
            self._local.conn = conn
        return conn

    # -- writes --------------------------------------------------------------
    def insert_new(self, readings: Sequence[Reading]) -> list[Reading]:
        if not readings:
            return []
        stored: list[Reading] = []
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    cur = conn.cursor()
                    rows = [_row(r) for r in readings]
                    cur.executemany(_INSERT, rows)
                    if cur.rowcount == len(rows):  # the usual case: nothing was a duplicate
                        stored = list(readings)
                    else:
                        # Some were duplicates: redo row by row to learn which were new.
                        conn.execute("ROLLBACK")
                        conn.execute("BEGIN IMMEDIATE")
                        for r, row in zip(readings, rows):
                            cur.execute(_INSERT, row)
                            if cur.rowcount == 1:
                                stored.append(r)
                    if stored:
                        cur.executemany(
                            "INSERT OR IGNORE INTO stations_seen (station) VALUES (?)",
                            [(s,) for s in {r.station_id for r in stored}],
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise _as_store_error(exc, self.path) from exc
        return stored

    def replace_readings(self, station_id: StationId, start_s: float, end_s: float,
                         readings: Sequence[Reading]) -> list[Reading]:
        """Replace one station's readings in [start_s, end_s] by ``readings``, in one transaction.

        For predicted series: a new tide table or release schedule supersedes the
        previous one over the times it covers, and nothing outside them. Returns the
        readings written (all of them). Readings of other stations or outside the
        range are refused with :class:`~floodwatch.errors.StoreError`.
        """
        stray = [r for r in readings if r.station_id != station_id or not start_s <= r.ts_s <= end_s]
        if stray:
            raise StoreError(
                f"replace_readings for {station_id} over [{start_s}, {end_s}] got {len(stray)} readings outside "
                "it; pass only that station's readings in the range"
            )
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute("DELETE FROM readings WHERE station = ? AND ts_s >= ? AND ts_s <= ?",
                                 (station_id, start_s, end_s))
                    conn.executemany(_INSERT.replace("INSERT OR IGNORE", "INSERT OR REPLACE"),
                                     [_row(r) for r in readings])
                    if readings:
                        conn.execute("INSERT OR IGNORE INTO stations_seen (station) VALUES (?)", (station_id,))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise _as_store_error(exc, self.path) from exc
        return list(readings)

    def write_batch(self, readings: Sequence[Reading]) -> WriteResult:
        stored = self.insert_new(readings)
        self.sync()
        return WriteResult(stored=len(stored), duplicates=len(readings) - len(stored))

    def sync(self) -> None:
        """Make every commit so far survive power loss: fsync the write-ahead log.

        One fsync covers all earlier commits (group commit), so ingest calls
        this once per round of acknowledgements, off the writer's path.
        """
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # no WAL: everything is checkpointed into the main file already
        try:
            os.fsync(fd)
            if not self._dir_synced:
                # The WAL file's own directory entry, once: a new file is not on
                # disk until its folder is.
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
                self._dir_synced = True
        except OSError as exc:
            raise StoreUnavailable(f"cannot fsync {wal} ({exc}); check the disk") from exc
        finally:
            os.close(fd)

    def write_rejections(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT INTO quarantine (received_s, station, topic, reason, detail, payload)"
                        " VALUES (?,?,?,?,?,?)",
                        [(r.received_s, r.station_id, r.topic, r.reason, r.detail, r.payload) for r in rejections],
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise _as_store_error(exc, self.path) from exc

    def apply_retention(self, now_s: float) -> int:
        cutoff_s = now_s - self.retention_days * 86_400.0
        with self._write_lock:
            try:
                cur = self._writer.execute("DELETE FROM readings WHERE ts_s < ?", (cutoff_s,))
                self._writer.execute("DELETE FROM quarantine WHERE received_s < ?", (cutoff_s,))
            except sqlite3.OperationalError as exc:
                raise _as_store_error(exc, self.path) from exc
        if cur.rowcount:
            log.info("event=retention deleted=%d cutoff_s=%.0f", cur.rowcount, cutoff_s)
        return cur.rowcount

    # -- reads ---------------------------------------------------------------
    def read_window(
        self,
        station_ids: Sequence[StationId],
        field: Field,
        start_s: float,
        end_s: float,
        step_s: float,
        *,
        include_failed: bool = False,
    ) -> Window:
        window = empty_window(station_ids, field, _FIELDS, start_s, end_s, step_s)
        ids, t_s, values, n_bins = window.station_ids, window.t_s, window.values, window.t_s.size
        if not ids:
            return window
        row_of = {sid: i for i, sid in enumerate(ids)}
        agg = "SUM" if field in _SUMMED_FIELDS else "AVG"
        flag_clause = "" if include_failed else f" AND qc_flag != {int(QcFlag.FAIL)}"
        marks = ",".join("?" * len(ids))
        # Binning happens in SQLite: a 30-day window of 10-min means for ten
        # stations returns 43k small rows instead of every raw reading.
        sql = (
            f"SELECT station, CAST((ts_s - ?) / ? AS INTEGER) AS bin, {agg}({field}) FROM readings"
            f" WHERE station IN ({marks}) AND ts_s >= ? AND ts_s < ? AND {field} IS NOT NULL{flag_clause}"
            " GROUP BY station, bin"
        )
        try:
            rows = self._conn().execute(sql, (start_s, step_s, *ids, start_s, end_s)).fetchall()
        except sqlite3.OperationalError as exc:
            raise _as_store_error(exc, self.path) from exc
        if rows:
            st, b, v = zip(*rows)
            rows_idx = np.fromiter((row_of[s] for s in st), dtype=np.int64, count=len(st))
            bins = np.asarray(b, dtype=np.int64)
            ok = (bins >= 0) & (bins < n_bins)
            values[rows_idx[ok], bins[ok]] = np.asarray(v, dtype=float)[ok]
        return Window(ids, t_s, values)

    def read_readings(self, station_id: StationId, start_s: float, end_s: float) -> list[Reading]:
        try:
            rows = self._conn().execute(
                f"SELECT {_COLUMNS} FROM readings WHERE station = ? AND ts_s >= ? AND ts_s < ? ORDER BY ts_s",
                (station_id, start_s, end_s),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            raise _as_store_error(exc, self.path) from exc
        return [_row_to_reading(r) for r in rows]

    def latest(self, station_ids: Sequence[StationId] | None = None) -> dict[StationId, Reading]:
        conn = self._conn()
        try:
            if station_ids is None:
                station_ids = [r[0] for r in conn.execute("SELECT station FROM stations_seen")]
            out: dict[StationId, Reading] = {}
            for sid in station_ids:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM readings WHERE station = ? ORDER BY ts_s DESC LIMIT 1", (sid,)
                ).fetchone()
                if row is not None:
                    out[StationId(sid)] = _row_to_reading(row)
        except sqlite3.OperationalError as exc:
            raise _as_store_error(exc, self.path) from exc
        return out

    def quarantine(self, limit: int = 100, station_id: str | None = None) -> list[Rejection]:
        sql = "SELECT received_s, topic, reason, detail, payload, station FROM quarantine"
        params: tuple = ()
        if station_id is not None:
            sql += " WHERE station = ?"
            params = (station_id,)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self._conn().execute(sql, (*params, limit)).fetchall()
        return [Rejection(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]

    def quarantine_counts(self) -> dict[tuple[str, str], int]:
        rows = self._conn().execute(
            "SELECT reason, COALESCE(station, ''), COUNT(*) FROM quarantine GROUP BY reason, station"
        ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def stats(self) -> StoreStats:
        conn = self._conn()
        n, oldest, newest = conn.execute("SELECT COUNT(*), MIN(ts_s), MAX(ts_s) FROM readings").fetchone()
        stations = conn.execute("SELECT COUNT(*) FROM stations_seen").fetchone()[0]
        quarantined = conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        return StoreStats(readings=n, stations=stations, oldest_s=oldest, newest_s=newest, quarantined=quarantined)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._connections_lock:
            conns, self._all_connections = self._all_connections, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:
                pass  # closed from another thread already

    def __enter__(self) -> "SqliteStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_store_error(exc: sqlite3.OperationalError, path: Path) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreUnavailable(f"SQLite file {path} is locked by another process ({text}); retrying later")
    if "unable to open" in text or "disk I/O" in text or "readonly" in text:
        return StoreUnavailable(f"SQLite file {path} cannot be written ({text}); check the folder and disk")
    return StoreError(f"SQLite file {path}: {text}")
