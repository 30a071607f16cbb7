"""Exports: readings, forecasts and the alert log as CSV or JSON, streamed, for a station or zone and a time range.

``GET /api/export/{readings|forecasts|alerts}.{csv|json}?station=LP-W01&zone=moo-5&start=...&end=...&era=be``

Rows come from the store's and the alert service's generators (a chunk of
rows at a time), are formatted by the pure functions below and leave as
they are made, so a year of 10-minute data for every station goes out in
constant memory (tests/gauge_page/test_export.py measures it). Units and
times are the page's: levels in m above mean sea level, rain in mm, times in
Bangkok (``+07:00``), Buddhist-era years with ``era=be``; every row also
carries UTC epoch seconds for machines.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from floodwatch.timefmt import BANGKOK, BUDDHIST_ERA_OFFSET_YEARS, to_bangkok
from floodwatch.vocabulary import QcFlag, StationId
from floodwatch.gauge_page._context import PageContext

log = logging.getLogger(__name__)

Kind = Literal["readings", "forecasts", "alerts"]
Era = Literal["ce", "be"]
ROWS_PER_CHUNK = 500
MAX_CONCURRENT_EXPORTS = 2
DEFAULT_DAYS = 7.0

COLUMNS: dict[str, tuple[str, ...]] = {
    "readings": ("station_id", "station_name_en", "time", "ts_utc_s", "water_level_m", "rain_mm", "battery_v",
                 "rssi_dbm", "qc_flag", "qc", "qc_tests", "seq", "boot"),
    "forecasts": ("station_id", "station_name_en", "time", "ts_utc_s", "issued", "issued_utc_s", "lead_h",
                  "median_m", "lower_5_m", "upper_95_m"),
    "alerts": ("id", "time", "ts_utc_s", "zone_id", "zone_name_th", "zone_name_en", "station_id", "kind", "audience",
               "level", "level_name_th", "level_name_en", "recipients", "delivered", "failed", "state",
               "acknowledged_by", "text"),
}
UNITS = {"water_level_m": "m above mean sea level", "rain_mm": "mm since the previous reading",
         "battery_v": "V", "rssi_dbm": "dBm", "median_m": "m above mean sea level",
         "lower_5_m": "m, 5 % quantile", "upper_95_m": "m, 95 % quantile", "lead_h": "hours ahead",
         "time": "Asia/Bangkok", "ts_utc_s": "UTC epoch seconds"}


# ------------------------------------------------------------------- pure parts
def bangkok_time(ts_s: float | None, era: Era = "ce") -> str | None:
    """``2026-11-29T14:05:00+07:00``; with ``era="be"`` ``2569-11-29 14:05:00`` (Bangkok, Buddhist era)."""
    if ts_s is None or not math.isfinite(ts_s):
        return None
    t = to_bangkok(ts_s)
    if era == "be":
        return f"{t.year + BUDDHIST_ERA_OFFSET_YEARS:04d}-{t:%m-%d %H:%M:%S}"
    return t.isoformat(timespec="seconds")


def parse_when(text: str | None, default_s: float, end_of_day: bool = False) -> float:
    """A query's time: epoch seconds, ISO-8601 with an offset, or a Bangkok date/time without one.

    ``2026-11-29`` is that day in Bangkok (its end with ``end_of_day``); a year above 2400 is
    read as Buddhist era (2569 -> 2026). Raises ValueError naming the expected forms.
    """
    if text is None or text == "":
        return default_s
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"time {text!r} is not epoch seconds or ISO-8601 (2026-11-29 or 2026-11-29T14:05+07:00)"
                         ) from exc
    if when.year > 2400:
        when = when.replace(year=when.year - BUDDHIST_ERA_OFFSET_YEARS)
    date_only = len(text) <= 10
    if when.tzinfo is None:
        when = when.replace(tzinfo=BANGKOK)
    if date_only and end_of_day:
        when += timedelta(days=1)
    return when.timestamp()


def _num(v: float | None, digits: int) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def reading_rows(readings: Iterable[Any], names: Mapping[StationId, str], era: Era) -> Iterator[dict[str, Any]]:
    for r in readings:
        yield {
            "station_id": r.station_id, "station_name_en": names.get(r.station_id, ""),
            "time": bangkok_time(r.ts_s, era), "ts_utc_s": round(r.ts_s, 3),
            "water_level_m": _num(r.water_level_m, 3), "rain_mm": _num(r.rain_mm, 2),
            "battery_v": _num(r.battery_v, 3), "rssi_dbm": _num(r.rssi_dbm, 1),
            "qc_flag": int(r.qc_flag), "qc": QcFlag(r.qc_flag).name.lower(), "qc_tests": r.qc_tests or "",
            "seq": r.seq, "boot": r.boot,
        }


def forecast_rows(points: Iterable[Any], names: Mapping[StationId, str], era: Era) -> Iterator[dict[str, Any]]:
    for p in points:
        yield {
            "station_id": p.station_id, "station_name_en": names.get(p.station_id, ""),
            "time": bangkok_time(p.t_s, era), "ts_utc_s": round(p.t_s, 3),
            "issued": bangkok_time(p.issued_s, era), "issued_utc_s": round(p.issued_s, 3),
            "lead_h": round(p.lead_s / 3600.0, 3), "median_m": _num(p.median_m, 3),
            "lower_5_m": _num(p.lower_m, 3), "upper_95_m": _num(p.upper_m, 3),
        }


def alert_rows(entries: Iterable[dict[str, Any]], era: Era) -> Iterator[dict[str, Any]]:
    levels = {"NORMAL": 0, "WATCH": 1, "WARNING": 2, "EVACUATE": 3}
    for e in entries:
        yield {
            "id": e["id"], "time": bangkok_time(e["time_s"], era), "ts_utc_s": round(e["time_s"], 3),
            "zone_id": e.get("zone"), "zone_name_th": e.get("zone_name_th"), "zone_name_en": e.get("zone_name_en"),
            "station_id": e.get("station"), "kind": e["kind"], "audience": e["audience"],
            "level": levels.get(e["level"], e["level"]), "level_name_th": e["level_name_th"],
            "level_name_en": e["level_name_en"], "recipients": e["recipients"], "delivered": e["delivered"],
            "failed": e["failed"], "state": e["state"], "acknowledged_by": e.get("acknowledged_by"),
            "text": e["text"],
        }


def csv_chunks(kind: str, rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """UTF-8 CSV with a byte-order mark (so spreadsheet programs read the Thai right), a chunk at a time."""
    columns = COLUMNS[kind]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    buf.write("\ufeff")
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
        n += 1
        if n % ROWS_PER_CHUNK == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def json_chunks(meta: dict[str, Any], rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """``{...meta, "rows": [...]}`` written as the rows come."""
    head = json.dumps(meta, ensure_ascii=False)
    yield (head[:-1] + ', "rows": [').encode("utf-8")
    parts: list[str] = []
    first = True
    for row in rows:
        parts.append(("" if first else ",\n") + json.dumps(row, ensure_ascii=False, allow_nan=False))
        first = False
        if len(parts) >= ROWS_PER_CHUNK:
            yield "".join(parts).encode("utf-8")
            parts = []
    parts.append("]}\n")
    yield "".join(parts).encode("utf-8")


# --------------------------------------------------------------------- the router
def export_router(ctx: PageContext) -> APIRouter:
    router = APIRouter(prefix="/api/export", tags=["read"])
    busy = threading.BoundedSemaphore(MAX_CONCURRENT_EXPORTS)
    settings = ctx.settings
    names = {s.id: s.name_en for s in settings.stations}

    def choose_stations(stations: list[str], zones: list[str]) -> list[str]:
        known = {s.id for s in settings.stations}
        unknown = [s for s in stations if s not in known]
        if unknown:
            raise HTTPException(404, f"station {unknown[0]!r} is not in {settings.config_file}")
        zone_ids = {z.id for z in settings.zones}
        bad = [z for z in zones if z not in zone_ids]
        if bad:
            raise HTTPException(404, f"zone {bad[0]!r} is not in {settings.config_file}")
        # A zone is its own gauges; another agency's station is exported when named.
        chosen = list(dict.fromkeys(stations + [s.id for s in settings.own_stations if s.zone in zones]))
        return chosen or [s.id for s in settings.stations]

    @router.get(
        "/{kind}.{fmt}",
        summary="Readings, forecasts or the alert log as CSV or JSON, streamed (Bangkok time, page units)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}, "application/json": {}},
                         "description": "a file to download"}, 429: {"description": "two exports already running"}},
    )
    def export(
        kind: Kind,
        fmt: Literal["csv", "json"],
        station: Annotated[list[str] | None, Query(description="station id; repeat for several")] = None,
        zone: Annotated[list[str] | None,
                        Query(description="zone id: its stations (readings, forecasts) or its alerts")] = None,
        start: Annotated[str | None,
                         Query(description="from: epoch s, ISO-8601, or a Bangkok date (2026-11-01)")] = None,
        end: Annotated[str | None, Query(description="to (exclusive; a date means its end); default now")] = None,
        era: Annotated[Era, Query(description="'be' writes Buddhist-era years (2569)")] = "ce",
    ) -> StreamingResponse:
        station = station or []
        zone = zone or []
        now_s = ctx.clock.now_s()
        try:
            end_s = parse_when(end, now_s, end_of_day=True)
            start_s = parse_when(start, end_s - DEFAULT_DAYS * 86_400.0)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        if not end_s > start_s:
            raise HTTPException(422, "end must be after start")
        chosen = choose_stations(station, zone)
        if kind == "alerts" and ctx.alerts is None:
            raise HTTPException(503, "the alert service is not running in this process; its log cannot be exported")
        if kind == "forecasts" and not hasattr(ctx.store, "iter_forecasts"):
            raise HTTPException(503, "this store keeps no forecasts")
        if not busy.acquire(blocking=False):
            raise HTTPException(429, f"{MAX_CONCURRENT_EXPORTS} exports are running; try again when one finishes")

        def rows() -> Iterator[dict[str, Any]]:
            if kind == "readings":
                yield from reading_rows(ctx.store.iter_readings([StationId(s) for s in chosen], start_s, end_s),
                                        names, era)
            elif kind == "forecasts":
                yield from forecast_rows(ctx.store.iter_forecasts([StationId(s) for s in chosen], start_s, end_s),
                                         names, era)
            else:
                zones_wanted = zone or ([settings.station(s).zone for s in station] if station else None)
                yield from alert_rows(ctx.alerts.iter_log(start_s, end_s, zones_wanted), era)

        meta = {"kind": kind, "site": settings.site.id, "stations": chosen if kind != "alerts" else None,
                "zones": zone or None, "start": bangkok_time(start_s, era), "end": bangkok_time(end_s, era),
                "start_utc_s": start_s, "end_utc_s": end_s, "timezone": "Asia/Bangkok",
                "era": era, "units": {c: u for c, u in UNITS.items() if c in COLUMNS[kind]},
                "columns": list(COLUMNS[kind])}

        release_lock = threading.Lock()
        held = [True]

        def release() -> None:
            with release_lock:
                if held[0]:
                    held[0] = False
                    busy.release()

        def body() -> Iterator[bytes]:
            try:
                yield from (csv_chunks(kind, rows()) if fmt == "csv" else json_chunks(meta, rows()))
            finally:
                release()

        what = "-".join(station or zone or []) or "all"
        span = f"{to_bangkok(start_s):%Y%m%d}_{to_bangkok(end_s):%Y%m%d}"
        filename = f"floodwatch-{kind}-{what}-{span}.{fmt}"
        log.info("event=export kind=%s fmt=%s stations=%d start_s=%.0f end_s=%.0f", kind, fmt, len(chosen),
                 start_s, end_s)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        stream = body()
        # A client gone before the first byte leaves a generator that never ran its finally.
        weakref.finalize(stream, release)
        return StreamingResponse(stream, media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                          "Cache-Control": "no-store"})

    return router
