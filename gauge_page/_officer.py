"""Officer login, sessions, CSRF and the actions behind them, each written to the audit log.

Security model: a session cookie (HttpOnly, SameSite=Strict) names a
server-side session; every state-changing request must also carry that
session's CSRF token in the ``X-CSRF-Token`` header (synchronizer token).
Login accepts only ``application/json`` from the page's own origin, which a
cross-site form cannot send. Without a session an action answers 401, with a
wrong or missing token 403, and nothing happens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from floodwatch.errors import ConfigError
from floodwatch.gauge_page import _actions
from floodwatch.gauge_page._context import PageContext
from floodwatch.gauge_page._hub import to_jsonable
from floodwatch.gauge_page._proxy import normalize_origin
from floodwatch.gauge_page._schemas import ActionOut, AuditOut, PreviewOut, SessionOut
from floodwatch.gauge_page._state import Session
from floodwatch.gauge_page._throttle import LoginThrottle

log = logging.getLogger(__name__)

SESSION_COOKIE = "fw_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_MESSAGE_CHARS = 1000


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class MaintenanceBody(BaseModel):
    on: bool
    note: str = Field(default="", max_length=300)


class MessageBody(BaseModel):
    zones: list[str] = Field(min_length=1, max_length=100, description="zone ids, e.g. ['moo-5', 'moo-6']")
    text_th: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=r"\S",
                         description="must have some text: residents read Thai first")
    text_en: str = Field(default="", max_length=MAX_MESSAGE_CHARS)


class SendBody(MessageBody):
    confirm_token: str = Field(min_length=1, description="from /api/messages/preview for exactly this message")


class TestAlertBody(BaseModel):
    text: str = Field(default="", max_length=MAX_MESSAGE_CHARS)


def session_of(ctx: PageContext, request: Request) -> Session | None:
    """The officer's live session named by the request's cookie, or None."""
    return ctx.state.session(request.cookies.get(SESSION_COOKIE))


def require_officer(ctx: PageContext, request: Request) -> Session:
    """Every officer action's gate: a live session and its CSRF token, or 401/403 and nothing happens."""
    session = session_of(ctx, request)
    if session is None:
        raise HTTPException(401, "log in as an officer first (POST /api/login)")
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header; reload the page and try again")
    return session


