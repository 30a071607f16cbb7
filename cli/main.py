"""``floodwatch``: one command line for every part of the system.

Each subcommand lives in its own module under ``cli/`` with
``add_parser(subparsers)`` and ``run(args) -> int``; this module only
dispatches. ``floodwatch SUBCOMMAND --help`` shows examples.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from floodwatch import logs

# Order is the order shown in --help: what a newcomer runs first comes first.
SUBCOMMAND_MODULES = (
    "floodwatch.cli.demo",
    "floodwatch.cli.serve",
    "floodwatch.cli.check",
    "floodwatch.cli.site",
    "floodwatch.cli.officer",
    "floodwatch.cli.ingest",
    "floodwatch.cli.import_csv",
    "floodwatch.cli.feeds",
    "floodwatch.cli.simulate",
    "floodwatch.cli.backtest",
    "floodwatch.cli.line",
    "floodwatch.cli.line_standin",
    "floodwatch.cli.mqtt_config",
    "floodwatch.cli.backup",
    "floodwatch.cli.privacy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="floodwatch",
        description="Flood early warning for Thai municipalities: gauges over MQTT, tide and rain forecasts, "
        "LINE alerts for residents, a live page for disaster officers.",
        epilog="Start here: floodwatch demo   (everything on embedded defaults, page on http://127.0.0.1:8000)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument("--log-json", action="store_true",
                        help="log one JSON object per line (for journald/Loki) instead of key=value text")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(name)
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    logs.configure(logging.DEBUG if args.verbose else logging.INFO, json_lines=args.log_json)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
