"""The alert engine's durable state: rule states, decisions, the LINE outbox, subscribers.

One SQLite file (``settings.alerts.state_url``). A decision, the new rule
state and every outbox chunk it creates (each with its ``X-Line-Retry-Key``)
are written in ONE transaction before anything is sent, so a restart neither
repeats nor forgets an alert: pending chunks are sent again with the same key
and LINE answers 409 for the ones it already accepted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Iterable

from floodwatch import migrations
from floodwatch.errors import ConfigError

MULTICAST_MAX_RECIPIENTS = 500

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS rule_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_events (event_id TEXT PRIMARY KEY, seen_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    lang TEXT NOT NULL DEFAULT 'th',
    followed INTEGER NOT NULL DEFAULT 1,
    low_water INTEGER NOT NULL DEFAULT 0,
    tide_daily INTEGER NOT NULL DEFAULT 0,
    updated_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    user_id TEXT NOT NULL,
    zone_id TEXT NOT NULL,
    created_s REAL NOT NULL,
    PRIMARY KEY (user_id, zone_id)
);
CREATE INDEX IF NOT EXISTS subscriptions_zone_user ON subscriptions (zone_id, user_id);
CREATE INDEX IF NOT EXISTS users_not_thai ON users (lang) WHERE lang != 'th';
CREATE TABLE IF NOT EXISTS officers (user_id TEXT PRIMARY KEY, added_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_s REAL NOT NULL,
    kind TEXT NOT NULL,
    audience TEXT NOT NULL,
    zone_id TEXT,
    station_id TEXT,
    level INTEGER NOT NULL,
    text TEXT NOT NULL,
    recipients INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id INTEGER NOT NULL REFERENCES decisions (id),
    chunk INTEGER NOT NULL,
    retry_key TEXT NOT NULL UNIQUE,
    user_ids TEXT NOT NULL,
    recipients INTEGER NOT NULL DEFAULT 0,
    messages TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed | superseded | expired
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    created_s REAL NOT NULL,
    -- real (wall-clock) time of creation: LINE honours a retry key for 24 h of real time
    created_wall_s REAL NOT NULL DEFAULT 0,
    done_s REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, priority DESC, id);
"""


def _add_delivery_columns(conn: sqlite3.Connection) -> None:
    """Columns state files from before release 0.1.0 lack (step 1 adopts their tables as they are)."""
    wanted = {
        "decisions": {"delivered": "INTEGER NOT NULL DEFAULT 0", "failed": "INTEGER NOT NULL DEFAULT 0"},
        "outbox": {"recipients": "INTEGER NOT NULL DEFAULT 0", "created_wall_s": "REAL NOT NULL DEFAULT 0"},
    }
    for table, columns in wanted.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


# The alert state file's schema versions, oldest first (floodwatch/migrations.py). To change the
# schema, append a step; never edit one that has shipped.
# Residents' flood reports, their drafts, consent and rate-limit steps (alerts/reports.py).
REPORTS_TABLES = """
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,                 -- 'R' + 8 hex digits: what officers and residents quote
    user_id TEXT,                        -- the reporting resident; NULL once anonymised (retention)
    ts_s REAL NOT NULL,                  -- clock time of the report
    wall_s REAL NOT NULL,                -- real time of the report (retention follows it)
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    address TEXT,                        -- what LINE's location picker named the place
    depth TEXT NOT NULL,                 -- ankle | knee | waist | road_closed
    zone_id TEXT,                        -- the nearest zone centre
    station_id TEXT,                     -- the nearest level gauge
    station_distance_m REAL,
    photo TEXT,                          -- file name in reports.photo_dir; NULL: none, or deleted
    photo_bytes INTEGER,
    status TEXT NOT NULL DEFAULT 'new',  -- new | verified | hidden
    moderated_by TEXT,
    moderated_s REAL
);
CREATE INDEX IF NOT EXISTS reports_time ON reports (ts_s);
CREATE INDEX IF NOT EXISTS reports_user ON reports (user_id);
CREATE TABLE IF NOT EXISTS report_drafts (
    user_id TEXT PRIMARY KEY,            -- one unfinished report per resident
    lat REAL, lon REAL, address TEXT,
    photo TEXT, photo_bytes INTEGER,
    started_wall_s REAL NOT NULL,
    updated_wall_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS report_consent (
    user_id TEXT PRIMARY KEY,            -- residents who agreed to the privacy notice (declines are not kept)
    version TEXT NOT NULL,
    agreed_wall_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS report_steps (
    user_id TEXT NOT NULL,               -- report steps of the last hour, for the rate limit
    wall_s REAL NOT NULL,
    kind TEXT NOT NULL                   -- start | location | photo | report
);
CREATE INDEX IF NOT EXISTS report_steps_user ON report_steps (user_id, wall_s);
"""

