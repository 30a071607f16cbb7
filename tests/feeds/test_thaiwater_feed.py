"""The ThaiWater feed against its stand-in on a real port: catch-up, resume, and a real network's failures."""

from __future__ import annotations

import pytest

from floodwatch.vocabulary import QcFlag
from tests.feeds.conftest import NOW_S, STEP_S, rows, sam_chuk_m, suphan_m

CATCH_UP_POINTS = int(72 * 3600 / STEP_S)  # 72 h of 15-minute readings, the last one from waterlevel_load


def test_first_run_catches_up_bounded_then_takes_only_what_is_new(service, db, clock, thaiwater):
    report = service.run_once("thaiwater")
    print(f"first run: {report.summary()}")
    assert report.ok and not report.problems
    samchuk, suphan, krasiao = rows(db, "TC-SAMCHUK"), rows(db, "TC-SUPHAN"), rows(db, "KRASIAO-REL")
    assert len(samchuk) == len(suphan) == CATCH_UP_POINTS
    assert samchuk[0].ts_s == NOW_S - 72 * 3600 + STEP_S and samchuk[-1].ts_s == NOW_S
    assert samchuk[-1].water_level_m == pytest.approx(round(float(sam_chuk_m(NOW_S)), 2))
    assert suphan[100].water_level_m == pytest.approx(round(float(suphan_m(suphan[100].ts_s)), 2))
    assert all(r.qc_flag == QcFlag.PASS for r in samchuk[1:] + suphan[1:]), "a gauge at cm resolution is not stuck"
    assert [round(r.discharge_m3_s, 3) for r in krasiao] == [60.0]
    assert report.stored == len(service.stored) == 2 * CATCH_UP_POINTS + 1

    again = service.run_once("thaiwater")
    assert again.ok and again.stored == 0 and again.fetched == 0  # nothing new since the last run

    clock.advance(1800)
    later = service.run_once("thaiwater")
    assert later.stored == 2 * 2  # two new quarter hours per gauge (one of them from history)
    clock.advance(1800)
    hour = service.run_once("thaiwater")
    assert hour.stored == 2 * 2 + 1  # and the release over the hour that just ended
    health = service.describe("thaiwater")
    assert health["state"] == "ok" and health["last_success_s"] == NOW_S + 3600
    assert health["stations"]["TC-SAMCHUK"]["last_data_s"] == NOW_S + 3600


def test_resumes_after_downtime_from_its_cursor_but_never_further_back_than_catch_up(service, db, clock):
    service.run_once("thaiwater")
    clock.advance(10 * 3600)  # ten hours down
    report = service.run_once("thaiwater")
    assert report.stored == 2 * 40 + 1  # every missed quarter hour of both gauges, and the release
    ts = [r.ts_s for r in rows(db, "TC-SAMCHUK")]
    assert ts == sorted(set(ts)) and len(ts) == CATCH_UP_POINTS + 40
    assert all(b - a == STEP_S for a, b in zip(ts, ts[1:], strict=False)), "no gap left, no duplicate"

    clock.advance(9 * 86_400)  # down for nine days: catches up catch_up_h (72 h), not more
    service.run_once("thaiwater")
    recent = rows(db, "TC-SAMCHUK", NOW_S + 10 * 3600 + 1)
    assert len(recent) == CATCH_UP_POINTS


@pytest.mark.parametrize(("mode", "reason"), [
    ("timeout", "timeout"),
    ("html", "html_not_json"),
    ("5xx", "http_5xx"),
    ("half_json", "truncated_json"),
    ("cut", "truncated"),
])
def test_a_failed_fetch_stores_nothing_moves_no_cursor_and_the_next_run_gets_it_all(
        service, db, clock, thaiwater, mode, reason):
    service.run_once("thaiwater")
    clock.advance(3600)
    thaiwater.fail(mode, path="waterlevel_load")
    report = service.run_once("thaiwater")
    print(f"{mode}: {report.error}")
    assert not report.ok and report.error.reason == reason
    assert report.error.detail and "Traceback" not in report.error.detail
    health = service.describe("thaiwater")
    assert health["state"] == "failing" and health["last_error"]["reason"] == reason
    assert len(rows(db, "TC-SAMCHUK")) == CATCH_UP_POINTS  # nothing of the failed run
    recovered = service.run_once("thaiwater")
    assert recovered.ok and len(rows(db, "TC-SAMCHUK")) == CATCH_UP_POINTS + 4
    assert service.describe("thaiwater")["state"] == "ok"


