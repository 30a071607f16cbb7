"""Flex cards residents read in LINE: a zone's water now, and a warning, as pictures with words.

Pure functions from plain data to LINE message objects (dicts in LINE's wire
format). Each card shows, per gauge: the level against the zone's three
warning lines (a bar with a mark at each line), the trend, the forecast peak
and its time with the chance of reaching the next line, the next high tide,
and what to do. ``altText`` (what a phone's notification and chat list show,
and what a screen reader reads) is Thai first.

The cards are checked against LINE's spec, the Flex component schema and
LINE's placement rules by the stand-in (tests/alerts/test_flex_cards.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from floodwatch.settings import StationConfig, ZoneConfig
from floodwatch.timefmt import english_datetime, english_time, thai_datetime, thai_time
from floodwatch.vocabulary import AlertLevel

from floodwatch.alerts.messages import (
    ADVICE_EN,
    ADVICE_TH,
    ALT_TEXT_MAX,
    LEVEL_COLOUR,
    LEVEL_ICON,
    TREND_TH,
    fit_text,
)
from floodwatch.alerts.rules import Action, tide_extrema

CAROUSEL_MAX = 12
OUTLOOK_HOURS = 24.0
GREY, INK, MUTED, TRACK = "#757575", "#1B1F23", "#5F6B76", "#E0E0E0"
LINE_NAMES_TH = {AlertLevel.WATCH: "เฝ้าระวัง", AlertLevel.WARNING: "ระดับเตือน", AlertLevel.EVACUATE: "อพยพ"}
ARROW = {"rising": "▲", "falling": "▼", "steady": "▶", "unknown": "·"}


@dataclass(frozen=True, slots=True)
class GaugeOutlook:
    """One gauge as a card shows it; times UTC epoch s, levels m MSL, NaN when unknown."""

    station: StationConfig
    level: AlertLevel                 # the level this gauge's reading justifies now
    level_m: float
    observed_s: float
    trend: str                        # rising | falling | steady | unknown
    trend_cm_per_h: float
    peak_m: float = math.nan          # forecast median's highest level within the outlook window
    peak_s: float = math.nan
    next_line: AlertLevel | None = None   # the lowest warning line above the level now
    next_line_chance: float = math.nan    # forecast chance of reaching it within the window (0..1)
    next_high_s: float = math.nan         # next high tide of the forecast median
    next_high_m: float = math.nan
    horizon_h: float = OUTLOOK_HOURS


def outlook_from_forecast(
    station: StationConfig,
    level: AlertLevel,
    level_m: float,
    observed_s: float,
    trend: str,
    trend_cm_per_h: float,
    now_s: float,
    t_s: np.ndarray | None = None,
    median_m: np.ndarray | None = None,
    exceed_prob: np.ndarray | None = None,
    horizon_h: float = OUTLOOK_HOURS,
) -> GaugeOutlook:
    """Reduce one station's forecast rows to what a card shows.

    Parameters
    ----------
    t_s : (H,) float, UTC epoch seconds of the forecast steps (None: no forecast yet).
    median_m : (H,) float, median level, m MSL.
    exceed_prob : (K=3, H) float, chance of reaching watch / warning / evacuate.
    """
    assert station.levels is not None
    lines = dict(zip((AlertLevel.WATCH, AlertLevel.WARNING, AlertLevel.EVACUATE), station.levels.as_tuple(),
                     strict=True))
    reference = level_m if math.isfinite(level_m) else -math.inf
    next_line = next((lv for lv, z in lines.items() if z > reference), None)
    out = GaugeOutlook(station, level, level_m, observed_s, trend, trend_cm_per_h, next_line=next_line,
                       horizon_h=horizon_h)
    if t_s is None or median_m is None or len(t_s) == 0:
        return out
    t_s, median_m = np.asarray(t_s, float), np.asarray(median_m, float)
    window = (t_s >= now_s - 1e-6) & (t_s <= now_s + horizon_h * 3600.0)
    if not window.any() or not np.isfinite(median_m[window]).any():
        return out
    ahead = np.where(window, median_m, -np.inf)
    k = int(np.nanargmax(ahead))
    chance = math.nan
    if next_line is not None and exceed_prob is not None:
        row = np.asarray(exceed_prob, float)[int(next_line) - 1]
        chance = float(np.nanmax(np.where(window, np.nan_to_num(row, nan=0.0), 0.0)))
    highs = [(t, z) for kind, t, z in tide_extrema(t_s, median_m, now_s, now_s + horizon_h * 3600.0)
             if kind == "high"]
    next_high_s, next_high_m = highs[0] if highs else (math.nan, math.nan)
    return GaugeOutlook(station, level, level_m, observed_s, trend, trend_cm_per_h, float(median_m[k]),
                        float(t_s[k]), next_line, chance, float(next_high_s), float(next_high_m), horizon_h)


def outlook_from_issued(station: StationConfig, level: AlertLevel, level_m: float, observed_s: float, trend: str,
                        trend_cm_per_h: float, now_s: float, issued: Any,
                        horizon_h: float = OUTLOOK_HOURS) -> GaugeOutlook:
    """:func:`outlook_from_forecast` with the station's rows of a ``scheduler.IssuedForecast`` (or None)."""
    if issued is None or station.id not in issued.station_ids:
        return outlook_from_forecast(station, level, level_m, observed_s, trend, trend_cm_per_h, now_s,
                                     horizon_h=horizon_h)
    row = list(issued.station_ids).index(station.id)
    fc = issued.forecast
    return outlook_from_forecast(station, level, level_m, observed_s, trend, trend_cm_per_h, now_s,
                                 np.asarray(fc.t_s), np.asarray(fc.median_m)[row], np.asarray(fc.exceed_prob)[row],
                                 horizon_h)


