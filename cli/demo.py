"""``floodwatch demo``: the whole system on embedded defaults, a flood in accelerated time.

Starts, in data-flow order: a local MQTT broker (Mosquitto, or amqtt where
Mosquitto is missing), the SQLite store under ``var/demo/``, a LINE stand-in
(unless ``FLOODWATCH_LINE__API_BASE_URL`` points at a real LINE API),
ingestion, the forecaster on apscheduler, the alert engine, the live page,
and simulated Lam Phaya nodes publishing a scenario (the embedded example
site). The external stations come from a local ThaiWater stand-in serving
the scenario's upstream flood (Sam Chuk, Suphan Buri, the Krasiao release)
and from a tide table dropped into the officers' drop folder; feeds that
would need another site or the internet (MQTT peers, URLs) are disabled, and
the page says so. Ctrl-C stops it all.

The terminal shows where the page is, the officer login and one line of live
status (readings, stations online, the highest level per zone, alerts, LINE
messages); the full log goes to ``var/demo/floodwatch.log`` (``--verbose``
brings it back to the terminal).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
import webbrowser
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from floodwatch import logs, metrics
from floodwatch.clock import AcceleratedClock
from floodwatch.errors import ConfigError
from floodwatch.settings import DEFAULT_CONFIG_FILE, Settings, load_settings, register_secrets

log = logging.getLogger(__name__)

DEMO_DIR = Path("var/demo")
LOG_NAME = "floodwatch.log"
HISTORY_DAYS = 7.0
STATUS_EVERY_S = 1.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole system on embedded defaults with simulated nodes (start here)",
        description="Run broker, store, simulated Lam Phaya nodes, ingestion, forecasts, alerts, a LINE "
        "stand-in and the live page on http://127.0.0.1:8000, with a monsoon flood in accelerated "
        "time. Needs no account and no internet. Ctrl-C stops everything.\n\n"
        "examples:\n"
        "  floodwatch demo\n"
        "  floodwatch demo --duration 60 --no-browser --summary-json var/demo-summary.json\n"
        "  FLOODWATCH_LINE__API_BASE_URL=http://127.0.0.1:9000 FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN=tok floodwatch demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop after this many real seconds (default: run until Ctrl-C)")
    p.add_argument("--no-browser", action="store_true", help="do not open the page in a browser")
    p.add_argument("--summary-json", type=Path, default=None, metavar="PATH",
                   help="write a JSON summary of the run (readings, forecasts, alerts, LINE messages) here")
    p.add_argument("--port", type=int, default=None, help="port of the live page (default 8000)")
    p.add_argument("--scenario", default="monsoon_flood",
                   help="scenario from firmware_sim/scenarios (default monsoon_flood; see floodwatch simulate --list)")
    p.add_argument("--acceleration", type=float, default=600.0,
                   help="simulated seconds per real second (default 600: one real minute is ten hours)")
    p.add_argument("--residents-per-zone", type=int, default=3,
                   help="demo residents pre-subscribed to each zone (default 3)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the simulated nodes (default 7)")
    p.add_argument("--verbose", dest="log_to_terminal", action="store_true",
                   help=f"show the full log on the terminal instead of the one-line status (it always goes to "
                   f"{DEMO_DIR}/{LOG_NAME})")
    p.set_defaults(run=run)


def demo_resident_ids(zone_id: str, count: int) -> list[str]:
    """Stable LINE-shaped user ids ('U' + 32 hex digits) for the demo's residents."""
    return ["U" + hashlib.sha256(f"demo:{zone_id}:{i}".encode()).hexdigest()[:32] for i in range(count)]


def _env_set(name: str) -> bool:
    return bool(os.environ.get(name, "").strip())


def run(args: argparse.Namespace) -> int:
    try:
        # The demo runs the embedded example site unless FLOODWATCH_CONFIG names another
        # (never the municipality's own /etc/floodwatch/site.toml by accident).
        settings = load_settings(config_file=os.environ.get("FLOODWATCH_CONFIG") or DEFAULT_CONFIG_FILE)
    except ConfigError as exc:
        print(f"error: {logs.scrub(str(exc))}")
        return 1
    if args.acceleration <= 0:
        print(f"error: --acceleration must be positive, got {args.acceleration}")
        return 2
    return run_demo(settings, args)


