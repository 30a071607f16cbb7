"""A resident's right to erasure (Thailand's PDPA): everything floodwatch keeps about one LINE user, removed.

:func:`purge_user` removes, for one LINE user id: their flood reports and
photos, an unfinished report, their consent record and rate-limit steps
(:class:`alerts.reports.ReportBook`), their village subscriptions and
settings (language, low water, daily tide), and their id from every LINE
outbox chunk (pending ones too, so nothing more is sent to them). Decisions
in the alert log never name residents, so they stay. It says what it removed.

It works on the state file directly, so it can run while ``floodwatch
serve`` runs (SQLite WAL, short transactions) or when it is stopped.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from floodwatch.errors import ConfigError
from floodwatch.settings import Settings

from floodwatch.alerts._db import sqlite_path
from floodwatch.alerts.reports import ReportBook

USER_ID = re.compile(r"^U[0-9a-f]{32}$")


def purge_user(settings: Settings, user_id: str, *, dry_run: bool = False) -> dict[str, int]:
    """Remove one resident's data; returns how many of each thing was removed (or would be, ``dry_run``).

    Raises
    ------
    ConfigError
        For an id that is not a LINE user id, or a missing state file.
    """
    if not USER_ID.match(user_id):
        raise ConfigError(f"{user_id!r} is not a LINE user id (U followed by 32 hex digits); the resident's id "
                          "is in the webhook log or they can type 'id' to the account")
    path = sqlite_path(settings.alerts.state_url)
    if not path.exists():
        raise ConfigError(f"the alert state file {path} does not exist; check FLOODWATCH_ALERTS__STATE_URL")
    if dry_run:
        return _count(settings, path, user_id)
    removed: dict[str, int] = {}
    book = ReportBook(settings)  # creates its tables if this state file predates them
    try:
        removed.update(book.purge_user(user_id))
    finally:
        book.close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            removed["subscriptions"] = cur.execute("DELETE FROM subscriptions WHERE user_id = ?", (user_id,)).rowcount
            removed["user_settings"] = cur.execute("DELETE FROM users WHERE user_id = ?", (user_id,)).rowcount
            removed["outbox_entries"] = _drop_from_outbox(cur, user_id)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return removed


def _drop_from_outbox(cur: sqlite3.Cursor, user_id: str) -> int:
    """Take the id out of every chunk's recipient list; an emptied pending chunk is settled as delivered-to-nobody."""
    removed = 0
    rows = cur.execute("SELECT id, user_ids, status FROM outbox WHERE user_ids LIKE ?", (f'%"{user_id}"%',)).fetchall()
    for chunk_id, raw, status in rows:
        ids = json.loads(raw)
        kept = [u for u in ids if u != user_id]
        if len(kept) == len(ids):
            continue
        removed += 1
        if status == "pending" and not kept:
            cur.execute("UPDATE outbox SET user_ids = '[]', recipients = 0, status = 'superseded', last_error = ?"
                        " WHERE id = ?", ("recipient erased at their request", chunk_id))
        else:
            cur.execute("UPDATE outbox SET user_ids = ?, recipients = ? WHERE id = ?",
                        (json.dumps(kept), len(kept) if status == "pending" else len(ids), chunk_id))
    return removed


def _count(settings: Settings, path: Any, user_id: str) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        def n(sql: str) -> int:
            try:
                return int(conn.execute(sql, (user_id,)).fetchone()[0])
            except sqlite3.OperationalError:  # a table an older state file does not have
                return 0
        photos = n("SELECT COUNT(photo) FROM reports WHERE user_id = ?") + n(
            "SELECT COUNT(photo) FROM report_drafts WHERE user_id = ?")
        return {"reports": n("SELECT COUNT(*) FROM reports WHERE user_id = ?"), "photos": photos,
                "report_drafts": n("SELECT COUNT(*) FROM report_drafts WHERE user_id = ?"),
                "consent": n("SELECT COUNT(*) FROM report_consent WHERE user_id = ?"),
                "rate_limit_steps": n("SELECT COUNT(*) FROM report_steps WHERE user_id = ?"),
                "subscriptions": n("SELECT COUNT(*) FROM subscriptions WHERE user_id = ?"),
                "user_settings": n("SELECT COUNT(*) FROM users WHERE user_id = ?"),
                "outbox_entries": n("SELECT COUNT(*) FROM outbox WHERE user_ids LIKE '%\"' || ? || '\"%'")}
    finally:
        conn.close()
