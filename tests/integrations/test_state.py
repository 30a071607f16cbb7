"""The retained state's payloads and the rule for when they are worth publishing (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from floodwatch.integrations.state import (
    Latest,
    forecast_peak,
    station_state,
    station_topic,
    worth_publishing,
    zone_state,
    zone_topic,
)
from floodwatch.settings import load_settings
from floodwatch.vocabulary import QcFlag

NOW_S = 1_795_000_000.0


class Forecast:
    def __init__(self, t_s, median_m):
        self.t_s = np.asarray(t_s, dtype=float)
        self.median_m = np.asarray(median_m, dtype=float)


class Issued:
    def __init__(self, station_ids, t_s, median_m, issued_s=NOW_S):
        self.station_ids = tuple(station_ids)
        self.forecast = Forecast(t_s, median_m)
        self.issued_s = issued_s


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def test_topics(settings):
    assert station_topic(settings, "LP-W01") == "floodwatch/lamphaya/state/station/LP-W01"
    assert zone_topic(settings, "moo-5") == "floodwatch/lamphaya/state/zone/moo-5"


def test_level_station_state_has_level_trend_forecast_peak_and_danger(settings):
    st = settings.station("LP-W01")
    t = NOW_S + 600 * np.arange(1, 7)
    issued = Issued(["LP-W01", "LP-W02"], t, [[1.5, 1.7, 1.95, 1.8, 1.6, 1.5], [1.0] * 6])
    info = {"level": 2, "reason": "forecast", "trend_cm_per_h": 12.34, "online": True}
    state = station_state(st, Latest(NOW_S - 60, 1.6123, QcFlag.PASS, 3.91), info, issued, True, NOW_S)
    assert state["water_level_m"] == 1.612 and state["qc"] == "pass" and state["battery_v"] == 3.91
    assert state["trend"] == "rising" and state["trend_cm_per_h"] == 12.3
    assert state["forecast_peak_m"] == 1.95 and state["forecast_peak_s"] == t[2]
    assert state["forecast_peak_at"].endswith("+07:00")  # Bangkok time, as the page
    assert (state["level"], state["level_name_en"], state["level_name_th"]) == (2, "warning", "เตือนภัย")
    assert (state["watch_m"], state["warning_m"], state["evacuate_m"]) == (1.6, 1.9, 2.2)
    assert state["ts"] == "2026-11-18T18:05:40+07:00"  # NOW_S - 60 s (11:05:40 UTC)


def test_rain_gauge_and_unknowns(settings):
    state = station_state(settings.station("LP-R01"), Latest(NOW_S, 0.4, QcFlag.PASS, None, 2.6), None, None,
                          None, NOW_S)
    assert state["rain_mm"] == 0.4 and state["rain_1h_mm"] == 2.6 and "water_level_m" not in state
    empty = station_state(settings.station("LP-W02"), None, None, None, None, NOW_S)
    assert empty["water_level_m"] is None and empty["forecast_peak_m"] is None and empty["level"] == 0
    assert forecast_peak(Issued(["LP-W01"], [NOW_S + 600], [[np.nan]]), "LP-W01")[:2] == (None, None)


def test_what_counts_as_a_change(settings):
    cfg = settings.mqtt_state
    st = settings.station("LP-W01")

    def state(level_m=1.0, rate=0.0, peak=1.5, peak_s=NOW_S + 3600, danger=0, online=True):
        issued = Issued(["LP-W01"], [peak_s], [[peak]])
        info = {"level": danger, "trend_cm_per_h": rate}
        return station_state(st, Latest(NOW_S, level_m, QcFlag.PASS, 3.9), info, issued, online, NOW_S)

    old = state()
    assert worth_publishing(None, old, cfg, None, NOW_S)
    assert not worth_publishing(old, state(level_m=1.004), cfg, NOW_S, NOW_S + 60)  # under a centimetre
    assert worth_publishing(old, state(level_m=1.01), cfg, NOW_S, NOW_S + 60)
    assert not worth_publishing(old, state(rate=1.5), cfg, NOW_S, NOW_S + 60)  # still steady
    assert worth_publishing(old, state(rate=2.5), cfg, NOW_S, NOW_S + 60)  # now rising
    assert worth_publishing(old, state(peak=1.53), cfg, NOW_S, NOW_S + 60)
    assert not worth_publishing(old, state(peak=1.51), cfg, NOW_S, NOW_S + 60)
    assert worth_publishing(old, state(peak_s=NOW_S + 3600 + 1800), cfg, NOW_S, NOW_S + 60)
    assert worth_publishing(old, state(danger=1), cfg, NOW_S, NOW_S + 60)
    assert worth_publishing(old, state(online=False), cfg, NOW_S, NOW_S + 60)
    assert worth_publishing(old, state(level_m=1.004), cfg, NOW_S, NOW_S + cfg.refresh_s)  # the hourly refresh
    z0 = zone_state("moo-5", "th", "en", 0, None, NOW_S)
    assert worth_publishing(z0, zone_state("moo-5", "th", "en", 1, NOW_S, NOW_S + 5), cfg, NOW_S, NOW_S + 5)
    assert not worth_publishing(z0, zone_state("moo-5", "th", "en", 0, None, NOW_S + 5), cfg, NOW_S, NOW_S + 5)


def test_no_state_topic_is_mistaken_by_ingest_for_a_node(settings, tmp_path):
    """Ingest subscribes to {prefix}/{site}/+/status and .../telemetry: the state must stay out of them."""
    import paho.mqtt.client as mqtt

    from floodwatch.clock import SystemClock
    from floodwatch.ingest import IngestService
    from floodwatch.integrations.homeassistant import discovery_messages
    from floodwatch.integrations.state import status_topic

    subscriptions = IngestService(settings, None, SystemClock())._topics()
    published = [station_topic(settings, s.id) for s in settings.stations]
    published += [zone_topic(settings, z.id) for z in settings.zones] + [status_topic(settings)]
    published += [topic for topic, _ in discovery_messages(settings)]
    clashes = [(t, sub) for t in published for sub in subscriptions if mqtt.topic_matches_sub(sub, t)]
    assert clashes == []
