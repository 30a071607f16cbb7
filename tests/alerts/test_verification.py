"""The verification definitions on hand-made timelines: events, verified warnings, hits, leads, band coverage.

Every edge of docs/verification.md: the 24 h below a level before an event,
the window before a crossing, a late warning up to an hour after it, a warning
for a higher level counting for a lower one, warnings that cannot be judged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from floodwatch.alerts.replay import replay_station, thresholds_for
from floodwatch.alerts.rules import RuleConfig
from floodwatch.alerts.verification import (
    IssuedWarning,
    band_coverage,
    find_events,
    reached_within,
    score_level,
    verify_warnings,
)
from floodwatch.models import OriginForecasts
from floodwatch.vocabulary import AlertLevel

H = 3600.0
STEP = 900.0


def timeline(spec: list[tuple[float, float]], end_h: float, base_m: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Readings every 15 min from 0 to ``end_h``: ``base_m``, except (from_h, level) steps holding until the next."""
    t = np.arange(0.0, end_h * H + 1, STEP)
    z = np.full(t.size, base_m)
    for from_h, level in spec:
        z[t >= from_h * H] = level
    return t, z


def test_a_crossing_after_24_h_below_is_an_event_and_one_sooner_is_not():
    # Up at 30 h, down at 40 h; up again at 63.75 h (below since the 40 h reading: 23.75 h): not an event;
    # up at 100 h after 36 h below: an event; the next exactly 24 h after dropping: an event (at least 24 h).
    t, z = timeline([(30, 2.0), (40, 1.0), (63.75, 2.0), (64, 1.0), (100, 2.0), (101, 1.0), (125, 2.0)], 130)
    events = find_events(t, z, 1.5)
    assert list(events / H) == [30.0, 100.0, 125.0]


def test_a_record_that_starts_less_than_24_h_before_a_crossing_has_no_event_there():
    t, z = timeline([(10, 2.0), (12, 1.0), (50, 2.0)], 60)
    assert list(find_events(t, z, 1.5) / H) == [50.0]
    assert find_events(t, z, 3.0).size == 0  # never reached


def test_a_warning_is_verified_if_its_level_is_reached_within_the_window():
    t, z = timeline([(47, 2.0), (48, 1.0)], 100)
    issued = np.array([24.0, 23.0, 47.5, 90.0]) * H
    got = reached_within(t, z, 1.5, issued, 24 * H)
    # 23 h before the crossing: reached; 24 h: reached on the edge; 47.5 h: at the level already;
    # 90 h: window runs past the end of the record, not reached: cannot be judged.
    assert got[0] == 1.0 and got[1] == 1.0 and got[2] == 1.0
    assert math.isnan(got[3])
    assert reached_within(t, z, 1.5, np.array([49.0 * H]), 24 * H)[0] == 0.0  # a day of nothing: false alarm
    assert reached_within(t, z, 1.5, np.array([22.5 * H]), 24 * H)[0] == 0.0  # 24.5 h before: too early


def _warn(hours: float, level: int, kind: str = "forecast") -> IssuedWarning:
    return IssuedWarning(hours * H, level, kind)


@pytest.mark.parametrize(
    ("issued_h", "lead_h", "late"),
    [
        (100 - 23.0, 23.0, 0),     # inside the window
        (100 - 24.0, 24.0, 0),     # on the window's edge
        (100 - 24.5, None, 0),     # before it: does not count
        (100 + 0.5, -0.5, 1),      # late by half an hour: still warned, negative lead
        (100 + 1.0, -1.0, 1),      # late by exactly an hour
        (100 + 1.25, None, 0),     # later than an hour: missed
    ],
)
def test_the_window_before_a_crossing_and_the_late_hour_after_it(issued_h, lead_h, late):
    score = score_level(1, 1.5, np.array([100.0 * H]), [_warn(issued_h, 1)], np.array([1.0]))
    assert score.events == 1
    if lead_h is None:
        assert score.hits == 0 and score.misses == 1 and score.leads_h == []
    else:
        assert score.hits == 1 and score.leads_h == [pytest.approx(lead_h)]
    assert score.late == late


def test_the_earliest_warning_inside_the_window_sets_the_lead():
    warnings = [_warn(70, 1), _warn(90, 1), _warn(99, 1)]  # 30 h before: outside the 24 h window
    score = score_level(1, 1.5, np.array([100.0 * H]), warnings, np.ones(3))
    assert score.leads_h == [pytest.approx(10.0)]
    wide = score_level(1, 1.5, np.array([100.0 * H]), warnings, np.ones(3), window_s=36 * H)
    assert wide.leads_h == [pytest.approx(30.0)]


