"""External stations warn nobody and are never "silent"; officers hear when a feed goes bad and comes back."""

from __future__ import annotations

from floodwatch import store as store_pkg
from floodwatch.scheduler import OfflineCheck
from floodwatch.vocabulary import AlertLevel, QcFlag
from tests.alerts.conftest import T0_S, feed, reading


def test_an_external_gauge_far_above_evacuate_raises_no_resident_alert(service, standin, clock):
    resident, officer = "U" + "5e" * 16, "U" + "0f" * 16
    service.subscribe(resident, "moo-5")  # the zone the upstream gauges are filed under
    service.add_officer(officer)
    # Sam Chuk (watch 5.0 / warning 5.5 / evacuate 6.0) over its banks, and a reading that fails QC.
    feed(service, clock, "TC-SAMCHUK", [6.4, 6.5, 6.6, 6.7], step_s=900)
    service.on_readings([reading("TC-SAMCHUK", clock.now_s() + 1, 99.0, qc=QcFlag.FAIL)])
    service.on_status("TC-SAMCHUK", "offline", clock.now_s())
    assert service.wait_delivered(5)
    assert standin.messages_for(resident) == [] and standin.messages_for(officer) == []
    assert service.zone_levels()["moo-5"]["level"] == int(AlertLevel.NORMAL)
    assert "TC-SAMCHUK" not in service.station_levels()
    # The site's own gauge in the same zone still warns as before.
    feed(service, clock, "LP-W01", [2.25, 2.26], step_s=600)
    assert service.wait_delivered(10)
    assert any("อพยพ" in m["text"] for m in standin.messages_for(resident))


def test_officers_hear_once_when_a_feed_goes_bad_and_once_when_it_is_back(service, standin, clock):
    officer = "U" + "0a" * 16
    service.add_officer(officer)
    health = {"name_th": "ThaiWater (สสน.)", "name_en": "ThaiWater (HII)", "state": "failing",
              "last_success_s": T0_S - 3600,
              "last_error": {"reason": "timeout", "detail": "api did not answer within 30 s"}}
    # A feed that never worked (a fresh install offline) is the page's business, not a LINE message.
    for failures in (3, 4):
        service.on_feed_health("rid-plan", {**health, "last_success_s": None, "consecutive_failures": failures})
    for failures in (1, 2):  # a hiccup or two: not worth a message
        service.on_feed_health("thaiwater", {**health, "consecutive_failures": failures})
    assert service.wait_delivered(5) and standin.messages_for(officer) == []
    for failures in (3, 4, 5):
        clock.advance(900)
        service.on_feed_health("thaiwater", {**health, "consecutive_failures": failures})
    assert service.wait_delivered(5)
    [down] = standin.messages_for(officer)
    assert "ThaiWater (สสน.)" in down["text"] and "did not answer" in down["text"]
    clock.advance(900)
    service.on_feed_health("thaiwater", {**health, "state": "ok", "consecutive_failures": 0})
    assert service.wait_delivered(5)
    texts = [m["text"] for m in standin.messages_for(officer)]
    assert len(texts) == 2 and "กลับมาแล้ว" in texts[1]
    assert [e["kind"] for e in service.log()][:2] == ["feed_up", "feed_down"]


def test_the_offline_check_never_calls_an_external_station_silent(alert_settings):
    db = store_pkg.open_store(alert_settings)
    calls = []
    try:
        check = OfflineCheck(alert_settings, db, clock=type("C", (), {"now_s": lambda self: T0_S})(),
                             on_status=lambda sid, status, ts: calls.append((sid, status)))
        silent = check.run_once()
    finally:
        db.close()
    own = {s.id for s in alert_settings.own_stations}
    assert silent == own  # nothing stored: every own node is silent, no external station is
    assert {sid for sid, _ in calls} == own and not {"TC-SAMCHUK", "TC-MOUTH-TIDE"} & {sid for sid, _ in calls}
