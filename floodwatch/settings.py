"""The one settings model: a TOML file plus ``FLOODWATCH_*`` environment variables.

Precedence, highest first: keyword arguments to :func:`load_settings`,
environment variables (``FLOODWATCH_MQTT__URL``: nested with ``__``), a
``.env`` file in the working directory (for secrets), ``/etc/floodwatch/floodwatch.env``
when the site file is in /etc/floodwatch, then the site's TOML file: the one
``FLOODWATCH_CONFIG`` names, else ``/etc/floodwatch/site.toml``, else the
embedded example (Lam Phaya, shipped as ``floodwatch.sites``).

Relative SQLite paths (``sqlite:///var/page.db``) are resolved against
``data_dir`` (``FLOODWATCH_DATA_DIR``, default ``/var/lib/floodwatch``), never
against the working directory.

The station and zone registry lives in the same TOML file, so one model
describes a site completely. Settings are built by a function at start-up,
never at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from floodwatch.errors import ConfigError
from floodwatch.vocabulary import AlertLevel, StationId, ZoneId

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def example_site(name: str = "lamphaya") -> Path:
    """An example site shipped with floodwatch (config/ in the repository, ``floodwatch.sites`` installed)."""
    from importlib.resources import files

    return Path(str(files("floodwatch.sites") / f"{name}.toml"))


# The embedded default: the demo's site, and what a bare install falls back to.
DEFAULT_CONFIG_FILE = example_site()
# Where a municipality keeps its own site (floodwatch site init writes it there).
SYSTEM_CONFIG_FILE = Path("/etc/floodwatch/site.toml")
# Its secrets, read with a site file in /etc/floodwatch, so commands an administrator runs
# (check, officer, backup) see what the service sees.
SYSTEM_ENV_FILE = Path("/etc/floodwatch/floodwatch.env")
DEFAULT_DATA_DIR = Path("/var/lib/floodwatch")
LINE_PRODUCTION_API = "https://api.line.me"
LINE_PRODUCTION_DATA_API = "https://api-data.line.me"
SQLITE_PREFIX = "sqlite:///"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarningLevels(_Section):
    """Warning levels in metres above mean sea level; must rise strictly."""

    watch_m: float
    warning_m: float
    evacuate_m: float

    @model_validator(mode="after")
    def _ordered(self) -> WarningLevels:
        if not (self.watch_m < self.warning_m < self.evacuate_m):
            raise ValueError(
                f"warning levels must rise: watch {self.watch_m} < warning {self.warning_m}"
                f" < evacuate {self.evacuate_m} does not hold; make watch_m < warning_m < evacuate_m"
            )
        return self

    def threshold_m(self, level: AlertLevel) -> float:
        return {
            AlertLevel.WATCH: self.watch_m,
            AlertLevel.WARNING: self.warning_m,
            AlertLevel.EVACUATE: self.evacuate_m,
        }[level]

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.watch_m, self.warning_m, self.evacuate_m)


class ZoneConfig(_Section):
    """A village (หมู่) residents pick when they subscribe."""

    id: ZoneId
    name_th: str
    name_en: str
    centre_lat: float | None = None
    centre_lon: float | None = None


class StationConfig(_Section):
    """One gauge: where it is, how to convert its raw signal, when to warn."""

    id: StationId
    name_th: str
    name_en: str
    # discharge: a flow in m3/s, e.g. a dam's release (external stations only so far).
    kind: Literal["water_level", "rain", "discharge"]
    # reported: the value arrives in engineering units from another system (an agency's API,
    # a published table), not from a sensor floodwatch configures.
    sensor: Literal["ultrasonic", "radar", "pressure", "tipping_bucket", "reported"]
    zone: ZoneId
    lat: float
    lon: float
    location_approximate: bool = True
    # Level stations: the sensor face's elevation above mean sea level, so
    # level_m = mount_height_m - distance_m. Surveyed values are not public.
    mount_height_m: float | None = None
    datum_approximate: bool = True
    levels: WarningLevels | None = None
    low_water_m: float | None = Field(default=None, description="drought / intake alert level, m MSL")
    # Street and road gauges read the ground when dry: a flat line at or below
    # this level is a dry street, not a stuck sensor.
    dry_level_m: float | None = None
    # Physically possible range of the level (sensor and site), m MSL.
    min_level_m: float = -3.0
    max_level_m: float = 8.0
    # Rain gauges: millimetres per bucket tip.
    mm_per_tip: float = 0.2
    # Level stations: the rain gauge whose rain drives this gauge's forecast.
    rain_station: StationId | None = None
    # Level stations: gauges upstream (or at the river mouth) whose recent changes may drive
    # this gauge's forecast; the forecast picks their travel times from the data.
    upstream: list[StationId] = Field(default_factory=list)
    # Level stations: predicted series (future values known in advance: a tide table for the
    # river mouth, an announced dam release schedule) this gauge's forecast may use.
    predicted: list[StationId] = Field(default_factory=list)
    # A station floodwatch reads but does not own (another agency's gauge, a neighbouring
    # municipality's, a dam's release, a tide prediction): a forecast input shown on the page
    # that raises no resident alert and is never reported silent (its feed's health is shown).
    external: bool = False
    publish_interval_s: float = 600.0
    # "predicted": readings carry future times (a tide table, an announced release schedule);
    # a new load replaces the previous prediction for the times it covers. See docs/feeds.md.
    series: Literal["observed", "predicted"] = "observed"
    # The [[feeds]] entry this station's data arrive by, and its id there (default: this id).
    feed: str | None = None
    feed_station: str | None = None
    # Who runs the gauge (shown on the page), e.g. "RID (กรมชลประทาน)".
    agency: str | None = None
    # Added to the feed's levels to bring them to this station's datum (a tide table above
    # chart datum, a gauge's own zero), metres.
    feed_offset_m: float = 0.0
    # Discharge stations: the largest flow the outlet can pass (spillway and gates), m3/s.
    max_discharge_m3_s: float = 5000.0
    # Level stations: how eagerly this gauge's forecast warns (the trade-off between lead time
    # and false alarms): a profile name from [alerts.profiles] or a built-in one (docs/verification.md).
    warning_profile: str | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> StationConfig:
        if self.series == "predicted" and not self.external:
            raise ValueError(
                f"station {self.id!r} is a predicted series; predictions come from a feed, so set external = true"
            )
        if self.kind == "water_level":
            if self.levels is None:
                raise ValueError(f"water-level station {self.id!r} needs [stations.levels]")
            if self.sensor in ("ultrasonic", "radar") and self.mount_height_m is None:
                raise ValueError(
                    f"station {self.id!r} has a {self.sensor} sensor; set mount_height_m "
                    "(sensor face above mean sea level) to convert distance_m to a level"
                )
        return self


class SiteConfig(_Section):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="short lowercase name, e.g. lamphaya")
    name_th: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    timezone: str = "Asia/Bangkok"
    # The site's map for the page: zone polygons and the river line, in GeoJSON, relative to
    # this file's folder. `floodwatch site init` draws a first one; `floodwatch check` validates it.
    map: str | None = None


class MqttSettings(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "floodwatch-ingest"
    topic_prefix: str = "floodwatch"
    shared_group: str | None = Field(
        default=None, description="join $share/<group>/... so several ingest workers split the load"
    )
    session_expiry_s: int = 86_400
    keepalive_s: int = 30
    ca_file: Path | None = Field(default=None,
                                 description="CA certificate (PEM) that signed the broker's TLS certificate")
    single_site_topics: bool = Field(
        default=True,
        description="also accept floodwatch/{station_id}/... (the single-site form) besides "
        "floodwatch/{site}/{station_id}/...; turn off when several sites share one broker",
    )


class StoreSettings(_Section):
    url: str = "sqlite:///var/floodwatch.db"
    influx_token: SecretStr | None = None
    influx_org: str = "floodwatch"
    influx_bucket: str = "floodwatch"
    # At most this many messages per ingest transaction. There is no batch timer:
    # the writer stores whatever is queued at once, so batches grow only under load.
    batch_size: int = 500
    retention_days: int = 400
    # Where ingest keeps readings while the store is unavailable (replayed in order);
    # default: beside the SQLite file (<db>.spool), or var/ingest-spool.db for InfluxDB.
    spool_path: str | None = None
    # SQLite: how long a write waits for a lock before ingest spools instead.
    busy_timeout_s: float = 2.0
    # Keep every issued forecast (the newest per station and time) for exports and Grafana.
    write_forecasts: bool = True


class LineSettings(_Section):
    api_base_url: str = LINE_PRODUCTION_API
    channel_access_token: SecretStr | None = None
    channel_secret: SecretStr | None = None
    timeout_s: float = 10.0
    # LINE's per-channel limit for multicast is about 200 requests/s; stay at or below it.
    multicast_rate_per_s: float = 200.0
    delivery_threads: int = 4
    retry_base_s: float = 0.5
    retry_max_s: float = 60.0
    flex_alerts: bool = Field(default=False, description="send a Flex gauge bubble before each alert's text")
    # Warn officers when less than this share of the monthly message quota is left;
    # below quota_reserve_messages only evacuation messages are sent.
    quota_warn_fraction: float = 0.2
    quota_reserve_messages: int = 0
    quota_check_interval_s: float = 600.0
    # LINE's data API (content downloads, rich menu images). None: api-data.line.me when
    # api_base_url is LINE's own, else the same address as api_base_url (the stand-in serves both).
    data_api_base_url: str | None = None

    def data_base_url(self) -> str:
        if self.data_api_base_url:
            return self.data_api_base_url.rstrip("/")
        if self.api_base_url.rstrip("/") == LINE_PRODUCTION_API:
            return LINE_PRODUCTION_DATA_API
        return self.api_base_url.rstrip("/")


class ForecastSettings(_Section):
    interval_s: float = 600.0
    horizon_h: float = 72.0
    step_s: float = 600.0
    history_days: float = 30.0
    exceed_probability: float = Field(
        default=0.8, description="forecast chance of reaching a level that raises an alert"
    )
    lead_h: float = Field(default=3.0, description="how far ahead a forecast may raise an alert")
    refit_every_h: float = Field(
        default=24.0, gt=0,
        description="hours between full fits of every station's model; each forecast in between moves the "
        "fitted model to the newest readings (a reading outside the band refits its own station at once)",
    )
    model_path: str | None = Field(
        default=None,
        description="file the fitted model is kept in, so a restart forecasts at once instead of fitting first; "
        "default beside the SQLite store (<db>.forecast-model.npz), else var/forecast-model.npz; '' keeps it in "
        "memory only",
    )
    network_history_days: float = Field(
        default=60.0, gt=0,
        description="history a station that reads upstream gauges or predicted series is fitted on (its model "
        "weighs several inputs: a month holds too few flood waves to tell them apart)",
    )


class AlertSettings(_Section):
    state_url: str = "sqlite:///var/alerts.db"
    hysteresis_m: float = 0.05
    clear_after_s: float = 3 * 3600.0
    cooldown_s: float = 3600.0
    reminder_s: float = 6 * 3600.0
    rise_rate_cm_per_h: float = 20.0
    rise_window_s: float = 3600.0
    # consecutive readings that must agree before a level is raised or lowered (no alert on one spike)
    confirm_readings: int = 2
    officer_cooldown_s: float = 3600.0
    officers: list[str] = Field(default_factory=list, description="LINE user ids of disaster officers")
    officers_get_zone_alerts: bool = Field(default=True, description="officers also get every zone's flood alerts")
    tide_outlook_hour_local: int = Field(default=6, description="Bangkok hour of the daily tide outlook push")
    profiles: dict[str, WarningProfile] = Field(
        default_factory=dict,
        description="named warning profiles stations pick with warning_profile (extend or override the built-in ones)",
    )


class PageSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 8000
    # Officers, sessions, the audit log and maintenance flags live here.
    state_url: str = "sqlite:///var/page.db"
    officers: dict[str, str] = Field(
        default_factory=dict,
        description="username -> hash from gauge_page.hash_password; more officers: gauge_page.create_officer",
    )
    session_max_age_s: float = 12 * 3600.0
    secure_cookies: bool = Field(default=False, description="set true when the page is served over HTTPS")
    keepalive_s: float = 15.0
    # Behind a reverse proxy: its address(es), whose X-Forwarded-Proto/-Host/-For are believed,
    # and the address officers type (https://flood.example.go.th), which login requests must come from.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"page.trusted_proxies entry {entry!r} is not an IP address or network "
                                 "(e.g. 127.0.0.1 or 10.0.0.0/8)") from None
        return value
    public_origin: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")


class WorkerSettings(_Section):
    """Which share of the site's zones this process handles, when several processes split a large site.

    Each zone (and every station in it) belongs to exactly one worker, so two
    workers never alert the same zone; ``zones`` names them explicitly (keep a
    zone's rain gauges with it), otherwise ``partition = "k/n"`` takes the
    zones whose stable hash modulo n is k.
    """

    partition: str = Field(default="0/1", pattern=r"^\d+/[1-9]\d*$")
    zones: list[ZoneId] | None = None

    @model_validator(mode="after")
    def _index_below_count(self) -> WorkerSettings:
        k, n = (int(x) for x in self.partition.split("/"))
        if k >= n:
            raise ValueError(f"worker.partition {self.partition!r}: k must be below n (0/{n} .. {n - 1}/{n})")
        return self

    @property
    def is_partial(self) -> bool:
        return self.zones is not None or self.partition != "0/1"


class ReportSettings(_Section):
    """Residents' flood reports from LINE (location, optional photo, depth); see docs/privacy.md."""

    enabled: bool = True
    # Photos live here, one file each, named by a random id (never by the resident's LINE id).
    photo_dir: Path = Path("var/report-photos")
    # After this many days (real time) a report's photo is deleted and the report no longer
    # names its resident; what stays is place, depth and time, with nobody's name on it.
    retention_days: float = Field(default=30.0, gt=0)
    photo_max_bytes: int = Field(default=10_000_000, gt=0)
    # A report further than this from every zone centre and gauge is not in the municipality.
    max_distance_km: float = Field(default=3.0, gt=0)
    # Per resident, in real time: finished reports per hour, and report steps (locations,
    # photos, depth picks) per hour; beyond them the resident is told why and nothing is kept.
    max_reports_per_hour: int = Field(default=3, ge=1)
    max_steps_per_hour: int = Field(default=30, ge=1)
    # A verified report within this distance of a level gauge is shown beside it.
    near_gauge_m: float = Field(default=500.0, gt=0)
    # An unfinished report (location sent, no depth picked) is dropped after this long.
    draft_timeout_s: float = Field(default=1800.0, gt=0)


class LoudspeakerController(_Section):
    """A village loudspeaker or siren controller (หอกระจายข่าว) that listens on MQTT."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$",
                    description="MQTT username and topic level; letters, digits, - and _")
    name_th: str
    name_en: str
    zones: list[ZoneId] = Field(min_length=1)
    # The lowest zone level this controller announces (its all-clear follows when it announced).
    min_level: Literal["WATCH", "WARNING", "EVACUATE"] = "WARNING"
    lat: float | None = None
    lon: float | None = None


class LoudspeakerSettings(_Section):
    """Commands to loudspeaker controllers over MQTT (docs/mqtt-contract.md, "Loudspeakers")."""

    controllers: list[LoudspeakerController] = Field(default_factory=list)
    # floodwatch's own broker account for commands: `floodwatch mqtt-config` makes floodwatch-alerts.
    # None: mqtt.username / mqtt.password (an open broker, the demo).
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    client_id: str = "floodwatch-loudspeakers"
    # No acknowledgement within this long: shown to officers as undelivered and sent again.
    ack_timeout_s: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    # A spoken Thai WAV per command (espeak-ng's Thai voice), served to controllers at
    # {public_base_url}/api/loudspeakers/audio/{message_id}.wav; without espeak-ng or without
    # public_base_url the command carries the text for the announcer only.
    speech: bool = True
    audio_dir: Path = Path("var/loudspeaker-audio")
    public_base_url: str | None = None


class FeedConfig(_Section):
    """One source of external stations' data: an agency's API, a peer site, a drop folder, a URL.

    Stations name it with ``feed = "<id>"``; see docs/feeds.md for each kind's fields.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: Literal["thaiwater", "floodwatch_mqtt", "drop_folder", "csv_url"]
    name_th: str = ""
    name_en: str = ""
    # thaiwater: the API base (.../api/v1/thaiwater30); csv_url: the file; floodwatch_mqtt: the peer's broker.
    url: str | None = None
    # drop_folder: where officers drop exports (done/ and failed/ are made inside it).
    folder: Path | None = None
    # floodwatch_mqtt: the peer site's id and topic form, and our account on its broker.
    site: str | None = None
    topic_prefix: str = "floodwatch"
    single_site_topics: bool = True
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="name of the environment variable holding the password (never the password)"
    )
    ca_file: Path | None = None
    interval_s: float = Field(default=900.0, gt=0)
    timeout_s: float = Field(default=20.0, gt=0)
    # After downtime a feed fetches what it missed, but never more than this far back.
    catch_up_h: float = Field(default=72.0, gt=0)
    # Data older than this when fetched is the source being stale, not news: flagged, not stored.
    stale_after_s: float = Field(default=6 * 3600.0, gt=0)
    enabled: bool = True

    @model_validator(mode="after")
    def _kind_needs(self) -> FeedConfig:
        need = {"thaiwater": ("url",), "csv_url": ("url",), "drop_folder": ("folder",),
                "floodwatch_mqtt": ("url", "site")}[self.kind]
        missing = [name for name in need if getattr(self, name) in (None, "")]
        if missing:
            raise ValueError(f"feed {self.id!r} of kind {self.kind!r} needs {', '.join(missing)}")
        return self


