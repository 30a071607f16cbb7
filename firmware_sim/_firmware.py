"""The node firmware's logic, without a radio: wake, sample, decide, buffer.

:class:`NodeCore` is what runs on the ESP32 between deep sleeps, as plain
state and methods: given the scenario time of a wake and the truth at that
moment it returns the reading the node would publish (a contract payload
dict) and when it wakes next. The shell (``_fleet``) does the MQTT.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from floodwatch.firmware_sim._scenario import Fault
from floodwatch.firmware_sim._sensors import (
    Battery,
    RangeSensorModel,
    measure_distance_m,
    rssi_dbm,
    solar_fraction,
    tips_since,
)
from floodwatch.timefmt import BANGKOK

if TYPE_CHECKING:
    from floodwatch.settings import StationConfig


@dataclass(frozen=True)
class FirmwareConfig:
    """Firmware settings a field engineer would flash.

    publish_interval_s : normal time between readings (default: the
        station's ``publish_interval_s``).
    fast_interval_s : time between readings while the level rises faster
        than ``fast_rise_m_per_h``; the node wakes that often anyway to check.
    burst : pings per reading (median).
    buffer_capacity : readings kept while the broker is unreachable; the
        oldest are dropped (and counted) when full.
    batch_max : readings per batched flush message.
    sync_interval_s : how often the node syncs its clock (NTP over the modem).
    publish_raw : send ``distance_m`` / ``rain_tips`` as real nodes do; False
        sends converted ``water_level_m`` / ``rain_mm``.
    ts_format : "iso" (ISO-8601 with +07:00) or "epoch" (seconds).
    """

    publish_interval_s: float | None = None
    fast_interval_s: float = 120.0
    fast_rise_m_per_h: float = 0.35  # above the spring tide's own rise (~0.3 m/h at the river)
    burst: int = 5
    buffer_capacity: int = 2000
    batch_max: int = 50
    sync_interval_s: float = 6 * 3600.0
    publish_raw: bool = True
    ts_format: str = "iso"

    def __post_init__(self) -> None:
        if self.ts_format not in ("iso", "epoch"):
            raise ValueError(f"ts_format must be 'iso' or 'epoch', got {self.ts_format!r}")
        if self.buffer_capacity < 1 or self.batch_max < 1:
            raise ValueError("buffer_capacity and batch_max must be at least 1")


@dataclass
class WakeOutcome:
    """What one wake produced, for the shell to act on."""

    reading: dict | None  # the contract payload, or None (dropout, nothing measured)
    next_wake_s: float  # scenario seconds
    offline: bool = False  # the node cannot reach the broker now: buffer
    duplicate: bool = False  # send this reading twice (a retry after a lost PUBACK)
    rebooted: bool = False


@dataclass
class NodeCore:
    """One node's firmware state. See the module docstring.

    Parameters
    ----------
    station : floodwatch.settings.StationConfig
    origin_s : float
        Epoch second of scenario time 0 (the node's clock and the sun need
        absolute time).
    faults : tuple of Fault
        This node's faults from the scenario.
    config : FirmwareConfig
    seed : int
    """

    station: StationConfig
    origin_s: float
    faults: tuple[Fault, ...] = ()
    config: FirmwareConfig = field(default_factory=FirmwareConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        s = self.station
        self.is_level = s.kind == "water_level"
        self.interval_s = float(self.config.publish_interval_s or s.publish_interval_s)
        self.range_model = RangeSensorModel.for_sensor(s.sensor) if s.sensor in ("ultrasonic", "radar") else None
        self.seq = 0
        self.boot = 1
        self.rain_at_boot_mm: float | None = None
        self.tips_at_last_reading = 0
        self.last_level_m: float | None = None
        self.last_wake_s: float | None = None
        self.last_sync_s: float | None = None
        self.clock_drift_ppm = float(self.rng.uniform(-40.0, 40.0))  # a cheap RTC crystal
        self.sync_error_s = 0.0
        self.base_rssi_dbm = float(self.rng.uniform(-95.0, -65.0))
        self.battery = Battery(state_of_charge=float(self.rng.uniform(0.55, 0.95)))
        self.enclosure_bias_k = float(self.rng.uniform(0.5, 2.0))
        self.buffer: deque[dict] = deque()
        self.dropped = 0
        self.readings_made = 0
        self._spent: set[int] = set()  # one-shot faults (spike, reboot) already applied
        self._stuck_value: dict[int, dict] = {}

    # ---------------------------------------------------------------- timing
    def first_wake_s(self, t0_s: float) -> float:
        """The first wake at or after scenario second ``t0_s``.

        Nodes powered up at random moments, so a fleet does not publish in
        lock step: each wakes on its own lattice ``phase + k * interval``
        from the origin, whatever the moment the simulation starts, which
        keeps a seeded run deterministic.
        """
        phase_s = float(self.rng.uniform(0.0, self.interval_s))
        skipped = max(0, math.ceil((t0_s - phase_s) / self.interval_s))
        return phase_s + skipped * self.interval_s

    def node_clock_s(self, t_s: float) -> float:
        """What the node's RTC says at scenario time ``t_s`` (epoch seconds)."""
        if self.last_sync_s is None or t_s - self.last_sync_s >= self.config.sync_interval_s:
            self.last_sync_s = t_s
            self.sync_error_s = float(self.rng.normal(0.0, 0.05))  # NTP over a cellular modem
        offset = self.sync_error_s + self.clock_drift_ppm * 1e-6 * (t_s - self.last_sync_s)
        for f in self.faults:
            if f.kind == "wrong_clock" and f.active(t_s):
                offset += f.offset_s
        return self.origin_s + t_s + offset

    # ------------------------------------------------------------------ wake
    def wake(self, t_s: float, level_true_m: float, rain_cumulative_mm: float,
             rain_mm_per_h: float = 0.0) -> WakeOutcome:
        """Run one wake at scenario time ``t_s`` with the truth at that moment.

        Parameters
        ----------
        t_s : float, scenario seconds
        level_true_m : float, true water level m MSL (ignored by rain gauges)
        rain_cumulative_mm : float, the scenario's cumulative rain at this gauge
        rain_mm_per_h : float, rain intensity (dims the sun, fades the radio)
        """
        epoch_s = self.origin_s + t_s
        dt_s = 0.0 if self.last_wake_s is None else t_s - self.last_wake_s
        self.last_wake_s = t_s
        self.battery.advance(dt_s, solar_fraction(epoch_s - dt_s / 2, rain_mm_per_h))
        if self.rain_at_boot_mm is None:
            self.rain_at_boot_mm = rain_cumulative_mm

        active = [(i, f) for i, f in enumerate(self.faults) if f.active(t_s) or
                  (f.kind in ("spike", "reboot") and f.start_s <= t_s and i not in self._spent)]
        if any(f.kind == "dropout" for _, f in active):
            # Power or sensor failure: the node does not wake at all.
            return WakeOutcome(reading=None, next_wake_s=t_s + self.interval_s)

        reading: dict = {"ts": self._format_ts(self.node_clock_s(t_s)), "seq": self.seq, "boot": self.boot}
        next_interval_s = self.interval_s
        if self.is_level:
            level_m = self._measure_level(t_s, level_true_m, epoch_s, active, reading)
            if level_m is not None and self.last_level_m is not None and dt_s > 0:
                rise_m_per_h = (level_m - self.last_level_m) / (dt_s / 3600.0)
                if rise_m_per_h > self.config.fast_rise_m_per_h:
                    next_interval_s = min(self.interval_s, self.config.fast_interval_s)
            if level_m is not None:
                self.last_level_m = level_m
        else:
            tips = tips_since(rain_cumulative_mm, self.rain_at_boot_mm, self.station.mm_per_tip)
            if self.config.publish_raw:
                reading["rain_tips"] = tips
            else:
                reading["rain_mm"] = round((tips - self.tips_at_last_reading) * self.station.mm_per_tip, 3)
            self.tips_at_last_reading = tips
        reading["battery_v"] = self.battery.voltage_v(self.rng)
        reading["rssi_dbm"] = rssi_dbm(self.base_rssi_dbm, rain_mm_per_h, self.rng)
        self.seq += 1
        self.readings_made += 1

        outcome = WakeOutcome(reading=reading, next_wake_s=t_s + next_interval_s)
        for i, f in active:
            if f.kind == "offline":
                outcome.offline = True
            elif f.kind == "duplicates":
                outcome.duplicate = True
            elif f.kind == "reboot":
                # A brown-out while the radio transmits: the reading went out,
                # then RAM is lost. The bucket's water is not.
                self._spent.add(i)
                self.boot += 1
                self.seq = 0
                self.rain_at_boot_mm = rain_cumulative_mm
                self.tips_at_last_reading = 0
                self.last_sync_s = None
                outcome.rebooted = True
        return outcome

    def _measure_level(self, t_s: float, level_true_m: float, epoch_s: float,
                       active: list[tuple[int, Fault]], reading: dict) -> float | None:
        s = self.station
        if self.range_model is None:  # pressure transducer: reports the level directly
            level_m = round(level_true_m + float(self.rng.normal(0.0, 0.005)), 3)
            level_m = self._apply_level_faults(t_s, level_m, active)
            reading["water_level_m"] = level_m
            return level_m
        # The site file refuses an ultrasonic or radar station without its mount height.
        assert s.mount_height_m is not None
        sun = solar_fraction(epoch_s)
        heating_k = self.enclosure_bias_k + 6.0 * sun  # the box sits in the sun
        distance_m = measure_distance_m(s.mount_height_m - level_true_m, self.range_model,
                                        heating_k, self.rng, self.config.burst)
        if distance_m is None:
            return None  # no echo: the reading carries battery and rssi only
        level_m = self._apply_level_faults(t_s, s.mount_height_m - distance_m, active)
        distance_m = round(s.mount_height_m - level_m, 3)
        if self.config.publish_raw:
            reading["distance_m"] = distance_m
        else:
            reading["water_level_m"] = round(level_m, 3)
        return level_m

    def _apply_level_faults(self, t_s: float, level_m: float, active: list[tuple[int, Fault]]) -> float:
        for i, f in active:
            if f.kind == "spike" and i not in self._spent:
                self._spent.add(i)
                level_m += f.magnitude_m
            elif f.kind == "stuck":
                # The sensor repeats the value it had when it froze.
                level_m = self._stuck_value.setdefault(i, {"level_m": level_m})["level_m"]
            elif f.kind == "drift":
                level_m += f.rate_m_per_day * (t_s - f.start_s) / 86400.0
        return level_m

    def _format_ts(self, epoch_s: float) -> str | float:
        if self.config.ts_format == "epoch":
            return round(epoch_s, 3)
        return datetime.fromtimestamp(epoch_s, tz=BANGKOK).isoformat(timespec="milliseconds")

    # ------------------------------------------------------ store and forward
    def keep(self, reading: dict) -> None:
        """Put a reading in the ring buffer; when full the oldest is dropped and counted."""
        if len(self.buffer) >= self.config.buffer_capacity:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(reading)

    def next_batch(self) -> list[dict]:
        """The oldest buffered readings, up to ``batch_max``, removed from the buffer."""
        n = min(self.config.batch_max, len(self.buffer))
        return [self.buffer.popleft() for _ in range(n)]

    def return_batch(self, batch: list[dict]) -> None:
        """A flush failed: put the batch back at the front, order kept."""
        self.buffer.extendleft(reversed(batch))


def contract_topic(prefix: str, station_id: str, kind: str) -> str:
    """``floodwatch/{station_id}/telemetry`` or ``.../status``."""
    return f"{prefix}/{station_id}/{kind}"

