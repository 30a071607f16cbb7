"""``floodwatch privacy purge --user USER_ID``: erase one resident's data when they ask (PDPA).

Removes the resident's flood reports and photos, an unfinished report, their
consent record, their village subscriptions and settings, and their LINE id
from the delivery outbox, then prints what was removed. See docs/privacy.md.
"""

from __future__ import annotations

import argparse

from floodwatch.errors import ConfigError
from floodwatch.settings import load_settings

LABELS = {
    "reports": ("flood reports", "รายงานน้ำท่วม"),
    "photos": ("photos", "รูปถ่าย"),
    "report_drafts": ("unfinished reports", "รายงานที่ยังไม่เสร็จ"),
    "consent": ("consent records", "บันทึกความยินยอม"),
    "rate_limit_steps": ("rate-limit entries", "บันทึกการจำกัดความถี่"),
    "subscriptions": ("village subscriptions", "การรับแจ้งเตือนรายหมู่บ้าน"),
    "user_settings": ("settings (language, low water, daily tide)", "การตั้งค่า (ภาษา น้ำต่ำ น้ำขึ้นลงรายวัน)"),
    "outbox_entries": ("delivery records naming them", "บันทึกการส่งข้อความที่มีชื่อผู้ใช้"),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "privacy",
        help="residents' data: erase everything about one LINE user when they ask (PDPA)",
        description=__doc__.split("\n\n", 1)[1],
        epilog="examples:\n"
        "  floodwatch privacy purge --user U0123456789abcdef0123456789abcdef\n"
        "  floodwatch privacy purge --user U0123456789abcdef0123456789abcdef --dry-run   # count only\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="privacy_command", metavar="SUBCOMMAND")
    purge = sub.add_parser(
        "purge",
        help="remove one resident's reports, photos, subscriptions and settings, and say what was removed",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    purge.add_argument("--user", required=True, metavar="USER_ID", help="the resident's LINE user id (U + 32 hex)")
    purge.add_argument("--dry-run", action="store_true", help="count what would be removed; remove nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "privacy_command", None) != "purge":
        print("usage: floodwatch privacy purge --user USER_ID [--dry-run]   (floodwatch privacy --help)")
        return 2
    from floodwatch.alerts.privacy import purge_user

    try:
        removed = purge_user(load_settings(), args.user, dry_run=args.dry_run)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 1
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} for {args.user}:")
    for key, count in removed.items():
        en, th = LABELS.get(key, (key, key))
        print(f"  {count:>6}  {en} / {th}")
    total = sum(removed.values())
    if total == 0:
        print("nothing was kept about this user / ไม่มีข้อมูลของผู้ใช้นี้")
    elif not args.dry_run:
        print("done: tell the resident their data was erased / แจ้งผู้ใช้ว่าลบข้อมูลแล้ว")
    return 0
