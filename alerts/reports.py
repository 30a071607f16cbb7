"""Residents' flood reports: where, how deep, an optional photo; kept as long as the privacy notice says.

Reports are what residents see, not measurements: they go to officers (the
page's map and list, to verify or hide) and never to the rules, the
forecast or an alert. This module keeps them (SQLite tables in the alert
state file, photos as files) and holds the pure checks: is a place inside
the municipality, which zone and gauge is it near, is a file a photo.

Times: ``ts_s`` is the clock's time (what the page shows, accelerated in the
demo); ``wall_s`` is real time, which retention and rate limits follow
(privacy promises and spam are about real days and hours).
"""

from __future__ import annotations

import io
import logging
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floodwatch.settings import Settings

from floodwatch import migrations
from floodwatch.alerts import _db
from floodwatch.alerts._db import sqlite_path

log = logging.getLogger("floodwatch.alerts.reports")

DEPTHS = ("ankle", "knee", "waist", "road_closed")
DEPTH_TH = {"ankle": "ระดับข้อเท้า", "knee": "ระดับเข่า", "waist": "ระดับเอว", "road_closed": "ถนนปิด รถผ่านไม่ได้"}
DEPTH_EN = {"ankle": "ankle deep", "knee": "knee deep", "waist": "waist deep", "road_closed": "road closed"}
# rough water depth in metres, for the map's colour only (never for a decision)
DEPTH_M = {"ankle": 0.1, "knee": 0.5, "waist": 1.0, "road_closed": 0.3}
STATUSES = ("new", "verified", "hidden")
CONSENT_VERSION = "2026-1"
PHOTO_MAX_SIDE_PX = 1600
EARTH_RADIUS_M = 6_371_000.0

# ============================================================================
# SQLite tables of this module, in the alert state file (settings.alerts.state_url).
# Kept together here so they can become one numbered migration.
# ============================================================================
# The tables live in the alert state file: version 3 of alerts/_db.py MIGRATIONS.
REPORTS_SCHEMA = _db.REPORTS_TABLES


# ------------------------------------------------------------ pure helpers
def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine; ample for a few kilometres)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Place:
    """Where a report is, in the municipality's terms."""

    inside: bool
    distance_to_site_m: float       # to the nearest zone centre or gauge
    zone_id: str | None             # the nearest zone centre (None when no zone has a centre)
    station_id: str | None          # the nearest level gauge
    station_distance_m: float | None


def locate(settings: Settings, lat: float, lon: float) -> Place:
    """Is (``lat``, ``lon``) within ``reports.max_distance_km`` of a zone centre or gauge; what is near it."""
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0 and math.isfinite(lat) and math.isfinite(lon)):
        return Place(False, math.inf, None, None, None)
    anchors = [(z.centre_lat, z.centre_lon) for z in settings.zones if z.centre_lat is not None
               and z.centre_lon is not None] + [(s.lat, s.lon) for s in settings.stations]
    nearest = min((distance_m(lat, lon, a, b) for a, b in anchors), default=math.inf)
    zones = [(distance_m(lat, lon, z.centre_lat, z.centre_lon), z.id) for z in settings.zones
             if z.centre_lat is not None and z.centre_lon is not None]
    gauges = [(distance_m(lat, lon, s.lat, s.lon), s.id) for s in settings.level_stations]
    zone = min(zones)[1] if zones else None
    station, station_d = (min(gauges)[1], min(gauges)[0]) if gauges else (None, None)
    return Place(nearest <= settings.reports.max_distance_km * 1000.0, nearest, zone, station, station_d)


class NotAPhoto(ValueError):
    """The bytes are not a JPEG or PNG photo (``reason`` says what they are instead)."""


