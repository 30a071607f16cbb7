"""What residents do from the rich menu: water now, tide and outlook, flood reports, zone, what to do.

:class:`ResidentDesk` answers the webhook events :mod:`alerts.webhook` hands
it (its ``Conversation`` asks the desk first; ``None`` means "not mine"):

- the rich menu's postbacks (``action=menu_status`` ... see
  :data:`alerts.richmenu.BUTTONS`);
- a flood report: ``action=report`` (or typing ``แจ้งน้ำท่วม`` / ``report``)
  -> the privacy notice the first time (agree / decline) -> a location ->
  optionally a photo -> a depth (ankle, knee, waist, road closed) -> a
  thank-you. A location far outside the municipality, a file that is not a
  photo, a photo over ``reports.photo_max_bytes``, a video, and too many
  reports or steps in an hour are refused with a reply that says why (Thai
  first, then English) and nothing is kept.

Reports go to officers only (the page) and never to the rules: a report can
not raise an alert or change a forecast.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from floodwatch.errors import LineApiError
from floodwatch.timefmt import english_time, thai_time
from floodwatch.vocabulary import AlertLevel, StationId

from floodwatch.alerts import flex
from floodwatch.alerts import messages as msg
from floodwatch.alerts.reports import DEPTH_EN, DEPTH_TH, DEPTHS, NotAPhoto, ReportBook, clean_photo, locate
from floodwatch.alerts.rules import trend_word

if TYPE_CHECKING:
    from floodwatch.alerts.service import AlertService

log = logging.getLogger("floodwatch.alerts.residents")

REPORT_WORDS = {"แจ้งน้ำท่วม", "รายงานน้ำท่วม", "report", "report flooding", "report flood"}
PREPARE_WORDS = {"เตรียมตัว", "ทำอย่างไร", "what to do", "prepare", "preparedness"}
MENU_ACTIONS = {"menu_status", "menu_tide", "menu_zone", "menu_prepare"}
REPORT_ACTIONS = {"report", "report_consent", "report_depth", "report_cancel"}
DEPTH_LABEL_TH = {"ankle": "ตาตุ่ม", "knee": "เข่า", "waist": "เอว", "road_closed": "ถนนปิด"}
DEPTH_LABEL_EN = {"ankle": "Ankle", "knee": "Knee", "waist": "Waist", "road_closed": "Road closed"}
HOTLINE = "1784"  # สายด่วนนิรภัย, Department of Disaster Prevention and Mitigation

PREPARE_TH = [
    "🧭 เตรียมพร้อมรับน้ำท่วม",
    "ก่อนน้ำมา: เก็บเอกสารสำคัญ ยา และของมีค่าใส่ถุงกันน้ำ ไว้ที่สูง เตรียมกระเป๋าฉุกเฉิน (ไฟฉาย "
    "แบตเตอรี่สำรอง น้ำดื่ม อาหารแห้ง ยาประจำตัว) รู้จุดอพยพและเส้นทางไปจุดอพยพของหมู่บ้าน",
    "เมื่อได้รับ เตือนภัย: ยกของขึ้นที่สูง ย้ายรถไปที่สูง ดูแลผู้สูงอายุ เด็ก ผู้ป่วย และสัตว์เลี้ยง",
    "เมื่อได้รับ อพยพ: ตัดไฟที่เมนสวิตช์ ปิดแก๊ส ไปจุดอพยพทันที อย่าเดินหรือขับรถผ่านน้ำไหลแรง",
    "หลังน้ำลด: ระวังไฟฟ้ารั่ว สัตว์มีพิษ ล้างมือบ่อย ๆ ทิ้งอาหารที่แช่น้ำ",
    f"ขอความช่วยเหลือ: สายด่วน ปภ. {HOTLINE} · เจ็บป่วยฉุกเฉิน 1669",
]
PREPARE_EN = [
    "🧭 Getting ready for a flood",
    "Before: keep documents, medicines and valuables in waterproof bags up high; pack an emergency bag "
    "(torch, power bank, water, dry food, your medicines); know your village's evacuation point and the way there.",
    "On a WARNING: move belongings and vehicles to higher ground; check on elderly people, children, the sick "
    "and pets.",
    "On EVACUATE: switch off the mains and the gas and go to the evacuation point now; never walk or drive "
    "through fast water.",
    "After: beware of live wires and snakes, wash hands often, throw away food that was under water.",
    f"Help: disaster hotline {HOTLINE} · medical emergency 1669",
]


def postback(label: str, data: dict[str, str], display: str) -> dict[str, Any]:
    # LINE: quick-reply labels at most 20 characters, display text at most 300
    return {"type": "action", "action": {"type": "postback", "label": label[:20], "data": urlencode(data),
                                         "displayText": display[:300]}}


def consent_text(settings: Any) -> tuple[list[str], list[str]]:
    """The privacy notice a resident reads once before a first report (PDPA: what, why, how long)."""
    days = settings.reports.retention_days
    site_th, site_en = settings.site.name_th, settings.site.name_en
    th = [f"🔒 ก่อนแจ้งน้ำท่วม: {site_th} จะเก็บตำแหน่งที่คุณส่ง รูปถ่าย (ถ้ามี) ความลึกของน้ำ เวลา "
          "และ LINE ID ของคุณ เพื่อให้เจ้าหน้าที่เห็นจุดน้ำท่วมและติดต่อช่วยเหลือได้",
          f"รูปถ่ายและการเชื่อมโยงกับตัวคุณจะถูกลบภายใน {days:.0f} วัน เหลือเพียงจุดและความลึกโดยไม่ระบุตัวตน "
          "รายงานไม่ทำให้เกิดการแจ้งเตือนเอง และไม่เปิดเผยต่อสาธารณะ",
          "ขอดูหรือลบข้อมูลของคุณได้ทุกเมื่อ โดยติดต่อเทศบาล (ตาม พ.ร.บ.คุ้มครองข้อมูลส่วนบุคคล)",
          "ยินยอมให้เก็บข้อมูลนี้หรือไม่"]
    en = [f"🔒 Before you report: {site_en} keeps the location you send, your photo (if any), the depth, the "
          "time and your LINE ID, so officers can see the flooding and reach you.",
          f"Within {days:.0f} days the photo is deleted and the report no longer names you; only the place and "
          "depth stay. Reports do not raise alerts by themselves and are not published.",
          "You may ask the municipality to show or delete your data at any time (Thailand's PDPA).",
          "Do you agree?"]
    return th, en


class ResidentDesk:
    """The rich menu's answers and the flood-report conversation (see the module doc)."""

    def __init__(self, service: AlertService, book: ReportBook | None = None) -> None:
        self.service = service
        self.settings = service.settings
        self.db = service.db
        self.book = book if book is not None else ReportBook(service.settings, shared=self.db.shared_connection())
        # Photos fetched from LINE before the event's transaction (never while holding the state
        # file's lock, which every alert decision waits on): message id -> (bytes, type) or error.
        self._fetched: dict[str, tuple[bytes, str] | LineApiError] = {}

    def prefetch(self, event: Any) -> None:
        """Fetch a report photo's content ahead of the event's transaction (see ``_fetched``).

        Only for a resident who consented and has a report waiting for its photo: nothing is
        downloaded that could not be kept. The transaction then uses what was fetched.
        """
        message = getattr(event, "message", None)
        user_id = getattr(getattr(event, "source", None), "user_id", None)
        if (getattr(event, "type", None) != "message" or getattr(message, "type", None) != "image"
                or user_id is None or not self.settings.reports.enabled or self.service.line is None
                or not self.book.consented(user_id)):
            return
        draft = self.book.draft(user_id)
        if draft is None or draft["lat"] is None:
            return
        try:
            self._fetched[message.id] = self.service.line.message_content(message.id)
        except LineApiError as exc:
            self._fetched[message.id] = exc

    # ------------------------------------------------------------ dispatch
    def reply(self, conversation: Any, event: Any, user_id: str, now_s: float) -> list[dict[str, Any]] | None:
        """The reply to ``event`` if it is the desk's to answer, else None (the conversation answers)."""
        kind = getattr(event, "type", None)
        if kind == "postback":
            fields = {k: v[0] for k, v in parse_qs(event.postback.data or "").items()}
            action = fields.get("action")
            if action in MENU_ACTIONS:
                self.db.ensure_user(user_id, now_s)
                return self.menu(conversation, action, user_id)
            if action in REPORT_ACTIONS and self.settings.reports.enabled:
                self.db.ensure_user(user_id, now_s)
                return self.report_postback(action, fields, user_id, now_s)
            return None
        if kind != "message":
            return None
        message = event.message
        mtype = getattr(message, "type", None)
        if mtype == "text":
            word = " ".join((message.text or "").strip().lower().split())
            if word in REPORT_WORDS and self.settings.reports.enabled:
                self.db.ensure_user(user_id, now_s)
                return self.start_report(user_id)
            if word in PREPARE_WORDS:
                return self.prepare(user_id)
            return None
        if not self.settings.reports.enabled:
            return None
        if mtype == "location":
            self.db.ensure_user(user_id, now_s)
            return self.location(user_id, message.latitude, message.longitude, getattr(message, "address", None))
        if mtype == "image":
            self.db.ensure_user(user_id, now_s)
            return self.photo(user_id, message.id)
        if mtype in ("video", "audio", "file"):
            return self.not_a_photo(user_id, mtype)
        return None

    def lang(self, user_id: str) -> str:
        user = self.db.user(user_id)
        return user["lang"] if user else "th"

    def say(self, user_id: str, th: list[str], en: list[str], quick: list[dict[str, Any]] | None = None,
            ) -> list[dict[str, Any]]:
        return [msg.text_message(msg.bilingual(th, en, self.lang(user_id)),
                                 {"items": quick[: msg.QUICK_REPLY_MAX]} if quick else None)]

    # ---------------------------------------------------------------- menu
    def menu(self, conversation: Any, action: str, user_id: str) -> list[dict[str, Any]]:
        if action == "menu_status":
            return self.status_cards(conversation, user_id)
        if action == "menu_tide":
            return self.tide_and_outlook(conversation, user_id)
        if action == "menu_zone":
            return conversation.confirm(user_id, "เลือกหมู่บ้านและภาษาจากปุ่มด้านล่าง",
                                        "Pick your villages and language below.")
        return self.prepare(user_id)

    def zone_outlooks(self, zone_id: str) -> list[flex.GaugeOutlook]:
        """Every level gauge of a zone as the cards show it (now, trend, forecast, next high tide)."""
        svc = self.service
        now_s = svc.clock.now_s()
        levels = svc.station_levels()
        out = []
        for st in self.settings.level_stations:
            if st.zone != zone_id or st.external:
                continue
            s = levels.get(StationId(st.id))
            if s is None:
                continue
            rate = math.nan if s["trend_cm_per_h"] is None else s["trend_cm_per_h"]
            level_m = math.nan if s["water_level_m"] is None else s["water_level_m"]
            observed_s = math.nan if s["ts_s"] is None else s["ts_s"]
            out.append(flex.outlook_from_issued(st, AlertLevel(s["observed_level"]), level_m, observed_s,
                                                trend_word(rate, svc.cfg), rate, now_s, svc.latest_forecast))
        return out

    def status_cards(self, conversation: Any, user_id: str) -> list[dict[str, Any]]:
        zones = self.db.zones_of(user_id)
        if not zones:
            return conversation.confirm(user_id, "ยังไม่ได้เลือกหมู่บ้าน เลือกจากปุ่มด้านล่าง",
                                        "Pick a village below first.")
        levels = self.service.zone_levels()
        cards = [(self.settings.zone(z), AlertLevel(levels[z]["level"]) if z in levels else AlertLevel.NORMAL,
                  self.zone_outlooks(z)) for z in zones]
        card = flex.status_message(cards, self.service.clock.now_s(), self.lang(user_id))
        card["quickReply"] = conversation.zone_buttons(user_id)
        return [card]

    def tide_and_outlook(self, conversation: Any, user_id: str) -> list[dict[str, Any]]:
        zones = self.db.zones_of(user_id) or [z.id for z in self.settings.zones]
        lang = self.lang(user_id)
        tide = self.service.tide_outlook_text(zones, lang)
        th, en = ["📈 แนวโน้ม 24 ชม. ข้างหน้า"], ["📈 Outlook, next 24 h"]
        for zone_id in zones:
            for o in self.zone_outlooks(zone_id):
                if not math.isfinite(o.peak_m):
                    continue
                chance_th = chance_en = ""
                if o.next_line is not None and math.isfinite(o.next_line_chance):
                    chance_th = f" โอกาสถึง{flex.LINE_NAMES_TH[o.next_line]} {o.next_line_chance * 100:.0f}%"
                    chance_en = f", {o.next_line_chance * 100:.0f} % chance of the {o.next_line.name_en} line"
                th.append(f"{o.station.name_th}: สูงสุด {o.peak_m:.2f} ม. เวลา {thai_time(o.peak_s)}{chance_th}")
                en.append(f"{o.station.name_en}: peak {o.peak_m:.2f} m at {english_time(o.peak_s)}{chance_en}")
        out = [msg.text_message(tide)]
        if len(th) > 1:
            out.append(msg.text_message(msg.bilingual(th, en, lang)))
        out[-1]["quickReply"] = conversation.zone_buttons(user_id)
        return out

    def prepare(self, user_id: str) -> list[dict[str, Any]]:
        return self.say(user_id, PREPARE_TH, PREPARE_EN)

    # -------------------------------------------------------------- reports
    def _limited(self, user_id: str) -> list[dict[str, Any]] | None:
        """A refusal when the resident has used up this hour's reports or steps; None when not."""
        cfg = self.settings.reports
        reports = self.book.recent(user_id, "report")
        if len(reports) >= cfg.max_reports_per_hour:
            again = reports[0] + 3600.0
            log.info("event=report_refused reason=reports_per_hour user=%s", _short(user_id))
            return self.say(user_id, [f"ขอบคุณค่ะ คุณแจ้งมาแล้ว {len(reports)} ครั้งในชั่วโมงนี้ (สูงสุด "
                                      f"{cfg.max_reports_per_hour} ครั้ง) แจ้งใหม่ได้หลัง {_wall_time_th(again)}",
                                      f"หากเป็นเหตุฉุกเฉิน โทร {HOTLINE}"],
                            [f"Thank you: you have sent {len(reports)} reports this hour (at most "
                             f"{cfg.max_reports_per_hour}); you can report again after {_wall_time_en(again)}.",
                             f"In an emergency call {HOTLINE}."])
        steps = self.book.recent(user_id)
        if len(steps) >= cfg.max_steps_per_hour:
            log.info("event=report_refused reason=steps_per_hour user=%s", _short(user_id))
            return self.say(user_id, [f"ส่งข้อมูลถี่เกินไป กรุณาลองใหม่ภายหลัง หากเป็นเหตุฉุกเฉิน โทร {HOTLINE}"],
                            [f"Too many messages in a short time; please try again later. In an emergency call "
                             f"{HOTLINE}."])
        return None

    def consent_request(self, user_id: str) -> list[dict[str, Any]]:
        th, en = consent_text(self.settings)
        quick = [postback("ยินยอม / Agree", {"action": "report_consent", "answer": "yes"}, "ยินยอม / I agree"),
                 postback("ไม่ยินยอม / Decline", {"action": "report_consent", "answer": "no"},
                          "ไม่ยินยอม / I decline")]
        return self.say(user_id, th, en, quick)

    def ask_location(self, user_id: str) -> list[dict[str, Any]]:
        quick = [{"type": "action", "action": {"type": "location", "label": "📍 ส่งตำแหน่ง / Location"}},
                 postback("ยกเลิก / Cancel", {"action": "report_cancel"}, "ยกเลิก / Cancel")]
        return self.say(user_id, ["📍 ส่งตำแหน่งจุดที่น้ำท่วม: กดปุ่ม \"ส่งตำแหน่ง\" ด้านล่าง แล้วเลือกจุดบนแผนที่"],
                        ["📍 Send the place that is flooded: tap \"Location\" below and pick it on the map."], quick)

    def ask_depth(self, user_id: str, got_photo: bool) -> list[dict[str, Any]]:
        lang = self.lang(user_id)
        quick = [postback((DEPTH_LABEL_TH if lang == "th" else DEPTH_LABEL_EN)[d],
                          {"action": "report_depth", "depth": d}, f"{DEPTH_TH[d]} / {DEPTH_EN[d]}") for d in DEPTHS]
        if not got_photo:
            quick += [{"type": "action", "action": {"type": "camera", "label": "📷 ถ่ายรูป / Camera"}},
                      {"type": "action", "action": {"type": "cameraRoll", "label": "🖼 รูปในเครื่อง / Photo"}}]
        quick.append(postback("ยกเลิก / Cancel", {"action": "report_cancel"}, "ยกเลิก / Cancel"))
        th = ["📷 ได้รับรูปแล้ว" if got_photo else "ได้รับตำแหน่งแล้ว ส่งรูปถ่ายได้ (ถ้ามี)",
              "น้ำลึกแค่ไหน เลือกจากปุ่มด้านล่าง: ตาตุ่ม เข่า เอว หรือถนนปิด"]
        en = ["📷 Photo received." if got_photo else "Location received. You may add a photo.",
              "How deep is the water? Pick below: ankle, knee, waist, or road closed."]
        return self.say(user_id, th, en, quick)

    def start_report(self, user_id: str) -> list[dict[str, Any]]:
        limited = self._limited(user_id)
        if limited is not None:
            return limited
        if not self.book.consented(user_id):
            return self.consent_request(user_id)
        self.book.step(user_id, "start")
        return self.ask_location(user_id)

    def report_postback(self, action: str, fields: dict[str, str], user_id: str, now_s: float,
                        ) -> list[dict[str, Any]]:
        if action == "report":
            return self.start_report(user_id)
        if action == "report_consent":
            if fields.get("answer") == "yes":
                self.book.agree(user_id)
                log.info("event=report_consent answer=yes user=%s", _short(user_id))
                return self.say(user_id, ["ขอบคุณที่ยินยอม"], ["Thank you."]) + self.start_report(user_id)[:1]
            self.book.drop_draft(user_id)
            log.info("event=report_consent answer=no user=%s", _short(user_id))
            return self.say(user_id, ["ไม่เป็นไรค่ะ ไม่มีการเก็บข้อมูลใด ๆ คุณยังได้รับการแจ้งเตือนตามปกติ",
                                      f"หากน้ำท่วมหรือต้องการความช่วยเหลือ โทร {HOTLINE} "
                                      "กดแจ้งน้ำท่วมอีกครั้งเมื่อเปลี่ยนใจ"],
                            ["No problem: nothing was kept, and you still get alerts as before.",
                             f"For flooding or help call {HOTLINE}; tap Report flooding again if you change "
                             "your mind."])
        if action == "report_cancel":
            self.book.drop_draft(user_id)
            return self.say(user_id, ["ยกเลิกการแจ้งแล้ว ไม่มีการเก็บข้อมูล"], ["Report cancelled; nothing was kept."])
        # report_depth
        depth = fields.get("depth")
        if depth not in DEPTHS:
            return self.ask_depth(user_id, False)
        if not self.book.consented(user_id):
            return self.consent_request(user_id)
        limited = self._limited(user_id)
        if limited is not None:
            self.book.drop_draft(user_id)
            return limited
        report = self.book.finish(user_id, depth, now_s, self.settings)
        if report is None:
            return self.say(user_id, ["ยังไม่ได้ส่งตำแหน่ง กดแจ้งน้ำท่วมแล้วส่งตำแหน่งก่อน"],
                            ["No location yet: tap Report flooding and send the location first."])
        log.info("event=report_received id=%s zone=%s depth=%s photo=%s user=%s", report["id"], report["zone_id"],
                 depth, bool(report["photo"]), _short(user_id))
        self.service.report_changed(report)
        zone = self.settings.zone(report["zone_id"]).name_th if report["zone_id"] else ""
        zone_en = self.settings.zone(report["zone_id"]).name_en if report["zone_id"] else ""
        return self.say(user_id, [f"🙏 ขอบคุณค่ะ ได้รับรายงาน {report['id']} แล้ว: {DEPTH_TH[depth]} {zone}",
                                  "เจ้าหน้าที่จะตรวจสอบและใช้ประกอบการช่วยเหลือ รายงานไม่ใช่การแจ้งเตือน "
                                  "ติดตามการแจ้งเตือนทางบัญชีนี้",
                                  f"หากมีผู้ติดค้างหรือต้องการความช่วยเหลือด่วน โทร {HOTLINE}"],
                        [f"🙏 Thank you: report {report['id']} received ({DEPTH_EN[depth]}, {zone_en}).",
                         "Officers will check it and use it to send help; a report is not an alert: alerts come "
                         "from this account.", f"If someone is trapped or needs help now, call {HOTLINE}."])

    def location(self, user_id: str, lat: float, lon: float, address: str | None) -> list[dict[str, Any]]:
        limited = self._limited(user_id)
        if limited is not None:
            return limited
        if not self.book.consented(user_id):
            return self.consent_request(user_id)
        self.book.step(user_id, "location")
        place = locate(self.settings, lat, lon)
        if not place.inside:
            km = place.distance_to_site_m / 1000.0
            log.info("event=report_refused reason=outside_site distance_km=%.1f user=%s", km, _short(user_id))
            where = f"ห่างจากพื้นที่ประมาณ {km:,.0f} กม." if math.isfinite(km) else "ไม่ใช่ตำแหน่งที่ถูกต้อง"
            where_en = f"about {km:,.0f} km away" if math.isfinite(km) else "not a valid position"
            return self.say(user_id, [f"ตำแหน่งนี้อยู่นอก{self.settings.site.name_th} ({where}) จึงไม่ได้บันทึก",
                                      "กรุณาส่งตำแหน่งจุดน้ำท่วมภายในเขตเทศบาล"],
                            [f"This place is outside {self.settings.site.name_en} ({where_en}), so it was not kept.",
                             "Please send a flooded place inside the municipality."],
                            [{"type": "action", "action": {"type": "location", "label": "📍 ส่งใหม่ / Again"}}])
        self.book.set_location(user_id, lat, lon, (address or "")[:200] or None)
        draft = self.book.draft(user_id)
        return self.ask_depth(user_id, bool(draft and draft["photo"]))

    def photo(self, user_id: str, message_id: str) -> list[dict[str, Any]]:
        limited = self._limited(user_id)
        if limited is not None:
            return limited
        if not self.book.consented(user_id):
            return self.consent_request(user_id)
        draft = self.book.draft(user_id)
        if draft is None or draft["lat"] is None:
            return self.say(user_id, ["ส่งตำแหน่งก่อนแล้วค่อยส่งรูป: กดแจ้งน้ำท่วมในเมนู"],
                            ["Send the location first, then the photo: tap Report flooding in the menu."])
        self.book.step(user_id, "photo")
        line = self.service.line
        if line is None:
            return self.say(user_id, ["ขณะนี้รับรูปไม่ได้ เลือกความลึกเพื่อแจ้งโดยไม่มีรูป"],
                            ["Photos cannot be received right now; pick the depth to report without one."])
        limit = self.settings.reports.photo_max_bytes
        try:
            fetched = self._fetched.pop(message_id, None)
            if isinstance(fetched, LineApiError):
                raise fetched
            data, content_type = fetched if fetched is not None else line.message_content(message_id)
        except LineApiError as exc:
            log.warning("event=report_photo_fetch_failed status=%s message=%r", exc.status, exc.message)
            return self.say(user_id, ["ดึงรูปจาก LINE ไม่สำเร็จ ลองส่งใหม่ หรือเลือกความลึกเพื่อแจ้งโดยไม่มีรูป"],
                            ["The photo could not be fetched from LINE; send it again, or pick the depth to "
                             "report without it."])
        if len(data) > limit:
            log.info("event=report_refused reason=photo_too_large bytes=%d user=%s", len(data), _short(user_id))
            return self.say(user_id, [f"รูปใหญ่เกินไป ({len(data) / 1e6:.1f} MB สูงสุด {limit / 1e6:.0f} MB) "
                                      "จึงไม่ได้บันทึก ส่งรูปที่เล็กกว่านี้ หรือเลือกความลึกเพื่อแจ้งโดยไม่มีรูป"],
                            [f"The photo is too large ({len(data) / 1e6:.1f} MB, at most {limit / 1e6:.0f} MB), so "
                             "it was not kept; send a smaller one or pick the depth without it."])
        if content_type not in ("image/jpeg", "image/png"):
            return self.not_a_photo(user_id, content_type or "unknown")
        try:
            jpeg = clean_photo(data)
        except NotAPhoto as exc:
            log.info("event=report_refused reason=not_a_photo detail=%r user=%s", str(exc), _short(user_id))
            return self.not_a_photo(user_id, str(exc))
        self.book.set_photo(user_id, self.book.save_photo(jpeg), len(jpeg))
        return self.ask_depth(user_id, True)

    def not_a_photo(self, user_id: str, what: str) -> list[dict[str, Any]]:
        kind_th = {"video": "วิดีโอ", "audio": "เสียง", "file": "ไฟล์"}.get(what, "ไฟล์ที่ไม่ใช่รูปถ่าย")
        kind_en = {"video": "a video", "audio": "an audio clip", "file": "a file"}.get(what, f"not a photo ({what})")
        log.info("event=report_refused reason=not_a_photo kind=%s user=%s", what, _short(user_id))
        return self.say(user_id, [f"รับได้เฉพาะรูปถ่าย (JPEG หรือ PNG) ไม่รับ{kind_th} จึงไม่ได้บันทึก",
                                  "ส่งรูปถ่ายแทน หรือเลือกความลึกเพื่อแจ้งโดยไม่มีรูป"],
                        [f"Only photos (JPEG or PNG) are accepted, and this is {kind_en}, so it was not kept.",
                         "Send a photo instead, or pick the depth to report without one."])


def _short(user_id: str) -> str:
    # user ids are personal data: logs keep only enough to correlate
    return user_id[:5] + "…"


def _wall_time_th(wall_s: float) -> str:
    return thai_time(wall_s)


def _wall_time_en(wall_s: float) -> str:
    return english_time(wall_s)
