"""The alerts package's public surface is small and pinned."""

from floodwatch import alerts


def test_exported_members():
    assert sorted(alerts.__all__) == ["Action", "AlertService", "LineClient", "RuleConfig", "SendOutcome",
                                      "StationState", "Thresholds", "ZoneState"]
    for name in alerts.__all__:
        assert getattr(alerts, name).__module__.startswith("floodwatch.alerts.")


def test_a_closed_service_ignores_late_input(alert_settings, clock):
    from tests.alerts.conftest import reading

    service = alerts.AlertService(alert_settings, clock)
    service.start()
    service.close()
    service.on_readings([reading("LP-W02", clock.now_s(), 2.5)])  # ingest flushing during shutdown
    service.close()
