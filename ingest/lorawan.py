"""LoRaWAN network servers' uplinks -> readings, through the same checks as our own nodes'.

Two servers, their JSON as published on MQTT (shapes looked up in their public
source and documentation; recorded examples in ``tests/ingest/lorawan_fixtures/``):

- **ChirpStack v4**, MQTT integration with the JSON marshaler, topic
  ``application/{application_id}/device/{dev_eui}/event/up``: the protobuf
  ``integration.UplinkEvent`` in protobuf's JSON mapping (camelCase, bytes as
  base64, zero values omitted): ``deduplicationId``, ``time``, ``deviceInfo``
  (``devEui``, ``applicationId``, ``deviceName``...), ``devAddr``, ``fCnt``,
  ``fPort``, ``data`` (base64 FRMPayload), ``object`` (the codec's output, only
  when the device profile has a codec), ``rxInfo`` (per gateway, ``rssi``).
- **The Things Stack v3**, its MQTT server (bridged into this broker), topic
  ``v3/{application_id}@{tenant_id}/devices/{device_id}/up`` (``v3/{application_id}/...``
  on the open-source edition): ``end_device_ids`` (``device_id``, ``dev_eui``,
  ``dev_addr``), ``received_at``, ``uplink_message`` with ``f_cnt`` (omitted
  when 0), ``f_port``, ``frm_payload`` (base64), ``decoded_payload`` (the
  uplink formatter's output), ``session_key_id``, ``rx_metadata`` (``rssi``).

The site file maps each device (DevEUI, or TTS device id) to a station
(``[lorawan] devices``). The decoded object (or, without one, the FRMPayload
decoded with the reference node's layout) uses the MQTT contract's field
names and goes through :func:`ingest.payload.convert_fields`: the same
validation, calibration, QC and dedup as a reading from our own nodes.

Everything here is pure except :class:`FrameCounters`, the small per-device
memory the replay check needs (kept in ingest's spool file across restarts).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from floodwatch.errors import PayloadError
from floodwatch.ingest.payload import MAX_PAYLOAD_BYTES, ParsedMessage, TipCounters, convert_fields
from floodwatch.settings import device_key

if TYPE_CHECKING:
    from floodwatch.settings import Settings

CHIRPSTACK = "chirpstack"
TTS = "tts"
LAYOUT_VERSION = 1
# Frames remembered per device: a QoS 1 redelivery of any of them is a duplicate, not a replay.
RECENT_FRAMES = 32
# Sessions remembered per device: a frame from an older one is a replay.
OLD_SESSIONS = 8

# The fields a station's readings cannot do without, per kind (either one of each pair).
_MAIN_FIELDS = {"water_level": ("water_level_m", "distance_m"), "rain": ("rain_mm", "rain_tips")}
_CONTRACT_FIELDS = ("ts", "water_level_m", "distance_m", "rain_mm", "rain_tips", "battery_v", "rssi_dbm")


@dataclass(frozen=True)
class Uplink:
    """One application uplink as a network server published it, reduced to what floodwatch uses."""

    server: str  # "chirpstack" | "tts"
    device: str  # DevEUI (ChirpStack) or device id (TTS), as in the topic
    dev_eui: str | None
    session: str | None  # ChirpStack devAddr; TTS session_key_id (else dev_addr): changes at every join
    f_cnt: int
    f_port: int | None
    received_s: float | None  # when the network server received it, UTC epoch s
    frm_payload: bytes | None
    decoded: dict[str, Any] | None  # the server's codec output, when it ran one
    rssi_dbm: float | None  # the best gateway's


def server_of(topic: str, settings: Settings) -> str | None:
    """``"chirpstack"`` or ``"tts"`` when ``topic`` is one of the configured uplink topics, else None."""
    if not settings.lorawan.devices:
        return None
    parts = topic.split("/")
    if _matches(parts, settings.lorawan.chirpstack_topic):
        return CHIRPSTACK
    if _matches(parts, settings.lorawan.tts_topic):
        return TTS
    return None


def _matches(parts: list[str], pattern: str) -> bool:
    want = pattern.split("/")
    if want and want[-1] == "#":
        head = want[:-1]
        return len(parts) >= len(head) and all(w in ("+", p) for w, p in zip(head, parts[:len(head)], strict=True))
    return len(parts) == len(want) and all(w in ("+", p) for w, p in zip(want, parts, strict=True))


# ------------------------------------------------------------------- the shapes
def device_level(pattern: str) -> int:
    """Which level of an uplink topic names the device: the pattern's last ``+``."""
    levels = pattern.split("/")
    return max(i for i, part in enumerate(levels) if part == "+") if "+" in levels else len(levels) - 1


