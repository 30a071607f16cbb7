"""The node's firmware logic without a radio: sampling, conversion, counters, faults, buffer."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import numpy as np
import pytest
from floodwatch.firmware_sim import FirmwareConfig, NodeCore, load_scenario
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

HOUR_S = 3600.0
ORIGIN_S = 1_795_000_000.0


def run_core(core: NodeCore, scenario, until_s: float, truth_id: str | None = None) -> list:
    """Drive a core like the fleet does: wake, feed the truth, follow its next wake."""
    truth_id = truth_id or core.station.id
    ids = np.array([truth_id], dtype=object)
    out = []
    t = core.first_wake_s(0.0)
    while t < until_s:
        level = float(scenario.level_at(ids, np.array([t]))[0])
        cum = float(scenario.rain_cumulative_mm(ids, np.array([t]))[0])
        rate = float(scenario.rain_rate_at(ids, np.array([t]))[0])
        outcome = core.wake(t, level, cum, rate)
        out.append((t, outcome))
        t = outcome.next_wake_s
    return out


def make_core(settings, station_id: str, scenario, seed: int = 3, **config) -> NodeCore:
    return NodeCore(station=settings.station(station_id), origin_s=ORIGIN_S,
                    faults=scenario.faults_for(station_id), config=FirmwareConfig(**config), seed=seed)


def ts_of(reading: dict) -> float:
    return datetime.fromisoformat(reading["ts"]).timestamp()


def test_same_seed_same_readings_other_seed_other_noise(settings):
    scenario = load_scenario("monsoon_flood")
    a = [o.reading for _, o in run_core(make_core(settings, "LP-W03", scenario, seed=5), scenario, 12 * HOUR_S)]
    b = [o.reading for _, o in run_core(make_core(settings, "LP-W03", scenario, seed=5), scenario, 12 * HOUR_S)]
    c = [o.reading for _, o in run_core(make_core(settings, "LP-W03", scenario, seed=6), scenario, 12 * HOUR_S)]
    assert a == b
    assert [r["distance_m"] for r in a[:20]] != [r["distance_m"] for r in c[:20]]


@pytest.mark.parametrize("station_id, tolerance_m", [("LP-W01", 0.015), ("LP-W03", 0.08)])
def test_raw_distance_converts_to_the_true_level(settings, station_id, tolerance_m):
    """level = mount_height_m - distance_m; radar within cm, ultrasonic within its temperature error."""
    scenario = load_scenario("tidal_normal")
    core = make_core(settings, station_id, scenario)
    mount_m = settings.station(station_id).mount_height_m
    errors = []
    for t, outcome in run_core(core, scenario, 3 * 86400.0):
        r = outcome.reading
        assert set(r) == {"ts", "seq", "boot", "distance_m", "battery_v", "rssi_dbm"}
        truth = scenario.truth_level_m([station_id], [t])[0, 0]
        errors.append(mount_m - r["distance_m"] - truth)
    errors = np.abs(np.array(errors))
    assert np.median(errors) < tolerance_m / 2
    assert np.quantile(errors, 0.99) < tolerance_m  # echoes are rejected by the burst median


def test_converted_mode_publishes_level_and_rain(settings):
    scenario = load_scenario("monsoon_flood")
    level = run_core(make_core(settings, "LP-W05", scenario, publish_raw=False), scenario, 3 * HOUR_S)
    assert all("water_level_m" in o.reading and "distance_m" not in o.reading for _, o in level)
    rain = run_core(make_core(settings, "LP-R02", scenario, publish_raw=False), scenario, 6 * HOUR_S)
    total_mm = sum(o.reading["rain_mm"] for _, o in rain)
    first_t, last_t = rain[0][0], rain[-1][0]
    assert total_mm == pytest.approx(scenario.truth_rain_mm(["LP-R02"], first_t, last_t)[0], abs=0.2)


def test_publishes_faster_while_the_level_rises_fast(settings):
    scenario = load_scenario("monsoon_flood")
    wakes = run_core(make_core(settings, "LP-W05", scenario), scenario, 8 * HOUR_S)
    gaps = {round(b[0] - a[0]) for a, b in pairwise(wakes)}
    assert gaps == {120, 600}
    fast = [a[0] for a, b in pairwise(wakes) if round(b[0] - a[0]) == 120]
    assert min(fast) < 3 * HOUR_S  # during the storm's rise
    # The tide alone, spring tides included, never triggers the fast interval.
    calm = run_core(make_core(settings, "LP-W01", load_scenario("tidal_normal")), load_scenario("tidal_normal"),
                    15 * 86400.0)
    assert {round(b[0] - a[0]) for a, b in pairwise(calm)} == {600}


def test_seq_increments_and_clock_stays_within_drift(settings):
    scenario = load_scenario("tidal_normal")
    wakes = run_core(make_core(settings, "LP-W02", scenario), scenario, 2 * 86400.0)
    assert [o.reading["seq"] for _, o in wakes] == list(range(len(wakes)))
    offsets = [ts_of(o.reading) - (ORIGIN_S + t) for t, o in wakes]
    assert max(abs(x) for x in offsets) < 1.5  # 40 ppm over a 6 h sync interval is < 1 s
    assert wakes[0][1].reading["ts"].endswith("+07:00")


def test_reboot_resets_counters_and_converted_rain_equals_truth(settings):
    scenario = load_scenario("fault_reboot")
    station = settings.station("LP-R02")
    wakes = run_core(make_core(settings, "LP-R02", scenario), scenario, scenario.duration_s)
    readings = [o.reading for _, o in wakes]
    assert readings[-1]["boot"] == 3  # two reboots in the file
    # The counter restarts at 0: it goes down at each reboot.
    boots = [r["boot"] for r in readings]
    first_of_boot = [i for i in range(1, len(readings)) if boots[i] != boots[i - 1]]
    assert len(first_of_boot) == 2
    for i in first_of_boot:
        assert readings[i]["seq"] == 0
        assert readings[i]["rain_tips"] < readings[i - 1]["rain_tips"]
    # Convert like ingestion: tips since the previous reading of the same boot, all tips of a new boot.
    rain_mm = 0.0
    for prev, cur in pairwise(readings):
        delta = cur["rain_tips"] if cur["boot"] != prev["boot"] else cur["rain_tips"] - prev["rain_tips"]
        rain_mm += delta * station.mm_per_tip
    truth_mm = scenario.truth_rain_mm(["LP-R02"], wakes[0][0], wakes[-1][0])[0]
    assert truth_mm == pytest.approx(28.0)
    assert abs(rain_mm - truth_mm) < station.mm_per_tip


def test_spike_stuck_drift_change_only_their_window(settings):
    spike = load_scenario("fault_spike")
    wakes = run_core(make_core(settings, "LP-W01", spike), spike, 6 * HOUR_S)
    mount_m = settings.station("LP-W01").mount_height_m
    err = [mount_m - o.reading["distance_m"] - spike.truth_level_m(["LP-W01"], [t])[0, 0] for t, o in wakes]
    big = [i for i, e in enumerate(err) if abs(e) > 0.5]
    assert len(big) == 1 and err[big[0]] == pytest.approx(1.2, abs=0.05)
    assert wakes[big[0]][0] >= 2 * HOUR_S > wakes[big[0] - 1][0]

    stuck = load_scenario("fault_stuck")
    wakes = run_core(make_core(settings, "LP-W03", stuck), stuck, 10 * HOUR_S)
    inside = [o.reading["distance_m"] for t, o in wakes if 2 * HOUR_S <= t < 8 * HOUR_S]
    outside = [o.reading["distance_m"] for t, o in wakes if t >= 8 * HOUR_S]
    assert len(inside) >= 30 and len(set(inside)) == 1
    assert len(set(outside)) > 1

    drift = load_scenario("fault_drift")
    wakes = run_core(make_core(settings, "LP-W04", drift), drift, 60 * HOUR_S)
    mount_m = settings.station("LP-W04").mount_height_m
    err = {round(t): mount_m - o.reading["distance_m"] - drift.truth_level_m(["LP-W04"], [t])[0, 0] for t, o in wakes}
    late = [e for t, e in err.items() if 40 * HOUR_S <= t < 49 * HOUR_S]
    after = [e for t, e in err.items() if t >= 50 * HOUR_S]
    assert np.median(late) == pytest.approx(0.3 * 42 / 24, abs=0.1)
    assert abs(np.median(after)) < 0.05


def test_dropout_offline_duplicates_wrong_clock_flags(settings):
    dropout = load_scenario("fault_dropout")
    wakes = run_core(make_core(settings, "LP-W02", dropout), dropout, 8 * HOUR_S)
    silent = [t for t, o in wakes if o.reading is None]
    assert silent and all(2 * HOUR_S <= t < 5 * HOUR_S for t in silent)
    seqs = [o.reading["seq"] for _, o in wakes if o.reading is not None]
    assert seqs == list(range(len(seqs)))  # nothing was measured, so no seq is skipped

    offline = load_scenario("fault_offline_flush")
    wakes = run_core(make_core(settings, "LP-W01", offline), offline, 5 * HOUR_S)
    assert {t // HOUR_S for t, o in wakes if o.offline} == {2.0}

    dup = load_scenario("fault_duplicates")
    wakes = run_core(make_core(settings, "LP-W05", dup), dup, 6 * HOUR_S)
    assert all(o.duplicate == (HOUR_S <= t < 4 * HOUR_S) for t, o in wakes)

    clock = load_scenario("fault_wrong_clock")
    wakes = run_core(make_core(settings, "LP-W06", clock), clock, 8 * HOUR_S)
    for t, o in wakes:
        offset_s = ts_of(o.reading) - (ORIGIN_S + t)
        expected = 25200 if 2 * HOUR_S <= t < 6 * HOUR_S else 0
        assert offset_s == pytest.approx(expected, abs=2.0)


def test_ring_buffer_drops_the_oldest_when_full_and_returns_batches_in_order(settings):
    scenario = load_scenario("tidal_normal")
    core = make_core(settings, "LP-W01", scenario, buffer_capacity=5, batch_max=2)
    for seq in range(8):
        core.keep({"seq": seq})
    assert core.dropped == 3
    first = core.next_batch()
    assert [r["seq"] for r in first] == [3, 4]
    core.return_batch(first)  # a failed flush keeps the order
    got = []
    while core.buffer:
        got.extend(r["seq"] for r in core.next_batch())
    assert got == [3, 4, 5, 6, 7]


def test_village_street_sensor_sees_the_dry_street(settings):
    """Below the street crown the ultrasonic sees the road surface (floor_m), not the drain."""
    scenario = load_scenario("tidal_normal")
    wakes = run_core(make_core(settings, "LP-W06", scenario), scenario, 86400.0)
    mount_m = settings.station("LP-W06").mount_height_m
    levels = np.array([mount_m - o.reading["distance_m"] for _, o in wakes])
    assert np.median(np.abs(levels - 1.40)) < 0.05


def test_battery_and_rssi_are_plausible(settings):
    scenario = load_scenario("tidal_normal")
    wakes = run_core(make_core(settings, "LP-R03", scenario), scenario, 3 * 86400.0)
    volts = np.array([o.reading["battery_v"] for _, o in wakes])
    rssi = np.array([o.reading["rssi_dbm"] for _, o in wakes])
    assert 2.9 < volts.min() and volts.max() < 3.5
    assert volts.max() - volts.min() > 0.01  # the solar cycle shows
    assert -120 < rssi.min() and rssi.max() < -40


def test_ultrasonic_blind_zone_echoes_and_temperature_error():
    from floodwatch.firmware_sim._sensors import RangeSensorModel, measure_distance_m, solar_fraction

    sonic = RangeSensorModel.for_sensor("ultrasonic")
    rng = np.random.default_rng(0)
    # Water inside the blind zone (a flood up to the sensor): no echo at all.
    assert measure_distance_m(0.10, sonic, 0.0, rng) is None
    # Echoes: single pings are often short, the burst median almost never is.
    noisy = RangeSensorModel(noise_m=0.005, blind_zone_m=0.25, max_range_m=7.5, echo_probability=0.2,
                             temperature_coefficient=0.0)
    medians = np.array([measure_distance_m(3.0, noisy, 0.0, rng) for _ in range(2000)])
    assert np.mean(np.abs(medians - 3.0) > 0.05) < 0.08
    # The sun heats the enclosure: afternoon readings run short by ~0.17 %/K.
    cool = np.median([measure_distance_m(3.0, sonic, 0.0, rng) for _ in range(200)])
    hot = np.median([measure_distance_m(3.0, sonic, 8.0, rng) for _ in range(200)])
    assert cool - hot == pytest.approx(3.0 * 0.0017 * 8.0, abs=0.006)
    from floodwatch.timefmt import BANGKOK

    noon_utc_s = datetime(2026, 11, 29, 12, 0, tzinfo=BANGKOK).timestamp()
    assert solar_fraction(noon_utc_s) == pytest.approx(1.0) and solar_fraction(noon_utc_s + 12 * 3600) == 0.0


@hsettings(max_examples=40, deadline=None)
@given(
    total_mm=st.floats(0.0, 250.0),
    duration_h=st.floats(0.2, 8.0),
    start_h=st.floats(0.0, 4.0),
    reboot_h=st.lists(st.floats(0.0, 10.0), max_size=4),
    seed=st.integers(0, 2**16),
)
def test_any_storm_and_any_reboots_convert_to_the_true_rain(total_mm, duration_h, start_h, reboot_h, seed):
    """Property: tips converted like ingestion equal the true rain to within one tip."""
    import dataclasses

    from floodwatch.firmware_sim import Fault, RainEvent

    from floodwatch.settings import load_settings

    station = load_settings().station("LP-R03")
    scenario = dataclasses.replace(
        load_scenario("tidal_normal"),
        rain=(RainEvent("LP-R03", start_h * HOUR_S, duration_h * HOUR_S, total_mm),),
        faults=tuple(Fault("LP-R03", "reboot", h * HOUR_S, h * HOUR_S + 1) for h in reboot_h),
    )
    core = NodeCore(station=station, origin_s=ORIGIN_S, faults=scenario.faults_for("LP-R03"), seed=seed)
    wakes = run_core(core, scenario, 12 * HOUR_S)
    readings = [o.reading for _, o in wakes]
    rain_mm = 0.0
    for prev, cur in pairwise(readings):
        rain_mm += (cur["rain_tips"] if cur["boot"] != prev["boot"] else cur["rain_tips"] - prev["rain_tips"]) \
            * station.mm_per_tip
    truth_mm = scenario.truth_rain_mm(["LP-R03"], wakes[0][0], wakes[-1][0])[0]
    assert abs(rain_mm - truth_mm) < station.mm_per_tip + 1e-6
