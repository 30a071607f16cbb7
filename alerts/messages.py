"""The words residents and officers read: Thai first, then English.

Pure functions from an :class:`alerts.rules.Action` plus the registry entries
to LINE message objects (plain dicts in LINE's wire format). Times are shown
in Bangkok time with Buddhist-era dates; station and zone names in Thai
(English names in the English half).

A message names only its own alert level (never another level's Thai name),
so a reader, or a test, can tell a WARNING message (เตือนภัย) from a WATCH
message (เฝ้าระวัง) by the level word alone; the distance to the warning level
is given against "ระดับเตือน" (the warning line) instead.
"""

from __future__ import annotations

import math
from typing import Any

from floodwatch.settings import StationConfig, ZoneConfig
from floodwatch.timefmt import english_datetime, english_time, thai_datetime, thai_time
from floodwatch.vocabulary import AlertLevel

from floodwatch.alerts.rules import Action, RuleConfig, trend_word

# LINE's limits (see ../shared/line-openapi/README.md)
TEXT_MAX_UTF16 = 5000
ALT_TEXT_MAX = 1500
QUICK_REPLY_MAX = 13
MESSAGES_PER_REQUEST_MAX = 5

LEVEL_ICON = {AlertLevel.NORMAL: "✅", AlertLevel.WATCH: "🟡", AlertLevel.WARNING: "🟠", AlertLevel.EVACUATE: "🔴"}
LEVEL_COLOUR = {AlertLevel.NORMAL: "#2E7D32", AlertLevel.WATCH: "#F9A825",
                AlertLevel.WARNING: "#EF6C00", AlertLevel.EVACUATE: "#C62828"}

# What residents should do at each level (the "What to do" line of every message).
ADVICE_TH = {
    AlertLevel.WATCH: "ติดตามประกาศ เก็บเอกสารสำคัญ ยา และของมีค่าไว้ที่สูง",
    AlertLevel.WARNING: "ยกของขึ้นที่สูง ย้ายรถไปที่สูง เตรียมกระเป๋าฉุกเฉิน ดูแลผู้สูงอายุ เด็ก และผู้ป่วย",
    AlertLevel.EVACUATE: "อพยพไปยังจุดอพยพของเทศบาลทันที ตัดไฟก่อนออกจากบ้าน ขอความช่วยเหลือโทร 1784",
    AlertLevel.NORMAL: "ระวังไฟฟ้ารั่วและสัตว์มีพิษเมื่อกลับเข้าบ้าน",
}
ADVICE_EN = {
    AlertLevel.WATCH: "Follow updates; keep documents, medicines and valuables up high.",
    AlertLevel.WARNING: "Move belongings and vehicles to higher ground, pack an emergency bag, "
                        "check on elderly, children and the sick.",
    AlertLevel.EVACUATE: "Go to the municipality's evacuation point now; switch off the electricity "
                         "before leaving; for help call 1784.",
    AlertLevel.NORMAL: "Beware of live wires and snakes when you go back home.",
}
TREND_TH = {"rising": "กำลังขึ้น", "falling": "กำลังลง", "steady": "ทรงตัว", "unknown": "ยังไม่ทราบ"}


