"""The one settings model: a TOML file plus ``FLOODWATCH_*`` environment variables.

Precedence, highest first: keyword arguments to :func:`load_settings`,
environment variables (``FLOODWATCH_MQTT__URL``: nested with ``__``), a
``.env`` file in the working directory (for secrets), then the TOML file
(``config/lamphaya.toml`` unless ``FLOODWATCH_CONFIG`` names another).

The station and zone registry lives in the same TOML file, so one model
describes a site completely. Settings are built by a function at start-up,
never at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from floodwatch.errors import ConfigError
from floodwatch.vocabulary import AlertLevel, StationId, ZoneId

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "config" / "lamphaya.toml"
LINE_PRODUCTION_API = "https://api.line.me"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarningLevels(_Section):
    """Warning levels in metres above mean sea level; must rise strictly."""

    watch_m: float
    warning_m: float
    evacuate_m: float

    @model_validator(mode="after")
    def _ordered(self) -> "WarningLevels":
        if not (self.watch_m < self.warning_m < self.evacuate_m):
            raise ValueError(
                f"warning levels must rise: watch {self.watch_m} < warning {self.warning_m}"
                f" < evacuate {self.evacuate_m}"
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
    kind: Literal["water_level", "rain"]
    sensor: Literal["ultrasonic", "radar", "pressure", "tipping_bucket"]
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

    @model_validator(mode="after")
    def _kind_fields(self) -> "StationConfig":
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
    id: str = "lamphaya"
    name_th: str = "เทศบาลตำบลลำพญา"
    name_en: str = "Lam Phaya Subdistrict Municipality"
    timezone: str = "Asia/Bangkok"


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
    ca_file: Path | None = Field(default=None, description="CA certificate (PEM) that signed the broker's TLS certificate")
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
    def _index_below_count(self) -> "WorkerSettings":
        k, n = (int(x) for x in self.partition.split("/"))
        if k >= n:
            raise ValueError(f"worker.partition {self.partition!r}: k must be below n (0/{n} .. {n - 1}/{n})")
        return self

    @property
    def is_partial(self) -> bool:
        return self.zones is not None or self.partition != "0/1"


class Settings(BaseSettings):
    """Everything a floodwatch process needs to know about its site and its edges."""

    model_config = SettingsConfigDict(
        env_prefix="FLOODWATCH_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
    )

    config_file: Path = DEFAULT_CONFIG_FILE
    site: SiteConfig = SiteConfig()
    mqtt: MqttSettings = MqttSettings()
    store: StoreSettings = StoreSettings()
    line: LineSettings = LineSettings()
    forecast: ForecastSettings = ForecastSettings()
    alerts: AlertSettings = AlertSettings()
    page: PageSettings = PageSettings()
    worker: WorkerSettings = WorkerSettings()
    zones: list[ZoneConfig] = []
    stations: list[StationConfig] = []

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
    def _registry_consistent(self) -> "Settings":
        zone_ids = [z.id for z in self.zones]
        if len(set(zone_ids)) != len(zone_ids):
            raise ValueError("zone ids must be unique in the registry")
        station_ids = [s.id for s in self.stations]
        if len(set(station_ids)) != len(station_ids):
            raise ValueError("station ids must be unique in the registry")
        known = set(zone_ids)
        for station in self.stations:
            if station.zone not in known:
                raise ValueError(
                    f"station {station.id!r} names zone {station.zone!r}, which is not under [[zones]]"
                )
            if station.rain_station is not None and station.rain_station not in station_ids:
                raise ValueError(
                    f"station {station.id!r} names rain_station {station.rain_station!r}, "
                    "which is not a station in the registry"
                )
            for key in ("upstream", "predicted"):
                for other in getattr(station, key):
                    if other == station.id:
                        raise ValueError(f"station {station.id!r} lists itself in {key}; remove it")
                    if other not in station_ids:
                        raise ValueError(
                            f"station {station.id!r} names {key} station {other!r}, which is not a station "
                            "in the registry; add it under [[stations]] (external = true for another agency's)"
                        )
        return self

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

    @property
    def level_stations(self) -> list[StationConfig]:
        return [s for s in self.stations if s.kind == "water_level"]

    @property
    def rain_stations(self) -> list[StationConfig]:
        return [s for s in self.stations if s.kind == "rain"]


def _config_file_from(init_settings: PydanticBaseSettingsSource) -> Path:
    explicit = init_settings().get("config_file") if callable(init_settings) else None
    if explicit:
        return Path(explicit)
    env = os.environ.get("FLOODWATCH_CONFIG_FILE") or os.environ.get("FLOODWATCH_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_FILE


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

    try:
        site_id = tomllib.loads(Path(config_file).read_text())["site"]["id"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{config_file} must be a site TOML file with [site] id = \"...\" ({exc})") from exc
    return load_settings(config_file=Path(config_file), _env_prefix=site_env_prefix(site_id))


def load_settings(**overrides: Any) -> Settings:
    """Build the settings at start-up; raise :class:`ConfigError` with the fix on bad input."""
    config_file = Path(overrides.get("config_file") or _config_file_from(lambda: {}))  # type: ignore[arg-type]
    if not config_file.is_file():
        raise ConfigError(
            f"config file {config_file} does not exist; point FLOODWATCH_CONFIG at a site's TOML "
            "file (see config/lamphaya.toml)"
        )
    overrides.setdefault("config_file", config_file)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError(f"settings in {config_file} or FLOODWATCH_* are invalid:\n" + "\n".join(lines)) from exc
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
    ):
        if secret is not None:
            logs.redact(secret.get_secret_value())
