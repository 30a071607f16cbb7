"""Officer accounts for the gauge page, until ``floodwatch`` has its own subcommand.

    python -m floodwatch.gauge_page create-officer somchai --display-name "สมชาย ใจดี"
    python -m floodwatch.gauge_page hash-password          # for [page.officers] in the TOML
"""

from __future__ import annotations

import argparse
import getpass
import sys

from floodwatch import logs
from floodwatch.errors import ConfigError
from floodwatch.settings import load_settings
from floodwatch.gauge_page import create_officer, hash_password


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password (at least 8 characters): ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("the two passwords differ; nothing was changed")
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m floodwatch.gauge_page", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n" + "\n".join(__doc__.splitlines()[2:4]))
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-officer", help="add an officer (or reset their password) in page.state_url")
    create.add_argument("username", help="letters, digits, '.', '-' or '_'")
    create.add_argument("--display-name", help="shown on the page and in the audit log (default: username)")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    hashp = sub.add_parser("hash-password", help="print a hash for [page.officers] username = \"...\"")
    hashp.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    args = parser.parse_args(argv)
    try:
        if args.command == "hash-password":
            print(hash_password(_password(args)))
            return 0
        settings = load_settings()
        create_officer(settings, args.username, _password(args), display_name=args.display_name)
    except (ValueError, ConfigError) as exc:
        print(f"error: {logs.scrub(str(exc))}", file=sys.stderr)
        return 1
    print(f"officer {args.username!r} can now log in at http://{settings.page.host}:{settings.page.port}/ "
          f"(stored in {settings.page.state_url})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
