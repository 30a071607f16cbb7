"""Numbered schema migrations for every SQLite file floodwatch keeps.

Each file's owner keeps one list of steps, oldest first, beside its queries::

    MIGRATIONS: list[migrations.Step] = [
        _SCHEMA_1,                                          # version 1
        "ALTER TABLE readings ADD COLUMN source TEXT",      # version 2: a new step is one line appended
    ]

and calls :func:`migrate` when it opens the file. The file's version is
SQLite's ``PRAGMA user_version`` (0 for a new file, and for files made before
versions existed, whose tables step 1 adopts with ``CREATE TABLE IF NOT
EXISTS``). Every pending step and the new version commit in ONE transaction:
an upgrade either completes or leaves the file as it was. A file newer than
the code (written by a later release, then the code rolled back) is refused,
never written to.

Never edit a step that has shipped: databases in the field already ran it.
Append a new one instead.

The owners: ``store/sqlite.py`` (readings), ``ingest/spool.py`` (the spool),
``alerts/_db.py`` (alert state), ``gauge_page/_state.py`` (the page's state).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from floodwatch.errors import SchemaError

log = logging.getLogger(__name__)

# SQL (one or more statements), or a function for what SQL alone cannot say
# (e.g. add a column only where an older file lacks it).
Step = str | Callable[[sqlite3.Connection], None]


def statements(script: str) -> Iterator[str]:
    """The complete SQL statements in ``script``, one at a time (``;`` inside strings, comments or triggers kept)."""
    pending = ""
    for piece in script.split(";")[:-1]:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _code(pending):
                yield pending.strip()
            pending = ""
    pending += script.split(";")[-1]
    if _code(pending) and sqlite3.complete_statement(pending + ";"):
        # The documented one-line step ("ALTER TABLE ... ADD COLUMN x") may
        # leave off its final ';'.
        yield pending.strip()
    elif _code(pending):
        raise SchemaError(f"migration SQL ends with an incomplete statement: {pending.strip()[:80]!r}")


def _code(sql: str) -> bool:
    """True when ``sql`` holds more than blanks and ``--`` comments."""
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def file_version(path: Path | str) -> int | None:
    """The schema version of a SQLite file without changing it; None when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return version(conn)


def _too_new(name: str, found: int, known: int) -> SchemaError:
    return SchemaError(
        f"{name} has schema version {found}, but this floodwatch knows versions up to {known}: a newer "
        "floodwatch wrote it. Run that newer floodwatch again, or restore a backup this version made "
        "(floodwatch restore --from DIR); floodwatch will not write to it"
    )


def migrate(conn: sqlite3.Connection, steps: Sequence[Step], *, name: str) -> int:
    """Bring the database on ``conn`` to version ``len(steps)``; return the version it had.

    ``conn`` must be in autocommit mode (``isolation_level=None``) and outside a
    transaction. ``name`` names the file in messages (its path). Safe when
    several processes open the same file at once: the first one upgrades
    under SQLite's write lock, the others find it done.
    """
    target = len(steps)
    found = version(conn)
    if found == target:
        return found
    if found > target:
        raise _too_new(name, found, target)
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = version(conn)  # another process may have upgraded it while we waited for the lock
        if found > target:
            raise _too_new(name, found, target)
        for number in range(found + 1, target + 1):
            step = steps[number - 1]
            try:
                if callable(step):
                    step(conn)
                else:
                    for sql in statements(step):
                        conn.execute(sql)
            except sqlite3.Error as exc:
                raise SchemaError(f"upgrading {name} to schema version {number} failed ({exc}); "
                                  f"the file is unchanged at version {found}") from exc
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if found != target:
        log.info("event=schema_upgraded database=%s from_version=%d to_version=%d", name, found, target)
    return found
