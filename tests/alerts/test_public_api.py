"""The alerts package's public surface is small and pinned."""

from floodwatch import alerts


def test_exported_members():
    assert sorted(alerts.__all__) == ["Action", "AlertService", "LineClient", "RuleConfig", "SendOutcome",
                                      "StationState", "Thresholds", "ZoneState"]
    for name in alerts.__all__:
        assert getattr(alerts, name).__module__.startswith("floodwatch.alerts.")


def test_a_closed_service_ignores_late_input(alert_settings, clock, standin, caplog):
    from floodwatch.alerts._db import AlertDb
    from tests.alerts.conftest import reading

    service = alerts.AlertService(alert_settings, clock)
    service.subscribe("Ulate0000000000000000000000000001", "moo-1")
    service.start()
    service.close()
    # ingest flushing during shutdown: two readings above LP-W02's evacuation line (2.30 m), which
    # would decide an EVACUATE on a running service; here they must neither raise nor be kept
    with caplog.at_level("WARNING", logger="floodwatch.alerts"):
        service.on_readings([reading("LP-W02", clock.now_s() + 600, 2.5)])
        service.on_readings([reading("LP-W02", clock.now_s() + 1200, 2.6)])
    service.close()  # closing twice is harmless
    db = AlertDb(alert_settings.alerts.state_url)
    try:
        assert db.log(10) == [], "a closed service decided something"
        assert "station:LP-W02" not in db.load_states(), "a closed service kept rule state"
    finally:
        db.close()
    assert standin.requests("/v2/bot/message/multicast") == []
    assert sum("event=alerts_closed_input_dropped" in r.getMessage() for r in caplog.records) == 2
