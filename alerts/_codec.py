"""Rule states <-> JSON for the state table (the one place that knows their shape)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from floodwatch.vocabulary import AlertLevel, StationId, ZoneId

from floodwatch.alerts.rules import HealthState, StationForecast, StationState, ZoneState


def dump(state: StationState | ZoneState | HealthState) -> dict[str, Any]:
    return asdict(state)


def load_station(d: dict[str, Any]) -> StationState:
    fc = d.get("forecast")
    return StationState(
        station_id=StationId(d["station_id"]),
        observed_level=AlertLevel(d["observed_level"]),
        up_count=d["up_count"], up_level=AlertLevel(d["up_level"]),
        down_count=d["down_count"], down_level=AlertLevel(d["down_level"]),
        last_ts_s=d["last_ts_s"], last_level_m=d["last_level_m"],
        history=tuple((float(t), float(z)) for t, z in d["history"]),
        rise_count=d["rise_count"], rise_active=d["rise_active"],
        forecast=None if fc is None else StationForecast(
            fc["issued_s"], AlertLevel(fc["level"]), fc["probability"], fc["reach_s"], fc["peak_m"],
            fc["rise_rate_cm_per_h"]),
        low_count=d["low_count"], low_clear_count=d["low_clear_count"], low_active=d["low_active"],
    )


def load_zone(d: dict[str, Any]) -> ZoneState:
    return ZoneState(
        zone_id=ZoneId(d["zone_id"]), level=AlertLevel(d["level"]), level_since_s=d["level_since_s"],
        lower_since_s=d["lower_since_s"], last_message_s=d["last_message_s"],
        announced=tuple((int(lv), float(ts)) for lv, ts in d["announced"]),
    )


def load_health(d: dict[str, Any]) -> HealthState:
    return HealthState(station_id=StationId(d["station_id"]), online=d["online"],
                       last_offline_alert_s=d["last_offline_alert_s"], last_qc_alert_s=d["last_qc_alert_s"])
