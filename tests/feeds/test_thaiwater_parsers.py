"""ThaiWater parsers, pure, on vendored recorded-shape payloads (see fixtures/README.md)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from floodwatch.errors import FeedError
from floodwatch.feeds import _http
from floodwatch.feeds.thaiwater import (
    bangkok_time,
    looks_like_centimetres,
    number,
    parse_dams,
    parse_waterlevel_graph,
    parse_waterlevel_load,
)

FIXTURES = Path(__file__).with_name("fixtures")
BKK = ZoneInfo("Asia/Bangkok")


def load(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def bkk(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BKK).timestamp()


def test_waterlevel_load_reads_strings_bangkok_times_banks_and_skips_rows_without_a_station_id():
    records = {r.oldcode: r for r in parse_waterlevel_load(load("thaiwater_waterlevel_load.json"))}
    assert set(records) == {"T.13", "T.1", "T.14"}  # the row without station.id is skipped
    t13 = records["T.13"]
    assert t13.station_id == "2391" and t13.level_msl_m == 4.37
    assert t13.ts_s == bkk("2026-11-29 14:00") == datetime.fromisoformat("2026-11-29T07:00:00+00:00").timestamp()
    assert (t13.min_bank_m, t13.left_bank_m, t13.right_bank_m, t13.ground_level_m) == (6.0, 6.2, 6.0, -2.0)
    assert t13.situation_level == 4 and t13.agency == "RID"
    assert t13.name_th == "แม่น้ำท่าจีน อ.สามชุก" and t13.name_en == "Tha Chin river, Sam Chuk"
    assert records["T.1"].name_en is None and records["T.1"].agency == "HII"
    # a gauge listed without a level is kept, with None, so the feed can say which one it was
    assert records["T.14"].level_msl_m is None and records["T.14"].situation_level is None


def test_waterlevel_load_also_accepts_the_data_wrapper_and_refuses_another_shape():
    doc = {"result": "OK", "data": load("thaiwater_waterlevel_load.json")}
    assert len(parse_waterlevel_load(doc)) == 3
    with pytest.raises(FeedError) as err:
        parse_waterlevel_load({"result": "OK", "data": []})
    assert err.value.reason == "unexpected_shape" and "docs/feeds.md" in err.value.detail


def test_graph_points_in_time_order_with_gaps_left_out():
    points = parse_waterlevel_graph(load("thaiwater_waterlevel_graph.json"))
    assert points == [(bkk("2026-11-29 11:00"), 4.21), (bkk("2026-11-29 11:15"), 4.23),
                      (bkk("2026-11-29 11:45"), 4.27), (bkk("2026-11-29 12:00"), 4.29)]


def test_dam_releases_in_m3_per_s_from_million_m3_per_day_and_per_hour():
    records = parse_dams(load("thaiwater_dam.json"))
    krasiao = [r for r in records if r.dam_id == "38"]
    daily = next(r for r in krasiao if r.period == "daily")
    hourly = next(r for r in krasiao if r.period == "hourly")
    assert daily.released_m3_s == pytest.approx(100.0)  # 8.64 million m3 in a day
    assert hourly.released_m3_s == pytest.approx(130.0)  # 0.468 million m3 in an hour
    assert daily.ts_s == bkk("2026-11-28 00:00") and hourly.ts_s == bkk("2026-11-29 13:00")
    assert daily.oldcode == "RID-KSW" and daily.name_en == "Krasiao Dam"
    assert next(r for r in records if r.dam_id == "40").released_m3_s is None


def test_numbers_times_and_buddhist_era():
    assert [number(v) for v in ("2.41", "1,950.00", "-", "", None, "N/A", 3, True, "abc")] == \
        [2.41, 1950.0, None, None, None, None, 3.0, None, None]
    assert bangkok_time("2569-11-29 14:00") == bkk("2026-11-29 14:00")
    assert bangkok_time("2026-11-29") == bkk("2026-11-29 00:00")
    assert bangkok_time("2026-11-29T07:00:00+00:00") == bkk("2026-11-29 14:00")
    assert bangkok_time("29 Nov") is None and bangkok_time(None) is None


def test_centimetres_are_recognised_against_the_station_range(make_settings):
    station = make_settings().station("LP-W01")  # range -2.0 .. 4.5 m
    assert looks_like_centimetres(145.0, station)
    assert not looks_like_centimetres(1.45, station)
    assert not looks_like_centimetres(900.0, station)  # 9 m does not fit either: just out of range


@pytest.mark.parametrize(("body", "content_type", "reason"), [
    (b"<!DOCTYPE html><html><head><title>Maintenance</title></head></html>", "text/html", "html_not_json"),
    (b'{"waterlevel_data": {"data": [{"id": 1, "waterlevel_msl": "2.', "application/json", "truncated_json"),
    (b'{"a": 1,, "b": 2}', "application/json", "bad_json"),
    (b"   ", "application/json", "empty"),
])
def test_bodies_that_are_not_json_say_what_they_were(body, content_type, reason):
    with pytest.raises(FeedError) as err:
        _http.decode_json(body, "http://example/waterlevel_load", content_type)
    assert err.value.reason == reason
    if reason == "html_not_json":
        assert "'Maintenance'" in err.value.detail