def utf16_len(text: str) -> int:
    """Length as LINE counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def fit_text(text: str, limit: int = TEXT_MAX_UTF16) -> str:
    """Cut ``text`` to LINE's limit without splitting a character."""
    if utf16_len(text) <= limit:
        return text
    out = text
    while utf16_len(out) > limit - 1:
        out = out[: max(0, len(out) - max(1, (utf16_len(out) - limit) // 2 + 1))]
    return out + "…"


def text_message(text: str, quick_reply: dict | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "text", "text": fit_text(text)}
    if quick_reply:
        msg["quickReply"] = quick_reply
    return msg


def _relative_th(level_m: float, warning_m: float) -> str:
    d = level_m - warning_m
    if abs(d) < 0.005:
        return f"เท่ากับระดับเตือน {warning_m:.2f} ม."
    side = "สูงกว่า" if d > 0 else "ต่ำกว่า"
    return f"{side}ระดับเตือน ({warning_m:.2f} ม.) {abs(d):.2f} ม."


def _relative_en(level_m: float, warning_m: float) -> str:
    d = level_m - warning_m
    if abs(d) < 0.005:
        return f"at the warning line {warning_m:.2f} m"
    side = "above" if d > 0 else "below"
    return f"{abs(d):.2f} m {side} the warning line ({warning_m:.2f} m)"


def _headline(action: Action) -> tuple[str, str]:
    lv = action.level
    if action.kind == "all_clear":
        return "✅ ยกเลิกการเตือน ระดับน้ำกลับสู่ปกติ", "✅ ALL CLEAR: water back to normal"
    if action.kind == "deescalate":
        return (f"{LEVEL_ICON[lv]} ลดระดับการเตือนเป็น {lv.name_th}",
                f"{LEVEL_ICON[lv]} Alert lowered to {lv.name_en.upper()}")
    if action.kind == "reminder":
        return (f"{LEVEL_ICON[lv]} ย้ำเตือน: ยังอยู่ในระดับ {lv.name_th}",
                f"{LEVEL_ICON[lv]} REMINDER: still at {lv.name_en.upper()}")
    if action.kind == "forecast":
        return (f"{LEVEL_ICON[lv]} {lv.name_th} (คาดการณ์)", f"{LEVEL_ICON[lv]} {lv.name_en.upper()} (forecast)")
    if action.kind == "rise":
        return (f"{LEVEL_ICON[lv]} {lv.name_th}: น้ำขึ้นเร็ว", f"{LEVEL_ICON[lv]} {lv.name_en.upper()}: water rising fast")
    return f"{LEVEL_ICON[lv]} {lv.name_th} น้ำท่วม", f"{LEVEL_ICON[lv]} FLOOD {lv.name_en.upper()}"


def bilingual(th: list[str], en: list[str], lang: str = "th") -> str:
    """Thai first (English after a divider) unless the reader asked for English."""
    if lang == "en":
        return fit_text("\n".join(en) + "\n\n— ภาษาไทย —\n" + "\n".join(th))
    return fit_text("\n".join(th) + "\n\n— English —\n" + "\n".join(en))


def resident_alert_text(action: Action, station: StationConfig, zone: ZoneConfig, cfg: RuleConfig,
                        lang: str = "th") -> str:
    """The full bilingual alert text (within LINE's 5,000 UTF-16 units)."""
    assert station.levels is not None
    warning_m = station.levels.warning_m
    head_th, head_en = _headline(action)
    trend = trend_word(action.trend_cm_per_h, cfg)
    rate = action.trend_cm_per_h
    th = [head_th, f"พื้นที่: {zone.name_th}", f"สถานีวัด: {station.name_th}"]
    en = [head_en, f"Area: {zone.name_en}", f"Gauge: {station.name_en}"]
    if not math.isnan(action.water_level_m):
        at_th = "" if math.isnan(action.observed_s) else f" เมื่อ {thai_time(action.observed_s)}"
        at_en = "" if math.isnan(action.observed_s) else f" at {english_time(action.observed_s)}"
        th.append(f"ระดับน้ำ {action.water_level_m:.2f} ม.รทก.{at_th} "
                  f"({_relative_th(action.water_level_m, warning_m)})")
        en.append(f"Water level {action.water_level_m:.2f} m above mean sea level{at_en} "
                  f"({_relative_en(action.water_level_m, warning_m)})")
    rate_th = "" if math.isnan(rate) else f" {abs(rate):.0f} ซม./ชม."
    rate_en = "" if math.isnan(rate) else f" {abs(rate):.0f} cm/h"
    th.append(f"แนวโน้ม: {TREND_TH[trend]}{rate_th}")
    en.append(f"Trend: {trend}{rate_en}")
    fc = action.forecast
    if fc is not None and action.kind == "forecast" and not math.isnan(fc.reach_s):
        lead_h = max(0.0, (fc.reach_s - action.ts_s) / 3600.0)
        th.append(f"คาดการณ์: มีโอกาส {fc.probability * 100:.0f}% ที่น้ำจะถึงระดับ{action.level.name_th}"
                  f" ภายใน {math.ceil(lead_h) or 1} ชม. (ประมาณ {thai_time(fc.reach_s)})")
        en.append(f"Forecast: {fc.probability * 100:.0f} % chance of reaching the {action.level.name_en} level"
                  f" within {math.ceil(lead_h) or 1} h (around {english_time(fc.reach_s)})")
    elif fc is not None and not math.isnan(fc.peak_m):
        th.append(f"คาดการณ์ 3 ชม. ข้างหน้า: สูงสุดประมาณ {fc.peak_m:.2f} ม.รทก.")
        en.append(f"Next hours: peak around {fc.peak_m:.2f} m")
    if action.kind == "rise":
        th.append(f"น้ำขึ้นเร็วกว่า {cfg.rise_rate_cm_per_h:.0f} ซม./ชม. อาจท่วมเร็วกว่าที่คาด")
        en.append(f"Rising faster than {cfg.rise_rate_cm_per_h:.0f} cm/h; flooding may come sooner than expected.")
    advice_level = AlertLevel.NORMAL if action.kind == "all_clear" else action.level
    th.append(f"สิ่งที่ควรทำ: {ADVICE_TH[advice_level]}")
    en.append(f"What to do: {ADVICE_EN[advice_level]}")
    th.append(f"เวลา {thai_datetime(action.ts_s)}")
    en.append(f"Time: {english_datetime(action.ts_s)}")
    th.append("พิมพ์ \"สถานะ\" เพื่อดูระดับน้ำล่าสุด")
    en.append("Type \"status\" for the latest level.")
    return bilingual(th, en, lang)


def low_water_text(action: Action, station: StationConfig, zone: ZoneConfig, lang: str = "th") -> str:
    if action.kind == "low_water":
        th = [f"💧 ระดับน้ำต่ำ (ภัยแล้ง) ที่ {station.name_th}",
              f"ระดับน้ำ {action.water_level_m:.2f} ม.รทก. ต่ำกว่าระดับน้ำต่ำ {station.low_water_m:.2f} ม.",
              "การสูบน้ำประปาและน้ำเพื่อการเกษตรอาจได้น้อยลง โปรดใช้น้ำอย่างประหยัด"]
        en = [f"💧 LOW WATER (drought) at {station.name_en}",
              f"Level {action.water_level_m:.2f} m, below the low-water line {station.low_water_m:.2f} m.",
              "Water-supply and irrigation intakes may draw less; please save water."]
    else:
        th = [f"💧 ระดับน้ำที่ {station.name_th} กลับสูงกว่าระดับน้ำต่ำแล้ว ({action.water_level_m:.2f} ม.รทก.)"]
        en = [f"💧 Water at {station.name_en} is back above the low-water line ({action.water_level_m:.2f} m)."]
    th.append(f"พื้นที่: {zone.name_th} เวลา {thai_datetime(action.ts_s)}")
    en.append(f"Area: {zone.name_en}. Time: {english_datetime(action.ts_s)}")
    return bilingual(th, en, lang)


def officer_text(action: Action, station: StationConfig, lang: str = "th") -> str:
    when_th, when_en = thai_datetime(action.ts_s), english_datetime(action.ts_s)
    if action.kind == "sensor_offline":
        th = f"📡 [เจ้าหน้าที่] สถานี {station.id} {station.name_th} ออฟไลน์ เมื่อ {when_th} ตรวจแบตเตอรี่และสัญญาณ"
        en = f"📡 [Officers] Station {station.id} ({station.name_en}) went offline at {when_en}; check battery and signal."
    elif action.kind == "sensor_online":
        th = f"📡 [เจ้าหน้าที่] สถานี {station.id} {station.name_th} กลับมาออนไลน์ เมื่อ {when_th}"
        en = f"📡 [Officers] Station {station.id} ({station.name_en}) is back online at {when_en}."
    else:
        th = f"🧪 [เจ้าหน้าที่] ค่าจากสถานี {station.id} {station.name_th} ไม่ผ่านการตรวจคุณภาพ ({action.detail}) เมื่อ {when_th}"
        en = f"🧪 [Officers] Readings from {station.id} ({station.name_en}) failed quality control ({action.detail}) at {when_en}; check the sensor."
    return bilingual([th], [en], lang)


def flex_gauge(action: Action, station: StationConfig, zone: ZoneConfig, alt_text: str) -> dict[str, Any]:
    """A small Flex bubble: level word, zone, and a bar gauge against the three warning lines."""
    assert station.levels is not None
    lv = AlertLevel.NORMAL if action.kind == "all_clear" else action.level
    watch_m, warning_m, evacuate_m = station.levels.as_tuple()
    low_m = station.levels.watch_m - 1.0
    top_m = evacuate_m + 0.3
    level_m = action.water_level_m if not math.isnan(action.water_level_m) else low_m
    fill = max(2, min(100, round((level_m - low_m) / (top_m - low_m) * 100)))

    def row(label: str, value_m: float, colour: str) -> dict:
        return {"type": "box", "layout": "horizontal", "contents": [
            {"type": "text", "text": label, "size": "xs", "color": colour, "flex": 3},
            {"type": "text", "text": f"{value_m:.2f} ม.", "size": "xs", "align": "end", "flex": 2}]}

    return {
        "type": "flex",
        "altText": fit_text(alt_text, ALT_TEXT_MAX),
        "contents": {
            "type": "bubble", "size": "kilo",
            "header": {"type": "box", "layout": "vertical", "backgroundColor": LEVEL_COLOUR[lv], "contents": [
                {"type": "text", "text": f"{lv.name_th} · {lv.name_en.upper()}", "color": "#FFFFFF",
                 "weight": "bold", "size": "lg"},
                {"type": "text", "text": zone.name_th, "color": "#FFFFFF", "size": "xs", "wrap": True}]},
            "body": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": [
                {"type": "text", "text": f"{level_m:.2f} ม.รทก.", "weight": "bold", "size": "xl"},
                {"type": "box", "layout": "vertical", "backgroundColor": "#E0E0E0", "height": "12px",
                 "contents": [{"type": "box", "layout": "vertical", "backgroundColor": LEVEL_COLOUR[lv],
                               "width": f"{fill}%", "height": "12px", "contents": []}]},
                row(AlertLevel.EVACUATE.name_th, evacuate_m, LEVEL_COLOUR[AlertLevel.EVACUATE]),
                row("ระดับเตือน", warning_m, LEVEL_COLOUR[AlertLevel.WARNING]),
                row(AlertLevel.WATCH.name_th, watch_m, LEVEL_COLOUR[AlertLevel.WATCH]),
                {"type": "text", "text": f"{station.name_th} · {thai_datetime(action.ts_s)}",
                 "size": "xxs", "color": "#757575", "wrap": True}]},
        },
    }


def feed_text(kind: str, name_th: str, name_en: str, detail: str, ts_s: float, lang: str = "th") -> str:
    """Officers: an external feed (upstream gauges, a dam, a tide table) stopped or came back."""
    when_th, when_en = thai_datetime(ts_s), english_datetime(ts_s)
    if kind == "feed_down":
        th = [f"🛰️ [เจ้าหน้าที่] ข้อมูลจาก {name_th} ขาดหายหรือล่าช้า เมื่อ {when_th}",
              f"สาเหตุ: {detail}" if detail else "",
              "การพยากรณ์จะไม่ใช้ข้อมูลต้นน้ำนี้จนกว่าจะกลับมา ดูสถานะในหน้าเว็บ"]
        en = [f"🛰️ [Officers] The {name_en} feed stopped or fell behind at {when_en}.",
              f"Cause: {detail}" if detail else "",
              "Forecasts go without these upstream inputs until it is back; see the page's feed health."]
    else:
        th = [f"🛰️ [เจ้าหน้าที่] ข้อมูลจาก {name_th} กลับมาแล้ว เมื่อ {when_th}"]
        en = [f"🛰️ [Officers] The {name_en} feed is back at {when_en}."]
    return bilingual([x for x in th if x], [x for x in en if x], lang)
