"""``floodwatch serve``: ingest, forecasts, alerts and the page for one site, in one process."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from floodwatch.clock import SystemClock
from floodwatch.errors import ConfigError
from floodwatch.settings import load_settings

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
    p.add_argument("--port", type=int, default=None, help="page port (default: settings, 8000)")
    p.add_argument("--host", default=None, help="page address (default: settings, 127.0.0.1)")
    p.set_defaults(run=run)


def wait_for_stop(deadline_s: float | None = None) -> None:
    """Block until Ctrl-C, SIGTERM or ``deadline_s`` real seconds have passed."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait(deadline_s)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    from cli.system import System

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}")
        return 1
    if args.port is not None:
        settings.page.port = args.port
    if args.host is not None:
        settings.page.host = args.host
    system = System(settings, SystemClock())
    try:
        system.start()
        print(f"floodwatch serving {settings.site.name_en} on http://{settings.page.host}:{settings.page.port} (Ctrl-C stops)")
        wait_for_stop()
    finally:
        system.stop()
    return 0
