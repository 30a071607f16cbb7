"""The InfluxDB store through real influxdb-client, against a stand-in checked with InfluxData's contract."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from floodwatch.errors import StoreError, StoreUnavailable
from floodwatch.settings import load_settings
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.store import Rejection, open_store
from floodwatch.store.influx import InfluxStore
from tests.store.influx_standin import InfluxStandIn, annotated_csv, evaluate, parse_line

W1, W2, R1 = StationId("LP-W01"), StationId("LP-W02"), StationId("LP-R01")


@pytest.fixture
def influx():
    with InfluxStandIn(token="secret-token", org="floodwatch", buckets={"floodwatch"}) as standin:
        yield standin
    assert not standin.violations, "requests broke InfluxData's contract:\n" + "\n".join(standin.violations)


def settings_for(url: str, token: str = "secret-token"):
    return load_settings(store={"url": url, "influx_token": token, "influx_org": "floodwatch",
                                "influx_bucket": "floodwatch"})


@pytest.fixture
def store(influx):
    s = open_store(settings_for(influx.url.replace("http://", "influxdb+http://")))
    assert isinstance(s, InfluxStore)
    yield s
    s.close()


def now_s() -> float:
    return float(int(time.time()) - 7200)


def level(sid, ts_s, value, seq=None, boot=None, flag=QcFlag.PASS, tests=""):
    return Reading(sid, ts_s, seq=seq, boot=boot, water_level_m=value, battery_v=3.9, qc_flag=flag, qc_tests=tests,
                   received_s=ts_s + 1.5)


def test_line_protocol_tags_fields_and_ms_timestamps(store, influx):
    t0 = now_s()
    store.write_batch([level(W1, t0 + 0.25, 1.23, seq=5, boot=2, flag=QcFlag.SUSPECT, tests='spike=3,"x"')])
    [body] = influx.write_bodies
    measurement, tags, fields, ts_ns = parse_line(body.strip(), "ms")
    assert measurement == "reading"
    assert dict(tags) == {"station": "LP-W01", "kind": "water_level"}
    assert fields == {"water_level_m": 1.23, "battery_v": 3.9, "seq": 5, "boot": 2, "qc_flag": 3,
                      "qc_tests": 'spike=3,"x"', "received_s": t0 + 1.75}
    assert ts_ns == int(round((t0 + 0.25) * 1000)) * 1_000_000


def test_round_trip_dedup_window_latest(store, influx):
    t0 = now_s()
    first = store.write_batch([level(W1, t0, 1.0, seq=1, boot=1), level(W1, t0 + 300, 2.0, seq=2, boot=1),
                               level(W1, t0 + 700, 9.0, seq=3, boot=1, flag=QcFlag.FAIL),
                               level(W2, t0 + 60, 1.5)])
    again = store.write_batch([level(W1, t0, 1.0, seq=1, boot=1),          # redelivered: same ts
                               level(W1, t0 + 301, 2.0, seq=2, boot=1),    # re-sent buffer, new stamp
                               level(W1, t0 + 1900, 3.0, seq=4, boot=1)])
    print(f"published 7, stored {first.stored + again.stored}, duplicates {first.duplicates + again.duplicates}")
    assert (first.stored, again.stored, again.duplicates) == (4, 1, 2)
    rs = store.read_readings(W1, t0, t0 + 3600)
    assert [(r.ts_s, r.seq, r.qc_flag) for r in rs] == [(t0, 1, 1), (t0 + 300, 2, 1), (t0 + 700, 3, 4),
                                                          (t0 + 1900, 4, 1)]
    assert rs[0].received_s == t0 + 1.5 and rs[0].battery_v == 3.9
    w = store.read_window([W1, W2, R1], "water_level_m", t0, t0 + 2400, 600)
    np.testing.assert_allclose(w.values[0], [1.5, np.nan, np.nan, 3.0])
    np.testing.assert_allclose(w.values[1], [1.5, np.nan, np.nan, np.nan])
    assert np.isnan(w.values[2]).all()
    w_all = store.read_window([W1], "water_level_m", t0, t0 + 2400, 600, include_failed=True)
    assert w_all.values[0, 1] == 9.0
    store.write_batch([Reading(R1, t0 - 30 * 86400, rain_mm=0.4, qc_flag=QcFlag.PASS)])  # silent for a month
    latest = store.latest([W1, W2, R1, StationId("LP-R04")])
    assert latest[W1].ts_s == t0 + 1900 and latest[W2].water_level_m == 1.5
    assert latest[R1].rain_mm == 0.4 and "LP-R04" not in latest


def test_rain_sums_never_double_count(store):
    t0 = now_s()
    rain = [Reading(R1, t0 + 600 * i, seq=i, boot=1, rain_mm=1.0, qc_flag=QcFlag.PASS) for i in range(6)]
    store.write_batch(rain)
    assert store.write_batch(rain[1:4]).duplicates == 3
    assert store.read_window([R1], "rain_mm", t0, t0 + 3600, 3600).values[0, 0] == pytest.approx(6.0)


def test_quarantine_and_counts(store):
    t0 = now_s()
    store.write_rejections([
        Rejection(t0, "floodwatch/LP-W01/telemetry", "bad_json", "payload is not JSON", b"{x", "LP-W01"),
        Rejection(t0, "floodwatch/LP-ZZ/telemetry", "unknown_station", "not in the registry", b"{}", None),
        Rejection(t0 + 1, "floodwatch/LP-W01/telemetry", "bad_json", "payload is not JSON", b"\xff,\"", "LP-W01"),
    ])
    q = store.quarantine(limit=2)
    assert [r.received_s for r in q] == [t0 + 1, t0] and q[0].payload == b"\xff,\""
    assert store.quarantine_counts() == {("bad_json", "LP-W01"): 2, ("unknown_station", ""): 1}
    assert store.stats().quarantined == 3


def test_outage_and_wrong_token_become_our_errors(influx, store):
    t0 = now_s()
    influx.fail_with(503)
    with pytest.raises(StoreUnavailable, match="503"):
        store.write_batch([level(W1, t0, 1.0)])
    influx.fail_with(None)
    assert store.write_batch([level(W1, t0, 1.0)]).stored == 1
    bad = InfluxStore(influx.url, "wrong-token", "floodwatch", "floodwatch")
    with pytest.raises(StoreError, match="401.*INFLUX_TOKEN"):
        bad.read_readings(W1, t0 - 10, t0 + 10)
    bad.close()
    missing = InfluxStore(influx.url, "secret-token", "floodwatch", "nope")
    with pytest.raises(StoreError, match="404"):
        missing.write_batch([level(W1, t0, 1.0)])
    missing.close()


def test_unreachable_server_is_store_unavailable():
    s = InfluxStore("http://127.0.0.1:9", "t", "floodwatch", "floodwatch", timeout_s=1)
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        s.write_batch([level(W1, now_s(), 1.0)])
    s.close()


def test_retention_deletes_old_readings(store):
    t0 = now_s()
    store.write_batch([level(W1, t0 - 500 * 86400, 1.0), level(W1, t0, 1.1)])
    store.apply_retention(t0)
    assert [r.ts_s for r in store.read_readings(W1, t0 - 600 * 86400, t0 + 1)] == [t0]


def test_stand_in_answers_annotated_csv_in_influxdb_layout():
    """Same layout as InfluxDB 2.x's documented query response (annotations, header, one block per table)."""
    t_ns = 1_700_000_000_000_000_000
    points = {("b", "reading", (("station", "LP-W01"),), "water_level_m", t_ns): 1.5,
              ("b", "reading", (("station", "LP-W01"),), "seq", t_ns): 7}
    flux = 'from(bucket: "b") |> range(start: 0, stop: 2000000000) |> filter(fn: (r) => r._field == "water_level_m")'
    assert annotated_csv(evaluate(flux, points, {"b"})).split("\r\n") == [
        "#group,false,false,true,true,false,false,true,true,true",
        "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string",
        "#default,_result,,,,,,,,",
        ",result,table,_start,_stop,_time,_value,_field,_measurement,station",
        ",,0,1970-01-01T00:00:00Z,2033-05-18T03:33:20Z,2023-11-14T22:13:20Z,1.5,water_level_m,reading,LP-W01",
        "", "",
    ]


