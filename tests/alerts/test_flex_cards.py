"""Flex cards and the rich menu's answers, validated by the stand-in against LINE's spec and Flex rules."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from linebot.v3.messaging import ApiClient, ApiException, Configuration, MessagingApi, ValidateMessageRequest

from floodwatch.alerts import flex
from floodwatch.alerts.rules import Action, StationForecast
from floodwatch.line_standin import new_user_id, postback_event
from floodwatch.settings import load_settings
from floodwatch.timefmt import thai_time
from floodwatch.vocabulary import AlertLevel, StationId, ZoneId

from tests.alerts.conftest import SECRET, TOKEN, T0_S, feed
from tests.alerts.test_reports import webhook_url  # noqa: F401 - the fixture


def tidal_issued(station_ids: tuple[str, ...], now_s: float, warning_chance: float = 0.65):
    """A real scheduler.IssuedForecast: a semidiurnal tide on every gauge, rising through the warning line."""
    from floodwatch.models import Forecast
    from floodwatch.scheduler import IssuedForecast

    h = 432  # 72 h at 10 min
    t_s = now_s + np.arange(1, h + 1) * 600.0
    s = len(station_ids)
    hours = (t_s - now_s) / 3600.0
    median = 1.55 + 0.35 * np.sin(2 * np.pi * hours / 12.42) + 0.004 * hours[None, :] * np.ones((s, 1))
    exceed = np.zeros((s, 3, h))
    exceed[:, 0, :] = 0.9
    exceed[:, 1, :] = np.clip(warning_chance * hours / 24.0, 0, warning_chance)
    exceed[:, 2, :] = 0.05
    forecast = Forecast(t_s=t_s, median_m=median, lower_m=median - 0.15, upper_m=median + 0.15, exceed_prob=exceed,
                        first_crossing_s=np.full((s, 3), math.nan), rise_rate_cm_per_h=np.zeros(s),
                        model_name=("test",) * s)
    return IssuedForecast(now_s, tuple(StationId(x) for x in station_ids), forecast)


@pytest.fixture
def validator(standin):
    client = ApiClient(Configuration(host=standin.base_url, access_token=TOKEN))
    api = MessagingApi(client)

    def validate(message: dict) -> None:
        # the same SDK round trip LineClient.reply/multicast makes, then LINE's (the stand-in's) checks
        api.validate_push(ValidateMessageRequest.from_dict({"messages": [message]}))

    yield validate
    client.close()


def _outlooks(settings, issued, now_s: float, level_m: float) -> dict[str, list[flex.GaugeOutlook]]:
    out: dict[str, list[flex.GaugeOutlook]] = {}
    for st in settings.level_stations:
        lv = AlertLevel.NORMAL
        for candidate, z in zip((AlertLevel.WATCH, AlertLevel.WARNING, AlertLevel.EVACUATE), st.levels.as_tuple(),
                                strict=True):
            if level_m >= z:
                lv = candidate
        out.setdefault(st.zone, []).append(flex.outlook_from_issued(st, lv, level_m, now_s - 300, "rising", 12.0,
                                                                    now_s, issued))
    return out


def test_outlook_reduces_a_forecast_to_peak_next_line_chance_and_next_high_tide():
    settings = load_settings()
    st = settings.station("LP-W01")  # watch 1.60, warning 1.90, evacuate 2.20
    issued = tidal_issued(("LP-W01",), T0_S)
    o = flex.outlook_from_issued(st, AlertLevel.WATCH, 1.70, T0_S - 600, "rising", 8.0, T0_S, issued)
    assert o.next_line == AlertLevel.WARNING
    assert o.next_line_chance == pytest.approx(0.65)
    assert T0_S < o.peak_s <= T0_S + 24 * 3600 and o.peak_m == pytest.approx(1.55 + 0.35 + 0.004 * 18.6, abs=0.05)
    assert o.next_high_s == pytest.approx(T0_S + 12.42 / 4 * 3600, abs=900) and o.next_high_m > 1.85
    none = flex.outlook_from_issued(st, AlertLevel.NORMAL, math.nan, math.nan, "unknown", math.nan, T0_S, None)
    assert math.isnan(none.peak_m) and none.next_line == AlertLevel.WATCH


@pytest.mark.parametrize("lang", ["th", "en"])
@pytest.mark.parametrize("level_m", [0.9, 1.75, 2.05, 2.5, math.nan])
def test_every_status_card_passes_lines_validation(validator, lang, level_m):
    settings = load_settings()
    issued = tidal_issued(tuple(s.id for s in settings.level_stations), T0_S)
    outlooks = _outlooks(settings, issued if not math.isnan(level_m) else None, T0_S, level_m)
    zones = [(settings.zone(z), AlertLevel.WARNING, o) for z, o in outlooks.items()]
    for chosen in (zones[:1], zones):  # one village: a bubble; every village: a carousel
        message = flex.status_message(chosen, T0_S, lang)
        validator(message)
        assert message["altText"].startswith("ระดับน้ำตอนนี้\n🟠 ")
        assert len(message["altText"]) <= 1500
    assert message["contents"]["type"] == "carousel" and len(message["contents"]["contents"]) == len(zones)


def test_a_warning_card_names_the_level_shows_the_forecast_and_passes_validation(validator):
    settings = load_settings()
    st, zone = settings.station("LP-W06"), settings.zone("moo-6")
    issued = tidal_issued((st.id,), T0_S)
    fc = StationForecast(T0_S, AlertLevel.WARNING, 0.85, T0_S + 7200, 1.7, 10.0)
    action = Action("forecast", "residents", ZoneId("moo-6"), StationId(st.id), AlertLevel.WARNING, T0_S,
                    water_level_m=1.52, trend_cm_per_h=10.0, forecast=fc, observed_s=T0_S - 300)
    outlook = flex.outlook_from_issued(st, AlertLevel.WATCH, 1.52, T0_S - 300, "rising", 10.0, T0_S, issued)
    message = flex.alert_message(action, outlook, zone, "🟠 เตือนภัย (คาดการณ์)\n...")
    validator(message)
    body = message["contents"]
    assert body["header"]["contents"][0]["text"] == "เตือนภัย · WARNING"
    texts = [c.get("text", "") for c in body["body"]["contents"]]
    assert texts[0] == f"คาดการณ์: โอกาส 85% ถึงระดับเตือนภัย ประมาณ {thai_time(T0_S + 7200)}"
    flat = str(body)
    assert "ระดับเตือน 1.60" in flat and "🌊 น้ำขึ้นสูงสุดครั้งถัดไป" in flat and "โอกาสถึงระดับเตือน" in flat
    assert "สิ่งที่ควรทำ" in flat


def test_a_card_broken_on_purpose_is_refused_by_the_stand_in(validator):
    settings = load_settings()
    issued = tidal_issued(("LP-W01",), T0_S)
    outlooks = _outlooks(settings, issued, T0_S, 1.75)
    good = flex.status_message([(settings.zone("moo-5"), AlertLevel.WATCH, outlooks["moo-5"])], T0_S)
    validator(good)
    for breakage in ("colour", "icon", "size"):
        bad = copy.deepcopy(good)
        gauge = bad["contents"]["body"]["contents"][0]["contents"]
        if breakage == "colour":
            gauge[1]["contents"][0]["color"] = "dark red"
        elif breakage == "icon":
            gauge.append({"type": "icon", "url": "https://example.org/wave.png"})
        else:
            gauge[2]["height"] = "tall"
        with pytest.raises(ApiException) as refused:
            validator(bad)
        assert refused.value.status == 400, breakage


def test_the_rich_menus_buttons_answer_with_cards_tide_zones_and_advice(service, standin, clock, webhook_url):  # noqa: F811
    user = new_user_id()
    service.subscribe(user, "moo-1")  # two gauges: LP-W02 (river) and LP-W07 (road)
    feed(service, clock, "LP-W02", [1.72, 1.78])
    service.on_forecast(tidal_issued(tuple(service.thresholds), clock.now_s()))
    assert service.wait_delivered(10)  # the WATCH alert those readings raised is out of the way

    def tap(action: str) -> list[dict]:
        before = len(standin.messages_for(user))
        assert standin.send_webhook(webhook_url, SECRET, [postback_event(user, f"action={action}")]).status == 200
        return standin.messages_for(user)[before:]

    [card] = tap("menu_status")
    assert card["type"] == "flex" and card["contents"]["type"] == "bubble"
    assert card["altText"].startswith("ระดับน้ำตอนนี้\n🟡 หมู่ 1")
    assert "แม่น้ำท่าจีน สะพานท่าจีน ถนน 346 1.78 ม." in card["altText"]
    assert card["quickReply"]["items"][0]["action"]["data"] == "action=remove&zone=moo-1"
    tide = tap("menu_tide")
    assert tide[0]["text"].startswith("🌊 น้ำขึ้นน้ำลง 24 ชม. ข้างหน้า")
    assert tide[1]["text"].startswith("📈 แนวโน้ม 24 ชม. ข้างหน้า") and "โอกาสถึงระดับเตือน" in tide[1]["text"]
    [zones] = tap("menu_zone")
    assert "เลือกหมู่บ้านและภาษา" in zones["text"] and len(zones["quickReply"]["items"]) == 6 + 3
    [advice] = tap("menu_prepare")
    assert advice["text"].startswith("🧭 เตรียมพร้อมรับน้ำท่วม") and "1784" in advice["text"]
    assert "— English —" in advice["text"]
    assert all(r.status == 200 for r in standin.requests("/v2/bot/message/reply"))
