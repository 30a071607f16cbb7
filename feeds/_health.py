"""A feed's health as plain data, and the pure rules that update and classify it.

What the page, ``floodwatch feeds status`` and the officers see about an
external source instead of "silent": when it was last fetched successfully,
the newest data time per station, how far behind that is (lag), the errors
and problems of recent runs (a station missing from a response, HTML where
JSON was expected, yesterday's data). No I/O here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_PROBLEMS = 20
# Feed kinds whose data should keep arriving on their own; a drop folder waits for officers.
_TIMELY_KINDS = ("thaiwater", "floodwatch_mqtt", "csv_url")


@dataclass(frozen=True)
class Problem:
    """Something a run noticed, with the sentence that names the fix."""

    ts_s: float
    reason: str
    detail: str
    station_id: str | None = None


@dataclass
class RunReport:
    """What one run of a feed did (plain data; the feed's shell fills it in)."""

    ok: bool = True
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    problems: list[Problem] = field(default_factory=list)
    error: Problem | None = None
    # per registry station: the newest data time the source has (stored now or before)
    last_data_s: dict[str, float] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)

    def problem(self, ts_s: float, reason: str, detail: str, station_id: str | None = None) -> None:
        self.problems.append(Problem(ts_s, reason, detail, station_id))

    def summary(self) -> str:
        head = "ok" if self.ok else f"failed ({self.error.reason})" if self.error else "failed"
        return (f"{head}: fetched {self.fetched}, stored {self.stored}, duplicates {self.duplicates}, "
                f"rejected {self.rejected}, problems {len(self.problems)}")


def new_health(feed_id: str, kind: str, name_th: str = "", name_en: str = "") -> dict[str, Any]:
    return {
        "feed_id": feed_id, "kind": kind, "name_th": name_th, "name_en": name_en,
        "last_attempt_s": None, "last_success_s": None,
        "consecutive_failures": 0, "failures_total": 0, "last_error": None,
        "stored_total": 0, "last_stored": 0, "problems": [], "stations": {},
    }


def update_health(health: dict[str, Any], report: RunReport, now_s: float) -> dict[str, Any]:
    """The health after one run: a new dict, ``health`` is not changed."""
    h = {**health, "stations": {k: dict(v) for k, v in health.get("stations", {}).items()}}
    h["last_attempt_s"] = now_s
    if report.ok:
        h["last_success_s"] = now_s
        h["consecutive_failures"] = 0
        h["last_stored"] = report.stored
        h["stored_total"] = int(h.get("stored_total", 0)) + report.stored
    else:
        h["consecutive_failures"] = int(h.get("consecutive_failures", 0)) + 1
        h["failures_total"] = int(h.get("failures_total", 0)) + 1
        h["last_stored"] = 0
    if report.error is not None:
        h["last_error"] = asdict(report.error)
    stations = h["stations"]
    for sid, ts_s in report.last_data_s.items():
        entry = stations.setdefault(sid, {})
        if entry.get("last_data_s") is None or ts_s > entry["last_data_s"]:
            entry["last_data_s"] = ts_s
    if report.ok:
        # Missing and stale describe the latest answer; a failed run says nothing new about them.
        for sid in set(stations) | report.missing | report.stale:
            entry = stations.setdefault(sid, {})
            entry["missing"] = sid in report.missing
            entry["stale"] = sid in report.stale
    news = [asdict(p) for p in report.problems] + ([asdict(report.error)] if report.error else [])
    h["problems"] = (news[::-1] + list(health.get("problems", [])))[:MAX_PROBLEMS]
    return h


def classify(health: dict[str, Any] | None, now_s: float, *, stale_after_s: float, enabled: bool = True,
             predicted: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The health as the page shows it: a state word, the lag, and per-station flags.

    ``state`` is one of ``disabled``, ``never`` (no successful run yet), ``failing``
    (the last run failed), ``stale`` (a station's newest data is older than
    ``stale_after_s``, or the source answered with old data), ``degraded`` (a
    station was missing from the last answer) or ``ok``. ``lag_s`` is how far
    behind "now" the most-behind observed station is; predicted series are left
    out of it (their data lie ahead).
    """
    if health is None:
        return {"state": "disabled" if not enabled else "never", "lag_s": None, "stations": {}}
    kind = health.get("kind", "")
    stations: dict[str, Any] = {}
    lags = []
    any_stale = any_missing = False
    for sid, entry in health.get("stations", {}).items():
        last = entry.get("last_data_s")
        lag = None if last is None else now_s - last
        stale = bool(entry.get("stale"))
        if sid not in predicted and lag is not None:
            lags.append(lag)
            if kind in _TIMELY_KINDS and lag > stale_after_s:
                stale = True
        stations[sid] = {"last_data_s": last, "lag_s": lag, "stale": stale, "missing": bool(entry.get("missing"))}
        any_stale |= stale
        any_missing |= stations[sid]["missing"]
    if not enabled:
        state = "disabled"
    elif health.get("last_success_s") is None and not health.get("consecutive_failures"):
        state = "never"
    elif health.get("consecutive_failures"):
        state = "failing"
    elif any_stale:
        state = "stale"
    elif any_missing:
        state = "degraded"
    else:
        state = "ok"
    return {"state": state, "lag_s": max(lags) if lags else None, "stations": stations}
