"""The MQTT contract at the boundary: bytes in, validated and converted readings out.

A node publishes JSON to ``{prefix}/{station_id}/telemetry`` (QoS 1)::

    {"ts": "2026-11-29T14:05:00+07:00", "seq": 812, "boot": 3,
     "distance_m": 2.41, "battery_v": 3.9, "rssi_dbm": -88}

or a buffer of them as ``{"readings": [{...}, {...}]}``. ``ts`` is ISO-8601
with an offset or epoch seconds. Raw sensor fields are converted with the
station's calibration from the registry: ``distance_m`` (ultrasonic/radar,
sensor face to water) becomes ``water_level_m = mount_height_m - distance_m``;
``rain_tips`` (a tipping-bucket counter since the node booted) becomes
``rain_mm`` = new tips x ``mm_per_tip``, restarting from the counter's value
when the node reboots (``boot`` changes or the counter goes down).

Everything here is pure except :class:`TipCounters`, the small per-station
memory the tip conversion needs; pass one in to convert across messages.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from floodwatch.errors import PayloadError
from floodwatch.vocabulary import Reading, StationId

if TYPE_CHECKING:
    from floodwatch.settings import Settings, StationConfig

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_READINGS_PER_MESSAGE = 2000
# A node's clock may drift; further ahead than this is a broken clock, not drift.
FUTURE_REJECT_S = 3600.0
# A predicted series (a tide table is published a year ahead) may reach this far into the future.
PREDICTED_AHEAD_S = 400 * 86_400.0
QUARANTINE_PAYLOAD_BYTES = 4096

# Values no sensor of ours can produce anywhere: outside these the payload is
# refused (quarantined). A value inside these but outside the station's own
# range is stored and QC-flagged instead (see ingest/qc.py).
PHYSICS_LIMITS: dict[str, tuple[float, float]] = {
    "water_level_m": (-50.0, 100.0),
    "distance_m": (0.0, 50.0),
    "rain_mm": (0.0, 500.0),
    "rain_tips": (0, 10_000_000),
    "battery_v": (0.0, 60.0),
    "rssi_dbm": (-200.0, 0.0),
    # The largest rivers on Earth carry a few hundred thousand m3/s; Thai dams release a few thousand.
    "discharge_m3_s": (0.0, 300_000.0),
    "seq": (0, 2**63 - 1),
    "boot": (0, 2**63 - 1),
}
_MEASUREMENTS = ("water_level_m", "distance_m", "rain_mm", "rain_tips", "battery_v", "rssi_dbm", "discharge_m3_s")


def _within(name: str) -> Any:
    lo, hi = PHYSICS_LIMITS[name]
    return Field(default=None, ge=lo, le=hi)


class _ReadingIn(BaseModel):
    """One reading as a node sends it. Strict JSON types: "1.5" is not a number.

    The physics limits are checked here too, by pydantic-core, which is
    cheaper than checking them again in Python on the hot path.
    """

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")

    ts: float | str | None = None
    seq: int | None = _within("seq")
    boot: int | None = _within("boot")
    station_id: str | None = None
    water_level_m: float | None = _within("water_level_m")
    distance_m: float | None = _within("distance_m")
    rain_mm: float | None = _within("rain_mm")
    rain_tips: int | None = _within("rain_tips")
    battery_v: float | None = _within("battery_v")
    rssi_dbm: float | None = _within("rssi_dbm")
    discharge_m3_s: float | None = _within("discharge_m3_s")


class _MessageIn(_ReadingIn):
    """A message: one reading at the top level, or a buffer under ``readings``."""

    readings: list[_ReadingIn] | None = None


@dataclass
class TipCounters:
    """Last tip counter seen per station, to turn cumulative counts into rain per reading.

    Only newer readings move the baseline, so a QoS 1 redelivery or an old
    buffer re-sent can never make the next reading count rain twice.
    """

    last: dict[str, tuple[int | None, float, int]] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)

    def rain_mm(self, station_id: str, boot: int | None, ts_s: float, tips: int, mm_per_tip: float) -> float | None:
        prev = self.last.get(station_id)
        if prev is None:
            self.last[station_id] = (boot, ts_s, tips)
            self.changed.add(station_id)
            # No baseline: a first boot-time reading (tips == 0) is honest zero,
            # otherwise the tips since boot may include rain already counted.
            return 0.0 if tips == 0 else None
        prev_boot, prev_ts_s, prev_tips = prev
        both_booted = boot is not None and prev_boot is not None
        if both_booted and boot < prev_boot:
            return None  # a re-send from before the node's last reboot
        new_boot = both_booted and boot > prev_boot
        if not new_boot and ts_s <= prev_ts_s:
            return None  # older than the baseline: a re-send; the store drops it as a duplicate
        self.last[station_id] = (boot, ts_s, tips)
        self.changed.add(station_id)
        # A new boot counts from zero even if the node's clock went back before NTP set it.
        rebooted = new_boot or tips < prev_tips
        delta = tips if rebooted else tips - prev_tips
        return delta * mm_per_tip


@dataclass(frozen=True)
class ParsedMessage:
    """What one MQTT message held: good readings and the refused parts (each with a reason)."""

    station_id: str | None
    readings: list[Reading]
    errors: list[PayloadError]


class _Registry:
    """Station look-up by id, built once per settings object (the hot path runs per message)."""

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings
        self.stations = {s.id: s for s in settings.stations}
        self.prefix = settings.mqtt.topic_prefix
        self.site = settings.site.id
        self.single_site = settings.mqtt.single_site_topics
        self.retention_s = settings.store.retention_days * 86_400.0


_registries: dict[int, _Registry] = {}


def _registry(settings: "Settings") -> _Registry:
    reg = _registries.get(id(settings))
    if reg is None or reg.settings is not settings:
        reg = _Registry(settings)
        _registries[id(settings)] = reg
    return reg


def station_from_topic(
    topic: str, prefix: str, suffix: str = "telemetry", site: str | None = None, single_site: bool = True
) -> str:
    """The station id in ``{prefix}/{site}/{station}/{suffix}`` (or ``{prefix}/{station}/{suffix}``).

    A topic naming another site is refused (``wrong_site``): readings never
    cross from one municipality to another, even on a shared broker.
    """
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == prefix and parts[3] == suffix and parts[1] and parts[2]:
        if site is not None and parts[1] != site:
            raise PayloadError(
                "wrong_site", f"topic {topic!r} is for site {parts[1]!r}, not {site!r}; check the node's site", parts[2]
            )
        return parts[2]
    if single_site and len(parts) == 3 and parts[0] == prefix and parts[2] == suffix and parts[1]:
        return parts[1]
    forms = f"{prefix}/{site or '<site>'}/<station_id>/{suffix}"
    if single_site:
        forms += f" or {prefix}/<station_id>/{suffix}"
    raise PayloadError("bad_topic", f"topic {topic!r} is not {forms}; fix the node's topic")


def parse_message(
    topic: str,
    payload: bytes,
    settings: "Settings",
    now_s: float,
    tips: TipCounters | None = None,
    *,
    from_feed: bool = False,
) -> ParsedMessage:
    """Validate and convert one telemetry message; bad parts are returned, not raised.

    A message-level fault (topic, size, encoding, JSON, unknown station)
    refuses the whole message; in a buffer each reading stands alone, so one
    bad reading does not lose its neighbours. An external station's readings
    are taken only from its feed (``from_feed=True``), never from a node on
    this site's broker.
    """
    reg = _registry(settings)
    station_id: str | None = None
    try:
        station_id = station_from_topic(topic, reg.prefix, site=reg.site, single_site=reg.single_site)
        station = reg.stations.get(station_id)
        if station is None:
            raise PayloadError(
                "unknown_station",
                f"station {station_id!r} is not in {settings.config_file}; add it under [[stations]] "
                "or check the node's topic",
                station_id,
            )
        if station.external and not from_feed:
            raise PayloadError(
                "external_station",
                f"station {station_id!r} is external: its data arrive by feed {station.feed!r}, not from a node on "
                "this broker; check the publisher's topic",
                station_id,
            )
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadError(
                "oversized",
                f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit; send smaller buffers",
                station_id,
            )
        try:
            msg = _MessageIn.model_validate_json(payload)
        except ValidationError as exc:
            try:
                payload.decode("utf-8")  # pydantic refuses bad UTF-8 as bad JSON; say which it was
            except UnicodeDecodeError as dec:
                raise PayloadError(
                    "not_utf8", f"payload is not UTF-8 ({dec.reason} at byte {dec.start})", station_id
                ) from exc
            if not any(e["loc"][:1] == ("readings",) and len(e["loc"]) > 1 for e in exc.errors()):
                raise _validation_error(exc, station_id) from exc
            # One bad reading in a buffer: judge each reading alone (slow path, errors only).
            return _parse_buffer_items(payload, station, station_id, reg, now_s, tips)
    except PayloadError as err:
        return ParsedMessage(station_id, [], [err])

    if msg.readings is None:
        items = [msg]
    else:
        if msg.ts is not None or any(getattr(msg, f) is not None for f in _MEASUREMENTS):
            err = PayloadError(
                "invalid_field",
                "a buffered message carries readings only under 'readings'; move top-level fields into it",
                station_id,
            )
            return ParsedMessage(station_id, [], [err])
        if not msg.readings:
            return ParsedMessage(station_id, [], [PayloadError("no_measurement", "'readings' is empty", station_id)])
        if len(msg.readings) > MAX_READINGS_PER_MESSAGE:
            err = PayloadError(
                "oversized",
                f"{len(msg.readings)} readings in one message; send at most {MAX_READINGS_PER_MESSAGE}",
                station_id,
            )
            return ParsedMessage(station_id, [], [err])
        items = msg.readings
        if len(items) > 1:
            # Tip deltas need the buffer in time order; nodes usually send it so.
            items = sorted(items, key=lambda it: _sort_key(it))

    readings: list[Reading] = []
    errors: list[PayloadError] = []
    for index, item in enumerate(items):
        try:
            readings.append(_convert(item, station, station_id, reg, now_s, tips))
        except PayloadError as err:
            if len(items) > 1:
                err = PayloadError(err.reason, f"reading {index}: {err.detail}", station_id)
            errors.append(err)
    return ParsedMessage(station_id, readings, errors)


def _parse_buffer_items(
    payload: bytes, station: "StationConfig", station_id: str, reg: _Registry, now_s: float, tips: TipCounters | None
) -> ParsedMessage:
    items = json.loads(payload)["readings"]
    good: list[tuple[int, _ReadingIn]] = []
    errors: list[PayloadError] = []
    for index, item in enumerate(items):
        try:
            good.append((index, _ReadingIn.model_validate_json(json.dumps(item, allow_nan=True))))
        except ValidationError as exc:
            err = _validation_error(exc, station_id)
            errors.append(PayloadError(err.reason, f"reading {index}: {err.detail}", station_id))
    good.sort(key=lambda pair: _sort_key(pair[1]))
    readings: list[Reading] = []
    for index, item in good:
        try:
            readings.append(_convert(item, station, station_id, reg, now_s, tips))
        except PayloadError as err:
            errors.append(PayloadError(err.reason, f"reading {index}: {err.detail}", station_id))
    return ParsedMessage(station_id, readings, errors)


def parse_payload(topic: str, payload: bytes, settings: "Settings", now_s: float,
                  tips: TipCounters | None = None) -> list[Reading]:
    """Validate and convert one telemetry message; raise :class:`PayloadError` on the first fault.

    Readings come back with ``qc_flag`` NOT_EVALUATED (QC needs the station's
    recent history; see :mod:`ingest.qc`) and ``received_s = now_s``.
    """
    parsed = parse_message(topic, payload, settings, now_s, tips)
    if parsed.errors:
        raise parsed.errors[0]
    return parsed.readings


def _sort_key(item: _ReadingIn) -> float:
    try:
        return _parse_ts(item.ts)
    except (PayloadError, TypeError):
        return math.inf


def _parse_ts(ts: float | str | None, station_id: str | None = None) -> float:
    if ts is None:
        raise PayloadError("missing_ts", "the reading has no 'ts'; send ISO-8601 with offset or epoch seconds", station_id)
    if isinstance(ts, str):
        try:
            when = datetime.fromisoformat(ts)
        except ValueError as exc:
            raise PayloadError(
                "bad_ts", f"ts {ts!r} is not ISO-8601; send e.g. 2026-11-29T14:05:00+07:00", station_id
            ) from exc
        if when.tzinfo is None:
            raise PayloadError(
                "bad_ts", f"ts {ts!r} has no UTC offset; add one, e.g. +07:00 for Bangkok", station_id
            )
        return when.timestamp()
    if ts > 1e11:
        raise PayloadError("bad_ts", f"ts {ts} looks like milliseconds; send epoch seconds", station_id)
    return float(ts)


def _convert(
    item: _ReadingIn,
    station: "StationConfig",
    station_id: str,
    reg: _Registry,
    now_s: float,
    tips: TipCounters | None,
) -> Reading:
    if item.station_id is not None and item.station_id != station_id:
        raise PayloadError(
            "station_mismatch",
            f"payload says station {item.station_id!r} but the topic says {station_id!r}; fix the node's config",
            station_id,
        )
    ts_s = _parse_ts(item.ts, station_id)
    if station.series == "predicted":
        if ts_s > now_s + PREDICTED_AHEAD_S:
            raise PayloadError(
                "future_ts",
                f"ts is {(ts_s - now_s) / 86400:.0f} days ahead, beyond the {PREDICTED_AHEAD_S / 86400:.0f} days a "
                "prediction may reach; check the table's year (Buddhist era?)",
                station_id,
            )
    elif ts_s > now_s + FUTURE_REJECT_S:
        raise PayloadError(
            "future_ts",
            f"ts is {ts_s - now_s:.0f} s in the future; set the node's clock (NTP/GNSS)",
            station_id,
        )
    if ts_s < now_s - reg.retention_s:
        raise PayloadError(
            "too_old",
            f"ts is {(now_s - ts_s) / 86400:.0f} days old, beyond the {reg.retention_s / 86400:.0f}-day retention;"
            " load history with `floodwatch import-csv`",
            station_id,
        )
    level_m = item.water_level_m
    rain_mm = item.rain_mm
    discharge = item.discharge_m3_s
    if discharge is not None and station.kind != "discharge":
        raise PayloadError("wrong_sensor", f"{station_id} is a {station.kind} station but sent discharge_m3_s",
                           station_id)
    if station.kind == "discharge":
        if level_m is not None or item.distance_m is not None or rain_mm is not None or item.rain_tips is not None:
            raise PayloadError("wrong_sensor", f"{station_id} is a discharge station; send discharge_m3_s only",
                               station_id)
    elif station.kind == "water_level":
        if rain_mm is not None or item.rain_tips is not None:
            raise PayloadError("wrong_sensor", f"{station_id} is a water-level station but sent rain", station_id)
        if item.distance_m is not None:
            if level_m is not None:
                raise PayloadError("invalid_field", "send water_level_m or distance_m, not both", station_id)
            if station.mount_height_m is None:
                raise PayloadError(
                    "no_calibration",
                    f"{station_id} sent distance_m but has no mount_height_m in the registry; add it",
                    station_id,
                )
            level_m = station.mount_height_m - item.distance_m
    else:
        if level_m is not None or item.distance_m is not None:
            raise PayloadError("wrong_sensor", f"{station_id} is a rain gauge but sent a water level", station_id)
        if item.rain_tips is not None:
            if rain_mm is not None:
                raise PayloadError("invalid_field", "send rain_mm or rain_tips, not both", station_id)
            if tips is not None:
                rain_mm = tips.rain_mm(station_id, item.boot, ts_s, item.rain_tips, station.mm_per_tip)
            # Without a baseline the rain of this interval is unknown: stored as missing.
    if (level_m is None and rain_mm is None and item.rain_tips is None and item.battery_v is None
            and item.rssi_dbm is None and discharge is None):
        raise PayloadError(
            "no_measurement",
            "the reading carries no measurement; send water_level_m, distance_m, rain_mm, rain_tips or discharge_m3_s",
            station_id,
        )
    return Reading(
        station_id=StationId(station_id),
        ts_s=ts_s,
        seq=item.seq,
        boot=item.boot,
        water_level_m=level_m,
        rain_mm=rain_mm,
        battery_v=item.battery_v,
        rssi_dbm=item.rssi_dbm,
        received_s=now_s,
        discharge_m3_s=discharge,
    )


def _validation_error(exc: ValidationError, station_id: str | None) -> PayloadError:
    errs = exc.errors(include_url=False)
    first = errs[0]
    if first["type"] == "json_invalid":
        return PayloadError("bad_json", f"payload is not JSON ({first['msg']})", station_id)
    if first["type"] in ("model_type", "model_attributes_type"):
        return PayloadError("bad_json", "payload must be a JSON object", station_id)
    types = {e["type"] for e in errs}
    if "finite_number" in types:
        reason = "non_finite"
    elif types <= {"greater_than_equal", "less_than_equal"}:
        reason = "out_of_physics"
        e = errs[0]
        name = str(e["loc"][-1])
        lo, hi = PHYSICS_LIMITS.get(name, (None, None))
        return PayloadError(
            reason, f"{name}={e.get('input')} is outside what any sensor can report [{lo}, {hi}]", station_id
        )
    else:
        reason = "invalid_field"
    parts = []
    for e in errs[:3]:
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']} (got {e.get('input')!r:.40})")
    return PayloadError(reason, "; ".join(parts), station_id)
