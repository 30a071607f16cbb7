"""``floodwatch backup`` and ``floodwatch restore``: consistent copies of the SQLite databases.

Uses SQLite's online backup API, so a backup taken while ingestion writes
is a consistent snapshot (WAL included), never a torn file copy. A backup
is a folder holding ``floodwatch.db`` (readings), ``alerts.db`` (alert
state, subscribers, outbox), ``page.db`` (officers, sessions, audit log)
and ``manifest.json`` (row counts, time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import time
from pathlib import Path

from floodwatch import logs
from floodwatch import migrations
from floodwatch.errors import ConfigError
from floodwatch.settings import Settings, load_settings


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///relative`` or ``sqlite:////absolute`` URL; None for other stores."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///"):])


def databases(settings: Settings) -> dict[str, Path]:
    found = {}
    for name, url in (
        ("floodwatch.db", settings.store.url),
        ("alerts.db", settings.alerts.state_url),
        ("page.db", settings.page.state_url),
    ):
        path = sqlite_path(url)
        if path is not None:
            found[name] = path
    return found


def known_versions() -> dict[str, int]:
    """The schema version this floodwatch writes, per backup file name (floodwatch/migrations.py)."""
    from floodwatch.alerts import _db as alerts_db
    from floodwatch.gauge_page import _state as page_state
    from floodwatch.store import sqlite as store_sqlite

    return {"floodwatch.db": len(store_sqlite.MIGRATIONS), "alerts.db": len(alerts_db.MIGRATIONS),
            "page.db": len(page_state.MIGRATIONS)}


def _row_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


def backup(settings: Settings, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=False)
    manifest: dict = {"created_s": time.time(), "databases": {}}
    for name, source in databases(settings).items():
        if not source.exists():
            continue
        target = out_dir / name
        with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        manifest["databases"][name] = {"source": str(source), "rows": _row_counts(target),
                                       "schema_version": migrations.file_version(target)}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def prune(folder: Path, keep_days: float, now_s: float | None = None, *, keep: Path | None = None) -> list[Path]:
    """Delete the backups in ``folder`` older than ``keep_days``; return what was deleted.

    Only folders floodwatch made (they hold a ``manifest.json``) are touched, by
    the time in their manifest; ``keep`` (the backup just taken) never is.
    """
    now_s = time.time() if now_s is None else now_s
    deleted = []
    for candidate in sorted(folder.iterdir()) if folder.is_dir() else []:
        manifest = candidate / "manifest.json"
        if not candidate.is_dir() or not manifest.is_file():
            continue
        if keep is not None and candidate.resolve() == keep.resolve():
            continue
        try:
            created_s = float(json.loads(manifest.read_text())["created_s"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not readable as a floodwatch backup: leave it for a person to look at
        if now_s - created_s > keep_days * 86_400.0:
            shutil.rmtree(candidate)
            deleted.append(candidate)
    return deleted


def restore(settings: Settings, backup_dir: Path) -> dict:
    manifest_path = backup_dir / "manifest.json"
    if not manifest_path.exists():
        raise ConfigError(f"{backup_dir} is not a floodwatch backup (no manifest.json); give the folder `floodwatch backup` made")
    manifest = json.loads(manifest_path.read_text())
    chosen = []
    # Check every file before replacing any: a restore is all or nothing.
    for name, target in databases(settings).items():
        source = backup_dir / name
        if name not in manifest["databases"] or not source.exists():
            continue
        check = sqlite3.connect(source).execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise ConfigError(f"{source} fails SQLite's integrity check ({check}); nothing was restored")
        found, known = migrations.file_version(source) or 0, known_versions().get(name, 0)
        if found > known:
            raise ConfigError(f"{source} has schema version {found}, newer than this floodwatch's {known}: a newer "
                              "floodwatch made this backup; restore it with that version (nothing was restored)")
        chosen.append((source, target))
    for source, target in chosen:
        target.parent.mkdir(parents=True, exist_ok=True)
        for leftover in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
            leftover.unlink(missing_ok=True)
        tmp = target.with_name(target.name + ".restoring")
        shutil.copyfile(source, tmp)
        tmp.replace(target)  # atomic: a crash leaves either the old or the restored file
    return manifest


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    b = subparsers.add_parser(
        "backup",
        help="snapshot the SQLite store and alert state while running",
        description="Write a consistent snapshot of the readings and alert databases into a new folder.\n\n"
        "example: floodwatch backup --out /var/backups/floodwatch/$(date +%%F) --keep-days 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--out", type=Path, required=True, help="new folder for the backup (must not exist)")
    b.add_argument("--keep-days", type=float, default=None, metavar="DAYS",
                   help="after a good backup, delete the backups beside it (in the same parent folder) older than "
                   "DAYS; only folders floodwatch backup made are touched (default: keep everything)")
    b.set_defaults(run=run_backup)
    r = subparsers.add_parser(
        "restore",
        help="put a backup back (stop floodwatch first)",
        description="Replace the readings and alert databases with those in a backup folder. Stop "
        "`floodwatch serve` first; each file is checked and swapped atomically.\n\n"
        "example: floodwatch restore --from /var/backups/floodwatch/2026-11-29",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--from", dest="source", type=Path, required=True, help="a folder made by floodwatch backup")
    r.set_defaults(run=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    try:
        manifest = backup(load_settings(), args.out)
    except (ConfigError, FileExistsError) as exc:
        print(f"error: {logs.scrub(str(exc))}")
        return 1
    for name, info in manifest["databases"].items():
        print(f"{name}: {sum(info['rows'].values())} rows in {len(info['rows'])} tables")
    if args.keep_days is not None:
        for old in prune(args.out.parent, args.keep_days, keep=args.out):
            print(f"deleted {old} (older than {args.keep_days:g} days)")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    try:
        manifest = restore(load_settings(), args.source)
    except ConfigError as exc:
        print(f"error: {logs.scrub(str(exc))}")
        return 1
    print(f"restored {', '.join(manifest['databases'])} from {args.source}")
    return 0
