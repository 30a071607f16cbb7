"""The read-only JSON API the page itself uses (and anyone may script against)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, StreamingResponse

from floodwatch.errors import ConfigError
from floodwatch.vocabulary import AlertLevel, StationId
from floodwatch.gauge_page._context import MAX_HISTORY_H, PageContext
from floodwatch.gauge_page._hub import to_jsonable
from floodwatch.gauge_page._schemas import (
    AlertsOut,
    FeedsOut,
    ForecastsOut,
    HealthOut,
    ReadingsOut,
    SeriesOut,
    SiteOut,
    StationOut,
    StationsOut,
)

log = logging.getLogger(__name__)


def _row_json(row: Any) -> dict[str, Any]:
    data = to_jsonable(row)
    data.pop("danger", None)
    return data


def _site_map(ctx: PageContext) -> tuple[Any, list[str]]:
    """The site's own map (read once at start), or None and why the page cannot draw it."""
    from floodwatch.sitemap import map_problems, read_map

    settings = ctx.settings
    if settings.map_file is None:
        return None, [f"{settings.config_file} names no map ([site] map = \"site.geojson\")"]
    geojson, unreadable = read_map(settings.map_file)
    if unreadable:
        return None, [f"{settings.map_file}: {unreadable}"]
    anchors = [(s.lon, s.lat) for s in settings.stations]
    problems = map_problems(geojson, [z.id for z in settings.zones], anchors)
    if problems:
        log.warning("event=site_map_invalid map=%s problems=%d first=%s", settings.map_file, len(problems), problems[0])
    return geojson, [f"{settings.map_file}: {p}" for p in problems]