# ------------------------------------------------------------------ pieces
def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "text", "text": text, "wrap": True, **style}


def _bar(outlook: GaugeOutlook) -> dict[str, Any]:
    """A horizontal gauge: the water's fill, and a dark mark at each warning line."""
    assert outlook.station.levels is not None
    watch_m, _, evacuate_m = outlook.station.levels.as_tuple()
    low_m, top_m = watch_m - 1.0, evacuate_m + 0.3
    span_m = top_m - low_m

    def pct(z: float) -> float:
        return max(0.0, min(100.0, (z - low_m) / span_m * 100.0))

    fill = max(2.0, pct(outlook.level_m)) if math.isfinite(outlook.level_m) else 0.0
    marks = [{"type": "box", "layout": "vertical", "contents": [], "position": "absolute",
              "offsetStart": f"{pct(z):.1f}%", "offsetTop": "0px", "width": "3px", "height": "16px",
              "backgroundColor": LEVEL_COLOUR[lv]}
             for lv, z in zip((AlertLevel.WATCH, AlertLevel.WARNING, AlertLevel.EVACUATE),
                              outlook.station.levels.as_tuple(), strict=True)]
    water = {"type": "box", "layout": "vertical", "contents": [], "width": f"{fill:.1f}%", "height": "16px",
             "backgroundColor": LEVEL_COLOUR[outlook.level] + "CC"}
    return {"type": "box", "layout": "vertical", "contents": [water, *marks], "height": "16px",
            "backgroundColor": TRACK, "cornerRadius": "3px", "margin": "sm"}


def _lines_row(station: StationConfig, lang: str) -> dict[str, Any]:
    assert station.levels is not None
    cells = []
    for lv, z in zip((AlertLevel.WATCH, AlertLevel.WARNING, AlertLevel.EVACUATE), station.levels.as_tuple(),
                     strict=True):
        label = LINE_NAMES_TH[lv] if lang == "th" else lv.name_en
        cells.append(_text(f"{label} {z:.2f}", size="xxs", color=LEVEL_COLOUR[lv], flex=1, align="center"))
    return {"type": "box", "layout": "horizontal", "contents": cells, "margin": "xs"}