@pytest.mark.skipif(not (os.environ.get("FLOODWATCH_TEST_INFLUX_URL")
                         and os.environ.get("FLOODWATCH_TEST_INFLUX_TOKEN")),
                    reason="live InfluxDB 2.x test: set FLOODWATCH_TEST_INFLUX_URL and FLOODWATCH_TEST_INFLUX_TOKEN "
                           "(and FLOODWATCH_TEST_INFLUX_ORG / _BUCKET, default floodwatch) to run it")
def test_live_influxdb_round_trip():
    s = InfluxStore(os.environ["FLOODWATCH_TEST_INFLUX_URL"], os.environ["FLOODWATCH_TEST_INFLUX_TOKEN"],
                    os.environ.get("FLOODWATCH_TEST_INFLUX_ORG", "floodwatch"),
                    os.environ.get("FLOODWATCH_TEST_INFLUX_BUCKET", "floodwatch"),
                    kinds={"LP-TEST": "water_level"})
    try:
        sid = StationId(f"LP-TEST-{os.getpid()}")
        t0 = now_s()
        first = s.write_batch([level(sid, t0, 1.0, seq=1, boot=1), level(sid, t0 + 300, 2.0, seq=2, boot=1)])
        again = s.write_batch([level(sid, t0, 1.0, seq=1, boot=1), level(sid, t0 + 700, 3.0, seq=3, boot=1)])
        print(f"live: stored {first.stored + again.stored}, duplicates {again.duplicates}")
        assert (first.stored, again.stored, again.duplicates) == (2, 1, 1)
        assert [r.seq for r in s.read_readings(sid, t0, t0 + 3600)] == [1, 2, 3]
        w = s.read_window([sid], "water_level_m", t0, t0 + 1200, 600)
        np.testing.assert_allclose(w.values[0], [1.5, 3.0])
        assert s.latest([sid])[sid].seq == 3
    finally:
        s.close()


def test_bulk_write_goes_through_the_batching_write_api(store, influx):
    t0 = now_s() - 86400
    history = [level(W2, t0 + 600 * i, 1.0 + 0.01 * i) for i in range(1200)]
    store.bulk_write(history, batch_size=500)
    writes = [r for r in influx.requests if r[1] == "/api/v2/write"]
    assert len(writes) == 3  # 500 + 500 + 200 lines, one request per batch
    assert len(store.read_readings(W2, t0, t0 + 600 * 1200)) == 1200
