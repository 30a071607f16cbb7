"""Scenarios as data: the ground truth is realistic, deterministic and says when levels are crossed."""

from __future__ import annotations

import numpy as np
import pytest

from floodwatch import firmware_sim
from floodwatch.firmware_sim import load_scenario
from floodwatch.firmware_sim._scenario import CONSTITUENT_SPEED_DEG_PER_H, LEVEL_NAMES
from floodwatch.errors import ConfigError
from floodwatch.vocabulary import Reading

HOUR_S = 3600.0


def test_shipped_scenarios_cover_the_issue():
    names = set(firmware_sim.list_scenarios())
    assert {"tidal_normal", "dry_season", "monsoon_flood", "cloudburst"} <= names
    kinds = {f.kind for n in names for f in load_scenario(n).faults}
    assert kinds == {"spike", "stuck", "drift", "dropout", "offline", "duplicates", "reboot", "wrong_clock"}


def test_truth_is_vectorised_and_pure(settings):
    scenario = load_scenario("monsoon_flood")
    ids = [s.id for s in own_levels(settings)]
    t = np.arange(-86400.0, 3 * 86400.0, 600.0)
    level = scenario.truth_level_m(ids, t)
    assert level.shape == (len(ids), t.size)
    np.testing.assert_array_equal(level, scenario.truth_level_m(ids, t))
    # One station at a time gives the same numbers as all at once.
    np.testing.assert_allclose(scenario.truth_level_m([ids[2]], t)[0], level[2])
    # The pointwise form used by the fleet agrees with the grid form.
    pick = np.array([ids[k % len(ids)] for k in range(t.size)], dtype=object)
    np.testing.assert_allclose(scenario.level_at(pick, t), level[np.arange(t.size) % len(ids), np.arange(t.size)])
    rain = scenario.truth_rain_mm_per_h([s.id for s in settings.rain_stations], t)
    assert rain.shape == (len(settings.rain_stations), t.size) and rain.min() >= 0


def test_tide_recovers_its_constituents_by_least_squares():
    """A harmonic fit of 30 days of the river truth finds the amplitudes the file states."""
    scenario = load_scenario("tidal_normal")
    t_s = np.arange(0.0, 30 * 86400.0, 1800.0)
    level = scenario.truth_level_m(["LP-W01"], t_s)[0]
    names = [c.name for c in scenario.constituents]
    omega = np.deg2rad([CONSTITUENT_SPEED_DEG_PER_H[n] for n in names]) / HOUR_S
    design = np.column_stack([np.ones_like(t_s), t_s / 86400.0]
                             + [f(w * t_s) for w in omega for f in (np.cos, np.sin)])
    coef, *_ = np.linalg.lstsq(design, level, rcond=None)
    fitted = {n: float(np.hypot(coef[2 + 2 * i], coef[3 + 2 * i])) for i, n in enumerate(names)}
    for c in scenario.constituents:
        assert fitted[c.name] == pytest.approx(c.amplitude_m, abs=0.01), c.name
    # Mixed tide with strong diurnal and semi-diurnal parts, as in the upper Gulf.
    form_factor = (fitted["K1"] + fitted["O1"]) / (fitted["M2"] + fitted["S2"])
    assert 0.25 < form_factor < 3.0


def test_tide_has_a_spring_neap_cycle():
    scenario = load_scenario("tidal_normal")
    t_s = np.arange(0.0, 15 * 86400.0, 600.0)
    tide = scenario.tide_m(t_s).reshape(15, -1)
    daily_range_m = tide.max(axis=1) - tide.min(axis=1)
    assert daily_range_m.max() > 1.8 * daily_range_m.min()
    assert 0.8 < daily_range_m.max() < 2.0  # spring range at Lam Phaya, damped from the mouth's 2-3 m


def own_levels(settings):
    """The site's own level gauges: the nodes the scenario simulates (external stations come by feeds)."""
    return [s for s in settings.own_stations if s.kind == "water_level"]


def _dense_first_crossing_s(scenario, station_id: str, threshold_m: float, until_s: float) -> float | None:
    t = np.arange(0.0, until_s, 5.0)
    level = scenario.truth_level_m([station_id], t)[0]
    above = np.flatnonzero(level >= threshold_m)
    return None if above.size == 0 else float(t[above[0]])


def test_monsoon_flood_crossings_match_a_dense_search_and_the_scenario_promises(settings):
    scenario = load_scenario("monsoon_flood")
    crossings = scenario.crossings(settings)
    by_key = {(c.station_id, c.level_name): c.ts_s for c in crossings}
    for station in own_levels(settings):
        for name, threshold in zip(LEVEL_NAMES, station.levels.as_tuple()):
            dense = _dense_first_crossing_s(scenario, station.id, threshold, scenario.duration_s)
            assert dense is not None, f"{station.id} never reaches {name}"
            assert by_key[(station.id, name)] == pytest.approx(dense, abs=10.0)
    expect = scenario.expect
    warnings = [c for c in crossings if c.level_name == "warning"]
    assert warnings[0].ts_s < expect["first_warning_before_h"] * HOUR_S
    # Others come later: the river gauges over a day or two.
    assert any(c.ts_s > 12 * HOUR_S for c in warnings)
    assert max(c.ts_s for c in crossings) < expect["all_levels_crossed_by_h"] * HOUR_S
    ids = [s.id for s in own_levels(settings)]
    end_level = scenario.truth_level_m(ids, [expect["back_below_watch_by_h"] * HOUR_S])[:, 0]
    watch = np.array([s.levels.watch_m for s in own_levels(settings)])
    assert (end_level < watch).all(), "the flood must recede"


