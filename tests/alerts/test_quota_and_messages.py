"""Quota watch with evacuation first, LINE's message limits, the Flex gauge and the daily tide outlook."""

from __future__ import annotations

import numpy as np
from pydantic import SecretStr

from floodwatch.alerts import AlertService
from floodwatch.alerts.messages import TEXT_MAX_UTF16, fit_text, resident_alert_text, utf16_len
from floodwatch.alerts.rules import Action, RuleConfig
from floodwatch.settings import load_settings
from floodwatch.vocabulary import AlertLevel
from floodwatch.line_standin import LineStandIn

from tests.alerts.conftest import TOKEN, feed
from tests.alerts.test_service import _issued

OFFICER = "U" + "0e" * 16


def test_low_quota_warns_officers_and_holds_all_but_evacuation(make_settings, clock):
    with LineStandIn(tokens={TOKEN}, monthly_quota=1_500) as standin:
        settings = make_settings(line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(TOKEN),
                                       "quota_warn_fraction": 0.5, "quota_reserve_messages": 600,
                                       "quota_check_interval_s": 3600.0},
                                 alerts={"officers": [OFFICER]})
        moo1 = [f"U{i:032x}" for i in range(1_000)]
        moo6 = [f"U{i + 10**6:032x}" for i in range(300)]
        with AlertService(settings, clock) as service:
            service.subscribe_many([(u, "moo-1") for u in moo1] + [(u, "moo-6") for u in moo6])
            feed(service, clock, "LP-W02", [2.05, 2.06], step_s=3600)  # moo-1 WARNING: 1,000 residents + officer
            assert service.wait_delivered(10)
            quota = service.check_quota()
            assert quota == {"type": "limited", "value": 1500, "totalUsage": 1001}
            assert service.wait_delivered(10)
            officer = [m["text"] for m in standin.messages_for(OFFICER)]
            assert len(officer) == 2 and "โควตาข้อความ LINE เดือนนี้เหลือ 499 จาก 1,500" in officer[1]
            service.check_quota()  # once a month, not at every check
            # moo-6 (LP-W06 watch 1.45, evacuate 1.80): WATCH is held, then EVACUATE goes through
            feed(service, clock, "LP-W06", [1.50, 1.51], step_s=3600)
            assert not service.wait_delivered(0.5), "the WATCH message waits while the quota is low"
            feed(service, clock, "LP-W06", [1.85, 1.86], step_s=3600)
            assert service.wait_delivered(10)
            log = {e["level"]: e for e in service.log() if e["zone"] == "moo-6"}
        got = [standin.messages_for(u) for u in moo6]
        assert all(len(m) == 1 and m[0]["text"].startswith("🔴 อพยพ") for m in got)
        assert log["WATCH"]["state"] == "superseded" and log["EVACUATE"]["state"] == "delivered"
        officer = [m["text"] for m in standin.messages_for(OFFICER)]
        assert len(officer) == 3 and officer[2].startswith("🔴 อพยพ"), "officers see every zone's alerts"
        print(f"quota: used {standin.quota_used()} of 1,500; evacuation delivered to {len(got)} of 300")


def test_flex_gauge_with_text_fallback_passes_lines_validation(make_settings, standin, clock):
    settings = make_settings(line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(TOKEN),
                                   "flex_alerts": True})
    with AlertService(settings, clock) as service:
        service.subscribe("U" + "0a" * 16, "moo-4")
        feed(service, clock, "LP-W03", [1.70, 1.71], step_s=3600)
        assert service.wait_delivered(10)
    flex, text = standin.messages_for("U" + "0a" * 16)
    assert flex["type"] == "flex" and flex["altText"].startswith("🟠 เตือนภัย")
    assert flex["contents"]["header"]["contents"][0]["text"] == "เตือนภัย · WARNING"
    assert text["type"] == "text"
    assert all(r.status == 200 for r in standin.requests("/v2/bot/message/multicast"))


def test_messages_stay_within_lines_limits():
    settings = load_settings()
    station = settings.station("LP-W01")
    zone = settings.zone("moo-5")
    action = Action("forecast", "residents", zone.id, station.id, AlertLevel.EVACUATE, 1_795_930_800.0, 2.31, 35.0)
    text = resident_alert_text(action, station, zone, RuleConfig())
    assert utf16_len(text) < TEXT_MAX_UTF16
    long = "น้ำ🌊" * 3000
    cut = fit_text(long)
    assert utf16_len(cut) <= TEXT_MAX_UTF16 and cut.endswith("…") and long.startswith(cut[:-1])


def test_daily_tide_outlook_goes_once_a_day_to_those_who_asked(service, standin, clock):
    asked, not_asked = "U" + "0b" * 16, "U" + "0c" * 16
    service.subscribe(asked, "moo-5")
    service.subscribe(not_asked, "moo-5")
    service.db.set_user_flag(asked, "tide_daily", 1, clock.now_s())
    clock.t_s = 1_795_906_800.0 + 1800  # 06:30 Bangkok, 29 Nov 2026
    issued = _issued(service, clock, station="LP-W01", level_index=-1, prob=0.0, at_h=99, h=145)
    t_h = (issued.forecast.t_s - clock.now_s()) / 3600
    issued.forecast.median_m[issued.station_ids.index("LP-W01")] = 0.7 + 0.8 * np.cos(2 * np.pi * (t_h - 3) / 12.42)
    service.on_forecast(issued)
    assert service.daily_tide_outlook() == 1
    assert service.daily_tide_outlook() == 0
    assert service.wait_delivered(10)
    got = standin.messages_for(asked)
    assert len(got) == 1 and "น้ำขึ้นสูงสุด 09:30 น." in got[0]["text"]
    assert standin.messages_for(not_asked) == []
