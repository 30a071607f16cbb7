"""Readings from the past, to seed the store before a demo starts.

The forecaster needs days of tide history at demo start; real nodes would
have sent it. These are the contract's converted fields (what ingestion
stores), taken from the ground truth on a regular grid.
"""

from __future__ import annotations

import numpy as np

from floodwatch.firmware_sim._scenario import Scenario
from floodwatch.vocabulary import Reading, StationId


def history(
    scenario: Scenario,
    settings,
    start_s: float,
    end_s: float,
    step_s: float = 600.0,
    *,
    origin_s: float | None = None,
    noise_m: float = 0.0,
    seed: int = 0,
    stations=None,
) -> list[Reading]:
    """Converted readings per station on a regular grid, oldest first.

    Parameters
    ----------
    scenario : Scenario
    settings : floodwatch.settings.Settings
        Its stations (level and rain) get readings.
    start_s, end_s : float
        UTC epoch seconds; readings at ``start_s, start_s + step_s, ...`` up
        to and excluding ``end_s``.
    step_s : float
        Seconds between readings (600 matches the nodes' publish interval).
    origin_s : float, optional
        Epoch second of scenario time 0. Default ``end_s``: the history
        leads up to the scenario's start, as a demo needs.
    noise_m : float
        Standard deviation of Gaussian noise added to levels (0: truth).
    seed : int
        Seed for that noise.
    stations : list of StationConfig, optional
        Default: every station of ``settings`` with a node of ours (external ones arrive by feeds).

    Returns
    -------
    list of floodwatch.vocabulary.Reading
        What ingestion would have stored: ``station_id``, ``ts_s`` and
        ``water_level_m`` for level stations, ``rain_mm`` (rain since the
        previous reading) for rain gauges; sorted by time then station, ready
        for ``store.write_batch``.
    """
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    if end_s <= start_s:
        raise ValueError(f"end_s ({end_s}) must be after start_s ({start_s})")
    origin = end_s if origin_s is None else origin_s
    chosen = list(settings.own_stations if stations is None else stations)
    ts = np.arange(start_s, end_s, step_s)
    t_rel = ts - origin
    rows: list[tuple[float, str, dict]] = []
    level_stations = [s for s in chosen if s.kind == "water_level"]
    rain_stations = [s for s in chosen if s.kind == "rain"]
    if level_stations:
        level = scenario.truth_level_m([s.id for s in level_stations], t_rel)
        if noise_m > 0:
            level = level + np.random.default_rng(seed).normal(0.0, noise_m, level.shape)
        for row, station in zip(level, level_stations):
            row = np.clip(row, station.min_level_m, station.max_level_m)
            for ts_s, value in zip(ts, row):
                rows.append((ts_s, station.id, {"water_level_m": round(float(value), 4)}))
    if rain_stations:
        ids = np.array([s.id for s in rain_stations], dtype=object)[:, None]
        cum = scenario.rain_cumulative_mm(ids, np.concatenate([[t_rel[0] - step_s], t_rel])[None, :])
        rain = np.diff(cum, axis=1)
        for row, station in zip(rain, rain_stations):
            for ts_s, value in zip(ts, row):
                rows.append((ts_s, station.id, {"rain_mm": round(float(value), 3)}))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [Reading(station_id=StationId(sid), ts_s=float(ts_s), **fields) for ts_s, sid, fields in rows]
