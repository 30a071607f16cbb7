"""Screenshots of the live page during a simulated flood, for the README and docs.

    python -m floodwatch.gauge_page.screenshots            # writes docs/screenshots/overview.png, station.png

Everything is real and local: a SQLite store in a temporary folder filled
with a simulated 48-hour flood, the real forecaster (``scheduler.ForecastJob``),
the real alert service delivering to the LINE stand-in, the page served by
uvicorn on 127.0.0.1 and photographed by Debian's Chromium via Playwright.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
from pathlib import Path

import numpy as np

from floodwatch.settings import PROJECT_ROOT, Settings, load_settings
from floodwatch.vocabulary import QcFlag, Reading, StationId

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
M2_PERIOD_S = 12.42 * 3600.0

# Where each level station ends up at the end of the simulated flood, as a
# height relative to its warning levels: (level index 0..2, offset m).
_FLOOD_TARGETS = {
    "LP-W06": (2, 0.08),   # village street: evacuate
    "LP-W05": (1, 0.06),   # pumping station sump: warning
    "LP-W01": (1, 0.03),   # river at the temple: warning
    "LP-W03": (0, 0.10),   # school canal: watch
    "LP-W02": (0, -0.08),  # bridge: just below watch
    "LP-W04": (0, -0.25),  # sluice gate: normal
    "LP-W07": (0, -0.40),  # Road 346: normal, and its node went offline
}


def simulated_flood(settings: Settings, end_s: float, *, hours: float = 48.0, step_s: float = 600.0,
                    seed: int = 7) -> list[Reading]:
    """Tide plus a monsoon flood for every station, ending at ``end_s`` (UTC epoch s).

    Level stations follow a semidiurnal tide with a flood surge over the last
    day that leaves each at the height in ``_FLOOD_TARGETS``; rain gauges see
    a burst while the water rises. Spikes (QC fail) and a suspect reading are
    included so the chart's QC marks show, and LP-W07's node falls silent two
    hours before the end on a low battery.
    """
    rng = np.random.default_rng(seed)
    t_s = end_s - np.arange(int(hours * 3600 / step_s), -1, -1) * step_s
    out: list[Reading] = []
    surge_start_s = end_s - 20 * 3600.0

    def surge_shape(t: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(t - (surge_start_s + 8 * 3600.0)) / (2.5 * 3600.0)))

    for k, station in enumerate(settings.own_stations):  # external stations come by feeds, not nodes
        battery_v = 4.05 - 0.004 * np.arange(t_s.size) / 6 - (0.5 if station.id == "LP-W07" else 0.0)
        rssi = -70.0 - 8.0 * (k % 4) + rng.normal(0, 2, t_s.size)
        if station.kind == "water_level":
            levels = station.levels.as_tuple()  # type: ignore[union-attr]
            which, offset_m = _FLOOD_TARGETS.get(station.id, (0, -0.3))
            tide = 0.35 * np.sin(2 * math.pi * (t_s - end_s) / M2_PERIOD_S + k) + 0.10 * np.sin(
                2 * math.pi * (t_s - end_s) / 86400.0)
            base_m = levels[0] - 0.75
            target_m = levels[which] + offset_m
            surge_m = (target_m - base_m - tide[-1]) / surge_shape(np.array([end_s]))[0]
            level = base_m + tide + surge_m * surge_shape(t_s) + rng.normal(0, 0.008, t_s.size)
            for i, ts in enumerate(t_s):
                if station.id == "LP-W07" and ts > end_s - 2 * 3600.0:
                    break
                flag, tests, value = QcFlag.PASS, "", float(level[i])
                if station.id in ("LP-W03", "LP-W06") and i == t_s.size - 37:
                    flag, tests, value = QcFlag.FAIL, "spike", value + 0.9
                if station.id == "LP-W01" and i == t_s.size - 20:
                    flag, tests, value = QcFlag.SUSPECT, "rate_of_change", value + 0.25
                out.append(Reading(StationId(station.id), float(ts), seq=i, boot=1, water_level_m=round(value, 3),
                                   battery_v=round(float(battery_v[i]), 3), rssi_dbm=round(float(rssi[i]), 1),
                                   qc_flag=flag, qc_tests=tests, received_s=float(ts) + 1.0))
        else:
            storm = np.exp(-(((t_s - (surge_start_s + 4 * 3600.0)) / (5 * 3600.0)) ** 2))
            rain = np.where(rng.random(t_s.size) < 0.2 + 0.7 * storm, rng.gamma(1.5, 1.0 + 5.0 * storm), 0.0)
            for i, ts in enumerate(t_s):
                out.append(Reading(StationId(station.id), float(ts), seq=i, boot=1,
                                   rain_mm=round(float(rain[i]) // station.mm_per_tip * station.mm_per_tip, 1),
                                   battery_v=round(float(battery_v[i]), 3), rssi_dbm=round(float(rssi[i]), 1),
                                   qc_flag=QcFlag.PASS, received_s=float(ts) + 1.0))
    return out


def take_screenshots(out_dir: Path, *, lang: str = "th") -> tuple[Path, Path]:
    """Run the whole stack on a simulated flood and photograph the overview and one station."""
    from playwright.sync_api import sync_playwright
    from pydantic import SecretStr

    from floodwatch import alerts
    from floodwatch import scheduler
    from floodwatch import store as store_pkg
    from floodwatch.clock import AcceleratedClock
    from floodwatch.gauge_page import EventHub, create_app
    from floodwatch.gauge_page._serve import BackgroundServer
    from floodwatch.line_standin import LineStandIn

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, LineStandIn(tokens={"screenshot-token"}) as line:
        settings = load_settings()
        settings.store.url = f"sqlite:///{tmp}/floodwatch.db"
        settings.alerts.state_url = f"sqlite:///{tmp}/alerts.db"
        settings.page.state_url = f"sqlite:///{tmp}/page.db"
        settings.line.api_base_url = line.base_url
        settings.line.channel_access_token = SecretStr("screenshot-token")
        end_s = math.floor(__import__("time").time() / 600.0) * 600.0
        clock = AcceleratedClock(sim_start_s=end_s + 60.0, factor=1.0)
        db = store_pkg.open_store(settings)
        service = alerts.AlertService(settings, clock)
        hub = EventHub()
        try:
            readings = simulated_flood(settings, end_s)
            db.write_batch(readings)
            for zone in settings.zones:
                service.subscribe_many((f"U{zone.id.replace('-', '')}{n:028d}", zone.id) for n in range(40))
            service.start()
            service.on_readings(sorted(readings, key=lambda r: r.ts_s))
            forecaster = scheduler.ForecastJob(settings, db, clock, on_forecast=service.on_forecast)
            forecaster.run_once()
            service.wait_delivered(15.0)
            app = create_app(settings, db, clock, hub=hub, alerts=service, forecasts=forecaster)
            # As ingest reports the node's last will; the page remembers since when.
            hub.publish("status", {"station_id": "LP-W07", "status": "offline", "ts_s": end_s - 2 * 3600.0 + 30})
            with BackgroundServer(app, hub) as server, sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 1100}, device_scale_factor=1)
                page.goto(server.url + "/public")  # set the language before the officer page loads
                page.evaluate("lang => localStorage.setItem('fw_lang', lang)", lang)
                page.goto(server.url + "/")
                page.wait_for_selector('#station-rows tr[data-station="LP-W06"]')
                page.wait_for_selector("#alert-rows tr")
                page.wait_for_timeout(500)
                overview = out_dir / "overview.png"
                page.screenshot(path=str(overview), full_page=True)
                page.goto(server.url + "/#station=LP-W06")
                page.wait_for_selector("#chart canvas")
                page.wait_for_timeout(500)
                station = out_dir / "station.png"
                page.locator("#station-detail").screenshot(path=str(station))
                phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
                phone.goto(server.url + "/public")
                phone.evaluate("lang => localStorage.setItem('fw_lang', lang)", lang)
                phone.goto(server.url + "/")
                phone.wait_for_selector('#station-rows tr[data-station="LP-W06"]')
                phone.wait_for_timeout(500)
                phone.screenshot(path=str(out_dir / "phone.png"))
                browser.close()
        finally:
            service.close()
            db.close()
    return overview, station


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="example: python -m floodwatch.gauge_page.screenshots --out docs/screenshots")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "screenshots",
                        help="folder for overview.png and station.png (default: docs/screenshots)")
    parser.add_argument("--lang", choices=("th", "en"), default="th", help="page language (default: th)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for path in take_screenshots(args.out, lang=args.lang):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
