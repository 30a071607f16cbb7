"""``floodwatch serve``: ingest, forecasts, alerts and the page for one site, in one process."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from floodwatch import logs
from floodwatch.clock import SystemClock
from floodwatch.errors import ConfigError, FloodwatchError
from floodwatch.settings import Settings, is_example, load_settings, load_site_settings

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run ingestion, forecasts, alerts and the live page against a real broker",
        description="Run the production process for one site: subscribe to the broker in "
        "FLOODWATCH_MQTT__URL, store readings in FLOODWATCH_STORE__URL, forecast on a schedule, "
        "send LINE alerts and serve the live gauge page. Stops cleanly on Ctrl-C or SIGTERM.\n\n"
        "example: FLOODWATCH_MQTT__URL=mqtt://127.0.0.1:1883 floodwatch serve --port 8000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--site", dest="sites", type=Path, action="append", default=None, metavar="TOML",
                   help="serve this site's config file; repeat to serve several municipalities from one "
                   "process, each with its own stations, zones, LINE channel, store and page port "
                   "(settings then come from the file and FLOODWATCH_SITE_<ID>__* variables only)")
    p.add_argument("--port", type=int, default=None, help="page port (default: settings, 8000)")
    p.add_argument("--host", default=None, help="page address (default: settings, 127.0.0.1)")
    p.set_defaults(run=run)


def wait_for_stop(deadline_s: float | None = None) -> None:
    """Block until Ctrl-C (SIGINT), SIGTERM or ``deadline_s`` real seconds have passed.

    Both signals are caught explicitly: a process started in the background
    by a shell inherits SIGINT as ignored, and systemd stops with SIGTERM.
    """
    stop = threading.Event()
    handler = lambda *_: stop.set()  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait(deadline_s)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def check_sites(sites: list[Settings]) -> None:
    """Several sites in one deployment must not be able to see each other's traffic."""
    from floodwatch.feeds import feed_state_path

    ids = [s.site.id for s in sites]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"two site files share a site id: {ids}; each municipality needs its own [site] id")
    unprefixed = [s.site.id for s in sites if s.mqtt.single_site_topics]
    if len(sites) > 1 and len(unprefixed) > 1:
        raise ConfigError(
            f"sites {unprefixed} all accept single-site topics (floodwatch/<station>/...); with several sites on "
            "one broker at most one may: set [mqtt] single_site_topics = false in the others"
        )
    for name, attr in (("store.url", lambda s: s.store.url), ("alerts.state_url", lambda s: s.alerts.state_url),
                       ("page.state_url", lambda s: s.page.state_url), ("page.port", lambda s: s.page.port),
                       ("mqtt.client_id", lambda s: s.mqtt.client_id),
                       ("feed_state.url", lambda s: str(feed_state_path(s)))):
        values = [attr(s) for s in sites]
        if len(set(values)) != len(values):
            raise ConfigError(f"sites share {name} ({values}); each site needs its own")
    # residents' photos, and the loudspeaker MQTT session of sites that have loudspeakers
    for name, attr, among in (("reports.photo_dir", lambda s: str(s.reports.photo_dir), sites),
                              ("loudspeakers.client_id", lambda s: s.loudspeakers.client_id,
                               [s for s in sites if s.loudspeakers.controllers])):
        values = [attr(s) for s in among]
        if len(set(values)) != len(values):
            raise ConfigError(f"sites share {name} ({values}); each site needs its own")


def run(args: argparse.Namespace) -> int:
    from floodwatch.cli.system import System

    try:
        if args.sites:
            sites = [load_site_settings(path) for path in args.sites]
        else:
            sites = [load_settings()]
        if len(sites) == 1 and args.port is not None:
            sites[0].page.port = args.port
        for settings in sites:
            if args.host is not None:
                settings.page.host = args.host
        check_sites(sites)
    except ConfigError as exc:
        print(f"error: {logs.scrub(str(exc))}")
        return 1
    from floodwatch.cli.check import site_map_problems, site_problems

    refused = False
    for settings in sites:
        problems, notes = site_problems(settings)
        for note in notes:
            log.info("event=site_note site=%s note=%s", settings.site.id, note)
        for problem in site_map_problems(settings):
            # Alerts matter more than the drawing: serve, and say the page shows no zones.
            log.warning("event=site_map_problem site=%s problem=%s", settings.site.id, problem)
        if is_example(settings.config_file):
            log.warning("event=example_site config=%s fix=%s", settings.config_file,
                        "write your own with floodwatch site init --out /etc/floodwatch/site.toml")
        for problem in problems:
            print(f"error: {problem}")
            refused = True
    if refused:
        print("floodwatch serve refuses to start on these problems; fix them (floodwatch check shows them all)")
        return 1
    systems = []
    try:
        for settings in sites:
            systems.append(System(settings, SystemClock()).start())
            print(f"floodwatch serving {settings.site.name_en} on "
                  f"http://{settings.page.host}:{settings.page.port}", flush=True)
        print("Ctrl-C stops.", flush=True)
        wait_for_stop()
    except FloodwatchError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    finally:
        for system in reversed(systems):
            system.stop()
    return 0