def test_a_warning_for_a_higher_level_warns_a_lower_event_but_not_the_reverse():
    evacuate_warning = [_warn(95, 3)]
    watch = score_level(1, 1.5, np.array([100.0 * H]), evacuate_warning, np.array([1.0]))
    assert watch.hits == 1 and watch.leads_h == [pytest.approx(5.0)]
    assert watch.warnings == 0, "the warning is for evacuate: it is scored (verified or not) at evacuate"
    watch_warning = [_warn(95, 1)]
    evacuate = score_level(3, 2.5, np.array([100.0 * H]), watch_warning, np.array([1.0]))
    assert evacuate.hits == 0 and evacuate.misses == 1


def test_scores_from_a_small_season():
    # Three events; warnings: two hits, one false alarm, one unscored (runs past the record).
    events = np.array([100.0, 300.0, 500.0]) * H
    warnings = [_warn(90, 1), _warn(200, 1), _warn(290, 1), _warn(600, 1)]
    reached = np.array([1.0, 0.0, 1.0, np.nan])
    s = score_level(1, 1.5, events, warnings, reached)
    assert (s.events, s.hits, s.misses, s.warnings, s.false_alarms, s.unscored) == (3, 2, 1, 3, 1, 1)
    assert s.pod == pytest.approx(2 / 3) and s.far == pytest.approx(1 / 3) and s.csi == pytest.approx(2 / 4)
    j = s.as_json()
    assert j["lead_h"] == {"median": 10.0, "mean": 10.0, "p10": 10.0}
    assert {"events", "hits", "misses", "warnings", "false_alarms", "pod", "far", "csi", "lead_h"} <= j.keys()


def test_no_events_and_no_warnings_score_none_not_zero():
    s = score_level(2, 9.0, np.empty(0), [], np.empty(0))
    assert s.pod is None and s.far is None and s.csi is None
    assert s.as_json()["lead_h"] == {"median": None, "mean": None, "p10": None}


def test_verify_warnings_scores_each_level_against_its_own_threshold():
    t, z = timeline([(30, 1.7), (31, 2.2), (33, 1.0)], 80)  # watch 1.5 and warning 2.0 reached; evacuate 2.5 not
    warnings = [_warn(28, 1), _warn(30.5, 2), _warn(50, 3)]
    scores = verify_warnings(t, z, [1.5, 2.0, 2.5], warnings)
    watch, warning, evacuate = scores
    assert watch.leads_h == [pytest.approx(2.0)] and warning.leads_h == [pytest.approx(0.5)]
    assert evacuate.events == 0 and evacuate.warnings == 1 and evacuate.false_alarms == 1
    assert [s.level for s in verify_warnings(t, z, [1.5, math.nan, math.nan], warnings)] == [1]


def test_band_coverage_per_lead_bucket():
    grid = np.arange(0.0, 48 * H, 600.0)
    truth = np.zeros(grid.size)
    origins = grid[:100]
    lead = 600.0 * np.arange(1, 19)  # 10 min to 3 h
    lower = np.full((origins.size, lead.size), -1.0)
    upper = np.full_like(lower, 1.0)
    upper[:, lead > 2 * H] = -0.5  # the band misses the truth at 2-3 h
    upper[:50, (lead > H) & (lead <= 2 * H)] = -0.5  # half the time at 1-2 h
    got = band_coverage(grid, truth, origins, lead, lower, upper)
    assert [(b["lead_h_from"], b["lead_h_to"], b["coverage"]) for b in got] == [
        (0.0, 1.0, 1.0), (1.0, 2.0, 0.5), (2.0, 3.0, 0.0)]
    assert got[0]["n"] == 600


def _forecasts(issued_s: np.ndarray, prob_of: callable) -> OriginForecasts:
    """Forecasts every 10 min whose chance of reaching watch at every lead is ``prob_of(issued_s)``."""
    lead = 600.0 * np.arange(1, 19)
    n = issued_s.size
    exceed = np.zeros((n, 3, lead.size), dtype=np.float32)
    exceed[:, 0, :] = np.array([prob_of(t) for t in issued_s], dtype=np.float32)[:, None]
    median = np.ones((n, lead.size), dtype=np.float32)
    return OriginForecasts(issued_s=issued_s, origin_s=issued_s, lead_s=lead, median_m=median,
                           lower_m=median - 0.1, upper_m=median + 0.1, exceed_prob=exceed,
                           rise_rate_cm_per_h=np.zeros(n, dtype=np.float32), model_name=("arx",) * n)


