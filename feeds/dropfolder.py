"""A folder officers drop exports into (RID or ThaiWater CSVs, a tide table, a release schedule).

Each file is imported once with :func:`floodwatch.ingest.csv_import.import_csv`
(the same validation, QC and store path as ``floodwatch import-csv``), then
moved to ``done/`` with a ``.result.txt`` beside it, or to ``failed/`` with a
``.reason.txt`` that says what was wrong and what to do. A ledger keyed by
the file's SHA-256 (in the feeds state file) is written after the store has
committed, so a restart at any point neither loses a file nor counts it
twice: a file in the ledger is only moved, one not in it is imported again
(and the store's keys, or a prediction's replacement, make that harmless).

Ids in a file may be the registry's (``LP-W01``) or a station's id in the
feed (``feed_station``, e.g. an RID code ``T.13``); a file without a station
column is read as the station its name starts with (``TC-MOUTH-2569.csv``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floodwatch.errors import FeedError, FloodwatchError
from floodwatch.feeds._health import RunReport
from floodwatch.ingest.csv_import import ImportResult, RowError, import_csv

if TYPE_CHECKING:
    from floodwatch.clock import Clock
    from floodwatch.feeds._state import FeedState
    from floodwatch.feeds._writer import FeedWriter
    from floodwatch.settings import FeedConfig, Settings

log = logging.getLogger(__name__)

# A file younger than this (real seconds, by its modification time) may still be being copied in.
SETTLE_S = 2.0
CSV_SUFFIXES = (".csv", ".txt")
_HINTS = {
    ".xlsx": "an Excel workbook: open it and save the sheet as 'CSV UTF-8', then drop the .csv",
    ".xls": "an old Excel workbook: save the sheet as 'CSV UTF-8', then drop the .csv",
    ".json": "JSON: floodwatch takes CSV files here; export the data as CSV",
    ".pdf": "a PDF: copy the table into a spreadsheet and save it as 'CSV UTF-8'",
    ".html": "a saved web page: download the data as CSV instead",
}


def station_aliases(settings: Settings) -> dict[str, str]:
    """Ids a file may use for a registry station: each station's ``feed_station``."""
    return {s.feed_station: s.id for s in settings.stations if s.feed_station and s.feed_station != s.id}


def import_file(path: Path, settings: Settings, store: object, now_s: float,
                aliases: dict[str, str] | None = None) -> ImportResult:
    """Import one CSV like ``floodwatch import-csv``; a file without a station column names it in its file name."""
    aliases = aliases if aliases is not None else station_aliases(settings)
    try:
        return import_csv(path, settings, store, now_s, aliases=aliases)
    except RowError as err:
        if err.reason != "bad_header" or "station column" not in str(err):
            raise
        station = _station_from_name(path.name, settings, aliases)
        if station is None:
            raise RowError("bad_header", f"{path.name} has no station column and its name does not start with a "
                           "station id; add a station_id column or name the file <station>-....csv") from err
        return import_csv(path, settings, store, now_s, station=station)


def _station_from_name(name: str, settings: Settings, aliases: dict[str, str]) -> str | None:
    candidates = [s.id for s in settings.stations] + list(aliases)
    for candidate in sorted(candidates, key=len, reverse=True):
        if name.upper().startswith(candidate.upper()):
            return aliases.get(candidate, candidate)
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _format_problem(path: Path) -> str | None:
    """Why a file cannot be a CSV export, or None if it may be one."""
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK\x03\x04"):
        return _HINTS[".xlsx"]
    if head.startswith(b"%PDF"):
        return _HINTS[".pdf"]
    if head.lstrip()[:1] == b"<":
        return _HINTS[".html"]
    if suffix not in CSV_SUFFIXES:
        hint = _HINTS.get(suffix, "floodwatch reads CSV files (.csv) here; export the data as 'CSV UTF-8'")
        return f"unknown format {suffix or '(no extension)'!r}: {hint}"
    if b"\x00" in head:
        return "a binary file, not CSV text; export the data as 'CSV UTF-8'"
    return None


