"""HII ThaiWater public API (api-v3.thaiwater.net): river levels and dam releases.

The shapes are not documented by HII; they were read from public code that
calls the API (see docs/feeds.md and tests/feeds/fixtures/README.md):

``public/waterlevel_load`` (latest reading of every telemetry gauge)::

    {"waterlevel_data": {"data": [
        {"id": 1, "waterlevel_datetime": "2026-11-29 14:00",   # Bangkok time, no offset
         "waterlevel_msl": "2.41",                             # metres MSL, a string
         "waterlevel_msl_previous": "2.38", "situation_level": 2,
         "station": {"id": 2391, "tele_station_oldcode": "T.13",
                     "tele_station_name": {"th": "...", "en": "..."},
                     "tele_station_lat": 14.47, "tele_station_long": 100.12,
                     "left_bank": 6.1, "right_bank": 6.3, "min_bank": 6.1, "ground_level": 0.5},
         "agency": {"agency_shortname": {"th": "ชป.", "en": "RID"}}, ...}]}}

``public/waterlevel_graph?station_type=tele_waterlevel&station_id=ID&start_date=YYYY-MM-DD&end_date=YYYY-MM-DD``
(one gauge's history, used to catch up after downtime)::

    {"data": {"graph_data": [{"datetime": "2026-11-29 13:00", "value": 2.38}, ...],
              "min_bank": 6.1, "ground_level": 0.5}}

``analyst/dam`` (reservoirs; ``dam_released`` in million m3 per day for
``dam_daily``, per hour for ``dam_hourly``)::

    {"data": {"dam_daily": [{"dam_date": "2026-11-29", "dam_released": "2.59", "dam_inflow": "1.2",
                             "dam_storage": "180.4", "dam": {"id": 38, "dam_oldcode": "...",
                             "dam_name": {"th": "เขื่อนกระเสียว", "en": "Krasiao"}}}, ...],
              "dam_hourly": [...]}}

The parsers are pure (decoded JSON in, plain records out) and tested on
vendored fixtures; :class:`ThaiWaterFeed` is the shell that fetches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from floodwatch.errors import FeedError
from floodwatch.feeds import _http
from floodwatch.feeds._health import RunReport
from floodwatch.feeds._writer import FeedValue
from floodwatch.timefmt import to_bangkok

if TYPE_CHECKING:
    from floodwatch.clock import Clock
    from floodwatch.feeds._state import FeedState
    from floodwatch.feeds._writer import FeedWriter
    from floodwatch.settings import FeedConfig, Settings, StationConfig

log = logging.getLogger(__name__)

BANGKOK = ZoneInfo("Asia/Bangkok")
WATERLEVEL_PATH = "public/waterlevel_load"
GRAPH_PATH = "public/waterlevel_graph"
DAM_PATH = "analyst/dam"
_BUDDHIST_ERA_OFFSET_YEARS = 543
# A daily release figure is a day's total: it is as fresh as it can be until the next day's.
DAILY_STALE_AFTER_S = 36 * 3600.0
_MISSING = ("", "-", "--", "n/a", "na", "null", "none")


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class WaterLevelRecord:
    """One gauge's latest reading in ``waterlevel_load``."""

    station_id: str
    oldcode: str | None
    name_th: str | None
    name_en: str | None
    ts_s: float | None
    level_msl_m: float | None
    lat: float | None = None
    lon: float | None = None
    min_bank_m: float | None = None
    left_bank_m: float | None = None
    right_bank_m: float | None = None
    ground_level_m: float | None = None
    situation_level: int | None = None
    agency: str | None = None


@dataclass(frozen=True)
class DamRecord:
    """One reservoir's release in the dam answer, converted to m3/s."""

    dam_id: str
    oldcode: str | None
    name_th: str | None
    name_en: str | None
    ts_s: float | None
    released_m3_s: float | None
    period: str  # "hourly" | "daily"


# ------------------------------------------------------------------ helpers
def number(value: Any) -> float | None:
    """ThaiWater sends numbers as numbers or strings ("2.41", "1,950.00", "-", ""); None when absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        x = float(value)
    else:
        text = str(value).strip().replace(",", "")
        if text.lower() in _MISSING:
            return None
        try:
            x = float(text)
        except ValueError:
            return None
    return x if math.isfinite(x) else None


def bangkok_time(text: Any) -> float | None:
    """UTC epoch seconds from ThaiWater's naive Bangkok times ("2026-11-29 14:00", "2026-11-29").

    A time with an offset is honoured; Buddhist-era years (2569) are converted.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    s = text.strip().replace("T", " ")
    year = s[:4]
    if year.isdigit() and int(year) > 2400:
        s = f"{int(year) - _BUDDHIST_ERA_OFFSET_YEARS:04d}{s[4:]}"
    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=BANGKOK)
    return when.timestamp()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _name(names: Any, lang: str) -> str | None:
    return _text(names.get(lang)) if isinstance(names, dict) else None


