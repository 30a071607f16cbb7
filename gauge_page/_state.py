"""The page's own SQLite state: officers, sessions, the audit log, maintenance flags.

Passwords are hashed with scrypt (``hashlib.scrypt``, RFC 7914) and a random
salt; session tokens are random and only their SHA-256 is stored, so a copy
of the database does not let anyone log in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floodwatch import migrations
from floodwatch.errors import ConfigError

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_MIN_PASSWORD_CHARS = 8

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS officers (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    expires_wall_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_s REAL NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS acknowledgements (
    alert_id TEXT PRIMARY KEY,
    ts_s REAL NOT NULL,
    username TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS maintenance (
    station_id TEXT PRIMARY KEY,
    since_s REAL NOT NULL,
    username TEXT NOT NULL,
    note TEXT NOT NULL
);
"""

# The page state file's schema versions, oldest first (floodwatch/migrations.py); append to change.
MIGRATIONS: list[migrations.Step] = [
    _SCHEMA_1,  # 1: release 0.1.0's tables
]


def hash_password(password: str) -> str:
    """'scrypt$N$r$p$salt$hash' (base64) for ``password``; store this, never the password."""
    if len(password) < _MIN_PASSWORD_CHARS:
        raise ValueError(f"an officer password needs at least {_MIN_PASSWORD_CHARS} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash from :func:`hash_password` (constant-time compare)."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def sqlite_path(url: str) -> Path:
    """'sqlite:///var/page.db' -> var/page.db (relative), 'sqlite:////abs/page.db' -> /abs/page.db."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(f"page.state_url {url!r} should look like sqlite:///var/page.db")
    return Path(url[len(prefix):])


@dataclass(frozen=True)
class Session:
    username: str
    display_name: str
    csrf_token: str


class PageState:
    """Officers, sessions, audit log and maintenance flags in one SQLite file."""

    def __init__(self, path: Path | str, *, session_max_age_s: float = 12 * 3600.0) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        migrations.migrate(self._db, MIGRATIONS, name=str(path))
        self._session_max_age_s = session_max_age_s
        self._extra_officers: dict[str, str] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ officers
    def use_configured_officers(self, officers: dict[str, str]) -> None:
        """Officers from settings (username -> password hash) in addition to the table."""
        for username, stored in officers.items():
            if not stored.startswith("scrypt$"):
                raise ConfigError(
                    f"page.officers[{username!r}] is not a password hash; add officers with "
                    "floodwatch officer add USERNAME instead (or make a hash: floodwatch officer hash)"
                )
        self._extra_officers = dict(officers)

    def add_officer(self, username: str, password: str, *, display_name: str | None = None, now_s: float) -> None:
        if not username or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"officer username {username!r} should be letters, digits, '.', '-' or '_'")
        stored = hash_password(password)
        self._query(
            "INSERT INTO officers(username, display_name, password_hash, created_s) VALUES (?,?,?,?) "
            "ON CONFLICT(username) DO UPDATE SET password_hash=excluded.password_hash, "
            "display_name=excluded.display_name",
            (username, display_name or username, stored, now_s),
        )

    def officers(self) -> list[dict[str, Any]]:
        """Every officer in the table: username, display name, created time (never the hash)."""
        rows = self._query("SELECT username, display_name, created_s FROM officers ORDER BY username")
        return [{"username": r[0], "display_name": r[1], "created_s": r[2]} for r in rows]

    def has_officer(self, username: str) -> bool:
        return bool(self._query("SELECT 1 FROM officers WHERE username=?", (username,)))

    def change_password(self, username: str, password: str) -> bool:
        """Set a new password and end the officer's sessions; False when there is no such officer."""
        stored = hash_password(password)
        with self._lock:
            changed = self._db.execute("UPDATE officers SET password_hash=? WHERE username=?",
                                       (stored, username)).rowcount
            if changed:
                self._db.execute("DELETE FROM sessions WHERE username=?", (username,))
        return bool(changed)

    def remove_officer(self, username: str) -> bool:
        """Remove an officer and end their sessions (the audit log keeps what they did); False when unknown."""
        with self._lock:
            removed = self._db.execute("DELETE FROM officers WHERE username=?", (username,)).rowcount
            self._db.execute("DELETE FROM sessions WHERE username=?", (username,))
        return bool(removed)

    def authenticate(self, username: str, password: str) -> str | None:
        """The officer's display name when the password is right, else None."""
        rows = self._query("SELECT display_name, password_hash FROM officers WHERE username=?", (username,))
        if rows:
            return rows[0][0] if verify_password(password, rows[0][1]) else None
        if username in self._extra_officers:
            return username if verify_password(password, self._extra_officers[username]) else None
        # Spend the same time on unknown names so timing does not reveal who exists.
        verify_password(password, _DUMMY_HASH)
        return None

    # ------------------------------------------------------------------ sessions
    # Session expiry uses the wall clock on purpose: it protects a real login
    # in real time even when the demo runs simulated time much faster.
    def create_session(self, username: str, display_name: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        self._query(
            "INSERT INTO sessions(token_sha256, username, csrf_token, expires_wall_s) VALUES (?,?,?,?)",
            (_sha256(token), username, csrf, time.time() + self._session_max_age_s),
        )
        self._query("DELETE FROM sessions WHERE expires_wall_s < ?", (time.time(),))
        return token, Session(username, display_name, csrf)

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        rows = self._query(
            "SELECT s.username, COALESCE(o.display_name, s.username), s.csrf_token, s.expires_wall_s "
            "FROM sessions s LEFT JOIN officers o ON o.username = s.username WHERE s.token_sha256=?",
            (_sha256(token),),
        )
        if not rows or rows[0][3] < time.time():
            return None
        return Session(rows[0][0], rows[0][1], rows[0][2])

    def end_session(self, token: str | None) -> None:
        if token:
            self._query("DELETE FROM sessions WHERE token_sha256=?", (_sha256(token),))

    # --------------------------------------------------------------------- audit
    def record(self, *, ts_s: float, username: str, action: str, target: str, detail: dict[str, Any]) -> None:
        self._query(
            "INSERT INTO audit(ts_s, username, action, target, detail) VALUES (?,?,?,?,?)",
            (ts_s, username, action, target, json.dumps(detail, ensure_ascii=False, sort_keys=True)),
        )

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT id, ts_s, username, action, target, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [
            {"id": r[0], "ts_s": r[1], "username": r[2], "action": r[3], "target": r[4], "detail": json.loads(r[5])}
            for r in rows
        ]

    # ---------------------------------------------------------- acknowledgements
    def acknowledge(self, alert_id: str, *, ts_s: float, username: str) -> bool:
        """Record who acknowledged an alert first; False when it already was."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO acknowledgements(alert_id, ts_s, username) VALUES (?,?,?)",
                (alert_id, ts_s, username),
            )
            return cur.rowcount == 1

    def acknowledgements(self) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT alert_id, ts_s, username FROM acknowledgements")
        return {r[0]: {"acknowledged_s": r[1], "acknowledged_by": r[2]} for r in rows}

    # --------------------------------------------------------------- maintenance
    def set_maintenance(self, station_id: str, on: bool, *, now_s: float, username: str, note: str = "") -> None:
        if on:
            self._query(
                "INSERT OR REPLACE INTO maintenance(station_id, since_s, username, note) VALUES (?,?,?,?)",
                (station_id, now_s, username, note),
            )
        else:
            self._query("DELETE FROM maintenance WHERE station_id=?", (station_id,))

    def maintenance(self) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT station_id, since_s, username, note FROM maintenance")
        return {r[0]: {"since_s": r[1], "username": r[2], "note": r[3]} for r in rows}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_DUMMY_HASH = (
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)
