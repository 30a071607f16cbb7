"""Sensor physics, pure: what a ping, a bucket, a battery and a radio report.

Each function takes the truth and a ``numpy.random.Generator`` and returns
what the hardware would report; no clocks, no state beyond arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BANGKOK_UTC_OFFSET_S = 7 * 3600.0


@dataclass(frozen=True)
class RangeSensorModel:
    """An ultrasonic or radar distance sensor looking down at the water.

    noise_m : standard deviation of one ping (plus surface waves).
    blind_zone_m : closer than this the sensor gets no usable echo.
    max_range_m : farther than this no echo comes back.
    echo_probability : chance a ping returns a spurious short echo
        (debris, insects, the bank, condensation on the transducer).
    temperature_coefficient : fraction of distance lost per kelvin that the
        enclosure temperature (used for speed-of-sound compensation) runs
        hotter than the air the sound crosses; 0 for radar.
    """

    noise_m: float
    blind_zone_m: float
    max_range_m: float
    echo_probability: float
    temperature_coefficient: float

    @classmethod
    def for_sensor(cls, sensor: str) -> RangeSensorModel:
        if sensor == "radar":
            # 80 GHz level radar (e.g. VEGAPULS C 21 class): mm noise, short blind zone.
            return cls(noise_m=0.003, blind_zone_m=0.05, max_range_m=15.0,
                       echo_probability=0.002, temperature_coefficient=0.0)
        # Waterproof ultrasonic (JSN-SR04T / MaxBotix MB7389 class): cm noise,
        # 25 cm blind zone, speed of sound ~0.17 %/K: c = 331.3 sqrt(1 + T/273.15).
        return cls(noise_m=0.008, blind_zone_m=0.25, max_range_m=7.5,
                   echo_probability=0.03, temperature_coefficient=0.0017)


def solar_fraction(epoch_s: float, rain_mm_per_h: float = 0.0) -> float:
    """Sunlight on the panel, 0-1: a half-sine from 06:00 to 18:00, dimmed by rain clouds."""
    hour = ((epoch_s + BANGKOK_UTC_OFFSET_S) % 86400.0) / 3600.0
    sun = max(0.0, math.sin(math.pi * (hour - 6.0) / 12.0)) if 6.0 <= hour <= 18.0 else 0.0
    return sun / (1.0 + 0.3 * rain_mm_per_h)


def measure_distance_m(
    true_distance_m: float,
    model: RangeSensorModel,
    enclosure_heating_k: float,
    rng: np.random.Generator,
    burst: int = 5,
) -> float | None:
    """Median of a burst of pings, as the firmware computes it.

    Parameters
    ----------
    true_distance_m : float
        From the sensor face down to the water (or the dry ground).
    model : RangeSensorModel
    enclosure_heating_k : float
        How much hotter the enclosure's thermometer is than the air below
        (sun on the box); the firmware's speed-of-sound correction uses it,
        so the distance reads short by ``temperature_coefficient`` per K.
    rng : numpy.random.Generator
    burst : int
        Pings per reading; the median rejects occasional echoes.

    Returns
    -------
    float or None
        Distance in metres (mm resolution), or None when no ping came back
        (water inside the blind zone or beyond range).
    """
    if true_distance_m < model.blind_zone_m or true_distance_m > model.max_range_m:
        return None
    scale = 1.0 - model.temperature_coefficient * enclosure_heating_k
    pings = (true_distance_m * scale + rng.normal(0.0, model.noise_m, burst)).tolist()
    for k, u in enumerate(rng.random(burst).tolist()):
        if u < model.echo_probability:
            # A spurious echo from something between the sensor and the water.
            pings[k] = model.blind_zone_m + (true_distance_m - model.blind_zone_m) * float(rng.random())
    pings.sort()  # a median by hand: numpy's costs more than the rest of a wake
    mid = burst // 2
    median = pings[mid] if burst % 2 else (pings[mid - 1] + pings[mid]) / 2
    return round(median, 3)


def tips_since(cumulative_rain_mm: float, cumulative_at_boot_mm: float, mm_per_tip: float) -> int:
    """Tipping-bucket counter since boot: whole tips between the two cumulative totals.

    The bucket's partial fill carries across a reboot (it is water, not RAM),
    so counting tips of the cumulative total loses and creates nothing.
    """
    return int(math.floor(cumulative_rain_mm / mm_per_tip + 1e-9)) - int(
        math.floor(cumulative_at_boot_mm / mm_per_tip + 1e-9)
    )


@dataclass
class Battery:
    """A LiFePO4 cell on a small solar panel.

    state_of_charge : 0-1.
    capacity_wh, panel_w, load_w : cell energy, panel peak power, average draw.
    """

    state_of_charge: float = 0.8
    capacity_wh: float = 20.0
    panel_w: float = 2.0
    load_w: float = 0.12

    def advance(self, dt_s: float, sun_fraction: float) -> None:
        """Charge from the panel and drain the load over ``dt_s`` seconds (midpoint sun)."""
        energy_wh = (self.panel_w * sun_fraction - self.load_w) * dt_s / 3600.0
        self.state_of_charge = min(1.0, max(0.0, self.state_of_charge + energy_wh / self.capacity_wh))

    def voltage_v(self, rng: np.random.Generator) -> float:
        """Terminal voltage: LiFePO4's flat 3.2-3.35 V plateau, steep at both ends."""
        soc = self.state_of_charge
        v = 3.0 + 0.3 * soc + 0.15 * (soc ** 12) - 0.25 * math.exp(-soc * 25)
        return round(v + float(rng.normal(0.0, 0.005)), 3)


def rssi_dbm(base_dbm: float, rain_mm_per_h: float, rng: np.random.Generator) -> int:
    """Received signal strength: the site's base, fading, a little rain and wet-foliage loss."""
    return int(round(base_dbm - 0.08 * rain_mm_per_h + float(rng.normal(0.0, 2.0))))