class PeerConfig(_Section):
    """Another floodwatch site that may read some of our stations' telemetry, read-only.

    ``floodwatch mqtt-config`` gives it the broker account ``peer-<id>`` whose ACL
    allows reading exactly these stations' telemetry topics and writing nothing.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name_en: str = ""
    stations: list[StationId] = Field(default_factory=list)


class FeedStateSettings(_Section):
    # Cursors, health and the drop folders' ledger; default: beside the SQLite store (<db>.feeds).
    url: str | None = None
    busy_timeout_s: float = 5.0


class WarningProfile(_Section):
    """How eagerly a station's forecast raises warnings: lead time against false alarms.

    Unset fields keep the site's values (``forecast.exceed_probability``,
    ``forecast.lead_h``, ``alerts.confirm_readings``). ``forecast = false``
    warns on observed levels and fast rises only: for a gauge whose forecast
    only adds false alarms (``floodwatch verify`` says where).
    """

    forecast: bool = True
    exceed_probability: float | None = Field(default=None, gt=0.0, lt=1.0)
    lead_h: float | None = Field(default=None, gt=0.0, le=72.0)
    confirm_readings: int | None = Field(default=None, ge=1, le=12)
    # The fast-rise rule's rate (alerts.rise_rate_cm_per_h); inf switches it off (a tidal gauge's
    # flood tide rises faster than a river ever does, and its forecast already knows the tide).
    rise_rate_cm_per_h: float | None = Field(default=None, gt=0.0)
    description: str = ""


BUILTIN_WARNING_PROFILES: dict[str, WarningProfile] = {
    "balanced": WarningProfile(description="the site's own forecast and confirmation settings"),
    "early": WarningProfile(
        exceed_probability=0.5, lead_h=6.0,
        description="a street that floods homes: warn earlier, accept more warnings that come to nothing"),
    "cautious": WarningProfile(
        exceed_probability=0.9, lead_h=2.0,
        description="a road gauge: fewer warnings that come to nothing, less lead"),
    "tidal": WarningProfile(
        rise_rate_cm_per_h=float("inf"),
        description="a tide gauge: its flood tide rises faster than the fast-rise rule's rate, and the "
        "forecast already knows the tide; the fast-rise rule is off"),
    "observed_only": WarningProfile(
        forecast=False, description="observed levels and fast rises only: where the forecast only adds false alarms"),
}
"""Profiles every site has; ``[alerts.profiles.NAME]`` adds more or overrides these."""


class LorawanSettings(_Section):
    """LoRaWAN network servers (ChirpStack v4, The Things Stack v3) publishing uplinks to the broker ingest reads.

    ``devices`` maps a device to a station: its DevEUI (16 hex digits, any case) or its
    The Things Stack device id. A device not listed here is refused (``unknown_device``).
    """

    devices: dict[str, StationId] = Field(
        default_factory=dict,
        description="DevEUI or TTS device id -> station id, e.g. {\"70b3d57ed0001a2b\" = \"LP-W03\"}",
    )
    chirpstack_topic: str = Field(default="application/+/device/+/event/up",
                                  description="ChirpStack v4's uplink events (its MQTT integration, JSON marshaler)")
    tts_topic: str = Field(default="v3/+/devices/+/up",
                           description="The Things Stack v3's uplinks (its MQTT server, bridged into this broker)")

    @model_validator(mode="after")
    def _normalised_keys(self) -> LorawanSettings:
        self.devices = {device_key(k): v for k, v in self.devices.items()}
        return self


def device_key(device: str) -> str:
    """A DevEUI in lower-case hex without separators; any other device id as given."""
    compact = device.replace(":", "").replace("-", "")
    if len(compact) == 16 and all(c in "0123456789abcdefABCDEF" for c in compact):
        return compact.lower()
    return device


class HttpIngestSettings(_Section):
    """``POST /api/v1/ingest/{station_id}`` for loggers that cannot hold an MQTT session (docs/http-ingest.md).

    ``tokens`` holds one token HASH per station (``floodwatch ingest-token`` makes the token and
    its hash); the clear token goes only to the logger. Hashes may sit in the TOML file or in
    ``FLOODWATCH_HTTP_INGEST__TOKENS`` (JSON).
    """

    enabled: bool = True
    tokens: dict[StationId, str] = Field(default_factory=dict, description="station id -> token hash (sha256$...)")
    rate_per_min: float = Field(default=30.0, gt=0, description="requests per minute each node may make")
    burst: int = Field(default=20, ge=1, description="requests a node may make at once before the rate applies")

    @model_validator(mode="after")
    def _hashes_not_tokens(self) -> HttpIngestSettings:
        for station, stored in self.tokens.items():
            if not stored.startswith("sha256$") or stored.count("$") != 2:
                raise ValueError(
                    f"http_ingest.tokens[{station!r}] is not a token hash; never put the clear token in "
                    f"settings: run `floodwatch ingest-token {station}` and paste the sha256$... line it prints"
                )
        return self


class MqttStateSettings(_Section):
    """Retained state on the broker for Node-RED, Home Assistant and village controllers (docs/integrations.md)."""

    enabled: bool = False
    url: str | None = Field(default=None, description="broker to publish to (default: mqtt.url)")
    username: str | None = Field(default=None,
                                 description="the floodwatch-state account `floodwatch mqtt-config` writes")
    password: SecretStr | None = None
    ca_file: Path | None = None
    client_id: str = "floodwatch-state"
    home_assistant: bool = Field(default=True, description="publish Home Assistant MQTT discovery messages")
    discovery_prefix: str = "homeassistant"
    # What counts as a change worth publishing (smaller moves wait for the refresh):
    level_step_m: float = Field(default=0.01, description="the level moved at least this much")
    trend_step_cm_per_h: float = Field(default=5.0, description="the rise rate changed at least this much")
    peak_step_m: float = Field(default=0.02, description="the forecast peak moved at least this much")
    peak_time_step_s: float = Field(default=1800.0, description="or its time moved at least this much")
    refresh_s: float = Field(default=3600.0, description="republish unchanged state at least this often")


class Settings(BaseSettings):
    """Everything a floodwatch process needs to know about its site and its edges."""

    model_config = SettingsConfigDict(
        env_prefix="FLOODWATCH_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
    )

    config_file: Path = DEFAULT_CONFIG_FILE
    site: SiteConfig
    mqtt: MqttSettings = MqttSettings()
    store: StoreSettings = StoreSettings()
    line: LineSettings = LineSettings()
    forecast: ForecastSettings = ForecastSettings()
    alerts: AlertSettings = AlertSettings()
    page: PageSettings = PageSettings()
    worker: WorkerSettings = WorkerSettings()
    zones: list[ZoneConfig] = []
    stations: list[StationConfig] = []
    reports: ReportSettings = ReportSettings()
    loudspeakers: LoudspeakerSettings = LoudspeakerSettings()
    # Where relative SQLite paths (store, alert state, page state, spool) live: absolute, and
    # the same whatever folder a command runs from.
    data_dir: Path = DEFAULT_DATA_DIR
    feeds: list[FeedConfig] = []
    peers: list[PeerConfig] = []
    feed_state: FeedStateSettings = FeedStateSettings()
    lorawan: LorawanSettings = LorawanSettings()
    http_ingest: HttpIngestSettings = HttpIngestSettings()
    mqtt_state: MqttStateSettings = MqttStateSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _config_file_from(init_settings)
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    @model_validator(mode="after")
    def _registry_consistent(self) -> Settings:
        problems = registry_problems([z.model_dump() for z in self.zones], [s.model_dump() for s in self.stations],
                                    [f.model_dump() for f in self.feeds], [p.model_dump() for p in self.peers])
        problems += self._profile_problems()
        own = {s.id for s in self.stations if not s.external}
        for device, station_id in self.lorawan.devices.items():
            if station_id not in own:
                problems.append((("lorawan", "devices", device),
                                 f"lorawan.devices maps {device!r} to station {station_id!r}, which is not one of "
                                 "this site's own stations; add it under [[stations]] or fix the id"))
        for station_id in self.http_ingest.tokens:
            if station_id not in own:
                problems.append((("http_ingest", "tokens", station_id),
                                 f"http_ingest.tokens names station {station_id!r}, which is not one of this "
                                 "site's own stations; add it under [[stations]] or remove the token"))
        if problems:
            raise PydanticCustomError(
                "registry", "{summary}",
                {"summary": "; ".join(message for _, message in problems), "problems": problems},
            )
        return self

    def _profile_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Each station's warning_profile names a known profile whose lead the forecast reaches."""
        known_profiles = {**BUILTIN_WARNING_PROFILES, **self.alerts.profiles}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for i, station in enumerate(self.stations):
            if station.warning_profile is None:
                continue
            where = ("stations", i, "warning_profile")
            if station.warning_profile not in known_profiles:
                problems.append((where, f"station {station.id!r} names warning_profile {station.warning_profile!r}, "
                                 "which is neither built in nor under [alerts.profiles]; use one of "
                                 f"{', '.join(sorted(known_profiles))}"))
            elif station.kind != "water_level":
                problems.append((where, f"station {station.id!r} is a rain gauge; warning_profile is for level "
                                 "stations"))
            else:
                lead_h = known_profiles[station.warning_profile].lead_h
                if lead_h is not None and lead_h > self.forecast.horizon_h:
                    problems.append((where, f"station {station.id!r}: warning_profile {station.warning_profile!r} "
                                     f"reads the forecast {lead_h} h ahead, beyond forecast.horizon_h = "
                                     f"{self.forecast.horizon_h}; shorten its lead_h"))
        return problems

    @model_validator(mode="after")
    def _loudspeakers_consistent(self) -> Settings:
        zone_ids = {z.id for z in self.zones}
        taken = {s.id for s in self.stations}
        seen: set[str] = set()
        for controller in self.loudspeakers.controllers:
            if controller.id in seen or controller.id in taken:
                raise ValueError(f"loudspeaker controller id {controller.id!r} is used twice (station and controller "
                                 "ids share the broker's user names); give it its own id")
            seen.add(controller.id)
            for zone in controller.zones:
                if zone not in zone_ids:
                    raise ValueError(f"loudspeaker controller {controller.id!r} names zone {zone!r}, which is not "
                                     "under [[zones]]")
        return self

    @model_validator(mode="after")
    def _paths_in_data_dir(self) -> Settings:
        """Relative SQLite paths and the map become absolute, so no file depends on the working directory."""
        self.data_dir = Path(os.path.abspath(self.data_dir.expanduser()))
        self.store.url = self.in_data_dir(self.store.url)
        self.alerts.state_url = self.in_data_dir(self.alerts.state_url)
        self.page.state_url = self.in_data_dir(self.page.state_url)
        if self.store.spool_path and not Path(self.store.spool_path).is_absolute():
            self.store.spool_path = str(self.data_dir / self.store.spool_path)
        # Officers' drop folders, residents' report photos and spoken loudspeaker messages: files
        # beside the databases.
        for feed in self.feeds:
            if feed.folder is not None and not feed.folder.is_absolute():
                feed.folder = self.data_dir / feed.folder
        if not self.reports.photo_dir.is_absolute():
            self.reports.photo_dir = self.data_dir / self.reports.photo_dir
        if not self.loudspeakers.audio_dir.is_absolute():
            self.loudspeakers.audio_dir = self.data_dir / self.loudspeakers.audio_dir
        return self

    def in_data_dir(self, url: str) -> str:
        """``sqlite:///var/page.db`` -> ``sqlite:////var/lib/floodwatch/var/page.db``; absolute ones and
        other URLs unchanged."""
        if not url.startswith(SQLITE_PREFIX) or url.startswith(SQLITE_PREFIX + "/") or len(url) == len(SQLITE_PREFIX):
            return url
        return SQLITE_PREFIX + str(self.data_dir / url[len(SQLITE_PREFIX):])

    @property
    def map_file(self) -> Path | None:
        """The site's GeoJSON map, relative to the site file's folder; None when the site names none."""
        if self.site.map is None:
            return None
        path = Path(self.site.map).expanduser()
        return path if path.is_absolute() else Path(self.config_file).parent / path

    # Registry look-ups used by every stage.
    def station(self, station_id: str) -> StationConfig:
        for s in self.stations:
            if s.id == station_id:
                return s
        raise ConfigError(
            f"station {station_id!r} is not in {self.config_file}; add it under [[stations]] "
            "or check the node's topic"
        )

    def zone(self, zone_id: str) -> ZoneConfig:
        for z in self.zones:
            if z.id == zone_id:
                return z
        raise ConfigError(f"zone {zone_id!r} is not in {self.config_file}; add it under [[zones]]")

    def feed(self, feed_id: str) -> FeedConfig:
        for f in self.feeds:
            if f.id == feed_id:
                return f
        raise ConfigError(f"feed {feed_id!r} is not in {self.config_file}; add it under [[feeds]]")

    @property
    def own_stations(self) -> list[StationConfig]:
        """Stations whose nodes this site runs (not external): they publish, go silent, alert."""
        return [s for s in self.stations if not s.external]

    @property
    def external_stations(self) -> list[StationConfig]:
        return [s for s in self.stations if s.external]
    def warning_profile(self, name: str | None) -> WarningProfile:
        """A profile by name: the site's ``[alerts.profiles]`` first, then the built-in ones; None: balanced."""
        known = {**BUILTIN_WARNING_PROFILES, **self.alerts.profiles}
        if name is None:
            return known["balanced"]
        if name not in known:
            raise ConfigError(
                f"warning profile {name!r} is neither built in nor under [alerts.profiles] in {self.config_file}; "
                f"use one of {', '.join(sorted(known))}"
            )
        return known[name]

    @property
    def level_stations(self) -> list[StationConfig]:
        return [s for s in self.stations if s.kind == "water_level"]

    @property
    def rain_stations(self) -> list[StationConfig]:
        return [s for s in self.stations if s.kind == "rain"]