def test_crossings_are_offset_by_start_and_sorted(settings):
    scenario = load_scenario("cloudburst")
    relative = scenario.crossings(settings)
    absolute = scenario.crossings(settings, start_s=1_800_000_000.0)
    assert [c.ts_s + 1_800_000_000.0 for c in relative] == pytest.approx([c.ts_s for c in absolute])
    assert [c.ts_s for c in relative] == sorted(c.ts_s for c in relative)


def test_normal_and_dry_seasons_cross_no_warning_level(settings):
    assert load_scenario("tidal_normal").crossings(settings) == []
    dry = load_scenario("dry_season")
    assert dry.crossings(settings) == []
    # ... but the dry season's spring lows fall below the river intake's low-water level.
    t = np.arange(0.0, dry.duration_s, 600.0)
    river = dry.truth_level_m(["LP-W01"], t)[0]
    assert river.min() < settings.station("LP-W01").low_water_m


def test_cloudburst_rain_comes_first_then_a_fast_canal_rise(settings):
    scenario = load_scenario("cloudburst")
    rain_start = min(e.start_s for e in scenario.rain if e.station_id == "LP-R03")
    warning = next(c for c in scenario.crossings(settings) if c.station_id == "LP-W03" and c.level_name == "warning")
    assert rain_start < warning.ts_s < scenario.expect["first_warning_before_h"] * HOUR_S
    t = np.arange(0.0, 6 * HOUR_S, 300.0)
    level = scenario.truth_level_m(["LP-W03"], t)[0]
    assert np.diff(level).max() / (300.0 / HOUR_S) > 0.4  # m/h: a fast rise
    river = scenario.truth_level_m(["LP-W01"], t)[0]
    assert river.max() < settings.station("LP-W01").levels.watch_m


def test_rain_intensity_integrates_to_the_cumulative_total():
    scenario = load_scenario("monsoon_flood")
    t = np.arange(-HOUR_S, 40 * HOUR_S, 10.0)
    for gauge in ("LP-R01", "LP-R02"):
        rate = scenario.truth_rain_mm_per_h([gauge], t)[0]
        integral_mm = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * 10.0 / HOUR_S)])
        cumulative = scenario.rain_cumulative_mm(np.array([gauge], dtype=object), t) - \
            scenario.rain_cumulative_mm(np.array([gauge], dtype=object), t[0])
        np.testing.assert_allclose(integral_mm, cumulative, atol=0.05)
        total = sum(e.total_mm for e in scenario.rain if e.station_id == gauge)
        assert scenario.truth_rain_mm([gauge], -HOUR_S, 100 * HOUR_S)[0] == pytest.approx(total)


def test_history_is_the_truth_in_store_ready_readings(settings):
    scenario = load_scenario("monsoon_flood")
    origin_s = 1_800_000_000.0
    rows = firmware_sim.history(scenario, settings, origin_s - 2 * 86400.0, origin_s + 6 * HOUR_S, 600.0,
                                origin_s=origin_s)
    assert all(isinstance(r, Reading) for r in rows)
    assert [r.ts_s for r in rows] == sorted(r.ts_s for r in rows)
    w01 = [r for r in rows if r.station_id == "LP-W01"]
    assert len(w01) == (2 * 86400 + 6 * 3600) // 600
    t_rel = np.array([r.ts_s - origin_s for r in w01])
    np.testing.assert_allclose([r.water_level_m for r in w01], scenario.truth_level_m(["LP-W01"], t_rel)[0], atol=1e-4)
    r02 = [r for r in rows if r.station_id == "LP-R02"]
    assert all(r.water_level_m is None for r in r02)
    truth_mm = scenario.truth_rain_mm(["LP-R02"], r02[0].ts_s - 600.0 - origin_s, r02[-1].ts_s - origin_s)[0]
    assert sum(r.rain_mm for r in r02) == pytest.approx(truth_mm, abs=0.01)
    assert truth_mm > 50  # the storm in the first hours is inside the window


def test_history_defaults_to_leading_up_to_the_scenario_start(settings):
    scenario = load_scenario("monsoon_flood")
    rows = firmware_sim.history(scenario, settings, 0.0, 86400.0, 3600.0)
    last = [r for r in rows if r.station_id == "LP-W05"][-1]
    # One hour before the origin: before the storm, the sump is at its normal level.
    assert last.water_level_m < settings.station("LP-W05").levels.watch_m


def test_unknown_scenario_says_what_exists():
    with pytest.raises(ConfigError, match="monsoon_flood"):
        load_scenario("no_such_scenario")


def test_malformed_scenario_file_is_refused_with_the_fix(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "tidal_normal"\n[[faults]]\nstation = "LP-W01"\nkind = "melted"\nstart_h = 1\n')
    with pytest.raises(ConfigError, match="spike"):
        load_scenario(bad)
    bad.write_text("[tide.constituents]\nZ9 = { amplitude_m = 0.1 }\n")
    with pytest.raises(ConfigError, match="unknown tidal constituent"):
        load_scenario(bad)