# Village loudspeaker commands and their acknowledgements (alerts/loudspeaker.py).
LOUDSPEAKER_TABLES = """
CREATE TABLE IF NOT EXISTS loudspeaker_commands (
    message_id TEXT PRIMARY KEY,          -- the command's id; controllers play each id once
    controller_id TEXT NOT NULL,
    decision_id INTEGER,                  -- the alert decision that caused it
    zone_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,                -- the command JSON (without "attempt")
    status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | undelivered | acknowledged | failed | superseded
    attempts INTEGER NOT NULL DEFAULT 0,
    created_s REAL NOT NULL,              -- clock time of the decision
    created_wall_s REAL NOT NULL,
    last_sent_wall_s REAL,
    undelivered_wall_s REAL,              -- when officers were first shown it as undelivered
    acked_wall_s REAL,
    reply_status TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS loudspeaker_open ON loudspeaker_commands (status, controller_id);
"""

MIGRATIONS: list[migrations.Step] = [
    _SCHEMA_1,  # 1: release 0.1.0's tables
    _add_delivery_columns,  # 2: delivery counts and wall-clock creation time in files older than 0.1.0
    REPORTS_TABLES,  # 3: residents' flood reports
    LOUDSPEAKER_TABLES,  # 4: village loudspeaker commands
]