def _wait_showing_status(deadline_s: float | None, tick: Any) -> None:
    """Block until Ctrl-C, SIGTERM or ``deadline_s`` real seconds, calling ``tick()`` about every second."""
    import signal
    import threading

    stop = threading.Event()
    handler = lambda *_: stop.set()  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    end = None if deadline_s is None else time.monotonic() + deadline_s
    try:
        while not stop.is_set():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                break
            stop.wait(STATUS_EVERY_S if left is None else min(STATUS_EVERY_S, left))
            try:
                tick()
            except Exception:  # the status line must never stop the demo
                log.debug("event=demo_status_failed", exc_info=True)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from floodwatch import firmware_sim
    from floodwatch.cli.broker import DEMO_EXTRAS_HINT, DemoExtrasMissing, LocalBroker
    from floodwatch.cli.demo_status import ClearingStream, StatusPrinter, format_status, snapshot
    from floodwatch.cli.system import System

    if args.port is not None:
        settings.page.port = args.port
    # A demo starts from a clean slate: its data are simulated and its clock is accelerated.
    demo_dir = DEMO_DIR.resolve()
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True, exist_ok=True)
    log_path = demo_dir / LOG_NAME
    root = logging.getLogger()
    to_terminal = bool(getattr(args, "log_to_terminal", False))
    printer = StatusPrinter()
    logs.configure(root.level, json_lines=logs.json_lines_configured(), file=log_path,
                   stream=ClearingStream(sys.stderr) if printer.in_place and sys.stderr.isatty() else sys.stderr,
                   terminal_level=None if to_terminal else logging.ERROR)
    settings.data_dir = demo_dir
    if not _env_set("FLOODWATCH_STORE__URL"):
        settings.store.url = f"sqlite:///{demo_dir}/floodwatch.db"
    if not _env_set("FLOODWATCH_ALERTS__STATE_URL"):
        settings.alerts.state_url = f"sqlite:///{demo_dir}/alerts.db"
    if not _env_set("FLOODWATCH_PAGE__STATE_URL"):
        settings.page.state_url = f"sqlite:///{demo_dir}/page.db"
    settings.reports.photo_dir = demo_dir / "report-photos"
    settings.loudspeakers.audio_dir = demo_dir / "loudspeaker-audio"
    if not settings.loudspeakers.controllers:
        # one simulated village loudspeaker in the low-lying village, so the demo shows the whole path
        from floodwatch.settings import LoudspeakerController as SpeakerConfig

        settings.loudspeakers.controllers = [SpeakerConfig(
            id="DEMO-SPEAKER-6", name_th="หอกระจายข่าว หมู่ 6 (จำลอง)", name_en="Moo 6 loudspeaker (simulated)",
            zones=["moo-6"], lat=14.0052, lon=100.1082)]
    settings.loudspeakers.public_base_url = (settings.loudspeakers.public_base_url
                                             or f"http://{settings.page.host}:{settings.page.port}")

    scenario = firmware_sim.load_scenario(args.scenario)
    now_s = time.time()
    clock = AcceleratedClock(sim_start_s=now_s, factor=args.acceleration)
    cleanup: list[Any] = []
    standin = None
    started_real = time.monotonic()
    try:
        if _env_set("FLOODWATCH_MQTT__URL"):
            broker_kind = "external"
        else:
            broker = LocalBroker(demo_dir / "broker", port=1883)
            broker.start()
            cleanup.append(broker.stop)
            settings.mqtt.url = broker.url
            broker_kind = broker.kind
        if _env_set("FLOODWATCH_LINE__API_BASE_URL"):
            line_target = "external"
        else:
            try:
                from floodwatch.line_standin import LineStandIn
            except ImportError as exc:
                raise DemoExtrasMissing(DEMO_EXTRAS_HINT) from exc

            token = "demo-" + secrets.token_hex(16)
            standin = LineStandIn(tokens={token})
            standin.__enter__()
            cleanup.append(lambda: standin.__exit__(None, None, None))
            settings.line.api_base_url = standin.base_url
            settings.line.channel_access_token = SecretStr(token)
            line_target = "stand-in"
        if settings.line.channel_secret is None:
            settings.line.channel_secret = SecretStr("demo-secret-" + secrets.token_hex(8))
        register_secrets(settings)

        from floodwatch import gauge_page

        officer_password = secrets.token_urlsafe(9)
        gauge_page.create_officer(settings, "officer", officer_password, display_name="Demo duty officer")
        feeds_note = _demo_feeds(settings, scenario, clock, now_s, cleanup)
        system = System(settings, clock)
        # History first, so the first forecast has days of tide to fit.
        _seed_history(settings, firmware_sim.history(scenario, settings, now_s - HISTORY_DAYS * 86_400.0, now_s, 600.0), now_s)
        system.start()
        cleanup.append(system.stop)
        residents = 0
        for zone in settings.zones:
            for user_id in demo_resident_ids(zone.id, args.residents_per_zone):
                system.alerts.subscribe(user_id, zone.id)
                residents += 1
        fleet = firmware_sim.Fleet(settings, scenario, settings.mqtt.url, clock, seed=args.seed)
        fleet.start()
        cleanup.append(fleet.stop)
        speakers = [firmware_sim.LoudspeakerController(settings.mqtt.url, c.id, site=settings.site.id,
                                                       prefix=settings.mqtt.topic_prefix).start()
                    for c in settings.loudspeakers.controllers]
        for speaker in speakers:
            cleanup.append(speaker.stop)

        url = f"http://{settings.page.host}:{settings.page.port}"
        print(
            f"floodwatch demo: scenario {args.scenario} at {args.acceleration:g}x "
            f"(1 real minute = {args.acceleration / 60:g} simulated hours)\n"
            f"  live page     {url}\n"
            f"  MQTT broker   {settings.mqtt.url} ({broker_kind})\n"
            f"  LINE          {settings.line.api_base_url} ({line_target}), {residents} demo residents\n"
            f"  officer login officer / {officer_password}  (acknowledge, maintenance, manual messages)\n"
            f"  data          {settings.store.url}\n"
            f"  feeds         {feeds_note}\n"
            f"  full log      {_shown(log_path)}"
            + ("" if to_terminal else "  (tail -f it, or run with --verbose to see it here)") + "\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        if not args.no_browser:
            webbrowser.open(url)
        _wait_showing_status(args.duration, lambda: None if to_terminal else printer.show(
            lambda width: format_status(snapshot(system, clock.now_s()), width)))
        printer.clear()
        # Stop the nodes first and let ingestion catch up, so the summary counts every reading sent.
        fleet.stop()
        cleanup.remove(fleet.stop)
        _drain(fleet.stats().get("published") or 0)
        summary = _summary(system, fleet, standin, args, clock, started_real, broker_kind, line_target, residents)
        summary["loudspeaker_commands_played"] = sum(len(speaker.played) for speaker in speakers)
    except DemoExtrasMissing as exc:
        print(f"error: {exc}")
        return 1
    finally:
        printer.clear()
        while cleanup:
            stop = cleanup.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping a demo part failed; stopping the rest")
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def _demo_feeds(settings: Settings, scenario: Any, clock: AcceleratedClock, origin_s: float,
                cleanup: list[Any]) -> str:
    """Point the site's feeds at local stand-ins: nothing in the demo needs the internet.

    ThaiWater feeds read a stand-in that serves the scenario's upstream truth on the
    demo's clock; drop folders move under var/demo/ and get the river mouth's tide table
    for the coming week (heights above chart datum, Buddhist-era dates, as the
    Hydrographic Department prints them); peers and URLs are disabled.
    """
    import numpy as np

    from floodwatch.feeds.standin import Dam, Gauge, ThaiWaterStandIn

    notes = []
    for feed in settings.feeds:
        stations = [s for s in settings.stations if s.feed == feed.id]
        if feed.kind == "thaiwater" and feed.enabled:
            gauges = [Gauge(9000 + k, s.feed_station or s.id, s.name_th, s.name_en, s.lat, s.lon,
                            min_bank_m=s.levels.evacuate_m if s.levels else 5.0, ground_level_m=-2.0, truth_id=s.id)
                      for k, s in enumerate(stations) if s.kind == "water_level"]
            dams = [Dam(9100 + k, s.feed_station or s.id, s.name_th, s.name_en, truth_id=s.id)
                    for k, s in enumerate(stations) if s.kind == "discharge"]

            def truth(station: Any, t_s: Any) -> Any:
                return scenario.level_at(np.array([station.truth_id], dtype=object), np.asarray(t_s) - origin_s)

            standin = ThaiWaterStandIn(gauges, dams, level_m=truth, release_m3_s=truth, now_s=clock.now_s).start()
            cleanup.append(standin.stop)
            feed.url = standin.url
            feed.timeout_s = 5.0
            notes.append(f"{feed.id}: local ThaiWater stand-in {standin.url}")
        elif feed.kind == "drop_folder" and feed.enabled:
            feed.folder = settings.data_dir / "inbox" / feed.id
            feed.folder.mkdir(parents=True, exist_ok=True)
            for s in stations:
                if s.series == "predicted" and s.kind == "water_level":
                    _write_tide_table(feed.folder, s, scenario, origin_s)
            notes.append(f"{feed.id}: drop folder {feed.folder}")
        elif feed.enabled:
            feed.enabled = False
            notes.append(f"{feed.id}: disabled in the demo ({feed.kind} needs another site or the internet)")
    return "; ".join(notes) or "none configured"


def _write_tide_table(folder: Path, station: Any, scenario: Any, origin_s: float) -> None:
    """The coming week's hourly tide for a predicted station, as an officer would drop it."""
    import numpy as np

    from floodwatch.timefmt import BUDDHIST_ERA_OFFSET_YEARS, to_bangkok

    start_s = (origin_s // 3600.0) * 3600.0 - 86_400.0
    t = start_s + 3600.0 * np.arange(8 * 24)
    level = scenario.level_at(np.array([station.id], dtype=object), t - origin_s)
    rows = ["date_time,water_level"]
    for ts, value in zip(t, level, strict=True):
        local = to_bangkok(float(ts))
        when = f"{local:%d/%m}/{local.year + BUDDHIST_ERA_OFFSET_YEARS} {local:%H:%M}"
        rows.append(f"{when},{float(value) - station.feed_offset_m:.2f}")  # above chart datum
    year_be = to_bangkok(origin_s).year + BUDDHIST_ERA_OFFSET_YEARS
    path = folder / f"{station.id}_hydrographic-dept_{year_be}.csv"
    tmp = path.with_suffix(".part")
    tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    tmp.rename(path)
    # Dropped "a while ago", so the folder takes it at its first look.
    old = time.time() - 60.0
    os.utime(path, (old, old))


def _seed_history(settings: Settings, history: list, now_s: float) -> None:
    """Write days of past readings, QC-flagged like live ones, so forecasts have a tide to fit."""
    from floodwatch import store
    from floodwatch.ingest import QcChecker

    history_store = store.open_store(settings)
    try:
        history_store.write_batch(QcChecker(settings).check(history, now_s))
    finally:
        history_store.close()


def _drain(published: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = sum(metrics.total(name) for name in (
            "floodwatch_readings_ingested_total", "floodwatch_readings_rejected_total",
            "floodwatch_readings_duplicate_total"))
        if seen >= published:
            return
        time.sleep(0.05)


def _summary(system, fleet, standin, args, clock, started_real, broker_kind, line_target, residents) -> dict[str, Any]:
    if standin is not None:
        delivered = sum(
            1
            for r in standin.requests()
            if r["path"].startswith("/v2/bot/message/") and r["method"] == "POST" and 200 <= r["status"] < 300
        )
    else:
        delivered = int(metrics.value("floodwatch_line_deliveries_total", outcome="delivered"))
    return {
        "readings_stored": int(metrics.total("floodwatch_readings_ingested_total")),
        "readings_rejected": int(metrics.total("floodwatch_readings_rejected_total")),
        "feed_readings_stored": int(metrics.total("floodwatch_feed_readings_stored_total")),
        "forecasts_made": system.forecaster.runs,
        "alerts_raised": int(metrics.total("floodwatch_alerts_raised_total")),
        "line_messages_delivered": delivered,
        "scenario": args.scenario,
        "acceleration": args.acceleration,
        "real_seconds": round(time.monotonic() - started_real, 1),
        "simulated_hours": round((clock.now_s() - clock.sim_start_s) / 3600.0, 2),
        "broker": broker_kind,
        "line": line_target,
        "residents_subscribed": residents,
        "messages_published": fleet.stats().get("published"),
    }