def _rows_of(doc: Any, *path: str) -> list | None:
    node = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, list) else None


# ------------------------------------------------------------------ parsers
def parse_waterlevel_load(doc: Any) -> list[WaterLevelRecord]:
    """Every usable gauge in a decoded ``waterlevel_load`` answer.

    Rows without a station id are skipped; a missing or unreadable level or
    time is kept as None (the caller says which station it was). Raises
    FeedError ``unexpected_shape`` when there is no ``waterlevel_data.data`` list.
    """
    rows = _rows_of(doc, "waterlevel_data", "data")
    if rows is None:
        rows = _rows_of(doc, "data", "waterlevel_data", "data")
    if rows is None:
        keys = sorted(doc)[:8] if isinstance(doc, dict) else type(doc).__name__
        raise FeedError("unexpected_shape", f"waterlevel_load has no waterlevel_data.data list (top level: {keys}); "
                        "ThaiWater may have changed its API: see docs/feeds.md")
    records = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("station"), dict):
            continue
        st = row["station"]
        if st.get("id") is None:
            continue
        agency = row.get("agency") if isinstance(row.get("agency"), dict) else {}
        short = agency.get("agency_shortname") if isinstance(agency.get("agency_shortname"), dict) else {}
        situation = number(row.get("situation_level"))
        records.append(WaterLevelRecord(
            station_id=str(st["id"]),
            oldcode=_text(st.get("tele_station_oldcode")),
            name_th=_name(st.get("tele_station_name"), "th"),
            name_en=_name(st.get("tele_station_name"), "en"),
            ts_s=bangkok_time(row.get("waterlevel_datetime")),
            level_msl_m=number(row.get("waterlevel_msl")),
            lat=number(st.get("tele_station_lat")),
            lon=number(st.get("tele_station_long")),
            min_bank_m=number(st.get("min_bank")),
            left_bank_m=number(st.get("left_bank")),
            right_bank_m=number(st.get("right_bank")),
            ground_level_m=number(st.get("ground_level")),
            situation_level=None if situation is None else int(situation),
            agency=_text(short.get("en")) or _text(short.get("th")),
        ))
    return records


def parse_waterlevel_graph(doc: Any) -> list[tuple[float, float]]:
    """(UTC epoch s, level m MSL) of a decoded ``waterlevel_graph`` answer, time order, gaps left out."""
    rows = _rows_of(doc, "data", "graph_data")
    if rows is None:
        raise FeedError("unexpected_shape", "waterlevel_graph has no data.graph_data list; ThaiWater may have "
                        "changed its API: see docs/feeds.md")
    points = []
    for p in rows:
        if not isinstance(p, dict):
            continue
        ts_s, value = bangkok_time(p.get("datetime")), number(p.get("value"))
        if ts_s is not None and value is not None:
            points.append((ts_s, value))
    points.sort()
    return points


def parse_dams(doc: Any) -> list[DamRecord]:
    """Every reservoir's release in a decoded dam answer, in m3/s.

    ``dam_daily`` releases are million m3 per day (x 1e6 / 86400), ``dam_hourly``
    million m3 in the hour (x 1e6 / 3600). Accepts ``data.dam_daily`` /
    ``data.dam_hourly`` (analyst/dam, provinces/dam) and ``dam.data.data``
    (public/thailand_main, daily).
    """
    sections: list[tuple[str, list]] = []
    for period in ("hourly", "daily"):
        rows = _rows_of(doc, "data", f"dam_{period}")
        if rows is not None:
            sections.append((period, rows))
    main = _rows_of(doc, "dam", "data", "data")
    if main is not None:
        sections.append(("daily", main))
    if not sections:
        raise FeedError("unexpected_shape", "the dam answer has no data.dam_daily / data.dam_hourly list; "
                        "ThaiWater may have changed its API: see docs/feeds.md")
    records = []
    for period, rows in sections:
        seconds = 3600.0 if period == "hourly" else 86_400.0
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("dam"), dict) or row["dam"].get("id") is None:
                continue
            dam = row["dam"]
            released_mcm = number(row.get("dam_released"))
            when = row.get("dam_datetime") or row.get("dam_date")
            records.append(DamRecord(
                dam_id=str(dam["id"]),
                oldcode=_text(dam.get("dam_oldcode")),
                name_th=_name(dam.get("dam_name"), "th"),
                name_en=_name(dam.get("dam_name"), "en"),
                ts_s=bangkok_time(when),
                released_m3_s=None if released_mcm is None else released_mcm * 1e6 / seconds,
                period=period,
            ))
    return records


