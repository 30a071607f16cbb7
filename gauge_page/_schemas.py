"""Response shapes of the JSON API, for the OpenAPI document (/openapi.json, /docs).

Times are UTC epoch seconds; levels metres above mean sea level; NaN is null.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ForecastSummaryOut(BaseModel):
    issued_s: float
    peak_m: float | None = Field(description="highest median level over the horizon")
    peak_s: float | None
    peak_class: int = Field(description="0 normal, 1 watch, 2 warning, 3 evacuate")
    crossing_s: list[float | None] = Field(description="first forecast crossing of watch, warning, evacuate")
    model_name: str


class FeedHealthOut(BaseModel):
    """An external station's feed, as the page shows it instead of a node's online/silent."""

    feed: str | None
    name_th: str | None
    name_en: str | None
    kind: str | None
    state: str | None = Field(description="ok, degraded (a station missing from the last answer), stale, failing, "
                              "never (no successful fetch yet) or disabled")
    last_success_s: float | None = Field(description="last successful fetch")
    last_attempt_s: float | None
    consecutive_failures: int
    last_error: str | None = Field(description="'reason: what happened and what to do'")
    last_data_s: float | None = Field(description="newest data time the source has for this station")
    lag_s: float | None = Field(description="now - last_data_s")
    stale: bool
    missing: bool = Field(description="the station was missing from the source's last answer")


class StationRowOut(BaseModel):
    id: str
    name_th: str
    name_en: str
    kind: Literal["water_level", "rain", "discharge"]
    zone: str
    lat: float
    lon: float
    levels: list[float] | None = Field(description="watch, warning, evacuate in m MSL (level stations)")
    level_m: float | None
    level_class: int = Field(description="0 normal, 1 watch, 2 warning, 3 evacuate")
    level_name_th: str
    level_name_en: str
    fraction_to_next: float | None = Field(description="0..1 of the way from this class to the next")
    rate_cm_per_h: float | None = Field(description="least-squares slope of the last hour")
    trend: Literal["rising", "falling", "steady", "unknown"]
    rain_1h_mm: float | None
    ts_s: float | None = Field(description="time of the newest reading")
    data_age_s: float | None
    stale: bool = Field(description="three publish intervals without a reading")
    qc_flag: int | None = Field(description="QARTOD: 1 pass, 2 not evaluated, 3 suspect, 4 fail, 9 missing")
    qc_name: str | None
    qc_tests: str
    battery_v: float | None
    rssi_dbm: float | None
    status: str = Field(description="online, offline (last will), silent (stale, no last will), unknown, or "
                        "external (another agency's or site's station: see feed_health)")
    status_since_s: float | None
    maintenance: bool
    forecast: ForecastSummaryOut | None = None
    external: bool = Field(default=False, description="read from a feed, not owned: raises no resident alert")
    series: Literal["observed", "predicted"] = Field(
        default="observed", description="predicted: values are a prediction (a tide table, a release schedule)")
    agency: str | None = Field(default=None, description="who runs an external station")
    feed: str | None = Field(default=None, description="the [[feeds]] id that brings an external station's data")
    feed_health: FeedHealthOut | None = None
    discharge_m3_s: float | None = Field(default=None, description="discharge stations (a dam's release), m3/s")
    predicted_until_s: float | None = Field(default=None, description="predicted series: end of the loaded prediction")


class ZoneOut(BaseModel):
    id: str
    name_th: str
    name_en: str
    level: int
    level_name_th: str
    level_name_en: str
    subscribers: int | None = Field(description="residents subscribed on LINE, when the alert service runs")


class StationsOut(BaseModel):
    now_s: float
    clock_factor: float = Field(description="simulated seconds per real second (1 in production)")
    stations: list[StationRowOut] = Field(description="most dangerous first")
    zones: list[ZoneOut]
    zone_level_source: Literal["alerts", "observed"]


class StationOut(BaseModel):
    now_s: float
    station: StationRowOut
    config: dict[str, Any] = Field(description="the station's entry in the registry")


class ReadingOut(BaseModel):
    station_id: str
    ts_s: float
    seq: int | None
    boot: int | None
    water_level_m: float | None
    rain_mm: float | None
    battery_v: float | None
    rssi_dbm: float | None
    qc_flag: int
    qc_tests: str
    received_s: float | None
    discharge_m3_s: float | None = None


class ReadingsOut(BaseModel):
    station_id: str
    now_s: float
    readings: list[ReadingOut]


class ObservedSeries(BaseModel):
    t_s: list[float]
    value: list[float | None] = Field(description="level (or rain) where QC passed or was not evaluated")
    flagged: list[float | None] = Field(description="value where QC said suspect or fail")
    qc_flag: list[int]


class RainSeries(BaseModel):
    station_id: str | None
    step_s: float | None = None
    t_s: list[float]
    rain_mm: list[float | None] = Field(description="rain per bin (sum)")


class ForecastSeries(BaseModel):
    issued_s: float
    t_s: list[float]
    median_m: list[float | None]
    lower_m: list[float | None] = Field(description="5 % quantile")
    upper_m: list[float | None] = Field(description="95 % quantile")
    exceed_prob: list[list[float | None]] = Field(description="(3, H): chance of reaching watch, warning, evacuate")
    first_crossing_s: list[float | None]
    model_name: str


class SeriesOut(BaseModel):
    station_id: str
    kind: str
    series: Literal["observed", "predicted"] = Field(
        default="observed", description="predicted: 'observed' holds the prediction, up to 72 h ahead")
    external: bool = False
    unit: str = Field(default="m MSL", description="m MSL, mm or m3/s")
    now_s: float
    start_s: float
    levels: list[float] | None
    observed: ObservedSeries
    rain: RainSeries
    forecast: ForecastSeries | None


class IssuedOut(BaseModel):
    issued_s: float
    station_ids: list[str]
    t_s: list[float]
    median_m: list[list[float | None]]
    lower_m: list[list[float | None]]
    upper_m: list[list[float | None]]
    exceed_prob: list[list[list[float | None]]]
    first_crossing_s: list[list[float | None]]
    rise_rate_cm_per_h: list[float | None]
    model_name: list[str]


class ForecastsOut(BaseModel):
    running: bool
    issued: IssuedOut | None


class AlertsOut(BaseModel):
    running: bool
    entries: list[dict[str, Any]] = Field(
        description="newest first; keys from alerts.AlertService.log (id, time_s, zone, level, kind, audience, "
        "text, recipients, delivered, failed, state) plus acknowledged_by / acknowledged_s")
    error: str | None = None


class HealthStationOut(BaseModel):
    id: str
    name_th: str
    name_en: str
    kind: str
    external: bool = False
    feed_health: FeedHealthOut | None = None
    ts_s: float | None
    data_age_s: float | None
    stale: bool
    battery_v: float | None
    rssi_dbm: float | None
    status: str
    status_since_s: float | None
    maintenance: bool
    qc_name: str | None


class HealthOut(BaseModel):
    ok: bool
    now_s: float
    clock_factor: float
    store: dict[str, Any]
    ingest: dict[str, Any]
    alerts: dict[str, Any]
    forecasts: dict[str, Any]
    live_clients: int
    stations: list[HealthStationOut]
    feeds: list["FeedOut"] = Field(default_factory=list, description="each configured feed's health")


class SiteOut(BaseModel):
    id: str
    name_th: str
    name_en: str
    timezone: str
    map_url: str | None = Field(default=None, description="the site's GeoJSON map (zones and river), when it has one")
    map_problems: list[str] = Field(default_factory=list, description="why the map cannot be drawn, if it cannot")


class SessionOut(BaseModel):
    logged_in: bool = True
    username: str | None = None
    display_name: str | None = None
    csrf_token: str | None = Field(default=None, description="send as X-CSRF-Token on every action")


class PreviewZone(BaseModel):
    id: str
    name_th: str
    name_en: str
    recipients: int | None


class PreviewOut(BaseModel):
    zones: list[PreviewZone]
    total_recipients: int | None
    text: str = Field(description="the message as a Thai reader receives it")
    confirm_token: str = Field(description="pass to /api/messages/send with exactly the same message")


class ActionOut(BaseModel):
    ok: bool
    model_config = {"extra": "allow"}


class AuditOut(BaseModel):
    entries: list[dict[str, Any]]


class FeedProblemOut(BaseModel):
    ts_s: float
    reason: str = Field(description="missing_station, html_not_json, truncated_json, timeout, stale, ...")
    detail: str
    station_id: str | None = None


class FeedStationOut(BaseModel):
    last_data_s: float | None
    lag_s: float | None
    stale: bool
    missing: bool
    series: Literal["observed", "predicted"]


class FeedOut(BaseModel):
    """One feed's configuration and health (see docs/feeds.md)."""

    id: str
    kind: Literal["thaiwater", "floodwatch_mqtt", "drop_folder", "csv_url"]
    name_th: str
    name_en: str
    enabled: bool
    interval_s: float
    state: str = Field(description="ok, degraded, stale, failing, never or disabled")
    lag_s: float | None = Field(description="how far behind now the most-behind observed station is")
    last_attempt_s: float | None
    last_success_s: float | None
    consecutive_failures: int
    failures_total: int
    last_error: FeedProblemOut | None
    stored_total: int
    last_stored: int
    problems: list[FeedProblemOut] = Field(description="newest first, at most 10")
    stations: dict[str, FeedStationOut]


class FeedsOut(BaseModel):
    running: bool
    now_s: float
    feeds: list[FeedOut]


HealthOut.model_rebuild()