def registry_problems(zones: list[dict[str, Any]], stations: list[dict[str, Any]],
                      feeds: list[dict[str, Any]] | None = None,
                      peers: list[dict[str, Any]] | None = None) -> list[tuple[tuple, str]]:
    """What is inconsistent between zones, stations, feeds and peers: [(settings path, sentence with the fix)].

    Works on plain dicts (the TOML as read, or dumped models), skipping entries
    whose own fields are missing (those are reported on their own).
    """
    from floodwatch.sitefile import did_you_mean

    problems: list[tuple[tuple, str]] = []
    first_zone: dict[str, int] = {}
    for i, zone in enumerate(zones):
        zone_id = zone.get("id")
        if zone_id in first_zone:
            problems.append((("zones", i, "id"), f"zone id {zone_id!r} is used twice (also "
                             f"zones[{first_zone[zone_id]}]); give each zone its own id"))
        elif zone_id is not None:
            first_zone[zone_id] = i
    first_station: dict[str, int] = {}
    for i, station in enumerate(stations):
        station_id = station.get("id")
        if station_id in first_station:
            problems.append((("stations", i, "id"), f"station id {station_id!r} is used twice (also "
                             f"stations[{first_station[station_id]}]); give each gauge its own id"))
        elif station_id is not None:
            first_station[station_id] = i
    station_ids = list(first_station)
    for i, station in enumerate(stations):
        station_id = station.get("id")
        zone_id = station.get("zone")
        if zone_id is not None and zone_id not in first_zone:
            problems.append((("stations", i, "zone"), f"station {station_id!r} names zone {zone_id!r}, which is not "
                             f"under [[zones]]{did_you_mean(str(zone_id), first_zone)}"))
        rain = station.get("rain_station")
        if rain is not None and rain not in first_station:
            problems.append((("stations", i, "rain_station"), f"station {station_id!r} names rain_station {rain!r}, "
                             f"which is not a station in the registry{did_you_mean(str(rain), station_ids)}"))
        for key in ("upstream", "predicted"):
            for other in station.get(key) or []:
                if other == station_id:
                    problems.append((("stations", i, key), f"station {station_id!r} lists itself in {key}; remove it"))
                elif other not in first_station:
                    problems.append((("stations", i, key), f"station {station_id!r} names {key} station {other!r}, "
                                     "which is not a station in the registry; add it under [[stations]] (external = "
                                     f"true for another agency's){did_you_mean(str(other), station_ids)}"))
                else:
                    # An observed gauge read as a prediction has no future values (the forecast would
                    # lose it past the origin); a prediction read as a gauge would be read as late.
                    series = stations[first_station[other]].get("series") or "observed"
                    if key == "predicted" and series != "predicted":
                        problems.append((("stations", i, key), f"station {station_id!r} names {other!r} in predicted, "
                                         f"but {other!r} is an observed series; list it under upstream, or set "
                                         f"series = \"predicted\" on {other!r} if its feed brings future values"))
                    elif key == "upstream" and series == "predicted":
                        problems.append((("stations", i, key), f"station {station_id!r} names {other!r} in upstream, "
                                         f"but {other!r} is a predicted series; list it under predicted"))
    # External stations raise no resident alert: a zone needs one of its own.
    with_station = {s.get("zone") for s in stations if not s.get("external")}
    for i, zone in enumerate(zones):
        zone_id = zone.get("id")
        if zone_id is not None and zone_id not in with_station and first_zone.get(zone_id) == i:
            problems.append((("zones", i, "id"), f"zone {zone_id!r} has no station of its own, so residents who "
                             f"pick it would never be warned; add a station with zone = \"{zone_id}\" or remove "
                             "the zone"))
    feeds = feeds or []
    first_feed: dict[str, int] = {}
    for i, feed in enumerate(feeds):
        feed_id = feed.get("id")
        if feed_id in first_feed:
            problems.append((("feeds", i, "id"), f"feed id {feed_id!r} is used twice under [[feeds]]; give each "
                             "feed its own id"))
        elif feed_id is not None:
            first_feed[feed_id] = i
    for i, station in enumerate(stations):
        feed_id = station.get("feed")
        if feed_id is not None and feed_id not in first_feed:
            problems.append((("stations", i, "feed"), f"station {station.get('id')!r} names feed {feed_id!r}, which "
                             f"is not under [[feeds]]{did_you_mean(str(feed_id), first_feed)}"))
    own = {s.get("id") for s in stations if not s.get("external")}
    for i, peer in enumerate(peers or []):
        for sid in peer.get("stations") or []:
            if sid not in own:
                problems.append((("peers", i, "stations"), f"peer {peer.get('id')!r} may read station {sid!r}, "
                                 "which is not one of this site's own stations; share only stations listed under "
                                 "[[stations]] without external = true"))
    return problems


