"""Figures for the gauge page, printed as JSON.

    python -m floodwatch.gauge_page.bench              # all three
    python -m floodwatch.gauge_page.bench --skip-browser

- ``api``: response times of /api/stations and a station series over a store
  holding 30 days of every station (real SQLite, in-process client);
- ``fanout``: ``EventHub.publish`` cost and delivery time with many SSE
  clients connected to uvicorn on 127.0.0.1;
- ``browser``: reading stored + published -> new number in the DOM, in
  Debian's Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from typing import Any

from floodwatch.clock import SystemClock
from floodwatch.settings import load_settings
from floodwatch.vocabulary import QcFlag, Reading, StationId


def _open(tmp: str) -> tuple[Any, Any]:
    from floodwatch import store as store_pkg

    settings = load_settings()
    settings.store.url = f"sqlite:///{tmp}/floodwatch.db"
    settings.page.state_url = f"sqlite:///{tmp}/page.db"
    return settings, store_pkg.open_store(settings)


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples) * 1000, 2), "max_ms": round(max(samples) * 1000, 2)}


def bench_api(days: float = 30.0, repeats: int = 20) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from floodwatch.gauge_page import EventHub, create_app
    from floodwatch.gauge_page.screenshots import simulated_flood

    with tempfile.TemporaryDirectory() as tmp:
        settings, db = _open(tmp)
        readings = simulated_flood(settings, time.time(), hours=days * 24)
        db.write_batch(readings)
        app = create_app(settings, db, SystemClock(), hub=EventHub())
        out: dict[str, Any] = {"readings_in_store": len(readings)}
        with TestClient(app) as client:
            for path in ("/api/stations", "/api/stations/LP-W06/series?hours=72",
                         "/api/stations/LP-W06/series?hours=336"):
                client.get(path)
                samples = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    response = client.get(path)
                    samples.append(time.perf_counter() - started)
                    response.raise_for_status()
                out[path] = _ms(samples) | {"kib": round(len(response.content) / 1024, 1)}
        app.state.page.state.close()
        db.close()
    return out


def bench_fanout(clients: int = 100, events: int = 200) -> dict[str, Any]:
    import httpx

    from floodwatch.gauge_page import EventHub, create_app
    from floodwatch.gauge_page._serve import BackgroundServer

    with tempfile.TemporaryDirectory() as tmp:
        settings, db = _open(tmp)
        hub = EventHub()
        app = create_app(settings, db, SystemClock(), hub=hub)
        batch = [Reading(StationId(s.id), time.time(), seq=1, water_level_m=1.0, qc_flag=QcFlag.PASS)
                 for s in settings.level_stations]
        publish_s: list[float] = []

        async def listen(url: str, ready: asyncio.Semaphore) -> None:
            seen = 0
            async with httpx.AsyncClient(timeout=60) as c, c.stream("GET", url + "/api/events") as r:
                async for line in r.aiter_lines():
                    if line.startswith("event: hello"):
                        ready.release()
                    elif line.startswith("event: readings"):
                        seen += 1
                        if seen == events:
                            return

        def publish() -> None:
            for _ in range(events):
                started = time.perf_counter()
                hub.publish("readings", batch)
                publish_s.append(time.perf_counter() - started)
                time.sleep(0.005)

        async def run(url: str) -> float:
            ready = asyncio.Semaphore(0)
            tasks = [asyncio.create_task(listen(url, ready)) for _ in range(clients)]
            for _ in range(clients):
                await ready.acquire()
            started = time.perf_counter()
            thread = threading.Thread(target=publish)
            thread.start()
            await asyncio.gather(*tasks)
            thread.join()
            return time.perf_counter() - started

        with BackgroundServer(app, hub) as server:
            all_delivered_s = asyncio.run(run(server.url))
        app.state.page.state.close()
        db.close()
    return {"clients": clients, "events": events, "readings_per_event": len(batch),
            "publish": {"mean_ms": round(statistics.mean(publish_s) * 1000, 3),
                        "max_ms": round(max(publish_s) * 1000, 2)},
            "all_delivered_s": round(all_delivered_s, 2)}


def bench_browser(readings: int = 20) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from floodwatch.gauge_page import EventHub, create_app
    from floodwatch.gauge_page._serve import BackgroundServer
    from floodwatch.gauge_page.screenshots import CHROMIUM, CHROMIUM_ARGS

    with tempfile.TemporaryDirectory() as tmp:
        settings, db = _open(tmp)
        hub = EventHub()
        app = create_app(settings, db, SystemClock(), hub=hub)
        samples = []
        with BackgroundServer(app, hub) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_selector("#live.on")
            for i in range(readings):
                text = f"{1.0 + i * 0.01:.2f}"
                started = time.perf_counter()
                reading = Reading(StationId("LP-W04"), time.time(), seq=i, water_level_m=float(text),
                                  qc_flag=QcFlag.PASS)
                db.write_batch([reading])
                hub.publish("readings", [reading])
                page.wait_for_function(
                    "v => { const n = document.querySelector('#station-rows tr[data-station=LP-W04] .level');"
                    " return n !== null && n.textContent === v; }", arg=text, polling="raf")
                samples.append(time.perf_counter() - started)
                time.sleep(0.3)
            browser.close()
        app.state.page.state.close()
        db.close()
    return {"readings": readings, "stored_to_dom": _ms(samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gauge page figures as JSON.",
                                     epilog="example: python -m floodwatch.gauge_page.bench --skip-browser")
    parser.add_argument("--skip-browser", action="store_true", help="leave out the Chromium measurement")
    args = parser.parse_args(argv)
    figures = {"api": bench_api(), "fanout": bench_fanout()}
    if not args.skip_browser:
        figures["browser"] = bench_browser()
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
