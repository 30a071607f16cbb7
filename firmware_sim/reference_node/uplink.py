"""The reference node's LoRaWAN uplink, layout version 1 (see uplink-layout.md, byte by byte).

Pure and MicroPython-compatible (``struct`` only): the LoRaWAN node runs it on the
board, the simulator (``floodwatch simulate --lorawan ...``) runs it in CPython.
The decoder is ``codec.js`` (what the network server runs) and, for uplinks that
reach floodwatch without a decoded object, ``floodwatch.ingest.lorawan``.

    quantize(reading) -> the values the decoder will return (rounded as sent)
    encode(values)    -> bytes (8 to 14)
"""

import struct

LAYOUT_VERSION = 1
F_PORT = 1

# Flag bits in byte 1, and the order the present fields follow in.
FLAG_DISTANCE = 0x01
FLAG_WATER_LEVEL = 0x02
FLAG_RAIN_TIPS = 0x04
FLAG_BATTERY = 0x08
FLAG_AGE = 0x10

MAX_U16 = 65535
MAX_U24 = 16777215


def _mm(value_m):
    return int(round(value_m * 1000.0))


def quantize(reading, boot=None, age_s=0):
    """The fields of a contract reading as the uplink carries them.

    ``reading`` uses the MQTT contract's names (``distance_m``, ``water_level_m``,
    ``rain_tips``, ``battery_v``; ``boot`` if ``boot`` is not given). Returns a dict
    with the same names, each rounded to what the layout can hold, plus ``boot``
    (wrapped to 16 bits) and ``age_s`` when not zero. Values the layout cannot hold
    raise ValueError naming the field.
    """
    boot = reading.get("boot", 0) if boot is None else boot
    out = {"boot": int(boot) % (MAX_U16 + 1)}  # type: dict[str, float]
    d = reading.get("distance_m")
    if d is not None:
        mm = _mm(d)
        if not 0 <= mm <= MAX_U16:
            raise ValueError(f"distance_m {d!r} does not fit the uplink (0..65.535 m)")
        out["distance_m"] = mm / 1000.0
    w = reading.get("water_level_m")
    if w is not None:
        mm = _mm(w)
        if not -32768 <= mm <= 32767:
            raise ValueError(f"water_level_m {w!r} does not fit the uplink (-32.768..32.767 m)")
        out["water_level_m"] = mm / 1000.0
    t = reading.get("rain_tips")
    if t is not None:
        if not 0 <= int(t) <= MAX_U24:
            raise ValueError(f"rain_tips {t!r} does not fit the uplink (0..16777215)")
        out["rain_tips"] = int(t)
    b = reading.get("battery_v")
    if b is not None:
        mv = int(round(b * 1000.0))
        out["battery_v"] = min(max(mv, 0), MAX_U16) / 1000.0
    age = int(round(age_s or 0))
    if age:
        if not 0 < age <= MAX_U16:
            raise ValueError(f"age_s {age_s!r} does not fit the uplink (0..65535 s); drop readings that old")
        out["age_s"] = age
    return out


def encode(values):
    """Bytes of layout version 1 from :func:`quantize`'s output (or any dict of the same names)."""
    flags = 0
    body = b""
    if values.get("distance_m") is not None:
        flags |= FLAG_DISTANCE
        body += struct.pack(">H", _mm(values["distance_m"]))
    if values.get("water_level_m") is not None:
        flags |= FLAG_WATER_LEVEL
        body += struct.pack(">h", _mm(values["water_level_m"]))
    if values.get("rain_tips") is not None:
        tips = int(values["rain_tips"])
        flags |= FLAG_RAIN_TIPS
        body += struct.pack(">BH", (tips >> 16) & 0xFF, tips & 0xFFFF)
    if values.get("battery_v") is not None:
        flags |= FLAG_BATTERY
        body += struct.pack(">H", int(round(values["battery_v"] * 1000.0)))
    if values.get("age_s"):
        flags |= FLAG_AGE
        body += struct.pack(">H", int(values["age_s"]))
    return struct.pack(">BBH", LAYOUT_VERSION, flags, int(values.get("boot", 0)) % (MAX_U16 + 1)) + body
