"""External stations at the boundary and in QC: discharge, predicted series, another agency's gauge."""

from __future__ import annotations

import json
import math

import numpy as np

from floodwatch.ingest import qc
from floodwatch.ingest.payload import parse_message

NOW_S = 1_796_022_000.0


def _msg(settings, station, items, from_feed=True):
    payload = json.dumps({"readings": items}).encode()
    return parse_message(f"floodwatch/lamphaya/{station}/telemetry", payload, settings, NOW_S, from_feed=from_feed)


def test_a_dam_release_is_a_discharge_and_only_a_discharge_station_takes_one(make_settings):
    settings = make_settings()
    ok = _msg(settings, "KRASIAO-REL", [{"ts": NOW_S, "discharge_m3_s": 130.0}])
    assert not ok.errors and ok.readings[0].discharge_m3_s == 130.0 and ok.readings[0].water_level_m is None
    wrong = _msg(settings, "TC-SUPHAN", [{"ts": NOW_S, "discharge_m3_s": 130.0}])
    assert [e.reason for e in wrong.errors] == ["wrong_sensor"]
    level_at_dam = _msg(settings, "KRASIAO-REL", [{"ts": NOW_S, "water_level_m": 98.0}])
    assert [e.reason for e in level_at_dam.errors] == ["wrong_sensor"]
    negative = _msg(settings, "KRASIAO-REL", [{"ts": NOW_S, "discharge_m3_s": -5.0}])
    assert [e.reason for e in negative.errors] == ["out_of_physics"]


def test_an_external_station_is_never_taken_from_a_node_on_this_broker(make_settings):
    parsed = _msg(make_settings(), "TC-SUPHAN", [{"ts": NOW_S, "water_level_m": 2.5}], from_feed=False)
    [err] = parsed.errors
    assert err.reason == "external_station" and "feed 'thaiwater'" in err.detail and not parsed.readings


def test_a_predicted_series_may_reach_a_year_ahead_but_not_a_buddhist_era_year_ahead(make_settings):
    settings = make_settings()
    week = _msg(settings, "TC-MOUTH-TIDE", [{"ts": NOW_S + 7 * 86_400, "water_level_m": 1.2}])
    assert not week.errors
    be_year = _msg(settings, "TC-MOUTH-TIDE", [{"ts": NOW_S + 543 * 365 * 86_400, "water_level_m": 1.2}])
    assert [e.reason for e in be_year.errors] == ["future_ts"] and "Buddhist era" in be_year.errors[0].detail
    observed = _msg(settings, "TC-SUPHAN", [{"ts": NOW_S + 7 * 86_400, "water_level_m": 2.5}])
    assert [e.reason for e in observed.errors] == ["future_ts"]


def test_qc_lets_a_smooth_tide_prediction_and_a_held_release_schedule_through(make_settings):
    settings = make_settings()
    t = NOW_S + 3600.0 * np.arange(72)  # hourly, into the future
    tide = 0.1 + 1.1 * np.cos(2 * math.pi * np.arange(72) / 12.42) + 0.6 * np.cos(2 * math.pi * np.arange(72) / 23.93)
    predicted = qc.limits_for(settings.station("TC-MOUTH-TIDE"))
    flags, tests = qc.run_tests(tide, t, NOW_S, predicted)
    assert set(flags.tolist()) == {qc.PASS}, qc.describe(tests, int(np.argmax(flags != qc.PASS)))
    # The same curve judged like a node's gauge would be rejected: the exemption is what lets it in.
    observed = qc.limits_for(settings.station("LP-W01"))
    assert (qc.run_tests(tide, t, NOW_S, observed)[0] != qc.PASS).any()

    release = np.full(72, 130.0)  # a release held for the last three days
    past = NOW_S - 3600.0 * np.arange(72)[::-1]
    flags, _ = qc.run_tests(release, past, NOW_S, qc.limits_for(settings.station("KRASIAO-REL")))
    assert set(flags.tolist()) == {qc.PASS}
    over = qc.run_tests(np.array([60.0, 450.0]), past[:2], NOW_S, qc.limits_for(settings.station("KRASIAO-REL")))[0]
    assert over.tolist()[1] == qc.FAIL  # beyond what the outlet passes (max_discharge_m3_s)


def test_another_agencys_gauge_holding_a_centimetre_value_for_hours_is_not_stuck(make_settings):
    settings = make_settings()
    t = NOW_S - 900.0 * np.arange(32)[::-1]  # eight hours of quarter hours, all 4.37 m
    level = np.full(32, 4.37)
    flags, _ = qc.run_tests(level, t, NOW_S, qc.limits_for(settings.station("TC-SAMCHUK")))
    assert flags[-1] == qc.PASS
    own = qc.run_tests(level, t, NOW_S, qc.limits_for(settings.station("LP-W01")))[0]
    assert own[-1] == qc.FAIL  # a node of ours reading the same value for eight hours is stuck
