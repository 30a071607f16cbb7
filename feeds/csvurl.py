"""A CSV published at a URL: an announced dam release schedule, a tide table, an agency's export.

Fetched every ``interval_s``; loaded (through the drop folder's import, so
the same validation, QC and store path) only when its content changed since
the last load, which is the cursor: a SHA-256 of what was stored.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from floodwatch.errors import FeedError, FloodwatchError
from floodwatch.feeds import _http
from floodwatch.feeds._health import RunReport
from floodwatch.feeds.dropfolder import import_file, station_aliases
from floodwatch.ingest.csv_import import RowError

if TYPE_CHECKING:
    from floodwatch.clock import Clock
    from floodwatch.feeds._state import FeedState
    from floodwatch.feeds._writer import FeedWriter
    from floodwatch.settings import FeedConfig, Settings


class CsvUrlFeed:
    kind = "csv_url"

    def __init__(self, cfg: FeedConfig, settings: Settings, writer: FeedWriter, state: FeedState,
                 clock: Clock) -> None:
        self.cfg = cfg
        self.settings = settings
        self.store = writer.store
        self.state = state
        self.clock = clock

    def run_once(self) -> RunReport:
        now_s = self.clock.now_s()
        report = RunReport()
        url = self.cfg.url or ""
        body, content_type = _http.get(url, self.cfg.timeout_s, accept="text/csv", feed_id=self.cfg.id)
        if body.lstrip()[:1] == b"<" or "html" in content_type.lower():
            raise FeedError("html_not_csv", f"{url} answered an HTML page instead of CSV; the source is probably "
                            "under maintenance, or the url points at a web page rather than the file", self.cfg.id)
        digest = hashlib.sha256(body).hexdigest()
        cursor = self.state.cursor(self.cfg.id) or {}
        if cursor.get("sha256") == digest:
            report.last_data_s.update(cursor.get("last_data_s", {}))
            return report  # unchanged since the last load
        name = Path(url.split("?")[0]).name or f"{self.cfg.id}.csv"
        with tempfile.TemporaryDirectory(prefix="floodwatch-feed-") as tmp:
            path = Path(tmp) / (name if name.lower().endswith(".csv") else f"{name}.csv")
            path.write_bytes(body)
            try:
                result = import_file(path, self.settings, self.store, now_s, station_aliases(self.settings))
            except RowError as err:
                raise FeedError(err.reason, f"{url}: {err}", self.cfg.id) from err
            except FloodwatchError as exc:
                raise FeedError("store_unavailable", f"{url} could not be stored ({exc}); retrying next run",
                                self.cfg.id) from exc
        if hasattr(self.store, "sync"):
            self.store.sync()
        report.fetched, report.stored = result.rows, result.stored
        report.duplicates, report.rejected = result.duplicates, result.rejected
        if result.rejected:
            report.problem(now_s, "rows_rejected", f"{result.rejected} of {result.rows} rows refused: "
                           + "; ".join(result.examples[:3]))
        last = {sid: last_s for sid, (_, last_s) in result.replaced.items()}
        report.last_data_s.update(last)
        self.state.set_cursor(self.cfg.id, {"sha256": digest, "last_data_s": last})
        return report
