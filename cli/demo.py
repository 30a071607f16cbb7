"""``floodwatch demo``: the whole system on embedded defaults, a flood in accelerated time.

Starts, in data-flow order: a local MQTT broker (Mosquitto, or amqtt where
Mosquitto is missing), the SQLite store under ``var/demo/``, a LINE stand-in
(unless ``FLOODWATCH_LINE__API_BASE_URL`` points at a real LINE API),
ingestion, the forecaster on apscheduler, the alert engine, the live page,
and simulated Lam Phaya nodes publishing a scenario. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
import webbrowser
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from floodwatch import metrics
from floodwatch.clock import AcceleratedClock
from floodwatch.errors import ConfigError
from floodwatch.settings import Settings, load_settings, register_secrets

log = logging.getLogger(__name__)

DEMO_DIR = Path("var/demo")
HISTORY_DAYS = 7.0


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
    p.set_defaults(run=run)


def demo_resident_ids(zone_id: str, count: int) -> list[str]:
    """Stable LINE-shaped user ids ('U' + 32 hex digits) for the demo's residents."""
    return ["U" + hashlib.sha256(f"demo:{zone_id}:{i}".encode()).hexdigest()[:32] for i in range(count)]


def _env_set(name: str) -> bool:
    return bool(os.environ.get(name, "").strip())


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}")
        return 1
    if args.acceleration <= 0:
        print(f"error: --acceleration must be positive, got {args.acceleration}")
        return 2
    return run_demo(settings, args)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from floodwatch import firmware_sim
    from floodwatch.cli.broker import LocalBroker
    from floodwatch.cli.serve import wait_for_stop
    from floodwatch.cli.system import System

    if args.port is not None:
        settings.page.port = args.port
    # A demo starts from a clean slate: its data are simulated and its clock is accelerated.
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    if not _env_set("FLOODWATCH_STORE__URL"):
        settings.store.url = f"sqlite:///{DEMO_DIR}/floodwatch.db"
    if not _env_set("FLOODWATCH_ALERTS__STATE_URL"):
        settings.alerts.state_url = f"sqlite:///{DEMO_DIR}/alerts.db"
    if not _env_set("FLOODWATCH_PAGE__STATE_URL"):
        settings.page.state_url = f"sqlite:///{DEMO_DIR}/page.db"

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
            broker = LocalBroker(DEMO_DIR / "broker", port=1883)
            broker.start()
            cleanup.append(broker.stop)
            settings.mqtt.url = broker.url
            broker_kind = broker.kind
            if not _env_set("FLOODWATCH_MQTT_STATE__ENABLED"):
                # The demo's own open broker: show the retained state Home Assistant / Node-RED would read.
                settings.mqtt_state.enabled = True
        if _env_set("FLOODWATCH_LINE__API_BASE_URL"):
            line_target = "external"
        else:
            from floodwatch.line_standin import LineStandIn

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

        url = f"http://{settings.page.host}:{settings.page.port}"
        print(
            f"floodwatch demo: scenario {args.scenario} at {args.acceleration:g}x "
            f"(1 real minute = {args.acceleration / 60:g} simulated hours)\n"
            f"  live page     {url}\n"
            f"  MQTT broker   {settings.mqtt.url} ({broker_kind})\n"
            + (f"  MQTT state    {settings.mqtt.topic_prefix}/{settings.site.id}/state/# (retained; Home Assistant "
               "discovery under homeassistant/)\n" if settings.mqtt_state.enabled else "")
            + f"  LINE          {settings.line.api_base_url} ({line_target}), {residents} demo residents\n"
            f"  officer login officer / {officer_password}  (acknowledge, maintenance, manual messages)\n"
            f"  data          {settings.store.url}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        if not args.no_browser:
            webbrowser.open(url)
        wait_for_stop(args.duration)
        # Stop the nodes first and let ingestion catch up, so the summary counts every reading sent.
        fleet.stop()
        cleanup.remove(fleet.stop)
        _drain(fleet.stats().get("published") or 0)
        summary = _summary(system, fleet, standin, args, clock, started_real, broker_kind, line_target, residents)
    finally:
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