def officer_router(ctx: PageContext) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["officers"])
    # Binds a message preview to its confirmation; new per process, so a
    # restart simply asks the officer to preview again.
    confirm_key = secrets.token_bytes(32)
    # Password guessing is slowed per client address and per (address, username), never per
    # username alone: otherwise anyone could keep the duty officer locked out (docs/security.md).
    throttle = LoginThrottle()

    def address_of(request: Request) -> str:
        # TrustedProxyHeaders (gauge_page/_proxy.py) already replaced a trusted proxy's address
        # with the browser's from X-Forwarded-For; anyone else's header was ignored.
        return request.client.host if request.client else "unknown"

    secure = ctx.settings.page.secure_cookies

    def current_session(request: Request) -> Session | None:
        return session_of(ctx, request)

    def officer(request: Request) -> Session:
        """Dependency for every action: a live session and its CSRF token, or nothing happens."""
        return require_officer(ctx, request)

    def audit(session: Session, action: str, target: str, detail: dict[str, Any]) -> None:
        ctx.state.record(ts_s=ctx.clock.now_s(), username=session.username, action=action, target=target,
                         detail=to_jsonable(detail))
        log.info("event=officer_action user=%s action=%s target=%s", session.username, action, target)
        ctx.hub.publish("audit", {"action": action, "target": target, "username": session.username})

    public_origin = ctx.settings.page.public_origin

    def page_origins(request: Request) -> set[str]:
        """The addresses the page itself is served from, as this request reached it."""
        # Behind a trusted proxy, the browser's host (TrustedProxyHeaders); else the Host header.
        host = getattr(request.state, "forwarded_host", None) or request.headers.get("host", "")
        origins = {normalize_origin(f"{request.url.scheme}://{host}")}
        if public_origin:
            origins.add(normalize_origin(public_origin))
        return origins

    def same_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and normalize_origin(origin) not in page_origins(request):
            log.warning("event=login_cross_origin origin=%s expected=%s", origin,
                        ",".join(sorted(page_origins(request))))
            raise HTTPException(403, "log in from the page itself; cross-site logins are refused (behind a reverse "
                                     "proxy: set page.public_origin, or forward X-Forwarded-Host and -Proto from an "
                                     "address in page.trusted_proxies)")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send the login as application/json")

    @router.post("/login", response_model=SessionOut,
                 summary="Log in as an officer; sets the session cookie and returns the CSRF token")
    def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
        same_origin(request)
        now_wall_s = time.time()
        address = address_of(request)
        wait_s = throttle.wait_s(address, body.username, now_wall_s)
        if wait_s > 0:
            log.warning("event=login_throttled user=%s address=%s wait_s=%.0f", body.username, address, wait_s)
            raise HTTPException(429, f"too many wrong passwords from this address; wait {max(1, round(wait_s))} s "
                                     "and try again", headers={"Retry-After": str(max(1, round(wait_s)))})
        display_name = ctx.state.authenticate(body.username, body.password)
        if display_name is None:
            throttle.failed(address, body.username, now_wall_s)
            log.warning("event=login_failed user=%s address=%s", body.username, address)
            ctx.state.record(ts_s=ctx.clock.now_s(), username=body.username, action="login_failed",
                             target="", detail={})
            raise HTTPException(401, "wrong username or password")
        throttle.succeeded(address, body.username)
        token, session = ctx.state.create_session(body.username, display_name)
        # Over HTTPS (directly or through a trusted proxy) the cookie is never sent in clear text.
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                            secure=secure or request.url.scheme == "https", path="/",
                            max_age=int(ctx.settings.page.session_max_age_s))
        ctx.state.record(ts_s=ctx.clock.now_s(), username=session.username, action="login", target="", detail={})
        return {"username": session.username, "display_name": session.display_name,
                "csrf_token": session.csrf_token}

    @router.get("/me", response_model=SessionOut, response_model_exclude_none=True,
                summary="Who is logged in (and their CSRF token), or logged_in false")
    def me(request: Request) -> dict[str, Any]:
        session = current_session(request)
        if session is None:
            return {"logged_in": False}
        return {"logged_in": True, "username": session.username, "display_name": session.display_name,
                "csrf_token": session.csrf_token}

    @router.post("/logout", response_model=SessionOut, response_model_exclude_none=True, summary="End the session")
    def logout(request: Request, response: Response, session: Session = Depends(officer)) -> dict[str, Any]:
        ctx.state.end_session(request.cookies.get(SESSION_COOKIE))
        response.delete_cookie(SESSION_COOKIE, path="/")
        ctx.state.record(ts_s=ctx.clock.now_s(), username=session.username, action="logout", target="", detail={})
        return {"logged_in": False}

    @router.post("/alerts/{alert_id}/acknowledge", response_model=ActionOut, summary="Acknowledge an alert (officer)")
    def acknowledge(alert_id: str, session: Session = Depends(officer)) -> dict[str, Any]:
        if ctx.alerts is None:
            raise HTTPException(
                503, "the alert service is not running in this process; there is nothing to acknowledge")
        known = {str(e.get("id")) for e in ctx.alerts.log(1000)}
        if alert_id not in known:
            raise HTTPException(404, f"there is no alert {alert_id!r} in the latest 1000 of the alert log")
        first = ctx.state.acknowledge(alert_id, ts_s=ctx.clock.now_s(), username=session.username)
        if not first:
            raise HTTPException(409, f"alert {alert_id} was already acknowledged")
        _actions.acknowledge(ctx.alerts, alert_id, by=session.username)
        audit(session, "acknowledge", alert_id, {})
        return {"ok": True, "alert_id": alert_id}

    @router.post("/stations/{station_id}/maintenance", response_model=ActionOut,
                 summary="Put a station in maintenance (its readings do not alert residents) or back")
    def maintenance(station_id: str, body: MaintenanceBody, session: Session = Depends(officer)) -> dict[str, Any]:
        try:
            ctx.settings.station(station_id)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from exc
        ctx.state.set_maintenance(station_id, body.on, now_s=ctx.clock.now_s(), username=session.username,
                                  note=body.note)
        forwarded = _actions.set_maintenance(ctx.alerts, station_id, body.on, by=session.username)
        audit(session, "maintenance_on" if body.on else "maintenance_off", station_id,
              {"note": body.note, "alert_service_told": forwarded})
        return {"ok": True, "station_id": station_id, "maintenance": body.on, "alert_service_told": forwarded}

    def check_zones(zones: list[str]) -> list[dict[str, Any]]:
        out = []
        for zone_id in dict.fromkeys(zones):
            try:
                zone = ctx.settings.zone(zone_id)
            except ConfigError as exc:
                raise HTTPException(422, str(exc)) from exc
            out.append({"id": zone.id, "name_th": zone.name_th, "name_en": zone.name_en,
                        "recipients": _actions.recipient_count(ctx.alerts, zone.id)})
        return out

    def confirm_token_for(body: MessageBody, session: Session) -> str:
        canonical = json.dumps([sorted(set(body.zones)), body.text_th, body.text_en, session.username],
                               ensure_ascii=False)
        return hmac.new(confirm_key, canonical.encode(), hashlib.sha256).hexdigest()

    @router.post("/messages/preview", response_model=PreviewOut,
                 summary="Show a manual message as residents will see it, with recipients")
    def preview(body: MessageBody, session: Session = Depends(officer)) -> dict[str, Any]:
        zones = check_zones(body.zones)
        recipients = [z["recipients"] for z in zones]
        return {
            "zones": zones,
            "total_recipients": None if None in recipients else sum(recipients),
            "text": _actions.manual_text(body.text_th, body.text_en),
            "confirm_token": confirm_token_for(body, session),
        }

    @router.post("/messages/send", response_model=ActionOut,
                 summary="Send a previewed manual message to the chosen zones (officer)")
    def send(body: SendBody, session: Session = Depends(officer)) -> dict[str, Any]:
        if not hmac.compare_digest(body.confirm_token, confirm_token_for(body, session)):
            raise HTTPException(409, "the message or zones changed since the preview; preview again and confirm")
        zones = check_zones(body.zones)
        result = _actions.send_manual(ctx.alerts, [z["id"] for z in zones], body.text_th, body.text_en,
                                      by=session.username)
        audit(session, "manual_message", ",".join(z["id"] for z in zones),
              {"text_th": body.text_th, "text_en": body.text_en, "result": result})
        return {"ok": True, "zones": zones, "result": to_jsonable(result)}

    @router.post("/test-alert", response_model=ActionOut,
                 summary="Send a test alert to officers only, never to residents")
    def test_alert(body: TestAlertBody, session: Session = Depends(officer)) -> dict[str, Any]:
        result = _actions.send_test(ctx.alerts, body.text, by=session.username)
        audit(session, "test_alert", "officers", {"text": body.text, "result": result})
        return {"ok": True, "result": to_jsonable(result)}

    @router.get("/audit", response_model=AuditOut, summary="The audit log of officer actions, newest first (officer)")
    def audit_log(request: Request, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        if current_session(request) is None:
            raise HTTPException(401, "log in as an officer to read the audit log")
        return {"entries": ctx.state.audit(limit)}

    return router
