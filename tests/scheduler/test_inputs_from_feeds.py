"""The forecast job reads the registry's upstream gauges and predicted series as the feeds store them.

Lam Phaya's site file links LP-W01 to two ThaiWater gauges upstream (TC-SUPHAN, TC-SAMCHUK), the
Krasiao dam's release (KRASIAO-REL) and the predicted tide at the mouth (TC-MOUTH-TIDE). The
values go in through the feeds' own writer (validation, QC, ``insert_new`` / ``replace_readings``)
into a real SQLite store; the job must use what is fresh and say what it could not use.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.signal import lfilter

from floodwatch import store
from floodwatch.clock import FixedClock
from floodwatch.feeds._writer import FeedValue, FeedWriter
from floodwatch.scheduler import ForecastJob
from floodwatch.vocabulary import Reading, StationId

NOW_S = 1_796_000_400.0
STEP_S = 600.0
M2_PERIOD_S = 12.4206012 * 3600.0
SUPHAN_LAG_S = 6 * 3600.0
W01 = StationId("LP-W01")


def _wave(t_s: np.ndarray, seed: int) -> np.ndarray:
    """Freshets: a pulse of run-off every day or so, rising over hours and draining over a day, metres."""
    rng = np.random.default_rng(seed)
    pulses = np.where(rng.random(t_s.size) < 0.008, rng.uniform(0.1, 0.3, t_s.size), 0.0)
    return lfilter([1.0], [1.0, -0.985], lfilter([0.2], [1.0, -0.8], pulses))


def test_the_job_uses_fresh_feeds_and_names_the_late_the_missing_and_the_short(make_settings, caplog):
    settings = make_settings()
    settings.forecast.history_days = 5.0
    settings.forecast.network_history_days = 6.0
    assert settings.station(W01).upstream == ["TC-SUPHAN", "TC-SAMCHUK", "KRASIAO-REL"]
    assert settings.station(W01).predicted == ["TC-MOUTH-TIDE"]
    t_s = np.arange(NOW_S - 8 * 86_400.0, NOW_S + STEP_S / 2, STEP_S)
    wave = _wave(t_s, seed=3)
    # Upstream gauges on their own datum (several metres above ours): only changes carry over.
    suphan = 3.0 + wave
    db = store.open_store(settings)
    own = []
    for k, station in enumerate(settings.own_stations):
        if station.kind != "water_level":
            continue
        level = station.levels.watch_m - 1.0 + 0.3 * np.cos(2 * np.pi * t_s / M2_PERIOD_S + k)
        if station.id == W01:
            level = level + 0.8 * np.interp(t_s - SUPHAN_LAG_S, t_s, wave)
        own += [Reading(station.id, float(t), seq=i, water_level_m=float(v))
                for i, (t, v) in enumerate(zip(t_s, level, strict=True))]
    db.write_batch(own)
    thaiwater = FeedWriter(settings, db, "thaiwater")
    stopped = t_s <= NOW_S - 30 * 3600.0  # Sam Chuk's feed has served nothing for 30 hours
    values = [FeedValue("TC-SUPHAN", float(t), "water_level_m", float(v)) for t, v in zip(t_s, suphan, strict=True)]
    values += [FeedValue("TC-SAMCHUK", float(t), "water_level_m", 5.0 + float(v))
               for t, v in zip(t_s[stopped], np.interp(t_s - 3 * 3600.0, t_s, wave)[stopped], strict=True)]
    # KRASIAO-REL: the dam's feed has never delivered.
    outcome = thaiwater.write_values(values, now_s=NOW_S)
    assert len(outcome.stored) == len(values), (outcome.rejected[:3], outcome.qc_failed[:3])
    # The tide table an officer dropped reaches 12 hours past now (the horizon is 72 h).
    ahead = np.arange(NOW_S - 8 * 86_400.0, NOW_S + 12 * 3600.0 + 1.0, 3600.0)
    table = [FeedValue("TC-MOUTH-TIDE", float(t), "water_level_m", float(0.6 * np.cos(2 * np.pi * t / M2_PERIOD_S)))
             for t in ahead]
    outcome = FeedWriter(settings, db, "officer-drop").write_values(table, now_s=NOW_S)
    assert len(outcome.stored) == len(table), (outcome.rejected[:3], outcome.qc_failed[:3])

    with caplog.at_level(logging.WARNING, logger="floodwatch.scheduler.forecast_job"):
        issued = ForecastJob(settings, db, FixedClock(NOW_S + 60.0)).run_once()
    db.close()
    row = issued.station_ids.index(W01)
    used = issued.forecast.inputs_used[row]
    print(used)
    assert issued.forecast.model_name[row].endswith("+upstream"), (issued.forecast.model_name[row], used)
    assert "TC-SUPHAN (lag 6 h)" in used
    assert "TC-SUPHAN (lag 6 h) late" not in used
    assert "TC-SAMCHUK" in used and "late (last reading 30.0 h before the origin)" in used
    assert "KRASIAO-REL: not used, too little data shared with this station" in used
    assert "TC-MOUTH-TIDE" in used and "ends +12.0 h from the origin" in used
    # The officers' log says the same, once, naming the station.
    logged = [r.getMessage() for r in caplog.records if "station=LP-W01" in r.getMessage()]
    assert logged and "KRASIAO-REL" in logged[0] and "TC-SAMCHUK" in logged[0]
    assert np.isfinite(issued.forecast.median_m[row]).all()
    # A predicted series is an input, not a station to forecast.
    assert StationId("TC-MOUTH-TIDE") not in issued.station_ids
