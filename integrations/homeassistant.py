"""Home Assistant MQTT discovery: each gauge and zone appears in Home Assistant with no configuration.

Pure: the (topic, JSON) pairs to publish, retained. The schema is Home
Assistant's MQTT discovery (home-assistant.io/integrations/mqtt, "MQTT
Discovery"; sensor options in home-assistant.io/integrations/sensor.mqtt):
the topic is ``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config``
with ids of ``[a-zA-Z0-9_-]``; the payload names the ``state_topic``, a
``value_template`` into its JSON, ``unique_id``, ``device`` (entities of one
device share its ``identifiers``), ``availability`` and, per kind,
``device_class`` / ``unit_of_measurement`` / ``state_class``. Every entity here
reads the retained station or zone state (:mod:`integrations.state`), so one
state message updates all of a gauge's sensors.

The ``node_id`` level is ``floodwatch_<site>``: the broker's ACL lets the state
publisher write ``<prefix>/+/floodwatch_<site>/#`` and nothing else there.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from floodwatch.integrations.state import station_topic, status_topic, zone_topic
from floodwatch.vocabulary import AlertLevel

if TYPE_CHECKING:
    from floodwatch.settings import Settings, StationConfig, ZoneConfig

LEVEL_OPTIONS = [level.name_en for level in AlertLevel]  # normal, watch, warning, evacuate


def node_id(settings: Settings) -> str:
    return "floodwatch_" + _slug(settings.site.id)


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text).lower()


def _availability(settings: Settings) -> list[dict[str, str]]:
    return [{"topic": status_topic(settings), "payload_available": "online", "payload_not_available": "offline"}]


def _device(settings: Settings, ident: str, name: str, model: str, area: str | None) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [f"{node_id(settings)}_{_slug(ident)}"],
        "name": name,
        "manufacturer": "floodwatch",
        "model": model,
    }
    if area:
        device["suggested_area"] = area
    return device


def _entity(settings: Settings, component: str, ident: str, key: str, state_topic: str, device: dict[str, Any],
            **options: Any) -> tuple[str, str]:
    object_id = f"{_slug(ident)}_{key}"
    config = {
        "unique_id": f"{node_id(settings)}_{object_id}",
        "state_topic": state_topic,
        "json_attributes_topic": state_topic,
        "availability": _availability(settings),
        "device": device,
        "origin": {"name": "floodwatch"},
        **options,
    }
    topic = f"{settings.mqtt_state.discovery_prefix}/{component}/{node_id(settings)}/{object_id}/config"
    return topic, json.dumps(config, ensure_ascii=False, sort_keys=True)


def station_discovery(settings: Settings, station: StationConfig) -> list[tuple[str, str]]:
    """The discovery messages of one gauge (a Home Assistant device with a few sensors)."""
    zone = next((z for z in settings.zones if z.id == station.zone), None)
    kind = "water-level gauge" if station.kind == "water_level" else "rain gauge"
    device = _device(settings, station.id, f"{station.id} {station.name_en}", f"{kind} ({station.sensor})",
                     zone.name_en if zone else None)
    topic = station_topic(settings, station.id)
    out = [
        _entity(settings, "sensor", station.id, "battery", topic, device, name="Battery",
                value_template="{{ value_json.battery_v }}", device_class="voltage", unit_of_measurement="V",
                state_class="measurement", entity_category="diagnostic"),
    ]
    if station.kind == "rain":
        out += [
            _entity(settings, "sensor", station.id, "rain_1h", topic, device, name="Rain, last hour",
                    value_template="{{ value_json.rain_1h_mm }}", device_class="precipitation",
                    unit_of_measurement="mm", state_class="measurement", icon="mdi:weather-pouring"),
        ]
        return out
    out += [
        _entity(settings, "sensor", station.id, "level", topic, device, name="Water level",
                value_template="{{ value_json.water_level_m }}", device_class="distance", unit_of_measurement="m",
                state_class="measurement", suggested_display_precision=2, icon="mdi:waves"),
        _entity(settings, "sensor", station.id, "trend", topic, device, name="Rise rate",
                value_template="{{ value_json.trend_cm_per_h }}", unit_of_measurement="cm/h",
                state_class="measurement", icon="mdi:trending-up"),
        _entity(settings, "sensor", station.id, "forecast_peak", topic, device, name="Forecast peak",
                value_template="{{ value_json.forecast_peak_m }}", device_class="distance",
                unit_of_measurement="m", suggested_display_precision=2, icon="mdi:chart-bell-curve"),
        _entity(settings, "sensor", station.id, "forecast_peak_time", topic, device, name="Forecast peak time",
                value_template="{{ value_json.forecast_peak_at }}", device_class="timestamp"),
        _entity(settings, "sensor", station.id, "danger", topic, device, name="Level of danger",
                value_template="{{ value_json.level_name_en }}", device_class="enum", options=LEVEL_OPTIONS,
                icon="mdi:home-flood"),
    ]
    return out


def zone_discovery(settings: Settings, zone: ZoneConfig) -> tuple[str, str]:
    """One zone's alert level (a sensor on a per-site "zones" device)."""
    device = _device(settings, "zones", f"{settings.site.name_en}: flood alert zones", "alert zones", None)
    return _entity(settings, "sensor", f"zone_{zone.id}", "alert", zone_topic(settings, zone.id), device,
                   name=f"{zone.name_en} alert level", value_template="{{ value_json.level_name_en }}",
                   device_class="enum", options=LEVEL_OPTIONS, icon="mdi:alarm-light")


def discovery_messages(settings: Settings) -> list[tuple[str, str]]:
    """Every discovery message of the site: (topic, JSON), to publish retained."""
    out: list[tuple[str, str]] = []
    # Our own gauges: other agencies' stations (a dam's release, an upstream gauge) carry no level of
    # danger of ours, and the page shows them with their feed's health.
    for station in settings.own_stations:
        out += station_discovery(settings, station)
    out += [zone_discovery(settings, zone) for zone in settings.zones]
    return out