def test_a_slow_answer_within_the_timeout_is_taken(service, db, thaiwater):
    thaiwater.fail("slow", path="waterlevel_load")
    report = service.run_once("thaiwater")
    assert report.ok and len(rows(db, "TC-SAMCHUK")) == CATCH_UP_POINTS


def test_a_station_missing_from_the_answer_is_named_and_the_others_are_stored(service, db, thaiwater):
    thaiwater.fail("missing", station="T.1", path="waterlevel_load")
    report = service.run_once("thaiwater")
    assert report.ok and report.missing == {"TC-SUPHAN"}
    [problem] = [p for p in report.problems if p.reason == "missing_station"]
    assert "'T.1'" in problem.detail and "TC-SUPHAN" in problem.detail
    assert len(rows(db, "TC-SAMCHUK")) == CATCH_UP_POINTS and rows(db, "TC-SUPHAN") == []
    health = service.describe("thaiwater")
    assert health["state"] == "degraded" and health["stations"]["TC-SUPHAN"]["missing"]
    service.run_once("thaiwater")  # back in the next answer: its history is caught up too
    assert len(rows(db, "TC-SUPHAN")) == CATCH_UP_POINTS
    assert service.describe("thaiwater")["state"] == "ok"


def test_yesterdays_data_is_flagged_stale_not_stored_as_new(service, db, clock, thaiwater):
    service.run_once("thaiwater")
    clock.advance(3600)
    thaiwater.fail("stale", path="waterlevel_load")
    report = service.run_once("thaiwater")
    assert report.ok and report.stored == 1  # only the dam's hourly release, from its own (current) answer
    assert report.stale == {"TC-SAMCHUK", "TC-SUPHAN"}
    assert any(p.reason == "stale" and "old" in p.detail for p in report.problems)
    assert len(rows(db, "TC-SAMCHUK")) == CATCH_UP_POINTS
    health = service.describe("thaiwater")
    assert health["state"] == "stale" and health["stations"]["TC-SAMCHUK"]["stale"]


def test_a_value_in_centimetres_is_named_and_kept_out_of_the_data(service, db, thaiwater):
    thaiwater.fail("centimetres", station="T.1", path="waterlevel_load")  # 250 instead of 2.50
    report = service.run_once("thaiwater")
    [problem] = [p for p in report.problems if p.reason == "looks_like_centimetres"]
    assert "TC-SUPHAN" in problem.detail and "centimetres" in problem.detail
    # 250 m is beyond what any gauge can read: refused at the boundary like a node's payload, kept in quarantine.
    assert any(p.reason == "out_of_physics" and p.station_id == "TC-SUPHAN" for p in report.problems)
    [kept] = db.quarantine(station_id="TC-SUPHAN")
    assert kept.reason == "out_of_physics" and kept.topic == "feed/thaiwater/TC-SUPHAN"
    assert rows(db, "TC-SUPHAN")[-1].ts_s < NOW_S  # the history before it is stored, the bad value is not
    window = db.read_window(["TC-SUPHAN"], "water_level_m", NOW_S - 1, NOW_S + 1, 2.0)
    assert window.values[0, 0] != window.values[0, 0]  # NaN: it never reaches a forecast


def test_a_centimetre_value_within_physics_is_stored_failed_by_qc(service, db, thaiwater):
    thaiwater.level_m = lambda gauge, t: 0.45 + 0.0 * t  # a low river: 0.45 m, sent as 45
    thaiwater.fail("centimetres", station="T.1", path="waterlevel_load")
    report = service.run_once("thaiwater")
    assert any(p.reason == "looks_like_centimetres" for p in report.problems)
    latest = rows(db, "TC-SUPHAN")[-1]
    assert latest.ts_s == NOW_S and latest.water_level_m == 45.0 and latest.qc_flag == QcFlag.FAIL
    assert "gross_range=4" in latest.qc_tests
    assert any(p.reason == "qc_failed" and p.station_id == "TC-SUPHAN" for p in report.problems)
