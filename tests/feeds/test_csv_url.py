"""A release schedule published at a URL: loaded when it changes, as a predicted discharge series."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from floodwatch.feeds import FeedService
from floodwatch.settings import FeedConfig, StationConfig
from floodwatch.vocabulary import QcFlag
from tests.feeds.conftest import NOW_S, rows
from tests.feeds.test_dropfolder import be


class Published:
    """A web server on 127.0.0.1 that serves whatever ``body`` is now (and counts requests)."""

    def __init__(self) -> None:
        self.body = b""
        self.content_type = "text/csv; charset=utf-8"
        self.requests = 0
        published = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                published.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", published.content_type)
                self.send_header("Content-Length", str(len(published.body)))
                self.end_headers()
                self.wfile.write(published.body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rid/krasiao_release_plan.csv"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def plan(feed_settings, db, clock) -> Iterator[tuple[FeedService, Published]]:
    published = Published()
    feed_settings.feeds.append(FeedConfig(id="release-plan", kind="csv_url", url=published.url, name_en="RID plan"))
    feed_settings.stations.append(StationConfig(
        id="KRASIAO-PLAN", name_th="แผนการระบายน้ำ เขื่อนกระเสียว", name_en="Krasiao dam, announced releases",
        kind="discharge", sensor="reported", zone="moo-5", lat=14.86, lon=99.64, external=True,
        series="predicted", feed="release-plan", feed_station="KSW-PLAN", max_discharge_m3_s=400.0))
    service = FeedService(feed_settings, db, clock).start()
    yield service, published
    service.stop()
    published.close()


def schedule(start_s: float, m3_s: list[float]) -> bytes:
    lines = ["station_code,date_time,release_m3_s"]
    lines += [f"KSW-PLAN,{be(start_s + k * 6 * 3600)},{v}" for k, v in enumerate(m3_s)]
    return ("\n".join(lines) + "\n").encode()


def test_an_announced_schedule_is_loaded_when_it_changes_and_replaces_the_old_plan(plan, db, clock):
    service, published = plan
    published.body = schedule(NOW_S, [40, 80, 130, 130, 130, 90, 60, 40])
    first = service.run_once("release-plan")
    assert first.ok and first.stored == 8
    planned = rows(db, "KRASIAO-PLAN")
    assert [r.discharge_m3_s for r in planned] == [40, 80, 130, 130, 130, 90, 60, 40]
    assert planned[-1].ts_s == NOW_S + 42 * 3600 and {r.qc_flag for r in planned} == {QcFlag.PASS}

    unchanged = service.run_once("release-plan")
    assert unchanged.ok and unchanged.stored == 0 and published.requests == 2

    # RID revises: from day two the release stays at 130 m3/s.
    published.body = schedule(NOW_S + 24 * 3600, [130, 130, 130, 130])
    service.run_once("release-plan")
    after = [r.discharge_m3_s for r in rows(db, "KRASIAO-PLAN")]
    assert after == [40, 80, 130, 130, 130, 130, 130, 130]
    assert service.describe("release-plan")["stations"]["KRASIAO-PLAN"]["last_data_s"] == NOW_S + 42 * 3600


def test_a_web_page_instead_of_the_csv_fails_the_run_and_stores_nothing(plan, db):
    service, published = plan
    published.body, published.content_type = b"<html><title>Login</title></html>", "text/html"
    report = service.run_once("release-plan")
    assert not report.ok and report.error.reason == "html_not_csv" and rows(db, "KRASIAO-PLAN") == []
