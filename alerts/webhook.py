"""POST /line/webhook: residents subscribe themselves from the LINE chat.

Signature first: a missing ``x-line-signature`` gets 400, a wrong one 401,
and neither changes anything. Then, per event:

- follow: a Thai-first welcome with quick-reply zone buttons (postback
  ``action=add&zone=moo-1``); residents may pick several zones;
- postback ``add`` / ``remove`` / ``lang`` / ``low_water`` / ``tide_daily``;
- text ``สถานะ`` / ``status``: the current level and forecast of their zones;
  ``โซน`` / ``zone``: the zone buttons again; ``เลิก`` / ``stop``: leave every
  zone; ``English`` / ``ภาษาไทย``: language; ``น้ำขึ้นลง`` / ``tide``: the tide
  outlook; ``น้ำแล้ง`` / ``low water``: toggle low-water alerts;
- unfollow: the resident is forgotten (no more messages).

Replies go through the reply API with the event's reply token.

One durable step per event: the event's seen-mark (its ``webhookEventId``)
and everything it changes (subscriptions, language, toggles) commit in ONE
SQLite transaction (:meth:`AlertService.transaction`), and the reply goes to
LINE only after that commit. A crash before the commit leaves neither the
change nor the mark, so LINE's redelivery is handled as new; a crash after it
leaves both, so the redelivery is recognised and changes nothing (a toggle
such as "low water" is not flipped back). Handle-then-mark with idempotent
handlers was the alternative: it would need every handler, present and
future, to be idempotent, and the toggles are not. An event LINE sends
without a ``webhookEventId`` (the contract requires one) is keyed by a hash
of its content, so a replay of the same body is still recognised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request, Response
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.webhook import SignatureValidator, WebhookParser
from starlette.concurrency import run_in_threadpool

from floodwatch.errors import LineApiError
from floodwatch.timefmt import english_datetime, english_time, thai_datetime, thai_time
from floodwatch.vocabulary import AlertLevel

from floodwatch.alerts import messages as msg
from floodwatch.alerts.rules import trend_word

if TYPE_CHECKING:
    from floodwatch.alerts.service import AlertService

log = logging.getLogger("floodwatch.alerts.webhook")

# LINE's webhook bodies are a few kilobytes; anything near this is not LINE.
MAX_WEBHOOK_BYTES = 1 << 20
# LINE redelivers failed webhooks for a while; older events are not acted on.
WEBHOOK_REPLAY_WINDOW_S = 24 * 3600.0

STATUS_WORDS = {"สถานะ", "status", "ระดับน้ำ", "level"}
ZONE_WORDS = {"โซน", "zone", "zones", "เลือกหมู่", "หมู่", "เปลี่ยน", "change"}
LEAVE_WORDS = {"เลิก", "ยกเลิก", "stop", "leave", "unsubscribe"}
ENGLISH_WORDS = {"english", "eng", "en", "อังกฤษ"}
THAI_WORDS = {"ไทย", "ภาษาไทย", "thai", "th"}
TIDE_WORDS = {"น้ำขึ้นลง", "น้ำขึ้นน้ำลง", "tide", "tides"}
TIDE_DAILY_WORDS = {"น้ำขึ้นลงรายวัน", "tide daily", "daily tide"}
LOW_WATER_WORDS = {"น้ำแล้ง", "น้ำต่ำ", "low water", "drought"}
ID_WORDS = {"id", "my id", "myid", "ไอดี"}  # officers need their user id for FLOODWATCH_ALERTS__OFFICERS


def build_router(service: "AlertService") -> APIRouter:
    router = APIRouter()
    conversation = Conversation(service)

    @router.post("/line/webhook", include_in_schema=True, summary="LINE Messaging API webhook")
    async def line_webhook(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
            return _json(413, f"webhook bodies are at most {MAX_WEBHOOK_BYTES} bytes")
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > MAX_WEBHOOK_BYTES:
                return _json(413, f"webhook bodies are at most {MAX_WEBHOOK_BYTES} bytes")
        signature = request.headers.get("x-line-signature")
        if not signature:
            return _json(400, "missing x-line-signature header; only LINE may call this webhook")
        secret = service.settings.line.channel_secret
        if secret is None:
            log.error("event=webhook_rejected reason=no_channel_secret fix=set FLOODWATCH_LINE__CHANNEL_SECRET")
            return _json(503, "the channel secret is not configured; set FLOODWATCH_LINE__CHANNEL_SECRET")
        try:
            text = body.decode("utf-8")
            if not SignatureValidator(secret.get_secret_value()).validate(text, signature):
                raise InvalidSignatureError("x-line-signature does not match")
            events = _parse_events(text)
        except InvalidSignatureError:
            log.warning("event=webhook_rejected reason=bad_signature bytes=%d", len(body))
            return _json(401, "x-line-signature does not match the body; check FLOODWATCH_LINE__CHANNEL_SECRET")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            return _json(400, f"the body is not a LINE webhook payload: {exc}")
        unsettled = await run_in_threadpool(conversation.handle_all, events)
        if unsettled:
            # nothing of these events was kept: LINE redelivers the body on a non-2xx answer, and
            # the events already handled are recognised by their marks then
            return _json(503, f"{unsettled} event(s) could not be stored; LINE will redeliver them")
        return _json(200, "ok")

    return router


def _parse_events(text: str) -> list[Any]:
    """The body's events as line-bot-sdk objects, each with a ``webhook_event_id``.

    LINE's contract requires ``webhookEventId``; an event without one (an
    older API version, a proxy rewriting bodies) gets ``sha256:<hex>`` of its
    content without ``deliveryContext`` (which differs on a redelivery), so an
    identical copy is still recognised as a replay instead of acting again.
    """
    payload = json.loads(text)
    for raw in payload["events"]:
        if not raw.get("webhookEventId"):
            content = {k: v for k, v in raw.items() if k not in ("deliveryContext", "webhookEventId")}
            digest = hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
            raw["webhookEventId"] = f"sha256:{digest}"
    # signature checked by the caller on the body as received
    parser = WebhookParser("", skip_signature_verification=lambda: True)
    return parser.parse(json.dumps(payload, ensure_ascii=False), "")


def _too_old(event: Any) -> bool:
    """LINE redelivers for a while; an event older than the replay window is answered but not acted on."""
    wall_now_s = time.time()  # LINE stamps events with real time, whatever the demo's clock says
    stamp_ms = getattr(event, "timestamp", None)
    if isinstance(stamp_ms, (int, float)) and wall_now_s - stamp_ms / 1000.0 > WEBHOOK_REPLAY_WINDOW_S:
        log.warning("event=webhook_event_ignored reason=too_old age_s=%.0f", wall_now_s - stamp_ms / 1000.0)
        return True
    return False


def _event_id(event: Any) -> str:
    # set on every event by _parse_events (an event type the SDK does not know keeps it too)
    return str(getattr(event, "webhook_event_id", None) or "")


def _json(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}, ensure_ascii=False), status_code=status,
                    media_type="application/json")


class Conversation:
    """What floodwatch says back to each webhook event (subscription changes are side effects)."""

    def __init__(self, service: "AlertService") -> None:
        self.service = service
        self.db = service.db
        self.settings = service.settings
        self.residents = service.residents  # alerts/residents.py: rich menu, flood reports, consent

    def handle_all(self, events: list[Any]) -> int:
        """Handle each event once; returns how many could not be stored (the caller answers non-2xx)."""
        unsettled = 0
        for event in events:
            try:
                self.handle_once(event)
            except sqlite3.OperationalError as exc:  # locked for too long, disk full: nothing was kept
                unsettled += 1
                log.error("event=webhook_event_unsettled type=%s error=%r fix=%s", getattr(event, "type", "?"),
                          exc, f"check free space and locks on {self.db.path}; LINE redelivers the event")
            except Exception:  # one bad event must not lose the others (its transaction rolled back)
                log.exception("event=webhook_event_failed type=%s", getattr(event, "type", "?"))
        return unsettled

    def handle_once(self, event: Any) -> None:
        """The event's mark and its effects in one transaction, then the reply (after the commit)."""
        if _too_old(event):
            return
        event_id = _event_id(event)
        self.residents.prefetch(event)  # network I/O (a report's photo) stays out of the transaction
        with self.service.transaction():
            if event_id and not self.db.first_sight_of_event(event_id, time.time(),
                                                             keep_s=2 * WEBHOOK_REPLAY_WINDOW_S):
                log.warning("event=webhook_event_ignored reason=replay webhook_event_id=%s", event_id)
                return
            reply = self.handle(event)
        self.send_reply(event, reply)

    def handle(self, event: Any) -> list[dict[str, Any]]:
        """Dispatch one event to its handler: the state changes, and the reply's messages."""
        kind = getattr(event, "type", None)
        source = getattr(event, "source", None)
        user_id = getattr(source, "user_id", None)
        if user_id is None:
            return []  # group and room chats are not supported: alerts go to people
        now_s = self.service.clock.now_s()
        reply: list[dict[str, Any]] = []
        desk = self.residents.reply(self, event, user_id, now_s)
        if desk is not None:
            reply = desk
        elif kind == "follow":
            self.db.ensure_user(user_id, now_s, followed=True)
            reply = self.welcome(user_id)
        elif kind == "unfollow":
            self.db.forget_user(user_id, now_s)
            log.info("event=resident_unfollowed user=%s", _short(user_id))
            return []
        elif kind == "postback":
            reply = self.postback(user_id, event.postback.data, now_s)
        elif kind == "message":
            text = getattr(event.message, "text", None)
            reply = self.text(user_id, text, now_s) if text is not None else self.help(user_id)
        else:
            return []
        return reply

    def send_reply(self, event: Any, reply: list[dict[str, Any]]) -> None:
        """Reply with the event's token; called after the commit, so LINE is never waited on holding the state."""
        token = getattr(event, "reply_token", None)
        if reply and token and self.service.line is not None:
            user_id = getattr(getattr(event, "source", None), "user_id", None) or "?"
            try:
                self.service.line.reply(token, reply[: msg.MESSAGES_PER_REQUEST_MAX])
            except LineApiError as exc:
                log.warning("event=reply_failed user=%s status=%s message=%r", _short(user_id), exc.status,
                            exc.message)

    # -------------------------------------------------------------- replies
    def lang(self, user_id: str) -> str:
        user = self.db.user(user_id)
        return user["lang"] if user else "th"

    def zone_buttons(self, user_id: str) -> dict[str, Any]:
        lang = self.lang(user_id)
        mine = set(self.db.zones_of(user_id))
        items = []
        for zone in self.settings.zones[: msg.QUICK_REPLY_MAX - 3]:
            picked = zone.id in mine
            data = urlencode({"action": "remove" if picked else "add", "zone": zone.id})
            if lang == "th":
                label = " ".join(zone.name_th.split(" ")[:2])  # "หมู่ 1": how residents name their village
                display = ("ยกเลิก " if picked else "เลือก ") + zone.name_th
            else:
                label = zone.name_en.split(",")[0]
                display = ("Leave " if picked else "Pick ") + zone.name_en
            # LINE: quick-reply labels at most 20 characters, display text at most 300
            items.append(_postback_item((("✓ " if picked else "") + label)[:20], data, display[:300]))
        items.append(_message_item("สถานะ" if lang == "th" else "Status", "สถานะ" if lang == "th" else "status"))
        items.append(_postback_item("English" if lang == "th" else "ภาษาไทย",
                                    urlencode({"action": "lang", "lang": "en" if lang == "th" else "th"}),
                                    display="English" if lang == "th" else "ภาษาไทย"))
        items.append(_message_item("น้ำขึ้นลง" if lang == "th" else "Tide", "น้ำขึ้นลง" if lang == "th" else "tide"))
        return {"items": items}

    def welcome(self, user_id: str) -> list[dict[str, Any]]:
        site = self.settings.site
        th = [f"สวัสดีค่ะ ระบบแจ้งเตือนน้ำท่วม {site.name_th}",
              "เลือกหมู่บ้านที่ต้องการรับการแจ้งเตือน (เลือกได้หลายหมู่) จากปุ่มด้านล่าง",
              "พิมพ์ \"สถานะ\" เพื่อดูระดับน้ำ \"น้ำขึ้นลง\" เพื่อดูเวลาน้ำขึ้นน้ำลง \"เลิก\" เพื่อหยุดรับข่าว"]
        en = [f"Hello, this is the flood warning service of {site.name_en}.",
              "Pick the village(s) you want alerts for with the buttons below (several are fine).",
              "Type \"status\" for water levels, \"tide\" for high and low water, \"stop\" to leave."]
        return [msg.text_message(msg.bilingual(th, en, self.lang(user_id)), self.zone_buttons(user_id))]

    def help(self, user_id: str) -> list[dict[str, Any]]:
        th = ["พิมพ์ \"สถานะ\" ดูระดับน้ำ, \"โซน\" เลือกหมู่บ้าน, \"น้ำขึ้นลง\" ดูน้ำขึ้นน้ำลง,",
              "\"น้ำแล้ง\" รับ/ไม่รับแจ้งน้ำต่ำ, \"เลิก\" หยุดรับข่าว, \"English\" เปลี่ยนภาษา"]
        en = ["Type \"status\" for levels, \"zone\" to pick villages, \"tide\" for tides,",
              "\"low water\" to toggle drought alerts, \"stop\" to leave, \"ไทย\" for Thai."]
        return [msg.text_message(msg.bilingual(th, en, self.lang(user_id)), self.zone_buttons(user_id))]

    def confirm(self, user_id: str, th: str, en: str) -> list[dict[str, Any]]:
        zones = self.db.zones_of(user_id)
        lang = self.lang(user_id)
        if zones:
            names_th = ", ".join(self.settings.zone(z).name_th for z in zones)
            names_en = ", ".join(self.settings.zone(z).name_en for z in zones)
            th += f"\nหมู่บ้านที่รับการแจ้งเตือน: {names_th}"
            en += f"\nYour villages: {names_en}"
        else:
            th += "\nยังไม่ได้เลือกหมู่บ้าน"
            en += "\nNo village picked yet."
        return [msg.text_message(msg.bilingual([th], [en], lang), self.zone_buttons(user_id))]

    def postback(self, user_id: str, data: str, now_s: float) -> list[dict[str, Any]]:
        fields = {k: v[0] for k, v in parse_qs(data).items()}
        action, zone_id = fields.get("action"), fields.get("zone")
        self.db.ensure_user(user_id, now_s)
        if action in ("add", "remove") and zone_id in {z.id for z in self.settings.zones}:
            zone = self.settings.zone(zone_id)
            if action == "add":
                self.db.subscribe(user_id, zone_id, now_s)
                log.info("event=resident_subscribed user=%s zone=%s", _short(user_id), zone_id)
                return self.confirm(user_id, f"✅ รับการแจ้งเตือน {zone.name_th} แล้ว",
                                    f"✅ You will get alerts for {zone.name_en}.")
            self.db.unsubscribe(user_id, zone_id)
            log.info("event=resident_left_zone user=%s zone=%s", _short(user_id), zone_id)
            return self.confirm(user_id, f"ยกเลิกการแจ้งเตือน {zone.name_th} แล้ว",
                                f"You will no longer get alerts for {zone.name_en}.")
        if action == "lang" and fields.get("lang") in ("th", "en"):
            self.db.set_user_flag(user_id, "lang", fields["lang"], now_s)
            return self.confirm(user_id, "เปลี่ยนเป็นภาษาไทยแล้ว", "Messages will now come in English first.")
        return self.help(user_id)

    def text(self, user_id: str, text: str, now_s: float) -> list[dict[str, Any]]:
        word = " ".join(text.strip().lower().split())
        self.db.ensure_user(user_id, now_s)
        if word in STATUS_WORDS:
            return self.status(user_id)
        if word in ZONE_WORDS:
            return self.confirm(user_id, "เลือกหมู่บ้านจากปุ่มด้านล่าง", "Pick your villages below.")
        if word in LEAVE_WORDS:
            self.db.unsubscribe(user_id)
            return self.confirm(user_id, "หยุดการแจ้งเตือนทุกหมู่บ้านแล้ว", "You have left every village.")
        if word in ENGLISH_WORDS:
            self.db.set_user_flag(user_id, "lang", "en", now_s)
            return self.confirm(user_id, "เปลี่ยนเป็นภาษาอังกฤษแล้ว", "Messages will now come in English first.")
        if word in THAI_WORDS:
            self.db.set_user_flag(user_id, "lang", "th", now_s)
            return self.confirm(user_id, "เปลี่ยนเป็นภาษาไทยแล้ว", "Messages will now come in Thai first.")
        if word in TIDE_DAILY_WORDS:
            on = not (self.db.user(user_id) or {}).get("tide_daily", False)
            self.db.set_user_flag(user_id, "tide_daily", int(on), now_s)
            hour = self.settings.alerts.tide_outlook_hour_local
            return self.confirm(user_id, f"{'รับ' if on else 'หยุดรับ'}ข่าวน้ำขึ้นลงทุกวัน เวลา {hour:02d}:00 น.",
                                f"Daily tide outlook at {hour:02d}:00 {'on' if on else 'off'}.")
        if word in TIDE_WORDS:
            return self.tide(user_id)
        if word in ID_WORDS:
            return [msg.text_message(msg.bilingual([f"LINE user id ของคุณ: {user_id}"],
                                                   [f"Your LINE user id: {user_id}"], self.lang(user_id)))]
        if word in LOW_WATER_WORDS:
            on = not (self.db.user(user_id) or {}).get("low_water", False)
            self.db.set_user_flag(user_id, "low_water", int(on), now_s)
            return self.confirm(user_id, f"{'รับ' if on else 'หยุดรับ'}การแจ้งเตือนน้ำต่ำ (ภัยแล้ง)",
                                f"Low-water (drought) alerts {'on' if on else 'off'}.")
        return self.help(user_id)

    def status(self, user_id: str) -> list[dict[str, Any]]:
        zones = self.db.zones_of(user_id)
        lang = self.lang(user_id)
        if not zones:
            return self.confirm(user_id, "ยังไม่ได้เลือกหมู่บ้าน เลือกจากปุ่มด้านล่าง", "Pick a village below first.")
        stations = self.service.station_levels()
        zone_levels = self.service.zone_levels()
        th, en = [], []
        for zone_id in zones:
            zone = self.settings.zone(zone_id)
            zl = AlertLevel(zone_levels[zone_id]["level"])
            th.append(f"{msg.LEVEL_ICON[zl]} {zone.name_th}: {zl.name_th}")
            en.append(f"{msg.LEVEL_ICON[zl]} {zone.name_en}: {zl.name_en}")
            for sid, s in stations.items():
                if s["zone_id"] != zone_id:
                    continue
                st = self.settings.station(sid)
                assert st.levels is not None
                if s["water_level_m"] is None:
                    th.append(f"  {st.name_th}: ยังไม่มีข้อมูล")
                    en.append(f"  {st.name_en}: no reading yet")
                    continue
                trend = trend_word(s["trend_cm_per_h"] if s["trend_cm_per_h"] is not None else math.nan,
                                   self.service.cfg)
                d = s["water_level_m"] - st.levels.warning_m
                th.append(f"  {st.name_th}: {s['water_level_m']:.2f} ม.รทก. "
                          f"({'สูงกว่า' if d >= 0 else 'ต่ำกว่า'}ระดับเตือน {abs(d):.2f} ม.) "
                          f"{msg.TREND_TH[trend]} · {thai_time(s['ts_s'])}")
                en.append(f"  {st.name_en}: {s['water_level_m']:.2f} m ({abs(d):.2f} m "
                          f"{'above' if d >= 0 else 'below'} the warning line), {trend} · {english_time(s['ts_s'])}")
                fl = s["forecast_level"]
                if fl is not None and fl > 0 and s["forecast_reach_s"] is not None:
                    lv = AlertLevel(fl)
                    th.append(f"  คาดการณ์: โอกาส {s['forecast_probability'] * 100:.0f}% ถึงระดับ{lv.name_th}"
                              f" ประมาณ {thai_time(s['forecast_reach_s'])}")
                    en.append(f"  Forecast: {s['forecast_probability'] * 100:.0f} % chance of {lv.name_en}"
                              f" around {english_time(s['forecast_reach_s'])}")
                elif fl is not None:
                    th.append("  คาดการณ์: ยังไม่ถึงเกณฑ์แจ้งเตือนในช่วงนี้")
                    en.append("  Forecast: no alert level expected in the next hours")
        now = self.service.clock.now_s()
        th.append(f"ข้อมูล ณ {thai_datetime(now)}")
        en.append(f"As of {english_datetime(now)}")
        return [msg.text_message(msg.bilingual(th, en, lang), self.zone_buttons(user_id))]

    def tide(self, user_id: str) -> list[dict[str, Any]]:
        return [msg.text_message(self.service.tide_outlook_text(self.db.zones_of(user_id), self.lang(user_id)),
                                 self.zone_buttons(user_id))]


def _postback_item(label: str, data: str, display: str) -> dict[str, Any]:
    return {"type": "action", "action": {"type": "postback", "label": label, "data": data,
                                         "displayText": display}}


def _message_item(label: str, text: str) -> dict[str, Any]:
    return {"type": "action", "action": {"type": "message", "label": label, "text": text}}


def _short(user_id: str) -> str:
    # user ids are personal data: logs keep only enough to correlate
    return user_id[:5] + "…"
