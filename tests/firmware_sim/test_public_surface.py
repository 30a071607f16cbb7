"""The simulator's public surface is small and pinned: a change here is a change for every caller."""

import pytest

from floodwatch import firmware_sim


def test_exported_names_are_exactly_the_documented_ones():
    assert sorted(firmware_sim.__all__) == [
        "Crossing", "Fault", "FirmwareConfig", "Fleet", "Hydrograph", "LoudspeakerController", "MqttLink", "Node",
        "NodeCore", "Played", "RainEvent", "Scenario", "WakeOutcome", "history", "list_scenarios", "load_scenario",
        "parse_broker_url", "synthetic_stations", "with_synthetic_stations",
    ]
    for name in firmware_sim.__all__:
        assert getattr(firmware_sim, name).__doc__, f"{name} needs a docstring"


def test_broker_urls_are_parsed_or_refused_with_the_expected_form():
    assert firmware_sim.parse_broker_url("mqtt://127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert firmware_sim.parse_broker_url("broker.local") == ("broker.local", 1883)
    with pytest.raises(ValueError, match="mqtt://HOST:PORT"):
        firmware_sim.parse_broker_url("http://x")
