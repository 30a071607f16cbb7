"""``floodwatch feeds``: the external feeds' health, and fetching one by hand.

``floodwatch feeds status`` reads the feeds' state file (what ``floodwatch
serve`` keeps); ``floodwatch feeds fetch FEED --once`` runs one feed now, in
this process, through the same validation, QC and store path ``serve`` uses,
and prints what it did: the way to test a feed's configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from floodwatch.clock import SystemClock
from floodwatch.errors import FloodwatchError
from floodwatch.settings import Settings, load_settings
from floodwatch.timefmt import english_datetime


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "feeds",
        help="external feeds (ThaiWater, peer sites, drop folders): health, and fetching one by hand",
        description="Show each configured feed's health (last successful fetch, newest data, lag, errors), or "
        "fetch one feed now to test its configuration. Fetched readings are validated, QC-flagged and stored "
        "exactly as `floodwatch serve` stores them, and the feed's cursor moves as it would there.\n\n"
        "examples:\n"
        "  floodwatch feeds status\n"
        "  floodwatch feeds fetch thaiwater --once\n"
        "  floodwatch feeds status --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="feeds_command", metavar="ACTION")
    status = sub.add_parser("status", help="each feed's health, from the state file serve keeps",
                            description="Each feed's state (ok, degraded, stale, failing, never, disabled), last "
                            "successful fetch, newest data time per station, and recent problems.\n\n"
                            "example: floodwatch feeds status --json")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    fetch = sub.add_parser("fetch", help="run one feed now and say what it stored",
                           description="Run FEED now in this process (stores what it fetches and moves its cursor, "
                           "like serve). Without --once it repeats every interval_s until Ctrl-C.\n\n"
                           "example: floodwatch feeds fetch thaiwater --once",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch.add_argument("feed", metavar="FEED", help="the feed's id under [[feeds]]")
    fetch.add_argument("--once", action="store_true", help="fetch once and exit (status 1 if the fetch failed)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except FloodwatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "feeds_command", None) == "fetch":
        return _fetch(settings, args.feed, args.once)
    return _status(settings, as_json=getattr(args, "json", False))


def _status(settings: Settings, as_json: bool) -> int:
    from floodwatch.feeds import read_health

    now_s = time.time()
    try:
        feeds = read_health(settings, now_s)
    except FloodwatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"now_s": now_s, "feeds": feeds}, indent=2, ensure_ascii=False))
        return 0
    if not feeds:
        print(f"no feeds under [[feeds]] in {settings.config_file}")
        return 0
    for f in feeds:
        last = english_datetime(f["last_success_s"]) if f["last_success_s"] else "never"
        print(f"{f['id']} ({f['kind']}, {f['name_en']}): {f['state']}; last successful fetch {last}; "
              f"stored {f['stored_total']}")
        if f["last_error"] and f["state"] == "failing":
            print(f"  last error: {f['last_error']['reason']}: {f['last_error']['detail']}")
        for sid, st in f["stations"].items():
            when = english_datetime(st["last_data_s"]) if st["last_data_s"] else "no data yet"
            flags = [w for w, on in (("stale", st["stale"]), ("missing from the last answer", st["missing"])) if on]
            print(f"  {sid}: newest data {when}" + (f" ({', '.join(flags)})" if flags else ""))
        for p in f["problems"][:5]:
            print(f"  problem: {p['reason']}: {p['detail']}")
    return 0


def _fetch(settings: Settings, feed_id: str, once: bool) -> int:
    from floodwatch import store as store_module
    from floodwatch.feeds import FeedService

    try:
        cfg = settings.feed(feed_id)
    except FloodwatchError as exc:
        known = ", ".join(f.id for f in settings.feeds) or "none"
        print(f"error: {exc} (known: {known})", file=sys.stderr)
        return 1
    if not cfg.enabled:
        print(f"note: feed {feed_id!r} is disabled in the settings; fetching it anyway")
        cfg.enabled = True
    settings.feeds = [cfg]  # only this one: the others are not tested by this command
    try:
        db = store_module.open_store(settings)
    except FloodwatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    service = FeedService(settings, db, SystemClock())
    status = 0
    try:
        service.start()
        if hasattr(service.feeds[feed_id], "wait_subscribed"):
            service.feeds[feed_id].wait_subscribed(cfg.timeout_s)
            time.sleep(min(cfg.interval_s, 2.0))  # let the peer's broker hand over what it kept
        while True:
            report = service.run_once(feed_id)
            print(f"{feed_id}: {report.summary()}")
            if report.error is not None:
                print(f"  error: {report.error.reason}: {report.error.detail}")
            for p in report.problems:
                print(f"  problem: {p.reason}: {p.detail}")
            status = 0 if report.ok else 1
            if once:
                break
            time.sleep(cfg.interval_s)  # Ctrl-C ends it
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
        db.close()
    return status
