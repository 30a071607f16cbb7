"""The alert rules as pure functions: no server, no database, no clock."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise

import numpy as np
from floodwatch.alerts.rules import (
    HealthState,
    RuleConfig,
    StationState,
    Thresholds,
    ZoneState,
    apply_forecast,
    decide_qc,
    decide_status,
    decide_zone,
    observe_station,
    rise_rate_cm_per_h,
    station_forecast,
    tide_extrema,
)
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from floodwatch.vocabulary import AlertLevel, StationId, ZoneId

TH = Thresholds(StationId("S1"), ZoneId("Z1"), watch_m=1.60, warning_m=1.90, evacuate_m=2.20, low_water_m=-0.40)
CFG = RuleConfig(hysteresis_m=0.05, clear_after_s=3 * 3600, cooldown_s=3600, reminder_s=6 * 3600,
                 rise_rate_cm_per_h=20.0, confirm_readings=2, exceed_probability=0.8, lead_s=3 * 3600)
STEP_S = 600.0


def run(levels_m, cfg=CFG, step_s=STEP_S, t0_s=0.0, station=None, zone=None):
    """Feed levels one reading per step; return (station, zone, actions with their times)."""
    station = station or StationState(TH.station_id)
    zone = zone or ZoneState(TH.zone_id)
    actions = []
    for i, level in enumerate(levels_m):
        t = t0_s + (i + 1) * step_s
        station, acts = observe_station(station, TH, t, level, cfg)
        actions += acts
        zone, acts = decide_zone(zone, [(station, TH)], t, cfg)
        actions += acts
    return station, zone, actions


def resident(actions):
    return [(a.kind, a.level) for a in actions if a.audience == "residents"]


def test_a_steady_rise_escalates_once_per_level():
    levels = [1.50 + 0.01 * i for i in range(80)]  # 6 cm/h: slow river rise to 2.29 m
    _, zone, actions = run(levels)
    assert resident(actions) == [("escalate", AlertLevel.WATCH), ("escalate", AlertLevel.WARNING),
                                 ("escalate", AlertLevel.EVACUATE)]
    assert zone.level == AlertLevel.EVACUATE


def test_a_single_spike_raises_nothing():
    levels = [1.50, 1.50, 2.60, 1.50, 1.51, 1.50]
    station, zone, actions = run(levels)
    assert resident(actions) == []
    assert station.observed_level == AlertLevel.NORMAL and not station.rise_active


def test_noisy_water_at_the_warning_level_sends_one_warning_and_no_storm():
    rng = np.random.default_rng(7)
    ramp = [1.70 + 0.01 * i for i in range(19)]  # 6 cm/h up to 1.88
    t = np.arange(288)  # then 48 h of a level wobbling +-4 cm around 1.90 with +-3 cm noise
    noisy = list(1.90 + 0.04 * np.sin(t / 3.0) + rng.uniform(-0.03, 0.03, t.size))
    _, zone, actions = run(ramp + noisy)
    kinds = resident(actions)
    assert kinds.count(("escalate", AlertLevel.WARNING)) == 1, kinds
    assert all(k[0] in ("escalate", "reminder") for k in kinds), kinds
    assert len([k for k in kinds if k[0] == "reminder"]) <= 48 * 3600 / CFG.reminder_s
    assert zone.level == AlertLevel.WARNING


def test_flapping_across_the_hysteresis_band_costs_at_most_two_messages_per_cooldown():
    cfg = replace(CFG, clear_after_s=600.0)  # the zone lowers as soon as it may
    pattern = [2.00, 2.00, 1.70, 1.70]  # WARNING for 20 min, WATCH for 20 min, for 48 h
    _, _, actions = run([1.65] + pattern * 72, cfg=cfg)
    kinds = resident(actions)
    assert 2 <= len(kinds) <= 2 * 48 * 3600 / cfg.cooldown_s + 2
    times = [a.ts_s for a in actions if a.audience == "residents"]
    ups = [a.ts_s for a in actions if a.audience == "residents" and a.kind == "escalate"
           and a.level == AlertLevel.WARNING]
    for t1, t2 in pairwise(ups):
        assert t2 - t1 >= cfg.cooldown_s
    assert len(times) == len(set(times))


def test_deescalation_waits_for_the_clear_time_then_all_clear():
    up = [1.95, 1.96, 1.97]
    down = [1.40] * int(4 * 3600 / STEP_S)
    station, zone, actions = run(up + down)
    kinds = resident(actions)
    assert kinds[0] == ("escalate", AlertLevel.WARNING)
    assert kinds[-1] == ("all_clear", AlertLevel.NORMAL)
    all_clear = [a for a in actions if a.kind == "all_clear"][0]
    first_low = (len(up) + 2) * STEP_S  # confirmed low after two readings
    assert all_clear.ts_s - first_low >= CFG.clear_after_s
    assert zone.level == AlertLevel.NORMAL


def test_all_clear_waits_for_the_cooldown_and_a_return_is_always_announced():
    cfg = replace(CFG, clear_after_s=600.0)
    up, down = [1.95, 1.96], [1.40] * 3
    _, zone, actions = run(up + down + up, cfg=cfg)
    assert resident(actions) == [("escalate", AlertLevel.WARNING)], "no all-clear within the cooldown"
    _, _, later = run(up + [1.40] * 8 + up, cfg=cfg)
    assert resident(later) == [("escalate", AlertLevel.WARNING), ("all_clear", AlertLevel.NORMAL),
                               ("escalate", AlertLevel.WARNING)]
    all_clear = [a for a in later if a.kind == "all_clear"][0]
    assert all_clear.ts_s - 2 * STEP_S >= cfg.cooldown_s


def test_reminder_while_the_danger_persists():
    levels = [1.95] * int(13 * 3600 / STEP_S)
    _, _, actions = run(levels)
    kinds = resident(actions)
    assert kinds[0] == ("escalate", AlertLevel.WARNING)
    assert kinds.count(("reminder", AlertLevel.WARNING)) == 2  # at +6 h and +12 h


def test_a_fast_rise_warns_before_the_level_is_reached():
    # a flash flood: 30 cm/h from 1.00 m, far below watch (1.60)
    levels = [1.00 + 0.05 * i for i in range(8)]
    station, zone, actions = run(levels)
    kinds = resident(actions)
    assert kinds and kinds[0] == ("rise", AlertLevel.WATCH)
    assert station.rise_active
    first = [a for a in actions if a.kind == "rise"][0]
    assert first.water_level_m < TH.watch_m and first.trend_cm_per_h >= 20.0


def test_rise_rate_ignores_a_spike_in_between():
    history = [(0.0, 1.0), (600.0, 3.0), (1200.0, 1.0), (1800.0, 1.0), (2400.0, 1.02), (3000.0, 1.02)]
    assert abs(rise_rate_cm_per_h(history, 3600)) < 5
    assert math.isnan(rise_rate_cm_per_h(history[:1], 3600))


def _forecast(prob_by_level, at_s, h=37, issued_s=0.0):
    t_s = issued_s + np.arange(h) * 600.0
    exceed = np.zeros((3, h))
    for k, p in enumerate(prob_by_level):
        exceed[k, t_s >= at_s] = p
    median = np.linspace(1.5, 2.0, h)
    return station_forecast(TH, issued_s, t_s, median, exceed, 5.0, CFG)


def test_forecast_level_needs_the_probability_within_the_lead_time():
    fc = _forecast([0.95, 0.85, 0.3], at_s=2 * 3600)
    assert fc.level == AlertLevel.WARNING and fc.probability == 0.85 and fc.reach_s == 2 * 3600
    too_late = _forecast([0.95, 0.95, 0.95], at_s=4 * 3600)
    assert too_late.level == AlertLevel.NORMAL
    unlikely = _forecast([0.5, 0.5, 0.5], at_s=600)
    assert unlikely.level == AlertLevel.NORMAL


def test_forecast_escalates_and_observation_then_adds_nothing():
    station = apply_forecast(StationState(TH.station_id), _forecast([0.9, 0.9, 0.1], at_s=3600))
    zone, actions = decide_zone(ZoneState(TH.zone_id), [(station, TH)], 600.0, CFG)
    assert resident(actions) == [("forecast", AlertLevel.WARNING)]
    station, zone, later = run([1.95, 1.96, 1.97], station=station, zone=zone, t0_s=600.0)
    assert resident(later) == []


def test_an_older_forecast_never_overwrites_a_newer_one():
    new = _forecast([0.9, 0.1, 0.0], at_s=3600, issued_s=1200.0)
    old = _forecast([0.9, 0.9, 0.9], at_s=3600, issued_s=0.0)
    station = apply_forecast(apply_forecast(StationState(TH.station_id), new), old)
    assert station.forecast == new


def test_low_water_alerts_once_and_clears_with_margin():
    levels = [0.0, -0.45, -0.46, -0.42, -0.38, -0.30, -0.29, -0.45]
    _, _, actions = run(levels)
    low = [(a.kind, a.audience) for a in actions if a.audience == "low_water"]
    assert low == [("low_water", "low_water"), ("low_water_clear", "low_water")]


def test_offline_status_alerts_officers_once_per_cooldown():
    h = HealthState(StationId("S1"))
    h, a1 = decide_status(h, ZoneId("Z1"), "offline", 0.0, CFG)
    h, a2 = decide_status(h, ZoneId("Z1"), "offline", 60.0, CFG)
    h, a3 = decide_status(h, ZoneId("Z1"), "online", 120.0, CFG)
    h, a4 = decide_status(h, ZoneId("Z1"), "offline", 180.0, CFG)  # flapping link: held by the cooldown
    assert [a.kind for a in a1 + a2 + a3 + a4] == ["sensor_offline", "sensor_online"]
    assert all(a.audience == "officers" for a in a1 + a3)
    h, q1 = decide_qc(h, ZoneId("Z1"), 0.0, "FAIL", "spike", CFG)
    h, q2 = decide_qc(h, ZoneId("Z1"), 100.0, "FAIL", "spike", CFG)
    assert len(q1) == 1 and q2 == []


def test_late_readings_do_not_move_the_state_back():
    station, _, _ = run([1.95, 1.96])
    again, acts = observe_station(station, TH, 1.0, 1.0, CFG)
    assert again == station and acts == []


def test_tide_extrema_finds_highs_and_lows_of_a_tide():
    t_s = np.arange(0, 48 * 3600, 600.0)
    z = 0.8 * np.sin(2 * np.pi * t_s / (12.42 * 3600)) + 0.3 * np.sin(2 * np.pi * t_s / (23.93 * 3600))
    turns = tide_extrema(t_s, z, 0.0, 24 * 3600)
    kinds = [k for k, _, _ in turns]
    assert kinds.count("high") >= 1 and kinds.count("low") >= 1
    assert all(a != b for a, b in pairwise(kinds)), "highs and lows alternate"
    for kind, t, level in turns:
        i = int(t // 600)
        assert level == z[i] and (level >= z[i - 1] if kind == "high" else level <= z[i - 1])


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.5, max_value=2.6), min_size=1, max_size=200))
def test_never_a_repeat_within_cooldown_and_never_on_a_single_reading(levels):
    _, _, actions = run(levels)
    sent = [(a.ts_s, a.level) for a in actions if a.audience == "residents" and a.kind in
            ("escalate", "rise", "forecast")]
    for (t1, l1), (t2, l2) in pairwise(sent):
        assert not (l1 == l2 and t2 - t1 < CFG.cooldown_s)
    # single readings never escalate: every escalation's level was seen in two readings running
    confirmed = {AlertLevel.NORMAL}
    for a, b in pairwise(levels):
        confirmed.add(min(TH.level_for(a), TH.level_for(b)))
    for a in actions:
        if a.kind == "escalate":
            assert a.level <= max(confirmed)
