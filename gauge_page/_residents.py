"""The page's side of residents: their flood reports (map, list, moderation), the LINE quota, loudspeakers.

Residents' reports are for logged-in officers only (residents were told
their reports are not published: docs/privacy.md); the quota and the
loudspeakers anyone on the page may read. Moderation needs the session and
its CSRF token like every other officer action, and goes in the audit log. The
alert service's "report", "quota" and "loudspeaker"
changes are forwarded to the page's live events.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from floodwatch.gauge_page._context import PageContext
from floodwatch.gauge_page._hub import to_jsonable
from floodwatch.gauge_page._officer import require_officer, session_of
from floodwatch.gauge_page._state import Session

log = logging.getLogger(__name__)

_REPORT_ID = re.compile(r"^R[0-9A-F]{8}$")
_MESSAGE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MODERATION = {"verify": "verified", "hide": "hidden", "reopen": "new"}


class ReportOut(BaseModel):
    id: str = Field(description="R + 8 hex digits, as the resident's thank-you names it")
    ts_s: float
    lat: float
    lon: float
    depth: Literal["ankle", "knee", "waist", "road_closed"]
    depth_th: str
    depth_en: str
    depth_m: float = Field(description="rough depth for the map's colour only")
    zone: str | None
    status: Literal["new", "verified", "hidden"]
    near_station: str | None = Field(description="the level gauge within reports.near_gauge_m, if any")
    station_distance_m: float | None
    has_photo: bool
    address: str | None
    moderated_by: str | None = None
    moderated_s: float | None = None
    anonymised: bool | None = Field(default=None, description="past retention: photo deleted, resident unlinked")


class ReportsOut(BaseModel):
    running: bool
    officer: bool = Field(description="false: not logged in, and no reports are shown (they are not public)")
    hours: float
    reports: list[ReportOut]


class QuotaOut(BaseModel):
    running: bool
    model_config = {"extra": "allow"}


class LoudspeakersOut(BaseModel):
    running: bool
    enabled: bool = False
    connected: bool = False
    ack_timeout_s: float | None = None
    controllers: list[dict[str, Any]] = []
    commands: list[dict[str, Any]] = []


def residents_router(ctx: PageContext) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["residents"])
    alerts = ctx.alerts
    if alerts is not None and hasattr(alerts, "add_listener"):
        alerts.add_listener(lambda kind, data: ctx.hub.publish(kind, data))

    def officer(request: Request) -> Session:
        return require_officer(ctx, request)

    def service(name: str) -> Any:
        if alerts is None or not hasattr(alerts, name):
            raise HTTPException(503, "the alert service is not running in this process; start floodwatch serve")
        return alerts

    @router.get("/reports", response_model=ReportsOut, response_model_exclude_none=True,
                summary="Residents' flood reports, newest first (officers only: without a log-in the list is empty)")
    def reports(request: Request, hours: float = Query(72.0, gt=0, le=24 * 14)) -> dict[str, Any]:
        is_officer = session_of(ctx, request) is not None
        if alerts is None or not hasattr(alerts, "reports") or not is_officer:
            return {"running": alerts is not None and hasattr(alerts, "reports"), "officer": is_officer,
                    "hours": hours, "reports": []}
        return {"running": True, "officer": is_officer, "hours": hours,
                "reports": to_jsonable(alerts.reports(hours, officer=is_officer))}

    @router.get("/reports/{report_id}/photo", response_class=FileResponse,
                responses={200: {"content": {"image/jpeg": {}}, "description": "the report's photo (EXIF removed)"}},
                summary="A report's photo (officer)")
    def photo(report_id: str, request: Request) -> FileResponse:
        if session_of(ctx, request) is None:
            raise HTTPException(401, "log in as an officer to see residents' photos")
        if not _REPORT_ID.match(report_id):
            raise HTTPException(404, f"{report_id!r} is not a report id (R + 8 hex digits)")
        path = service("report_photo").report_photo(report_id)
        if path is None:
            raise HTTPException(404, f"report {report_id} has no photo (none was sent, or it passed retention)")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})

    @router.post("/reports/{report_id}/{action}", response_model=ReportOut, response_model_exclude_none=True,
                 summary="Verify, hide or reopen a resident's report (officer, audited)")
    def moderate(report_id: str, action: Literal["verify", "hide", "reopen"],
                 session: Session = Depends(officer)) -> dict[str, Any]:  # noqa: B008
        row = service("moderate_report").moderate_report(report_id, MODERATION[action], by=session.username)
        if row is None:
            raise HTTPException(404, f"there is no report {report_id!r}")
        ctx.state.record(ts_s=ctx.clock.now_s(), username=session.username, action=f"report_{action}",
                         target=report_id, detail={"status": row["status"], "zone": row["zone"]})
        log.info("event=officer_action user=%s action=report_%s target=%s", session.username, action, report_id)
        ctx.hub.publish("audit", {"action": f"report_{action}", "target": report_id, "username": session.username})
        return to_jsonable(row)

    @router.get("/quota", response_model=QuotaOut,
                summary="This month's LINE messages against the plan, and shortfalls officers were warned of")
    def quota() -> dict[str, Any]:
        if alerts is None or not hasattr(alerts, "quota_status"):
            return {"running": False}
        return {"running": True, **to_jsonable(alerts.quota_status())}

    @router.get("/loudspeakers", response_model=LoudspeakersOut,
                summary="Village loudspeaker controllers and their recent commands (acknowledged, undelivered...)")
    def loudspeakers() -> dict[str, Any]:
        if alerts is None or not hasattr(alerts, "loudspeakers"):
            return {"running": False}
        return {"running": True, **to_jsonable(alerts.loudspeakers.status())}

    @router.get("/loudspeakers/audio/{message_id}.wav", response_class=FileResponse,
                responses={200: {"content": {"audio/wav": {}}, "description": "the command's spoken Thai message"}},
                summary="The spoken message of one loudspeaker command (what controllers fetch)")
    def audio(message_id: str) -> FileResponse:
        if not _MESSAGE_ID.match(message_id):
            raise HTTPException(404, f"{message_id!r} is not a command's message id")
        path = service("loudspeakers").loudspeakers.audio_path(message_id)
        if not path.exists():
            raise HTTPException(404, f"no spoken file for {message_id} (espeak-ng missing, or the text is for the "
                                     "announcer)")
        return FileResponse(path, media_type="audio/wav")

    return router