class DropFolderFeed:
    """Import what officers drop into ``folder``, once each, and sort it into done/ or failed/."""

    kind = "drop_folder"

    def __init__(self, cfg: FeedConfig, settings: Settings, writer: FeedWriter, state: FeedState,
                 clock: Clock) -> None:
        self.cfg = cfg
        self.settings = settings
        self.writer = writer
        self.store = writer.store
        self.state = state
        self.clock = clock
        assert cfg.folder is not None
        self.folder = Path(cfg.folder)
        self.done = self.folder / "done"
        self.failed = self.folder / "failed"
        self.aliases = station_aliases(settings)

    def pending(self) -> list[Path]:
        """Files waiting in the folder, oldest first (hidden, partial and still-copying ones left)."""
        if not self.folder.is_dir():
            return []
        settled_before = time.time() - SETTLE_S
        files = []
        for p in self.folder.iterdir():
            name = p.name
            if not p.is_file() or name.startswith((".", "~$")) or name.endswith((".part", ".tmp", ".crdownload")):
                continue
            if name.endswith((".reason.txt", ".result.txt")):
                continue
            if p.stat().st_mtime > settled_before:
                continue
            files.append(p)
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def run_once(self) -> RunReport:
        for folder in (self.folder, self.done, self.failed):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FeedError("folder_unavailable", f"cannot use the drop folder {folder} ({exc}); check that it "
                                "exists and floodwatch may write to it", self.cfg.id) from exc
        report = RunReport()
        for path in self.pending():
            self._one(path, report)
        return report

    def _one(self, path: Path, report: RunReport) -> None:
        now_s = self.clock.now_s()
        digest = sha256_of(path)
        seen = self.state.drop_file(self.cfg.id, digest)
        if seen is not None and seen["state"] == "done":
            # Imported before a restart (or dropped twice): the store has it; only tidy up.
            self._move(path, self.done, seen["detail"].get("summary", "imported before"))
            report.problem(now_s, "already_imported",
                           f"{path.name} was imported already ({seen['name']}); moved to done/ unchanged")
            return
        problem = _format_problem(path)
        if problem is not None:
            self._fail(path, digest, "unknown_format", problem, report, now_s)
            return
        try:
            result = import_file(path, self.settings, self.store, now_s, self.aliases)
        except RowError as err:
            self._fail(path, digest, err.reason, str(err), report, now_s)
            return
        except FeedError:
            raise
        except FloodwatchError as exc:  # the store: leave the file where it is, try again next run
            raise FeedError("store_unavailable", f"{path.name} could not be stored ({exc}); it stays in the "
                            "folder and is tried again next run", self.cfg.id) from exc
        if hasattr(self.store, "sync"):
            self.store.sync()  # the ledger may say "done" only once the store cannot lose it
        summary = (f"{path.name}: rows {result.rows}, stored {result.stored}, duplicates {result.duplicates}, "
                   f"rejected {result.rejected}")
        if result.rejected and not result.stored and not result.duplicates:
            reasons = ", ".join(f"{r} x{n}" for r, n in result.reasons.most_common())
            self._fail(path, digest, "no_usable_rows", f"no row could be used ({reasons}); e.g. "
                       + "; ".join(result.examples[:3]), report, now_s)
            return
        detail: dict[str, Any] = {"summary": summary, "rows": result.rows, "stored": result.stored,
                                  "duplicates": result.duplicates, "rejected": result.rejected,
                                  "reasons": dict(result.reasons), "examples": result.examples,
                                  "replaced": result.replaced, "encoding": result.encoding}
        self.state.record_drop_file(self.cfg.id, digest, path.name, "done", detail, now_s)
        self._move(path, self.done, _result_text(summary, result))
        report.fetched += result.rows
        report.stored += result.stored
        report.duplicates += result.duplicates
        report.rejected += result.rejected
        if result.rejected:
            report.problem(now_s, "rows_rejected", f"{summary}; " + "; ".join(result.examples[:3]))
        for sid, (_, last_s) in result.replaced.items():
            report.last_data_s[sid] = max(report.last_data_s.get(sid, last_s), last_s)
        log.info("event=drop_file_imported feed=%s %s", self.cfg.id, summary.replace(": ", " ", 1))

    def _fail(self, path: Path, digest: str, reason: str, detail: str, report: RunReport, now_s: float) -> None:
        self.state.record_drop_file(self.cfg.id, digest, path.name, "failed", {"reason": reason, "detail": detail},
                                    now_s)
        self._move(path, self.failed, f"{reason}: {detail}\n")
        report.problem(now_s, reason, f"{path.name} moved to failed/: {detail}")
        log.warning("event=drop_file_failed feed=%s file=%s reason=%s detail=%r", self.cfg.id, path.name, reason,
                    detail)

    def _move(self, path: Path, folder: Path, note: str) -> None:
        target = folder / path.name
        if target.exists():
            target = folder / f"{path.stem}.{int(time.time())}{path.suffix}"
        suffix = ".reason.txt" if folder == self.failed else ".result.txt"
        note_path = target.with_name(target.name + suffix)
        note_path.write_text(note if note.endswith("\n") else note + "\n", encoding="utf-8")
        shutil.move(str(path), str(target))
        _fsync_dir(folder)
        _fsync_dir(path.parent)


def _result_text(summary: str, result: ImportResult) -> str:
    lines = [summary]
    for reason, n in result.reasons.most_common():
        lines.append(f"rejected {reason}: {n}")
    lines += [f"e.g. {e}" for e in result.examples]
    for sid, (first, last) in result.replaced.items():
        lines.append(f"{sid}: prediction replaced from {first:.0f} to {last:.0f} (UTC epoch s)")
    return "\n".join(lines) + "\n"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
