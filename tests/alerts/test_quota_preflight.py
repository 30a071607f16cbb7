"""An alert the month's LINE quota cannot cover: officers are told before it is sent, not after it fails."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from floodwatch.alerts import AlertService
from floodwatch.alerts.quota import QuotaUse, shortfall, use_from
from floodwatch.line_standin import LineStandIn
from floodwatch.vocabulary import AlertLevel

from tests.alerts.conftest import TOKEN, feed

OFFICER = "U" + "0f" * 16


def test_use_and_shortfall_arithmetic():
    use = use_from({"type": "limited", "value": 1000, "totalUsage": 700}, delivered_since_check=50, pending=100,
                   checked_wall_s=1.0)
    assert (use.limit, use.used, use.left, use.room) == (1000, 750, 250, 150)
    assert shortfall(use, 150) == 0 and shortfall(use, 151) == 1 and shortfall(use, 400) == 250
    unlimited = use_from({"type": "none", "totalUsage": 5}, 0, 0, 1.0)
    assert unlimited.limit is None and shortfall(unlimited, 10**6) == 0
    assert shortfall(QuotaUse(False, None, 0, 0, None), 10) == 0, "an unknown quota warns nobody"
    overdrawn = use_from({"type": "limited", "value": 100, "totalUsage": 120}, 0, 0, 1.0)
    assert shortfall(overdrawn, 10) == 10


def test_officers_hear_of_a_shortfall_before_the_warning_goes_out(make_settings, clock):
    residents = [f"U{i:032x}" for i in range(60)]
    with LineStandIn(tokens={TOKEN}, monthly_quota=40) as standin:
        settings = make_settings(line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(TOKEN),
                                       "delivery_threads": 1, "quota_check_interval_s": 3600.0,
                                       "retry_base_s": 0.02, "retry_max_s": 0.1},
                                 alerts={"officers": [OFFICER]})
        with AlertService(settings, clock) as service:
            heard: list[tuple[str, dict]] = []
            service.add_listener(lambda kind, data: heard.append((kind, data)))
            service.subscribe_many([(u, "moo-6") for u in residents])
            assert service.check_quota() == {"type": "limited", "value": 40, "totalUsage": 0}
            status = service.quota_status()
            assert (status["limit"], status["used"], status["left"], status["shortfalls"]) == (40, 0, 40, [])

            feed(service, clock, "LP-W06", [1.62, 1.63], step_s=600)  # WARNING: 60 residents + 1 officer
            log = service.log()
            warning = next(e for e in log if e["kind"] == "escalate")
            told = next(e for e in log if e["kind"] == "quota")
            assert warning["id"] < told["id"] and warning["level"] == "WARNING"  # decided together, same commit
            assert told["audience"] == "officers" and told["zone"] == "moo-6"
            assert told["text"].startswith("⚠️ [เจ้าหน้าที่] โควตาข้อความ LINE ไม่พอ: การแจ้งเตือนภัย หมู่ 6")
            assert "ต้องใช้ 61 ข้อความ" in told["text"] and "ประมาณ 21 คนจะไม่ได้รับ" in told["text"]
            assert "(told before sending)" in told["text"]
            assert [k for k, _ in heard].count("quota") >= 1
            shortfall_event = next(d for k, d in heard if k == "quota" and "missing" in d)
            assert shortfall_event["missing"] == 21 and shortfall_event["needed"] == 61

            service.wait_delivered(5)  # the quota runs out part-way: some chunks stay held
            sends = [r for r in standin.requests("/v2/bot/message/multicast")]
            first_officer = next(i for i, r in enumerate(sends) if r.body["to"] == [OFFICER])
            first_resident = next(i for i, r in enumerate(sends) if set(r.body["to"]) & set(residents))
            assert first_officer < first_resident, "the officers' warning is sent ahead of the alert"
            assert sends[first_officer].status == 200
            assert standin.messages_for(OFFICER)[0]["text"].startswith("⚠️ [เจ้าหน้าที่] โควตาข้อความ LINE ไม่พอ")

            status = service.quota_status()
            [entry] = status["shortfalls"]
            assert entry["zone"] == "moo-6" and entry["level"] == int(AlertLevel.WARNING) and entry["missing"] == 21
            assert status["used"] == standin.quota_used()

            # the next step up in the same zone the same month: told again; the same one again: not
            before = len([e for e in service.log() if e["kind"] == "quota"])
            feed(service, clock, "LP-W06", [1.85, 1.86], step_s=600)  # EVACUATE
            assert len([e for e in service.log() if e["kind"] == "quota"]) == before + 1


@pytest.mark.parametrize("quota", [None, 10_000])
def test_no_warning_when_the_quota_covers_the_alert_or_there_is_no_limit(make_settings, clock, quota):
    with LineStandIn(tokens={TOKEN}, monthly_quota=quota) as standin:
        settings = make_settings(line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(TOKEN)})
        with AlertService(settings, clock) as service:
            service.subscribe_many([(f"U{i:032x}", "moo-6") for i in range(60)])
            service.check_quota()
            feed(service, clock, "LP-W06", [1.62, 1.63], step_s=600)
            assert service.wait_delivered(10)
            assert [e["kind"] for e in service.log()] == ["escalate"]
            assert service.quota_status()["shortfalls"] == []
