"""The live gauge page as one FastAPI application: pages, JSON API, live events, metrics."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from floodwatch import metrics
from floodwatch.clock import Clock
from floodwatch.errors import StoreError
from floodwatch.settings import Settings
from floodwatch.gauge_page import _actions
from floodwatch.gauge_page._api import api_router
from floodwatch.gauge_page._context import PageContext
from floodwatch.gauge_page._hub import EventHub
from floodwatch.gauge_page._officer import officer_router
from floodwatch.gauge_page._residents import residents_router
from floodwatch.gauge_page._proxy import TrustedProxyHeaders
from floodwatch.gauge_page._state import PageState, sqlite_path

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"

# The pages load nothing but their own origin's files: no CDN, no inline
# script, no framing by another site (clickjacking an officer's session).
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

metrics.describe("floodwatch_last_reading_age_seconds", "gauge", "seconds since each station's newest stored reading")


MAX_REQUEST_BYTES = 1 << 20


class _BodyLimit:
    """Refuse request bodies over ``max_bytes`` before any handler has them.

    A declared ``Content-Length`` over the limit is answered 413 at once,
    without reading the body. A body sent without one (chunked) is counted as
    it arrives and refused with 413 as soon as it passes the limit, so a
    handler never holds more than ``max_bytes`` of it.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"requests are at most {self.max_bytes} bytes"
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            event = await receive()
            if event.get("type") == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI passes an HTTPException from reading the body through as it is: a 413
                    raise HTTPException(413, message)
            return event

        await self.app(scope, counted, send)


def create_app(
    settings: Settings,
    store: Any,
    clock: Clock,
    *,
    hub: EventHub,
    alerts: Any = None,
    forecasts: Any = None,
    ingest: Any = None,
    state: PageState | None = None,
    feeds: Any = None,
) -> FastAPI:
    """Build the gauge page.

    ``store`` follows ``store.base.Store``. ``alerts`` (``alerts.AlertService``),
    ``forecasts`` (``scheduler.ForecastJob``) and ``ingest``
    (``ingest.IngestService``) are optional: without them their panels say
    "not running"; so is ``feeds`` (``feeds.FeedService``), whose health the
    page shows for external stations. ``state`` defaults to the SQLite file at
    ``settings.page.state_url`` (officers, sessions, audit log, maintenance).
    """
    if state is None:
        state = PageState(sqlite_path(settings.page.state_url),
                          session_max_age_s=settings.page.session_max_age_s)
    state.use_configured_officers(settings.page.officers)
    ctx = PageContext(settings=settings, store=store, clock=clock, hub=hub, state=state,
                      alerts=alerts, forecasts=forecasts, ingest=ingest, feeds=feeds)
    hub.add_listener(ctx.on_hub_event)
    # Maintenance flags outlive restarts: hand them to a fresh alert service.
    if alerts is not None and hasattr(alerts, "set_maintenance"):
        for station_id, flag in state.maintenance().items():
            _actions.set_maintenance(alerts, station_id, True, by=flag["username"])

    app = FastAPI(
        title="floodwatch live gauge page",
        description="Water levels, forecasts and alerts for "
        f"{settings.site.name_en} ({settings.site.name_th}). Times are UTC epoch seconds.",
        version="0.1.0",
        docs_url=None,  # served below from vendored files: no CDN, works offline
        redoc_url=None,
    )
    app.state.page = ctx
    # uvicorn runs with proxy_headers off: which proxy to believe is the site's setting, decided here.
    app.add_middleware(TrustedProxyHeaders, trusted=settings.page.trusted_proxies)

    # Officers' actions and LINE's webhooks are small; a huge body is an attack or a bug.
    app.add_middleware(_BodyLimit, max_bytes=MAX_REQUEST_BYTES)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes each invalid field's value: a password too long for the
        # login form would come back in the error body (and into any proxy's log). Where and what, not the value.
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        # The page stays up and says why; the next refresh will try again.
        log.warning("event=page_store_error path=%s error=%s", request.url.path, exc)
        return JSONResponse({"detail": f"the store cannot be read right now: {exc}"}, status_code=503)
    app.include_router(api_router(ctx))
    app.include_router(officer_router(ctx))
    app.include_router(residents_router(ctx))  # reports, quota, loudspeakers (docs/page.md)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def collect_reading_ages() -> None:
        now_s = clock.now_s()
        try:
            latest = store.latest()
        except Exception:  # a closed or failing store must not break /metrics
            log.warning("event=metrics_latest_failed", exc_info=True)
            return
        for station_id, reading in latest.items():
            metrics.set_gauge("floodwatch_last_reading_age_seconds", now_s - reading.ts_s, station=station_id)

    metrics.add_collector(collect_reading_ages)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    @app.get("/public", include_in_schema=False)
    def public() -> FileResponse:
        return FileResponse(STATIC_DIR / "public.html", headers=_PAGE_HEADERS)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=metrics.CONTENT_TYPE)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="floodwatch API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    @app.get("/api/time", tags=["read"], summary="The page's notion of now (the demo runs accelerated time)")
    def now() -> dict[str, float]:
        return {"now_s": clock.now_s(), "wall_s": time.time(), "factor": float(getattr(clock, "factor", 1.0))}

    return app