def clean_photo(data: bytes, max_side_px: int = PHOTO_MAX_SIDE_PX) -> bytes:
    """A JPEG of the photo without its metadata (EXIF holds the phone's GPS and model), at most ``max_side_px``.

    Raises
    ------
    NotAPhoto
        When the bytes do not decode as a JPEG or PNG image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            probe.verify()
        if kind not in ("JPEG", "PNG"):
            raise NotAPhoto(f"a {kind} file, not a JPEG or PNG photo")
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            image.thumbnail((max_side_px, max_side_px))
            out = io.BytesIO()
            image.save(out, "JPEG", quality=82, optimize=True)  # a new file: no EXIF is copied
            return out.getvalue()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise NotAPhoto(f"not an image ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise NotAPhoto(f"an image too large to open ({exc})") from exc


def report_json(row: dict[str, Any], near_gauge_m: float, *, officer: bool) -> dict[str, Any]:
    """A report as the page's API shows it; the resident's id never leaves the server."""
    near = row["station_id"] if row["station_distance_m"] is not None and \
        row["station_distance_m"] <= near_gauge_m else None
    out = {
        "id": row["id"], "ts_s": row["ts_s"], "lat": row["lat"], "lon": row["lon"], "depth": row["depth"],
        "depth_th": DEPTH_TH[row["depth"]], "depth_en": DEPTH_EN[row["depth"]], "depth_m": DEPTH_M[row["depth"]],
        "zone": row["zone_id"], "status": row["status"], "near_station": near,
        "station_distance_m": row["station_distance_m"], "has_photo": bool(row["photo"]),
        "address": row["address"],
    }
    if officer:
        out.update(moderated_by=row["moderated_by"], moderated_s=row["moderated_s"],
                   anonymised=row["user_id"] is None)
    return out


# ------------------------------------------------------------------ storage
_COLUMNS = ("id", "user_id", "ts_s", "wall_s", "lat", "lon", "address", "depth", "zone_id", "station_id",
            "station_distance_m", "photo", "photo_bytes", "status", "moderated_by", "moderated_s")


class ReportBook:
    """Reports, drafts, consent and rate-limit steps in the alert state file; photos in ``photo_dir``.

    Thread-safe: in the engine it shares :class:`alerts._db.AlertDb`'s connection and lock (so a
    webhook event's report commits with the event's seen-mark); a command (privacy purge) opens
    its own.
    """

    def __init__(self, settings: Settings, wall_clock: Callable[[], float] = time.time,
                 shared: tuple[sqlite3.Connection, threading.RLock] | None = None) -> None:
        """``shared`` is the alert state's own (connection, lock): inside the engine the book must
        write on that connection, so a webhook event's report and its seen-mark are one commit
        (a second connection to the same file would wait on the webhook's own write lock)."""
        self.cfg = settings.reports
        self.photo_dir = Path(self.cfg.photo_dir)
        self.wall_clock = wall_clock
        self._owns_conn = shared is None
        if shared is not None:
            self._conn, self._lock = shared
        else:
            path = sqlite_path(settings.alerts.state_url)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = threading.RLock()
            self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a resident was thanked for it: it must be on disk
            self._conn.execute("PRAGMA busy_timeout=5000")
            # a file older than the reports gets their tables (a no-op where the engine already did)
            migrations.migrate(self._conn, _db.MIGRATIONS, name=str(path))

    @contextmanager
    def _atomic(self) -> Iterator[sqlite3.Cursor]:
        """Statements that stand or fall together; a savepoint, so it nests inside the webhook's
        transaction (and is a transaction of its own outside one)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("SAVEPOINT report_book")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK TO report_book")
                cur.execute("RELEASE report_book")
                raise
            cur.execute("RELEASE report_book")

    def close(self) -> None:
        if self._owns_conn:
            with self._lock:
                self._conn.close()

    # --------------------------------------------------------------- photos
    def save_photo(self, jpeg: bytes) -> str:
        """Write a cleaned photo under a random name; returns the file name."""
        self.photo_dir.mkdir(parents=True, exist_ok=True)
        name = secrets.token_hex(12) + ".jpg"
        tmp = self.photo_dir / (name + ".part")
        tmp.write_bytes(jpeg)
        tmp.replace(self.photo_dir / name)
        return name

    def photo_path(self, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise ValueError(f"not a photo file name: {name!r}")
        return self.photo_dir / name

    def _delete_photo(self, name: str | None) -> int:
        if not name:
            return 0
        try:
            self.photo_path(name).unlink()
            return 1
        except FileNotFoundError:
            return 0

    # -------------------------------------------------------------- consent
    def consented(self, user_id: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT version FROM report_consent WHERE user_id = ?", (user_id,)).fetchone()
        return row is not None and row[0] == CONSENT_VERSION

    def agree(self, user_id: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO report_consent (user_id, version, agreed_wall_s)"
                               " VALUES (?, ?, ?)", (user_id, CONSENT_VERSION, self.wall_clock()))

    # ---------------------------------------------------------- rate limits
    def step(self, user_id: str, kind: str) -> None:
        with self._lock:
            self._conn.execute("INSERT INTO report_steps (user_id, wall_s, kind) VALUES (?, ?, ?)",
                               (user_id, self.wall_clock(), kind))

    def recent(self, user_id: str, kind: str | None = None, window_s: float = 3600.0) -> list[float]:
        """Real times of this resident's steps (of ``kind``) within the last ``window_s``, oldest first."""
        since = self.wall_clock() - window_s
        with self._lock:
            if kind is None:
                rows = self._conn.execute("SELECT wall_s FROM report_steps WHERE user_id = ? AND wall_s > ?"
                                          " ORDER BY wall_s", (user_id, since)).fetchall()
            else:
                rows = self._conn.execute("SELECT wall_s FROM report_steps WHERE user_id = ? AND kind = ?"
                                          " AND wall_s > ? ORDER BY wall_s", (user_id, kind, since)).fetchall()
        return [r[0] for r in rows]

    # ---------------------------------------------------------------- drafts
    def draft(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT lat, lon, address, photo, photo_bytes, started_wall_s, updated_wall_s"
                                     " FROM report_drafts WHERE user_id = ?", (user_id,)).fetchone()
        if row is None:
            return None
        draft = dict(zip(("lat", "lon", "address", "photo", "photo_bytes", "started_wall_s", "updated_wall_s"), row,
                         strict=True))
        if self.wall_clock() - draft["updated_wall_s"] > self.cfg.draft_timeout_s:
            self.drop_draft(user_id)
            return None
        return draft

    def set_location(self, user_id: str, lat: float, lon: float, address: str | None) -> None:
        now = self.wall_clock()
        with self._lock:
            self._conn.execute(
                "INSERT INTO report_drafts (user_id, lat, lon, address, started_wall_s, updated_wall_s)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET lat = excluded.lat,"
                " lon = excluded.lon, address = excluded.address, updated_wall_s = excluded.updated_wall_s",
                (user_id, lat, lon, address, now, now))

    def set_photo(self, user_id: str, name: str, size: int) -> None:
        """Attach a saved photo to the resident's draft; a photo it had before is deleted."""
        with self._lock:
            old = self._conn.execute("SELECT photo FROM report_drafts WHERE user_id = ?", (user_id,)).fetchone()
            self._conn.execute("UPDATE report_drafts SET photo = ?, photo_bytes = ?, updated_wall_s = ?"
                               " WHERE user_id = ?", (name, size, self.wall_clock(), user_id))
        if old is not None:
            self._delete_photo(old[0])

    def drop_draft(self, user_id: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT photo FROM report_drafts WHERE user_id = ?", (user_id,)).fetchone()
            self._conn.execute("DELETE FROM report_drafts WHERE user_id = ?", (user_id,))
        return self._delete_photo(row[0]) if row else 0

    # --------------------------------------------------------------- reports
    def finish(self, user_id: str, depth: str, ts_s: float, settings: Settings) -> dict[str, Any] | None:
        """Turn the resident's draft (which has a location) into a report; None when there is none."""
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, got {depth!r}")
        draft = self.draft(user_id)
        if draft is None or draft["lat"] is None:
            return None
        place = locate(settings, draft["lat"], draft["lon"])
        report_id = "R" + secrets.token_hex(4).upper()
        row = dict(id=report_id, user_id=user_id, ts_s=ts_s, wall_s=self.wall_clock(), lat=draft["lat"],
                   lon=draft["lon"], address=draft["address"], depth=depth, zone_id=place.zone_id,
                   station_id=place.station_id, station_distance_m=place.station_distance_m, photo=draft["photo"],
                   photo_bytes=draft["photo_bytes"], status="new", moderated_by=None, moderated_s=None)
        with self._atomic() as cur:
            cur.execute(f"INSERT INTO reports ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                        tuple(row[c] for c in _COLUMNS))
            cur.execute("DELETE FROM report_drafts WHERE user_id = ?", (user_id,))  # the photo now belongs to it
            cur.execute("INSERT INTO report_steps (user_id, wall_s, kind) VALUES (?, ?, 'report')",
                        (user_id, row["wall_s"]))
        return row

    def get(self, report_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM reports WHERE id = ?",
                                     (report_id,)).fetchone()
        return None if row is None else dict(zip(_COLUMNS, row, strict=True))

    def find(self, since_s: float, *, statuses: tuple[str, ...] = STATUSES, limit: int = 500) -> list[dict[str, Any]]:
        """Reports made at or after clock time ``since_s``, newest first."""
        marks = ", ".join("?" * len(statuses))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM reports WHERE ts_s >= ? AND status IN ({marks})"
                " ORDER BY ts_s DESC, rowid DESC LIMIT ?", (since_s, *statuses, limit)).fetchall()
        return [dict(zip(_COLUMNS, r, strict=True)) for r in rows]

    def moderate(self, report_id: str, status: str, by: str, now_s: float) -> dict[str, Any] | None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self._lock:
            cur = self._conn.execute("UPDATE reports SET status = ?, moderated_by = ?, moderated_s = ? WHERE id = ?",
                                     (status, by, now_s, report_id))
        return self.get(report_id) if cur.rowcount else None

    # ---------------------------------------------------------- housekeeping
    def housekeeping(self) -> dict[str, int]:
        """Anonymise reports past retention (photo deleted, resident unlinked), drop stale drafts and steps."""
        now = self.wall_clock()
        cutoff = now - self.cfg.retention_days * 86400.0
        with self._lock:
            old = self._conn.execute("SELECT id, photo FROM reports WHERE wall_s < ? AND (user_id IS NOT NULL"
                                     " OR photo IS NOT NULL)", (cutoff,)).fetchall()
            self._conn.execute("UPDATE reports SET user_id = NULL, photo = NULL, photo_bytes = NULL WHERE wall_s < ?",
                               (cutoff,))
            stale = self._conn.execute("SELECT user_id, photo FROM report_drafts WHERE updated_wall_s < ?",
                                       (now - self.cfg.draft_timeout_s,)).fetchall()
            self._conn.execute("DELETE FROM report_drafts WHERE updated_wall_s < ?", (now - self.cfg.draft_timeout_s,))
            self._conn.execute("DELETE FROM report_steps WHERE wall_s < ?", (now - 3600.0,))
        photos = sum(self._delete_photo(p) for _, p in old) + sum(self._delete_photo(p) for _, p in stale)
        if old or stale:
            log.info("event=reports_housekeeping anonymised=%d drafts_dropped=%d photos_deleted=%d",
                     len(old), len(stale), photos)
        return {"anonymised": len(old), "drafts_dropped": len(stale), "photos_deleted": photos}

    def purge_user(self, user_id: str) -> dict[str, int]:
        """Everything this module holds about one resident: reports, photos, draft, consent, steps."""
        with self._atomic() as cur:
            rows = cur.execute("SELECT photo FROM reports WHERE user_id = ?", (user_id,)).fetchall()
            draft = cur.execute("SELECT photo FROM report_drafts WHERE user_id = ?", (user_id,)).fetchone()
            reports = cur.execute("DELETE FROM reports WHERE user_id = ?", (user_id,)).rowcount
            drafts = cur.execute("DELETE FROM report_drafts WHERE user_id = ?", (user_id,)).rowcount
            consent = cur.execute("DELETE FROM report_consent WHERE user_id = ?", (user_id,)).rowcount
            steps = cur.execute("DELETE FROM report_steps WHERE user_id = ?", (user_id,)).rowcount
        photos = sum(self._delete_photo(r[0]) for r in rows) + (self._delete_photo(draft[0]) if draft else 0)
        return {"reports": reports, "photos": photos, "report_drafts": drafts, "consent": consent,
                "rate_limit_steps": steps}