def sqlite_path(url: str) -> Path:
    """``sqlite:///var/alerts.db`` -> var/alerts.db (relative to the working directory);
    ``sqlite:////abs/alerts.db`` -> /abs/alerts.db."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(
            f"alerts.state_url {url!r} is not a SQLite URL; use sqlite:///var/alerts.db "
            "(relative) or sqlite:////absolute/path.db"
        )
    return Path(url[len(prefix):])


@dataclass(frozen=True, slots=True)
class OutboxChunk:
    id: int
    decision_id: int
    chunk: int
    retry_key: str
    user_ids: list[str]
    messages: list[dict[str, Any]]
    priority: int
    attempts: int
    created_wall_s: float = 0.0  # real time it was queued (0 in files from before 0.1.0)


class AlertDb:
    """Thread-safe access to the alert state file (one connection, one lock)."""

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # A decision with recipients must survive a power cut before anything is sent (FULL:
        # the write-ahead log is fsynced at its commit). Rule-state updates without anything
        # to send, and delivery bookkeeping, commit with NORMAL (no fsync): a process crash
        # loses nothing, a power cut at most those last commits, see _set_sync.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._sync_full = True
        self._conn.execute("PRAGMA busy_timeout=5000")
        migrations.migrate(self._conn, MIGRATIONS, name=str(path))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def shared_connection(self) -> tuple[sqlite3.Connection, threading.RLock]:
        """The state file's connection and its lock, for a module whose tables live in this file and
        whose writes must join :meth:`transaction` (the residents' report book)."""
        return self._conn, self._lock

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable step: every statement of this thread inside the block commits together, fsynced.

        Used by the webhook so that an event's effects and its seen-mark are
        one commit: a crash before the commit leaves neither (LINE redelivers
        and the event is handled then), after it both. The lock is held for
        the whole block, so keep network calls out of it. Methods that open
        their own transaction (:meth:`record`, :meth:`mark_done`,
        :meth:`subscribe_many`) must not be called inside.
        """
        with self._lock:
            self._set_sync(True)
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _set_sync(self, full: bool) -> None:
        """Choose whether the next commit fsyncs (FULL) or not (NORMAL); call holding the lock.

        In WAL mode a NORMAL commit is safe against a crash of this process
        (the OS has the log) but not against a power cut, which can lose the
        NORMAL commits made since the last FULL one. The log is sequential, so
        the next FULL commit makes every earlier commit durable too: what a
        power cut can lose is only a suffix of rule-state updates and delivery
        marks, never a decision that something was sent for. A lost state
        update is re-derived from the next reading; a lost delivery mark means
        the chunk is sent again with the same retry key and LINE answers 409.
        """
        if full != self._sync_full:
            self._conn.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            self._sync_full = full

    # ----------------------------------------------------------- rule state
    def load_states(self) -> dict[str, Any]:
        with self._lock:
            rows = self._conn.execute("SELECT key, value FROM rule_state").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def record(
        self,
        states: dict[str, Any],
        decisions: Iterable[tuple[dict[str, Any], list[tuple[list[str], list[dict[str, Any]]]], int]],
        now_s: float,
    ) -> list[int]:
        """Write new rule states and decisions with their outbox chunks in one transaction.

        ``decisions``: (decision row, groups of (recipient user ids, LINE messages), priority);
        each group is cut into chunks of at most 500 recipients, each with its own retry key.
        Returns the decision ids.
        """
        return self.record_superseding(states, decisions, now_s)[0]

    def record_superseding(
        self,
        states: dict[str, Any],
        decisions: Iterable[tuple[dict[str, Any], list[tuple[list[str], list[dict[str, Any]]]], int]],
        now_s: float,
        supersede: dict[int, tuple[str, int]] | None = None,
        also: Callable[[sqlite3.Cursor, list[int]], None] | None = None,
    ) -> tuple[list[int], int]:
        """:meth:`record`, and in the same transaction :meth:`supersede` for some decisions.

        ``supersede``: {index in ``decisions``: (zone id, highest level to drop)}: never-attempted
        resident chunks of that zone's older decisions up to that level are dropped by the same
        commit that creates the new decision (one fsync, and no moment where both are pending).
        ``also(cursor, decision_ids)`` writes more rows in the same transaction (the loudspeaker
        commands a decision causes), so they are kept or lost together with it.
        Returns (decision ids, chunks superseded).
        """
        decisions = list(decisions)
        ids: list[int] = []
        dropped = 0
        # fsync at commit only when something will be sent (or an officer/user action is kept):
        # per-reading rule-state updates are the bulk of the commits and need no fsync.
        durable = any(user_ids for _, groups, _ in decisions for user_ids, _ in groups) or any(
            not key.startswith(("station:", "zone:", "health:")) for key in states)
        with self._lock:
            self._set_sync(durable)
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for key, value in states.items():
                    cur.execute("INSERT OR REPLACE INTO rule_state (key, value) VALUES (?, ?)",
                                (key, json.dumps(value, ensure_ascii=False)))
                for row, groups, priority in decisions:
                    recipients = sum(len(user_ids) for user_ids, _ in groups)
                    cur.execute(
                        "INSERT INTO decisions (ts_s, kind, audience, zone_id, station_id, level, text, recipients)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (row["ts_s"], row["kind"], row["audience"], row.get("zone_id"), row.get("station_id"),
                         int(row["level"]), row["text"], recipients),
                    )
                    decision_id = int(cur.lastrowid)
                    ids.append(decision_id)
                    n = 0
                    for user_ids, messages in groups:
                        payload = json.dumps(messages, ensure_ascii=False)
                        for start in range(0, len(user_ids), MULTICAST_MAX_RECIPIENTS):
                            part = user_ids[start:start + MULTICAST_MAX_RECIPIENTS]
                            cur.execute(
                                "INSERT INTO outbox (decision_id, chunk, retry_key, user_ids, recipients, messages,"
                                " priority, created_s, created_wall_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (decision_id, n, str(uuid.uuid4()), json.dumps(part), len(part), payload, priority,
                                 now_s, time.time()),
                            )
                            n += 1
                for index, (zone_id, max_level) in (supersede or {}).items():
                    dropped += self._supersede(cur, zone_id, max_level, ids[index])
                if also is not None:
                    also(cur, ids)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return ids, dropped

    @staticmethod
    def _supersede(cur: sqlite3.Cursor, zone_id: str, max_level: int, before_decision_id: int) -> int:
        cur.execute(
            "UPDATE outbox SET status = 'superseded', done_s = ? WHERE status = 'pending' AND attempts = 0"
            " AND decision_id IN (SELECT id FROM decisions WHERE zone_id = ? AND audience = 'residents'"
            " AND level <= ? AND id < ?)",
            (time.time(), zone_id, max_level, before_decision_id),
        )
        return cur.rowcount

    def supersede(self, zone_id: str, max_level: int, before_decision_id: int) -> int:
        """Drop never-attempted resident chunks of a zone's older decisions at or below ``max_level``.

        Only chunks no attempt was made for: nobody can have received them, so
        dropping them cannot break exactly-once, and a held WATCH message must
        not arrive after the EVACUATE that replaced it.
        """
        with self._lock:
            self._set_sync(True)
            return self._supersede(self._conn.cursor(), zone_id, max_level, before_decision_id)

    def english_readers(self) -> set[str]:
        with self._lock:
            rows = self._conn.execute("SELECT user_id FROM users WHERE lang != 'th' AND lang = 'en'").fetchall()
        return {r[0] for r in rows}

    # --------------------------------------------------------------- outbox
    def pending_ids(self, limit: int, exclude: set[int], min_priority: int = -1) -> list[int]:
        """Ids of pending chunks, evacuation first, oldest first (cheap: no bodies are read)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id FROM outbox WHERE status = 'pending' AND priority >= ? ORDER BY priority DESC, id LIMIT ?",
                (min_priority, limit + len(exclude)),
            ).fetchall()
        return [r[0] for r in rows if r[0] not in exclude][:limit]

    def chunk(self, chunk_id: int) -> OutboxChunk:
        with self._lock:
            r = self._conn.execute(
                "SELECT id, decision_id, chunk, retry_key, user_ids, messages, priority, attempts, created_wall_s"
                " FROM outbox WHERE id = ?", (chunk_id,)).fetchone()
        return OutboxChunk(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6], r[7], r[8])

    def pending_counts(self) -> tuple[int, int]:
        """(chunks pending, recipients pending)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(recipients), 0) FROM outbox WHERE status = 'pending'"
            ).fetchone()
        return int(row[0]), int(row[1])

    def supersedable_recipients(self, zone_id: str, max_level: int) -> int:
        """Recipients of the never-attempted resident chunks :meth:`supersede` would drop for this zone."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(SUM(o.recipients), 0) FROM outbox o JOIN decisions d ON d.id = o.decision_id"
                " WHERE o.status = 'pending' AND o.attempts = 0 AND d.zone_id = ? AND d.audience = 'residents'"
                " AND d.level <= ?", (zone_id, max_level)).fetchone()
        return int(row[0])

    def delivered_since(self, wall_s: float) -> int:
        """Recipients of chunks LINE accepted since ``wall_s`` (real time): what the quota counts meanwhile."""
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(SUM(recipients), 0) FROM outbox WHERE status = 'delivered'"
                                     " AND done_s >= ?", (wall_s,)).fetchone()
        return int(row[0])

    def pending_chunks(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0])

    def mark_attempt(self, chunk_id: int, status: int | None, error: str | None) -> None:
        with self._lock:
            self._set_sync(False)  # a lost attempt count only shortens a back-off
            self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_status = ?, last_error = ? WHERE id = ?",
                (status, error, chunk_id),
            )

    def mark_done(self, chunk_id: int, outcome: str, status: int | None, error: str | None, now_s: float) -> None:
        """Settle a chunk (delivered | failed | expired) and count its recipients on the decision."""
        column = {"delivered": "delivered", "failed": "failed", "expired": "failed"}[outcome]
        with self._lock:
            # No fsync: if a power cut loses this mark, the chunk is sent again with the same
            # retry key and LINE answers 409 (already accepted), so nobody hears it twice.
            self._set_sync(False)
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute("SELECT decision_id, recipients, status FROM outbox WHERE id = ?",
                                  (chunk_id,)).fetchone()
                cur.execute(
                    "UPDATE outbox SET status = ?, attempts = attempts + 1, last_status = ?, last_error = ?,"
                    " done_s = ? WHERE id = ?",
                    (outcome, status, error, now_s, chunk_id),
                )
                if row is not None and row[2] in ("pending", "superseded"):
                    cur.execute(f"UPDATE decisions SET {column} = {column} + ? WHERE id = ?", (row[1], row[0]))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def expire_stale(self, max_age_wall_s: float) -> list[tuple[int, str]]:
        """Give up on chunks pending longer than ``max_age_wall_s`` of real time; returns (id, retry key).

        LINE honours a retry key for 24 hours: after that a resend of a chunk
        LINE may already have executed could reach residents twice, and an
        alert that old is no longer news anyway.
        """
        cutoff = time.time() - max_age_wall_s
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, retry_key FROM outbox WHERE status = 'pending' AND created_wall_s > 0"
                " AND created_wall_s < ?", (cutoff,)).fetchall()
        for chunk_id, _ in rows:
            self.mark_done(chunk_id, "expired", None, "pending longer than the retry key lives", time.time())
        return [(r[0], r[1]) for r in rows]

    def prune(self, older_than_s: float) -> int:
        """Forget settled outbox chunks (their user ids) settled before ``older_than_s``; decisions stay."""
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND done_s IS NOT NULL AND done_s < ?", (older_than_s,))
            return cur.rowcount

    # ------------------------------------------------------------ decisions
    def log(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT d.id, d.ts_s, d.kind, d.audience, d.zone_id, d.station_id, d.level, d.text, d.recipients,"
                " d.delivered, d.failed,"
                " COUNT(o.id), COALESCE(SUM(o.status = 'pending'), 0),"
                " COALESCE(SUM(o.status = 'superseded'), 0)"
                " FROM decisions d LEFT JOIN outbox o ON o.decision_id = d.id"
                " GROUP BY d.id ORDER BY d.id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        out = []
        for (id_, ts_s, kind, audience, zone_id, station_id, level, text, recipients,
             delivered, failed, chunks, pending, superseded) in rows:
            if recipients == 0:
                state = "no_recipients"
            elif pending:
                state = "sending" if delivered or failed else "pending"
            elif failed and delivered:
                state = "partial"
            elif failed:
                state = "failed"
            elif delivered:
                state = "delivered"
            else:
                state = "superseded"  # never sent: a higher alert for the zone replaced it
            out.append(dict(id=id_, ts_s=ts_s, kind=kind, audience=audience, zone_id=zone_id,
                            station_id=station_id, level=level, text=text, recipients=recipients,
                            delivered=delivered, failed=failed, chunks=chunks, state=state))
        return out

    # ---------------------------------------------------------- webhook replay guard
    def first_sight_of_event(self, event_id: str, now_s: float, keep_s: float) -> bool:
        """True the first time a webhook event id is seen; later copies (replays, redeliveries) are False."""
        with self._lock:
            self._conn.execute("DELETE FROM webhook_events WHERE seen_s < ?", (now_s - keep_s,))
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO webhook_events (event_id, seen_s) VALUES (?, ?)", (event_id, now_s)
            )
            return cur.rowcount == 1

    # ---------------------------------------------------------- subscribers
    def ensure_user(self, user_id: str, now_s: float, lang: str | None = None, followed: bool = True) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO users (user_id, lang, followed, updated_s) VALUES (?, COALESCE(?, 'th'), ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET followed = excluded.followed, updated_s = excluded.updated_s,"
                " lang = COALESCE(?, users.lang)",
                (user_id, lang, int(followed), now_s, lang),
            )

    def set_user_flag(self, user_id: str, flag: str, value: Any, now_s: float) -> None:
        if flag not in ("lang", "low_water", "tide_daily"):
            raise ValueError(f"unknown user flag {flag!r}")
        self.ensure_user(user_id, now_s)
        with self._lock:
            self._conn.execute(f"UPDATE users SET {flag} = ?, updated_s = ? WHERE user_id = ?",
                               (value, now_s, user_id))

    def user(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT user_id, lang, followed, low_water, tide_daily FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
        if row is None:
            return None
        return dict(user_id=row[0], lang=row[1], followed=bool(row[2]), low_water=bool(row[3]),
                    tide_daily=bool(row[4]))

    def subscribe(self, user_id: str, zone_id: str, now_s: float) -> None:
        self.ensure_user(user_id, now_s)
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO subscriptions (user_id, zone_id, created_s) VALUES (?, ?, ?)",
                               (user_id, zone_id, now_s))

    def subscribe_many(self, pairs: Iterable[tuple[str, str]], now_s: float) -> None:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")
            for user_id, zone_id in pairs:
                cur.execute("INSERT INTO users (user_id, updated_s) VALUES (?, ?)"
                            " ON CONFLICT (user_id) DO UPDATE SET followed = 1", (user_id, now_s))
                cur.execute("INSERT OR IGNORE INTO subscriptions (user_id, zone_id, created_s) VALUES (?, ?, ?)",
                            (user_id, zone_id, now_s))
            cur.execute("COMMIT")

    def unsubscribe(self, user_id: str, zone_id: str | None = None) -> None:
        with self._lock:
            if zone_id is None:
                self._conn.execute("DELETE FROM subscriptions WHERE user_id = ?", (user_id,))
            else:
                self._conn.execute("DELETE FROM subscriptions WHERE user_id = ? AND zone_id = ?", (user_id, zone_id))

    def forget_user(self, user_id: str, now_s: float) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM subscriptions WHERE user_id = ?", (user_id,))
            self._conn.execute("UPDATE users SET followed = 0, low_water = 0, tide_daily = 0, updated_s = ?"
                               " WHERE user_id = ?", (now_s, user_id))

    def subscribers(self, zone_id: str) -> list[str]:
        # unfollow deletes a user's subscriptions, so every row here belongs to a follower
        with self._lock:
            rows = self._conn.execute(
                "SELECT user_id FROM subscriptions WHERE zone_id = ? ORDER BY user_id", (zone_id,)
            ).fetchall()
        return [r[0] for r in rows]

    def low_water_subscribers(self, zone_id: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT s.user_id FROM subscriptions s JOIN users u USING (user_id)"
                " WHERE s.zone_id = ? AND u.followed = 1 AND u.low_water = 1 ORDER BY s.user_id", (zone_id,)
            ).fetchall()
        return [r[0] for r in rows]

    def tide_daily_subscribers(self, zone_id: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT s.user_id FROM subscriptions s JOIN users u USING (user_id)"
                " WHERE s.zone_id = ? AND u.followed = 1 AND u.tide_daily = 1 ORDER BY s.user_id", (zone_id,)
            ).fetchall()
        return [r[0] for r in rows]

    def zones_of(self, user_id: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT zone_id FROM subscriptions WHERE user_id = ? ORDER BY zone_id",
                                      (user_id,)).fetchall()
        return [r[0] for r in rows]

    def officers(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT user_id FROM officers ORDER BY user_id").fetchall()
        return [r[0] for r in rows]

    def add_officer(self, user_id: str, now_s: float) -> None:
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO officers (user_id, added_s) VALUES (?, ?)", (user_id, now_s))
