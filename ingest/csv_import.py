"""Load historical readings from CSV (a ThaiWater export, a logger dump) into the store.

Columns are matched by name, case-insensitively, with the aliases below, so an
export can be loaded without editing:

- station: ``station_id``, ``station``, ``station_code``, ``code`` (or ``--station``)
- time: ``ts``, ``time``, ``datetime``, ``timestamp``, ``date_time`` — ISO-8601
  with or without offset (without: ``tz``, Bangkok by default, as Thai
  exports are local time), ``YYYY-MM-DD HH:MM[:SS]``, epoch seconds;
  Buddhist-era years (2569) are converted (-543).
- values: ``water_level_m`` / ``waterlevel_msl`` / ``level_m`` / ``water_level``,
  ``distance_m``, ``rain_mm`` / ``rainfall`` / ``rain``, ``discharge_m3_s`` /
  ``discharge`` / ``release_m3_s`` / ``outflow_m3_s``, ``battery_v``, ``rssi_dbm``.

Rows are validated like MQTT payloads (physics limits, known station), QC
flagged with the same tests, deduplicated by the store; bad rows are counted
with a reason and never stop the import. Files are UTF-8; Thai Windows exports
(TIS-620 / cp874) are read as such when they are not UTF-8.

Predicted series (``series = "predicted"`` in the registry: a tide table, a
release schedule) may carry future times; each station's rows replace what
was stored for it between the file's first and last time, so loading a new
table supersedes the old one and loading the same table twice changes nothing.
Levels of a station with ``feed_offset_m`` get it added (a tide table above
chart datum brought to the station's datum).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from floodwatch.vocabulary import Reading, StationId
from floodwatch.ingest.checker import QcChecker
from floodwatch.ingest.payload import PHYSICS_LIMITS

if TYPE_CHECKING:
    from floodwatch.settings import Settings

ALIASES = {
    "station": ("station_id", "station", "station_code", "code"),
    "ts": ("ts", "time", "datetime", "timestamp", "date_time", "ts_s"),
    "water_level_m": ("water_level_m", "waterlevel_msl", "level_m", "water_level", "waterlevel_m"),
    "distance_m": ("distance_m",),
    "rain_mm": ("rain_mm", "rainfall", "rain", "rainfall_mm"),
    "battery_v": ("battery_v",),
    "rssi_dbm": ("rssi_dbm",),
    "discharge_m3_s": ("discharge_m3_s", "discharge", "release_m3_s", "outflow_m3_s", "dam_released_m3_s"),
    "seq": ("seq",),
    "boot": ("boot",),
}
BUDDHIST_ERA_OFFSET_YEARS = 543
# Years above this are Buddhist era (2569 BE = 2026 CE); no export holds Common Era years this late.
_BUDDHIST_ERA_FROM_YEAR = 2400
_DAY_FIRST_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y %H.%M", "%d/%m/%Y", "%d-%m-%Y %H:%M")


class RowError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class ImportResult:
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    # Predicted series: station -> (first, last) time whose previous prediction was replaced.
    replaced: dict[str, tuple[float, float]] = field(default_factory=dict)
    encoding: str = "utf-8"


def _columns(header: list[str]) -> dict[str, str]:
    lower = {h.strip().lower(): h for h in header}
    found = {}
    for key, names in ALIASES.items():
        for n in names:
            if n in lower:
                found[key] = lower[n]
                break
    return found


def parse_time(text: str, tz: ZoneInfo) -> float:
    """Epoch seconds from the time forms exports use; naive times are in ``tz``."""
    s = text.strip()
    if not s:
        raise RowError("missing_ts", "empty time")
    try:
        x = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(x) or x > 1e11:
            raise RowError("bad_ts", f"time {s!r} is not epoch seconds")
        return x
    year = s[:4]
    if year.isdigit() and int(year) > _BUDDHIST_ERA_FROM_YEAR:
        s = f"{int(year) - BUDDHIST_ERA_OFFSET_YEARS:04d}{s[4:]}"
    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        when = _day_first(s)
        if when is None:
            raise RowError(
                "bad_ts", f"time {text!r} is not ISO-8601, 'YYYY-MM-DD HH:MM', 'DD/MM/YYYY HH:MM' or epoch seconds"
            ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def _day_first(s: str) -> datetime | None:
    """'31/10/2568 07:00' (RID and ThaiWater exports: day first, often Buddhist era) or None."""
    for fmt in _DAY_FIRST_FORMATS:
        try:
            when = datetime.strptime(s, fmt)
        except ValueError:
            continue
        if when.year > _BUDDHIST_ERA_FROM_YEAR:
            when = when.replace(year=when.year - BUDDHIST_ERA_OFFSET_YEARS)
        return when
    return None


def _number(row: dict, col: str | None, name: str) -> float | None:
    if col is None:
        return None
    raw = (row.get(col) or "").strip()
    if raw == "" or raw.lower() in ("na", "nan", "null", "-", "none"):
        return None
    try:
        v = float(raw)
    except ValueError as exc:
        raise RowError("invalid_field", f"{name}={raw!r} is not a number") from exc
    if not math.isfinite(v):
        raise RowError("non_finite", f"{name}={raw!r} is not finite")
    lo, hi = PHYSICS_LIMITS.get(name, (-math.inf, math.inf))
    if not lo <= v <= hi:
        raise RowError("out_of_physics", f"{name}={v} is outside [{lo}, {hi}]")
    return v


def rows_to_readings(
    rows: Iterator[dict],
    columns: dict[str, str],
    settings: "Settings",
    now_s: float,
    *,
    station: str | None,
    tz: ZoneInfo,
    result: ImportResult,
    aliases: dict[str, str] | None = None,
) -> Iterator[Reading]:
    from floodwatch.ingest.payload import FUTURE_REJECT_S, PREDICTED_AHEAD_S

    stations = {s.id: s for s in settings.stations}
    aliases = aliases or {}
    oldest_s = now_s - settings.store.retention_days * 86_400.0
    for line_no, row in enumerate(rows, start=2):
        result.rows += 1
        try:
            sid = station or (row.get(columns.get("station", ""), "") or "").strip()
            sid = aliases.get(sid, sid)
            cfg = stations.get(sid)
            if cfg is None:
                raise RowError("unknown_station", f"station {sid!r} is not in {settings.config_file}; pass --station or add it")
            ts_s = parse_time(row.get(columns["ts"], "") or "", tz)
            ahead_s = PREDICTED_AHEAD_S if cfg.series == "predicted" else FUTURE_REJECT_S
            if ts_s > now_s + ahead_s:
                raise RowError("future_ts", "time is in the future" if cfg.series != "predicted" else
                               "time is beyond what a prediction may reach; check the year (Buddhist era?)")
            if ts_s < oldest_s:
                raise RowError("too_old", "older than store.retention_days; raise it to keep this history")
            level = _number(row, columns.get("water_level_m"), "water_level_m")
            distance = _number(row, columns.get("distance_m"), "distance_m")
            if level is None and distance is not None and cfg.mount_height_m is not None:
                level = cfg.mount_height_m - distance
            if level is not None:
                level += cfg.feed_offset_m
            rain = _number(row, columns.get("rain_mm"), "rain_mm")
            discharge = _number(row, columns.get("discharge_m3_s"), "discharge_m3_s")
            if cfg.kind == "water_level":
                rain = discharge = None
            elif cfg.kind == "discharge":
                level = rain = None
            else:
                level = discharge = None
            seq = _number(row, columns.get("seq"), "seq")
            boot = _number(row, columns.get("boot"), "boot")
            if level is None and rain is None and discharge is None:
                what = {"water_level": "level", "rain": "rain", "discharge": "discharge"}[cfg.kind]
                raise RowError("no_measurement", f"no {what} value")
            yield Reading(
                station_id=StationId(sid),
                ts_s=ts_s,
                seq=None if seq is None else int(seq),
                boot=None if boot is None else int(boot),
                water_level_m=level,
                rain_mm=rain,
                battery_v=_number(row, columns.get("battery_v"), "battery_v"),
                rssi_dbm=_number(row, columns.get("rssi_dbm"), "rssi_dbm"),
                received_s=now_s,
                discharge_m3_s=discharge,
            )
        except RowError as err:
            result.rejected += 1
            result.reasons[err.reason] += 1
            if len(result.examples) < 5:
                result.examples.append(f"line {line_no}: {err.reason}: {err}")


def import_csv(
    path: Path,
    settings: "Settings",
    store: object,
    now_s: float,
    *,
    station: str | None = None,
    tz: str = "Asia/Bangkok",
    batch_size: int = 5000,
    progress: Callable[[ImportResult], None] | None = None,
    aliases: dict[str, str] | None = None,
) -> ImportResult:
    """Read, validate, QC-flag and store every row of ``path``; return the counts.

    ``aliases`` maps ids used in the file (a feed's own codes, e.g. ``T.13``) to
    registry station ids.
    """
    result = ImportResult()
    zone = ZoneInfo(tz)
    readings = _read_rows(path, settings, now_s, station=station, tz=zone, result=result, aliases=aliases)
    # QC needs each station's readings in time order.
    readings.sort(key=lambda r: (r.station_id, r.ts_s))
    predicted = {s.id for s in settings.stations if s.series == "predicted"}
    observed = [r for r in readings if r.station_id not in predicted]
    checker = QcChecker(settings)
    for start in range(0, len(observed), batch_size):
        chunk = checker.check(observed[start:start + batch_size], now_s)
        stored = store.insert_new(chunk)  # type: ignore[attr-defined]
        result.stored += len(stored)
        result.duplicates += len(chunk) - len(stored)
        if progress is not None:
            progress(result)
    for sid in sorted({r.station_id for r in readings} & predicted):
        rows = [r for r in readings if r.station_id == sid]
        # Judged alone: the previous prediction over these times is being replaced, not extended.
        rows = QcChecker(settings).check(rows, now_s)
        store.replace_readings(sid, rows[0].ts_s, rows[-1].ts_s, rows)  # type: ignore[attr-defined]
        result.stored += len(rows)
        result.replaced[sid] = (rows[0].ts_s, rows[-1].ts_s)
        if progress is not None:
            progress(result)
    return result


def _read_rows(path: Path, settings: "Settings", now_s: float, *, station: str | None, tz: ZoneInfo,
               result: ImportResult, aliases: dict[str, str] | None) -> list[Reading]:
    try:
        return _read_rows_encoded(path, "utf-8-sig", settings, now_s, station=station, tz=tz, result=result,
                                  aliases=aliases)
    except UnicodeDecodeError:
        # Thai Windows exports: TIS-620 / cp874. Count again from scratch.
        fresh = ImportResult()
        rows = _read_rows_encoded(path, "cp874", settings, now_s, station=station, tz=tz, result=fresh,
                                  aliases=aliases)
        result.__dict__.update(fresh.__dict__)
        result.encoding = "cp874"
        return rows


def _read_rows_encoded(path: Path, encoding: str, settings: "Settings", now_s: float, *, station: str | None,
                       tz: ZoneInfo, result: ImportResult, aliases: dict[str, str] | None) -> list[Reading]:
    with open(path, newline="", encoding=encoding) as fh:
        reader = csv.DictReader(fh)
        columns = _columns(reader.fieldnames or [])
        if "ts" not in columns:
            raise RowError("bad_header", f"{path} has no time column; name it one of {', '.join(ALIASES['ts'])}")
        if station is None and "station" not in columns:
            raise RowError("bad_header", f"{path} has no station column; add one or pass --station")
        return list(rows_to_readings(reader, columns, settings, now_s, station=station, tz=tz, result=result,
                                     aliases=aliases))