def api_router(ctx: PageContext) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["read"])
    site_map, site_map_problems = _site_map(ctx)

    @router.get("/site", response_model=SiteOut, summary="The municipality this page serves: its names and map")
    def site() -> dict[str, Any]:
        info = ctx.settings.site
        return {"id": info.id, "name_th": info.name_th, "name_en": info.name_en, "timezone": info.timezone,
                "map_url": "/api/site/map" if site_map is not None else None, "map_problems": site_map_problems}

    @router.get("/site/map", summary="The site's map: zone polygons and river lines (GeoJSON, [lon, lat])",
                responses={200: {"content": {"application/geo+json": {}}}, 404: {"description": "the site has no map"}})
    def site_map_geojson() -> JSONResponse:
        if site_map is None:
            raise HTTPException(404, "; ".join(site_map_problems))
        return JSONResponse(site_map, media_type="application/geo+json")

    def known_station(station_id: str) -> None:
        try:
            ctx.settings.station(station_id)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.get("/stations", response_model=StationsOut, summary="Every station with its latest reading and level class, most dangerous first")
    def stations() -> dict[str, Any]:
        rows = ctx.station_rows()
        zone_levels, subscribers, source = ctx.zone_levels(rows)
        return {
            "now_s": ctx.clock.now_s(),
            "clock_factor": float(getattr(ctx.clock, "factor", 1.0)),
            "stations": [_row_json(r) for r in rows],
            "zones": [
                {
                    "id": z.id,
                    "name_th": z.name_th,
                    "name_en": z.name_en,
                    "level": zone_levels.get(z.id, 0),
                    "level_name_th": AlertLevel(zone_levels.get(z.id, 0)).name_th,
                    "level_name_en": AlertLevel(zone_levels.get(z.id, 0)).name_en,
                    "subscribers": subscribers.get(z.id),
                }
                for z in ctx.settings.zones
            ],
            "zone_level_source": source,
        }

    @router.get("/stations/{station_id}", response_model=StationOut, summary="One station's overview row and registry entry")
    def station(station_id: str) -> dict[str, Any]:
        known_station(station_id)
        row = next(r for r in ctx.station_rows() if r.id == station_id)
        return {"now_s": ctx.clock.now_s(), "station": _row_json(row),
                "config": to_jsonable(ctx.settings.station(station_id).model_dump())}

    @router.get("/stations/{station_id}/readings", response_model=ReadingsOut, summary="Raw stored readings of one station, oldest first")
    def readings(station_id: str, hours: float = Query(24.0, gt=0, le=MAX_HISTORY_H)) -> dict[str, Any]:
        known_station(station_id)
        now_s = ctx.clock.now_s()
        rows = ctx.store.read_readings(StationId(station_id), now_s - hours * 3600.0, now_s + 1.0)
        return {"station_id": station_id, "now_s": now_s, "readings": to_jsonable(rows)}

    @router.get("/stations/{station_id}/series", response_model=SeriesOut, summary="Chart data: history, QC-flagged points, rain, forecast band")
    def series(station_id: str, hours: float = Query(48.0, gt=0, le=MAX_HISTORY_H)) -> dict[str, Any]:
        known_station(station_id)
        return ctx.station_series(station_id, hours)

    @router.get("/forecasts", response_model=ForecastsOut, summary="The latest issued forecast for every level station")
    def forecasts() -> dict[str, Any]:
        if ctx.forecasts is None:
            return {"running": False, "issued": None}
        issued = ctx.latest_forecast()
        if issued is None:
            return {"running": True, "issued": None}
        fc = issued.forecast
        return {
            "running": True,
            "issued": to_jsonable(
                {
                    "issued_s": issued.issued_s,
                    "station_ids": list(issued.station_ids),
                    "t_s": fc.t_s,
                    "median_m": fc.median_m,
                    "lower_m": fc.lower_m,
                    "upper_m": fc.upper_m,
                    "exceed_prob": fc.exceed_prob,
                    "first_crossing_s": fc.first_crossing_s,
                    "rise_rate_cm_per_h": fc.rise_rate_cm_per_h,
                    "model_name": list(fc.model_name),
                }
            ),
        }

    @router.get("/alerts", response_model=AlertsOut, response_model_exclude_none=True, summary="The alert log, newest first: what was sent, to which zone, to how many")
    def alerts(limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        if ctx.alerts is None:
            return {"running": False, "entries": []}
        try:
            entries = ctx.alerts.log(limit)
        except Exception as exc:
            log.exception("event=alert_log_failed")
            return {"running": True, "entries": [], "error": f"the alert log could not be read: {exc}"}
        acks = ctx.state.acknowledgements()
        out = []
        for entry in to_jsonable(list(entries)):
            if isinstance(entry, dict):
                entry.update(acks.get(str(entry.get("id")), {}))
            out.append(entry)
        return {"running": True, "entries": out}

    @router.get("/health", response_model=HealthOut, summary="Is each stage running; station health (last seen, battery, signal)")
    def health() -> dict[str, Any]:
        now_s = ctx.clock.now_s()
        store_state: dict[str, Any] = {"ok": True}
        try:
            rows = ctx.station_rows()
        except Exception as exc:
            log.exception("event=health_store_failed")
            store_state = {"ok": False, "error": str(exc)}
            rows = []
        ingest_state: dict[str, Any] = {"running": ctx.ingest is not None}
        if ctx.ingest is not None and hasattr(ctx.ingest, "stats"):
            try:
                ingest_state["stats"] = to_jsonable(ctx.ingest.stats())
            except Exception as exc:
                ingest_state["error"] = str(exc)
        issued = ctx.latest_forecast()
        return {
            "ok": store_state["ok"],
            "now_s": now_s,
            "clock_factor": float(getattr(ctx.clock, "factor", 1.0)),
            "store": store_state,
            "ingest": ingest_state,
            "alerts": {"running": ctx.alerts is not None},
            "forecasts": {"running": ctx.forecasts is not None,
                          "issued_s": issued.issued_s if issued is not None else None},
            "live_clients": ctx.hub.client_count,
            "stations": [
                {k: v for k, v in _row_json(r).items()
                 if k in ("id", "name_th", "name_en", "kind", "ts_s", "data_age_s", "stale", "battery_v",
                          "rssi_dbm", "status", "status_since_s", "maintenance", "qc_name", "external",
                          "feed_health")}
                for r in sorted(rows, key=lambda r: r.id)
            ],
            "feeds": list(ctx.feed_health().values()),
        }

    @router.get("/feeds", response_model=FeedsOut, summary="Each external feed's health: last fetch, data lag, errors")
    def feeds() -> dict[str, Any]:
        running = ctx.feeds is not None
        listed = list(ctx.feed_health().values())
        if not running:
            from floodwatch.feeds import read_health

            # Another process may run the feeds (floodwatch serve beside a read-only page): read their state file.
            try:
                listed = read_health(ctx.settings, ctx.clock.now_s())
            except Exception as exc:
                log.warning("event=feed_state_unreadable error=%s", exc)
                listed = []
        return {"running": running, "now_s": ctx.clock.now_s(), "feeds": listed}

    @router.get(
        "/events",
        summary="Server-sent events: readings, status, forecast, alert, audit, resync",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"}},
    )
    async def events() -> StreamingResponse:
        return StreamingResponse(
            ctx.hub.stream(keepalive_s=ctx.settings.page.keepalive_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