def read_uplink(server: str, topic: str, payload: bytes, level: int = 3) -> Uplink:
    """The uplink in a network server's JSON; raises :class:`PayloadError` (``bad_json``, ``invalid_field``).

    ``level``: which topic level names the device (3 in both servers' topics).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("oversized", f"uplink event is {len(payload)} bytes, over {MAX_PAYLOAD_BYTES}")
    try:
        body = json.loads(payload)
    except UnicodeDecodeError as exc:
        raise PayloadError("not_utf8", f"uplink event is not UTF-8 ({exc.reason})") from exc
    except ValueError as exc:
        hint = (" (ChirpStack: set the MQTT integration's marshaler to JSON, json = true)"
                if server == CHIRPSTACK else "")
        raise PayloadError("bad_json", f"uplink event is not JSON{hint}: {exc}") from exc
    if not isinstance(body, dict):
        raise PayloadError("bad_json", "uplink event must be a JSON object")
    topic_device = topic.split("/")[level]
    if server == CHIRPSTACK:
        return _chirpstack(body, topic_device)
    return _tts(body, topic_device)


def _chirpstack(body: dict[str, Any], topic_device: str) -> Uplink:
    info = _obj(body, "deviceInfo")
    dev_eui = _str(info, "devEui")
    if dev_eui is not None and device_key(dev_eui) != device_key(topic_device):
        raise PayloadError("invalid_field",
                           f"deviceInfo.devEui {dev_eui!r} disagrees with the topic's {topic_device!r}")
    rssi = [r.get("rssi") for r in body.get("rxInfo") or [] if isinstance(r, dict)]
    return Uplink(
        server=CHIRPSTACK,
        device=topic_device,
        dev_eui=dev_eui or topic_device,
        session=_str(body, "devAddr"),
        f_cnt=_count(body, "fCnt"),
        f_port=_opt_int(body, "fPort"),
        received_s=_time(body.get("time"), "time"),
        frm_payload=_b64(body.get("data"), "data"),
        decoded=_decoded(body, "object"),
        rssi_dbm=_best_rssi(rssi),
    )


def _tts(body: dict[str, Any], topic_device: str) -> Uplink:
    ids = _obj(body, "end_device_ids")
    device_id = _str(ids, "device_id")
    if device_id is not None and device_id != topic_device:
        raise PayloadError("invalid_field", f"end_device_ids.device_id {device_id!r} disagrees with the topic's "
                           f"{topic_device!r}")
    up = body.get("uplink_message")
    if not isinstance(up, dict):
        raise PayloadError("invalid_field", "not an uplink: the message has no 'uplink_message'")
    rssi = [r.get("rssi") for r in up.get("rx_metadata") or [] if isinstance(r, dict)]
    received = up.get("received_at") or body.get("received_at")
    return Uplink(
        server=TTS,
        device=topic_device,
        dev_eui=_str(ids, "dev_eui"),
        session=_str(up, "session_key_id") or _str(ids, "dev_addr"),
        f_cnt=_count(up, "f_cnt"),
        f_port=_opt_int(up, "f_port"),
        received_s=_time(received, "received_at"),
        frm_payload=_b64(up.get("frm_payload"), "frm_payload"),
        decoded=_decoded(up, "decoded_payload"),
        rssi_dbm=_best_rssi(rssi),
    )


def _obj(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if not isinstance(value, dict):
        raise PayloadError("invalid_field", f"uplink event has no '{name}' object")
    return value


def _str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value else None


def _opt_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _count(body: dict[str, Any], name: str) -> int:
    # Both servers leave zero values out of their JSON: a missing counter is 0.
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise PayloadError("invalid_field", f"{name}={value!r} is not a frame counter (0..2^32-1)")
    return value


def _time(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError("bad_ts", f"{name}={value!r} is not an RFC 3339 time")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PayloadError("bad_ts", f"{name}={value!r} is not an RFC 3339 time") from exc
    if when.tzinfo is None:
        raise PayloadError("bad_ts", f"{name}={value!r} has no UTC offset")
    return when.timestamp()


def _b64(value: Any, name: str) -> bytes | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError("invalid_field", f"{name} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("undecodable", f"{name} is not valid base64 ({exc})") from exc


def _decoded(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PayloadError("invalid_field", f"'{name}' (the codec's output) is not an object")
    return value


def _best_rssi(values: list[Any]) -> float | None:
    good = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return max(good) if good else None


# ------------------------------------------------------------ the binary layout
def decode_reference_payload(data: bytes | None) -> dict[str, Any]:
    """The reference node's uplink (layout 1, firmware_sim/reference_node/uplink-layout.md) as contract fields.

    The same result as ``codec.js``; raises :class:`PayloadError` ``undecodable`` naming what is wrong.
    """
    if not data:
        raise PayloadError("undecodable", "the uplink carries no payload and the network server decoded none")
    if len(data) < 4:
        raise PayloadError("undecodable", f"payload is {len(data)} bytes; floodwatch layout 1 needs at least 4")
    if data[0] != LAYOUT_VERSION:
        raise PayloadError("undecodable", f"layout version {data[0]} is not 1 (first byte {data[:1].hex()}); "
                           "is this device running the floodwatch reference firmware? otherwise give it a codec")
    flags = data[1]
    if flags & 0xE0:
        raise PayloadError("undecodable", f"reserved flag bits set (0x{flags:02x})")
    sizes = ((0x01, 2), (0x02, 2), (0x04, 3), (0x08, 2), (0x10, 2))
    expected = 4 + sum(size for bit, size in sizes if flags & bit)
    if len(data) != expected:
        raise PayloadError("undecodable", f"payload is {len(data)} bytes but its flags say {expected}")
    out: dict[str, Any] = {"boot": int.from_bytes(data[2:4], "big")}
    i = 4
    if flags & 0x01:
        out["distance_m"] = int.from_bytes(data[i:i + 2], "big") / 1000
        i += 2
    if flags & 0x02:
        out["water_level_m"] = int.from_bytes(data[i:i + 2], "big", signed=True) / 1000
        i += 2
    if flags & 0x04:
        out["rain_tips"] = int.from_bytes(data[i:i + 3], "big")
        i += 3
    if flags & 0x08:
        out["battery_v"] = int.from_bytes(data[i:i + 2], "big") / 1000
        i += 2
    if flags & 0x10:
        out["age_s"] = int.from_bytes(data[i:i + 2], "big")
    return out


# ------------------------------------------------------------ the replay check
@dataclass
class _Device:
    session: str | None
    boot: int | None
    f_cnt: int
    recent: OrderedDict[int, int]  # f_cnt -> reading time in ms, the last RECENT_FRAMES frames
    old_sessions: list[str]


@dataclass
class FrameCounters:
    """Each device's frame counter, to refuse a replayed uplink and let a redelivered one through.

    Within one session (ChirpStack ``devAddr``, TTS ``session_key_id``: both change at
    every join) the frame counter only goes up, as in LoRaWAN itself. A frame whose
    counter is not above the last one is a **duplicate** when it is one of the recent
    frames with the same time (a QoS 1 redelivery: the store drops it) and a
    **replay** otherwise (refused, ``replayed_fcnt``). A new session, or a higher
    ``boot`` in the payload, starts the counter again; a frame from a session seen
    before the current one, or with a lower ``boot``, is a replay.
    """

    devices: dict[str, _Device] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)

    def check(self, device: str, session: str | None, boot: int | None, f_cnt: int, ts_ms: int) -> None:
        """Accept the frame (and remember it) or raise :class:`PayloadError` ``replayed_fcnt``."""
        d = self.devices.get(device)
        if d is None:
            self.devices[device] = _Device(session, boot, f_cnt, OrderedDict([(f_cnt, ts_ms)]), [])
            self.changed.add(device)
            return
        if session != d.session:
            if session is not None and session in d.old_sessions:
                raise PayloadError("replayed_fcnt", f"frame {f_cnt} of device {device} belongs to an earlier session "
                                   f"({session}); refused as a replay")
            if d.session is not None:
                d.old_sessions = ([d.session] + d.old_sessions)[:OLD_SESSIONS]
            self._restart(device, d, session, boot, f_cnt, ts_ms)
            return
        if boot is not None and d.boot is not None and boot != d.boot:
            if boot < d.boot:
                raise PayloadError("replayed_fcnt", f"frame {f_cnt} of device {device} carries boot {boot}, older "
                                   f"than the node's boot {d.boot}; refused as a replay")
            self._restart(device, d, session, boot, f_cnt, ts_ms)
            return
        if f_cnt > d.f_cnt:
            d.f_cnt = f_cnt
            d.boot = boot if boot is not None else d.boot
            d.recent[f_cnt] = ts_ms
            while len(d.recent) > RECENT_FRAMES:
                d.recent.popitem(last=False)
            self.changed.add(device)
            return
        if d.recent.get(f_cnt) == ts_ms:
            return  # the same frame again (QoS 1 redelivery): the store drops the copy
        raise PayloadError("replayed_fcnt", f"frame counter {f_cnt} of device {device} is not above {d.f_cnt} in "
                           "the same session and this is not a redelivery; refused as a replay (an ABP device that "
                           "restarts its counter must send a boot counter, as the reference layout does)")

    def _restart(self, device: str, d: _Device, session: str | None, boot: int | None, f_cnt: int,
                 ts_ms: int) -> None:
        d.session, d.boot, d.f_cnt = session, boot, f_cnt
        d.recent = OrderedDict([(f_cnt, ts_ms)])
        self.changed.add(device)

    # Persistence (ingest keeps these in its spool file).
    def dump(self, device: str) -> str:
        d = self.devices[device]
        return json.dumps({"session": d.session, "boot": d.boot, "f_cnt": d.f_cnt,
                           "recent": [[k, v] for k, v in d.recent.items()], "old_sessions": d.old_sessions})

    def load(self, device: str, text: str) -> None:
        v = json.loads(text)
        self.devices[device] = _Device(v["session"], v["boot"], int(v["f_cnt"]),
                                       OrderedDict((int(k), int(t)) for k, t in v["recent"]), list(v["old_sessions"]))


def _whole_numbers(decoded: dict[str, Any]) -> dict[str, Any]:
    """A codec's output with its counters as integers.

    JavaScript has only doubles and both servers carry the output as a protobuf
    Struct (doubles), so ChirpStack writes a count of 25 as ``25.0``; a whole
    double is the integer it stands for, anything else stays and is refused.
    """
    out = dict(decoded)
    for name in ("boot", "rain_tips", "age_s"):
        v = out.get(name)
        if isinstance(v, float) and v.is_integer():
            out[name] = int(v)
    return out


# --------------------------------------------------------------- one uplink in
def parse_uplink(
    server: str,
    topic: str,
    payload: bytes,
    settings: Settings,
    now_s: float,
    counters: FrameCounters | None = None,
    tips: TipCounters | None = None,
) -> ParsedMessage:
    """Validate and convert one network-server uplink; refusals are returned with their reason, not raised.

    Reasons beyond the MQTT contract's: ``unknown_device`` (not in ``[lorawan] devices``),
    ``replayed_fcnt``, ``undecodable`` (no decoded object and the bytes are not the
    reference layout), ``codec_missing_field`` (the decoded object lacks the station's
    main measurement).
    """
    station_id: str | None = None
    try:
        pattern = settings.lorawan.chirpstack_topic if server == CHIRPSTACK else settings.lorawan.tts_topic
        uplink = read_uplink(server, topic, payload, device_level(pattern))
        devices = settings.lorawan.devices
        key = device_key(uplink.device)
        station_id = devices.get(key)
        if station_id is None and uplink.dev_eui is not None:
            station_id = devices.get(device_key(uplink.dev_eui))
        if station_id is None:
            name = "ChirpStack" if server == CHIRPSTACK else "The Things Stack"
            raise PayloadError("unknown_device", f"LoRaWAN device {uplink.device!r} ({name}) is not mapped to a "
                               f"station; add it under [lorawan] devices in {settings.config_file}")
        station = next((s for s in settings.stations if s.id == station_id), None)
        if station is None:
            # A worker that owns only some zones (settings.worker): another worker's device.
            return ParsedMessage(None, [], [])
        if uplink.decoded is not None:
            fields = _whole_numbers(uplink.decoded)
            origin = f"the codec output of device {uplink.device!r}"
        else:
            fields = decode_reference_payload(uplink.frm_payload)
            origin = f"the payload of device {uplink.device!r}"
        main = _MAIN_FIELDS[station.kind]
        if not any(fields.get(name) is not None for name in main):
            have = ", ".join(sorted(fields)) or "nothing"
            raise PayloadError("codec_missing_field", f"{origin} has no {' or '.join(main)} for {station.kind} "
                               f"station {station_id} (it has: {have:.120}); make the codec return one of them",
                               station_id)
        reading_fields = {k: fields[k] for k in _CONTRACT_FIELDS if k in fields}
        boot = fields.get("boot")
        if boot is not None:
            reading_fields["boot"] = boot
        if uplink.rssi_dbm is not None and "rssi_dbm" not in reading_fields:
            reading_fields["rssi_dbm"] = uplink.rssi_dbm
        if "ts" not in reading_fields:
            age_s = fields.get("age_s", 0)
            if not isinstance(age_s, (int, float)) or isinstance(age_s, bool) or not 0 <= age_s <= 7 * 86_400:
                raise PayloadError("invalid_field", f"age_s={age_s!r} is not 0..604800 seconds", station_id)
            received_s = uplink.received_s if uplink.received_s is not None else now_s
            reading_fields["ts"] = round(received_s - age_s, 3)
        reading = convert_fields(reading_fields, station_id, settings, now_s, None)
        if counters is not None:
            counters.check(key, uplink.session, boot if isinstance(boot, int) else None, uplink.f_cnt,
                           int(round(reading.ts_s * 1000)))
        if tips is not None and station.kind == "rain" and reading_fields.get("rain_tips") is not None:
            reading = convert_fields(reading_fields, station_id, settings, now_s, tips)
        # LoRaWAN restarts the frame counter at every join, so (boot, f_cnt) is no key:
        # the store keys these readings by time; f_cnt is kept as seq for the record.
        reading = replace(reading, seq=uplink.f_cnt, boot=None)
    except PayloadError as err:
        if err.station_id is None and station_id is not None:
            err = PayloadError(err.reason, err.detail, station_id)
        return ParsedMessage(station_id, [], [err])
    return ParsedMessage(station_id, [reading], [])
