"""AlertService end to end against the real LINE stand-in: observed levels, forecasts, officers, restarts."""

from __future__ import annotations

import math

import numpy as np

from floodwatch.alerts import AlertService
from floodwatch.vocabulary import AlertLevel, QcFlag

from floodwatch.timefmt import thai_time

from tests.alerts.conftest import T0_S, feed, reading


def _texts(standin, user_id):
    return [m["text"] for m in standin.messages_for(user_id)]


def test_warning_reaches_each_resident_of_the_zone_once_and_nobody_else(service, standin, clock):
    moo1 = [f"U{'1' * 31}{i}" for i in range(3)]
    moo5 = [f"U{'5' * 31}{i}" for i in range(2)]
    for u in moo1:
        service.subscribe(u, "moo-1")
    for u in moo5:
        service.subscribe(u, "moo-5")

    # LP-W02 (moo-1): watch 1.70, warning 2.00, evacuate 2.30; a river rising ~8 cm/h, hourly readings
    feed(service, clock, "LP-W02", [1.60, 1.72, 1.78, 1.86, 1.94], step_s=3600)
    assert service.wait_delivered(10)  # the WATCH message goes out before the water reaches warning
    feed(service, clock, "LP-W02", [2.02, 2.05, 2.06, 1.99, 2.05], step_s=3600)
    assert service.wait_delivered(10)

    for u in moo1:
        texts = _texts(standin, u)
        warnings = [t for t in texts if "เตือนภัย" in t]
        watches = [t for t in texts if "เฝ้าระวัง" in t.splitlines()[0]]
        assert len(warnings) == 1 and len(watches) == 1, texts
        w = warnings[0]
        assert w.index("เตือนภัย") < w.index("WARNING"), "Thai first"
        assert f"2.05 ม.รทก. เมื่อ {thai_time(T0_S + 7 * 3600)} (สูงกว่าระดับเตือน (2.00 ม.) 0.05 ม.)" in w
        assert "2569" in w, "Buddhist-era year"
        assert "แม่น้ำท่าจีน สะพานท่าจีน ถนน 346" in w
    for u in moo5:
        assert standin.messages_for(u) == []
    log = service.log()
    assert [e["level"] for e in log if e["audience"] == "residents"] == ["WARNING", "WATCH"]
    assert all(e["state"] == "delivered" and e["delivered"] == 3 for e in log)
    assert service.zone_levels()["moo-1"]["level"] == int(AlertLevel.WARNING)


def test_officers_get_every_zones_alerts_once(service, standin, clock):
    officer, neighbour = "U" + "6a" * 16, "U" + "6b" * 16
    service.add_officer(officer)
    service.subscribe(officer, "moo-6")  # an officer who also lives in moo-6
    service.subscribe(neighbour, "moo-6")
    feed(service, clock, "LP-W06", [1.62, 1.63], step_s=3600)
    feed(service, clock, "LP-W02", [2.05, 2.06], step_s=3600)  # moo-1, where the officer does not live
    assert service.wait_delivered(10)
    assert len(_texts(standin, officer)) == 2 and len(_texts(standin, neighbour)) == 1
    assert [e["recipients"] for e in service.log()] == [1, 2]


def test_a_single_spike_and_qc_failed_readings_raise_no_resident_alert(service, standin, clock):
    service.subscribe("Uspike", "moo-1")
    service.add_officer("Uofficer")
    feed(service, clock, "LP-W02", [1.50, 2.60, 1.50, 1.51])
    clock.advance(600)
    service.on_readings([reading("LP-W02", clock.now_s(), 2.7, QcFlag.FAIL)])
    clock.advance(600)
    service.on_readings([reading("LP-W02", clock.now_s(), 2.7, QcFlag.FAIL)])
    assert service.wait_delivered(10)
    assert standin.messages_for("Uspike") == []
    officer = _texts(standin, "Uofficer")
    assert len(officer) == 1 and "ไม่ผ่านการตรวจคุณภาพ" in officer[0]  # one QC alert, then the cooldown


