"""``floodwatch ingest-token``: a per-node token for HTTP ingestion, and the hash the site keeps.

The clear token goes to the logger only (printed once, or written to a 0600
file); the site keeps its salted SHA-256 under ``[http_ingest] tokens`` (the
TOML file, or ``FLOODWATCH_HTTP_INGEST__TOKENS`` as JSON). See docs/http-ingest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from floodwatch.errors import ConfigError
from floodwatch.settings import load_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest-token",
        help="make per-node tokens for HTTP ingestion (POST /api/v1/ingest/STATION)",
        description="Make a new token for each STATION's logger. The clear token is for the logger only; the "
        "printed sha256$... hash goes under [http_ingest.tokens] in the site's TOML file (or into "
        "FLOODWATCH_HTTP_INGEST__TOKENS). Running it again for a station replaces its token: the old one stops "
        "working once the new hash is in the settings.\n\n"
        "examples:\n"
        "  floodwatch ingest-token LP-W01\n"
        "  floodwatch ingest-token LP-W01 LP-R01 --out /etc/floodwatch/http-tokens",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("stations", nargs="+", metavar="STATION", help="station ids from the registry")
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="write 'station token' lines to PATH (mode 0600) instead of printing the tokens")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from floodwatch.ingest.http import hash_token, new_token

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    known = {s.id for s in settings.stations}
    unknown = [s for s in args.stations if s not in known]
    if unknown:
        print(f"error: {', '.join(unknown)} not in {settings.config_file}; add the station under [[stations]] "
              "first", file=sys.stderr)
        return 2
    tokens = {station: new_token(station) for station in args.stations}
    hashes = {station: hash_token(token) for station, token in tokens.items()}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# station token: give each logger its own; keep this file secret\n")
            f.writelines(f"{station} {token}\n" for station, token in tokens.items())
        os.chmod(args.out, 0o600)
        print(f"wrote {len(tokens)} token(s) to {args.out} (mode 0600); give each logger its own")
    else:
        print("# Tokens, for the loggers only (shown once; not stored anywhere):")
        for station, token in tokens.items():
            print(f"#   {station}: {token}")
    print(f"\n# Add to {settings.config_file}:\n[http_ingest.tokens]")
    for station, stored in hashes.items():
        print(f'"{station}" = "{stored}"')
    print("\n# or, in .env / the environment (merge with tokens already there):")
    print(f"# FLOODWATCH_HTTP_INGEST__TOKENS='{json.dumps(hashes)}'")
    return 0