def looks_like_centimetres(level_m: float, station: StationConfig) -> bool:
    """A level outside the station's range that would fit it divided by 100: sent in cm by mistake."""
    inside = station.min_level_m <= level_m <= station.max_level_m
    return not inside and station.min_level_m <= level_m / 100.0 <= station.max_level_m


# ------------------------------------------------------------------ the shell
class ThaiWaterFeed:
    """Fetch the configured gauges and dams, catch up after downtime, store once.

    The cursor is, per station, the time up to which everything the source has
    is stored. A gap (the first run, downtime, a failed catch-up) is filled from
    ``waterlevel_graph``, never further back than ``catch_up_h``.
    """

    kind = "thaiwater"

    def __init__(self, cfg: FeedConfig, settings: Settings, writer: FeedWriter, state: FeedState,
                 clock: Clock) -> None:
        self.cfg = cfg
        self.settings = settings
        self.writer = writer
        self.state = state
        self.clock = clock
        self.stations = [s for s in settings.stations if s.feed == cfg.id]
        self.base = (cfg.url or "").rstrip("/")

    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        url = f"{self.base}/{path}" + (f"?{urlencode(query)}" if query else "")
        return _http.get_json(url, self.cfg.timeout_s, feed_id=self.cfg.id)

    def run_once(self) -> RunReport:
        now_s = self.clock.now_s()
        report = RunReport()
        cursor: dict[str, float] = dict(self.state.cursor(self.cfg.id) or {})
        new_cursor = dict(cursor)
        values: list[FeedValue] = []
        levels = [s for s in self.stations if s.kind == "water_level"]
        dams = [s for s in self.stations if s.kind == "discharge"]
        for part, stations in (("levels", levels), ("dams", dams)):
            if not stations:
                continue
            try:
                if part == "levels":
                    values += self._levels(stations, cursor, new_cursor, now_s, report)
                else:
                    values += self._dams(stations, cursor, new_cursor, now_s, report)
            except FeedError as err:
                # One endpoint down: the other part is still stored; this part's cursors stay.
                report.ok = False
                report.error = report.error or _problem(now_s, err)
                for s in stations:
                    new_cursor.pop(s.id, None)
                    if s.id in cursor:
                        new_cursor[s.id] = cursor[s.id]
        report.fetched = len(values)
        outcome = self.writer.write_values(values, now_s)
        report.stored = len(outcome.stored)
        report.duplicates = outcome.duplicates
        report.rejected = len(outcome.rejected)
        for err in outcome.rejected:
            report.problem(now_s, err.reason, err.detail, err.station_id)
        for r in outcome.qc_failed:
            report.problem(now_s, "qc_failed", f"{r.station_id} at {to_bangkok(r.ts_s):%Y-%m-%d %H:%M} failed QC "
                           f"({r.qc_tests}); stored flagged, not used by forecasts", r.station_id)
        self.state.set_cursor(self.cfg.id, new_cursor)
        return report

    # -------------------------------------------------------------- levels
    def _levels(self, stations: list[StationConfig], cursor: dict[str, float], new_cursor: dict[str, float],
                now_s: float, report: RunReport) -> list[FeedValue]:
        records = parse_waterlevel_load(self._get(WATERLEVEL_PATH))
        index: dict[str, WaterLevelRecord] = {}
        for rec in records:
            index.setdefault(rec.station_id, rec)
            if rec.oldcode:
                index.setdefault(rec.oldcode, rec)
        values: list[FeedValue] = []
        for s in stations:
            key = s.feed_station or s.id
            rec = index.get(key)
            if rec is None:
                report.missing.add(s.id)
                report.problem(now_s, "missing_station",
                               f"ThaiWater's answer has no gauge {key!r} ({s.id}); the agency's gauge may be "
                               "offline, or the id is wrong (see station.id / tele_station_oldcode)", s.id)
                continue
            if rec.ts_s is None or rec.level_msl_m is None:
                report.missing.add(s.id)
                report.problem(now_s, "no_value", f"ThaiWater lists {key!r} ({s.id}) without a level or time", s.id)
                continue
            report.last_data_s[s.id] = rec.ts_s
            level = rec.level_msl_m + s.feed_offset_m
            if looks_like_centimetres(level, s):
                report.problem(now_s, "looks_like_centimetres",
                               f"{key} ({s.id}) reported {rec.level_msl_m:g}, outside [{s.min_level_m:g}, "
                               f"{s.max_level_m:g}] m; {level / 100:.2f} m would fit: the source may have sent "
                               "centimetres. It is stored flagged by QC and not used", s.id)
            if now_s - rec.ts_s > self.cfg.stale_after_s:
                report.stale.add(s.id)
                report.problem(now_s, "stale",
                               f"ThaiWater still reports {key} ({s.id}) at {to_bangkok(rec.ts_s):%Y-%m-%d %H:%M} "
                               f"Bangkok, {(now_s - rec.ts_s) / 3600:.0f} h old: flagged stale, not stored as new",
                               s.id)
                continue
            last = cursor.get(s.id)
            if last is not None and rec.ts_s <= last:
                continue  # nothing new since the last run
            values.append(FeedValue(s.id, rec.ts_s, "water_level_m", level))
            floor = now_s - self.cfg.catch_up_h * 3600.0
            gap_from = floor if last is None else max(last, floor)
            complete = True
            if rec.ts_s - gap_from > 1.5 * s.publish_interval_s:
                try:
                    history = self._history(rec.station_id, gap_from, now_s)
                except FeedError as err:
                    complete = False
                    report.problem(now_s, "catch_up_failed",
                                   f"could not fetch {key}'s history since {to_bangkok(gap_from):%Y-%m-%d %H:%M} "
                                   f"({err.detail}); the gap is retried next run", s.id)
                else:
                    values += [FeedValue(s.id, t, "water_level_m", v + s.feed_offset_m)
                               for t, v in history if gap_from < t < rec.ts_s]
            if complete:
                new_cursor[s.id] = rec.ts_s
        return values

    def _history(self, thaiwater_id: str, start_s: float, end_s: float) -> list[tuple[float, float]]:
        start = to_bangkok(start_s).date()
        end = to_bangkok(end_s).date() + timedelta(days=1)
        doc = self._get(GRAPH_PATH, {"station_type": "tele_waterlevel", "station_id": thaiwater_id,
                                     "start_date": start.isoformat(), "end_date": end.isoformat()})
        return parse_waterlevel_graph(doc)

    # ---------------------------------------------------------------- dams
    def _dams(self, stations: list[StationConfig], cursor: dict[str, float], new_cursor: dict[str, float],
              now_s: float, report: RunReport) -> list[FeedValue]:
        records = parse_dams(self._get(DAM_PATH))
        newest: dict[str, DamRecord] = {}
        for rec in records:
            if rec.ts_s is None or rec.released_m3_s is None:
                continue
            for key in (rec.dam_id, rec.oldcode):
                if key and (key not in newest or rec.ts_s > newest[key].ts_s):  # type: ignore[operator]
                    newest[key] = rec
        values: list[FeedValue] = []
        for s in stations:
            key = s.feed_station or s.id
            rec = newest.get(key)
            if rec is None:
                report.missing.add(s.id)
                report.problem(now_s, "missing_station",
                               f"ThaiWater's dam answer has no reservoir {key!r} ({s.id}) with a release; check "
                               "the id (dam.id or dam_oldcode)", s.id)
                continue
            assert rec.ts_s is not None and rec.released_m3_s is not None
            report.last_data_s[s.id] = rec.ts_s
            stale_after_s = max(self.cfg.stale_after_s, DAILY_STALE_AFTER_S if rec.period == "daily" else 0.0)
            if now_s - rec.ts_s > stale_after_s:
                report.stale.add(s.id)
                report.problem(now_s, "stale",
                               f"ThaiWater still reports {key}'s release ({s.id}) for "
                               f"{to_bangkok(rec.ts_s):%Y-%m-%d %H:%M}: flagged stale, not stored as new", s.id)
                continue
            last = cursor.get(s.id)
            if last is not None and rec.ts_s <= last:
                continue
            values.append(FeedValue(s.id, rec.ts_s, "discharge_m3_s", rec.released_m3_s))
            new_cursor[s.id] = rec.ts_s
        return values


def _problem(now_s: float, err: FeedError):  # noqa: ANN202 - Problem
    from floodwatch.feeds._health import Problem

    return Problem(now_s, err.reason, err.detail, err.station_id)