def _gauge_section(outlook: GaugeOutlook, lang: str) -> list[dict[str, Any]]:
    st = outlook.station
    th = lang == "th"
    out: list[dict[str, Any]] = [_text(st.name_th if th else st.name_en, size="xs", color=MUTED, weight="bold")]
    if not math.isfinite(outlook.level_m):
        out.append(_text("ยังไม่มีข้อมูลระดับน้ำ" if th else "No reading yet", size="sm", color=GREY))
        return out
    unit = "ม.รทก." if th else "m MSL"
    per_h = "ซม./ชม." if th else "cm/h"
    rate = "" if math.isnan(outlook.trend_cm_per_h) else f" {abs(outlook.trend_cm_per_h):.0f} {per_h}"
    trend = (TREND_TH[outlook.trend] if th else outlook.trend) + rate
    out.append({"type": "box", "layout": "baseline", "spacing": "sm", "contents": [
        _text(f"{outlook.level_m:.2f} {unit}", size="xl", weight="bold", color=LEVEL_COLOUR[outlook.level], flex=0),
        _text(f"{ARROW.get(outlook.trend, '·')} {trend}", size="sm", color=MUTED)]})
    out.append(_bar(outlook))
    out.append(_lines_row(st, lang))
    when = thai_time if th else english_time
    if math.isfinite(outlook.peak_m):
        peak_th = f"คาดการณ์ {outlook.horizon_h:.0f} ชม.: สูงสุด {outlook.peak_m:.2f} ม. เวลา {when(outlook.peak_s)}"
        peak_en = f"Next {outlook.horizon_h:.0f} h: peak {outlook.peak_m:.2f} m at {when(outlook.peak_s)}"
        out.append(_text(peak_th if th else peak_en, size="xs", color=INK, margin="sm"))
        if outlook.next_line is not None and math.isfinite(outlook.next_line_chance):
            z = outlook.station.levels.threshold_m(outlook.next_line)  # type: ignore[union-attr]
            name = LINE_NAMES_TH[outlook.next_line] if th else f"the {outlook.next_line.name_en} line"
            out.append(_text((f"โอกาสถึง{name} ({z:.2f} ม.): {outlook.next_line_chance * 100:.0f}%" if th else
                              f"Chance of reaching {name} ({z:.2f} m): {outlook.next_line_chance * 100:.0f} %"),
                             size="xs", color=LEVEL_COLOUR[outlook.next_line]))
    else:
        out.append(_text("ยังไม่มีคาดการณ์" if th else "No forecast yet", size="xs", color=GREY, margin="sm"))
    if math.isfinite(outlook.next_high_s):
        out.append(_text((f"🌊 น้ำขึ้นสูงสุดครั้งถัดไป {when(outlook.next_high_s)} {outlook.next_high_m:.2f} ม."
                          if th else f"🌊 Next high tide {when(outlook.next_high_s)}, {outlook.next_high_m:.2f} m"),
                         size="xs", color=MUTED))
    return out


def _bubble(level: AlertLevel, title_th: str, title_en: str, zone: ZoneConfig, sections: list[list[dict[str, Any]]],
            advice_level: AlertLevel, ts_s: float, lang: str) -> dict[str, Any]:
    th = lang == "th"
    body: list[dict[str, Any]] = []
    for i, section in enumerate(sections):
        if i:
            body.append({"type": "separator", "margin": "md"})
        body.append({"type": "box", "layout": "vertical", "spacing": "xs", "contents": section,
                     "margin": "md" if i else "none"})
    advice = ADVICE_TH[advice_level] if th else ADVICE_EN[advice_level]
    stamp = f"ข้อมูล ณ {thai_datetime(ts_s)}" if th else f"As of {english_datetime(ts_s)}"
    return {
        "type": "bubble", "size": "mega",
        "header": {"type": "box", "layout": "vertical", "backgroundColor": LEVEL_COLOUR[level], "contents": [
            _text(title_th if th else title_en, color="#FFFFFF", weight="bold", size="lg"),
            _text(zone.name_th if th else zone.name_en, color="#FFFFFF", size="xs")]},
        "body": {"type": "box", "layout": "vertical", "contents": body},
        "footer": {"type": "box", "layout": "vertical", "spacing": "xs", "backgroundColor": "#F5F7F9", "contents": [
            _text("สิ่งที่ควรทำ" if th else "What to do", size="xs", weight="bold", color=INK),
            _text(advice, size="xs", color=INK),
            _text(stamp, size="xxs", color=GREY)]},
    }


