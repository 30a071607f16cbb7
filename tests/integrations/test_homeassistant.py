"""Home Assistant MQTT discovery messages follow Home Assistant's own rules.

The rules below are vendored from Home Assistant's source and documentation
(home-assistant/core ``homeassistant/components/sensor/const.py``:
``DEVICE_CLASS_UNITS``, ``DEVICE_CLASS_STATE_CLASSES``; the MQTT discovery
topic format and the MQTT sensor's options from home-assistant.io/integrations/mqtt
and /sensor.mqtt), for the device classes floodwatch uses. A discovery message
that breaks one is ignored by Home Assistant with an error in its log, and the
gauge would not appear.
"""

from __future__ import annotations

import json
import re

import pytest

from floodwatch.integrations.homeassistant import discovery_messages, node_id
from floodwatch.integrations.state import station_topic, status_topic, zone_topic
from floodwatch.settings import load_settings

TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor)/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$")
# MQTT sensor options (home-assistant.io/integrations/sensor.mqtt) that floodwatch may send.
SENSOR_OPTIONS = {
    "availability", "device", "device_class", "entity_category", "icon", "json_attributes_topic", "name",
    "options", "origin", "state_class", "state_topic", "suggested_display_precision", "unique_id",
    "unit_of_measurement", "value_template",
}
DEVICE_OPTIONS = {"identifiers", "name", "manufacturer", "model", "suggested_area"}
# sensor/const.py: units each class accepts, state classes each class accepts.
UNITS = {"distance": {"km", "m", "cm", "mm", "mi", "yd", "ft", "in"}, "voltage": {"V", "mV", "µV", "kV", "MV"},
         "precipitation": {"cm", "in", "mm"}, "enum": {None}, "timestamp": {None}}
STATE_CLASSES = {"distance": {None, "measurement", "total", "total_increasing"}, "voltage": {None, "measurement"},
                 "precipitation": {None, "measurement", "total", "total_increasing"}, "enum": {None},
                 "timestamp": {None}}


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def test_every_discovery_message_is_valid_for_home_assistant(settings):
    messages = discovery_messages(settings)
    own = settings.own_stations
    n_level = sum(1 for s in own if s.kind == "water_level")
    n_rain = sum(1 for s in own if s.kind == "rain")
    assert len(messages) == 6 * n_level + 2 * n_rain + len(settings.zones)
    unique_ids = set()
    for topic, text in messages:
        assert TOPIC.match(topic), topic
        assert f"/{node_id(settings)}/" in topic  # the ACL lets the publisher write only there
        config = json.loads(text)
        assert set(config) <= SENSOR_OPTIONS, set(config) - SENSOR_OPTIONS
        assert {"unique_id", "state_topic", "value_template", "device", "name"} <= set(config)
        assert config["unique_id"] not in unique_ids
        unique_ids.add(config["unique_id"])
        assert set(config["device"]) <= DEVICE_OPTIONS and config["device"]["identifiers"]
        assert config["availability"] == [{"topic": status_topic(settings), "payload_available": "online",
                                           "payload_not_available": "offline"}]
        cls = config.get("device_class")
        if cls is not None:
            assert config.get("unit_of_measurement") in UNITS[cls], config
            assert config.get("state_class") in STATE_CLASSES[cls], config
        if cls == "enum":
            assert config["options"] == ["normal", "watch", "warning", "evacuate"]
        assert config["value_template"].startswith("{{ value_json.") and config["value_template"].endswith(" }}")


def test_a_gauge_is_one_device_with_its_sensors_reading_its_state(settings):
    w01 = [json.loads(t) for topic, t in discovery_messages(settings) if "/lp-w01_" in topic]
    assert {c["name"] for c in w01} == {"Water level", "Rise rate", "Forecast peak", "Forecast peak time",
                                       "Level of danger", "Battery"}
    assert {c["state_topic"] for c in w01} == {station_topic(settings, "LP-W01")}
    assert len({json.dumps(c["device"], sort_keys=True) for c in w01}) == 1
    level = next(c for c in w01 if c["name"] == "Water level")
    assert (level["device_class"], level["unit_of_measurement"], level["value_template"]) == (
        "distance", "m", "{{ value_json.water_level_m }}")
    zone = [json.loads(t) for topic, t in discovery_messages(settings) if "/zone_moo-5_" in topic]
    assert [z["state_topic"] for z in zone] == [zone_topic(settings, "moo-5")]


def test_every_value_template_names_a_key_the_state_carries(settings):
    from floodwatch.integrations.state import station_state, zone_state

    keys = set(station_state(settings.station("LP-W01"), None, None, None, None, 0.0))
    keys |= set(station_state(settings.station("LP-R01"), None, None, None, None, 0.0))
    keys |= set(zone_state("moo-1", "", "", 0, None, 0.0))
    for _, text in discovery_messages(settings):
        key = json.loads(text)["value_template"][len("{{ value_json."):-len(" }}")]
        assert key in keys, key
