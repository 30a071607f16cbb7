"""Scenarios as data, and their ground truth as pure vectorised functions.

A scenario file (``firmware_sim/scenarios/*.toml``) describes what the water
and the rain truly did, in scenario time: seconds since an origin chosen at
run time (``start_s``). Negative times are allowed (history before the demo).

The true water level at a level station is

    level_m(t) = max(floor_m,
                     mean_m + season_m(t) * river_gain
                     + tide_gain * tide_m(t - tide_lag_s)
                     + sum of the station's flood hydrographs(t))

where ``tide_m`` is a sum of harmonic constituents (mixed tide of the upper
Gulf of Thailand: K1/O1 diurnal, M2/S2 semi-diurnal, their beat gives the
spring-neap and tropic cycles). ``floor_m`` is the ground a street or road
sensor sees when it is dry. Rain at a gauge is a sum of triangular
hyetographs, so its cumulative total is exact and piecewise quadratic.

Faults (spike, stuck, drift, dropout, offline, duplicates, reboot, wrong
clock) are data here too; the node applies them (see ``_firmware``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from floodwatch.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

# Angular speeds of tidal constituents, degrees per hour (Schureman / IHO).
CONSTITUENT_SPEED_DEG_PER_H: dict[str, float] = {
    "M2": 28.9841042,
    "S2": 30.0000000,
    "N2": 28.4397295,
    "K2": 30.0821373,
    "K1": 15.0410686,
    "O1": 13.9430356,
    "P1": 14.9589314,
    "Q1": 13.3986609,
    "M4": 57.9682084,
    "MS4": 58.9841042,
    "MSF": 1.0158958,
}

FAULT_KINDS = ("spike", "stuck", "drift", "dropout", "offline", "duplicates", "reboot", "wrong_clock")
LEVEL_NAMES = ("watch", "warning", "evacuate")


class Crossing(NamedTuple):
    """A warning level first reached by the true water level."""

    station_id: str
    level_name: str  # "watch", "warning" or "evacuate"
    ts_s: float  # scenario seconds after the origin, plus the start_s given to crossings()


@dataclass(frozen=True)
class Constituent:
    name: str
    amplitude_m: float
    phase_deg: float  # phase lag at the scenario origin (t = 0)
    speed_deg_per_h: float


@dataclass(frozen=True)
class StationTruth:
    """How one level station follows the river and the tide."""

    mean_m: float = 0.7
    tide_gain: float = 1.0
    tide_lag_s: float = 0.0
    river_gain: float = 1.0
    floor_m: float = -math.inf


@dataclass(frozen=True)
class Hydrograph:
    """A flood wave at one station: smooth rise, plateau, exponential recession.

    ``peak_m`` is added to the level at the end of the rise; the recession
    decays with e-folding time ``recession_s``.
    """

    station_id: str
    start_s: float
    rise_s: float
    peak_m: float
    hold_s: float = 0.0
    recession_s: float = 12 * 3600.0


@dataclass(frozen=True)
class RainEvent:
    """A triangular hyetograph at one gauge: ``total_mm`` over ``duration_s``."""

    station_id: str
    start_s: float
    duration_s: float
    total_mm: float
    peak_fraction: float = 0.35  # where in the storm the intensity peaks


@dataclass(frozen=True)
class Fault:
    """Something that goes wrong with one node, in a time window of scenario seconds.

    kind: spike (one reading at ``start_s`` off by ``magnitude_m``), stuck
    (the sensor repeats the value it had at ``start_s``), drift (an offset
    growing at ``rate_m_per_day``), dropout (the node is silent, nothing is
    buffered), offline (the node cannot reach the broker and buffers),
    duplicates (every message sent twice), reboot (at ``start_s``: boot
    counter +1, seq and rain counter restart at 0), wrong_clock (time stamps
    off by ``offset_s`` until the window ends and the node syncs).
    """

    station_id: str
    kind: str
    start_s: float
    end_s: float
    magnitude_m: float = 0.0
    rate_m_per_day: float = 0.0
    offset_s: float = 0.0

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


@dataclass(frozen=True)
class Scenario:
    """What the water and the rain truly did; see the module docstring."""

    name: str
    description: str
    duration_s: float
    constituents: tuple[Constituent, ...]
    season_amplitude_m: float
    season_peak_day: float  # day of year of the highest seasonal stage
    origin_day_of_year: float  # day of year at the scenario origin
    stations: dict[str, StationTruth]
    default_station: StationTruth
    floods: tuple[Hydrograph, ...] = ()
    rain: tuple[RainEvent, ...] = ()
    faults: tuple[Fault, ...] = ()
    source: Path | None = None
    expect: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------ truth: level
    def tide_m(self, t_s: np.ndarray) -> np.ndarray:
        """Astronomical tide at the reference station (gain 1, lag 0).

        Parameters
        ----------
        t_s : array_like, any shape
            Scenario seconds after the origin.

        Returns
        -------
        ndarray, same shape as ``t_s``
            Tide in metres about the mean level.
        """
        t_h = np.asarray(t_s, dtype=float) / 3600.0
        tide = np.zeros_like(t_h)
        for c in self.constituents:
            tide += c.amplitude_m * np.cos(np.deg2rad(c.speed_deg_per_h * t_h - c.phase_deg))
        return tide

    def season_m(self, t_s: np.ndarray) -> np.ndarray:
        """Seasonal river stage anomaly in metres (annual cosine, peak on ``season_peak_day``)."""
        day = self.origin_day_of_year + np.asarray(t_s, dtype=float) / 86400.0
        return self.season_amplitude_m * np.cos(2 * np.pi * (day - self.season_peak_day) / 365.25)

    def truth_level_m(self, station_ids: Sequence[str], t_s: np.ndarray) -> np.ndarray:
        """True water level before sensor noise and faults.

        Parameters
        ----------
        station_ids : sequence of str, length S
            Level stations; ids the scenario does not name get its default
            station (mean level, full tide).
        t_s : array_like, shape (T,)
            Scenario seconds after the origin.

        Returns
        -------
        ndarray, shape (S, T)
            Water level in metres above mean sea level.
        """
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        if t.ndim != 1:
            raise ValueError(f"t_s must be one-dimensional (T,), got shape {t.shape}")
        ids = list(station_ids)
        return self.level_at(np.array(ids, dtype=object)[:, None], t[None, :])

    def level_at(self, station_ids: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """True level for broadcastable arrays of station ids and times (one call per fleet tick).

        Parameters
        ----------
        station_ids : ndarray of str (object), broadcastable with ``t_s``
        t_s : ndarray of float, scenario seconds

        Returns
        -------
        ndarray, the broadcast shape, metres above mean sea level.
        """
        ids = np.asarray(station_ids, dtype=object)
        t = np.asarray(t_s, dtype=float)
        shape = np.broadcast_shapes(ids.shape, t.shape)
        ids_b = np.broadcast_to(ids, shape)
        t_b = np.broadcast_to(t, shape)
        unique_ids = list(dict.fromkeys(ids_b.ravel().tolist()))
        truths = [self.stations.get(sid, self.default_station) for sid in unique_ids]
        pick = {sid: i for i, sid in enumerate(unique_ids)}
        idx = np.vectorize(pick.__getitem__, otypes=[int])(ids_b) if ids_b.size else np.zeros(shape, int)

        def column(attr: str) -> np.ndarray:
            return np.array([getattr(s, attr) for s in truths], dtype=float)[idx]

        tide = self.tide_m(t_b - column("tide_lag_s"))
        level = column("mean_m") + column("river_gain") * self.season_m(t_b) + column("tide_gain") * tide
        for event in self.floods:
            mask = ids_b == event.station_id
            if mask.any():
                level = level + np.where(mask, _hydrograph_m(event, t_b), 0.0)
        return np.maximum(level, column("floor_m"))

    # ------------------------------------------------------------- truth: rain
    def rain_cumulative_mm(self, station_ids: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """Rain fallen since the beginning of time (only the scenario's events), mm.

        Broadcastable arrays of station ids and scenario seconds in, the
        broadcast shape out. Differences give rain between two times.
        """
        ids = np.asarray(station_ids, dtype=object)
        t = np.asarray(t_s, dtype=float)
        shape = np.broadcast_shapes(ids.shape, t.shape)
        total = np.zeros(shape)
        for event in self.rain:
            mask = np.broadcast_to(ids == event.station_id, shape)
            if mask.any():
                total = total + np.where(mask, _rain_cumulative_mm(event, np.broadcast_to(t, shape)), 0.0)
        return total

    def rain_rate_at(self, station_ids: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """Rain intensity in mm/h for broadcastable arrays of station ids and scenario seconds."""
        ids = np.asarray(station_ids, dtype=object)
        t = np.asarray(t_s, dtype=float)
        shape = np.broadcast_shapes(ids.shape, t.shape)
        rate = np.zeros(shape)
        for event in self.rain:
            mask = np.broadcast_to(ids == event.station_id, shape)
            if mask.any():
                rate = rate + np.where(mask, _rain_rate_mm_per_h(event, np.broadcast_to(t, shape)), 0.0)
        return rate

    def truth_rain_mm_per_h(self, station_ids: Sequence[str], t_s: np.ndarray) -> np.ndarray:
        """True rain intensity.

        Parameters
        ----------
        station_ids : sequence of str, length S
        t_s : array_like, shape (T,), scenario seconds

        Returns
        -------
        ndarray, shape (S, T), millimetres per hour.
        """
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        if t.ndim != 1:
            raise ValueError(f"t_s must be one-dimensional (T,), got shape {t.shape}")
        ids = np.array(list(station_ids), dtype=object)[:, None]
        return self.rain_rate_at(ids, t[None, :])

    def truth_rain_mm(self, station_ids: Sequence[str], t0_s: float, t1_s: float) -> np.ndarray:
        """Rain fallen between two scenario times at each station, shape (S,), mm."""
        ids = np.array(list(station_ids), dtype=object)
        return self.rain_cumulative_mm(ids, np.float64(t1_s)) - self.rain_cumulative_mm(ids, np.float64(t0_s))

    # -------------------------------------------------------------- crossings
    def crossings(self, settings, start_s: float = 0.0, step_s: float = 60.0,
                  until_s: float | None = None) -> list[Crossing]:
        """When the true level first reaches each warning level, per level station.

        Parameters
        ----------
        settings : floodwatch.settings.Settings
            Gives the level stations and their watch/warning/evacuate levels.
        start_s : float
            Added to every time (0 gives scenario seconds; pass the run's
            origin to get epoch seconds).
        step_s : float
            Grid spacing; the crossing time is interpolated linearly between
            grid points, so it is exact to well under a second for tides.
        until_s : float, optional
            Last scenario second to look at (default: the scenario's duration).

        Returns
        -------
        list of Crossing, sorted by time. A level already exceeded at t = 0
        is reported at t = 0. Levels never reached are absent.
        """
        stations = [s for s in settings.own_stations if s.kind == "water_level" and s.levels is not None]
        end_s = self.duration_s if until_s is None else until_s
        t = np.arange(0.0, end_s + step_s, step_s)
        if not stations or t.size == 0:
            return []
        level = self.truth_level_m([s.id for s in stations], t)
        found: list[Crossing] = []
        for row, station in zip(level, stations):
            for name, threshold in zip(LEVEL_NAMES, station.levels.as_tuple()):
                above = np.flatnonzero(row >= threshold)
                if above.size == 0:
                    continue
                i = int(above[0])
                if i == 0:
                    ts = 0.0
                else:
                    frac = (threshold - row[i - 1]) / (row[i] - row[i - 1])
                    ts = float(t[i - 1] + frac * (t[i] - t[i - 1]))
                found.append(Crossing(station.id, name, ts + start_s))
        return sorted(found, key=lambda c: (c.ts_s, c.station_id, LEVEL_NAMES.index(c.level_name)))

    def faults_for(self, station_id: str) -> tuple[Fault, ...]:
        return tuple(f for f in self.faults if f.station_id == station_id)


# ------------------------------------------------------------------ shapes
def _hydrograph_m(event: Hydrograph, t_s: np.ndarray) -> np.ndarray:
    """Level added by one flood wave at scenario times ``t_s`` (metres)."""
    dt = t_s - event.start_s
    rise = 0.5 * (1 - np.cos(np.pi * np.clip(dt / max(event.rise_s, 1.0), 0.0, 1.0)))
    after_peak = dt - event.rise_s - event.hold_s
    recession = np.exp(-np.clip(after_peak, 0.0, None) / max(event.recession_s, 1.0))
    return event.peak_m * np.where(dt <= 0, 0.0, rise * recession)


def _rain_rate_mm_per_h(event: RainEvent, t_s: np.ndarray) -> np.ndarray:
    s, d = event.start_s, event.duration_s
    peak_t = s + event.peak_fraction * d
    peak_rate_mm_per_s = 2.0 * event.total_mm / d
    up = (t_s - s) / max(peak_t - s, 1e-9)
    down = (s + d - t_s) / max(s + d - peak_t, 1e-9)
    shape = np.where(t_s < peak_t, up, down)
    inside = (t_s >= s) & (t_s < s + d)
    return np.where(inside, peak_rate_mm_per_s * np.clip(shape, 0.0, 1.0), 0.0) * 3600.0


def _rain_cumulative_mm(event: RainEvent, t_s: np.ndarray) -> np.ndarray:
    s, d, total = event.start_s, event.duration_s, event.total_mm
    peak_t = s + event.peak_fraction * d
    end = s + d
    rising = total * (t_s - s) ** 2 / max((peak_t - s) * d, 1e-9)
    falling = total - total * (end - t_s) ** 2 / max((end - peak_t) * d, 1e-9)
    return np.where(t_s <= s, 0.0, np.where(t_s < peak_t, rising, np.where(t_s < end, falling, total)))


# ------------------------------------------------------------------ loading
def list_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``firmware_sim/scenarios/``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by name (``monsoon_flood``) or from a TOML file path.

    Raises
    ------
    ConfigError
        The scenario does not exist or breaks the format, with the fix.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ConfigError(
            f"scenario {str(name_or_path)!r} not found; pick one of {', '.join(list_scenarios())} "
            f"or give the path of a TOML file like {SCENARIO_DIR / 'monsoon_flood.toml'}"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario file {path} is not valid TOML: {exc}") from exc
    try:
        return _parse(data, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"scenario file {path} is malformed: {exc}") from exc


def _hours(table: dict, key: str, default: float | None = None) -> float:
    """Scenario files give durations in hours (``*_h``) for readability; we compute in seconds."""
    if key in table:
        return float(table[key]) * 3600.0
    if default is None:
        raise KeyError(f"missing {key!r} in {table}")
    return default


def _parse(data: dict, path: Path) -> Scenario:
    data = _resolve_base(data)
    meta = data.get("scenario", {})
    name = meta.get("name", path.stem)

    tide = data.get("tide", {})
    constituents = []
    for cname, spec in tide.get("constituents", {}).items():
        if cname not in CONSTITUENT_SPEED_DEG_PER_H:
            raise ValueError(
                f"unknown tidal constituent {cname!r}; known: {', '.join(CONSTITUENT_SPEED_DEG_PER_H)}"
            )
        constituents.append(
            Constituent(cname, float(spec["amplitude_m"]), float(spec.get("phase_deg", 0.0)),
                        CONSTITUENT_SPEED_DEG_PER_H[cname])
        )
    river = data.get("river", {})
    default_table = data.get("stations", {}).get("default", {})
    default = _station_truth(default_table, StationTruth())
    stations = {
        sid: _station_truth(spec, default)
        for sid, spec in data.get("stations", {}).items()
        if sid != "default"
    }
    floods = tuple(
        Hydrograph(
            station_id=f["station"],
            start_s=_hours(f, "start_h"),
            rise_s=_hours(f, "rise_h"),
            peak_m=float(f["peak_m"]),
            hold_s=_hours(f, "hold_h", 0.0),
            recession_s=_hours(f, "recession_h", 12 * 3600.0),
        )
        for f in data.get("floods", [])
    )
    rain = tuple(
        RainEvent(
            station_id=r["station"],
            start_s=_hours(r, "start_h"),
            duration_s=_hours(r, "duration_h"),
            total_mm=float(r["total_mm"]),
            peak_fraction=float(r.get("peak_fraction", 0.35)),
        )
        for r in data.get("rain", [])
    )
    faults = []
    for f in data.get("faults", []):
        if f["kind"] not in FAULT_KINDS:
            raise ValueError(f"fault kind {f['kind']!r} is unknown; use one of {', '.join(FAULT_KINDS)}")
        start = _hours(f, "start_h")
        faults.append(
            Fault(
                station_id=f["station"],
                kind=f["kind"],
                start_s=start,
                end_s=_hours(f, "end_h", start + 1.0),
                magnitude_m=float(f.get("magnitude_m", 0.0)),
                rate_m_per_day=float(f.get("rate_m_per_day", 0.0)),
                offset_s=float(f.get("offset_s", 0.0)),
            )
        )
    for r in rain:
        if r.duration_s <= 0 or r.total_mm < 0:
            raise ValueError(f"rain event at {r.station_id} needs duration_h > 0 and total_mm >= 0")
    return Scenario(
        name=name,
        description=meta.get("description", ""),
        duration_s=_hours(meta, "duration_h", 3 * 86400.0),
        constituents=tuple(constituents),
        season_amplitude_m=float(river.get("season_amplitude_m", 0.0)),
        season_peak_day=float(river.get("season_peak_day", 288.0)),
        origin_day_of_year=float(meta.get("origin_day_of_year", 300.0)),
        stations=stations,
        default_station=default,
        floods=floods,
        rain=rain,
        faults=tuple(faults),
        source=path,
        expect={k: float(v) for k, v in data.get("expect", {}).items()},
    )


def _station_truth(spec: dict, default: StationTruth) -> StationTruth:
    known = {"mean_m", "tide_gain", "tide_lag_h", "river_gain", "floor_m"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown station keys {sorted(unknown)}; use {sorted(known)}")
    return StationTruth(
        mean_m=float(spec.get("mean_m", default.mean_m)),
        tide_gain=float(spec.get("tide_gain", default.tide_gain)),
        tide_lag_s=_hours(spec, "tide_lag_h", default.tide_lag_s),
        river_gain=float(spec.get("river_gain", default.river_gain)),
        floor_m=float(spec.get("floor_m", default.floor_m)),
    )


def _resolve_base(data: dict) -> dict:
    """A scenario may name a ``base`` scenario: its tables are merged over the base's.

    Tables (tide, river, stations, expect, scenario) are updated key by key;
    lists of events (floods, rain, faults) are appended to the base's.
    """
    base = data.get("base")
    if not base:
        return data
    base_path = SCENARIO_DIR / f"{base}.toml" if not Path(base).suffix else Path(base)
    if not base_path.is_file():
        raise ValueError(f"base scenario {base!r} not found; pick one of {', '.join(list_scenarios())}")
    merged = _resolve_base(tomllib.loads(base_path.read_text(encoding="utf-8")))
    merged = {k: v for k, v in merged.items() if k != "base"}
    for key in ("tide", "river", "scenario", "expect"):
        merged[key] = {**merged.get(key, {}), **data.get(key, {})}
    stations = {k: dict(v) for k, v in merged.get("stations", {}).items()}
    for sid, spec in data.get("stations", {}).items():
        stations[sid] = {**stations.get(sid, {}), **spec}
    merged["stations"] = stations
    for key in ("floods", "rain", "faults"):
        merged[key] = list(merged.get(key, [])) + list(data.get(key, []))
    return merged