def test_restart_neither_repeats_nor_forgets(alert_settings, standin, clock):
    with AlertService(alert_settings, clock) as first:
        first.subscribe("Urestart", "moo-6")
        # LP-W06 (moo-6): watch 1.45, warning 1.60, evacuate 1.80
        feed(first, clock, "LP-W06", [1.62, 1.63])
        assert first.wait_delivered(10)
    assert len(standin.messages_for("Urestart")) == 1
    with AlertService(alert_settings, clock) as second:
        feed(second, clock, "LP-W06", [1.63, 1.64, 1.62])
        assert second.wait_delivered(10)
        assert second.zone_levels()["moo-6"]["level"] == int(AlertLevel.WARNING)
        feed(second, clock, "LP-W06", [1.85, 1.86])
        assert second.wait_delivered(10)
    texts = _texts(standin, "Urestart")
    assert len(texts) == 2 and "อพยพ" in texts[1].splitlines()[0]


def test_forecast_raises_an_alert_with_its_probability_and_lead_time(service, standin, clock):
    service.subscribe("Uforecast", "moo-4")
    issued = _issued(service, clock, station="LP-W03", level_index=1, prob=0.85, at_h=2.0)
    service.on_forecast(issued)
    assert service.wait_delivered(10)
    texts = _texts(standin, "Uforecast")
    assert len(texts) == 1
    assert "เตือนภัย (คาดการณ์)" in texts[0] and "85%" in texts[0] and "ภายใน 2 ชม." in texts[0]
    # the same forecast again: no second message
    service.on_forecast(_issued(service, clock, station="LP-W03", level_index=1, prob=0.9, at_h=1.5))
    assert service.wait_delivered(10)
    assert len(_texts(standin, "Uforecast")) == 1


def _issued(service, clock, station, level_index, prob, at_h, h=37):
    """A real scheduler.IssuedForecast of a models.Forecast with the chances and levels a test needs."""
    from floodwatch.models import Forecast
    from floodwatch.scheduler import IssuedForecast

    ids = tuple(service.thresholds)
    s = len(ids)
    t_s = clock.now_s() + np.arange(1, h + 1) * 600.0  # origin + k * step, k = 1..H
    median = np.full((s, h), 0.5)
    exceed = np.zeros((s, 3, h))
    row = ids.index(station)
    hit = t_s >= clock.now_s() + at_h * 3600
    exceed[row, : level_index + 1, hit] = prob
    median[row] = np.linspace(1.3, 1.8, h)
    forecast = Forecast(t_s=t_s, median_m=median, lower_m=median - 0.1, upper_m=median + 0.1, exceed_prob=exceed,
                        first_crossing_s=np.full((s, 3), math.nan), rise_rate_cm_per_h=np.zeros(s),
                        model_name=("test",) * s)
    return IssuedForecast(clock.now_s(), ids, forecast)


def test_officer_actions_manual_message_test_alert_maintenance_and_acknowledge(service, standin, clock):
    resident, officer = "U" + "1a" * 16, "U" + "1b" * 16
    service.subscribe(resident, "moo-6")
    service.add_officer(officer)
    result = service.send_manual_message(["moo-6"], "แจกกระสอบทรายที่วัด 14:00 น.", "Sandbags at the temple 14:00",
                                         by="somchai")
    assert result["recipients"] == {"moo-6": 1}
    service.send_test_alert("ทดสอบ / test", by="somchai")
    assert service.wait_delivered(10)
    assert _texts(standin, resident) == ["แจกกระสอบทรายที่วัด 14:00 น.\n\n— English —\nSandbags at the temple 14:00"]
    assert _texts(standin, officer) == ["ทดสอบ / test"]

    # LP-W06 under maintenance: its (bogus) high readings and going offline alert nobody
    service.set_maintenance("LP-W06", True, by="somchai")
    feed(service, clock, "LP-W06", [1.95, 1.96], step_s=3600)
    service.on_status("LP-W06", "offline", clock.now_s())
    assert service.wait_delivered(10)
    assert len(_texts(standin, resident)) == 1 and len(_texts(standin, officer)) == 1
    assert service.station_levels()["LP-W06"]["maintenance"] is True
    service.set_maintenance("LP-W06", False, by="somchai")
    feed(service, clock, "LP-W06", [1.95, 1.96], step_s=3600)
    assert service.wait_delivered(10)
    assert "อพยพ" in _texts(standin, resident)[-1].splitlines()[0]

    newest = service.log(1)[0]
    service.acknowledge(str(newest["id"]), by="somchai")
    assert service.log(1)[0]["acknowledged_by"] == "somchai"
