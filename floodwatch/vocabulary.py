"""Shared vocabulary: what a station, a reading and an alert level are.

Plain frozen dataclasses and enums; pydantic is used only at the edges
(payloads, settings), never here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NewType

StationId = NewType("StationId", str)
ZoneId = NewType("ZoneId", str)


class QcFlag(enum.IntEnum):
    """QARTOD flag values (IOOS): what a quality test concluded about a reading."""

    PASS = 1
    NOT_EVALUATED = 2
    SUSPECT = 3
    FAIL = 4
    MISSING = 9


class AlertLevel(enum.IntEnum):
    """Resident-facing flood alert levels, ordered by danger."""

    NORMAL = 0
    WATCH = 1
    WARNING = 2
    EVACUATE = 3

    @property
    def name_th(self) -> str:
        return _LEVEL_TH[self]

    @property
    def name_en(self) -> str:
        return _LEVEL_EN[self]


_LEVEL_TH = {
    AlertLevel.NORMAL: "ปกติ",
    AlertLevel.WATCH: "เฝ้าระวัง",
    AlertLevel.WARNING: "เตือนภัย",
    AlertLevel.EVACUATE: "อพยพ",
}
_LEVEL_EN = {
    AlertLevel.NORMAL: "normal",
    AlertLevel.WATCH: "watch",
    AlertLevel.WARNING: "warning",
    AlertLevel.EVACUATE: "evacuate",
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor reading after validation and conversion, as stored.

    ``ts_s`` is UTC epoch seconds. Levels are metres above mean sea level
    (the station's datum), rain is millimetres fallen since the node's
    previous reading, discharge (a dam's release) cubic metres per second.
    Fields a node or feed did not send are ``None``.
    """

    station_id: StationId
    ts_s: float
    seq: int | None = None
    boot: int | None = None
    water_level_m: float | None = None
    rain_mm: float | None = None
    battery_v: float | None = None
    rssi_dbm: float | None = None
    qc_flag: QcFlag = QcFlag.NOT_EVALUATED
    qc_tests: str = ""
    received_s: float | None = None
    # Last, so positional construction of the fields above keeps working.
    discharge_m3_s: float | None = None
