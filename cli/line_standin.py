"""``floodwatch line-standin``: run the local LINE Messaging API stand-in until Ctrl-C.

Example::

    floodwatch line-standin --port 8081 --token demo-token
    FLOODWATCH_LINE__API_BASE_URL=http://127.0.0.1:8081 \\
    FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN=demo-token floodwatch demo

Also runnable as ``python -m floodwatch.cli.line_standin``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

TOKEN_ENV = "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN"
EXAMPLE = "example: floodwatch line-standin --port 8081 --token demo-token"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "line-standin",
        help="run a local stand-in for LINE's Messaging API (tests, demo)",
        description=(
            "Answer LINE Messaging API calls on this machine the way LINE does: bearer-token check, "
            "bodies validated against LINE's OpenAPI spec, retry keys, rate limits, monthly quota. "
            "What it received is at GET /_standin/received. Stops on Ctrl-C."
        ),
        epilog=EXAMPLE,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8081, help="port to listen on; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--token",
        action="append",
        default=None,
        metavar="TOKEN",
        help=f"channel access token to accept; repeat for several (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--multicast-rate",
        type=float,
        default=200.0,
        metavar="PER_S",
        help="multicast requests per second before 429, as LINE's limit (default: %(default)s)",
    )
    parser.add_argument(
        "--monthly-quota",
        type=int,
        default=None,
        metavar="MESSAGES",
        help="messages allowed this month before 429; omit for no limit (default: no limit)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        from floodwatch.line_standin import LineStandIn
    except ImportError:
        from floodwatch.cli.broker import DEMO_EXTRAS_HINT

        print(f"error: {DEMO_EXTRAS_HINT}", file=sys.stderr)
        return 1

    tokens = args.token or ([os.environ[TOKEN_ENV]] if os.environ.get(TOKEN_ENV) else [])
    if not tokens:
        print(
            f"line-standin needs a channel access token to accept: pass --token TOKEN or set {TOKEN_ENV}\n"
            + EXAMPLE,
            file=sys.stderr,
        )
        return 2
    if args.multicast_rate <= 0:
        print(f"--multicast-rate must be positive, got {args.multicast_rate}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        standin = LineStandIn(
            tokens=tokens,
            host=args.host,
            port=args.port,
            multicast_rate_per_s=args.multicast_rate,
            monthly_quota=args.monthly_quota,
        )
        try:
            standin.start()
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.port}: {exc}; pick another --port", file=sys.stderr)
            return 1
        try:
            # One line a script can parse for the address (port 0 picks one).
            print(f"line-standin listening on {standin.base_url}", flush=True)
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            standin.stop()
        print("line-standin stopped", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m floodwatch.cli.line_standin", epilog=EXAMPLE)
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