# ------------------------------------------------------------------ cards
def zone_status_bubble(zone: ZoneConfig, zone_level: AlertLevel, outlooks: list[GaugeOutlook], now_s: float,
                       lang: str = "th") -> dict[str, Any]:
    """One zone's water now: its level word, then a section per gauge."""
    title_th = f"{LEVEL_ICON[zone_level]} {zone_level.name_th}"
    title_en = f"{LEVEL_ICON[zone_level]} {zone_level.name_en.upper()}"
    sections = [_gauge_section(o, lang) for o in outlooks] or [[_text(
        "ไม่มีสถานีวัดระดับน้ำในหมู่นี้" if lang == "th" else "No level gauge in this village", size="sm", color=GREY)]]
    return _bubble(zone_level, title_th, title_en, zone, sections, zone_level, now_s, lang)


def status_alt_text(zones: list[tuple[ZoneConfig, AlertLevel, list[GaugeOutlook]]], lang: str = "th") -> str:
    """Thai first: each zone's level word and its gauges' levels (English after it for English readers)."""
    th, en = [], []
    for zone, level, outlooks in zones:
        gauges_th = ", ".join(f"{o.station.name_th} {o.level_m:.2f} ม." for o in outlooks if math.isfinite(o.level_m))
        gauges_en = ", ".join(f"{o.station.name_en} {o.level_m:.2f} m" for o in outlooks if math.isfinite(o.level_m))
        th.append(f"{LEVEL_ICON[level]} {zone.name_th}: {level.name_th}" + (f" ({gauges_th})" if gauges_th else ""))
        en.append(f"{zone.name_en}: {level.name_en}" + (f" ({gauges_en})" if gauges_en else ""))
    text = "ระดับน้ำตอนนี้\n" + "\n".join(th)
    if lang == "en":
        text += "\n— English —\nWater now\n" + "\n".join(en)
    return fit_text(text, ALT_TEXT_MAX)


def status_message(zones: list[tuple[ZoneConfig, AlertLevel, list[GaugeOutlook]]], now_s: float,
                   lang: str = "th") -> dict[str, Any]:
    """A Flex message: one bubble per zone (a carousel when several, at most 12)."""
    bubbles = [zone_status_bubble(zone, level, outlooks, now_s, lang) for zone, level, outlooks in
               zones[:CAROUSEL_MAX]]
    contents = bubbles[0] if len(bubbles) == 1 else {"type": "carousel", "contents": bubbles}
    return {"type": "flex", "altText": status_alt_text(zones, lang), "contents": contents}


def alert_message(action: Action, outlook: GaugeOutlook, zone: ZoneConfig, alt_text: str) -> dict[str, Any]:
    """A warning as a card (sent before the alert's text when ``line.flex_alerts`` is on).

    The header's first line is the level word in Thai and English
    (``เตือนภัย · WARNING``); ``altText`` is the alert's own Thai-first text.
    """
    lv = AlertLevel.NORMAL if action.kind == "all_clear" else action.level
    bubble = _bubble(lv, f"{lv.name_th} · {lv.name_en.upper()}", f"{lv.name_th} · {lv.name_en.upper()}", zone,
                     [_gauge_section(outlook, "th")], lv, action.ts_s, "th")
    if action.kind == "forecast" and action.forecast is not None and not math.isnan(action.forecast.reach_s):
        fc = action.forecast
        bubble["body"]["contents"].insert(0, _text(
            f"คาดการณ์: โอกาส {fc.probability * 100:.0f}% ถึงระดับ{lv.name_th} ประมาณ {thai_time(fc.reach_s)}",
            size="sm", weight="bold", color=LEVEL_COLOUR[lv]))
    return {"type": "flex", "altText": fit_text(alt_text, ALT_TEXT_MAX), "contents": bubble}