def test_the_replay_warns_from_the_forecast_and_the_baseline_only_when_the_water_is_there():
    # Watch 1.5 m reached at 40 h by a 10 cm step: 10 cm/h over the rise rule's hour, not a fast rise.
    t, z = timeline([(40, 1.55), (44, 1.45)], 80, base_m=1.45)
    th = thresholds_for([1.5])
    assert th.watch_m == 1.5 and math.isnan(th.warning_m) and math.isnan(th.evacuate_m)
    cfg = RuleConfig(exceed_probability=0.8, lead_s=3 * H, confirm_readings=2)
    issued = np.arange(0.0, 80 * H, 600.0)
    fc = _forecasts(issued, lambda s: 0.9 if 38 * H <= s < 41 * H else 0.1)
    with_fc = replay_station(th, cfg, t, z, fc)
    observed = replay_station(th, cfg, t, z, None)
    assert [(w.ts_s / H, w.level, w.kind) for w in with_fc.warnings][0] == (38.0, int(AlertLevel.WATCH), "forecast")
    # Observed only: the second reading at the level confirms it, 15 min after the crossing.
    assert [(w.ts_s / H, w.kind) for w in observed.warnings] == [(40.25, "observed")]
    fw = verify_warnings(t, z, [1.5], with_fc.warnings)[0]
    ob = verify_warnings(t, z, [1.5], observed.warnings)[0]
    assert fw.leads_h == [pytest.approx(2.0)] and ob.leads_h == [pytest.approx(-0.25)]
    # The same rules with forecasts switched off are the baseline.
    off = replay_station(th, cfg, t, z, fc, station_cfg=RuleConfig(exceed_probability=0.8, lead_s=3 * H,
                                                                   confirm_readings=2, use_forecast=False))
    assert [w.ts_s for w in off.warnings] == [w.ts_s for w in observed.warnings]


def test_skipping_forecasts_that_raise_nothing_changes_no_decision():
    """The replay leaves out reducing forecasts that can raise nothing; every decision must stay the same."""
    from floodwatch.alerts.rules import StationState, ZoneState, apply_forecast, decide_zone, observe_station, \
        station_forecast

    rng = np.random.default_rng(5)
    t = np.arange(0.0, 20 * 86400.0, STEP)
    z = 1.3 + 0.3 * np.sin(t / 86400.0 * 2 * np.pi / 3) + rng.normal(0, 0.02, t.size)
    issued = np.arange(0.0, 20 * 86400.0, 600.0) + 120.0
    n = issued.size
    lead = 600.0 * np.arange(1, 37)
    exceed = np.clip(rng.normal(0.3, 0.35, (n, 3, lead.size)), 0, 1).astype(np.float32)
    exceed[rng.random(n) < 0.6] *= 0.2  # most forecasts raise nothing
    exceed[:, :, 30:][rng.random(n) < 0.3] = np.nan
    med = np.full((n, lead.size), 1.3, dtype=np.float32)
    fc = OriginForecasts(issued_s=issued, origin_s=np.floor(issued / 600.0) * 600.0, lead_s=lead, median_m=med,
                         lower_m=med - 0.1, upper_m=med + 0.1, exceed_prob=exceed,
                         rise_rate_cm_per_h=np.zeros(n, dtype=np.float32), model_name=("arx",) * n)
    th = thresholds_for([1.45, 1.55, 1.65])
    cfg = RuleConfig(exceed_probability=0.8, lead_s=3 * H)
    got = replay_station(th, cfg, t, z, fc)
    # The reference: every forecast reduced and applied, as the alert service does.
    station, zone, actions = StationState(th.station_id), ZoneState(th.zone_id), []
    i = j = 0
    while i < t.size or j < n:
        if j >= n or (i < t.size and t[i] <= issued[j]):
            now = t[i]
            station, _ = observe_station(station, th, now, z[i], cfg)
            i += 1
        else:
            now = issued[j]
            station = apply_forecast(station, station_forecast(th, now, fc.t_s(j), med[j], exceed[j], 0.0, cfg))
            j += 1
        zone, acts = decide_zone(zone, [(station, th)], now, cfg)
        actions += acts
    assert len(actions) > 20 and any(a.kind == "forecast" for a in actions)
    assert [(a.kind, int(a.level), a.ts_s) for a in got.actions] == [(a.kind, int(a.level), a.ts_s) for a in actions]