def _config_file_from(init_settings: PydanticBaseSettingsSource) -> Path:
    explicit = init_settings().get("config_file") if callable(init_settings) else None
    if explicit:
        return Path(explicit)
    return config_file_in_use()


def config_file_in_use() -> Path:
    """``FLOODWATCH_CONFIG``, else /etc/floodwatch/site.toml when it exists, else the embedded example."""
    env = os.environ.get("FLOODWATCH_CONFIG_FILE") or os.environ.get("FLOODWATCH_CONFIG")
    if env:
        return Path(env)
    if SYSTEM_CONFIG_FILE.is_file():
        return SYSTEM_CONFIG_FILE
    return DEFAULT_CONFIG_FILE


def is_example(config_file: Path) -> bool:
    """True for a site shipped with floodwatch (fine for the demo, not a municipality's own)."""
    try:
        return Path(config_file).resolve().parent == DEFAULT_CONFIG_FILE.resolve().parent
    except OSError:
        return False


def site_env_prefix(site_id: str) -> str:
    """Environment prefix of one site in a multi-site deployment: ``FLOODWATCH_SITE_LAMPHAYA__``."""
    return "FLOODWATCH_SITE_" + "".join(c if c.isalnum() else "_" for c in site_id).upper() + "__"


def load_site_settings(config_file: Path) -> Settings:
    """One site's settings in a multi-site deployment.

    Only the site's TOML file and ``FLOODWATCH_SITE_<ID>__*`` variables are
    read (``FLOODWATCH_SITE_LAMPHAYA__LINE__CHANNEL_ACCESS_TOKEN``), never the
    plain ``FLOODWATCH_*`` ones, so one site's LINE channel, store or secrets
    can never leak into another's by a variable meant for the single-site form.
    """
    import tomllib

    from floodwatch.sitefile import toml_syntax_error

    syntax = toml_syntax_error(Path(config_file)) if Path(config_file).is_file() else None
    if syntax:
        raise ConfigError(syntax)
    try:
        site_id = tomllib.loads(Path(config_file).read_text())["site"]["id"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{config_file} must be a site TOML file with a [site] table and its id = \"...\"; "
                          f"add them (floodwatch site init writes a complete one)") from exc
    prefix = site_env_prefix(site_id)
    overrides: dict[str, Any] = {}
    if not os.environ.get(prefix + "DATA_DIR") and os.environ.get("FLOODWATCH_DATA_DIR"):
        # The data folder is the host's, not a secret: the plain variable serves every site.
        overrides["data_dir"] = os.environ["FLOODWATCH_DATA_DIR"]
    return load_settings(config_file=Path(config_file), _env_prefix=prefix, **overrides)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings at start-up; raise :class:`ConfigError` with the fix on bad input."""
    from floodwatch.sitefile import Problem, problems_from, render, toml_syntax_error

    config_file = Path(overrides.get("config_file") or config_file_in_use())
    if not config_file.is_file():
        raise ConfigError(
            f"site file {config_file} does not exist; write one with `floodwatch site init --out {config_file}` "
            "or point FLOODWATCH_CONFIG at your site's TOML file"
        )
    syntax = toml_syntax_error(config_file)
    if syntax:
        raise ConfigError(syntax)
    overrides.setdefault("config_file", config_file)
    if "_env_file" not in overrides:
        env_files: list[Path] = []
        in_system_folder = config_file.resolve().parent == SYSTEM_CONFIG_FILE.parent.resolve()
        if in_system_folder and os.access(SYSTEM_ENV_FILE, os.R_OK):
            env_files.append(SYSTEM_ENV_FILE)
        env_files.append(Path(".env"))  # a developer's secrets, in the folder a command runs from
        overrides["_env_file"] = tuple(env_files)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = problems_from(exc, Settings)
        if not any(err["type"] == "registry" for err in exc.errors()):
            # Fields failed, so the registry check did not run: run it on the file as written,
            # so every problem is named in one go.
            import tomllib

            raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
            zones = [z for z in raw.get("zones", []) if isinstance(z, dict)]
            stations = [s for s in raw.get("stations", []) if isinstance(s, dict)]
            feeds = [f for f in raw.get("feeds", []) if isinstance(f, dict)]
            peers = [p for p in raw.get("peers", []) if isinstance(p, dict)]
            problems += [Problem(loc, message) for loc, message in registry_problems(zones, stations, feeds, peers)]
        env_prefix = overrides.get("_env_prefix") or "FLOODWATCH_"
        lines = render(problems, config_file, env_prefix=env_prefix)
        raise ConfigError(f"{config_file} has {len(lines)} problem{'s' if len(lines) != 1 else ''}:\n"
                          + "\n".join(f"  {line}" for line in lines)) from exc
    register_secrets(settings)
    return for_this_worker(settings)


def zone_partition(zone_id: str, count: int) -> int:
    """The worker (0..count-1) a zone belongs to: a hash that is the same in every process and release."""
    import zlib

    return zlib.crc32(zone_id.encode()) % count


def for_this_worker(settings: Settings) -> Settings:
    """The registry cut down to the zones (and their stations) this worker owns.

    Every stage then simply sees a smaller site: ingest subscribes to these
    stations only, forecasts and alerts cover these zones only. A level
    station whose rain gauge belongs to another worker forecasts without rain
    (said once in the log); keep a zone's gauges together to avoid it.
    """
    worker = settings.worker
    if not worker.is_partial:
        return settings
    if worker.zones is not None:
        unknown = sorted(set(worker.zones) - {z.id for z in settings.zones})
        if unknown:
            raise ConfigError(f"worker.zones names {unknown}, which are not zones in {settings.config_file}")
        owned = set(worker.zones)
    else:
        k, n = (int(x) for x in worker.partition.split("/"))
        owned = {z.id for z in settings.zones if zone_partition(z.id, n) == k}
    stations = [s for s in settings.stations if s.zone in owned]
    kept = {s.id for s in stations}
    cut = []
    for i, s in enumerate(stations):
        if s.rain_station is not None and s.rain_station not in kept:
            cut.append(f"{s.id}->{s.rain_station}")
            stations[i] = s.model_copy(update={"rain_station": None})
    if cut:
        import logging

        logging.getLogger(__name__).warning(
            "worker forecasts without rain from another worker's gauges links=%s; list those zones together in "
            "worker.zones", ",".join(cut))
    partial = settings.model_copy(update={
        "zones": [z for z in settings.zones if z.id in owned],
        "stations": stations,
    })
    return partial


def register_secrets(settings: Settings) -> None:
    """Tell the log formatter which strings must never be written (call again after changing secrets)."""
    from floodwatch import logs

    for secret in (
        settings.line.channel_access_token,
        settings.line.channel_secret,
        settings.mqtt.password,
        settings.store.influx_token,
        settings.loudspeakers.mqtt_password,
        settings.mqtt_state.password,
    ):
        if secret is not None:
            logs.redact(secret.get_secret_value())
    # a password written into a URL (mqtt://user:PASSWORD@host) is a secret too
    logs.redact(logs.url_password(settings.mqtt.url), logs.url_password(settings.store.url))
    for feed in settings.feeds:
        # A peer broker's password lives in the environment variable the feed names.
        if feed.password_env and os.environ.get(feed.password_env):
            logs.redact(os.environ[feed.password_env])
