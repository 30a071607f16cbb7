"""``floodwatch officer``: the accounts that log in to the page (acknowledge, maintenance, messages).

Officers live in the page's state (``page.state_url``, a SQLite file in the
data folder). Passwords are read from a prompt, or from stdin with
``--password-stdin``, never from a flag: a flag lands in the shell's history
and in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path

from floodwatch.errors import ConfigError, FloodwatchError
from floodwatch.settings import Settings, load_settings, load_site_settings

EXAMPLES = (
    "examples:\n"
    "  sudo -u floodwatch floodwatch officer add somchai --display-name \"สมชาย ใจดี\"\n"
    "  floodwatch officer list\n"
    "  sudo -u floodwatch floodwatch officer passwd somchai\n"
    "  printf '%s\\n' \"$NEW_PASSWORD\" | floodwatch officer passwd somchai --password-stdin\n"
    "  sudo -u floodwatch floodwatch officer remove somchai"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    officer = subparsers.add_parser(
        "officer",
        help="add, list, change the password of, or remove the officers who log in to the page",
        description="Manage the officers who log in to the live page, in the page's state (page.state_url in "
        "the data folder). Passwords come from a prompt, or from stdin with --password-stdin; never from a "
        "flag.\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = officer.add_subparsers(dest="officer_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--site", type=Path, default=None, metavar="TOML",
                       help="the site file, as floodwatch serve --site reads it (default: FLOODWATCH_CONFIG, "
                       "else /etc/floodwatch/site.toml)")

    def with_password(p: argparse.ArgumentParser) -> None:
        p.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin (scripts), instead of a prompt")

    add = sub.add_parser("add", help="add an officer", description="Add an officer who can log in to the page.\n\n"
                         + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add.add_argument("username", help="letters, digits, '.', '-' or '_'")
    add.add_argument("--display-name", help="shown on the page and in the audit log (default: the username)")
    with_password(add)
    common(add)
    add.set_defaults(run=run_add)

    listing = sub.add_parser("list", help="list the officers", description="List the officers who can log in.")
    common(listing)
    listing.set_defaults(run=run_list)

    passwd = sub.add_parser("passwd", help="set an officer's new password (ends their sessions)",
                            description="Set an officer's password; their open sessions end.\n\n" + EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    passwd.add_argument("username")
    with_password(passwd)
    common(passwd)
    passwd.set_defaults(run=run_passwd)

    remove = sub.add_parser("remove", help="remove an officer (ends their sessions; the audit log keeps what they did)",
                            description="Remove an officer; their sessions end at once. The audit log keeps "
                            "their past actions.")
    remove.add_argument("username")
    common(remove)
    remove.set_defaults(run=run_remove)

    hashing = sub.add_parser("hash", help="print a password hash for [page] officers in a site file",
                             description="Print a scrypt hash of a password, for username = \"<hash>\" under "
                             "[page.officers] in a site file (officers kept with the site, not in the data folder).")
    with_password(hashing)
    hashing.set_defaults(run=run_hash)


def _settings(args: argparse.Namespace) -> Settings:
    return load_site_settings(args.site) if args.site is not None else load_settings()


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise ValueError("--password-stdin read nothing; pipe the password on the first line of stdin")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("there is no terminal to ask for the password; pipe it with --password-stdin")
    first = getpass.getpass("password (at least 8 characters): ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ; nothing was changed")
    return first


def _state(settings: Settings):  # noqa: ANN202 - gauge_page.PageState
    from floodwatch.gauge_page import PageState
    from floodwatch.gauge_page._state import sqlite_path

    path = sqlite_path(settings.page.state_url)
    return PageState(path), path


def _hand_to_data_dir_owner(path: Path, data_dir: Path) -> None:
    """Run as root, give what this command created back to the data folder's owner (the service's user),
    so `floodwatch serve` can still write the page's state."""
    if os.geteuid() != 0 or not data_dir.exists():
        return
    owner = data_dir.stat()
    if owner.st_uid == 0:
        return
    created = [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")]
    created += [p for p in path.parents if data_dir in p.parents]
    for item in created:
        if item.exists() and item.stat().st_uid == 0:
            os.chown(item, owner.st_uid, owner.st_gid)


def _run(args: argparse.Namespace, action) -> int:  # noqa: ANN001
    try:
        settings = _settings(args)
        state, path = _state(settings)
    except (ConfigError, FloodwatchError) as exc:
        print(f"error: {exc}")
        return 1
    except OSError as exc:
        print(f"error: cannot open the page's state ({exc}); run as the service's user: sudo -u floodwatch ...")
        return 1
    try:
        return action(settings, state, path)
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    finally:
        state.close()
        _hand_to_data_dir_owner(path, settings.data_dir)


def run_add(args: argparse.Namespace) -> int:
    def add(settings: Settings, state, path: Path) -> int:  # noqa: ANN001
        if state.has_officer(args.username):
            print(f"error: officer {args.username!r} already exists; change the password with "
                  f"floodwatch officer passwd {args.username}")
            return 1
        state.add_officer(args.username, _password(args), display_name=args.display_name, now_s=time.time())
        print(f"officer {args.username!r} can now log in to the page of {settings.site.name_en} "
              f"(stored in {path})")
        return 0

    return _run(args, add)


def run_list(args: argparse.Namespace) -> int:
    def listing(settings: Settings, state, path: Path) -> int:  # noqa: ANN001
        officers = state.officers()
        configured = sorted(settings.page.officers)
        if not officers and not configured:
            print(f"no officers yet in {path}; add one with floodwatch officer add USERNAME")
            return 0
        for o in officers:
            since = time.strftime("%Y-%m-%d", time.localtime(o["created_s"]))
            print(f"{o['username']:<20} {o['display_name']:<30} since {since}")
        for username in configured:
            print(f"{username:<20} {'(from [page] officers in the site file)':<30}")
        return 0

    return _run(args, listing)


def run_passwd(args: argparse.Namespace) -> int:
    def passwd(settings: Settings, state, path: Path) -> int:  # noqa: ANN001
        if not state.has_officer(args.username):
            print(f"error: there is no officer {args.username!r} in {path}; floodwatch officer list shows who there is")
            return 1
        state.change_password(args.username, _password(args))
        print(f"officer {args.username!r} has a new password; their open sessions have ended")
        return 0

    return _run(args, passwd)


def run_remove(args: argparse.Namespace) -> int:
    def remove(settings: Settings, state, path: Path) -> int:  # noqa: ANN001
        if not state.remove_officer(args.username):
            print(f"error: there is no officer {args.username!r} in {path}; floodwatch officer list shows who there is")
            return 1
        print(f"officer {args.username!r} removed; their sessions have ended (the audit log keeps their actions)")
        return 0

    return _run(args, remove)


def run_hash(args: argparse.Namespace) -> int:
    from floodwatch.gauge_page import hash_password

    try:
        print(hash_password(_password(args)))
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    return 0
