"""Exports of readings, forecasts and the alert log: over the real HTTP API, streamed in bounded memory,
and downloaded by an officer in a real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import time
import tracemalloc
from datetime import datetime

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from floodwatch import alerts, gauge_page
from floodwatch.clock import SystemClock
from floodwatch.gauge_page._export import bangkok_time, parse_when
from floodwatch.timefmt import BANGKOK
from floodwatch.vocabulary import QcFlag, Reading, StationId

DAY = 86_400.0


@pytest.fixture
def alert_service(page_settings):
    service = alerts.AlertService(page_settings, SystemClock())
    service.start()
    yield service
    service.close()


def seed(db, now: float) -> None:
    rows = []
    for k in range(144):  # a day of 10-minute readings
        ts = now - DAY + 600 * k
        flag = QcFlag.FAIL if k == 50 else QcFlag.PASS
        rows.append(Reading(StationId("LP-W01"), ts, seq=k, boot=1, water_level_m=1.0 + k / 1000, battery_v=3.9,
                            rssi_dbm=-80.0, qc_flag=flag, qc_tests="spike=4" if k == 50 else ""))
        rows.append(Reading(StationId("LP-R01"), ts, seq=k, boot=1, rain_mm=0.2, qc_flag=QcFlag.PASS))
        rows.append(Reading(StationId("LP-W02"), ts, seq=k, boot=1, water_level_m=0.5, qc_flag=QcFlag.PASS))
    db.write_batch(rows)
    t = now + 600 * np.arange(1, 7)
    db.write_forecast(now, ["LP-W01"], t, [[1.2, 1.3, 1.4, 1.5, 1.4, 1.3]], [[1.0] * 6], [[1.7] * 6])


def get(server, path: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, timeout=30)


def test_time_helpers():
    ts = datetime(2026, 11, 29, 14, 5, tzinfo=BANGKOK).timestamp()
    assert bangkok_time(ts) == "2026-11-29T14:05:00+07:00"
    assert bangkok_time(ts, "be") == "2569-11-29 14:05:00"
    assert parse_when("2026-11-29", 0) == datetime(2026, 11, 29, tzinfo=BANGKOK).timestamp()
    assert parse_when("2569-11-29", 0) == parse_when("2026-11-29", 0)  # Buddhist era understood
    assert parse_when("2026-11-29", 0, end_of_day=True) == parse_when("2026-11-30", 0)
    assert parse_when("2026-11-29T07:05:00+00:00", 0) == ts
    assert parse_when(None, 42.0) == 42.0
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_when("yesterday", 0)


def test_readings_csv_for_a_station_in_bangkok_time_and_page_units(page_settings, page_store, serve_page):
    now = time.time()
    seed(page_store, now)
    server = serve_page()
    r = get(server, "/api/export/readings.csv", station="LP-W01", start=str(now - DAY - 1), end=str(now))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="floodwatch-readings-LP-W01-' in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())  # spreadsheets then read the Thai right
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 144 and {row["station_id"] for row in rows} == {"LP-W01"}
    first = rows[0]
    assert first["time"].endswith("+07:00") and float(first["ts_utc_s"]) == pytest.approx(now - DAY, abs=1e-3)
    assert first["water_level_m"] == "1.0" and first["qc"] == "pass" and first["battery_v"] == "3.9"
    failed = rows[50]
    assert (failed["qc_flag"], failed["qc"], failed["qc_tests"]) == ("4", "fail", "spike=4")  # kept, and said so
    be = get(server, "/api/export/readings.csv", station="LP-W01", era="be", start=str(now - 3600))
    year = datetime.fromtimestamp(now, tz=BANGKOK).year + 543
    assert list(csv.DictReader(io.StringIO(be.text.lstrip("\ufeff"))))[0]["time"].startswith(f"{year}-")


def test_a_zone_is_its_stations_and_json_carries_units(page_settings, page_store, serve_page):
    now = time.time()
    seed(page_store, now)
    server = serve_page()
    r = get(server, "/api/export/readings.json", zone="moo-5", start=str(now - 2 * DAY))
    doc = r.json()
    assert doc["stations"] == ["LP-W01", "LP-R01"] and doc["timezone"] == "Asia/Bangkok"
    assert doc["units"]["water_level_m"] == "m above mean sea level"
    assert len(doc["rows"]) == 288
    rain = [row for row in doc["rows"] if row["station_id"] == "LP-R01"]
    assert rain[0]["rain_mm"] == 0.2 and rain[0]["water_level_m"] is None


def test_forecasts_and_the_alert_log(page_settings, page_store, serve_page, alert_service):
    now = time.time()
    seed(page_store, now)
    alert_service.send_manual_message(["moo-5"], "ทดสอบ น้ำขึ้น", "Test: water rising", by="somchai")
    alert_service.send_manual_message(["moo-1"], "หมู่ 1", "Moo 1", by="somchai")
    server = serve_page(alerts=alert_service)
    fc = list(csv.DictReader(io.StringIO(get(server, "/api/export/forecasts.csv", station="LP-W01",
                                             end=str(now + DAY)).text.lstrip("\ufeff"))))
    assert [row["median_m"] for row in fc] == ["1.2", "1.3", "1.4", "1.5", "1.4", "1.3"]
    assert fc[0]["lead_h"] == "0.167" and fc[0]["lower_5_m"] == "1.0" and fc[0]["upper_95_m"] == "1.7"
    log = get(server, "/api/export/alerts.json", zone="moo-5", start=str(now - 60), end=str(now + 60)).json()
    assert [row["zone_id"] for row in log["rows"]] == ["moo-5"]
    assert log["rows"][0]["text"].startswith("ทดสอบ น้ำขึ้น") and log["rows"][0]["kind"] == "manual"
    everything = get(server, "/api/export/alerts.csv", start=str(now - 60), end=str(now + 60)).text
    assert len(list(csv.DictReader(io.StringIO(everything.lstrip("\ufeff"))))) == 2


def test_bad_requests_say_what_is_wrong(page_settings, page_store, serve_page):
    server = serve_page()
    assert get(server, "/api/export/readings.csv", station="LP-ZZ").status_code == 404
    assert get(server, "/api/export/readings.csv", zone="moo-99").status_code == 404
    bad = get(server, "/api/export/readings.csv", start="last tuesday")
    assert bad.status_code == 422 and "ISO-8601" in bad.text
    assert get(server, "/api/export/readings.csv", start="2026-11-30", end="2026-11-01").status_code == 422
    assert get(server, "/api/export/everything.csv").status_code == 422
    assert get(server, "/api/export/alerts.csv").status_code == 503  # no alert service in this process


def test_long_exports_stream_in_bounded_memory(page_settings, page_store, serve_page):
    """120 days of 10-minute readings (17,280 rows) through the real API take no more memory than a week:
    rows are streamed, never gathered (a year of every station: benchmarks/export.py)."""
    now = float(int(time.time() // 600 * 600))
    start = now - 120 * DAY
    t = start + 600 * np.arange(int(120 * DAY / 600))
    for sid in ("LP-W01",):
        page_store.write_batch([Reading(StationId(sid), float(ts), seq=i, water_level_m=1.0 + 0.001 * (i % 1000),
                                        battery_v=3.9, qc_flag=QcFlag.PASS) for i, ts in enumerate(t)])
    server = serve_page()

    def stream(first_s: float) -> tuple[int, int, int]:
        tracemalloc.reset_peak()
        sent = rows = 0
        with httpx.stream("GET", f"{server.url}/api/export/readings.csv", timeout=120,
                          params={"zone": "moo-5", "start": str(first_s), "end": str(now + 1)}) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                sent += len(chunk)
                rows += chunk.count(b"\n")
        return rows - 1, sent, tracemalloc.get_traced_memory()[1]

    tracemalloc.start()
    try:
        week = stream(now - 7 * DAY)
        year = stream(start)
    finally:
        tracemalloc.stop()
    print(f"export: a week {week[0]} rows {week[1] / 1e6:.2f} MB, traced peak {week[2] / 1e6:.1f} MB; "
          f"120 days {year[0]} rows {year[1] / 1e6:.1f} MB, traced peak {year[2] / 1e6:.1f} MB")
    assert year[0] == len(t)  # moo-5 is LP-W01 and the rain gauge LP-R01, which sent nothing
    assert year[1] > 15 * week[1]
    # 17 times the data (gathered as Readings it would take ~7 MB more), the same memory.
    assert year[2] < week[2] + 1_000_000


@pytest.mark.browser
def test_officer_downloads_a_csv_from_the_page(page_settings, page_store, serve_page, watched_page, tmp_path):
    now = time.time()
    seed(page_store, now)
    gauge_page.create_officer(page_settings, "somchai", "correct horse battery")
    server = serve_page()
    page = watched_page.page
    page.goto(server.url + "/")
    expect(page.locator("#export")).to_be_hidden()  # officers only
    page.click("#login-open")
    page.fill("#login-user", "somchai")
    page.fill("#login-password", "correct horse battery")
    page.click("#login-submit")
    expect(page.locator("#export-form")).to_be_visible()
    expect(page.locator("#export-where option[value='LP-W01']")).to_have_count(1)
    page.select_option("#export-where", "LP-W01")
    page.check("#export-be")
    with page.expect_download() as info:
        page.click("#export-download")
    download = info.value
    assert download.suggested_filename.startswith("floodwatch-readings-LP-W01-") and \
        download.suggested_filename.endswith(".csv")
    path = tmp_path / "export.csv"
    download.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert len(rows) == 144 and rows[0]["station_id"] == "LP-W01"
    assert rows[0]["time"].startswith(str(datetime.fromtimestamp(now - DAY, tz=BANGKOK).year + 543))
    # Thai labels by default, English with the page's language button.
    expect(page.locator("#export-download")).to_have_text("ดาวน์โหลด")
    page.click("#lang-toggle")
    expect(page.locator("#export-download")).to_have_text("Download")
    assert not watched_page.console_errors, watched_page.console_errors
    assert all(u.startswith(server.url) for u in watched_page.requested_urls)
    json.dumps(rows[0])


def test_two_exports_at_a_time_and_a_dropped_download_frees_its_place(page_settings, page_store, serve_page):
    import socket
    from urllib.parse import urlencode

    now = float(int(time.time() // 600 * 600))
    t = now - 365 * DAY + 600 * np.arange(int(365 * DAY / 600))  # ~6 MB of CSV: more than the sockets buffer
    page_store.write_batch([Reading(StationId("LP-W01"), float(ts), seq=i, water_level_m=1.0, qc_flag=QcFlag.PASS)
                            for i, ts in enumerate(t)])
    server = serve_page()
    query = urlencode({"station": "LP-W01", "start": str(t[0]), "end": str(now + 1)})

    def slow_reader() -> socket.socket:
        """A browser that starts a download and then stops reading it."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /api/export/readings.csv?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        return sock

    readers = [slow_reader(), slow_reader()]
    busy = get(server, "/api/export/readings.csv", station="LP-W01", start=str(now - 3600))
    assert busy.status_code == 429 and "2 exports" in busy.text
    for sock in readers:  # the officer closed the tab
        sock.close()
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        status = get(server, "/api/export/readings.json", station="LP-W01", start=str(now - 3600)).status_code
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200
