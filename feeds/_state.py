"""What feeds remember across restarts: cursors, health, and the drop folders' ledger.

One SQLite file (``feed_state.url``, default beside the SQLite store as
``<db>.feeds``). A feed moves its cursor only after what it fetched is
committed to the store, so a crash between the two makes the next run fetch
the same data again, and the store's keys (or a prediction's replacement)
make that harmless: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floodwatch import migrations
from floodwatch.errors import ConfigError, FeedError

if TYPE_CHECKING:
    from floodwatch.settings import Settings

# The feeds state file's schema versions, oldest first (floodwatch/migrations.py): append a
# step to change it, never edit one that has shipped.
_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS feed_cursor (
    feed_id    TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_s  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feed_health (
    feed_id    TEXT PRIMARY KEY,
    health     TEXT NOT NULL,
    updated_s  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS drop_file (
    feed_id    TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    ts_s       REAL NOT NULL,
    PRIMARY KEY (feed_id, sha256)
);
"""
MIGRATIONS: list[migrations.Step] = [
    _SCHEMA_1,  # 1: cursors, health and the drop folders' ledger
]


def feed_state_path(settings: Settings) -> Path:
    """``feed_state.url``, else beside the SQLite store (``var/floodwatch.db.feeds``), else var/feeds.db."""
    url = settings.feed_state.url
    if url:
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ConfigError(f"feed_state.url {url!r} should look like sqlite:///var/feeds.db")
        return Path(settings.in_data_dir(url)[len("sqlite:///"):])
    if settings.store.url.startswith("sqlite:///"):
        return Path(settings.store.url[len("sqlite:///"):] + ".feeds")
    return settings.data_dir / "var" / "feeds.db"


class FeedState:
    """Cursors, health and the drop-folder ledger in one SQLite file; thread-safe."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a cursor that says "stored" must survive power loss as the store's data does.
            self._db.execute("PRAGMA synchronous=FULL")
            migrations.migrate(self._db, MIGRATIONS, name=str(self.path))
        except sqlite3.Error as exc:
            raise FeedError("state_unavailable", f"cannot open the feeds state file {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise FeedError("state_unavailable", f"feeds state file {self.path}: {exc}; check the disk") from exc

    # ------------------------------------------------------------------ cursors
    def cursor(self, feed_id: str) -> Any:
        rows = self._run("SELECT cursor FROM feed_cursor WHERE feed_id = ?", (feed_id,))
        return json.loads(rows[0][0]) if rows else None

    def set_cursor(self, feed_id: str, cursor: Any) -> None:
        self._run("INSERT OR REPLACE INTO feed_cursor (feed_id, cursor, updated_s) VALUES (?,?,?)",
                  (feed_id, json.dumps(cursor, sort_keys=True), time.time()))

    # ------------------------------------------------------------------- health
    def health(self, feed_id: str) -> dict[str, Any] | None:
        rows = self._run("SELECT health FROM feed_health WHERE feed_id = ?", (feed_id,))
        return json.loads(rows[0][0]) if rows else None

    def set_health(self, feed_id: str, health: dict[str, Any]) -> None:
        self._run("INSERT OR REPLACE INTO feed_health (feed_id, health, updated_s) VALUES (?,?,?)",
                  (feed_id, json.dumps(health, ensure_ascii=False, sort_keys=True), time.time()))

    # ------------------------------------------------------------ drop folders
    def drop_file(self, feed_id: str, sha256: str) -> dict[str, Any] | None:
        rows = self._run("SELECT name, state, detail, ts_s FROM drop_file WHERE feed_id = ? AND sha256 = ?",
                         (feed_id, sha256))
        if not rows:
            return None
        name, state, detail, ts_s = rows[0]
        return {"name": name, "state": state, "detail": json.loads(detail), "ts_s": ts_s}

    def record_drop_file(self, feed_id: str, sha256: str, name: str, state: str, detail: dict[str, Any],
                         ts_s: float) -> None:
        self._run("INSERT OR REPLACE INTO drop_file (feed_id, sha256, name, state, detail, ts_s) VALUES (?,?,?,?,?,?)",
                  (feed_id, sha256, name, state, json.dumps(detail, ensure_ascii=False, sort_keys=True), ts_s))
