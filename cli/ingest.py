"""``floodwatch ingest``: run ingestion on its own (one worker of many, or beside `serve`).

Subscribes to every station's telemetry and status on the broker in
``FLOODWATCH_MQTT__URL`` and stores readings in ``FLOODWATCH_STORE__URL``
until Ctrl-C or SIGTERM, then stores and acknowledges what it has and
disconnects; what it has not acknowledged the broker keeps for next time.
Runnable as ``python -m floodwatch.cli.ingest``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from floodwatch import logs
from floodwatch.clock import SystemClock
from floodwatch.errors import FloodwatchError
from floodwatch.settings import load_settings

log = logging.getLogger("floodwatch.ingest")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="run MQTT ingestion alone (scale out with --shared-group)",
        description="Subscribe to floodwatch/+/telemetry and /status, validate, QC-flag and store every "
        "reading exactly once. Several workers started with the same --shared-group split the load "
        "through an MQTT shared subscription; give each its own --client-id.\n\n"
        "example: FLOODWATCH_MQTT__URL=mqtt://127.0.0.1:1883 floodwatch ingest --shared-group ingest "
        "--client-id ingest-1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(run=run)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shared-group", default=None,
                   help="join $share/GROUP/... so workers split telemetry (default: settings.mqtt.shared_group)")
    p.add_argument("--client-id", default=None,
                   help="MQTT client id; the broker keeps this worker's session under it "
                   "(default: settings.mqtt.client_id)")
    p.add_argument("--stats-every", type=float, default=30.0, metavar="SECONDS",
                   help="log counters this often (default 30; 0 turns it off)")


def run(args: argparse.Namespace) -> int:
    from floodwatch import ingest
    from floodwatch import store

    overrides: dict = {}
    try:
        base = load_settings()
        mqtt = {}
        if args.shared_group:
            mqtt["shared_group"] = args.shared_group
        if args.client_id:
            mqtt["client_id"] = args.client_id
        if mqtt:
            overrides["mqtt"] = {**base.mqtt.model_dump(), **mqtt}
        settings = load_settings(**overrides) if overrides else base
        st = store.open_store(settings)
    except FloodwatchError as exc:
        print(f"error: {logs.scrub(str(exc))}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service = ingest.IngestService(settings, st, SystemClock())
    service.start()
    try:
        while not stop.wait(args.stats_every if args.stats_every > 0 else 3600):
            if args.stats_every > 0:
                log.info("event=ingest_stats %s", " ".join(f"{k}={v}" for k, v in service.stats().items()))
    finally:
        service.stop()
        st.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m floodwatch.cli.ingest", description=__doc__)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    # the same scrubbing formatter as `floodwatch ingest`: no secret reaches a log line
    logs.configure(logging.INFO)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
