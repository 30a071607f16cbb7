from floodwatch.vocabulary import StationId
from floodwatch.scheduler import silent_stations

A, B, C = StationId("A"), StationId("B"), StationId("C")


def test_station_is_silent_after_three_missed_intervals_or_if_it_never_reported():
    intervals = {A: 600.0, B: 600.0, C: 60.0}
    last = {A: 10_000.0, B: 10_000.0 - 1_801.0, C: None}
    assert silent_stations(last, intervals, now_s=10_000.0) == {B, C}
    assert silent_stations(last, intervals, now_s=10_000.0 + 1_800.0) == {B, C}
    assert silent_stations(last, intervals, now_s=10_000.0 + 1_801.0) == {A, B, C}
